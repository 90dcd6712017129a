//! The node's HTTP server itself, over real sockets: every response says
//! `X-Content-Type-Options: nosniff`, and a client that opens connections
//! and sends nothing (or half a request head) cannot hold them.

mod common;

use std::time::{Duration, Instant};

use common::{start_node, tempdir, TestServer};
use reqwest::StatusCode;
use segchat_node::api::HEADER_READ_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_says_nosniff() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let http = reqwest::Client::new();
    let base = node.api_url();
    let token = node.api_token().to_owned();
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "an API answer",
            http.get(format!("{base}/api/v1/node")).bearer_auth(&token),
            StatusCode::OK,
        ),
        (
            "an API error",
            http.get(format!("{base}/api/v1/node")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "an unknown route",
            http.get(format!("{base}/api/v1/nothing-here"))
                .bearer_auth(&token),
            StatusCode::NOT_FOUND,
        ),
        (
            "a refused Host",
            http.get(format!("{base}/api/v1/node"))
                .bearer_auth(&token)
                .header("host", "evil.example"),
            StatusCode::FORBIDDEN,
        ),
        (
            "the OpenAPI document",
            http.get(format!("{base}/api/v1/openapi.json")),
            StatusCode::OK,
        ),
        ("the page", http.get(format!("{base}/")), StatusCode::OK),
        (
            "an asset",
            http.get(format!("{base}/assets/app.js")),
            StatusCode::OK,
        ),
        (
            "a bad request body",
            http.post(format!("{base}/api/v1/session/login"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, req, want) in cases {
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), want, "{what}");
        assert_eq!(
            resp.headers()
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{what}: {:?}",
            resp.headers()
        );
    }
    node.shutdown().await;
    server.stop().await;
}

/// Reads until the server closes `s`; false if it is still open at
/// `deadline`.
async fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_no_request_head_are_closed() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let addr = node.api_addr();
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut halves = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /api/v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("write");
        halves.push(s);
    }
    // Real requests are served meanwhile.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/node", node.api_url()))
        .bearer_auth(node.api_token())
        .send()
        .await
        .expect("served while held");
    assert_eq!(resp.status(), StatusCode::OK);
    // Every one is closed soon after the timeout (generous: a loaded box).
    let deadline = opened + HEADER_READ_TIMEOUT + Duration::from_secs(10);
    for (n, s) in silent.iter_mut().chain(halves.iter_mut()).enumerate() {
        assert!(
            closed_by(s, deadline).await,
            "connection {n} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    let took = opened.elapsed();
    println!("120 connections without a request head closed after {took:?}");
    assert!(
        took >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
        "closed before the timeout: {took:?}"
    );
    node.shutdown().await;
    server.stop().await;
}
