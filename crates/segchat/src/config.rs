//! Settings layering: defaults < the TOML file (`--config`) < `SEGCHAT_*`
//! variables < flags. Clap already merged the last two (a flag wins over
//! its variable); here the file and the defaults fill what is left, and
//! the result is validated with an error that names the value.
//!
//! ```toml
//! data_dir = "/srv/segchat"        # `up` only: parent of server/ and node/
//!
//! [server]
//! listen = "0.0.0.0:22236"
//! data_dir = "/srv/segchat/server"
//! database = "sqlite:///srv/segchat/server/server.db"
//! key_file = "/srv/segchat/server/server.key"
//! heartbeat_secs = 5
//! peer_ttl_secs = 15
//! log_max_records = 10000
//! log_keep = 10
//!
//! [node]
//! server = "chat.example.org:22236"
//! data_dir = "/home/me/.local/share/segchat/node"
//! p2p = "0.0.0.0:0"
//! server_key = "…64 hex characters…"
//! api = "127.0.0.1:0"
//! advertise = "203.0.113.7"
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use segchat_node::NodeConfig;
use segchat_server::ServerConfig;
use serde::Deserialize;

use crate::cli::{NodeArgs, ServerArgs};

/// The server's default port.
pub(crate) const DEFAULT_PORT: u16 = segchat_proto::DEFAULT_SERVER_PORT;

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) data_dir: Option<PathBuf>,
    #[serde(default)]
    pub(crate) server: ServerFile,
    #[serde(default)]
    pub(crate) node: NodeFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub(crate) listen: Option<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) database: Option<String>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) nats: Option<String>,
    pub(crate) heartbeat_secs: Option<f64>,
    pub(crate) peer_ttl_secs: Option<f64>,
    pub(crate) log_max_records: Option<u64>,
    pub(crate) log_keep: Option<usize>,
    pub(crate) signin_timeout_secs: Option<f64>,
    pub(crate) max_conns_per_source: Option<usize>,
    pub(crate) changes_per_second: Option<u32>,
    pub(crate) changes_burst: Option<u32>,
    pub(crate) file_backup_mib: Option<u64>,
    pub(crate) file_backup_total_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeFile {
    pub(crate) server: Option<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) p2p: Option<String>,
    pub(crate) server_key: Option<String>,
    pub(crate) api: Option<String>,
    pub(crate) advertise: Option<String>,
    pub(crate) idle_after: Option<u64>,
    pub(crate) max_file_mib: Option<u64>,
    pub(crate) download_limit_mib: Option<u64>,
    pub(crate) keep_for_others_mib: Option<u64>,
}

/// Reads the settings file, if one was given.
pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// The platform's data directory for segchat, e.g.
/// `~/.local/share/segchat`.
pub(crate) fn default_root() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("segchat")
}

/// A flag/variable value, else the file's (parsed, errors naming the key),
/// else nothing.
fn layered<T: FromStr>(flag: Option<T>, file: Option<&str>, key: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    if flag.is_some() {
        return Ok(flag);
    }
    match file {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e| anyhow!("invalid {key} {s:?} in the config file: {e}")),
    }
}

fn secs(value: f64, name: &str) -> anyhow::Result<Duration> {
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 {
        bail!("invalid {name} {value}: expected a number of seconds above 0 (and at most a day)");
    }
    Ok(Duration::from_secs_f64(value))
}

/// The server's listen address and settings.
pub(crate) fn server(
    data_dir: Option<PathBuf>,
    args: &ServerArgs,
    file: &FileConfig,
) -> anyhow::Result<(SocketAddr, ServerConfig)> {
    let f = &file.server;
    let listen = layered(args.listen, f.listen.as_deref(), "server.listen")?
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)));
    let data_dir = data_dir
        .or_else(|| f.data_dir.clone())
        .unwrap_or_else(|| default_root().join("server"));
    let mut config = ServerConfig::new(data_dir);
    if let Some(path) = args.key_file.clone().or_else(|| f.key_file.clone()) {
        config.key_file = path;
    }
    config.database_url = args.database.clone().or_else(|| f.database.clone());
    config.nats_url = args.nats.clone().or_else(|| f.nats.clone());
    if let Some(h) = args.heartbeat_secs.or(f.heartbeat_secs) {
        config.heartbeat = secs(h, "--heartbeat-secs")?;
    }
    if let Some(t) = args.peer_ttl_secs.or(f.peer_ttl_secs) {
        config.peer_ttl = secs(t, "--peer-ttl-secs")?;
    }
    if let Some(t) = args.signin_timeout_secs.or(f.signin_timeout_secs) {
        config.signin_timeout = secs(t, "--signin-timeout-secs")?;
    }
    if let Some(n) = args.max_conns_per_source.or(f.max_conns_per_source) {
        config.max_conns_per_source = n;
    }
    if let Some(n) = args.changes_per_second.or(f.changes_per_second) {
        config.changes_per_second = n;
    }
    if let Some(n) = args.changes_burst.or(f.changes_burst) {
        config.changes_burst = n;
    }
    if let Some(mib) = args.file_backup_mib.or(f.file_backup_mib) {
        if mib > 16_384 {
            bail!("invalid server.file_backup_mib {mib}: 0 to 16384");
        }
        config.file_backup_max = mib << 20;
    }
    if let Some(mib) = args.file_backup_total_mib.or(f.file_backup_total_mib) {
        if mib > 16_777_216 {
            bail!("invalid server.file_backup_total_mib {mib}: 0 to 16777216");
        }
        config.file_backup_total = mib << 20;
    }
    if let Some(n) = args.log_max_records.or(f.log_max_records) {
        if n == 0 {
            bail!("invalid --log-max-records 0: a log file holds at least one record");
        }
        config.log.max_records = n;
    }
    if let Some(n) = args.log_keep.or(f.log_keep) {
        config.log.keep_files = n;
    }
    config
        .validate()
        .map_err(|e| anyhow!("invalid server configuration: {e}"))?;
    Ok((listen, config))
}

