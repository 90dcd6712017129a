//! The per-source connection cap: one address cannot hold more than
//! `max_conns_per_source` connections, so it cannot use up the server's
//! file descriptors and lock everyone else out. Connections that come
//! through the relay have no source address the server can see; they
//! share one count of their own (the relay already caps how many TCP
//! connections one address may hold there).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::auth::Source;

/// Open connections per source (an IPv4 address or an IPv6 /64; `None`
/// for every relayed connection together).
#[derive(Debug)]
pub(crate) struct ConnCounter {
    max: usize,
    relayed_max: usize,
    open: Mutex<HashMap<Option<Source>, usize>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    counter: Arc<ConnCounter>,
    source: Option<Source>,
}

impl ConnCounter {
    pub(crate) fn new(max: usize, relayed_max: usize) -> Arc<ConnCounter> {
        Arc::new(ConnCounter {
            max,
            relayed_max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip` (`None`: through the
    /// relay), or `None` at the cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<ConnSlot> {
        let source = ip.map(Source::of);
        let max = if source.is_some() {
            self.max
        } else {
            self.relayed_max
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(source).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            counter: self.clone(),
            source,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.source);
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
        let a: Option<IpAddr> = Some("10.0.0.1".parse().expect("ip"));
        let b: Option<IpAddr> = Some("10.0.0.2".parse().expect("ip"));
        let first = counter.admit(a).expect("first");
        let _second = counter.admit(a).expect("second");
        assert!(counter.admit(a).is_none(), "third from the same source");
        assert!(counter.admit(b).is_some(), "another source");
        drop(first);
        assert!(counter.admit(a).is_some(), "a place came free");
    }

    #[test]
    fn relayed_connections_share_a_count_of_their_own() {
        let counter = ConnCounter::new(1, 2);
        let a: Option<IpAddr> = Some("0.0.0.0".parse().expect("ip"));
        let _direct = counter.admit(a).expect("direct from 0.0.0.0");
        let _one = counter.admit(None).expect("first relayed");
        let _two = counter.admit(None).expect("second relayed");
        assert!(counter.admit(None).is_none(), "third relayed");
        assert!(
            counter.admit(a).is_none(),
            "the direct source is still at its cap"
        );
    }
}
