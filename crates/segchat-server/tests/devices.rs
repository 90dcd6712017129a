//! The device-key directory end to end: a real server, bare protocol
//! clients whose node keys are their transport keys.

mod common;

use common::{Client, TestServer};
use segchat_proto::devices::{DeviceKeys, OneTimeKey};
use segchat_proto::friends::FriendAction;
use segchat_proto::mailbox::Envelope;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::Status;
use uuid::Uuid;

fn publish(c: &Client, curve: u8, ids: &[&str], fallback: Option<&str>) -> Request {
    let mut one_time_keys: Vec<OneTimeKey> = ids
        .iter()
        .map(|id| OneTimeKey::sign(&c.key, id, [curve ^ 0x55; 32], false))
        .collect();
    one_time_keys.extend(fallback.map(|id| OneTimeKey::sign(&c.key, id, [7; 32], true)));
    Request::PublishKeys {
        device: DeviceKeys::sign(&c.key, [curve; 32], [curve.wrapping_add(1); 32]),
        one_time_keys,
    }
}

async fn claim(c: &mut Client, username: &str) -> Vec<(DeviceKeys, Option<String>)> {
    match c
        .ok(Request::ClaimKeys {
            username: username.into(),
            have_sessions: Vec::new(),
        })
        .await
    {
        Reply::Devices { devices, .. } => devices
            .into_iter()
            .map(|d| (d.keys, d.one_time_key.map(|k| k.key_id)))
            .collect(),
        other => panic!("expected devices, got {other:?}"),
    }
}

#[tokio::test]
async fn a_node_publishes_its_keys_and_each_one_time_key_is_claimed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;

    let request = publish(&ann, 1, &["a", "b"], Some("f"));
    assert_eq!(
        ann.ok(request).await,
        Reply::KeysPublished { one_time_keys: 2 }
    );
    let ann_device = DeviceKeys::sign(&ann.key, [1; 32], [2; 32]);
    assert_eq!(
        claim(&mut bob, "ann").await,
        vec![(ann_device.clone(), Some("a".into()))]
    );
    assert_eq!(claim(&mut bob, "ANN").await[0].1.as_deref(), Some("b"));
    assert_eq!(
        claim(&mut bob, "ann").await[0].1.as_deref(),
        Some("f"),
        "then the fallback key"
    );
    assert!(
        claim(&mut ann, "ann").await.is_empty(),
        "your own name: your other devices, not this one"
    );
    assert!(
        claim(&mut ann, "bob").await.is_empty(),
        "bob published none"
    );

    // Listing devices the asker has sessions with takes no key and costs
    // none of its allowance of changes (20 at once); taking keys does.
    let Reply::Devices { devices, .. } = bob
        .ok(Request::ClaimKeys {
            username: "ann".into(),
            have_sessions: Vec::new(),
        })
        .await
    else {
        panic!("expected devices")
    };
    let curve = devices[0].keys.curve25519.clone();
    for _ in 0..40 {
        let Reply::Devices { devices, .. } = bob
            .ok(Request::ClaimKeys {
                username: "ann".into(),
                have_sessions: vec![curve.clone()],
            })
            .await
        else {
            panic!("expected devices")
        };
        assert_eq!(devices[0].one_time_key, None, "listed, no key taken");
    }
    let mut limited = None;
    for _ in 0..40 {
        if let Err(f) = bob
            .request(Request::ClaimKeys {
                username: "ann".into(),
                have_sessions: Vec::new(),
            })
            .await
        {
            limited = Some(f.status);
            break;
        }
    }
    assert_eq!(
        limited,
        Some(Status::RateLimited),
        "taking keys is throttled"
    );

    // A user who blocked you has no devices to you.
    ann.ok(Request::Relate {
        username: "bob".into(),
        action: FriendAction::Block,
    })
    .await;
    let refused = bob
        .request(Request::ClaimKeys {
            username: "ann".into(),
            have_sessions: Vec::new(),
        })
        .await
        .expect_err("blocked");
    assert_eq!(refused.status, Status::NotFound);

    // Logging out takes the device away.
    ann.ok(Request::Logout).await;
    let mut cyd = Client::connect(server.addr).await;
    cyd.register("cyd").await;
    assert!(claim(&mut cyd, "ann").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn keys_that_are_not_the_nodes_own_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mallory = Client::connect(server.addr).await;

    // Another node's keys, signed by it: not this connection's node.
    let theirs = publish(&mallory, 3, &["a"], None);
    let f = ann.request(theirs).await.expect_err("not mine");
    assert_eq!(f.status, Status::Forbidden);

    // This node's key, but a key swapped after signing.
    let Request::PublishKeys {
        device,
        mut one_time_keys,
    } = publish(&ann, 4, &["a"], None)
    else {
        unreachable!()
    };
    one_time_keys[0].key = hex::encode([0xEE; 32]);
    let f = ann
        .request(Request::PublishKeys {
            device: device.clone(),
            one_time_keys,
        })
        .await
        .expect_err("forged");
    assert_eq!(f.status, Status::BadRequest);
    assert!(f.reason.contains("signature"), "{f}");

    let two_fallbacks = publish(&ann, 4, &[], Some("f1"));
    let Request::PublishKeys {
        mut one_time_keys, ..
    } = two_fallbacks
    else {
        unreachable!()
    };
    one_time_keys.push(OneTimeKey::sign(&ann.key, "f2", [8; 32], true));
    let f = ann
        .request(Request::PublishKeys {
            device,
            one_time_keys,
        })
        .await
        .expect_err("two fallbacks");
    assert_eq!(f.status, Status::BadRequest);

    let mut guest = Client::connect(server.addr).await;
    guest
        .ok(Request::Visit {
            display_name: "Guest".into(),
        })
        .await;
    let visitor_keys = publish(&guest, 5, &["a"], None);
    let f = guest.request(visitor_keys).await.expect_err("visitor");
    assert_eq!(f.status, Status::Forbidden);
    let f = guest
        .request(Request::ClaimKeys {
            username: "ann".into(),
            have_sessions: Vec::new(),
        })
        .await
        .expect_err("visitor");
    assert_eq!(f.status, Status::Forbidden);
    server.stop().await;
}

