//! The suite on channels: the registry, members, settings, deletion.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use segchat_proto::types::{Role, Visibility};

use super::messages::message;
use crate::store::{ChannelUpdate, MessageSource, NewChannel, Store, StoreError};

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
