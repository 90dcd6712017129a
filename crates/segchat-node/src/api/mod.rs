//! The local HTTP API (axum) and its WebSocket of events. Every route under
//! `/api/` needs `Authorization: Bearer TOKEN` (the WebSocket also takes
//! `?token=`); the token and URL are written to `DATA_DIR/api.json`, mode
//! 0600, so local tools can find the node, and to `DATA_DIR/api-last.json`,
//! which outlives the process: the next start takes the same port (if
//! free) and the same token, so open tabs and bookmarks keep working.
//!
//! Routes, all under `/api/v1`:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/node` | link state, addresses, session summary, the body limit, what to give people to join (`invite`) |
//! | GET, DELETE | `/session` | whoami; logout |
//! | POST | `/activity` | the person did something in a client (presence: idle after a while without) |
//! | POST | `/session/register`, `/session/login`, `/session/visit` | sign in |
//! | GET, PUT | `/status` | own status |
//! | GET, POST | `/channels` | list (cached when the server is down); create |
//! | PATCH, DELETE | `/channels/{name}` | change topic, title, visibility, visitors (owner or moderator); delete (owner) |
//! | POST | `/channels/{name}/join`, `/leave`, `/invite` | membership |
//! | GET | `/channels/{name}/members` | members with presence |
//! | GET | `/peers?channel=NAME` | the live peer list (`get_list`) |
//! | GET | `/friends` | friends, friend requests both ways, blocks |
//! | POST, DELETE | `/friends/{username}` | ask to be friends (accepts if they asked); unfriend, decline or cancel |
//! | POST | `/friends/{username}/accept` | accept a friend request |
//! | GET | `/dms` | direct-message conversations, newest first, with unread counts |
//! | GET, POST | `/dms/{users}` | a conversation's history (local); send an end-to-end encrypted message (`reply_to` for a reply) |
//! | PATCH, DELETE | `/dms/{users}/messages/{id}` | edit or delete one of the user's direct messages |
//! | PUT, DELETE | `/dms/{users}/messages/{id}/reactions/{emoji}` | add or take back the user's reaction |
//! | POST | `/dms/{users}/read` | mark a conversation read (tells the senders) |
//! | POST | `/dms/{users}/files` | share a file in a direct message, encrypted end to end |
//! | GET | `/dms/{user}/safety` | the safety number to compare with them out of band (every device key of both) |
//! | GET | `/dm-search?q=` | direct messages holding every word, newest first (local) |
//! | PUT, DELETE | `/blocks/{username}` | block; unblock |
//! | GET, POST | `/channels/{name}/messages` | history (local, newest first); send |
//! | POST | `/channels/{name}/read` | mark read |
//! | GET | `/search?q=&channel=&author=&before=&after=&limit=&cursor=` | full-text search of local history: every word a prefix, newest first, paged, with the count of all matches |
//! | GET | `/unread` | unread counts and how each channel is reached |
//! | GET, POST | `/streams` | livestreams: list; start (see `streams.rs`) |
//! | GET, DELETE | `/streams/{id}` | stream statistics; stop |
//! | POST, GET | `/streams/{id}/frames`, `/frame` | push a JPEG frame; newest frame |
//! | POST, DELETE | `/streams/{id}/watch` | watch a stream P2P; stop |
//! | GET | `/streams/{id}/ws` | WebSocket of a stream: JPEG frames, stats |
//! | GET | `/events` | WebSocket of events (JSON text messages) |
//! | GET | `/openapi.json` | the OpenAPI 3.1 document of all of this (no token) |
//!
//! The same server serves the web UI (`/`, `/assets/…`, see [`web`]),
//! which takes the token and address it needs as parameters (it never
//! sees [`ApiState`]); `token.rs` makes and compares tokens.
//! `server.rs` serves the router (connections, the header-read timeout,
//! `nosniff` on every response); `error.rs` is the one place failures
//! become responses.
//! Every request passes [`guard`] first: the Host check against DNS
//! rebinding, then the token (bearer, `?token=` on the WebSocket, or the
//! browser's cookie with its CSRF check).

