//! How stored messages read back: the API's row ([`MessageRow`], with
//! where its copy came from and how far the user's own message got) and
//! the whole signed message, with the columns each needs. Below every
//! other part of the store that reads messages.

use segchat_proto::edits::{RefKind, Target};
use segchat_proto::files::FileRef;
use segchat_proto::message::{Columns, Message};
use serde::Serialize;

use super::StoreError;

/// Where a copy of a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The channel's host, over the P2P link.
    Host,
    /// The server's backup.
    Server,
    /// Written on this node.
    Local,
}

impl Source {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Source::Host => "host",
            Source::Server => "server",
            Source::Local => "local",
        }
    }
    fn parse(s: &str) -> Result<Source, StoreError> {
        match s {
            "host" => Ok(Source::Host),
            "server" => Ok(Source::Server),
            "local" => Ok(Source::Local),
            _ => Err(StoreError::Corrupt(format!("unknown source {s:?}"))),
        }
    }
}

/// Where a message the user wrote has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// In the outbox, not yet acknowledged by anyone.
    Pending,
    /// The channel's host stored it.
    Stored,
    /// The server's backup has it.
    BackedUp,
    /// Refused; `reason` says why.
    Refused,
}

impl DeliveryState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Stored => "stored",
            DeliveryState::BackedUp => "backed_up",
            DeliveryState::Refused => "refused",
        }
    }
    pub(super) fn parse(s: &str) -> Result<DeliveryState, StoreError> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "stored" => Ok(DeliveryState::Stored),
            "backed_up" => Ok(DeliveryState::BackedUp),
            "refused" => Ok(DeliveryState::Refused),
            _ => Err(StoreError::Corrupt(format!("unknown state {s:?}"))),
        }
    }
}

/// A stored message as the API shows it: a plain message or a reply, as
/// the edits, deletion and reactions pointing at it left it (those are
/// never rows of their own here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRow {
    pub id: String,
    pub channel: String,
    pub author: String,
    pub ts_ms: u64,
    /// The text shown: the latest edit's, or empty once deleted.
    pub body: String,
    /// Where this node's copy came from.
    pub source: Source,
    /// The host's P2P address or the server's address it came from.
    pub from: Option<String>,
    pub host_seq: Option<u64>,
    pub server_seq: Option<u64>,
    /// For messages written on this node.
    pub state: Option<DeliveryState>,
    pub reason: Option<String>,
    /// The message this one replies to.
    pub reply_to: Option<String>,
    /// That message as it is shown now, if this node has it.
    pub quote: Option<Quote>,
    /// When it was last edited.
    pub edited_ms: Option<u64>,
    pub deleted: bool,
    /// The file it shares (gone once deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileRef>>,
    pub reactions: Vec<Reaction>,
    /// Whether the body mentions this node's user as `@name`.
    pub mentions_me: bool,
    #[serde(skip)]
    pub local_id: i64,
}

/// The message a reply quotes, as shown now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    pub id: String,
    pub author: String,
    pub body: String,
    pub deleted: bool,
    /// The name of the file it shares, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: u32,
    /// Who reacted, in the order they did.
    pub users: Vec<String>,
    /// Whether this node's user is one of them.
    pub me: bool,
}

/// Most kinds of emoji one message shows reactions with (as many chats
/// have): acts with further kinds are kept but not counted, so a member
/// cannot make a message carry a list without end.
pub(super) const MAX_REACTION_KINDS: usize = 20;

/// Reactions by emoji from `acts` (emoji, user, whether a react rather
/// than an unreact), oldest first: a user's latest act for an emoji
/// decides; emoji in the order each first came, at most
/// [`MAX_REACTION_KINDS`] of them.
pub(super) fn tally(
    acts: impl IntoIterator<Item = (String, String, bool)>,
    is_me: impl Fn(&str) -> bool,
) -> Vec<Reaction> {
    use std::collections::HashMap;
    // (emoji, user) → reacted, in the order each pair first came.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut latest: HashMap<(String, String), bool> = HashMap::new();
    for (emoji, user, on) in acts {
        let pair = (emoji, user);
        if !latest.contains_key(&pair) {
            order.push(pair.clone());
        }
        latest.insert(pair, on);
    }
    let mut out: Vec<Reaction> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (emoji, user) in order {
        if !latest[&(emoji.clone(), user.clone())] {
            continue;
        }
        let mine = is_me(&user);
        match index.get(&emoji) {
            Some(&i) => {
                let r = &mut out[i];
                r.count += 1;
                r.me |= mine;
                r.users.push(user);
            }
            None if out.len() < MAX_REACTION_KINDS => {
                index.insert(emoji.clone(), out.len());
                out.push(Reaction {
                    emoji,
                    count: 1,
                    users: vec![user],
                    me: mine,
                });
            }
            None => {}
        }
    }
    out
}

