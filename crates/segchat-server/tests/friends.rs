//! Friends and blocks end to end: a real server, bare protocol clients.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use segchat_proto::friends::{FriendAction, Relation, RelationKind};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{Presence, Visibility};
use segchat_proto::Status;

fn relate(username: &str, action: FriendAction) -> Request {
    Request::Relate {
        username: username.into(),
        action,
    }
}

async fn relation(c: &mut Client, username: &str, action: FriendAction) -> Relation {
    match c.ok(relate(username, action)).await {
        Reply::Relation(r) => r,
        other => panic!("expected a relation, got {other:?}"),
    }
}

async fn relations(c: &mut Client) -> Vec<(String, Option<RelationKind>)> {
    match c.ok(Request::Relations).await {
        Reply::Relations { relations } => relations
            .into_iter()
            .map(|r| (r.username, r.kind))
            .collect(),
        other => panic!("expected relations, got {other:?}"),
    }
}

/// The next `relation` event about `username`.
async fn told(c: &mut Client, username: &str) -> Relation {
    match c
        .event_where(|e| matches!(e, Event::Relation(r) if r.username == username))
        .await
    {
        Event::Relation(r) => r,
        _ => unreachable!(),
    }
}

async fn set_status(c: &mut Client, status: Presence) {
    c.ok(Request::SetStatus { status }).await;
}

/// The presence events `c` received about `username` up to the next one
/// about `marker` (which the caller has caused): presence events to one
/// connection arrive in the order they were decided.
async fn presence_before(c: &mut Client, username: &str, marker: &str) -> Vec<Presence> {
    let mut seen = Vec::new();
    loop {
        match c.event_where(|e| matches!(e, Event::Presence { .. })).await {
            Event::Presence { username: u, .. } if u == marker => return seen,
            Event::Presence {
                username: u,
                status,
            } if u == username => seen.push(status),
            _ => {}
        }
    }
}

