//! A node nobody has signed in to yet, against a server that closes
//! signed-out connections after its sign-in timeout.

mod common;

use std::time::Duration;

use common::*;
use segchat_server::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_node_reconnects_quietly_after_the_sign_in_timeout() {
    let (_d, dir) = tempdir();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = ServerConfig::new(dir.join("server"));
    config.signin_timeout = Duration::from_millis(1500);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(segchat_server::run(listener, config, shutdown.clone()));

    let node_dir = dir.join("node");
    let node = start_node(addr, &node_dir).await;
    let api = Api::of(&node);
    api.wait_connected().await;

    // The server closes the idle, signed-out link at least twice...
    let log = node_dir.join("logs").join("segchat.log");
    let text = eventually("two sign-in timeouts", || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.matches("not signed in within").count() >= 2).then_some(text)
        }
    })
    .await;
    // ...and the node reconnects without telling anyone it lost the
    // server: a sign-in page left open does not flicker "unreachable".
    assert!(
        !text.contains("SERVER_DISCONNECTED"),
        "a routine close was announced:\n{text}"
    );
    assert_eq!(
        text.matches("SERVER_CONNECTED").count(),
        1,
        "only the first connection is announced:\n{text}"
    );
    // Signing in still works right away.
    api.register("alice").await;

    // A server that really goes away is still announced.
    shutdown.cancel();
    let _ = server.await;
    eventually("the loss of the server is announced", || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("SERVER_DISCONNECTED").then_some(())
        }
    })
    .await;
    node.shutdown().await;
}