/// The node's settings.
pub(crate) fn node(
    data_dir: Option<PathBuf>,
    args: &NodeArgs,
    file: &FileConfig,
) -> anyhow::Result<NodeConfig> {
    let f = &file.node;
    let server = args
        .server
        .clone()
        .or_else(|| f.server.clone())
        .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
    let data_dir = data_dir
        .or_else(|| f.data_dir.clone())
        .unwrap_or_else(|| default_root().join("node"));
    let mut config = NodeConfig::new(server, data_dir);
    if let Some(p2p) = layered(args.p2p, f.p2p.as_deref(), "node.p2p")? {
        config.p2p_listen = p2p;
    }
    config.server_key = args.server_key.clone().or_else(|| f.server_key.clone());
    if let Some(api) = layered(args.api, f.api.as_deref(), "node.api")? {
        config.api_listen = api;
    }
    config.advertise_ip =
        layered::<IpAddr>(args.advertise, f.advertise.as_deref(), "node.advertise")?;
    if let Some(secs) = args.idle_after.or(f.idle_after) {
        config.idle_after = std::time::Duration::from_secs(secs.max(1));
    }
    if let Some(mib) = args.max_file_mib.or(f.max_file_mib) {
        if !(1..=16_384).contains(&mib) {
            bail!("invalid node.max_file_mib {mib}: 1 to 16384");
        }
        config.max_file_size = mib << 20;
    }
    if let Some(mib) = args.download_limit_mib.or(f.download_limit_mib) {
        config.download_limit = Some(mib.max(1) << 20);
    }
    if let Some(mib) = args.keep_for_others_mib.or(f.keep_for_others_mib) {
        if mib > 16_777_216 {
            bail!("invalid node.keep_for_others_mib {mib}: 0 to 16777216");
        }
        config.keep_for_others = mib << 20;
    }
    if !config.api_listen.ip().is_loopback() {
        tracing::warn!(
            api = %config.api_listen,
            "the node API listens beyond this machine; anyone who reads api.json's token can use it"
        );
    }
    config
        .validate()
        .map_err(|e| anyhow!("invalid node configuration: {e}"))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_fills_what_flags_leave() {
        let file: FileConfig = toml::from_str(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            heartbeat_secs = 1
            peer_ttl_secs = 3
            [node]
            server = "example.org:9000"
            api = "127.0.0.1:7000"
            "#,
        )
        .expect("toml");
        let args = ServerArgs {
            heartbeat_secs: Some(0.5),
            ..ServerArgs::default()
        };
        let (listen, config) = server(Some("/tmp/s".into()), &args, &file).expect("valid");
        assert_eq!(listen, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(
            config.heartbeat,
            Duration::from_millis(500),
            "the flag wins"
        );
        assert_eq!(config.peer_ttl, Duration::from_secs(3), "the file fills in");

        let n = node(None, &NodeArgs::default(), &file).expect("valid");
        assert_eq!(n.server_addr, "example.org:9000");
        assert_eq!(n.api_listen, "127.0.0.1:7000".parse().expect("addr"));
    }

    #[test]
    fn errors_name_the_value() {
        let file: FileConfig = toml::from_str("[node]\np2p = \"nope\"").expect("toml");
        let e = node(None, &NodeArgs::default(), &file).expect_err("invalid");
        assert!(e.to_string().contains("node.p2p"), "{e}");
        let args = ServerArgs {
            heartbeat_secs: Some(-1.0),
            ..ServerArgs::default()
        };
        let e = server(None, &args, &FileConfig::default()).expect_err("invalid");
        assert!(e.to_string().contains("--heartbeat-secs"), "{e}");
        assert!(toml::from_str::<FileConfig>("[server]\nlisten_on = 1").is_err());
    }
}