mod channels;
mod dms;
mod error;
mod events;
mod files;
mod friends;
pub mod guard;
mod messages;
mod openapi;
mod server;
mod session;
mod streams;
mod token;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, patch, post, put};
use axum::Router;
use segchat_log::SystemLog;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use channels::{ChannelList, Deleted, Left, Members, Peers};
pub use error::{ApiError, Body, ErrorBody};
pub use messages::{SearchResults, Sent, Unread};
pub use session::{NodeView, SessionView, SignedOut, StatusBody};
pub use streams::{Started, StreamList, StreamStats};
pub use token::new_token;

use crate::chat::Chat;
use crate::dm::service::Dms;
use crate::events::EventBus;
use crate::link::LinkHandle;
use crate::store::Store;
use crate::stream::Streams;

/// How long a connection may take to send a whole request head (also
/// between requests on a kept-alive connection) before it is closed: a
/// local client that opens connections and sends nothing cannot hold them.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Name of the file, in the data directory, that tells local tools where
/// the API is.
pub const API_FILE: &str = "api.json";

/// Name of the file, in the data directory, that remembers the API's last
/// address and token (never removed), so a restarted node comes back where
/// its open tabs and bookmarks expect it. Deleting it gives the next start
/// a new token (and any free port).
pub const API_LAST_FILE: &str = "api-last.json";

/// Contents of `DATA_DIR/api.json` and `DATA_DIR/api-last.json`.
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
    /// The node key (hex).
    pub node_id: String,
    /// Where the server beside this node listens (`segchat up`), if it is.
    pub server_listen: Option<SocketAddr>,
    /// The node's QUIC endpoint, for the addresses it found on this
    /// machine's interfaces.
    pub endpoint: segchat_net::Endpoint,
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    activity: crate::presence::Activity,
    link: LinkHandle,
    bus: EventBus,
    chat: Chat,
    streams: Streams,
    dms: Dms,
    files: crate::files::Files,
    store: Store,
    log: SystemLog,
    token: String,
    addrs: NodeAddrs,
    shutdown: CancellationToken,
}

