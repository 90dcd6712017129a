//! Who may talk to the local server, checked on every request before any
//! handler runs.
//!
//! - **Host header** (DNS rebinding): a page on `evil.example` whose name
//!   is re-pointed at 127.0.0.1 would reach this port with
//!   `Host: evil.example`. Only `127.0.0.1:PORT`, `localhost:PORT`,
//!   `[::1]:PORT` (and the exact address the API is bound to, if somebody
//!   chose a non-loopback one) are served; anything else is a 403.
//! - **Credentials** for `/api/`: `Authorization: Bearer TOKEN` (the CLI,
//!   bots), `?token=` on the event WebSocket, or the browser's cookie,
//!   which the web UI receives by opening `/?token=TOKEN` once (see
//!   [`super::web`]).
//! - **Cross-site requests** (CSRF): the cookie is `SameSite=Strict`, and a
//!   cookie-authenticated request must also carry `X-Segchat: 1` (which a
//!   cross-site form cannot send, and a cross-site `fetch` cannot send
//!   without a CORS preflight this server never approves) or an `Origin`
//!   naming this server (the WebSocket, which cannot set headers). An
//!   `Origin` naming any other site is refused outright.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use segchat_proto::Failure;

use super::token::constant_time_eq;
pub use super::token::cookie_name;
use super::{ApiError, ApiState};

/// The header a cookie-authenticated request must carry.
pub const CSRF_HEADER: &str = "x-segchat";

/// Paths anyone on this machine may read without a token.
const PUBLIC_API_PATHS: &[&str] = &["/api/v1/openapi.json"];

/// The `Host` values this server answers to.
fn allowed_hosts(api: SocketAddr) -> Vec<String> {
    let port = api.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !api.ip().is_unspecified() && !api.ip().is_loopback() {
        hosts.push(api.to_string());
    }
    hosts
}

/// Whether a `Host` header names this server.
pub fn host_allowed(host: Option<&str>, api: SocketAddr) -> bool {
    match host {
        Some(h) => allowed_hosts(api)
            .iter()
            .any(|a| a.eq_ignore_ascii_case(h.trim())),
        None => false,
    }
}

/// Whether an `Origin` header names this server.
fn origin_allowed(origin: &str, api: SocketAddr) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|h| host_allowed(Some(h), api))
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn forbidden(reason: &str) -> Response {
    ApiError(Failure::forbidden(reason)).into_response()
}

/// The middleware: host check on everything, credentials on `/api/`.
pub(super) async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let api = state.inner.addrs.api;
    if !host_allowed(header(req.headers(), HOST), api) {
        return forbidden(
            "this node answers only to 127.0.0.1, localhost or [::1] with its port (Host header)",
        );
    }
    let path = req.uri().path();
    if !path.starts_with("/api/") || PUBLIC_API_PATHS.contains(&path) {
        return next.run(req).await;
    }
    let token = state.inner.token.as_bytes();
    let presented = bearer(req.headers()).or_else(|| {
        // Browsers cannot set headers on a WebSocket; allow the query there.
        if path.ends_with("/events") {
            query_token(req.uri().query())
        } else {
            None
        }
    });
    if let Some(t) = presented {
        return if constant_time_eq(t.as_bytes(), token) {
            next.run(req).await
        } else {
            ApiError(Failure::unauthorized("wrong API token")).into_response()
        };
    }
    if let Some(c) = cookie(req.headers(), &cookie_name(api)) {
        if !constant_time_eq(c.as_bytes(), token) {
            return ApiError(Failure::unauthorized(
                "the browser's token is out of date (the node restarted?); open the web UI link the node printed",
            ))
            .into_response();
        }
        let origin = header(req.headers(), ORIGIN);
        let same_origin = match origin {
            Some(o) if origin_allowed(o, api) => true,
            Some(_) => return forbidden("cross-site request refused"),
            None => false,
        };
        // A link or a new tab opened from the web UI itself (a file's
        // Save link, a full-size image) sends neither header; the browser
        // says where it came from in `Sec-Fetch-Site`, which no page can
        // set, and a read changes nothing.
        let page_read = matches!(*req.method(), Method::GET | Method::HEAD)
            && header(req.headers(), "sec-fetch-site") == Some("same-origin");
        if !same_origin && !page_read && req.headers().get(CSRF_HEADER).is_none() {
            return forbidden("cookie-authenticated requests must send X-Segchat: 1");
        }
        return next.run(req).await;
    }
    ApiError(Failure::unauthorized(
        "missing API token: send Authorization: Bearer TOKEN (the token is in the node's api.json)",
    ))
    .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, AUTHORIZATION)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

pub(super) fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn only_loopback_names_with_the_port() {
        let a = addr("127.0.0.1:4000");
        for ok in [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST:4000",
            "[::1]:4000",
        ] {
            assert!(host_allowed(Some(ok), a), "{ok}");
        }
        for bad in [
            "evil.example:4000",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:4001",
            "127.0.0.2:4000",
            "localhost.evil.example:4000",
            "",
        ] {
            assert!(!host_allowed(Some(bad), a), "{bad}");
        }
        assert!(!host_allowed(None, a));
        // A deliberately chosen LAN address is also answered to.
        let lan = addr("192.168.1.5:4000");
        assert!(host_allowed(Some("192.168.1.5:4000"), lan));
        assert!(!host_allowed(Some("0.0.0.0:4000"), addr("0.0.0.0:4000")));
    }

    #[test]
    fn origins() {
        let a = addr("127.0.0.1:4000");
        assert!(origin_allowed("http://localhost:4000", a));
        assert!(!origin_allowed("https://localhost:4000", a));
        assert!(!origin_allowed("http://evil.example", a));
        assert!(!origin_allowed("null", a));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; segchat_4000=tok".parse().expect("header"));
        h.append(COOKIE, "b=2".parse().expect("header"));
        assert_eq!(cookie(&h, "segchat_4000").as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "segchat_4001"), None);
    }

    #[test]
    fn query_tokens() {
        assert_eq!(query_token(Some("a=1&token=xyz")).as_deref(), Some("xyz"));
        assert_eq!(query_token(Some("a=1")), None);
        assert_eq!(query_token(None), None);
    }
}
