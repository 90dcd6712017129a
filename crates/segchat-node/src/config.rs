//! Node settings. The binary fills them from defaults, a TOML file,
//! `SEGCHAT_` variables and flags; tests build them directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use segchat_log::LogConfig;

/// The largest file a node shares or fetches unless told otherwise.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 2 << 30;

/// How many bytes of other people's files a node keeps as a host's copy
/// unless told otherwise.
pub const DEFAULT_KEEP_FOR_OTHERS: u64 = 8 << 30;

/// Everything `Node::start` needs besides a shutdown signal.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The central server, as `host:port`; or several instances of it
    /// (sharing one database and one key), comma-separated, tried in turn.
    pub server_addr: String,
    /// Where `node.db`, `api.json` and `logs/` live.
    pub data_dir: PathBuf,
    /// The UDP address of the node's QUIC endpoint, which every P2P
    /// connection (peer links, livestreams) and the server link use
    /// (default `0.0.0.0:0`).
    pub p2p_listen: SocketAddr,
    /// The server's key (hex), from the user or an invite. Without it the
    /// node pins the key the server announces on first contact.
    pub server_key: Option<String>,
    /// Where to serve the local HTTP API (default `127.0.0.1:0`).
    pub api_listen: SocketAddr,
    /// The IP to announce to the server instead of the detected one.
    pub advertise_ip: Option<IpAddr>,
    /// The system log's directory and rotation (default `DATA_DIR/logs`).
    pub log: LogConfig,
    /// First wait before reconnecting to the server; doubles each failure.
    pub reconnect_min: Duration,
    /// Longest wait between reconnect attempts.
    pub reconnect_max: Duration,
    /// How long one connection attempt (TCP + handshake) may take.
    pub connect_timeout: Duration,
    /// How long a request to the server may wait for its answer.
    pub request_timeout: Duration,
    /// How long tasks get to finish after shutdown before being aborted.
    pub shutdown_grace: Duration,
    /// Test hook: drop a seeded share of the stream chunks received.
    pub stream_loss: Option<LossHook>,
    /// Where the server beside this node listens, when one process runs
    /// both (`segchat up`): the web UI's invite panel tells from it what
    /// friends can dial, or that only this machine can.
    pub share_server: Option<SocketAddr>,
    /// The largest file this node shares or fetches, in bytes; also the
    /// largest a member may share in a channel this node hosts.
    pub max_file_size: u64,
    /// At most this many bytes of copies kept for others: files shared in
    /// the channels this node hosts, fetched so they stay available while
    /// their sender is offline.
    pub keep_for_others: u64,
    /// At most this many bytes a second fetched for files, all fetches
    /// together (`None`: as fast as the seeders send).
    pub download_limit: Option<u64>,
    /// A person set *online* shows *idle* after this long without input
    /// in any of their clients (see `presence.rs`).
    pub idle_after: Duration,
    /// A file no message here shares any more (deleted, its channel
    /// left) is dropped from the blob store once it has been so for this
    /// long.
    pub files_unused_for: Duration,
    /// How often unshared files are looked for and their bytes collected.
    pub files_sweep_every: Duration,
}

/// How long a person set online may go without input before they show
/// idle (`NodeConfig::idle_after`'s default).
pub const IDLE_AFTER: Duration = Duration::from_secs(5 * 60);

/// What the node says it is, in `hello` frames and the API.
pub const AGENT: &str = concat!("segchat-node/", env!("CARGO_PKG_VERSION"));

/// A test hook: drop a seeded, deterministic share of the stream chunks
/// this node receives, as a lossy network would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossHook {
    /// Share of chunk datagrams dropped, in percent (0–100).
    pub percent: u8,
    pub seed: u64,
}

impl NodeConfig {
    /// Defaults for a node of the server at `server_addr` keeping its data
    /// in `data_dir`.
    pub fn new(server_addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        NodeConfig {
            server_addr: server_addr.into(),
            log: LogConfig::new(data_dir.join("logs")),
            data_dir,
            p2p_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            server_key: None,
            api_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            advertise_ip: None,
            share_server: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            keep_for_others: DEFAULT_KEEP_FOR_OTHERS,
            download_limit: None,
            idle_after: IDLE_AFTER,
            files_unused_for: Duration::from_secs(3600),
            files_sweep_every: Duration::from_secs(600),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(3),
            stream_loss: None,
        }
    }

    /// Checks values that would make the node misbehave; the error names
    /// the value.
    pub fn validate(&self) -> Result<(), String> {
        if self.server_addr.trim().is_empty() {
            return Err("server address is empty (expected host:port)".into());
        }
        for addr in server_addrs(&self.server_addr) {
            if !addr.contains(':') {
                return Err(format!(
                    "server address {addr:?} has no port (expected host:port)"
                ));
            }
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err(format!(
                "reconnect backoff must satisfy 0 < min ({:?}) <= max ({:?})",
                self.reconnect_min, self.reconnect_max
            ));
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err("connect and request timeouts must be above zero".into());
        }
        if let Some(key) = &self.server_key {
            segchat_net::parse_id(key).map_err(|e| format!("server key {key:?}: {e}"))?;
        }
        Ok(())
    }
}

/// The server instances a `server_addr` names, in the order to try them:
/// `host:port`, or several comma-separated (empty entries ignored).
pub fn server_addrs(server_addr: &str) -> Vec<&str> {
    server_addr
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let c = NodeConfig::new("127.0.0.1:22236", "/tmp/x");
        assert!(c.validate().is_ok());
        assert!(c.api_listen.ip().is_loopback());
        assert_eq!(c.log.dir, PathBuf::from("/tmp/x/logs"));
    }

    #[test]
    fn a_server_address_needs_a_port() {
        let c = NodeConfig::new("localhost", "/tmp/x");
        assert!(c.validate().expect_err("rejected").contains("no port"));
    }

    #[test]
    fn several_instances_are_comma_separated_and_each_needs_a_port() {
        assert_eq!(
            server_addrs(" a:1, b:2 ,,"),
            ["a:1", "b:2"],
            "spaces and empty entries ignored"
        );
        assert!(NodeConfig::new("a:1,b:2", "/tmp/x").validate().is_ok());
        let e = NodeConfig::new("a:1,b", "/tmp/x")
            .validate()
            .expect_err("rejected");
        assert!(e.contains("\"b\"") && e.contains("no port"), "{e}");
    }
}
