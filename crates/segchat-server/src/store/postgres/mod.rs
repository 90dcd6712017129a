//! The PostgreSQL backend, for a server that outgrows one machine: several
//! server instances share one database. A pool of connections
//! (`deadpool-postgres`), statements prepared once per connection, and the
//! same meaning as the SQLite backend, checked by the same `store_suite!`.
//!
//! Where the two differ, it is for concurrent writers:
//! - migrations run under an advisory lock, so instances started together
//!   migrate once;
//! - inserting messages locks the channel's row until the commit, so a
//!   channel's sequence numbers become visible in order whichever instance
//!   writes them (a reader that saw 11 never finds 10 appear later);
//! - bodies are `BYTEA`: they are signed as sent, and `TEXT` cannot hold
//!   U+0000.
//!
//! The parts: `channels.rs` the registry, members and invites,
//! `messages.rs` the backup (storing batches, reading after a
//! sequence number), `edits.rs` how replies, edits, deletions and
//! reactions change it, `records.rs` how rows read back as records,
//! `sql.rs` running a statement prepared once per connection, `tls.rs`
//! TLS as the URL asks for it (`sslmode`, `sslrootcert`).

mod channels;
mod devices;
mod edits;
mod mailbox;
mod messages;
mod records;
mod relations;
mod sql;
mod tls;

use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use segchat_proto::devices::ClaimedDevice;
use segchat_proto::files::FileRef;
use segchat_proto::friends::Pair;
use segchat_proto::mailbox::{Delivered, Envelope};
use segchat_proto::message::{Message, Sequenced};
use segchat_proto::types::{Presence, Role};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::text;
use super::{
    ChannelRecord, ChannelUpdate, Inserted, MailboxUse, MemberRecord, MessageSource, NewChannel,
    PublishedKeys, RelationRecord, SessionRecord, Store, StoreError, StoreResult, TargetRecord,
    UserRecord,
};
use records::{session_record, user_record, USER_COLUMNS};
use sql::{execute, row, rows};

/// Schema migrations, applied in order; the number is the schema version.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_relations.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_devices.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_mailbox.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_mailbox_size.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_files.sql"),
    ),
];

/// Connections per server instance: enough for every request task to find
/// one without a queue in normal load, few enough that a handful of
/// instances stay inside PostgreSQL's default `max_connections` (100).
const POOL_SIZE: usize = 16;

