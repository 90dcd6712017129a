//! Durable state behind one trait, so a second backend (PostgreSQL) slots
//! in beside SQLite. Methods are grouped per aggregate in create / read /
//! update / delete order.
//!
//! Records here are storage shapes; [`crate::ops`] turns them into the
//! protocol's types, applying who-may-see-what on the way.

mod postgres;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use segchat_proto::devices::{ClaimedDevice, DeviceKeys, OneTimeKey};
use segchat_proto::files::FileRef;
use segchat_proto::friends::{Pair, RelationKind};
use segchat_proto::mailbox::{Delivered, Envelope};
use segchat_proto::message::{Message, Sequenced};
use segchat_proto::types::{AccountKind, Presence, Role, Visibility};

/// A storage failure. `Conflict` is the only one a client may learn about
/// in detail; everything else becomes a generic server error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Backend(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub status: Presence,
    pub created_at_ms: u64,
}

/// A session (registered user or visitor) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub token_hash: String,
    pub user_id: Option<i64>,
    pub display_name: String,
    pub kind: AccountKind,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A channel with its owner's name and member count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    pub owner: String,
    pub visibility: Visibility,
    pub allow_visitors: bool,
    pub created_at_ms: u64,
    pub member_count: u32,
    /// The displayed name its owner chose; `""` shows `name`.
    pub title: String,
    /// `""` when unset.
    pub topic: String,
}

/// What [`Store::update_channel`] changes: each `None` keeps the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelUpdate {
    pub title: Option<String>,
    pub topic: Option<String>,
    pub visibility: Option<Visibility>,
    pub allow_visitors: Option<bool>,
}

/// What [`Store::create_channel`] needs.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub owner_id: i64,
    pub visibility: Visibility,
    pub allow_visitors: bool,
    pub created_at_ms: u64,
}

/// One member of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub status: Presence,
}

/// What another user is to a user, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRecord {
    pub other_id: i64,
    pub username: String,
    pub kind: RelationKind,
    pub since_ms: u64,
}

/// What [`Store::publish_keys`] stores: a device's keys as it published
/// them (already verified), under the session it is signed in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeys {
    pub user_id: i64,
    pub session_id: String,
    pub device: DeviceKeys,
    pub one_time_keys: Vec<OneTimeKey>,
    /// Replaces the stored one when given.
    pub fallback_key: Option<OneTimeKey>,
    pub now_ms: u64,
}

