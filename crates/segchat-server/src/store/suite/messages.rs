//! The suite on the message backup: storing and reading by sequence,
//! concurrent writers, replies, edits, deletions and reactions.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use segchat_proto::edits::{Ref, RefKind};
use segchat_proto::message::{Draft, Message};
use segchat_proto::ticket::Ticket;
use segchat_proto::types::{AccountKind, Visibility};
use uuid::Uuid;

use crate::store::{ChannelRecord, MessageSource, NewChannel, Store};

pub(super) fn message(key: &SigningKey, channel: &str, body: &str) -> Message {
    let ticket = Ticket {
        username: "olga".into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        node_key: hex::encode(key.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms: 1,
    }
    .sign(key)
    .expect("ticket");
    Draft {
        file: None,
        id: Uuid::now_v7(),
        channel,
        author: "olga",
        ts_ms: 1,
        body,
        re: None,
    }
    .sign(key, ticket)
    .expect("sign")
}

pub(crate) async fn messages(store: Arc<dyn Store>) {
    let owner = store.create_user("olga", "h", 1).await.expect("user");
    let new = |name: &str| NewChannel {
        name: name.into(),
        owner_id: owner.id,
        visibility: Visibility::Public,
        allow_visitors: true,
        created_at_ms: 1,
    };
    let a = store.create_channel(&new("a")).await.expect("a");
    let b = store.create_channel(&new("b")).await.expect("b");
    let key = SigningKey::from_bytes(&[3; 32]);
    let batch: Vec<Message> = (0..3)
        .map(|i| message(&key, "a", &format!("a{i}")))
        .collect();
    let first = store
        .insert_messages(a.id, &batch, MessageSource::Host, 2)
        .await
        .expect("insert");
    assert_eq!(first.new, 3);
    assert_eq!(first.seqs.len(), 3);
    assert_eq!(first.last_seq, first.seqs[2]);
    let again = store
        .insert_messages(a.id, &batch[1..], MessageSource::Member, 3)
        .await
        .expect("again");
    assert_eq!(again.new, 0, "idempotent by id");
    let twice = message(&key, "b", "twice");
    let doubled = store
        .insert_messages(b.id, &[twice.clone(), twice], MessageSource::Host, 3)
        .await
        .expect("a batch holding a message twice");
    assert_eq!(doubled.new, 1);
    assert_eq!(doubled.seqs[0], doubled.seqs[1], "one row, one number");
    assert_eq!(
        again.seqs,
        first.seqs[1..].to_vec(),
        "same numbers as before"
    );
    store
        .insert_messages(b.id, &[message(&key, "b", "b0")], MessageSource::Host, 4)
        .await
        .expect("b");
    let after = store
        .messages_after(a.id, first.seqs[0], 10)
        .await
        .expect("after");
    assert_eq!(
        after
            .iter()
            .map(|s| s.message.body.as_str())
            .collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert_eq!(after[0].message, batch[1], "stored exactly as sent");
    assert_eq!(
        store.messages_after(a.id, 0, 1).await.expect("page").len(),
        1
    );
    assert_eq!(store.last_seq(a.id).await.expect("last"), first.last_seq);
    assert_eq!(store.last_seq(b.id + 100).await.expect("none"), 0);

    // A body is kept exactly as signed, whatever it holds.
    let odd = ["nul \0 inside", "emoji 🦀 and ünïcödé", &"x".repeat(4000)];
    let odd: Vec<Message> = odd.iter().map(|body| message(&key, "b", body)).collect();
    let stored = store
        .insert_messages(b.id, &odd, MessageSource::Member, 5)
        .await
        .expect("odd bodies");
    let back = store
        .messages_after(b.id, stored.seqs[0] - 1, 10)
        .await
        .expect("read back");
    let back: Vec<Message> = back.into_iter().map(|s| s.message).collect();
    assert_eq!(back, odd);
    for m in &back {
        m.verify_author_signature().expect("still verifies");
    }
}

/// Olga's account, and a public channel of hers (no visitors) named `name`.
async fn olgas_channel(store: &Arc<dyn Store>, name: &str) -> ChannelRecord {
    let owner = store.create_user("olga", "h", 1).await.expect("user");
    store
        .create_channel(&NewChannel {
            name: name.into(),
            owner_id: owner.id,
            visibility: Visibility::Public,
            allow_visitors: false,
            created_at_ms: 1,
        })
        .await
        .expect("channel")
}

/// Many writers into one channel at once (server instances, or tasks of
/// one) while a reader follows it by sequence number, as a member's
/// fallback does: the reader must end with every message, though it only
/// ever asks for what is above the highest number it has seen. A backend
/// that let seq 11 commit before seq 10 would make it skip 10.
pub(crate) async fn concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let ch = olgas_channel(&store, "busy").await;
    let key = SigningKey::from_bytes(&[5; 32]);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    let m = message(&key, "busy", &format!("{w}/{i}"));
                    store
                        .insert_messages(ch.id, &[m], MessageSource::Member, 2)
                        .await
                        .expect("insert");
                }
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < WRITERS * EACH {
        assert!(
            std::time::Instant::now() < deadline,
            "reader stuck at {}",
            seen.len()
        );
        // Asked before reading: a page read after the last commit is
        // empty only if nothing was skipped.
        let done = writers.iter().all(|w| w.is_finished());
        let page = store.messages_after(ch.id, cursor, 7).await.expect("read");
        if page.is_empty() && done {
            break;
        }
        for s in page {
            assert!(s.seq > cursor, "pages come in order");
            cursor = s.seq;
            assert!(seen.insert(s.message.body), "no message twice");
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(
        seen.len(),
        WRITERS * EACH,
        "the reader following by sequence number missed messages"
    );
}

/// A message by `author` (their own key) in channel "a" at `ts`.
fn acting(author: &str, ts: u64, re: Option<(RefKind, Uuid)>, body: &str) -> Message {
    let key = SigningKey::from_bytes(&[author.len() as u8; 32]);
    let ticket = Ticket {
        username: author.into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        node_key: hex::encode(key.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms: 1,
    }
    .sign(&key)
    .expect("ticket");
    Draft {
        file: None,
        id: Uuid::now_v7(),
        channel: "a",
        author,
        ts_ms: ts,
        body,
        re: re.map(|(kind, id)| Ref { kind, id }),
    }
    .sign(&key, ticket)
    .expect("sign")
}

pub(crate) async fn edits_and_deletions(store: Arc<dyn Store>) {
    let ch = olgas_channel(&store, "a").await;
    let put = |m: &Message| {
        let (store, m) = (store.clone(), m.clone());
        async move {
            store
                .insert_messages(ch.id, &[m], MessageSource::Member, 2)
                .await
                .expect("insert")
        }
    };
    let body_of = |id: Uuid| {
        let store = store.clone();
        async move {
            store
                .messages_after(ch.id, 0, 100)
                .await
                .expect("read")
                .into_iter()
                .find(|s| s.message.id == id)
                .expect("stored")
                .message
        }
    };
    let typo = acting("alice", 10, None, "teh text");
    put(&typo).await;
    let fix = acting("alice", 20, Some((RefKind::Edit, typo.id)), "the text");
    put(&fix).await;
    let forged = acting("mallory", 30, Some((RefKind::Edit, fix.id)), "pwned");
    put(&forged).await;
    let original = body_of(typo.id).await;
    assert_eq!(
        original.body, "",
        "the replaced text is gone from the backup"
    );
    assert!(original.redacted.is_some());
    assert_eq!(body_of(fix.id).await.body, "the text");
    let target = store
        .message_target(ch.id, typo.id)
        .await
        .expect("target")
        .expect("known");
    assert_eq!((target.author.as_str(), target.deleted), ("alice", false));
    // A deletion that arrives before its message: the message is stored
    // without its text.
    let secret = acting("alice", 40, None, "a secret");
    let gone = acting("alice", 50, Some((RefKind::Delete, secret.id)), "");
    put(&gone).await;
    put(&secret).await;
    assert_eq!(body_of(secret.id).await.body, "");
    assert!(
        store
            .message_target(ch.id, secret.id)
            .await
            .expect("target")
            .expect("known")
            .deleted
    );
    // The edit of a deleted message is redacted too.
    assert_eq!(body_of(fix.id).await.body, "the text", "not deleted");
    let unrelated = store
        .message_target(ch.id + 1, typo.id)
        .await
        .expect("target");
    assert_eq!(unrelated, None, "targets are per channel");
}

/// A message sharing a file keeps it through the backup, verifiable; its
/// deletion removes the file with the text, and the row still verifies.
pub(crate) async fn files(store: Arc<dyn Store>) {
    let ch = olgas_channel(&store, "a").await;
    let key = SigningKey::from_bytes(&[5; 32]);
    let ticket = Ticket {
        username: "alice".into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        node_key: hex::encode(key.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms: 1,
    }
    .sign(&key)
    .expect("ticket");
    let file = segchat_proto::files::FileRef {
        hash: "ab".repeat(32),
        name: "cat.png".into(),
        size: 48_213,
        mime: "image/png".into(),
        thumb: None,
    };
    let shared = Draft {
        id: Uuid::now_v7(),
        channel: "a",
        author: "alice",
        ts_ms: 10,
        body: "",
        re: None,
        file: Some(&file),
    }
    .sign(&key, ticket.clone())
    .expect("sign");
    store
        .insert_messages(
            ch.id,
            std::slice::from_ref(&shared),
            MessageSource::Member,
            2,
        )
        .await
        .expect("insert");
    let read = |store: Arc<dyn Store>| async move {
        store
            .messages_after(ch.id, 0, 100)
            .await
            .expect("read")
            .into_iter()
            .find(|s| s.message.id == shared.id)
            .expect("stored")
            .message
    };
    let back = read(store.clone()).await;
    assert_eq!(back, shared, "the file comes back as it was signed");
    assert_eq!(
        store.file_shared_in(ch.id, &file.hash).await.expect("read"),
        Some(file.clone()),
        "found by its hash in its channel"
    );
    let other = store
        .create_channel(&NewChannel {
            name: "b".into(),
            owner_id: ch.owner_id,
            visibility: Visibility::Public,
            allow_visitors: false,
            created_at_ms: 1,
        })
        .await
        .expect("channel");
    assert_eq!(
        store
            .file_shared_in(other.id, &file.hash)
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .file_shared_in(ch.id, &"cd".repeat(32))
            .await
            .expect("read"),
        None
    );
    assert_eq!(back.verify_author_signature(), Ok(()));
    let gone = Draft {
        id: Uuid::now_v7(),
        channel: "a",
        author: "alice",
        ts_ms: 20,
        body: "",
        re: Some(Ref {
            kind: RefKind::Delete,
            id: shared.id,
        }),
        file: None,
    }
    .sign(&key, ticket)
    .expect("sign");
    store
        .insert_messages(ch.id, &[gone], MessageSource::Member, 3)
        .await
        .expect("insert");
    let back = read(store.clone()).await;
    assert_eq!(back.file, None, "deleted: the file is gone with the text");
    assert_eq!(
        store.file_shared_in(ch.id, &file.hash).await.expect("read"),
        None,
        "a deleted message shares nothing"
    );
    assert!(back.redacted.is_some());
    assert_eq!(
        back.verify_author_signature(),
        Ok(()),
        "and it still verifies"
    );
}
