//! The embedded SQLite backend. One connection behind a mutex; every call
//! runs on tokio's blocking pool so the async runtime never waits on disk.
//! WAL mode: a `kill -9` loses nothing that was committed. Channels,
//! members and invites are `channels.rs`; the message
//! backup (storing a batch, reading after a sequence number) is
//! `messages.rs`; how replies, edits, deletions and reactions change it
//! is `edits.rs`; reading sessions back and checking many at once is
//! `sessions.rs`.

mod channels;
mod devices;
mod edits;
mod mailbox;
mod messages;
mod relations;
mod sessions;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::types::{Presence, Role};

use super::text;
use segchat_proto::devices::ClaimedDevice;
use segchat_proto::files::FileRef;
use segchat_proto::friends::Pair;
use segchat_proto::mailbox::{Delivered, Envelope};
use segchat_proto::message::{Message, Sequenced};

use super::{
    ChannelRecord, ChannelUpdate, Inserted, MailboxUse, MemberRecord, MessageSource, NewChannel,
    PublishedKeys, RelationRecord, SessionRecord, Store, StoreError, StoreResult, TargetRecord,
    UserRecord,
};

/// Schema migrations, applied in order; the number is the schema version.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_messages.sql"),
    ),
    (3, include_str!("../../../migrations/sqlite/0003_edits.sql")),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_channel_settings.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_relations.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/sqlite/0006_devices.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/sqlite/0007_mailbox.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_mailbox_size.sql"),
    ),
    (9, include_str!("../../../migrations/sqlite/0009_files.sql")),
];

