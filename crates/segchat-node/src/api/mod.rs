//! The local HTTP API (axum) and its WebSocket of events. Every route under
//! `/api/` needs `Authorization: Bearer TOKEN` (the WebSocket also takes
//! `?token=`); the token and URL are written to `DATA_DIR/api.json`, mode
//! 0600, so local tools can find the node.
//!
//! Routes, all under `/api/v1`:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/node` | link state, addresses, session summary |
//! | GET, DELETE | `/session` | whoami; logout |
//! | POST | `/session/register`, `/session/login`, `/session/visit` | sign in |
//! | GET, PUT | `/status` | own status |
//! | GET, POST | `/channels` | list (cached when the server is down); create |
//! | POST | `/channels/{name}/join`, `/leave`, `/invite` | membership |
//! | GET | `/channels/{name}/members` | members with presence |
//! | GET | `/peers?channel=NAME` | the live peer list (`get_list`) |
//! | GET, POST | `/channels/{name}/messages` | history (local, newest first); send |
//! | POST | `/channels/{name}/read` | mark read |
//! | GET | `/search?q=` | full-text search of local history |
//! | GET | `/unread` | unread counts and how each channel is reached |
//! | GET | `/events` | WebSocket of events (JSON text messages) |

mod channels;
mod error;
mod events;
mod messages;
mod session;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use segchat_log::SystemLog;
use segchat_proto::Failure;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use channels::{ChannelList, Left, Members, Peers};
pub use error::{ApiError, Body, ErrorBody};
pub use messages::{SearchResults, Sent, Unread};
pub use session::{NodeView, SessionView, SignedOut, StatusBody};

use crate::chat::Chat;
use crate::link::LinkHandle;
use crate::store::Store;

/// Name of the file, in the data directory, that tells local tools where
/// the API is.
pub const API_FILE: &str = "api.json";

/// Contents of `DATA_DIR/api.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFile {
    pub url: String,
    pub token: String,
}

/// Where the node's sockets are, for `GET /node`.
#[derive(Debug, Clone)]
pub struct NodeAddrs {
    pub server_addr: String,
    pub api: SocketAddr,
    pub p2p: SocketAddr,
    pub udp: SocketAddr,
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    link: LinkHandle,
    chat: Chat,
    store: Store,
    log: SystemLog,
    token: String,
    addrs: NodeAddrs,
    shutdown: CancellationToken,
}

impl ApiState {
    pub fn new(
        link: LinkHandle,
        chat: Chat,
        store: Store,
        log: SystemLog,
        token: String,
        addrs: NodeAddrs,
        shutdown: CancellationToken,
    ) -> ApiState {
        ApiState {
            inner: Arc::new(Inner {
                link,
                chat,
                store,
                log,
                token,
                addrs,
                shutdown,
            }),
        }
    }

    fn link(&self) -> &LinkHandle {
        &self.inner.link
    }

    /// Records a system-log event about an operation done through the API.
    /// The source is the server the operation went to.
    fn record(&self, kind: &str, details: impl std::fmt::Display) {
        self.inner
            .log
            .record(kind, &self.inner.addrs.server_addr, details);
    }
}

/// The API's routes, with the token check on everything under `/api/`.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/node", get(session::node))
        .route("/session", get(session::whoami).delete(session::logout))
        .route("/session/register", post(session::register))
        .route("/session/login", post(session::login))
        .route("/session/visit", post(session::visit))
        .route("/status", get(session::status).put(session::set_status))
        .route("/channels", get(channels::list).post(channels::create))
        .route("/channels/{name}/join", post(channels::join))
        .route("/channels/{name}/leave", post(channels::leave))
        .route("/channels/{name}/members", get(channels::members))
        .route("/channels/{name}/invite", post(channels::invite))
        .route("/peers", get(channels::peers))
        .route(
            "/channels/{name}/messages",
            get(messages::history).post(messages::send),
        )
        .route("/channels/{name}/read", post(messages::mark_read))
        .route("/search", get(messages::search))
        .route("/unread", get(messages::unread))
        .route("/events", get(events::subscribe));
    Router::new()
        .nest("/api/v1", v1)
        .fallback(error::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serves the API until `shutdown`.
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: CancellationToken) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the API server failed");
    }
}

/// Refuses every `/api/` request without the node's token.
async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let presented = bearer(&req).or_else(|| {
        // Browsers cannot set headers on a WebSocket; allow the query there.
        if req.uri().path().ends_with("/events") {
            query_token(req.uri().query())
        } else {
            None
        }
    });
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), state.inner.token.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => ApiError(Failure::unauthorized("wrong API token")).into_response(),
        None => ApiError(Failure::unauthorized(
            "missing API token: send Authorization: Bearer TOKEN (the token is in the node's api.json)",
        ))
        .into_response(),
    }
}

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_owned)
}

/// Compares without an early exit, so timing does not tell how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random API token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Writes `api.json` readable by its owner only, atomically.
pub fn write_api_file(data_dir: &Path, file: &ApiFile) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let path = data_dir.join(API_FILE);
    let tmp = data_dir.join(format!("{API_FILE}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    f.write_all(&json)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Removes `api.json` if it still names this node (another node may have
/// started in the same directory since).
pub fn remove_api_file(data_dir: &Path, token: &str) {
    let path = data_dir.join(API_FILE);
    let ours = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ApiFile>(&b).ok())
        .is_some_and(|f| f.token == token);
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert_eq!(new_token().len(), 64);
    }

    #[test]
    fn query_tokens() {
        assert_eq!(query_token(Some("a=1&token=xyz")).as_deref(), Some("xyz"));
        assert_eq!(query_token(Some("a=1")), None);
        assert_eq!(query_token(None), None);
    }

    #[cfg(unix)]
    #[test]
    fn api_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ApiFile {
            url: "http://127.0.0.1:1".into(),
            token: "t".into(),
        };
        let path = write_api_file(dir.path(), &file).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove_api_file(dir.path(), "other");
        assert!(path.exists(), "not ours: kept");
        remove_api_file(dir.path(), "t");
        assert!(!path.exists());
    }
}
