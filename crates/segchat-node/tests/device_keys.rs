//! A node publishes its device keys for direct messages when it signs in:
//! checked in the server's own database (a real server and node).

mod common;

use common::{start_node, tempdir, Api, TestServer};
use segchat_server::store::{SqliteStore, Store};

/// The devices the server would hand out for `user` (claiming a key of
/// each, as another user's node would).
async fn devices(sdir: &std::path::Path, user: &str) -> Vec<segchat_proto::devices::ClaimedDevice> {
    let store =
        SqliteStore::open(sdir.join("server.db").to_str().expect("path")).expect("server db");
    let Some(u) = store.user_by_name(user).await.expect("user") else {
        return Vec::new();
    };
    store.claim_keys(u.id, "", &[]).await.expect("claim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_node_publishes_signed_keys_that_outlive_a_restart_but_not_a_logout() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let node = start_node(server.addr, &adir).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    api.register("alice").await;

    // The device first, then its one-time keys.
    let published = common::eventually("alice's device and keys are published", || async {
        let d = devices(&sdir, "alice").await;
        d.iter().any(|x| x.one_time_key.is_some()).then_some(d)
    })
    .await;
    assert_eq!(published.len(), 1);
    let device = &published[0];
    assert_eq!(
        device.keys.node_key,
        node.node_id(),
        "published by this node"
    );
    device.keys.verify().expect("signed by the node key");
    let key = device.one_time_key.as_ref().expect("a one-time key");
    assert!(!key.fallback, "one-time keys first");
    key.verify(&device.keys.node_key).expect("signed too");
    let curve = device.keys.curve25519.clone();

    // A restart keeps the account: the same identity, no new device.
    node.shutdown().await;
    let node = start_node(server.addr, &adir).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    common::eventually("published again after the restart", || async {
        let log =
            std::fs::read_to_string(adir.join("logs").join("segchat.log")).unwrap_or_default();
        (log.matches("KEYS_PUBLISHED").count() >= 2).then_some(())
    })
    .await;
    let again = devices(&sdir, "alice").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].keys.curve25519, curve, "the same account");

    // Logging out takes the device off the directory.
    api.delete("/session").await;
    common::eventually("the device is gone", || async {
        devices(&sdir, "alice").await.is_empty().then_some(())
    })
    .await;
    node.shutdown().await;
    server.stop().await;
}
