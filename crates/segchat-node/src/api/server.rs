//! Serving the router: one HTTP/1.1 connection task per accepted socket,
//! with a header-read timeout (`axum::serve` has none: a client that
//! connected and sent nothing held its connection for good), and the
//! headers every response carries.

use std::time::Duration;

use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::HEADER_READ_TIMEOUT;

/// The pause after a failed `accept` (out of file descriptors, say), so a
/// persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Every response, whatever answered it (API, page, asset, error): browsers
/// must take its `Content-Type` as given, never guess.
pub(super) async fn nosniff(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Serves `app` on `listener` until `shutdown`: then stops accepting, lets
/// each connection finish the request it is answering, and returns once
/// they are done (the node's grace period bounds the wait).
pub(super) async fn run(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "the API could not accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(connection(stream, app.clone(), shutdown.clone()));
    }
    while conns.join_next().await.is_some() {}
}

async fn connection(stream: tokio::net::TcpStream, app: Router, shutdown: CancellationToken) {
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "an API connection ended with an error");
    }
}
