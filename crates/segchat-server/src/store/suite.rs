//! One test suite for every `Store` backend: `store_suite!(make)` expands
//! to the tests below for a backend made by `make`. Both backends run it:
//! `sqlite/mod.rs` on an in-memory database, `postgres/mod.rs` on a
//! database of its own on a private PostgreSQL server (`segchat-pgtest`).

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use segchat_proto::devices::{DeviceKeys, OneTimeKey};
use segchat_proto::edits::{Ref, RefKind};
use segchat_proto::friends::{Pair, RelationKind};
use segchat_proto::message::{Draft, Message};
use segchat_proto::ticket::Ticket;
use segchat_proto::types::{AccountKind, Presence, Role, Visibility};
use uuid::Uuid;

use super::{
    ChannelRecord, ChannelUpdate, MessageSource, NewChannel, PublishedKeys, SessionRecord, Store,
    StoreError,
};

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

pub(crate) async fn channels_and_members(store: Arc<dyn Store>) {
    let owner = store.create_user("olga", "h", 1).await.expect("user");
    let other = store.create_user("max", "h", 1).await.expect("user");
    let new = NewChannel {
        name: "cafe".into(),
        owner_id: owner.id,
        visibility: Visibility::MembersOnly,
        allow_visitors: false,
        created_at_ms: 5,
    };
    let ch = store.create_channel(&new).await.expect("create");
    assert_eq!((ch.owner.as_str(), ch.member_count), ("olga", 1));
    assert!(matches!(
        store.create_channel(&new).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .add_member(ch.id, other.id, Role::Member, 6)
        .await
        .expect("add"));
    assert!(!store
        .add_member(ch.id, other.id, Role::Member, 7)
        .await
        .expect("again"));
    let members = store.members(ch.id).await.expect("members");
    assert_eq!(
        members
            .iter()
            .map(|m| (m.username.as_str(), m.role))
            .collect::<Vec<_>>(),
        vec![("olga", Role::Owner), ("max", Role::Member)]
    );
    assert_eq!(
        store.watchers(other.id).await.expect("mates"),
        vec![owner.id]
    );
    assert_eq!(
        store.memberships(other.id).await.expect("mine"),
        vec![(ch.id, Role::Member)]
    );
    assert!(!store.is_invited(ch.id, other.id).await.expect("invited"));
    store
        .add_invite(ch.id, other.id, owner.id, 8)
        .await
        .expect("invite");
    assert!(store.is_invited(ch.id, other.id).await.expect("invited"));
    assert!(store.remove_member(ch.id, other.id).await.expect("remove"));
    assert!(!store.remove_member(ch.id, other.id).await.expect("again"));
    let listed = store.list_channels().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].member_count, 1);
    assert_eq!(
        store
            .channel_by_name("cafe")
            .await
            .expect("get")
            .map(|c| c.id),
        Some(ch.id)
    );
}

pub(crate) async fn channel_settings_and_deletion(store: Arc<dyn Store>) {
    let owner = store.create_user("olga", "h", 1).await.expect("user");
    let other = store.create_user("max", "h", 1).await.expect("user");
    let new = |name: &str| NewChannel {
        name: name.into(),
        owner_id: owner.id,
        visibility: Visibility::Public,
        allow_visitors: true,
        created_at_ms: 1,
    };
    let ch = store.create_channel(&new("cafe")).await.expect("create");
    let keep = store.create_channel(&new("keep")).await.expect("create");
    assert_eq!((ch.title.as_str(), ch.topic.as_str()), ("", ""), "unset");

    // Each field that is set changes; the others stay.
    let change = ChannelUpdate {
        topic: Some("coffee talk".into()),
        title: Some("Café ☕".into()),
        ..ChannelUpdate::default()
    };
    let after = store
        .update_channel(ch.id, &change)
        .await
        .expect("update")
        .expect("found");
    assert_eq!(after.topic, "coffee talk");
    assert_eq!(after.title, "Café ☕");
    assert_eq!(
        (after.visibility, after.allow_visitors),
        (Visibility::Public, true)
    );
    let change = ChannelUpdate {
        visibility: Some(Visibility::Private),
        allow_visitors: Some(false),
        ..ChannelUpdate::default()
    };
    store.update_channel(ch.id, &change).await.expect("update");
    let read = store
        .channel_by_name("cafe")
        .await
        .expect("get")
        .expect("some");
    assert_eq!(
        (read.visibility, read.allow_visitors, read.topic.as_str()),
        (Visibility::Private, false, "coffee talk"),
        "kept what was not asked to change, and it is durable"
    );
    assert_eq!(
        store
            .update_channel(ch.id + 100, &ChannelUpdate::default())
            .await
            .expect("update"),
        None,
        "no such channel"
    );

    // Deleting takes the members, invitations and backup with it, and
    // nothing of any other channel.
    store
        .add_member(ch.id, other.id, Role::Member, 2)
        .await
        .expect("add");
    store
        .add_invite(ch.id, other.id, owner.id, 2)
        .await
        .expect("invite");
    assert_eq!(store.invitees(ch.id).await.expect("invitees"), [other.id]);
    let key = SigningKey::from_bytes(&[4; 32]);
    store
        .insert_messages(
            ch.id,
            &[message(&key, "cafe", "gone")],
            MessageSource::Host,
            3,
        )
        .await
        .expect("insert");
    let kept = store
        .insert_messages(
            keep.id,
            &[message(&key, "keep", "stays")],
            MessageSource::Host,
            3,
        )
        .await
        .expect("insert");
    assert!(store.delete_channel(ch.id).await.expect("delete"));
    assert!(!store.delete_channel(ch.id).await.expect("again"));
    assert!(store.channel_by_name("cafe").await.expect("get").is_none());
    assert!(store.members(ch.id).await.expect("members").is_empty());
    assert!(store.invitees(ch.id).await.expect("invitees").is_empty());
    assert!(!store.is_invited(ch.id, other.id).await.expect("invited"));
    assert!(store
        .messages_after(ch.id, 0, 10)
        .await
        .expect("after")
        .is_empty());
    assert_eq!(store.last_seq(ch.id).await.expect("last"), 0);
    assert_eq!(store.memberships(other.id).await.expect("mine"), vec![]);
    assert_eq!(
        store.last_seq(keep.id).await.expect("last"),
        kept.last_seq,
        "other channels keep their backup"
    );
    let names: Vec<String> = store
        .list_channels()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["keep"]);
    // The name is free again.
    store.create_channel(&new("cafe")).await.expect("re-create");
}

