use ed25519_dalek::SigningKey;
use segchat_proto::edits::{Ref, RefKind};
use segchat_proto::message::{Draft, Message};
use segchat_proto::types::{AccountKind, ChannelInfo, Presence, Visibility};

use super::mentions;
use crate::store::messages::tests::hosted;
use crate::store::{SearchQuery, Store, StoredSession};

fn id(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n)
}

/// Message `n` in channel `c` by `author`, at time `ts`.
fn by(author: &str, n: u128, ts: u64, re: Option<(RefKind, u128)>, body: &str) -> Message {
    let server = SigningKey::from_bytes(&[1; 32]);
    let node = SigningKey::from_bytes(&[author.len() as u8 + 2; 32]);
    let ticket = segchat_proto::ticket::Ticket {
        username: author.into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        node_key: hex::encode(node.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms: u64::MAX,
    }
    .sign(&server)
    .expect("ticket");
    Draft {
        file: None,
        id: id(n),
        channel: "c",
        author,
        ts_ms: ts,
        body,
        re: re.map(|(kind, to)| Ref { kind, id: id(to) }),
    }
    .sign(&node, ticket)
    .expect("sign")
}

async fn store_as(me: &str) -> Store {
    let s = Store::open_in_memory().expect("store");
    s.save_session(StoredSession {
        token: "t".into(),
        username: me.into(),
        display_name: me.into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        status: Presence::Online,
    })
    .await
    .expect("session");
    s.cache_channels(
        vec![ChannelInfo {
            name: "c".into(),
            owner: "olga".into(),
            visibility: Visibility::Public,
            allow_visitors: false,
            created_at_ms: 0,
            member_count: 3,
            my_role: None,
            host: None,
            title: "c".into(),
            topic: String::new(),
        }],
        crate::store::CacheMark::NOW,
    )
    .await
    .expect("channels");
    s
}

async fn put(s: &Store, m: &Message) {
    s.insert_message(m.clone(), hosted()).await.expect("insert");
}

async fn raw_body(s: &Store, n: u128) -> String {
    let id = id(n).to_string();
    s.read(move |c| {
        Ok(c.query_row(
            "SELECT body FROM messages WHERE id = ?1",
            rusqlite::params![id],
            |r| r.get(0),
        )?)
    })
    .await
    .expect("body")
}

async fn hits(s: &Store, word: &str) -> usize {
    s.search(SearchQuery::new(word, 50).expect("query"))
        .await
        .expect("search")
        .results
        .len()
}

#[tokio::test]
async fn an_edit_shows_the_new_text_and_the_old_text_is_gone_from_row_and_index() {
    let s = store_as("bob").await;
    put(&s, &by("alice", 1, 10, None, "teh quick fox")).await;
    s.index_some().await.expect("index");
    assert_eq!(hits(&s, "teh").await, 1);
    put(
        &s,
        &by("alice", 2, 20, Some((RefKind::Edit, 1)), "the quick fox"),
    )
    .await;
    let shown = s
        .message(id(1).to_string())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(shown.body, "the quick fox");
    assert_eq!(shown.edited_ms, Some(20));
    assert_eq!(hits(&s, "teh").await, 0, "the old text left the index");
    assert_eq!(hits(&s, "the").await, 1);
    assert_eq!(raw_body(&s, 1).await, "", "the original body is redacted");
    let history = s.history("c".into(), None, 50).await.expect("history");
    assert_eq!(
        history.len(),
        1,
        "an edit is not a row of its own: {history:?}"
    );
}

#[tokio::test]
async fn an_edit_by_anyone_but_the_author_changes_nothing() {
    let s = store_as("bob").await;
    put(&s, &by("alice", 1, 10, None, "mine")).await;
    put(
        &s,
        &by("mallory", 2, 20, Some((RefKind::Edit, 1)), "forged"),
    )
    .await;
    let shown = s
        .message(id(1).to_string())
        .await
        .expect("read")
        .expect("row");
    assert_eq!((shown.body.as_str(), shown.edited_ms), ("mine", None));
    assert_eq!(hits(&s, "forged").await, 0);
    // Nor may a stranger delete it; the channel's owner may.
    put(&s, &by("mallory", 3, 30, Some((RefKind::Delete, 1)), "")).await;
    assert!(
        !s.message(id(1).to_string())
            .await
            .expect("read")
            .expect("row")
            .deleted
    );
    put(&s, &by("olga", 4, 40, Some((RefKind::Delete, 1)), "")).await;
    assert!(
        s.message(id(1).to_string())
            .await
            .expect("read")
            .expect("row")
            .deleted
    );
}

#[tokio::test]
async fn concurrent_edits_end_the_same_in_every_arrival_order() {
    let target = by("alice", 1, 10, None, "v0");
    let early = by("alice", 2, 20, Some((RefKind::Edit, 1)), "v-early");
    let late = by("alice", 3, 30, Some((RefKind::Edit, 1)), "v-late");
    let orders = [
        vec![&target, &early, &late],
        vec![&target, &late, &early],
        vec![&late, &early, &target],
        vec![&early, &target, &late],
    ];
    for order in orders {
        let s = store_as("bob").await;
        for m in &order {
            put(&s, m).await;
        }
        let shown = s
            .message(id(1).to_string())
            .await
            .expect("read")
            .expect("row");
        assert_eq!(
            shown.body,
            "v-late",
            "order {:?}",
            order.iter().map(|m| m.id).collect::<Vec<_>>()
        );
        assert_eq!(raw_body(&s, 2).await, "", "the superseded edit is redacted");
        assert_eq!(hits(&s, "v-early").await, 0);
    }
}

#[tokio::test]
async fn a_deletion_that_arrives_first_removes_the_message_when_it_comes() {
    let s = store_as("bob").await;
    put(&s, &by("alice", 2, 20, Some((RefKind::Delete, 1)), "")).await;
    put(&s, &by("alice", 1, 10, None, "oops secret")).await;
    let shown = s
        .message(id(1).to_string())
        .await
        .expect("read")
        .expect("row");
    assert!(shown.deleted);
    assert_eq!(shown.body, "");
    assert_eq!(raw_body(&s, 1).await, "");
    assert_eq!(hits(&s, "secret").await, 0);
    // The redacted row still verifies, so it can be passed on.
    let hosted = s.outbox(10).await.expect("outbox");
    assert!(hosted.is_empty());
    let unread = s.unread("bob".into()).await.expect("unread");
    assert!(
        unread.is_empty(),
        "deletions and deleted messages are not unread: {unread:?}"
    );
}

#[tokio::test]
async fn reactions_count_each_users_latest_and_replies_quote_their_target() {
    let s = store_as("bob").await;
    put(&s, &by("alice", 1, 10, None, "ship it?")).await;
    put(&s, &by("bob", 2, 20, Some((RefKind::React, 1)), "👍")).await;
    put(&s, &by("carol", 3, 21, Some((RefKind::React, 1)), "👍")).await;
    put(&s, &by("carol", 4, 22, Some((RefKind::React, 1)), "🎉")).await;
    put(&s, &by("carol", 5, 23, Some((RefKind::Unreact, 1)), "🎉")).await;
    put(
        &s,
        &by("carol", 6, 24, Some((RefKind::Reply, 1)), "yes @bob"),
    )
    .await;
    let history = s.history("c".into(), None, 50).await.expect("history");
    assert_eq!(history.len(), 2, "{history:?}");
    let (reply, first) = (&history[0], &history[1]);
    assert_eq!(first.reactions.len(), 1, "{:?}", first.reactions);
    let thumbs = &first.reactions[0];
    assert_eq!(
        (thumbs.emoji.as_str(), thumbs.count, thumbs.me),
        ("👍", 2, true)
    );
    assert_eq!(thumbs.users, ["bob", "carol"]);
    assert_eq!(reply.reply_to.as_deref(), Some(id(1).to_string().as_str()));
    assert_eq!(
        reply.quote.as_ref().map(|q| q.body.as_str()),
        Some("ship it?")
    );
    assert!(reply.mentions_me && !first.mentions_me);
    let unread = s.unread("bob".into()).await.expect("unread");
    assert_eq!(
        (unread[0].count, unread[0].mentions),
        (2, 1),
        "reactions are not unread"
    );
}

#[test]
fn a_mention_is_the_whole_name_after_an_at() {
    assert!(mentions("hi @bob", "bob"));
    assert!(mentions("@bob, look", "bob"));
    assert!(mentions("(@bob)", "bob"));
    assert!(!mentions("hi @bobby", "bob"));
    assert!(!mentions("mail bob@bob.org", "bob"));
    assert!(!mentions("hi bob", "bob"));
    assert!(
        mentions("thanks @Bob.", "bob"),
        "any case; a full stop ends it"
    );
    assert!(!mentions("see @bob.smith", "bob"));
}

/// The channel `c` as the server lists it, created at `created_at_ms`.
fn listed(created_at_ms: u64) -> ChannelInfo {
    ChannelInfo {
        name: "c".into(),
        owner: "olga".into(),
        visibility: Visibility::Public,
        allow_visitors: false,
        created_at_ms,
        member_count: 3,
        my_role: None,
        host: None,
        title: "c".into(),
        topic: String::new(),
    }
}

async fn fts_intact(s: &Store) {
    s.with(|c| {
        c.execute(
            "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')",
            [],
        )?;
        Ok(())
    })
    .await
    .expect("the search index matches the messages");
}

#[tokio::test]
async fn a_deleted_channel_is_forgotten_with_its_edits_and_search_entries() {
    let s = store_as("bob").await;
    put(&s, &by("alice", 1, 10, None, "alpha words")).await;
    put(
        &s,
        &by("alice", 2, 20, Some((RefKind::Edit, 1)), "beta words"),
    )
    .await;
    s.index_some().await.expect("index");
    // Stored but not indexed yet.
    put(&s, &by("alice", 3, 30, None, "gamma words")).await;
    assert_eq!(s.forget_channel("c".into()).await.expect("forget"), 3);
    fts_intact(&s).await;
    for word in ["alpha", "beta", "gamma", "words"] {
        assert_eq!(hits(&s, word).await, 0, "{word}");
    }
    assert!(s.message(id(1).to_string()).await.expect("read").is_none());
    let cached = s.cached_channels().await.expect("read");
    assert!(cached.is_none_or(|c| c.channels.is_empty()));
}

#[tokio::test]
async fn a_channel_created_again_under_a_known_name_starts_from_nothing() {
    let s = store_as("bob").await;
    put(&s, &by("alice", 1, 10, None, "from the old channel")).await;
    s.index_some().await.expect("index");
    // The same listing again keeps it...
    s.cache_channels(vec![listed(0)], s.channel_cache_mark().await.expect("mark"))
        .await
        .expect("list");
    assert_eq!(hits(&s, "old").await, 1);
    // ...a channel of that name created since (the old one was deleted
    // while this node was away) does not inherit it.
    s.cache_channels(
        vec![listed(99)],
        s.channel_cache_mark().await.expect("mark"),
    )
    .await
    .expect("list");
    fts_intact(&s).await;
    assert_eq!(hits(&s, "old").await, 0);
    assert!(s.message(id(1).to_string()).await.expect("read").is_none());
    put(&s, &by("alice", 2, 20, None, "in the new channel")).await;
    assert_eq!(hits(&s, "new").await, 1);
}
