//! Connections cannot be held for free: signed out, a connection must sign
//! in within the sign-in timeout (asking other things does not extend it);
//! signed in, it must keep talking.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer};
use segchat_proto::tracker::Request;
use segchat_proto::{Failure, Frame};

const TIMEOUT: Duration = Duration::from_millis(1_500);

/// Reads until the server closes; the error frame it sent first.
async fn closed_with(c: &mut Client) -> Failure {
    let mut said = None;
    loop {
        match c.recv().await {
            Some(Frame::Error(f)) => said = Some(f),
            Some(_) => {}
            None => return said.expect("an error frame before the close"),
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_signs_in_is_closed_even_if_it_keeps_asking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| c.signin_timeout = TIMEOUT).await;

    let start = Instant::now();
    let mut idle = Client::connect(server.addr).await;
    let said = closed_with(&mut idle).await;
    assert!(said.reason.contains("not signed in"), "{said}");
    assert!(
        start.elapsed() >= TIMEOUT,
        "closed early: {:?}",
        start.elapsed()
    );

    // Heartbeats and refused requests do not count as signing in.
    let mut chatty = Client::connect(server.addr).await;
    let start = Instant::now();
    while start.elapsed() < TIMEOUT * 4 {
        // Once the server has closed the connection the send fails; what
        // it said before closing is still there to read.
        let _ = chatty
            .try_send(Frame::Request {
                id: 1,
                body: Request::Heartbeat,
            })
            .await;
        match chatty.recv().await {
            Some(Frame::Response { .. }) => {}
            Some(Frame::Error(f)) => {
                assert!(f.reason.contains("not signed in"), "{f}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(start.elapsed() < TIMEOUT * 4, "kept open by heartbeats");
    server.stop().await;
}

#[tokio::test]
async fn a_signed_in_connection_stays_while_it_talks_and_is_closed_when_silent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| {
        c.signin_timeout = TIMEOUT;
        c.peer_ttl = Duration::from_millis(600);
    })
    .await;

    // Signed in but never sent submit_info: no peer entry, so the peer TTL
    // does not apply; silence does.
    let mut talker = Client::connect(server.addr).await;
    talker.register("talker").await;
    let mut silent = Client::connect(server.addr).await;
    silent.register("silent").await;

    let start = Instant::now();
    while start.elapsed() < TIMEOUT * 3 {
        talker.ok(Request::Whoami).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let said = closed_with(&mut silent).await;
    assert!(said.reason.contains("nothing received"), "{said}");
    talker.ok(Request::Whoami).await;
    server.stop().await;
}
