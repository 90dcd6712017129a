//! The suite on device keys and the DM mailbox.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use segchat_proto::devices::{DeviceKeys, OneTimeKey};
use segchat_proto::types::AccountKind;
use uuid::Uuid;

use crate::store::{MailboxUse, PublishedKeys, SessionRecord, Store};

/// A device of `user` (node key from `seed`) signed in under `session`,
/// with one-time keys named `ids` and perhaps a fallback key.
fn device_keys(
    user: i64,
    session: &str,
    seed: u8,
    curve: u8,
    ids: &[&str],
    fallback: Option<&str>,
) -> PublishedKeys {
    let node = SigningKey::from_bytes(&[seed; 32]);
    PublishedKeys {
        user_id: user,
        session_id: session.into(),
        device: DeviceKeys::sign(&node, [curve; 32], [curve + 1; 32]),
        one_time_keys: ids
            .iter()
            .map(|id| OneTimeKey::sign(&node, id, [id.len() as u8; 32], false))
            .collect(),
        fallback_key: fallback.map(|id| OneTimeKey::sign(&node, id, [9; 32], true)),
        now_ms: 1,
    }
}

async fn session_for(store: &Arc<dyn Store>, user: i64, id: &str) {
    store
        .create_session(&SessionRecord {
            id: id.into(),
            token_hash: format!("hash-{id}"),
            user_id: Some(user),
            display_name: "x".into(),
            kind: AccountKind::User,
            created_at_ms: 1,
            expires_at_ms: u64::MAX / 2,
        })
        .await
        .expect("session");
}

pub(crate) async fn device_keys_are_claimed_once(store: Arc<dyn Store>) {
    let ann = store.create_user("ann", "h", 1).await.expect("ann").id;
    session_for(&store, ann, "s-ann").await;
    session_for(&store, ann, "s-ann-2").await;
    let phone = device_keys(ann, "s-ann", 1, 10, &["a", "b", "c"], Some("f1"));
    assert_eq!(store.publish_keys(&phone, 100).await.expect("publish"), 3);
    assert_eq!(
        store.publish_keys(&phone, 100).await.expect("again"),
        3,
        "publishing the same keys again adds nothing"
    );
    let laptop = device_keys(ann, "s-ann-2", 2, 20, &["x"], None);
    assert_eq!(store.publish_keys(&laptop, 100).await.expect("laptop"), 1);

    let taken = |claimed: &[segchat_proto::devices::ClaimedDevice], node: &DeviceKeys| {
        claimed
            .iter()
            .find(|d| &d.keys == node)
            .map(|d| d.one_time_key.clone().map(|k| (k.key_id, k.fallback)))
    };
    let first = store.claim_keys(ann, "", &[]).await.expect("claim");
    assert_eq!(first.len(), 2, "both devices");
    assert_eq!(
        taken(&first, &phone.device),
        Some(Some(("a".into(), false)))
    );
    assert_eq!(
        taken(&first, &laptop.device),
        Some(Some(("x".into(), false)))
    );
    let second = store.claim_keys(ann, "", &[]).await.expect("claim");
    assert_eq!(
        taken(&second, &phone.device),
        Some(Some(("b".into(), false)))
    );
    assert_eq!(
        taken(&second, &laptop.device),
        Some(None),
        "no one-time key left and no fallback"
    );
    store.claim_keys(ann, "", &[]).await.expect("claim");
    let fourth = store.claim_keys(ann, "", &[]).await.expect("claim");
    assert_eq!(
        taken(&fourth, &phone.device),
        Some(Some(("f1".into(), true))),
        "the fallback key, reused"
    );
    let mine = store
        .claim_keys(ann, &phone.device.node_key, &[])
        .await
        .expect("own other devices");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].keys, laptop.device);

    // The cap holds; new identity keys drop what the old ones published.
    let many: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let ids: Vec<&str> = many.iter().map(String::as_str).collect();
    let capped = device_keys(ann, "s-ann", 1, 10, &ids, None);
    assert_eq!(store.publish_keys(&capped, 4).await.expect("capped"), 4);
    let renewed = device_keys(ann, "s-ann", 1, 30, &["n1"], None);
    assert_eq!(store.publish_keys(&renewed, 100).await.expect("renewed"), 1);
    // A device the claimer holds a session with is listed, keyless.
    let listed = store
        .claim_keys(ann, "", std::slice::from_ref(&renewed.device.curve25519))
        .await
        .expect("list");
    assert_eq!(taken(&listed, &renewed.device), Some(None));
    let after = store.claim_keys(ann, "", &[]).await.expect("claim");
    assert_eq!(
        taken(&after, &renewed.device),
        Some(Some(("n1".into(), false))),
        "listing took no key"
    );
    assert_eq!(
        taken(
            &store.claim_keys(ann, "", &[]).await.expect("claim"),
            &renewed.device
        ),
        Some(None),
        "the old fallback went with the old identity"
    );

    // A device goes with its session.
    store.delete_session("s-ann-2").await.expect("logout");
    let left = store.claim_keys(ann, "", &[]).await.expect("claim");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].keys, renewed.device);
}