async fn server(dir: &std::path::Path) -> TestServer {
    // The clients send no heartbeats: a TTL beyond the test's length.
    TestServer::start_with(dir, |c| c.peer_ttl = Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_request_accepted_makes_friends_who_see_each_others_presence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;

    let asked = relation(&mut ann, "BOB", FriendAction::Request).await;
    assert_eq!(
        (asked.username.as_str(), asked.kind, asked.presence),
        ("bob", Some(RelationKind::Outgoing), None),
        "a request shows no presence yet"
    );
    let arrived = told(&mut bob, "ann").await;
    assert_eq!(arrived.kind, Some(RelationKind::Incoming));
    assert!(arrived.since_ms > 0);
    assert_eq!(
        relation(&mut ann, "bob", FriendAction::Request).await.kind,
        Some(RelationKind::Outgoing),
        "asking twice is harmless"
    );

    let accepted = relation(&mut bob, "ann", FriendAction::Accept).await;
    assert_eq!(accepted.kind, Some(RelationKind::Friend));
    assert_eq!(accepted.presence, Some(Presence::Online));
    let on_ann = told(&mut ann, "bob").await;
    assert_eq!(
        (on_ann.kind, on_ann.presence),
        (Some(RelationKind::Friend), Some(Presence::Online))
    );

    // No channel in common: presence reaches them as friends.
    set_status(&mut bob, Presence::Idle).await;
    let ev = ann
        .event_where(|e| matches!(e, Event::Presence { username, .. } if username == "bob"))
        .await;
    assert_eq!(
        ev,
        Event::Presence {
            username: "bob".into(),
            status: Presence::Idle
        }
    );
    assert_eq!(
        relations(&mut ann).await,
        vec![("bob".into(), Some(RelationKind::Friend))]
    );

    // Unfriended: both are told, and presence stops.
    let removed = relation(&mut ann, "bob", FriendAction::Remove).await;
    assert_eq!((removed.kind, removed.since_ms), (None, 0));
    assert_eq!(told(&mut bob, "ann").await.kind, None);
    assert!(relations(&mut bob).await.is_empty());
    let mut cy = Client::connect(server.addr).await;
    cy.register("cyd").await;
    relation(&mut cy, "ann", FriendAction::Request).await;
    relation(&mut ann, "cyd", FriendAction::Accept).await;
    set_status(&mut bob, Presence::Online).await;
    set_status(&mut cy, Presence::Idle).await;
    assert!(
        presence_before(&mut ann, "bob", "cyd").await.is_empty(),
        "no presence from an ex-friend"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_made_while_away_is_listed_on_return_and_can_be_declined_or_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    bob.ok(Request::Logout).await;
    drop(bob);

    relation(&mut ann, "bob", FriendAction::Request).await;
    let mut bob = Client::connect(server.addr).await;
    bob.ok(Request::Login {
        username: "bob".into(),
        password: "correct horse battery".into(),
    })
    .await;
    assert_eq!(
        relations(&mut bob).await,
        vec![("ann".into(), Some(RelationKind::Incoming))]
    );
    assert_eq!(
        relation(&mut bob, "ann", FriendAction::Request).await.kind,
        Some(RelationKind::Friend),
        "asking back accepts"
    );
    relation(&mut bob, "ann", FriendAction::Remove).await;
    assert_eq!(told(&mut ann, "bob").await.kind, Some(RelationKind::Friend));
    assert_eq!(told(&mut ann, "bob").await.kind, None);

    // Declined and cancelled.
    relation(&mut ann, "bob", FriendAction::Request).await;
    relation(&mut bob, "ann", FriendAction::Remove).await;
    assert!(relations(&mut ann).await.is_empty(), "declined");
    relation(&mut ann, "bob", FriendAction::Request).await;
    relation(&mut ann, "bob", FriendAction::Remove).await;
    assert!(relations(&mut bob).await.is_empty(), "cancelled");

    let none = bob
        .request(relate("ann", FriendAction::Accept))
        .await
        .expect_err("nothing to accept");
    assert_eq!(none.status, Status::NotFound);
    let me = bob
        .request(relate("bob", FriendAction::Request))
        .await
        .expect_err("myself");
    assert_eq!(me.status, Status::BadRequest);
    server.stop().await;
}

#[tokio::test]
async fn a_blocked_user_can_neither_ask_nor_see_their_blocker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    ann.submit(4101).await;
    ann.create("hall", Visibility::Public, false).await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    bob.submit(4102).await;
    bob.ok(Request::JoinChannel {
        channel: "hall".into(),
    })
    .await;
    let mut cy = Client::connect(server.addr).await;
    cy.register("cyd").await;
    cy.ok(Request::JoinChannel {
        channel: "hall".into(),
    })
    .await;
    relation(&mut bob, "ann", FriendAction::Request).await;
    relation(&mut ann, "bob", FriendAction::Accept).await;
    told(&mut bob, "ann").await;

    let blocked = relation(&mut ann, "bob", FriendAction::Block).await;
    assert_eq!(blocked.kind, Some(RelationKind::Blocked));
    // Bob sees what an unfriending shows, and ann go offline.
    let seen = told(&mut bob, "ann").await;
    assert_eq!((seen.kind, seen.presence), (None, None));
    bob.event_where(|e| {
        matches!(e, Event::Presence { username, status: Presence::Offline } if username == "ann")
    })
    .await;
    assert_eq!(bob.presence_of("hall", "ann").await, Presence::Offline);
    assert_eq!(cy.presence_of("hall", "ann").await, Presence::Online);
    assert_eq!(bob.peer_names(Some("hall")).await, vec!["bob"]);
    assert_eq!(bob.peer_names(None).await, vec!["bob"]);

    // Asking is answered as for somebody who does not exist.
    let refused = bob
        .request(relate("ann", FriendAction::Request))
        .await
        .expect_err("blocked");
    assert_eq!(refused.status, Status::NotFound);
    assert!(!refused.reason.contains("block"), "{}", refused.reason);
    let own = ann
        .request(relate("bob", FriendAction::Request))
        .await
        .expect_err("blocker asking");
    assert_eq!(own.status, Status::Conflict);

    // Ann's status changes do not reach bob, though they share a channel.
    set_status(&mut ann, Presence::Idle).await;
    set_status(&mut cy, Presence::Idle).await;
    assert!(presence_before(&mut bob, "ann", "cyd").await.is_empty());

    // Unblocked: bob sees her again as she is.
    let lifted = relation(&mut ann, "bob", FriendAction::Unblock).await;
    assert_eq!(lifted.kind, None);
    bob.event_where(
        |e| matches!(e, Event::Presence { username, status: Presence::Idle } if username == "ann"),
    )
    .await;
    assert_eq!(bob.presence_of("hall", "ann").await, Presence::Idle);
    assert_eq!(bob.peer_names(Some("hall")).await, vec!["ann", "bob"]);
    server.stop().await;
}

#[tokio::test]
async fn visitors_have_no_friends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mut guest = Client::connect(server.addr).await;
    guest
        .ok(Request::Visit {
            display_name: "Guest".into(),
        })
        .await;
    for request in [Request::Relations, relate("ann", FriendAction::Request)] {
        let f = guest.request(request).await.expect_err("visitor");
        assert_eq!(f.status, Status::Forbidden, "{f}");
    }
    let mut stranger = Client::connect(server.addr).await;
    let f = stranger
        .request(Request::Relations)
        .await
        .expect_err("signed out");
    assert_eq!(f.status, Status::Unauthorized);
    let nobody = ann
        .request(relate("nobody", FriendAction::Request))
        .await
        .expect_err("no such user");
    assert_eq!(nobody.status, Status::NotFound);
    server.stop().await;
}
