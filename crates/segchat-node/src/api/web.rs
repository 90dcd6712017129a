//! The web UI: plain HTML, CSS and ES modules from `web/`, compiled into
//! the binary, so a node serves its UI with no install or build step.
//!
//! - `GET /` serves the page. `GET /?token=TOKEN` (the link `segchat up`
//!   prints) sets the token as an `HttpOnly`, `SameSite=Strict` cookie and
//!   redirects to `/`, so the token leaves the address bar and history;
//!   the page then calls the API with that cookie and `X-Segchat: 1`
//!   (see [`super::guard`]).
//! - `GET /assets/NAME` serves one asset with its content type and an
//!   `ETag`; browsers revalidate (`no-cache`) and get `304` while the
//!   binary is the same.
//!
//! Every response carries a strict Content-Security-Policy (scripts and
//! styles only from this origin), `X-Frame-Options: DENY` and
//! `Referrer-Policy: no-referrer`.

use std::collections::HashMap;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::token::{constant_time_eq, cookie_name};

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything under `web/` that the page loads.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("messages.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("channel-settings.js", JS),
    asset!("channels.js", JS),
    asset!("composer.js", JS),
    asset!("create-dialog.js", JS),
    asset!("dm-compose.js", JS),
    asset!("dm-messages.js", JS),
    asset!("dms.js", JS),
    asset!("dom.js", JS),
    asset!("events.js", JS),
    asset!("file-view.js", JS),
    asset!("files.js", JS),
    asset!("format.js", JS),
    asset!("friends.js", JS),
    asset!("header.js", JS),
    asset!("invite.js", JS),
    asset!("markdown.js", JS),
    asset!("members.js", JS),
    asset!("mentions.js", JS),
    asset!("message-actions.js", JS),
    asset!("messages.js", JS),
    asset!("page-listeners.js", JS),
    asset!("panel.js", JS),
    asset!("reactions.js", JS),
    asset!("search.js", JS),
    asset!("session.js", JS),
    asset!("sidebar.js", JS),
    asset!("signin.js", JS),
    asset!("state.js", JS),
    asset!("streams.js", JS),
    asset!("timeline-keys.js", JS),
    asset!("timeline.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The link that opens the web UI signed in, as `segchat up` prints it:
/// `http://127.0.0.1:PORT/?token=TOKEN`. A wildcard bind is opened through
/// loopback (the only names the node answers to).
pub fn ui_url(api: std::net::SocketAddr, token: &str) -> String {
    let host = if api.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), api.port())
    } else {
        api
    };
    format!("http://{host}/?token={token}")
}

/// What the sign-in link checks and sets: the API token, and where the
/// API listens (the cookie's name carries the port).
#[derive(Debug)]
struct SignIn {
    token: String,
    api: SocketAddr,
}

/// The web UI's routes (merged into the API router, behind its guard),
/// for the API at `api` with `token`.
pub(crate) fn routes<S>(token: String, api: SocketAddr) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let signin = Arc::new(SignIn { token, api });
    Router::new()
        .route(
            "/",
            get(
                move |q: Query<HashMap<String, String>>, headers: HeaderMap| {
                    index(signin.clone(), q, headers)
                },
            ),
        )
        .route("/favicon.ico", get(favicon))
        .route("/assets/{file}", get(asset))
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// FNV-1a: a stable, cheap fingerprint of an asset for its `ETag`.
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

fn secure_headers(headers: &mut HeaderMap) {
    let pairs: [(HeaderName, &str); 4] = [
        (HeaderName::from_static("content-security-policy"), CSP),
        (HeaderName::from_static("x-frame-options"), "DENY"),
        (HeaderName::from_static("x-content-type-options"), "nosniff"),
        (HeaderName::from_static("referrer-policy"), "no-referrer"),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn serve(a: &'static Asset, req_headers: &HeaderMap, cache: &'static str) -> Response {
    let tag = etag(a.bytes);
    let mut headers = HeaderMap::new();
    secure_headers(&mut headers);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        headers.insert(ETAG, v);
    }
    let fresh = req_headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, a.bytes).into_response()
}

/// `GET /`, and `GET /?token=` to sign the browser in.
async fn index(
    st: Arc<SignIn>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = q.get("token") {
        let mut out = HeaderMap::new();
        secure_headers(&mut out);
        out.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let location = if constant_time_eq(token.as_bytes(), st.token.as_bytes()) {
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                cookie_name(st.api),
                st.token
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                out.insert(SET_COOKIE, v);
            }
            "/"
        } else {
            "/#token-refused"
        };
        out.insert(LOCATION, HeaderValue::from_static(location));
        return (StatusCode::SEE_OTHER, out).into_response();
    }
    match find("index.html") {
        Some(a) => serve(a, &headers, "no-cache"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn favicon(headers: HeaderMap) -> Response {
    match find("favicon.svg") {
        Some(a) => serve(a, &headers, "no-cache"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /assets/{file}`.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&file) {
        Some(a) if a.name != "index.html" => serve(a, &headers, "no-cache"),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_the_page_loads_only_embedded_ones() {
        let index = std::str::from_utf8(find("index.html").expect("index").bytes).expect("utf8");
        for part in index.split("/assets/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            assert!(find(&name).is_some(), "index.html loads {name}");
        }
        // Every module an asset imports is embedded too.
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.bytes).expect("utf8");
            for part in text.split("from './").skip(1) {
                let name: String = part.chars().take_while(|c| *c != '\'').collect();
                assert!(find(&name).is_some(), "{} imports {name}", a.name);
            }
        }
    }

    #[test]
    fn etags_follow_content() {
        assert_eq!(etag(b"a"), etag(b"a"));
        assert_ne!(etag(b"a"), etag(b"b"));
    }
}