fn message(key: &SigningKey, channel: &str, body: &str) -> Message {
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

/// Expands to one `#[tokio::test]` per suite function for a backend.
pub(crate) async fn relations(store: Arc<dyn Store>) {
    use RelationKind::*;
    let ann = store.create_user("ann", "h", 1).await.expect("ann").id;
    let bob = store.create_user("Bob", "h", 1).await.expect("bob").id;
    let cy = store.create_user("cy", "h", 1).await.expect("cy").id;
    let none = Pair::default();
    assert_eq!(store.relation_pair(ann, bob).await.expect("pair"), none);
    let asked = Pair {
        mine: Some(Outgoing),
        theirs: Some(Incoming),
    };
    assert!(store
        .change_relation(ann, bob, none, asked, 10)
        .await
        .expect("ask"));
    assert!(
        !store
            .change_relation(ann, bob, none, asked, 11)
            .await
            .expect("stale"),
        "a change from a pair that is no longer so is refused"
    );
    assert_eq!(store.relation_pair(ann, bob).await.expect("pair"), asked);
    assert_eq!(
        store.relation_pair(bob, ann).await.expect("pair"),
        asked.flipped()
    );
    let friends = Pair {
        mine: Some(Friend),
        theirs: Some(Friend),
    };
    assert!(store
        .change_relation(bob, ann, asked.flipped(), friends, 20)
        .await
        .expect("accept"));
    let blocked = Pair {
        mine: Some(Blocked),
        theirs: None,
    };
    assert!(store
        .change_relation(ann, cy, none, blocked, 30)
        .await
        .expect("block"));
    let listed: Vec<_> = store
        .relations(ann)
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.other_id, r.username, r.kind, r.since_ms))
        .collect();
    assert_eq!(
        listed,
        vec![
            (bob, "Bob".to_owned(), Friend, 20),
            (cy, "cy".to_owned(), Blocked, 30)
        ],
        "by name, each stamped when it became what it is"
    );
    assert!(store.relations(cy).await.expect("cy's").is_empty());
    assert_eq!(store.blocked_by(cy).await.expect("blockers"), vec![ann]);
    assert!(store.blocked_by(bob).await.expect("blockers").is_empty());

    // Presence: friends watch without a shared channel; a blocked user
    // does not, even in one.
    let new = NewChannel {
        name: "hall".into(),
        owner_id: ann,
        visibility: Visibility::Public,
        allow_visitors: false,
        created_at_ms: 40,
    };
    let hall = store.create_channel(&new).await.expect("channel").id;
    store
        .add_member(hall, cy, Role::Member, 41)
        .await
        .expect("join");
    assert_eq!(store.watchers(ann).await.expect("ann's"), vec![bob]);
    let mut cys = store.watchers(cy).await.expect("cy's");
    cys.sort();
    assert_eq!(cys, vec![ann], "cy did not block ann");
    assert_eq!(store.watchers(bob).await.expect("bob's"), vec![ann]);

    assert!(store
        .change_relation(ann, cy, blocked, none, 50)
        .await
        .expect("unblock"));
    let mut anns = store.watchers(ann).await.expect("ann's");
    anns.sort();
    assert_eq!(anns, vec![bob, cy]);
    assert_eq!(
        store.relations(ann).await.expect("list").len(),
        1,
        "the block's row is gone"
    );
}

/// Many changes to one pair at once, each from the pair it read: exactly
/// one wins, and the halves agree afterwards.
pub(crate) async fn concurrent_relation_changes(store: Arc<dyn Store>) {
    let ann = store.create_user("ann", "h", 1).await.expect("ann").id;
    let bob = store.create_user("bob", "h", 1).await.expect("bob").id;
    let none = Pair::default();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let (me, other) = if i % 2 == 0 { (ann, bob) } else { (bob, ann) };
                let asked = Pair {
                    mine: Some(RelationKind::Outgoing),
                    theirs: Some(RelationKind::Incoming),
                };
                store
                    .change_relation(me, other, none, asked, 10 + i)
                    .await
                    .expect("change")
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("task"));
    }
    assert_eq!(won, 1);
    let pair = store.relation_pair(ann, bob).await.expect("pair");
    assert!(pair.is_consistent() && pair.mine.is_some(), "{pair:?}");
}

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
    let (n, bytes) = store.mailbox_size(&node).await.expect("size");
    assert_eq!(n, 3);
    assert_eq!(bytes, 11, "the bodies' bytes: one, two, three");
    let waiting = store.dms_after(&node, 0, 10).await.expect("fetch");
    let bodies: Vec<&str> = waiting.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(bodies, vec!["one", "two", "three"]);
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
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body, "three");
    // A device's mailbox goes with it.
    store.delete_session("s-bob").await.expect("logout");
    assert_eq!(store.mailbox_size(&node).await.expect("size"), (0, 0));
}

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
