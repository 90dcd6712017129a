//! The node's local store: SQLite in `DATA_DIR/node.db`, WAL mode, with
//! migrations from `migrations/` applied at start-up.
//!
//! Today it keeps the signed-in session (so the node resumes it after a
//! restart or reconnect) and the last channel list seen from the server.
//! Every method runs on tokio's blocking pool; the connection's mutex is
//! never held across an `.await`.

mod cursors;
mod messages;

pub use cursors::Cursor;
pub use messages::{Arrival, DeliveryState, Inserted, MessageRow, Source};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use segchat_proto::types::{AccountKind, ChannelInfo, Presence, SessionInfo};

/// The migrations, in order. A file, once released, is never edited.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_messages.sql")),
    (3, include_str!("../../migrations/0003_search_index.sql")),
    (4, include_str!("../../migrations/0004_host_seen.sql")),
];

/// How often the background checkpointer folds the log into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// Store failures. Callers log them; clients only see a generic error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store's worker thread failed: {0}")]
    Worker(String),
    #[error("could not set up the store's file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// The disk (or the file system holding the store) is full: SQLite's
    /// `SQLITE_FULL`, or an I/O error the OS reported as out of space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// The session this node signs in with after a (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub token: String,
    pub username: String,
    pub display_name: String,
    pub kind: AccountKind,
    pub session_id: String,
    pub status: Presence,
}

impl From<&SessionInfo> for StoredSession {
    fn from(s: &SessionInfo) -> Self {
        StoredSession {
            token: s.token.clone(),
            username: s.username.clone(),
            display_name: s.display_name.clone(),
            kind: s.kind,
            session_id: s.session_id.clone(),
            status: s.status,
        }
    }
}

/// The last channel list the server gave us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedChannels {
    pub channels: Vec<ChannelInfo>,
    pub fetched_at_ms: u64,
}