fn envelope(to: &str, to_node: &Client, n: u128, body: &str) -> Envelope {
    Envelope {
        id: Uuid::from_u128(n),
        to: to.into(),
        to_node: to_node.node_id(),
        body: body.into(),
    }
}

#[tokio::test]
async fn a_dm_envelope_reaches_its_device_live_waits_until_acknowledged_and_is_never_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    let request = publish(&bob, 1, &["a"], None);
    bob.ok(request).await;

    let sealed = "olm:AwogJ3…opaque";
    let sent = ann
        .ok(Request::SendDm {
            envelopes: vec![envelope("bob", &bob, 1, sealed)],
        })
        .await;
    assert_eq!(
        sent,
        Reply::DmStored {
            stored: 1,
            gone: Vec::new(),
            missing: Vec::new()
        }
    );
    let live = bob.event_where(|e| matches!(e, Event::Dm(_))).await;
    let Event::Dm(d) = live else { unreachable!() };
    assert_eq!(
        (d.from.as_str(), d.from_node.as_str(), d.body.as_str()),
        ("ann", ann.node_id().as_str(), sealed),
        "the sender is who the server saw"
    );
    let retry = ann
        .ok(Request::SendDm {
            envelopes: vec![envelope("bob", &bob, 1, sealed)],
        })
        .await;
    assert_eq!(
        retry,
        Reply::DmStored {
            stored: 0,
            gone: Vec::new(),
            missing: Vec::new()
        },
        "a retry is harmless"
    );

    let fetch = |after_seq| Request::FetchDms {
        after_seq,
        limit: 50,
    };
    let Reply::Dms { envelopes, .. } = bob.ok(fetch(0)).await else {
        panic!("expected dms")
    };
    assert_eq!(envelopes, vec![d.clone()]);
    bob.ok(Request::AckDms { up_to_seq: d.seq }).await;
    let Reply::Dms { envelopes, .. } = bob.ok(fetch(0)).await else {
        panic!("expected dms")
    };
    assert!(envelopes.is_empty(), "acknowledged: deleted");

    // Bob signs in on a second node: a message for his first device only
    // is stored, and the sender is told bob has a device it missed.
    let mut phone = Client::connect(server.addr).await;
    phone
        .ok(Request::Login {
            username: "bob".into(),
            password: "correct horse battery".into(),
        })
        .await;
    let request = publish(&phone, 2, &["b"], None);
    phone.ok(request).await;
    let partial = ann
        .ok(Request::SendDm {
            envelopes: vec![envelope("bob", &bob, 5, sealed)],
        })
        .await;
    assert_eq!(
        partial,
        Reply::DmStored {
            stored: 1,
            gone: Vec::new(),
            missing: vec!["bob".into()]
        }
    );

    // Skipped: a device that is not the named user's (or no longer is).
    let wrong = ann
        .ok(Request::SendDm {
            envelopes: vec![envelope("ann", &bob, 2, "x")],
        })
        .await;
    assert_eq!(
        wrong,
        Reply::DmStored {
            stored: 0,
            gone: vec![bob.node_id()],
            missing: Vec::new()
        },
        "not ann's device: skipped, nothing stored"
    );

    // Refused: a mailbox read by a node without a device, a sender the
    // recipient blocked, visitors.
    let no_device = ann.request(fetch(0)).await.expect_err("ann has no device");
    assert_eq!(no_device.status, Status::NotFound);
    bob.ok(Request::Relate {
        username: "ann".into(),
        action: FriendAction::Block,
    })
    .await;
    let blocked = ann
        .request(Request::SendDm {
            envelopes: vec![envelope("bob", &bob, 3, "x")],
        })
        .await
        .expect_err("blocked");
    assert_eq!(blocked.status, Status::NotFound);
    let mut guest = Client::connect(server.addr).await;
    guest
        .ok(Request::Visit {
            display_name: "Guest".into(),
        })
        .await;
    let f = guest
        .request(Request::SendDm {
            envelopes: vec![envelope("bob", &bob, 4, "x")],
        })
        .await
        .expect_err("visitor");
    assert_eq!(f.status, Status::Forbidden);

    // The server keeps the body as given and never writes it to its log.
    let log =
        std::fs::read_to_string(dir.path().join("logs").join("segchat.log")).unwrap_or_default();
    assert!(log.contains("DM_STORED"), "the log has the delivery");
    assert!(!log.contains("opaque"), "but never a body");
    server.stop().await;
}

