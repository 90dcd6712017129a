//! An index of connections by registered user, so that telling a user
//! something costs their own connections, not a walk over everybody's.
//!
//! Invariant (kept by the hub and by `Remote`, which update it wherever a
//! connection's user changes): a key is listed under a user exactly while
//! the connection it names is signed in as that user; a user with no
//! connection has no entry.

use std::collections::HashMap;

/// Connection keys (`K`) by user id. Plain data: the hub guards it.
#[derive(Debug)]
pub(super) struct ByUser<K> {
    users: HashMap<i64, Vec<K>>,
}

impl<K> Default for ByUser<K> {
    fn default() -> Self {
        ByUser {
            users: HashMap::new(),
        }
    }
}

impl<K: PartialEq + Copy> ByUser<K> {
    /// The connection `key` moved from user `before` to user `after`
    /// (`None`: not signed in as a registered user).
    pub(super) fn moved(&mut self, key: K, before: Option<i64>, after: Option<i64>) {
        if before == after {
            return;
        }
        if let Some(user) = before {
            if let Some(keys) = self.users.get_mut(&user) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    self.users.remove(&user);
                }
            }
        }
        if let Some(user) = after {
            self.users.entry(user).or_default().push(key);
        }
    }

    /// The user's connections (none when they have none).
    pub(super) fn of(&self, user: i64) -> &[K] {
        self.users.get(&user).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_listed_under_its_user_until_it_leaves() {
        let mut index = ByUser::default();
        index.moved(1u64, None, Some(7));
        index.moved(2, None, Some(7));
        index.moved(3, None, Some(8));
        assert_eq!(index.of(7), &[1, 2]);
        index.moved(1, Some(7), None);
        assert_eq!(index.of(7), &[2]);
        index.moved(2, Some(7), Some(8));
        assert_eq!(index.of(7), &[] as &[u64]);
        assert!(!index.users.contains_key(&7), "no empty entries left");
        assert_eq!(index.of(8), &[3, 2]);
    }

    #[test]
    fn staying_with_the_same_user_lists_once() {
        let mut index = ByUser::default();
        index.moved(1u64, None, Some(7));
        index.moved(1, Some(7), Some(7));
        assert_eq!(index.of(7), &[1]);
    }
}
