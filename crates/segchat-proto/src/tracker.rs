//! The node ↔ server link ("tracker" link): what a node may ask, what the
//! server answers, and what it pushes unasked.
//!
//! Bodies are JSON objects. A request names its operation in `"op"`; a reply
//! and an event name their kind in `"type"`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use uuid::Uuid;

use crate::devices::{ClaimedDevice, DeviceKeys, OneTimeKey};
use crate::friends::{FriendAction, Relation};
use crate::mailbox::{Delivered, Envelope};
use crate::message::{Message, Sequenced};
use crate::stream::{Codec, StreamInfo};
use crate::ticket::SignedTicket;
use crate::types::{ChannelInfo, MemberInfo, PeerInfo, Presence, Role, SessionInfo, Visibility};

/// A request from a node. Every request but `register`, `login`, `visit`
/// and `resume` needs a signed-in connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// Create an account and sign this connection in as it.
    Register {
        username: String,
        password: String,
    },
    /// Sign in. A wrong username and a wrong password get the same answer.
    Login {
        username: String,
        password: String,
    },
    /// Sign in as a read-only visitor with only a display name.
    Visit {
        display_name: String,
    },
    /// Sign this connection in with the token of an earlier session.
    Resume {
        token: String,
    },
    /// End this session everywhere it is used.
    Logout,
    /// Who this connection is signed in as.
    Whoami,
    /// Announce this node's P2P address; the server adds it to the live
    /// peer list (`add_list`) and answers `listed`.
    SubmitInfo {
        #[cfg_attr(test, proptest(strategy = "crate::types::arb::socket_addr()"))]
        p2p_addr: SocketAddr,
        status: Option<Presence>,
    },
    /// Keep this connection's peer-list entry alive.
    Heartbeat,
    /// The live peers, all of them, those of one channel, or those of
    /// a few users (`users`, at most [`MAX_LIST_USERS`]; not with a
    /// channel).
    GetList {
        channel: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<String>,
    },
    /// Set the user's status (across all their sessions).
    SetStatus {
        status: Presence,
    },
    /// Whether the person is away from this connection's node (no input
    /// in any of its clients for a while). A user who chose `online` is
    /// shown `idle` while every one of their connections says so.
    SetActivity {
        idle: bool,
    },
    /// Create a channel owned by the signed-in user.
    CreateChannel {
        name: String,
        visibility: Visibility,
        allow_visitors: bool,
    },
    /// The channels the signed-in user or visitor may see.
    ListChannels,
    JoinChannel {
        channel: String,
    },
    LeaveChannel {
        channel: String,
    },
    /// Members of a channel, with presence as the asker may see it.
    Members {
        channel: String,
    },
    /// Authorise a user to join a private channel (owner or moderator).
    Invite {
        channel: String,
        username: String,
    },
    /// Change a channel's settings (owner or moderator). Each field is
    /// optional: absent leaves it as it is. `title` is the displayed name
    /// ("rename"): the channel's `name` is signed into every message and
    /// never changes. Answers `channel`.
    UpdateChannel {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visibility: Option<Visibility>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allow_visitors: Option<bool>,
    },
    /// Delete a channel (owner only): its members, invitations and the
    /// server's backup of its messages go with it. Answers `done`.
    DeleteChannel {
        channel: String,
    },
    /// A ticket binding this node's ed25519 key (hex) to the session.
    GetTicket {
        node_key: String,
    },
    /// Declare this node the live host of a channel the user owns.
    HostChannel {
        channel: String,
    },
    /// Host → server: store these messages in the backup (idempotent by
    /// id). Answered only once they are durable.
    Backup {
        channel: String,
        messages: Vec<Message>,
    },
    /// Member → server while the host is offline: store and notify.
    PostMessage {
        /// Boxed: a message is most of a request's size.
        message: Box<Message>,
    },
    /// Messages of the server's copy with server sequence numbers above
    /// `after_seq`, oldest first, at most `limit` (capped at 200).
    History {
        channel: String,
        after_seq: u64,
        limit: u32,
    },
    /// Start a livestream in a channel the user may write in (visitors:
    /// FORBIDDEN). Needs `submit_info` first: viewers reach the streamer
    /// at its announced addresses. The server pushes `stream_started` to
    /// everybody who may read the channel.
    StartStream {
        channel: String,
        width: u16,
        height: u16,
        fps: u8,
        codec: Codec,
    },
    /// End one of this connection's streams; pushes `stream_stopped`.
    StopStream {
        stream_id: u64,
    },
    /// The live streams, all those the asker may read or one channel's.
    ListStreams {
        channel: Option<String>,
    },
    /// The signed-in user's friends, friend requests (both ways) and
    /// blocks. Answers `relations`.
    Relations,
    /// Do something about another user: ask to be friends, accept, remove
    /// (unfriend, decline, cancel), block, unblock (`friends::apply`).
    /// Answers `relation`: what they are to the asker afterwards. When it
    /// changed, the asker's other connections and the other user are
    /// sent a `relation` event.
    Relate {
        username: String,
        action: FriendAction,
    },
    /// Publish this node's device keys for direct messages (registered
    /// users): its identity keys and one-time keys, each signed by the
    /// node key this connection authenticated (`devices`). A fallback
    /// key (`fallback: true`, at most one) replaces the last. New
    /// identity keys replace the device and drop its unused one-time
    /// keys. Answers `keys_published`.
    PublishKeys {
        device: DeviceKeys,
        #[serde(default)]
        one_time_keys: Vec<OneTimeKey>,
    },
    /// The devices of a user (your own other devices for your own name),
    /// each with a one-time key taken for you (or its fallback key) —
    /// except the devices whose Curve25519 key is in `have_sessions`
    /// (at most 64): you already hold a session with those, and they come
    /// without a key, so listing devices uses none up. Answers `devices`.
    ClaimKeys {
        username: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        have_sessions: Vec<String>,
    },
    /// Store envelopes for devices to fetch (registered users): each for
    /// one device of its `to` user, stored once per (device, id), pushed
    /// at once as a `dm` event to that device if it is connected.
    /// Answers `dm_stored`.
    SendDm {
        envelopes: Vec<Envelope>,
    },
    /// What waits for this connection's device, after `after_seq`,
    /// oldest first, at most `limit` (capped at 200). Answers `dms`.
    FetchDms {
        after_seq: u64,
        limit: u32,
    },
    /// This device has kept everything up to `up_to_seq`: the server
    /// deletes it. Answers `done`.
    AckDms {
        up_to_seq: u64,
    },
    /// A member who shared file `hash` in `channel` (a message the
    /// server's backup holds shares it) asks the server to keep a backup
    /// copy: the server fetches it from this connection's node over the
    /// blobs protocol, within its limits. For a direct message's file
    /// (encrypted: the server cannot read it) there is no `channel` and
    /// `dm` says its size and who may have it. Answers `file_kept`.
    FileBackup {
        #[serde(default)]
        channel: Option<String>,
        hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm: Option<DmBackup>,
    },
    /// A reader of `channel` (no channel: one of the users a direct
    /// message's file was backed up for) asks for the server's backup
    /// copy of file `hash`: granted, this connection's node key may fetch
    /// it over the blobs protocol from the server for an hour. Answers
    /// `file_source`; `404` when the server keeps no copy for it.
    FileSource {
        #[serde(default)]
        channel: Option<String>,
        hash: String,
    },
    /// This node is dialling node `node_id` (its key, hex) and may need
    /// the server's relay to get through: ask that node to come onto the
    /// relay for a while (it is sent `relay_wanted`). A node keeps no
    /// relay connection while nobody needs one. Answers `done` whether or
    /// not such a node is online; at most [`REACH_BURST`] at once, then
    /// one per [`REACH_EVERY_MS`] ms (`429` beyond).
    Reach {
        node_id: String,
    },
}