/// Creates the database file with mode 0600 before SQLite opens it (SQLite
/// gives the `-wal` and `-shm` files the database file's mode), and
/// narrows an existing database and its `-wal`/`-shm` to 0600: they hold
/// password hashes and session token hashes.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
        }
        if path != Path::new(":memory:") {
            make_private(path)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        // The statements on the message paths are prepared once (the
        // default cache of 16 is smaller than the set the server uses).
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("database lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("database task failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)",
            params![version, super::now_ms() as i64],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn user_record(row: (i64, String, String, String, i64)) -> StoreResult<UserRecord> {
    let (id, username, password_hash, status, created) = row;
    Ok(UserRecord {
        id,
        username,
        password_hash,
        status: text::presence(&status)?,
        created_at_ms: created as u64,
    })
}

const USER_COLUMNS: &str = "id, username, password_hash, status, created_at_ms";

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: u64,
    ) -> StoreResult<UserRecord> {
        let (username, password_hash) = (username.to_owned(), password_hash.to_owned());
        self.call(move |c| {
            let inserted = c.execute(
                "INSERT INTO users (username, username_key, password_hash, status, created_at_ms)
                 VALUES (?1, ?2, ?3, 'online', ?4)",
                params![
                    username,
                    username.to_lowercase(),
                    password_hash,
                    now_ms as i64
                ],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("username")),
                Err(e) => Err(e.into()),
                Ok(_) => Ok(UserRecord {
                    id: c.last_insert_rowid(),
                    username,
                    password_hash,
                    status: Presence::Online,
                    created_at_ms: now_ms,
                }),
            }
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let key = username.to_lowercase();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = ?1"),
                params![key],
                user_from_row,
            )
            .optional()?
            .map(user_record)
            .transpose()
        })
        .await
    }

    async fn usernames(&self) -> StoreResult<Vec<String>> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT username FROM users ORDER BY id")?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(names)
        })
        .await
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        self.call(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row(params![id], user_from_row)
                .optional()?
                .map(user_record)
                .transpose()
        })
        .await
    }

    async fn set_user_status(&self, user_id: i64, status: Presence) -> StoreResult<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE users SET status = ?1 WHERE id = ?2",
                params![status.as_str(), user_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let s = s.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO sessions (id, token_hash, user_id, display_name, kind,
                                       created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.token_hash,
                    s.user_id,
                    s.display_name,
                    text::kind_str(s.kind),
                    s.created_at_ms as i64,
                    s.expires_at_ms as i64
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> StoreResult<Option<SessionRecord>> {
        let token_hash = token_hash.to_owned();
        self.call(move |c| sessions::by_token_hash(c, &token_hash, now_ms))
            .await
    }

    async fn touch_session(&self, id: &str, expires_at_ms: u64) -> StoreResult<()> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE sessions SET expires_at_ms = ?1 WHERE id = ?2",
                params![expires_at_ms as i64, id],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
            Ok(())
        })
        .await
    }

    async fn delete_expired_sessions(&self, now_ms: u64) -> StoreResult<u64> {
        self.call(move |c| {
            let n = c.execute(
                "DELETE FROM sessions WHERE expires_at_ms <= ?1",
                params![now_ms as i64],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn live_sessions(&self, ids: Vec<String>, now_ms: u64) -> StoreResult<Vec<String>> {
        self.call(move |c| sessions::live(c, &ids, now_ms)).await
    }

    async fn create_channel(&self, ch: &NewChannel) -> StoreResult<ChannelRecord> {
        let ch = ch.clone();
        self.call(move |c| channels::create(c, &ch)).await
    }

    async fn channel_by_name(&self, name: &str) -> StoreResult<Option<ChannelRecord>> {
        let name = name.to_owned();
        self.call(move |c| channels::by_name(c, &name)).await
    }

    async fn list_channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        self.call(channels::list).await
    }

    async fn update_channel(
        &self,
        channel_id: i64,
        change: &ChannelUpdate,
    ) -> StoreResult<Option<ChannelRecord>> {
        let change = change.clone();
        self.call(move |c| channels::update(c, channel_id, &change))
            .await
    }

    async fn delete_channel(&self, channel_id: i64) -> StoreResult<bool> {
        self.call(move |c| channels::delete(c, channel_id)).await
    }

    async fn add_member(
        &self,
        channel_id: i64,
        user_id: i64,
        role: Role,
        now_ms: u64,
    ) -> StoreResult<bool> {
        self.call(move |c| channels::add_member(c, channel_id, user_id, role, now_ms))
            .await
    }

    async fn members(&self, channel_id: i64) -> StoreResult<Vec<MemberRecord>> {
        self.call(move |c| channels::members(c, channel_id)).await
    }

    async fn memberships(&self, user_id: i64) -> StoreResult<Vec<(i64, Role)>> {
        self.call(move |c| channels::memberships(c, user_id)).await
    }

    async fn watchers(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        self.call(move |c| channels::watchers(c, user_id)).await
    }

    async fn remove_member(&self, channel_id: i64, user_id: i64) -> StoreResult<bool> {
        self.call(move |c| channels::remove_member(c, channel_id, user_id))
            .await
    }

    async fn add_invite(
        &self,
        channel_id: i64,
        user_id: i64,
        invited_by: i64,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.call(move |c| channels::add_invite(c, channel_id, user_id, invited_by, now_ms))
            .await
    }

    async fn invitees(&self, channel_id: i64) -> StoreResult<Vec<i64>> {
        self.call(move |c| channels::invitees(c, channel_id)).await
    }

    async fn is_invited(&self, channel_id: i64, user_id: i64) -> StoreResult<bool> {
        self.call(move |c| channels::is_invited(c, channel_id, user_id))
            .await
    }

    async fn relations(&self, user_id: i64) -> StoreResult<Vec<RelationRecord>> {
        self.call(move |c| relations::of(c, user_id)).await
    }

    async fn relation_pair(&self, user_id: i64, other_id: i64) -> StoreResult<Pair> {
        self.call(move |c| relations::pair(c, user_id, other_id))
            .await
    }

    async fn change_relation(
        &self,
        user_id: i64,
        other_id: i64,
        expected: Pair,
        new: Pair,
        now_ms: u64,
    ) -> StoreResult<bool> {
        self.call(move |c| relations::change(c, user_id, other_id, expected, new, now_ms))
            .await
    }

    async fn blocked_by(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        self.call(move |c| relations::blocked_by(c, user_id)).await
    }

    async fn publish_keys(&self, keys: &PublishedKeys, max_one_time: u32) -> StoreResult<u32> {
        let keys = keys.clone();
        self.call(move |c| devices::publish(c, &keys, max_one_time))
            .await
    }

    async fn claim_keys(
        &self,
        user_id: i64,
        except_node: &str,
        have_sessions: &[String],
    ) -> StoreResult<Vec<ClaimedDevice>> {
        let except = except_node.to_owned();
        let have = have_sessions.to_vec();
        self.call(move |c| devices::claim(c, user_id, &except, &have))
            .await
    }

    async fn user_devices(&self, user_id: i64) -> StoreResult<Vec<(String, String)>> {
        self.call(move |c| devices::of_user(c, user_id)).await
    }

    async fn device_owner(&self, node_key: &str) -> StoreResult<Option<i64>> {
        let node_key = node_key.to_owned();
        self.call(move |c| devices::owner(c, &node_key)).await
    }

    async fn store_dms(
        &self,
        from: &str,
        from_node: &str,
        envelopes: &[Envelope],
        now_ms: u64,
    ) -> StoreResult<Vec<(String, Delivered)>> {
        let (from, from_node, envelopes) =
            (from.to_owned(), from_node.to_owned(), envelopes.to_vec());
        self.call(move |c| mailbox::store(c, &from, &from_node, &envelopes, now_ms))
            .await
    }

    async fn mailbox_use(&self, node_key: &str, from: &str) -> StoreResult<MailboxUse> {
        let (node_key, from) = (node_key.to_owned(), from.to_owned());
        self.call(move |c| mailbox::usage(c, &node_key, &from))
            .await
    }

    async fn dms_after(
        &self,
        node_key: &str,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Delivered>> {
        let node_key = node_key.to_owned();
        self.call(move |c| mailbox::after(c, &node_key, after_seq, limit))
            .await
    }

    async fn ack_dms(&self, node_key: &str, up_to_seq: u64) -> StoreResult<u64> {
        let node_key = node_key.to_owned();
        self.call(move |c| mailbox::ack(c, &node_key, up_to_seq))
            .await
    }

    async fn insert_messages(
        &self,
        channel_id: i64,
        messages: &[Message],
        source: MessageSource,
        now_ms: u64,
    ) -> StoreResult<Inserted> {
        let rows = messages::with_tickets(messages)?;
        self.call(move |c| messages::insert(c, channel_id, &rows, source, now_ms))
            .await
    }

    async fn messages_after(
        &self,
        channel_id: i64,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Sequenced>> {
        self.call(move |c| messages::after(c, channel_id, after_seq, limit))
            .await
    }

    async fn message_target(
        &self,
        channel_id: i64,
        id: uuid::Uuid,
    ) -> StoreResult<Option<TargetRecord>> {
        self.call(move |c| edits::target(c, channel_id, &id.to_string()))
            .await
    }

    async fn file_shared_in(&self, channel_id: i64, hash: &str) -> StoreResult<Option<FileRef>> {
        let hash = hash.to_owned();
        self.call(move |c| messages::file_shared_in(c, channel_id, &hash))
            .await
    }

    async fn last_seq(&self, channel_id: i64) -> StoreResult<u64> {
        self.call(move |c| messages::last_seq(c, channel_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteStore;
    use std::sync::Arc;

    fn fresh() -> Arc<dyn super::Store> {
        // Each test gets its own private in-memory database.
        Arc::new(SqliteStore::open(":memory:").expect("open"))
    }

    crate::store::suite::store_suite!(fresh());
}
