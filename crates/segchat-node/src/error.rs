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

/// The one place a local store failure becomes an answer (to the API, or
/// to a member posting to a channel this node hosts). A full disk is said
/// as such, with `507`: the user can do something about it. Anything else
/// is a generic error; the details go to the log only.
pub(crate) fn store_failure(e: crate::store::StoreError) -> segchat_proto::Failure {
    use segchat_proto::{Failure, Status};
    if e.is_disk_full() {
        tracing::error!(error = %e, "the local store is out of disk space");
        return Failure::new(
            Status::InsufficientStorage,
            "this node's disk is full; free space and try again",
        );
    }
    tracing::error!(error = %e, "local store failed");
    Failure::new(
        Status::ServerError,
        "internal error in the node; see its log",
    )
}