/// The server's durable state.
/// What waits in one device's mailbox: envelopes and their bodies'
/// bytes, in all and from one sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUse {
    pub envelopes: u64,
    pub bytes: u64,
    pub sender_envelopes: u64,
    pub sender_bytes: u64,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // --- accounts ---

    /// Creates an account; `Conflict` if the name is taken in any case.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: u64,
    ) -> StoreResult<UserRecord>;
    /// Finds an account by name, case-insensitively.
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// Every account's name (read once at start, to know which visitor
    /// names would pass for a user).
    async fn usernames(&self) -> StoreResult<Vec<String>>;
    /// Finds an account by id.
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    /// Records the status the user chose (online, idle or invisible).
    async fn set_user_status(&self, user_id: i64, status: Presence) -> StoreResult<()>;

    // --- sessions ---

    /// Stores a new session.
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// Finds an unexpired session by the hash of its token.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Pushes a session's expiry forward.
    async fn touch_session(&self, id: &str, expires_at_ms: u64) -> StoreResult<()>;
    /// Ends a session.
    async fn delete_session(&self, id: &str) -> StoreResult<()>;
    /// Removes every session that expired before `now_ms`; returns how many.
    async fn delete_expired_sessions(&self, now_ms: u64) -> StoreResult<u64>;
    /// Which of `ids` are sessions that exist and have not expired at
    /// `now_ms` (in no particular order).
    async fn live_sessions(&self, ids: Vec<String>, now_ms: u64) -> StoreResult<Vec<String>>;

    // --- channels ---

    /// Creates a channel and makes its owner a member with role `owner`;
    /// `Conflict` if the name is taken.
    async fn create_channel(&self, channel: &NewChannel) -> StoreResult<ChannelRecord>;
    /// Finds a channel by name.
    async fn channel_by_name(&self, name: &str) -> StoreResult<Option<ChannelRecord>>;
    /// Every channel, by name.
    async fn list_channels(&self) -> StoreResult<Vec<ChannelRecord>>;
    /// Changes a channel's settings (the fields of `change` that are
    /// set); the channel afterwards, or `None` if there is no such
    /// channel.
    async fn update_channel(
        &self,
        channel_id: i64,
        change: &ChannelUpdate,
    ) -> StoreResult<Option<ChannelRecord>>;
    /// Deletes a channel with its members, invitations and every message
    /// of its backup, in one transaction; false if there was no such
    /// channel.
    async fn delete_channel(&self, channel_id: i64) -> StoreResult<bool>;

    // --- memberships and invitations ---

    /// Adds a member; returns false if they already were one.
    async fn add_member(
        &self,
        channel_id: i64,
        user_id: i64,
        role: Role,
        now_ms: u64,
    ) -> StoreResult<bool>;
    /// The members of a channel, owner first, then by name.
    async fn members(&self, channel_id: i64) -> StoreResult<Vec<MemberRecord>>;
    /// The user's role in each channel they belong to, by channel id.
    async fn memberships(&self, user_id: i64) -> StoreResult<Vec<(i64, Role)>>;
    /// The ids of every user told of `user_id`'s presence: those sharing
    /// at least one channel with them and their friends, less those they
    /// blocked (never themself).
    async fn watchers(&self, user_id: i64) -> StoreResult<Vec<i64>>;
    /// Removes a member; returns false if they were not one.
    async fn remove_member(&self, channel_id: i64, user_id: i64) -> StoreResult<bool>;
    /// Authorises a user to join a private channel.
    async fn add_invite(
        &self,
        channel_id: i64,
        user_id: i64,
        invited_by: i64,
        now_ms: u64,
    ) -> StoreResult<()>;
    /// The ids of every user invited to the channel.
    async fn invitees(&self, channel_id: i64) -> StoreResult<Vec<i64>>;
    /// Whether the user holds an invitation to the channel.
    async fn is_invited(&self, channel_id: i64, user_id: i64) -> StoreResult<bool>;

    // --- friends and blocks ---

    /// What others are to `user_id` (friends, requests both ways,
    /// blocks), by name.
    async fn relations(&self, user_id: i64) -> StoreResult<Vec<RelationRecord>>;
    /// Both halves of the relation between two users.
    async fn relation_pair(&self, user_id: i64, other_id: i64) -> StoreResult<Pair>;
    /// In one transaction: if the pair is still `expected`, makes it
    /// `new` (a half that changes is stamped `now_ms`) and answers true;
    /// answers false, changing nothing, if it changed meanwhile (another
    /// request, perhaps on another instance, got there first).
    async fn change_relation(
        &self,
        user_id: i64,
        other_id: i64,
        expected: Pair,
        new: Pair,
        now_ms: u64,
    ) -> StoreResult<bool>;
    /// The ids of the users who blocked `user_id`.
    async fn blocked_by(&self, user_id: i64) -> StoreResult<Vec<i64>>;

    // --- device keys (direct messages) ---

    /// In one transaction: stores or replaces the device (new identity
    /// keys, or another user or session on the same node key, drop its
    /// one-time keys and fallback key), adds the one-time keys it does not
    /// hold yet while it holds fewer than `max_one_time`, and sets the
    /// fallback key if one is given. Answers how many one-time keys the
    /// device holds afterwards.
    async fn publish_keys(&self, keys: &PublishedKeys, max_one_time: u32) -> StoreResult<u32>;
    /// In one transaction: every device of `user_id` but `except_node`,
    /// each with one of its one-time keys, deleted as it is taken (so
    /// none is handed out twice), or else its fallback key; a device whose
    /// Curve25519 key is in `have_sessions` comes without a key.
    async fn claim_keys(
        &self,
        user_id: i64,
        except_node: &str,
        have_sessions: &[String],
    ) -> StoreResult<Vec<ClaimedDevice>>;

    /// The user a device (node key) is published for.
    async fn device_owner(&self, node_key: &str) -> StoreResult<Option<i64>>;

    /// `user_id`'s devices as (node key, Curve25519 key), by node key.
    async fn user_devices(&self, user_id: i64) -> StoreResult<Vec<(String, String)>>;

    // --- the mailbox (encrypted direct messages) ---

    /// In one transaction: stores each envelope for its `to_node` unless
    /// that device holds one with its id already, as from `from` on node
    /// `from_node`. Answers what was new, with its sequence number, by
    /// device (one message is an envelope per device, all with its id).
    async fn store_dms(
        &self,
        from: &str,
        from_node: &str,
        envelopes: &[Envelope],
        now_ms: u64,
    ) -> StoreResult<Vec<(String, Delivered)>>;
    /// What waits for the device: in all, and from the user `from`.
    async fn mailbox_use(&self, node_key: &str, from: &str) -> StoreResult<MailboxUse>;
    /// What waits for the device after `after_seq`, oldest first, at
    /// most `limit`.
    async fn dms_after(
        &self,
        node_key: &str,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Delivered>>;
    /// Deletes what waits for the device up to `up_to_seq`; how many.
    async fn ack_dms(&self, node_key: &str, up_to_seq: u64) -> StoreResult<u64>;

    // --- messages (the backup) ---

    /// Stores messages that are not stored yet (by id), durably, in one
    /// transaction.
    async fn insert_messages(
        &self,
        channel_id: i64,
        messages: &[Message],
        source: MessageSource,
        now_ms: u64,
    ) -> StoreResult<Inserted>;
    /// The file `hash` as a message in `channel_id` shares it (not
    /// deleted), if one does.
    async fn file_shared_in(&self, channel_id: i64, hash: &str) -> StoreResult<Option<FileRef>>;
    /// Messages of a channel with sequence numbers above `after_seq`,
    /// oldest first, at most `limit`.
    async fn messages_after(
        &self,
        channel_id: i64,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Sequenced>>;
    /// The channel's highest sequence number (0 when empty).
    async fn last_seq(&self, channel_id: i64) -> StoreResult<u64>;
    /// What the backup knows of message `id` in the channel, for checking
    /// an edit, deletion or reaction that points at it.
    async fn message_target(
        &self,
        channel_id: i64,
        id: uuid::Uuid,
    ) -> StoreResult<Option<TargetRecord>>;
}

/// A stored message as an action pointing at it needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    pub author: String,
    /// Its own `re` kind (an action cannot be acted on).
    pub kind: Option<segchat_proto::edits::RefKind>,
    pub deleted: bool,
}

