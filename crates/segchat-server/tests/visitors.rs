//! Visitor names cannot pass for someone else.

mod common;

use common::{Client, TestServer};
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::Status;

fn visit(name: &str) -> Request {
    Request::Visit {
        display_name: name.into(),
    }
}

#[tokio::test]
async fn visitor_names_refuse_direction_tricks_invisibles_and_registered_look_alikes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;

    let mut v = Client::connect(server.addr).await;
    for name in [
        "evil\u{202E}gnp",
        "a\u{2066}b",
        "al\u{200B}ice",
        "x\u{200F}",
        "a\u{061C}b",
    ] {
        let f = v.request(visit(name)).await.expect_err(name);
        assert_eq!(f.status, Status::BadRequest, "{name:?}: {f}");
    }
    // Equal, differently cased, or a homoglyph of a registered name.
    for name in ["alice", "Alice", "aIice", "\u{430}lice"] {
        let f = v.request(visit(name)).await.expect_err(name);
        assert_eq!(f.status, Status::Conflict, "{name:?}: {f}");
        assert!(f.reason.contains("registered username"), "{f}");
    }
    // A name registered later is protected too (no restart needed).
    alice.register("bob").await;
    let f = v.request(visit("BOB")).await.expect_err("bob");
    assert_eq!(f.status, Status::Conflict);

    match v.ok(visit("Guest")).await {
        Reply::Session(s) => {
            assert!(s.username.starts_with("visitor:Guest#"), "{}", s.username);
        }
        other => panic!("expected a session, got {other:?}"),
    }
    server.stop().await;

    // After a restart the registered names are still known.
    let server = TestServer::start(dir.path()).await;
    let mut v = Client::connect(server.addr).await;
    let f = v.request(visit("ALICE")).await.expect_err("alice");
    assert_eq!(f.status, Status::Conflict);
    server.stop().await;
}
