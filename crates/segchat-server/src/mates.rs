//! Whom to tell of a user's presence (the users who share a channel with
//! them), remembered between changes: a busy server sees thousands of
//! presence changes a second and few membership changes, and asking the
//! database each time held every change behind a round trip.
//!
//! Invariant: an answer is remembered only if no membership change was
//! noted ([`Mates::changed`]) between the question being sent to the
//! store and the answer being stored, and every membership change clears
//! what is remembered. Changes made through this instance are noted right
//! after they are stored; another instance's arrive over the cluster
//! link as a running count, which every instance also sends each refresh
//! period (`cluster`): a note NATS lost is noticed at the next refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreResult};

/// User ids remembered in all, over all users (8 bytes each): past it,
/// answers are used but not kept, so a server with huge channels does
/// not grow without bound.
const BUDGET: usize = 4 * 1024 * 1024;

/// Channel mates by user. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Mates {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped by every membership change.
    generation: u64,
    users: HashMap<i64, Arc<[i64]>>,
    /// Ids held in `users`, summed.
    held: usize,
}

impl Mates {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The users who share a channel with `user`.
    pub(crate) async fn of(&self, store: &dyn Store, user: i64) -> StoreResult<Arc<[i64]>> {
        let asked_at = {
            let inner = self.lock();
            if let Some(mates) = inner.users.get(&user) {
                return Ok(mates.clone());
            }
            inner.generation
        };
        let mates: Arc<[i64]> = store.watchers(user).await?.into();
        let mut inner = self.lock();
        if inner.generation == asked_at && inner.held + mates.len() <= BUDGET {
            inner.held += mates.len();
            if let Some(old) = inner.users.insert(user, mates.clone()) {
                inner.held -= old.len();
            }
        }
        Ok(mates)
    }

    /// Somebody joined or left a channel, or a channel was created or
    /// deleted: forget every answer, including those on their way.
    pub(crate) fn changed(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.users.clear();
        inner.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use segchat_proto::types::{Role, Visibility};

    use super::*;
    use crate::store::{NewChannel, SqliteStore};

    async fn user(store: &SqliteStore, name: &str) -> i64 {
        store.create_user(name, "x", 1).await.expect("user").id
    }

    #[tokio::test]
    async fn an_answer_is_kept_until_a_membership_change_is_noted() {
        let store = SqliteStore::open(":memory:").expect("store");
        let (a, b, c) = (
            user(&store, "a").await,
            user(&store, "b").await,
            user(&store, "c").await,
        );
        let new = NewChannel {
            name: "ops".into(),
            owner_id: a,
            visibility: Visibility::Public,
            allow_visitors: false,
            created_at_ms: 1,
        };
        let ch = store.create_channel(&new).await.expect("channel").id;
        store
            .add_member(ch, b, Role::Member, 2)
            .await
            .expect("join");
        let mates = Mates::default();
        assert_eq!(&*mates.of(&store, a).await.expect("mates"), &[b]);
        store
            .add_member(ch, c, Role::Member, 3)
            .await
            .expect("join");
        assert_eq!(
            &*mates.of(&store, a).await.expect("mates"),
            &[b],
            "remembered: the change was not noted"
        );
        mates.changed();
        let mut now = mates.of(&store, a).await.expect("mates").to_vec();
        now.sort();
        assert_eq!(now, vec![b, c], "asked again after the note");
    }
}