/// The columns [`row`] reads, shown text in place of the body.
pub(super) const ROW_COLUMNS: &str =
    "m.local_id, m.id, m.channel, m.author, m.ts_ms, COALESCE(m.shown, m.body), m.source, \
     m.source_addr, m.host_seq, m.server_seq, m.state, m.reason, m.re_kind, m.re_id, \
     m.edited_ms, m.deleted, m.file";

/// Which rows of `messages m` are shown messages (not edits, deletions
/// or reactions).
pub(super) const SHOWN: &str = "(m.re_kind IS NULL OR m.re_kind = 'reply')";

pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        local_id: r.get(0)?,
        id: r.get(1)?,
        channel: r.get(2)?,
        author: r.get(3)?,
        ts_ms: r.get(4)?,
        body: r.get(5)?,
        source: r.get(6)?,
        from: r.get(7)?,
        host_seq: r.get(8)?,
        server_seq: r.get(9)?,
        state: r.get(10)?,
        reason: r.get(11)?,
        re_kind: r.get(12)?,
        re_id: r.get(13)?,
        edited_ms: r.get(14)?,
        deleted: r.get(15)?,
        file: r.get(16)?,
    })
}

pub(super) struct RawRow {
    local_id: i64,
    id: String,
    channel: String,
    author: String,
    ts_ms: i64,
    body: String,
    source: String,
    from: Option<String>,
    host_seq: Option<i64>,
    server_seq: Option<i64>,
    state: Option<String>,
    reason: Option<String>,
    re_kind: Option<String>,
    re_id: Option<String>,
    edited_ms: Option<i64>,
    deleted: bool,
    file: Option<String>,
}

impl MessageRow {
    /// What an edit, deletion or reaction pointing at this message needs
    /// to know of it (a shown row is a plain message or a reply).
    pub fn as_target(&self) -> Target<'_> {
        Target {
            channel: &self.channel,
            author: &self.author,
            kind: self.reply_to.as_ref().map(|_| RefKind::Reply),
        }
    }
}

impl RawRow {
    /// The row as the API shows it, before [`super::edits::decorate`]
    /// adds its quote, reactions and mention.
    pub(super) fn cook(self) -> Result<MessageRow, StoreError> {
        let reply_to = match self.re_kind.as_deref() {
            Some("reply") => self.re_id,
            _ => None,
        };
        Ok(MessageRow {
            local_id: self.local_id,
            id: self.id,
            channel: self.channel,
            author: self.author,
            ts_ms: self.ts_ms as u64,
            body: self.body,
            source: Source::parse(&self.source)?,
            from: self.from,
            host_seq: self.host_seq.map(|v| v as u64),
            server_seq: self.server_seq.map(|v| v as u64),
            state: self
                .state
                .as_deref()
                .map(DeliveryState::parse)
                .transpose()?,
            reason: self.reason,
            reply_to,
            quote: None,
            edited_ms: self.edited_ms.map(|v| v as u64),
            deleted: self.deleted,
            file: self
                .file
                .map(|f| serde_json::from_str(&f).map(Box::new))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message file: {e}")))?,
            reactions: Vec::new(),
            mentions_me: false,
        })
    }
}

/// The columns [`full_message`] reads: a whole signed message.
pub(super) const MESSAGE_COLUMNS: &str =
    "id, channel, author, ts_ms, body, ticket, signature, re_kind, re_id, redacted, file";

/// A whole signed message from a row selected with [`MESSAGE_COLUMNS`]
/// first.
pub(super) fn full_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Message, StoreError>> {
    let columns = Columns {
        id: r.get(0)?,
        channel: r.get(1)?,
        author: r.get(2)?,
        ts_ms: r.get(3)?,
        body: r.get(4)?,
        ticket: r.get(5)?,
        signature: r.get(6)?,
        re_kind: r.get(7)?,
        re_id: r.get(8)?,
        redacted: r.get(9)?,
        file: r.get(10)?,
    };
    Ok(columns.into_message().map_err(StoreError::Corrupt))
}
