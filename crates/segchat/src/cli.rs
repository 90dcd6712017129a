//! The command line: clap types only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// segchat: a Discord-like chat on a hybrid of client-server and P2P.
///
/// `segchat server` runs the central server, `segchat node` a user's node,
/// `segchat up` both at once; every other command talks to a running node
/// found through its data directory.
#[derive(Debug, Parser)]
#[command(name = "segchat", version, propagate_version = true)]
pub(crate) struct Cli {
    /// A TOML file of settings (below SEGCHAT_* variables and flags).
    #[arg(long, global = true, env = "SEGCHAT_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Data directory: the server's for `server`, the node's for `node`
    /// and the verbs, the parent of both for `up`.
    #[arg(long, global = true, env = "SEGCHAT_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// Print the API's raw JSON instead of text (verbs only).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `segchat search`'s page size when `--limit` is not given (the API's
/// default too).
pub(crate) const SEARCH_LIMIT: u32 = 50;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the central server.
    Server(ServerArgs),
    /// Run a node: the user's own process.
    Node(NodeArgs),
    /// Run a server and a node in one process.
    Up(UpArgs),

    /// Create an account and sign the node in as it.
    Register(Credentials),
    /// Sign the node in.
    Login(Credentials),
    /// Sign the node in as a read-only visitor.
    Visit {
        /// The name others will see.
        name: String,
    },
    /// Sign the node out.
    Logout,
    /// Show who the node is signed in as.
    Whoami,
    /// Show or set your status.
    Status {
        /// The new status; shows the current one if left out.
        status: Option<StatusArg>,
    },
    /// List the channels you can see.
    Channels,
    /// Create a channel.
    Create {
        name: String,
        #[arg(long, value_enum, default_value_t = VisibilityArg::Public)]
        visibility: VisibilityArg,
        /// Let visitors read the channel.
        #[arg(long)]
        allow_visitors: bool,
    },
    /// Join a channel.
    Join { channel: String },
    /// Leave a channel.
    Leave { channel: String },
    /// List a channel's members and their presence.
    Members { channel: String },
    /// Authorise a user to join a private channel.
    Invite { channel: String, username: String },
    /// List live peers (all, or a channel's).
    Peers {
        #[arg(long)]
        channel: Option<String>,
    },
    /// Send a message (it is kept in the outbox until the host or the
    /// server acknowledges it).
    Send {
        channel: String,
        /// The message; several words are joined with spaces.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Share a file in a channel: it stays on this node and members fetch
    /// it from every node that has it, verified piece by piece.
    SendFile {
        channel: String,
        path: std::path::PathBuf,
        /// Text to go with it.
        #[arg(long, default_value = "")]
        caption: String,
        /// Its media type (guessed from the name when not given).
        #[arg(long = "type")]
        mime: Option<String>,
    },
    /// Fetch a file shared in a channel or a direct message (resuming
    /// what is here already) and save it.
    Get {
        /// The file's hash (`history` and `dm history` show it).
        hash: String,
        /// The channel a message shares it in (none: a direct message).
        #[arg(long)]
        channel: Option<String>,
        /// Where to save it (default: its name, in this directory; an
        /// existing file is never overwritten).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Reply to a message (quoting it).
    Reply {
        channel: String,
        /// The id of the message replied to (`history --ids` shows them).
        id: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Edit one of your messages.
    Edit {
        channel: String,
        id: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Delete a message: your own, or anyone's in a channel you own.
    Delete { channel: String, id: String },
    /// React to a message with an emoji (again with --remove to take it
    /// back).
    React {
        channel: String,
        id: String,
        emoji: String,
        #[arg(long)]
        remove: bool,
    },
    /// Show a channel's history, newest last (from the local store; works
    /// offline).
    History {
        channel: String,
        /// How many messages.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only messages older than this message id.
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// Start each line with the message's id (to reply, edit, delete or
        /// react).
        #[arg(long)]
        ids: bool,
    },
    /// Search every message this node has seen, newest first, a page at
    /// a time (from the local store; works offline).
    Search {
        /// Words that must all appear, each also as the start of a longer
        /// word (`lore` finds "lorem").
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Only in this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Only by this user.
        #[arg(long, value_name = "USER")]
        author: Option<String>,
        /// Only messages written before this time: RFC 3339
        /// (2025-01-31T18:00:00Z), a date (its midnight, UTC) or
        /// milliseconds since 1970.
        #[arg(long, value_name = "TIME")]
        before: Option<String>,
        /// Only messages written at or after this time (as --before).
        #[arg(long, value_name = "TIME")]
        after: Option<String>,
        /// How many to show (1 to 200).
        #[arg(long, default_value_t = SEARCH_LIMIT)]
        limit: u32,
        /// Show the next page: the cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Unread messages per channel, and how each channel is reached.
    Unread,
    /// Print a channel's messages as they arrive (Ctrl-C to stop).
    Watch { channel: String },
    /// Livestreams, peer to peer over UDP: start, stop, list, watch.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// A channel's settings (owner or moderator) and deleting it (owner).
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Friends: ask, accept, remove, block, list. Friends see each
    /// other's presence without sharing a channel.
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Direct messages, end-to-end encrypted: `segchat dm USER TEXT…`
    /// sends; `dm history USER` and `dm list` read (from this node's
    /// store, offline too).
    Dm(DmArgs),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct DmArgs {
    #[command(subcommand)]
    pub(crate) command: Option<DmCommand>,
    /// Who to write to (several, comma-separated, for a group).
    #[arg(required = true)]
    pub(crate) user: Option<String>,
    /// The message (the words are joined with spaces).
    #[arg(required = true, trailing_var_arg = true)]
    pub(crate) text: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DmCommand {
    /// A conversation, oldest first, with each of your messages' state
    /// (sent, delivered, read).
    History {
        user: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Start each line with the message's id (to reply, edit, delete
        /// or react).
        #[arg(long)]
        ids: bool,
    },
    /// Reply to message ID of the conversation with USER (quoting it).
    Reply {
        user: String,
        id: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Edit one of your messages, on every device of the conversation.
    Edit {
        user: String,
        id: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Delete one of your messages, on every device of the conversation.
    Delete { user: String, id: String },
    /// Send a file to USER (several, comma-separated), encrypted end to
    /// end: it stays on this node (and, sealed, on the server) and their
    /// nodes fetch it from there.
    SendFile {
        user: String,
        path: std::path::PathBuf,
        /// Text to go with it.
        #[arg(long, default_value = "")]
        caption: String,
        /// Its media type (guessed from the name when not given).
        #[arg(long = "type")]
        mime: Option<String>,
    },
    /// React to a message with an emoji (again with --remove to take it
    /// back).
    React {
        user: String,
        id: String,
        emoji: String,
        #[arg(long)]
        remove: bool,
    },
    /// Your conversations, the most recent first, with unread counts.
    List,
    /// The safety number to compare with USER out of band: the same on
    /// both sides unless a device was slipped in under one of your names.
    Verify { user: String },
    /// Direct messages holding every word, newest first (this node's
    /// store: works offline).
    Search {
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FriendCommand {
    /// Ask to be friends (accepts instead if they asked you first).
    Add { username: String },
    /// Accept a friend request.
    Accept { username: String },
    /// Unfriend, decline their request or cancel yours.
    Remove { username: String },
    /// Block a user: ends any friendship or request; they can no longer
    /// ask, and see you offline.
    Block { username: String },
    /// Lift a block.
    Unblock { username: String },
    /// Your friends (with presence), requests both ways and blocks.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ChannelCommand {
    /// Change a channel's topic, title, visibility or visitor access;
    /// what is not given stays as it is. The channel's name never changes
    /// (it is signed into every message): --title is what "rename" sets.
    Set {
        channel: String,
        /// One line, at most 300 bytes; "" clears it.
        #[arg(long)]
        topic: Option<String>,
        /// The name shown for the channel, 1 to 64 characters.
        #[arg(long)]
        title: Option<String>,
        #[arg(long, value_enum)]
        visibility: Option<VisibilityArg>,
        /// Whether visitors may read it (public channels only).
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        allow_visitors: Option<bool>,
    },
    /// Delete a channel you own, with its members and the server's copy
    /// of its messages. Asks first unless --yes.
    Delete {
        channel: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StreamCommand {
    /// Start streaming in a channel you may write in.
    Start {
        channel: String,
        /// Stream the built-in test pattern (moving bars, capture time
        /// drawn in). Webcams stream from the web UI.
        #[arg(long, required = true)]
        test_pattern: bool,
        /// WIDTHxHEIGHT.
        #[arg(long, default_value = "640x480")]
        size: String,
        #[arg(long, default_value_t = 30)]
        fps: u8,
    },
    /// Stop this node's stream (by id, or all of them).
    Stop { id: Option<u64> },
    /// List the live streams you may watch.
    List {
        #[arg(long)]
        channel: Option<String>,
    },
    /// Watch a channel's stream until it ends or Ctrl-C.
    Watch {
        channel: String,
        /// Print fps, latency and loss every second.
        #[arg(long)]
        stats: bool,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS")]
        seconds: Option<f64>,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServerArgs {
    /// Where to listen [default: 0.0.0.0:22236].
    #[arg(long, env = "SEGCHAT_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// `sqlite://PATH` or a plain path [default: DATA_DIR/server.db].
    #[arg(long, env = "SEGCHAT_DATABASE", value_name = "URL")]
    pub(crate) database: Option<String>,
    /// The server's secret key, made there on first start if absent
    /// [default: DATA_DIR/server.key]. Instances of one server name the
    /// same file (or copies of it).
    #[arg(long, env = "SEGCHAT_KEY_FILE", value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// NATS server(s) linking several server instances on one PostgreSQL
    /// (`nats://HOST:PORT`, comma-separated) [default: run alone].
    #[arg(long, env = "SEGCHAT_NATS", value_name = "URL")]
    pub(crate) nats: Option<String>,
    /// How often nodes heartbeat, in seconds [default: 5].
    #[arg(long, env = "SEGCHAT_HEARTBEAT_SECS", value_name = "SECS")]
    pub(crate) heartbeat_secs: Option<f64>,
    /// How long a silent peer stays listed, in seconds [default: 15].
    #[arg(long, env = "SEGCHAT_PEER_TTL_SECS", value_name = "SECS")]
    pub(crate) peer_ttl_secs: Option<f64>,
    /// How long a connection may stay signed out before it is closed, in
    /// seconds [default: 30].
    #[arg(long, env = "SEGCHAT_SIGNIN_TIMEOUT_SECS", value_name = "SECS")]
    pub(crate) signin_timeout_secs: Option<f64>,
    /// Connections one address (IPv6: one /64) may hold open [default: 64].
    #[arg(long, env = "SEGCHAT_MAX_CONNS_PER_SOURCE", value_name = "N")]
    pub(crate) max_conns_per_source: Option<usize>,
    /// Changes others are told of (status, activity, joins, leaves,
    /// channel changes) one connection may make per second
    /// [default: 10]; more are refused with RATE_LIMITED.
    #[arg(long, env = "SEGCHAT_CHANGES_PER_SECOND", value_name = "N")]
    pub(crate) changes_per_second: Option<u32>,
    /// Such changes one connection may make at once before the rate
    /// applies [default: 20].
    #[arg(long, env = "SEGCHAT_CHANGES_BURST", value_name = "N")]
    pub(crate) changes_burst: Option<u32>,
    /// Keep backup copies of files shared in channels up to this many
    /// MiB each [default: 64]; 0 keeps none.
    #[arg(long, env = "SEGCHAT_FILE_BACKUP_MIB", value_name = "MIB", value_parser = clap::value_parser!(u64).range(0..=16_384))]
    pub(crate) file_backup_mib: Option<u64>,
    /// Keep at most this many MiB of backup copies of files, all together
    /// [default: 4096].
    #[arg(long, env = "SEGCHAT_FILE_BACKUP_TOTAL_MIB", value_name = "MIB", value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    pub(crate) file_backup_total_mib: Option<u64>,
    /// Records per system-log file before rotating [default: 10000].
    #[arg(long, env = "SEGCHAT_LOG_MAX_RECORDS", value_name = "N")]
    pub(crate) log_max_records: Option<u64>,
    /// Rotated system-log files kept [default: 10].
    #[arg(long, env = "SEGCHAT_LOG_KEEP", value_name = "N")]
    pub(crate) log_keep: Option<usize>,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct NodeArgs {
    /// The central server, host:port [default: 127.0.0.1:22236]; several
    /// instances of one server comma-separated, tried in turn.
    #[arg(long, env = "SEGCHAT_SERVER", value_name = "ADDR")]
    pub(crate) server: Option<String>,
    /// The UDP address of the node's QUIC endpoint, which carries every
    /// P2P link and livestream [default: 0.0.0.0:0].
    #[arg(long, env = "SEGCHAT_P2P", value_name = "ADDR")]
    pub(crate) p2p: Option<SocketAddr>,
    /// The server's key (hex, as `segchat server` prints it). Without it
    /// the node pins the key the server announces on first contact.
    #[arg(long, env = "SEGCHAT_SERVER_KEY", value_name = "HEX")]
    pub(crate) server_key: Option<String>,
    /// Where to serve the local HTTP API [default: 127.0.0.1:0].
    #[arg(long, env = "SEGCHAT_API", value_name = "ADDR")]
    pub(crate) api: Option<SocketAddr>,
    /// The IP to announce to peers instead of the detected one.
    #[arg(long, env = "SEGCHAT_ADVERTISE", value_name = "IP")]
    pub(crate) advertise: Option<IpAddr>,
    /// Show idle after this many seconds without input in any client, if
    /// set online [default: 300].
    #[arg(long, env = "SEGCHAT_IDLE_AFTER", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) idle_after: Option<u64>,
    /// The largest file this node shares or fetches, in MiB [default:
    /// 2048].
    #[arg(long, env = "SEGCHAT_MAX_FILE_MIB", value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=16_384))]
    pub(crate) max_file_mib: Option<u64>,
    /// Fetch files at most this many MiB a second, all together
    /// [default: no limit].
    #[arg(long, env = "SEGCHAT_DOWNLOAD_LIMIT_MIB", value_name = "MIB/S", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) download_limit_mib: Option<u64>,
    /// Keep at most this many MiB of copies of files others share in the
    /// channels this node hosts [default: 8192].
    #[arg(long, env = "SEGCHAT_KEEP_FOR_OTHERS_MIB", value_name = "MIB", value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    pub(crate) keep_for_others_mib: Option<u64>,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct UpArgs {
    /// Where the server listens [default: 127.0.0.1:22236].
    #[arg(long, env = "SEGCHAT_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Where the node serves its HTTP API [default: 127.0.0.1:0].
    #[arg(long, env = "SEGCHAT_API", value_name = "ADDR")]
    pub(crate) api: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    /// Read the password from the first line of stdin (else
    /// SEGCHAT_PASSWORD, else a prompt).
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusArg {
    Online,
    Idle,
    Invisible,
}

impl StatusArg {
    pub(crate) fn as_api(self) -> &'static str {
        match self {
            StatusArg::Online => "online",
            StatusArg::Idle => "idle",
            StatusArg::Invisible => "invisible",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum VisibilityArg {
    Public,
    MembersOnly,
    Private,
}

impl VisibilityArg {
    pub(crate) fn as_api(self) -> &'static str {
        match self {
            VisibilityArg::Public => "public",
            VisibilityArg::MembersOnly => "members_only",
            VisibilityArg::Private => "private",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbs_parse() {
        let cli = Cli::try_parse_from([
            "segchat",
            "create",
            "general",
            "--visibility",
            "members-only",
            "--allow-visitors",
            "--data-dir",
            "/tmp/n",
        ])
        .expect("parses");
        match cli.command {
            Command::Create {
                visibility,
                allow_visitors,
                ..
            } => {
                assert_eq!(visibility, VisibilityArg::MembersOnly);
                assert!(allow_visitors);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(cli.data_dir, Some(PathBuf::from("/tmp/n")));
    }

    #[test]
    fn channel_set_parses_each_setting_and_leaves_the_rest_out() {
        let cli = Cli::try_parse_from([
            "segchat",
            "channel",
            "set",
            "general",
            "--title",
            "General chat",
            "--allow-visitors",
            "false",
        ])
        .expect("parses");
        match cli.command {
            Command::Channel(ChannelCommand::Set {
                channel,
                topic,
                title,
                visibility,
                allow_visitors,
            }) => {
                assert_eq!(channel, "general");
                assert_eq!(title.as_deref(), Some("General chat"));
                assert_eq!((topic, visibility), (None, None));
                assert_eq!(allow_visitors, Some(false));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["segchat", "channel", "delete", "general", "--yes"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Channel(ChannelCommand::Delete { yes: true, .. })
        ));
    }
}
