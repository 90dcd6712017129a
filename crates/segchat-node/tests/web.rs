//! The web UI's server side over real sockets: the embedded page and
//! assets, the token link that signs a browser in, and the protections of
//! the local server (DNS rebinding, CSRF, cross-site WebSockets), plus the
//! OpenAPI document matching the router.

mod common;

use common::{start_node, tempdir, TestServer};
use reqwest::header::{COOKIE, ORIGIN};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use segchat_node::NodeHandle;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

fn cookie_of(node: &NodeHandle) -> String {
    format!("segchat_{}={}", node.api_addr().port(), node.api_token())
}

/// One raw HTTP/1.1 request with any `Host` header; the status code.
async fn raw_status(node: &NodeHandle, host: &str, path: &str, extra: &str) -> u16 {
    let mut s = TcpStream::connect(node.api_addr()).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let http = client();
    let base = node.api_url();

    let resp = http.get(format!("{base}/")).send().await.expect("get /");
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert!(h["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let html = resp.text().await.expect("html");
    assert!(html.contains("/assets/app.js"), "{html}");

    let resp = http
        .get(format!("{base}/assets/app.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/javascript"));
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let etag = resp.headers()["etag"].clone();
    // Unchanged: the browser's copy is good.
    let resp = http
        .get(format!("{base}/assets/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("js again");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let css = http
        .get(format!("{base}/assets/style.css"))
        .send()
        .await
        .expect("css");
    assert!(css.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/css"));
    let missing = http
        .get(format!("{base}/assets/nope.js"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The OpenAPI document needs no token.
    let resp = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi");
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");

    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_link_signs_a_browser_in_and_cookies_need_the_csrf_header() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let http = client();
    let base = node.api_url();
    let url = segchat_node::web::ui_url(node.api_addr(), node.api_token());
    assert!(url.starts_with(&format!("{base}/?token=")), "{url}");

    // The printed link sets an HttpOnly, SameSite=Strict cookie and sends
    // the browser to a clean `/`.
    let resp = http.get(&url).send().await.expect("link");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/");
    let set = resp.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(set.starts_with(&cookie_of(&node)), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    // A wrong token sets nothing.
    let resp = http
        .get(format!("{base}/?token=nope"))
        .send()
        .await
        .expect("bad link");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers().get("set-cookie").is_none());
    assert_eq!(resp.headers()["location"], "/#token-refused");

    let api = format!("{base}/api/v1/node");
    let cookie = cookie_of(&node);
    // The cookie alone is not enough: a cross-site form could send it.
    let resp = http
        .get(&api)
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"], "FORBIDDEN");
    let resp = http
        .post(format!("{base}/api/v1/channels"))
        .header(COOKIE, &cookie)
        .header("content-type", "text/plain")
        .body(r#"{"name":"csrf"}"#)
        .send()
        .await
        .expect("form-like post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // With the header, or from the node's own origin, it works.
    let resp = http
        .get(&api)
        .header(COOKIE, &cookie)
        .header("x-segchat", "1")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .get(&api)
        .header(COOKIE, &cookie)
        .header(ORIGIN, base.clone())
        .send()
        .await
        .expect("same origin");
    assert_eq!(resp.status(), StatusCode::OK);
    // A link or tab the web UI opened (a file's Save link) reads with
    // the browser's own `Sec-Fetch-Site: same-origin`; it never writes
    // with it alone, and another site's is refused.
    let resp = http
        .get(&api)
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("same-origin link");
    assert_eq!(resp.status(), StatusCode::OK);
    for site in ["cross-site", "same-site", "none"] {
        let resp = http
            .get(&api)
            .header(COOKIE, &cookie)
            .header("sec-fetch-site", site)
            .send()
            .await
            .expect("other link");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{site}");
    }
    let resp = http
        .post(format!("{base}/api/v1/channels"))
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "text/plain")
        .body(r#"{"name":"csrf"}"#)
        .send()
        .await
        .expect("write without the header");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Another site is refused even with the header.
    let resp = http
        .get(&api)
        .header(COOKIE, &cookie)
        .header("x-segchat", "1")
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .expect("cross site");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A stale cookie (from before a restart) is told so.
    let resp = http
        .get(&api)
        .header(COOKIE, format!("segchat_{}=stale", node.api_addr().port()))
        .header("x-segchat", "1")
        .send()
        .await
        .expect("stale");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The bearer token keeps working for the CLI and bots, no header needed.
    let resp = http
        .get(&api)
        .bearer_auth(node.api_token())
        .send()
        .await
        .expect("bearer");
    assert_eq!(resp.status(), StatusCode::OK);

    // The event WebSocket takes the cookie from this origin only.
    let ws_url = format!("ws://{}/api/v1/events", node.api_addr());
    let mut req = ws_url.as_str().into_client_request().expect("request");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("header"));
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().expect("header"));
    assert!(
        tokio_tungstenite::connect_async(req).await.is_err(),
        "a cross-site page must not open the event socket"
    );
    let mut req = ws_url.as_str().into_client_request().expect("request");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("header"));
    req.headers_mut()
        .insert("origin", base.parse().expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("same-origin socket opens");
    drop(ws);

    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_host_names_are_answered() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let port = node.api_addr().port();
    let bearer = format!("Authorization: Bearer {}\r\n", node.api_token());

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(raw_status(&node, &host, "/", "").await, 200, "{host}");
        assert_eq!(
            raw_status(&node, &host, "/api/v1/node", &bearer).await,
            200,
            "{host}"
        );
    }
    // A rebinding attack's page names its own host: refused before
    // anything else, even with the right token.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
    ] {
        assert_eq!(raw_status(&node, &host, "/", "").await, 403, "{host}");
        assert_eq!(
            raw_status(&node, &host, "/api/v1/node", &bearer).await,
            403,
            "{host}"
        );
        assert_eq!(
            raw_status(&node, &host, "/api/v1/openapi.json", "").await,
            403,
            "{host}"
        );
    }

    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let http = client();
    let base = node.api_url();
    let doc: Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 18);
    for (path, ops) in paths {
        for method in ops.as_object().expect("ops").keys() {
            let url = format!(
                "{base}{}",
                path.replace("{name}", "nosuch").replace("{id}", "1")
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = http
                .request(m, &url)
                .bearer_auth(node.api_token())
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("send");
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("no such API route"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    node.shutdown().await;
    server.stop().await;
}