/// An arbitrary constant naming the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x5e6c_4a70;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("connections", &status.size)
            .field("idle", &status.available)
            .finish()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message says more than the client's wrapper.
        match e.as_db_error() {
            Some(db) => StoreError::Backend(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Backend(with_causes(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Backend(format!("database connection: {}", with_causes(&e)))
    }
}

/// An error and what caused it, down the chain: a connection's wrapper
/// says "error performing TLS handshake", its cause says which
/// certificate was refused and why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`,
    /// with `?host=/dir` for a Unix socket) and migrates it.
    pub async fn open(url: &str) -> StoreResult<PostgresStore> {
        let choice =
            tls::choose(url).map_err(|e| StoreError::Backend(format!("database URL: {e}")))?;
        let mut config = tokio_postgres::Config::from_str(&choice.url)
            .map_err(|e| StoreError::Backend(format!("database URL: {e}")))?;
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match choice.tls {
            Some(tls) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                Manager::from_config(config, tls, recycling())
            }
            None => Manager::from_config(config, NoTls, recycling()),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Backend(format!("database pool: {e}")))?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Held until the commit: a second instance waits here, then finds
        // the schema current.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)",
                &[&version, &(super::now_ms() as i64)],
            )
            .await?;
            tracing::info!(version, "applied schema migration (PostgreSQL)");
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: u64,
    ) -> StoreResult<UserRecord> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO users (username, username_key, password_hash, status, created_at_ms)
                 VALUES ($1, $2, $3, 'online', $4) RETURNING id",
            )
            .await?;
        let key = username.to_lowercase();
        match c
            .query_one(&stmt, &[&username, &key, &password_hash, &(now_ms as i64)])
            .await
        {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("username")),
            Err(e) => Err(e.into()),
            Ok(r) => Ok(UserRecord {
                id: r.try_get(0)?,
                username: username.to_owned(),
                password_hash: password_hash.to_owned(),
                status: Presence::Online,
                created_at_ms: now_ms,
            }),
        }
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1");
        row(&c, &sql, &[&username.to_lowercase()])
            .await?
            .map(|r| user_record(&r))
            .transpose()
    }

    async fn usernames(&self) -> StoreResult<Vec<String>> {
        let c = self.pool.get().await?;
        rows(&c, "SELECT username FROM users ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        row(&c, &sql, &[&id])
            .await?
            .map(|r| user_record(&r))
            .transpose()
    }

    async fn set_user_status(&self, user_id: i64, status: Presence) -> StoreResult<()> {
        let c = self.pool.get().await?;
        execute(
            &c,
            "UPDATE users SET status = $1 WHERE id = $2",
            &[&status.as_str(), &user_id],
        )
        .await?;
        Ok(())
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let c = self.pool.get().await?;
        execute(
            &c,
            "INSERT INTO sessions (id, token_hash, user_id, display_name, kind,
                                   created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &s.id,
                &s.token_hash,
                &s.user_id,
                &s.display_name,
                &text::kind_str(s.kind),
                &(s.created_at_ms as i64),
                &(s.expires_at_ms as i64),
            ],
        )
        .await?;
        Ok(())
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> StoreResult<Option<SessionRecord>> {
        let c = self.pool.get().await?;
        row(
            &c,
            "SELECT id, token_hash, user_id, display_name, kind, created_at_ms, expires_at_ms
             FROM sessions WHERE token_hash = $1 AND expires_at_ms > $2",
            &[&token_hash, &(now_ms as i64)],
        )
        .await?
        .map(|r| session_record(&r))
        .transpose()
    }

    async fn touch_session(&self, id: &str, expires_at_ms: u64) -> StoreResult<()> {
        let c = self.pool.get().await?;
        execute(
            &c,
            "UPDATE sessions SET expires_at_ms = $1 WHERE id = $2",
            &[&(expires_at_ms as i64), &id],
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, id: &str) -> StoreResult<()> {
        let c = self.pool.get().await?;
        execute(&c, "DELETE FROM sessions WHERE id = $1", &[&id]).await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now_ms: u64) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        execute(
            &c,
            "DELETE FROM sessions WHERE expires_at_ms <= $1",
            &[&(now_ms as i64)],
        )
        .await
    }

    async fn live_sessions(&self, ids: Vec<String>, now_ms: u64) -> StoreResult<Vec<String>> {
        let c = self.pool.get().await?;
        let found = rows(
            &c,
            "SELECT id FROM sessions WHERE id = ANY($1) AND expires_at_ms > $2",
            &[&ids, &(now_ms as i64)],
        )
        .await?;
        Ok(found.iter().map(|r| r.get(0)).collect())
    }

    async fn create_channel(&self, ch: &NewChannel) -> StoreResult<ChannelRecord> {
        channels::create(&mut self.pool.get().await?, ch).await
    }

    async fn channel_by_name(&self, name: &str) -> StoreResult<Option<ChannelRecord>> {
        channels::by_name(&self.pool.get().await?, name).await
    }

    async fn list_channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        channels::list(&self.pool.get().await?).await
    }

    async fn update_channel(
        &self,
        channel_id: i64,
        change: &ChannelUpdate,
    ) -> StoreResult<Option<ChannelRecord>> {
        channels::update(&mut self.pool.get().await?, channel_id, change).await
    }

    async fn delete_channel(&self, channel_id: i64) -> StoreResult<bool> {
        channels::delete(&mut self.pool.get().await?, channel_id).await
    }

    async fn add_member(
        &self,
        channel_id: i64,
        user_id: i64,
        role: Role,
        now_ms: u64,
    ) -> StoreResult<bool> {
        channels::add_member(&self.pool.get().await?, channel_id, user_id, role, now_ms).await
    }

    async fn members(&self, channel_id: i64) -> StoreResult<Vec<MemberRecord>> {
        channels::members(&self.pool.get().await?, channel_id).await
    }

    async fn memberships(&self, user_id: i64) -> StoreResult<Vec<(i64, Role)>> {
        channels::memberships(&self.pool.get().await?, user_id).await
    }

    async fn watchers(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        channels::watchers(&self.pool.get().await?, user_id).await
    }

    async fn remove_member(&self, channel_id: i64, user_id: i64) -> StoreResult<bool> {
        channels::remove_member(&self.pool.get().await?, channel_id, user_id).await
    }

    async fn add_invite(
        &self,
        channel_id: i64,
        user_id: i64,
        invited_by: i64,
        now_ms: u64,
    ) -> StoreResult<()> {
        channels::add_invite(
            &self.pool.get().await?,
            channel_id,
            user_id,
            invited_by,
            now_ms,
        )
        .await
    }

    async fn invitees(&self, channel_id: i64) -> StoreResult<Vec<i64>> {
        channels::invitees(&self.pool.get().await?, channel_id).await
    }

    async fn is_invited(&self, channel_id: i64, user_id: i64) -> StoreResult<bool> {
        channels::is_invited(&self.pool.get().await?, channel_id, user_id).await
    }

    async fn relations(&self, user_id: i64) -> StoreResult<Vec<RelationRecord>> {
        relations::of(&self.pool.get().await?, user_id).await
    }

    async fn relation_pair(&self, user_id: i64, other_id: i64) -> StoreResult<Pair> {
        relations::pair(&self.pool.get().await?, user_id, other_id).await
    }

    async fn change_relation(
        &self,
        user_id: i64,
        other_id: i64,
        expected: Pair,
        new: Pair,
        now_ms: u64,
    ) -> StoreResult<bool> {
        let mut c = self.pool.get().await?;
        relations::change(&mut c, user_id, other_id, expected, new, now_ms).await
    }

    async fn blocked_by(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        relations::blocked_by(&self.pool.get().await?, user_id).await
    }

    async fn publish_keys(&self, keys: &PublishedKeys, max_one_time: u32) -> StoreResult<u32> {
        devices::publish(&mut self.pool.get().await?, keys, max_one_time).await
    }

    async fn claim_keys(
        &self,
        user_id: i64,
        except_node: &str,
        have_sessions: &[String],
    ) -> StoreResult<Vec<ClaimedDevice>> {
        let c = &mut self.pool.get().await?;
        devices::claim(c, user_id, except_node, have_sessions).await
    }

    async fn user_devices(&self, user_id: i64) -> StoreResult<Vec<(String, String)>> {
        devices::of_user(&self.pool.get().await?, user_id).await
    }

    async fn device_owner(&self, node_key: &str) -> StoreResult<Option<i64>> {
        devices::owner(&self.pool.get().await?, node_key).await
    }

    async fn store_dms(
        &self,
        from: &str,
        from_node: &str,
        envelopes: &[Envelope],
        now_ms: u64,
    ) -> StoreResult<Vec<(String, Delivered)>> {
        let mut c = self.pool.get().await?;
        mailbox::store(&mut c, from, from_node, envelopes, now_ms).await
    }

    async fn mailbox_use(&self, node_key: &str, from: &str) -> StoreResult<MailboxUse> {
        mailbox::usage(&self.pool.get().await?, node_key, from).await
    }

    async fn dms_after(
        &self,
        node_key: &str,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Delivered>> {
        mailbox::after(&self.pool.get().await?, node_key, after_seq, limit).await
    }

    async fn ack_dms(&self, node_key: &str, up_to_seq: u64) -> StoreResult<u64> {
        mailbox::ack(&self.pool.get().await?, node_key, up_to_seq).await
    }

    async fn insert_messages(
        &self,
        channel_id: i64,
        messages: &[Message],
        source: MessageSource,
        now_ms: u64,
    ) -> StoreResult<Inserted> {
        let mut c = self.pool.get().await?;
        messages::insert(&mut c, channel_id, messages, source, now_ms).await
    }

    async fn messages_after(
        &self,
        channel_id: i64,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Sequenced>> {
        let c = self.pool.get().await?;
        messages::after(&c, channel_id, after_seq, limit).await
    }

    async fn file_shared_in(&self, channel_id: i64, hash: &str) -> StoreResult<Option<FileRef>> {
        let c = self.pool.get().await?;
        messages::file_shared_in(&c, channel_id, hash).await
    }

    async fn last_seq(&self, channel_id: i64) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        messages::last_seq(&c, channel_id).await
    }

    async fn message_target(
        &self,
        channel_id: i64,
        id: uuid::Uuid,
    ) -> StoreResult<Option<TargetRecord>> {
        let c = self.pool.get().await?;
        edits::target(&c, channel_id, &id.to_string()).await
    }
}

#[cfg(test)]
mod tests {
    use super::PostgresStore;
    use std::sync::Arc;

    async fn fresh() -> Arc<dyn super::Store> {
        // Each test gets a database of its own on the test process's
        // private PostgreSQL server.
        let url = segchat_pgtest::fresh_database().await;
        Arc::new(PostgresStore::open(&url).await.expect("open"))
    }

    crate::store::suite::store_suite!(fresh().await);

    #[tokio::test]
    async fn a_second_instance_opening_the_database_finds_it_migrated() {
        let url = segchat_pgtest::fresh_database().await;
        let (a, b) = tokio::join!(PostgresStore::open(&url), PostgresStore::open(&url));
        let (a, b) = (a.expect("first"), b.expect("second"));
        use super::Store;
        a.create_user("ann", "h", 1).await.expect("user on a");
        let found = b.user_by_name("ANN").await.expect("read on b");
        assert_eq!(found.map(|u| u.username).as_deref(), Some("ann"));
    }
}