#[tokio::test]
async fn a_device_mailbox_is_bounded_in_bytes_per_sender_and_takes_more_once_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A generous allowance of changes: this is about the mailbox's bound.
    let server = TestServer::start_with(dir.path(), |c| {
        c.changes_per_second = 10_000;
        c.changes_burst = 10_000;
    })
    .await;
    let mut ann = Client::connect(server.addr).await;
    ann.register("ann").await;
    let mut bob = Client::connect(server.addr).await;
    bob.register("bob").await;
    let request = publish(&bob, 1, &["a"], None);
    bob.ok(request).await;

    // 8 envelopes of 65,000 bytes a request (within its 512 KiB), until
    // ann's share of the device's 64 MiB (a quarter) is used: the next
    // one is refused, and nothing of it is kept; someone else may still
    // write to bob.
    let body = "x".repeat(65_000);
    let mut n = 0u128;
    let mut refused = None;
    for round in 0..200 {
        let envelopes: Vec<Envelope> = (0..8)
            .map(|_| {
                n += 1;
                envelope("bob", &bob, n, &body)
            })
            .collect();
        match ann.request(Request::SendDm { envelopes }).await {
            Ok(_) => {}
            Err(f) => {
                refused = Some((round, f));
                break;
            }
        }
    }
    let (round, f) = refused.expect("the mailbox must fill up");
    assert_eq!(f.status, Status::InsufficientStorage, "{f:?}");
    assert_eq!(round, 33, "16 MiB is 33 requests of 8 × 65,000 bytes");
    assert!(f.reason.contains("your messages"), "{}", f.reason);
    let mut cat = Client::connect(server.addr).await;
    cat.register("cat").await;
    cat.ok(Request::SendDm {
        envelopes: vec![envelope("bob", &bob, 1 << 64, "from someone else")],
    })
    .await;
    let mut fetches = 0;

    // Bob fetches and acknowledges what waits; ann may send again.
    let mut after_seq = 0;
    loop {
        let Reply::Dms {
            envelopes,
            has_more,
        } = bob
            .ok(Request::FetchDms {
                after_seq,
                limit: 200,
            })
            .await
        else {
            panic!("not dms")
        };
        fetches += 1;
        let bytes: usize = envelopes.iter().map(|e| e.body.len()).sum();
        assert!(bytes <= 512 * 1024, "one answer fits a frame");
        after_seq = envelopes.iter().map(|e| e.seq).max().unwrap_or(after_seq);
        if !has_more {
            break;
        }
    }
    assert!(fetches >= 33, "a page is as many as fit: {fetches}");
    bob.ok(Request::AckDms {
        up_to_seq: after_seq,
    })
    .await;
    ann.ok(Request::SendDm {
        envelopes: vec![envelope("bob", &bob, n + 1, "after")],
    })
    .await;

    // Bodies JSON writes six times larger (control characters) still
    // come in answers that fit a frame.
    let controls = "\u{1}".repeat(60_000);
    for round in 0..2u128 {
        let envelopes = (0..2)
            .map(|i| envelope("bob", &bob, n + 10 + round * 2 + i, &controls))
            .collect();
        ann.ok(Request::SendDm { envelopes }).await;
    }
    let Reply::Dms { envelopes, .. } = bob
        .ok(Request::FetchDms {
            after_seq,
            limit: 200,
        })
        .await
    else {
        panic!("not dms")
    };
    assert!(
        !envelopes.is_empty() && envelopes.len() < 5,
        "{}",
        envelopes.len()
    );
    server.stop().await;
}
