//! The suite on friends and blocks.

use std::sync::Arc;

use segchat_proto::friends::{Pair, RelationKind};
use segchat_proto::types::{Role, Visibility};

use crate::store::{NewChannel, Store};

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