/// Most `reach` requests one connection may make at once.
pub const REACH_BURST: u32 = 16;
/// After the burst, one more `reach` per this many milliseconds.
pub const REACH_EVERY_MS: u64 = 500;

/// Most users one `get_list` may name.
pub const MAX_LIST_USERS: usize = 16;
/// Most peers one `get_list` answers with: the first by username (an
/// answer stays far below the frame limit however many are online).
pub const MAX_PEERS_LISTED: usize = 1_000;

/// What `file_backup` says of a file shared in a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DmBackup {
    /// The ciphertext's size: the server fetches no more.
    pub size: u64,
    /// The conversation's other members, who may fetch the copy (the
    /// sender may too).
    pub readers: Vec<String>,
}

impl Request {
    /// The operation's name as it appears in `"op"` and in logs.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Register { .. } => "register",
            Request::Login { .. } => "login",
            Request::Visit { .. } => "visit",
            Request::Resume { .. } => "resume",
            Request::Logout => "logout",
            Request::Whoami => "whoami",
            Request::SubmitInfo { .. } => "submit_info",
            Request::Heartbeat => "heartbeat",
            Request::GetList { .. } => "get_list",
            Request::SetStatus { .. } => "set_status",
            Request::SetActivity { .. } => "set_activity",
            Request::CreateChannel { .. } => "create_channel",
            Request::ListChannels => "list_channels",
            Request::JoinChannel { .. } => "join_channel",
            Request::LeaveChannel { .. } => "leave_channel",
            Request::Members { .. } => "members",
            Request::Invite { .. } => "invite",
            Request::UpdateChannel { .. } => "update_channel",
            Request::DeleteChannel { .. } => "delete_channel",
            Request::GetTicket { .. } => "get_ticket",
            Request::HostChannel { .. } => "host_channel",
            Request::Backup { .. } => "backup",
            Request::PostMessage { .. } => "post_message",
            Request::History { .. } => "history",
            Request::StartStream { .. } => "start_stream",
            Request::StopStream { .. } => "stop_stream",
            Request::ListStreams { .. } => "list_streams",
            Request::Relations => "relations",
            Request::Relate { .. } => "relate",
            Request::PublishKeys { .. } => "publish_keys",
            Request::ClaimKeys { .. } => "claim_keys",
            Request::SendDm { .. } => "send_dm",
            Request::FetchDms { .. } => "fetch_dms",
            Request::AckDms { .. } => "ack_dms",
            Request::FileBackup { .. } => "file_backup",
            Request::FileSource { .. } => "file_source",
            Request::Reach { .. } => "reach",
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    /// Answer to `register`, `login`, `visit`, `resume`, `whoami`.
    Session(SessionInfo),
    /// Answer to `submit_info`: the entry the server added to the list.
    Listed(PeerInfo),
    /// Answer to `heartbeat`.
    Pong { server_time_ms: u64 },
    /// Answer to `get_list`.
    Peers { peers: Vec<PeerInfo> },
    /// Answer to `create_channel`, `join_channel`, `invite`,
    /// `update_channel`.
    Channel(ChannelInfo),
    /// Answer to `list_channels`.
    Channels { channels: Vec<ChannelInfo> },
    /// Answer to `members`.
    Members {
        channel: String,
        members: Vec<MemberInfo>,
    },
    /// Answer to operations with nothing to return.
    Done,
    /// Answer to `get_ticket`.
    Ticket(SignedTicket),
    /// Answer to `host_channel`: the server's highest sequence number for
    /// the channel, so the host knows where to pull from.
    Hosting {
        channel: String,
        server_last_seq: u64,
    },
    /// Answer to `backup`: how many were new, and the server's highest
    /// sequence number for the channel afterwards.
    BackedUp {
        channel: String,
        stored: u32,
        server_last_seq: u64,
    },
    /// Answer to `post_message`.
    Stored {
        #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
        id: Uuid,
        seq: u64,
    },
    /// Answer to `history`.
    Messages {
        channel: String,
        messages: Vec<Sequenced>,
        has_more: bool,
    },
    /// Answer to `start_stream`.
    Stream(StreamInfo),
    /// Answer to `list_streams`.
    Streams { streams: Vec<StreamInfo> },
    /// Answer to `relations`: friends, requests both ways and blocks, by
    /// name.
    Relations { relations: Vec<Relation> },
    /// Answer to `relate`.
    Relation(Relation),
    /// Answer to `publish_keys`: the one-time keys the server now holds
    /// for this device (publish more when it runs low).
    KeysPublished { one_time_keys: u32 },
    /// Answer to `claim_keys`.
    Devices {
        username: String,
        devices: Vec<ClaimedDevice>,
    },
    /// Answer to `send_dm`: how many envelopes were new; the devices
    /// that were skipped because they are not (or no longer) a device of
    /// the user named (`gone`, node keys); and the users (among those
    /// named and the sender) with devices no envelope was for
    /// (`missing`): the sender claims their keys and sends them the same
    /// id.
    DmStored {
        stored: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gone: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing: Vec<String>,
    },
    /// Answer to `fetch_dms`.
    Dms {
        envelopes: Vec<Delivered>,
        has_more: bool,
    },
    /// Answer to `file_backup`: whether the server holds (or is fetching)
    /// a copy; if not, why.
    FileKept {
        hash: String,
        kept: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Answer to `file_source`: the server holds the file whole, at
    /// `size` bytes, and this node may fetch it.
    FileSource { hash: String, size: u64 },
}

/// Something the server pushes without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Event {
    /// A user who shares a channel with you changed presence. Never says
    /// `invisible` about somebody else.
    Presence { username: String, status: Presence },
    /// Somebody joined a channel you are a member of.
    MemberJoined {
        channel: String,
        username: String,
        role: Role,
    },
    /// Somebody left a channel you are a member of.
    MemberLeft { channel: String, username: String },
    /// A channel you can see was created.
    ChannelCreated { channel: ChannelInfo },
    /// A channel you can see had its settings changed (`update_channel`):
    /// its new info, as you see it. Sent to everyone who can see it
    /// after the change.
    ChannelUpdated { channel: ChannelInfo },
    /// A channel you could see is hidden from you now (its visibility or
    /// `allow_visitors` changed): forget it as if it were deleted; to you
    /// it no longer exists.
    ChannelHidden { channel: String },
    /// A channel you could see was deleted by its owner.
    ChannelDeleted { channel: String },
    /// You were invited to a private channel (by its owner or a
    /// moderator): it is now listed to you and you may join it.
    Invited { channel: ChannelInfo, by: String },
    /// Your session was ended (logged out from another node).
    SessionEnded { reason: String },
    /// Somebody's session ended (logout, a visitor leaving): the tickets
    /// issued to it are void. A host or streamer drops the links admitted
    /// under it and refuses its tickets until `expires_at_ms`, when the
    /// last of them expires anyway. Sent to every signed-in node.
    SessionRevoked {
        session_id: String,
        expires_at_ms: u64,
    },
    /// A channel's host node came online (with how to reach it) or went
    /// away. Sent to the channel's members.
    HostStatus {
        channel: String,
        host: Option<crate::types::NodeAddr>,
    },
    /// The server stored a message in a channel you belong to (or host):
    /// fetch it with `history`, or count it as unread.
    MessageNotice {
        channel: String,
        seq: u64,
        #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
        id: Uuid,
        author: String,
        /// How many new messages this notice stands for (a host's backup
        /// batch is one notice).
        count: u32,
    },
    /// A livestream started in a channel you may read.
    StreamStarted { stream: StreamInfo },
    /// What somebody is to you changed: a friend request arrived or was
    /// withdrawn, you became friends or stopped being friends, you
    /// blocked or unblocked them (a change you made reaches your other
    /// connections too, so your other nodes learn it). A user who blocks you is seen to
    /// unfriend you or withdraw, never to block.
    Relation(Relation),
    /// An envelope for this connection's device arrived (`send_dm`);
    /// it also waits in the mailbox until acknowledged.
    Dm(Delivered),
    /// A livestream ended: `stopped` (by its streamer),
    /// `streamer_disconnected` (its node's link closed) or
    /// `streamer_expired` (no heartbeat within the peer TTL).
    StreamStopped {
        stream_id: u64,
        channel: String,
        reason: String,
    },
    /// The node with key `node_id` (hex) is dialling this node and may
    /// need the server's relay to get through (it asked with `reach`, or
    /// it is the server itself): send a packet to it through the relay,
    /// which opens this node's relay connection for as long as it
    /// carries traffic. A node whose user is invisible does nothing.
    RelayWanted { node_id: String },
}

/// Every tracker event is JSON.
impl crate::frame::LinkEvent for Event {}