/// Claims racing for one device's keys: none is handed out twice.
pub(crate) async fn concurrent_claims(store: Arc<dyn Store>) {
    let ann = store.create_user("ann", "h", 1).await.expect("ann").id;
    session_for(&store, ann, "s").await;
    let names: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    store
        .publish_keys(&device_keys(ann, "s", 1, 10, &ids, None), 100)
        .await
        .expect("publish");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..3 {
                    for d in store.claim_keys(ann, "", &[]).await.expect("claim") {
                        got.extend(d.one_time_key.map(|k| k.key_id));
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    assert_eq!(all, names, "each of the 20 keys once, and nothing more");
}

pub(crate) async fn mailbox(store: Arc<dyn Store>) {
    use segchat_proto::mailbox::Envelope;
    let bob = store.create_user("bob", "h", 1).await.expect("bob").id;
    session_for(&store, bob, "s-bob").await;
    let phone = device_keys(bob, "s-bob", 1, 10, &[], None);
    store.publish_keys(&phone, 100).await.expect("publish");
    let node = phone.device.node_key.clone();
    assert_eq!(store.device_owner(&node).await.expect("owner"), Some(bob));
    assert_eq!(store.device_owner("nope").await.expect("owner"), None);
    let env = |n: u128, body: &str| Envelope {
        id: Uuid::from_u128(n),
        to: "bob".into(),
        to_node: node.clone(),
        body: body.into(),
    };
    let stored = store
        .store_dms("ann", "ann-node", &[env(1, "one"), env(2, "two")], 5)
        .await
        .expect("store");
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|(to, _)| *to == node));
    assert!(stored[0].1.seq < stored[1].1.seq);
    let again = store
        .store_dms("ann", "ann-node", &[env(2, "two"), env(3, "three")], 6)
        .await
        .expect("retry");
    assert_eq!(
        again.len(),
        1,
        "the same id to the same device is stored once"
    );
    store
        .store_dms("cat", "cat-node", &[env(4, "four")], 7)
        .await
        .expect("another sender");
    let used = store.mailbox_use(&node, "ann").await.expect("use");
    assert_eq!(
        used,
        MailboxUse {
            envelopes: 4,
            bytes: 15,
            sender_envelopes: 3,
            sender_bytes: 11,
        },
        "the bodies' bytes: one, two, three (ann's), four (cat's)"
    );
    let waiting = store.dms_after(&node, 0, 10).await.expect("fetch");
    let bodies: Vec<&str> = waiting.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(bodies, vec!["one", "two", "three", "four"]);
    assert_eq!(waiting[0].from, "ann");
    assert_eq!(waiting[0].from_node, "ann-node");
    assert_eq!(waiting[0].stored_at_ms, 5);
    let page = store
        .dms_after(&node, waiting[0].seq, 1)
        .await
        .expect("page");
    assert_eq!(page[0].body, "two");
    assert_eq!(store.ack_dms(&node, waiting[1].seq).await.expect("ack"), 2);
    let left = store.dms_after(&node, 0, 10).await.expect("fetch");
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].body, "three");
    // A device's mailbox goes with it.
    store.delete_session("s-bob").await.expect("logout");
    let used = store.mailbox_use(&node, "ann").await.expect("use");
    assert_eq!(used, MailboxUse::default());
}
