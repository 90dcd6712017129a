//! The per-source connection cap: one address cannot hold more than
//! `max_conns_per_source` connections, so it cannot use up the server's
//! file descriptors and lock everyone else out. Connections that come
//! through the relay have no source address the server can see: each
//! node key may hold at most [`RELAYED_PER_KEY`] of them, and all of them
//! together one count of their own (the relay already caps how many TCP
//! connections, so keys, one address may hold there).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::auth::Source;

/// Tracker connections one node key may hold through the relay (a node
/// needs one; a second while it reconnects).
pub(crate) const RELAYED_PER_KEY: usize = 2;

/// What a connection is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A direct connection: its source address (an IPv4 address or an
    /// IPv6 /64).
    Source(Source),
    /// A relayed connection: the node key it proved.
    Node(String),
    /// Every relayed connection together.
    Relayed,
}

/// Open connections per [`Key`].
#[derive(Debug)]
pub(crate) struct ConnCounter {
    max: usize,
    relayed_max: usize,
    open: Mutex<HashMap<Key, usize>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    counter: Arc<ConnCounter>,
    keys: Vec<Key>,
}

impl ConnCounter {
    pub(crate) fn new(max: usize, relayed_max: usize) -> Arc<ConnCounter> {
        Arc::new(ConnCounter {
            max,
            relayed_max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more direct connection from `ip`, or `None` at
    /// the cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        self.take(vec![(Key::Source(Source::of(ip)), self.max)])
    }

    /// A place for one more connection through the relay of the node
    /// with key `node` (hex), or `None` at its cap or the relayed total.
    pub(crate) fn admit_relayed(self: &Arc<Self>, node: &str) -> Option<ConnSlot> {
        self.take(vec![
            (Key::Node(node.to_owned()), RELAYED_PER_KEY),
            (Key::Relayed, self.relayed_max),
        ])
    }

    /// Counts one more under every key, if none is at its cap.
    fn take(self: &Arc<Self>, keys: Vec<(Key, usize)>) -> Option<ConnSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if keys
            .iter()
            .any(|(k, max)| open.get(k).copied().unwrap_or(0) >= *max)
        {
            return None;
        }
        for (k, _) in &keys {
            *open.entry(k.clone()).or_insert(0) += 1;
        }
        Some(ConnSlot {
            counter: self.clone(),
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(n) = open.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_at_most_max_and_a_closed_one_frees_its_place() {
        let counter = ConnCounter::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = counter.admit(a).expect("first");
        let _second = counter.admit(a).expect("second");
        assert!(counter.admit(a).is_none(), "third from the same source");
        assert!(counter.admit(b).is_some(), "another source");
        drop(first);
        assert!(counter.admit(a).is_some(), "a place came free");
    }

    #[test]
    fn relayed_connections_are_capped_per_key_and_share_a_count_of_their_own() {
        let counter = ConnCounter::new(1, 3);
        let zero: IpAddr = "0.0.0.0".parse().expect("ip");
        let _direct = counter.admit(zero).expect("direct from 0.0.0.0");
        let first = counter.admit_relayed("aa").expect("first of aa");
        let _second = counter.admit_relayed("aa").expect("second of aa");
        assert!(counter.admit_relayed("aa").is_none(), "a third of one key");
        let _bb = counter.admit_relayed("bb").expect("another key");
        assert!(counter.admit_relayed("cc").is_none(), "the relayed total");
        assert!(
            counter.admit(zero).is_none(),
            "the direct source keeps its own cap"
        );
        drop(first);
        assert!(counter.admit_relayed("cc").is_some(), "a place came free");
    }
}
