//! The device-key directory end to end: a real server, bare protocol
//! clients whose node keys are their transport keys.

mod common;

use common::{Client, TestServer};
use segchat_proto::devices::{DeviceKeys, OneTimeKey};
use segchat_proto::friends::FriendAction;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::Status;

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

    // A user who blocked you has no devices to you.
    ann.ok(Request::Relate {
        username: "bob".into(),
        action: FriendAction::Block,
    })
    .await;
    let refused = bob
        .request(Request::ClaimKeys {
            username: "ann".into(),
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
        })
        .await
        .expect_err("visitor");
    assert_eq!(f.status, Status::Forbidden);
    server.stop().await;
}