/// A cloneable handle to the local store.
#[derive(Debug, Clone)]
pub struct Store {
    /// The connection every write (and every read without a connection of
    /// its own) goes through, one call at a time.
    conn: Arc<Mutex<Connection>>,
    /// A read-only connection for reads that do not need to wait for the
    /// writers: a hosted channel's sequencer, which writes on `conn`, never
    /// waits for the backup reading its backlog or a page of history.
    /// (`None` in memory: reads use `conn`.)
    reader: Option<Arc<Mutex<Connection>>>,
    /// The database file (`None` in memory).
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it. The
    /// database and its `-wal` and `-shm` files are the owner's alone
    /// (0600): they hold the session token and every message.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        private_files(path)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Self::from_conn(conn)?;
        // Opened after the migrations, so it sees the current schema.
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        store.reader = Some(Arc::new(Mutex::new(reader)));
        store.path = Some(path.to_owned());
        // SQLite gives a new -wal or -shm the database's mode; ones left by
        // an older node are tightened here.
        private_files(path)?;
        Ok(store)
    }

    /// A throw-away store, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::from_conn(Connection::open_in_memory()?)
    }

    fn from_conn(mut conn: Connection) -> Result<Store, StoreError> {
        migrate(&mut conn)?;
        // Every statement on a hot path is prepared once (the default
        // cache of 16 is smaller than the set the node uses).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            reader: None,
            path: None,
        })
    }

    /// Moves the write-ahead log into the database every
    /// [`CHECKPOINT_EVERY`] from a connection of its own, until
    /// `shutdown`. While it runs, writers never checkpoint (by default the
    /// transaction that fills the log does it, fsync included, which put
    /// milliseconds on whichever hosted post was unlucky).
    pub async fn checkpoint_in_background(self, shutdown: tokio_util::sync::CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let opened = tokio::task::spawn_blocking(move || {
            let c = Connection::open(&path)?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok::<_, rusqlite::Error>(c)
        })
        .await;
        let checkpointer = match opened {
            Ok(Ok(c)) => Arc::new(Mutex::new(c)),
            Ok(Err(e)) => return tracing::warn!(error = %e, "no background checkpoints"),
            Err(e) => return tracing::warn!(error = %e, "no background checkpoints"),
        };
        if let Err(e) = self
            .with(|c| Ok(c.pragma_update(None, "wal_autocheckpoint", 0)?))
            .await
        {
            return tracing::warn!(error = %e, "writers keep checkpointing");
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            }
            let c = checkpointer.clone();
            let done = tokio::task::spawn_blocking(move || {
                let c = c
                    .lock()
                    .map_err(|_| StoreError::Worker("checkpointer poisoned".into()))?;
                c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
                Ok::<_, StoreError>(())
            })
            .await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "checkpoint failed; trying again");
            }
        }
        // Writers checkpoint again once nobody does it for them.
        let _ = self
            .with(|c| Ok(c.pragma_update(None, "wal_autocheckpoint", 1000)?))
            .await;
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        on_blocking_pool(self.conn.clone(), f).await
    }

    /// Runs `f`, which only reads, on the blocking pool with the read-only
    /// connection (the writers' connection in memory). It sees everything
    /// committed before it starts.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        on_blocking_pool(self.reader.as_ref().unwrap_or(&self.conn).clone(), f).await
    }

    /// Runs `f` with the connection on this thread. Blocks: only for
    /// threads of the node's own that exist to do store work.
    fn with_here<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        with_conn(&self.conn, f)
    }

    // ----- session -------------------------------------------------------

    /// Saves the session to resume (replacing any other). Signing in as
    /// somebody else also drops their cached channel list.
    pub async fn save_session(&self, s: StoredSession) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let previous: Option<String> = tx
                .query_row("SELECT username FROM session WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            if previous.as_deref() != Some(s.username.as_str()) {
                tx.execute("DELETE FROM channel_cache", [])?;
            }
            tx.execute(
                "INSERT INTO session (id, token, username, display_name, kind, session_id, status, saved_at_ms)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET token = ?1, username = ?2, display_name = ?3,
                    kind = ?4, session_id = ?5, status = ?6, saved_at_ms = ?7",
                params![
                    s.token,
                    s.username,
                    s.display_name,
                    kind_str(s.kind),
                    s.session_id,
                    s.status.as_str(),
                    crate::now_ms() as i64
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The session to resume, if any.
    pub async fn session(&self) -> Result<Option<StoredSession>, StoreError> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT token, username, display_name, kind, session_id, status FROM session WHERE id = 1",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((token, username, display_name, kind, session_id, status)) = row else {
                return Ok(None);
            };
            Ok(Some(StoredSession {
                token,
                username,
                display_name,
                kind: parse_kind(&kind)?,
                session_id,
                status: status.parse().map_err(StoreError::Corrupt)?,
            }))
        })
        .await
    }

    /// Records the user's own status.
    pub async fn set_session_status(&self, status: Presence) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "UPDATE session SET status = ?1 WHERE id = 1",
                params![status.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the session and everything cached for it.
    pub async fn forget_session(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM session", [])?;
            tx.execute("DELETE FROM channel_cache", [])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    // ----- channel cache -------------------------------------------------

    /// Replaces the cached channel list with `channels`, in their order.
    pub async fn cache_channels(&self, channels: Vec<ChannelInfo>) -> Result<(), StoreError> {
        self.with(move |c| {
            let now = crate::now_ms() as i64;
            let tx = c.transaction()?;
            tx.execute("DELETE FROM channel_cache", [])?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO channel_cache (name, info, position, fetched_at_ms) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (i, ch) in channels.iter().enumerate() {
                    let json = serde_json::to_string(ch)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    insert.execute(params![ch.name, json, i as i64, now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Adds or replaces one channel in the cache (after create or join), at
    /// the end if it is new.
    pub async fn cache_channel(&self, channel: ChannelInfo) -> Result<(), StoreError> {
        self.with(move |c| {
            let json =
                serde_json::to_string(&channel).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            c.execute(
                "INSERT INTO channel_cache (name, info, position, fetched_at_ms)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(position), -1) + 1 FROM channel_cache), ?3)
                 ON CONFLICT (name) DO UPDATE SET info = ?2, fetched_at_ms = ?3",
                params![channel.name, json, crate::now_ms() as i64],
            )?;
            Ok(())
        })
        .await
    }

    /// Drops one channel from the cache (after leaving it).
    pub async fn uncache_channel(&self, name: String) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute("DELETE FROM channel_cache WHERE name = ?1", params![name])?;
            Ok(())
        })
        .await
    }

    /// The cached channel list, or `None` if nothing was ever cached.
    pub async fn cached_channels(&self) -> Result<Option<CachedChannels>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT info, fetched_at_ms FROM channel_cache ORDER BY position")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut channels = Vec::new();
            let mut fetched_at_ms = None;
            for row in rows {
                let (json, at) = row?;
                channels.push(
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
                fetched_at_ms = Some(at as u64);
            }
            Ok(fetched_at_ms.map(|fetched_at_ms| CachedChannels {
                channels,
                fetched_at_ms,
            }))
        })
        .await
    }
}

/// Makes the database at `path` (created empty if missing) and any `-wal`
/// and `-shm` beside it readable and writable by the owner only.
fn private_files(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path).map_err(io)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Runs `f` with `conn` on tokio's blocking pool.
async fn on_blocking_pool<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || with_conn(&conn, f))
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
}