/// What [`Store::insert_messages`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// How many messages were new.
    pub new: u32,
    /// Each message's sequence number, new or already stored, in order.
    pub seqs: Vec<u64>,
    /// The channel's highest sequence number afterwards.
    pub last_seq: u64,
}

/// How a message reached the server's backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageSource {
    /// Streamed by the channel's host.
    Host,
    /// Posted by a member while the host was offline.
    Member,
}

impl MessageSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MessageSource::Host => "host",
            MessageSource::Member => "member",
        }
    }
}

/// Whether a database URL names PostgreSQL (`postgres://…` or
/// `postgresql://…`) rather than SQLite.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store a database URL names: `postgres://…` (or
/// `postgresql://…`), `sqlite://PATH`, or a plain path (SQLite).
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if is_postgres(url) {
        return Ok(std::sync::Arc::new(PostgresStore::open(url).await?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    Ok(std::sync::Arc::new(SqliteStore::open(path)?))
}

/// The wall clock in ms since the epoch (0 if it is before 1970), for what
/// a backend stamps itself (schema migrations).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Text forms used by every backend's columns.
pub(crate) mod text {
    use super::StoreError;
    use segchat_proto::types::{AccountKind, Presence, Role, Visibility};

    pub(crate) fn presence(s: &str) -> Result<Presence, StoreError> {
        s.parse().map_err(StoreError::Corrupt)
    }
    pub(crate) fn visibility(s: &str) -> Result<Visibility, StoreError> {
        s.parse().map_err(StoreError::Corrupt)
    }
    pub(crate) fn role(s: &str) -> Result<Role, StoreError> {
        match s {
            "owner" => Ok(Role::Owner),
            "moderator" => Ok(Role::Moderator),
            "member" => Ok(Role::Member),
            _ => Err(StoreError::Corrupt(format!("unknown role {s:?}"))),
        }
    }
    pub(crate) fn kind(s: &str) -> Result<AccountKind, StoreError> {
        match s {
            "user" => Ok(AccountKind::User),
            "visitor" => Ok(AccountKind::Visitor),
            _ => Err(StoreError::Corrupt(format!("unknown account kind {s:?}"))),
        }
    }
    pub(crate) fn relation(s: &str) -> Result<segchat_proto::friends::RelationKind, StoreError> {
        s.parse().map_err(StoreError::Corrupt)
    }
    pub(crate) fn kind_str(k: AccountKind) -> &'static str {
        match k {
            AccountKind::User => "user",
            AccountKind::Visitor => "visitor",
        }
    }
}