impl ApiState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        activity: crate::presence::Activity,
        link: LinkHandle,
        bus: EventBus,
        chat: Chat,
        streams: Streams,
        dms: Dms,
        files: crate::files::Files,
        store: Store,
        log: SystemLog,
        token: String,
        addrs: NodeAddrs,
        shutdown: CancellationToken,
    ) -> ApiState {
        ApiState {
            inner: Arc::new(Inner {
                activity,
                link,
                bus,
                chat,
                streams,
                dms,
                files,
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

    /// The API token (the web UI's cookie carries it).
    pub(crate) fn token(&self) -> &str {
        &self.inner.token
    }

    /// Where the API (and the web UI) listens.
    pub(crate) fn api_addr(&self) -> SocketAddr {
        self.inner.addrs.api
    }

    /// Records a system-log event about an operation done through the API.
    /// The source is the server the operation went to.
    fn record(&self, kind: &str, details: impl std::fmt::Display) {
        self.inner
            .log
            .record(kind, &self.inner.addrs.server_addr, details);
    }
}

/// The API's routes and the web UI, behind [`guard::guard`].
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/node", get(session::node))
        .route("/session", get(session::whoami).delete(session::logout))
        .route("/session/register", post(session::register))
        .route("/session/login", post(session::login))
        .route("/session/visit", post(session::visit))
        .route("/status", get(session::status).put(session::set_status))
        .route("/activity", post(session::activity))
        .route("/channels", get(channels::list).post(channels::create))
        .route(
            "/channels/{name}",
            patch(channels::update).delete(channels::delete),
        )
        .route("/channels/{name}/join", post(channels::join))
        .route("/channels/{name}/leave", post(channels::leave))
        .route("/channels/{name}/members", get(channels::members))
        .route("/channels/{name}/invite", post(channels::invite))
        .route("/peers", get(channels::peers))
        .route("/friends", get(friends::list))
        .route("/dms", get(dms::list))
        .route("/dm-search", get(dms::search))
        .route("/dms/{users}", get(dms::history).post(dms::send))
        .route("/dms/{users}/files", post(files::share_dm))
        .route("/dms/{users}/read", post(dms::mark_read))
        .route("/dms/{users}/safety", get(dms::safety))
        .route(
            "/dms/{users}/messages/{id}",
            patch(dms::edit).delete(dms::delete),
        )
        .route(
            "/dms/{users}/messages/{id}/reactions/{emoji}",
            put(dms::react).delete(dms::unreact),
        )
        .route(
            "/friends/{username}",
            post(friends::request).delete(friends::remove),
        )
        .route("/friends/{username}/accept", post(friends::accept))
        .route(
            "/blocks/{username}",
            put(friends::block).delete(friends::unblock),
        )
        .route(
            "/channels/{name}/messages",
            get(messages::history).post(messages::send),
        )
        .route(
            "/channels/{name}/messages/{id}",
            patch(messages::edit).delete(messages::delete),
        )
        .route(
            "/channels/{name}/messages/{id}/reactions/{emoji}",
            put(messages::react).delete(messages::unreact),
        )
        .route("/channels/{name}/read", post(messages::mark_read))
        .route("/search", get(messages::search))
        .route("/unread", get(messages::unread))
        .route("/streams", get(streams::list).post(streams::start))
        .route("/streams/{id}", get(streams::stats).delete(streams::stop))
        .route("/streams/{id}/frames", post(streams::push_frame))
        .route("/streams/{id}/frame", get(streams::latest_frame))
        .route(
            "/streams/{id}/watch",
            post(streams::watch).delete(streams::unwatch),
        )
        .route("/streams/{id}/ws", get(streams::socket))
        .route("/events", get(events::subscribe))
        .route("/channels/{name}/files", post(files::share))
        .route("/uploads", post(files::create_upload))
        .route(
            "/uploads/{id}",
            get(files::upload_status)
                .put(files::upload_part)
                .delete(files::cancel_upload),
        )
        .route("/files/{hash}", get(files::status))
        .route(
            "/files/{hash}/fetch",
            post(files::fetch).delete(files::cancel_fetch),
        )
        .route("/files/{hash}/content", get(files::content))
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .nest("/api/v1", v1)
        .merge(web::routes(state.token().to_owned(), state.api_addr()))
        .fallback(error::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        // Outermost, so the guard's refusals carry it too.
        .layer(middleware::map_response(server::nosniff))
        .with_state(state)
}

/// Serves the API until `shutdown` (see `server.rs`).
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: CancellationToken) {
    server::run(listener, router(state), shutdown).await;
}

/// Writes `api.json` and `api-last.json` readable by their owner only,
/// atomically. Returns the path of `api.json`.
pub fn write_api_file(data_dir: &Path, file: &ApiFile) -> std::io::Result<PathBuf> {
    write_private(data_dir, API_LAST_FILE, file)?;
    write_private(data_dir, API_FILE, file)
}

/// The address and token of the API when this data directory's node last
/// ran, if it remembers them (and they are well formed).
pub fn last_api(data_dir: &Path) -> Option<(SocketAddr, String)> {
    let bytes = std::fs::read(data_dir.join(API_LAST_FILE)).ok()?;
    let file: ApiFile = serde_json::from_slice(&bytes).ok()?;
    let addr = file.url.strip_prefix("http://")?.parse().ok()?;
    let well_formed = file.token.len() == 64 && file.token.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((addr, file.token))
}

fn write_private(data_dir: &Path, name: &str, file: &ApiFile) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!("{name}.tmp"));
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
    fn tokens_are_long() {
        assert_eq!(new_token().len(), 64);
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
        let last = std::fs::metadata(dir.path().join(API_LAST_FILE)).expect("last");
        assert_eq!(last.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_last_address_and_token_outlive_the_api_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(last_api(dir.path()), None, "a new data directory");
        let token = new_token();
        let file = ApiFile {
            url: "http://127.0.0.1:41533".into(),
            token: token.clone(),
        };
        write_api_file(dir.path(), &file).expect("write");
        remove_api_file(dir.path(), &token);
        assert_eq!(
            last_api(dir.path()),
            Some(("127.0.0.1:41533".parse().expect("addr"), token))
        );
    }

    #[test]
    fn a_malformed_last_token_is_not_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for token in ["short", &"g".repeat(64)] {
            let file = ApiFile {
                url: "http://127.0.0.1:41533".into(),
                token: token.to_owned(),
            };
            write_api_file(dir.path(), &file).expect("write");
            assert_eq!(last_api(dir.path()), None, "{token:?}");
        }
        std::fs::write(dir.path().join(API_LAST_FILE), b"not json").expect("write");
        assert_eq!(last_api(dir.path()), None);
    }
}