fn with_conn<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut guard = conn
        .lock()
        .map_err(|_| StoreError::Worker("store mutex poisoned".into()))?;
    f(&mut guard)
}

/// Applies every migration newer than the recorded version, each in its own
/// transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at_ms INTEGER NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)",
            params![version, crate::now_ms() as i64],
        )?;
        tx.commit()?;
        tracing::debug!(version, "applied local store migration");
    }
    Ok(())
}

fn kind_str(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::User => "user",
        AccountKind::Visitor => "visitor",
    }
}

fn parse_kind(s: &str) -> Result<AccountKind, StoreError> {
    match s {
        "user" => Ok(AccountKind::User),
        "visitor" => Ok(AccountKind::Visitor),
        other => Err(StoreError::Corrupt(format!(
            "unknown account kind {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segchat_proto::types::Visibility;

    fn session(name: &str) -> StoredSession {
        StoredSession {
            token: "t0k".into(),
            username: name.into(),
            display_name: name.into(),
            kind: AccountKind::User,
            session_id: "s1".into(),
            status: Presence::Online,
        }
    }

    fn channel(name: &str) -> ChannelInfo {
        ChannelInfo {
            name: name.into(),
            owner: "alice".into(),
            visibility: Visibility::Public,
            allow_visitors: true,
            created_at_ms: 1,
            member_count: 1,
            my_role: None,
            host: None,
        }
    }

    #[tokio::test]
    async fn session_round_trips_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        let store = Store::open(&path).expect("open");
        assert_eq!(store.session().await.expect("read"), None);
        store.save_session(session("alice")).await.expect("save");
        store
            .set_session_status(Presence::Invisible)
            .await
            .expect("status");
        drop(store);
        let store = Store::open(&path).expect("reopen runs no migration twice");
        let got = store.session().await.expect("read").expect("saved");
        assert_eq!(got.username, "alice");
        assert_eq!(got.status, Presence::Invisible);
        store.forget_session().await.expect("forget");
        assert_eq!(store.session().await.expect("read"), None);
    }

    #[tokio::test]
    async fn channel_cache_keeps_order_and_is_per_user() {
        let store = Store::open_in_memory().expect("open");
        assert_eq!(store.cached_channels().await.expect("read"), None);
        store.save_session(session("alice")).await.expect("save");
        store
            .cache_channels(vec![channel("zeta"), channel("alpha")])
            .await
            .expect("cache");
        let cached = store.cached_channels().await.expect("read").expect("some");
        let names: Vec<_> = cached.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        store.cache_channel(channel("beta")).await.expect("add");
        store.cache_channel(channel("zeta")).await.expect("replace");
        store.uncache_channel("alpha".into()).await.expect("drop");
        let cached = store.cached_channels().await.expect("read").expect("some");
        let names: Vec<_> = cached.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["zeta", "beta"]);
        // The same user again keeps the cache; somebody else drops it.
        store.save_session(session("alice")).await.expect("save");
        assert!(store.cached_channels().await.expect("read").is_some());
        store.save_session(session("bob")).await.expect("save");
        assert_eq!(store.cached_channels().await.expect("read"), None);
    }
}
