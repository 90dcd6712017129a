//! Why a node could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Start-up failures. Once started, a node does not fail: it reconnects.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not bind the {what} socket on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not open the local store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("could not open the system log in {dir}: {source}")]
    Log {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not write {path}: {source}")]
    ApiFile {
        path: PathBuf,
        source: std::io::Error,
    },
}
