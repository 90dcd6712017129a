//! Server settings. The binary fills them from defaults, a TOML file,
//! `SEGCHAT_` variables and flags; tests build them directly.

use std::path::PathBuf;
use std::time::Duration;

use segchat_log::LogConfig;

/// Everything [`crate::run`] needs besides a listener and a shutdown signal.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the SQLite database and the system log live.
    pub data_dir: PathBuf,
    /// The server's secret key (32 bytes, made if absent): by default
    /// `DATA_DIR/server.key`. Instances of one server share one.
    pub key_file: PathBuf,
    /// `sqlite://PATH` or a plain path; `None` means `DATA_DIR/server.db`.
    pub database_url: Option<String>,
    /// NATS server(s) linking several instances (`nats://host:port`,
    /// comma-separated); `None` runs alone.
    pub nats_url: Option<String>,
    /// How often nodes are asked to heartbeat.
    pub heartbeat: Duration,
    /// How long a peer stays listed without a heartbeat.
    pub peer_ttl: Duration,
    /// Largest frame accepted from a client.
    pub max_frame_len: usize,
    /// Failed sign-ins allowed per (account, source) within
    /// `login_window`; the only limit at a source the account has signed
    /// in from before.
    pub login_failures_per_account_source: u32,
    /// Failed sign-ins allowed per source (IPv4 address or IPv6 /64), across
    /// accounts, before the source waits a window (doubling on repeats).
    pub login_failures_per_source: u32,
    /// Failed sign-ins allowed per account from sources it has not signed
    /// in from before.
    pub login_failures_per_account: u32,
    pub login_window: Duration,
    /// argon2id computations run at once (each holds 19 MiB).
    pub hash_slots: usize,
    /// Sign-ins and registrations waiting for a slot before more are
    /// refused with UNAVAILABLE.
    pub hash_queue: usize,
    /// How long a connection may stay signed out after its hello (or its
    /// sign-out) before it is closed; also the longest a signed-in
    /// connection may stay silent (at least `peer_ttl`).
    pub signin_timeout: Duration,
    /// Connections one source (IPv4 address or IPv6 /64) may hold open.
    pub max_conns_per_source: usize,
    /// Events queued for one connection before it is cut off as too slow.
    pub outbound_queue: usize,
    /// The system log's directory and rotation.
    pub log: LogConfig,
    /// Largest message body accepted, in bytes.
    pub max_body_len: usize,
    /// How long a node's ticket is valid.
    pub ticket_lifetime: Duration,
    /// Changes others are told of (status, activity, joins and leaves,
    /// channel changes) one connection may make per second, after a
    /// burst of `changes_burst`; beyond that they are refused with
    /// RATE_LIMITED. Without a limit, one client toggling its status in
    /// a loop makes every instance fan an event out to all its channel
    /// mates per request.
    pub changes_per_second: u32,
    pub changes_burst: u32,
    /// How often the server checks that the sessions its connections are
    /// signed in with still exist (a logout elsewhere whose news was
    /// lost, an expiry).
    pub session_check: Duration,
    /// The largest file the server keeps a backup copy of, in bytes (0:
    /// none).
    pub file_backup_max: u64,
    /// Bytes of backup copies of files kept at most, all together.
    pub file_backup_total: u64,
}

impl ServerConfig {
    /// Defaults for a server keeping its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        ServerConfig {
            log: LogConfig::new(data_dir.join("logs")),
            key_file: data_dir.join("server.key"),
            data_dir,
            database_url: None,
            nats_url: None,
            heartbeat: Duration::from_secs(5),
            peer_ttl: Duration::from_secs(15),
            max_frame_len: segchat_proto::MAX_FRAME_LEN,
            login_failures_per_account_source: 5,
            login_failures_per_source: 20,
            login_failures_per_account: 50,
            login_window: Duration::from_secs(300),
            hash_slots: 4,
            hash_queue: 16,
            signin_timeout: Duration::from_secs(30),
            max_conns_per_source: 64,
            outbound_queue: 1024,
            max_body_len: segchat_proto::message::MAX_BODY_LEN,
            ticket_lifetime: Duration::from_secs(24 * 3600),
            changes_per_second: 10,
            changes_burst: 20,
            session_check: Duration::from_secs(30),
            file_backup_max: 64 << 20,
            file_backup_total: 4 << 30,
        }
    }

    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat.is_zero() {
            return Err("heartbeat interval must be above zero".into());
        }
        if self.peer_ttl <= self.heartbeat {
            return Err(format!(
                "peer TTL ({:?}) must be longer than the heartbeat interval ({:?})",
                self.peer_ttl, self.heartbeat
            ));
        }
        if self.max_frame_len < 1024 {
            return Err("max frame length must be at least 1024 bytes".into());
        }
        if self.max_body_len == 0 || self.max_body_len > segchat_proto::message::MAX_BODY_LEN * 16 {
            return Err(format!(
                "max body length must be between 1 and {} bytes",
                segchat_proto::message::MAX_BODY_LEN * 16
            ));
        }
        if self.hash_slots == 0 || self.hash_slots > 64 {
            return Err("hash slots must be between 1 and 64 (each holds 19 MiB)".into());
        }
        if self.signin_timeout.is_zero() {
            return Err("the sign-in timeout must be above zero".into());
        }
        if self.max_conns_per_source == 0 {
            return Err("a source must be allowed at least one connection".into());
        }
        if self.changes_per_second == 0 || self.changes_burst == 0 {
            return Err("a connection must be allowed at least one change a second".into());
        }
        if self.outbound_queue == 0 {
            return Err("outbound queue must hold at least one frame".into());
        }
        let on_postgres = self
            .database_url
            .as_deref()
            .is_some_and(crate::store::is_postgres);
        if self.nats_url.is_some() && !on_postgres {
            return Err(
                "--nats links instances that share one PostgreSQL: give --database postgres://… too"
                    .into(),
            );
        }
        Ok(())
    }
}
