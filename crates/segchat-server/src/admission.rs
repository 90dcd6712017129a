//! The per-source connection cap: one address cannot hold more than
//! `max_conns_per_source` tracker links, so it cannot use up the server's
//! file descriptors and lock everyone else out. Every tracker link is a
//! TCP connection, so its source address is the one the server sees
//! (a node whose UDP is blocked reaches the server over TCP all the same).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::net::IpAddr;

use crate::auth::Source;

/// Open connections per source (an IPv4 address or an IPv6 /64).
#[derive(Debug)]
pub(crate) struct ConnCounter {
    max: usize,
    open: Mutex<HashMap<Source, usize>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    counter: Arc<ConnCounter>,
    source: Source,
}

impl ConnCounter {
    pub(crate) fn new(max: usize) -> Arc<ConnCounter> {
        Arc::new(ConnCounter {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, or `None` at the cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let source = Source::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(source).or_insert(0);
        if *n >= self.max {
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
        let counter = ConnCounter::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = counter.admit(a).expect("first");
        let _second = counter.admit(a).expect("second");
        assert!(counter.admit(a).is_none(), "third from the same source");
        assert!(counter.admit(b).is_some(), "another source");
        drop(first);
        assert!(counter.admit(a).is_some(), "a place came free");
    }
}
