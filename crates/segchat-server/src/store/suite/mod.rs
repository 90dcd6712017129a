//! One test suite for every `Store` backend: `store_suite!(make)` expands
//! to the tests below for a backend made by `make`. Both backends run it:
//! `sqlite/mod.rs` on an in-memory database, `postgres/mod.rs` on a
//! database of its own on a private PostgreSQL server (`segchat-pgtest`).
//!
//! The parts: `channels.rs` the registry, members and settings;
//! `messages.rs` the backup, concurrent writers, edits; `relations.rs`
//! friends and blocks; `devices.rs` device keys and the mailbox.

mod channels;
mod devices;
mod messages;
mod relations;

use std::sync::Arc;

use segchat_proto::types::{AccountKind, Presence};

use super::{SessionRecord, Store, StoreError};

pub(crate) use channels::{channel_settings_and_deletion, channels_and_members};
pub(crate) use devices::{concurrent_claims, device_keys_are_claimed_once, mailbox};
pub(crate) use messages::{concurrent_writers, edits_and_deletions, files, messages};
pub(crate) use relations::{concurrent_relation_changes, relations};

pub(crate) async fn accounts(store: Arc<dyn Store>) {
    let u = store.create_user("Alice", "hash", 1).await.expect("create");
    assert_eq!(u.username, "Alice");
    assert!(matches!(
        store.create_user("ALICE", "other", 2).await,
        Err(StoreError::Conflict(_))
    ));
    let found = store
        .user_by_name("alice")
        .await
        .expect("find")
        .expect("some");
    assert_eq!(found.id, u.id);
    assert_eq!(found.status, Presence::Online);
    store
        .set_user_status(u.id, Presence::Invisible)
        .await
        .expect("status");
    let again = store.user_by_id(u.id).await.expect("find").expect("some");
    assert_eq!(again.status, Presence::Invisible);
    assert!(store.user_by_name("nobody").await.expect("find").is_none());
    assert_eq!(store.usernames().await.expect("names"), vec!["Alice"]);
}

pub(crate) async fn sessions(store: Arc<dyn Store>) {
    let u = store.create_user("bob", "hash", 1).await.expect("create");
    let s = SessionRecord {
        id: "s1".into(),
        token_hash: "th1".into(),
        user_id: Some(u.id),
        display_name: "bob".into(),
        kind: AccountKind::User,
        created_at_ms: 10,
        expires_at_ms: 100,
    };
    store.create_session(&s).await.expect("create");
    assert_eq!(
        store.session_by_token_hash("th1", 50).await.expect("get"),
        Some(s.clone())
    );
    assert_eq!(
        store.session_by_token_hash("th1", 100).await.expect("get"),
        None,
        "expired"
    );
    store.touch_session("s1", 200).await.expect("touch");
    assert!(store
        .session_by_token_hash("th1", 150)
        .await
        .expect("get")
        .is_some());
    let v = SessionRecord {
        id: "v1".into(),
        token_hash: "th2".into(),
        user_id: None,
        display_name: "Guest".into(),
        kind: AccountKind::Visitor,
        created_at_ms: 10,
        expires_at_ms: 20,
    };
    store.create_session(&v).await.expect("visitor");
    let live = |ids: &[&str], now| {
        let ids = ids.iter().map(|s| s.to_string()).collect();
        let store = store.clone();
        async move {
            let mut live = store.live_sessions(ids, now).await.expect("live");
            live.sort();
            live
        }
    };
    assert_eq!(live(&["s1", "v1", "nope"], 15).await, vec!["s1", "v1"]);
    assert_eq!(live(&["s1", "v1"], 25).await, vec!["s1"], "v1 expired");
    assert_eq!(live(&[], 25).await, Vec::<String>::new());
    let many: Vec<String> = (0..1200)
        .map(|i| format!("x{i}"))
        .chain(["s1".into()])
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(live(&many, 25).await, vec!["s1"], "asked in chunks");
    assert_eq!(store.delete_expired_sessions(30).await.expect("sweep"), 1);
    store.delete_session("s1").await.expect("delete");
    assert!(store
        .session_by_token_hash("th1", 150)
        .await
        .expect("get")
        .is_none());
    assert_eq!(live(&["s1"], 25).await, Vec::<String>::new(), "logged out");
}

/// Expands to one `#[tokio::test]` per suite function for a backend.
macro_rules! store_suite {
    ($make:expr) => {
        #[tokio::test]
        async fn accounts() {
            $crate::store::suite::accounts($make).await;
        }
        #[tokio::test]
        async fn sessions() {
            $crate::store::suite::sessions($make).await;
        }
        #[tokio::test]
        async fn channels_and_members() {
            $crate::store::suite::channels_and_members($make).await;
        }
        #[tokio::test]
        async fn channel_settings_and_deletion() {
            $crate::store::suite::channel_settings_and_deletion($make).await;
        }
        #[tokio::test]
        async fn messages() {
            $crate::store::suite::messages($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writers() {
            $crate::store::suite::concurrent_writers($make).await;
        }
        #[tokio::test]
        async fn files() {
            $crate::store::suite::files($make).await;
        }
        #[tokio::test]
        async fn edits_and_deletions() {
            $crate::store::suite::edits_and_deletions($make).await;
        }
        #[tokio::test]
        async fn relations() {
            $crate::store::suite::relations($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_relation_changes() {
            $crate::store::suite::concurrent_relation_changes($make).await;
        }
        #[tokio::test]
        async fn device_keys_are_claimed_once() {
            $crate::store::suite::device_keys_are_claimed_once($make).await;
        }
        #[tokio::test]
        async fn mailbox() {
            $crate::store::suite::mailbox($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_claims() {
            $crate::store::suite::concurrent_claims($make).await;
        }
    };
}
pub(crate) use store_suite;
