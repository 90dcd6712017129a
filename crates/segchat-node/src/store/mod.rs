//! The node's local store: SQLite in `DATA_DIR/node.db`, WAL mode, with
//! migrations from `migrations/` applied at start-up.
//!
//! Every method runs on tokio's blocking pool; the connection's mutex is
//! never held across an `.await`.
//!
//! # Layout
//!
//! - this file: [`Store`], opening, migrations, the WAL checkpointer, and
//!   [`StoreError`].
//! - `session.rs`: the signed-in session, resumed after a restart.
//! - `channels.rs`: the last channel list seen from the server.
//! - `messages.rs`: messages with their provenance; the hosted copy of
//!   the channels this node hosts, numbered by the host sequence.
//! - `outbox.rs`: what the user wrote and how far each message got.
//! - `cursors.rs`: the cursors, a member's gaps, and unread.
//! - `olm.rs`: this device's Olm state for direct messages (encrypted).
//! - `dms.rs`: direct messages (decrypted), their outbox and states, and
//!   how far the server mailbox was fetched.
//! - `search/`: the FTS5 index, filled in batches behind the messages,
//!   and search: every word a prefix, filters, newest first, paged by a
//!   keyset cursor, with the count of all matches.

mod channels;
mod cursors;
mod dm_edits;
mod dm_receipts;
mod dm_rows;
mod dm_sealed;
mod dms;
mod edits;
mod files;
mod messages;
mod olm;
mod outbox;
mod rows;
mod search;
mod session;

pub use channels::{CacheMark, CachedChannels};
pub use cursors::{Cursor, Unread};
pub use dm_receipts::Receipt;
pub(crate) use dm_rows::conversation_key;
pub use dm_rows::{DmRow, DmState};
pub(crate) use dm_sealed::SealedCopy;
pub use dms::{Conversation, Kept};
pub use edits::{acted_on, mentions};
pub use files::{FileRecord, FileState};
pub use messages::{Arrival, Inserted};
pub use rows::{DeliveryState, MessageRow, Quote, Reaction, Source};
pub use search::{BadSearch, SearchCursor, SearchPage, SearchQuery};
pub use session::StoredSession;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};

/// The migrations, in order. A file, once released, is never edited.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_messages.sql")),
    (3, include_str!("../../migrations/0003_search_index.sql")),
    (4, include_str!("../../migrations/0004_host_seen.sql")),
    (5, include_str!("../../migrations/0005_unread_since.sql")),
    (6, include_str!("../../migrations/0006_edits.sql")),
    (7, include_str!("../../migrations/0007_olm.sql")),
    (8, include_str!("../../migrations/0008_dms.sql")),
    (9, include_str!("../../migrations/0009_dm_edits.sql")),
    (10, include_str!("../../migrations/0010_dm_sealed.sql")),
    (11, include_str!("../../migrations/0011_files.sql")),
    (12, include_str!("../../migrations/0012_dm_files.sql")),
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
            params![version, crate::clock::now_ms() as i64],
        )?;
        tx.commit()?;
        tracing::debug!(version, "applied local store migration");
    }
    Ok(())
}
