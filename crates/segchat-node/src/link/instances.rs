//! The server's instances, in the order the node tries them: each
//! `--server` entry in the order given, and for each entry every address
//! its name resolves to (one name may stand for several instances),
//! IPv4 first. The names are resolved again at the start of each pass,
//! so a change in DNS is followed.
//!
//! The node stays on the address it reached; a failure moves it to the
//! next one at once, and only a whole pass of failures makes it wait
//! (the actor's backoff).

use std::net::SocketAddr;

/// Where the node is in its list of addresses.
#[derive(Debug)]
pub(super) struct Instances {
    /// The `--server` entries, as given.
    entries: Vec<String>,
    /// This pass's addresses (an entry that did not resolve stays a name:
    /// dialling it says why).
    addrs: Vec<String>,
    /// The address tried next, in `addrs`.
    at: usize,
}

impl Instances {
    /// The instances named by `server_addr` (comma-separated).
    pub(super) fn new(server_addr: &str) -> Instances {
        let entries: Vec<String> = crate::config::server_addrs(server_addr)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let entries = match entries.is_empty() {
            true => vec![server_addr.to_owned()],
            false => entries,
        };
        Instances {
            entries,
            addrs: Vec::new(),
            at: 0,
        }
    }

    /// The address to try now, its place (1-based) and how many this pass
    /// has. Resolves the names when a pass begins.
    pub(super) async fn current(&mut self) -> (String, usize, usize) {
        if self.addrs.is_empty() || self.at >= self.addrs.len() {
            self.addrs = resolve_all(&self.entries).await;
            self.at = 0;
        }
        (self.addrs[self.at].clone(), self.at + 1, self.addrs.len())
    }

    /// The address tried failed: the next one. True while this pass has
    /// addresses left untried.
    pub(super) fn failed(&mut self) -> bool {
        self.at += 1;
        self.at < self.addrs.len()
    }
}

/// Every address of every entry, in order, IPv4 before IPv6 within an
/// entry, each once.
async fn resolve_all(entries: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in entries {
        let found: Vec<SocketAddr> = match tokio::net::lookup_host(entry.as_str()).await {
            Ok(found) => found.collect(),
            Err(_) => Vec::new(),
        };
        if found.is_empty() {
            out.push(entry.clone());
            continue;
        }
        let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) =
            found.into_iter().partition(SocketAddr::is_ipv4);
        for addr in v4.into_iter().chain(v6) {
            let addr = addr.to_string();
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_entry_is_every_address_it_resolves_to_ipv4_first() {
        let mut i = Instances::new("localhost:7000, 127.0.0.2:7001,127.0.0.1:7000");
        let (first, place, of) = i.current().await;
        assert_eq!((first.as_str(), place), ("127.0.0.1:7000", 1));
        let mut seen = vec![first];
        while i.failed() {
            seen.push(i.current().await.0);
        }
        assert_eq!(seen.len(), of);
        assert_eq!(seen[0], "127.0.0.1:7000");
        assert!(seen.contains(&"127.0.0.2:7001".to_string()));
        let v6 = seen.iter().position(|a| a == "[::1]:7000");
        let v4b = seen.iter().position(|a| a == "127.0.0.2:7001");
        if let (Some(v6), Some(v4b)) = (v6, v4b) {
            assert!(v6 < v4b, "localhost's addresses come before the next entry");
        }
        assert_eq!(
            seen.iter().filter(|a| *a == "127.0.0.1:7000").count(),
            1,
            "each address once"
        );
        // A new pass starts from the top.
        assert_eq!(i.current().await.0, "127.0.0.1:7000");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_stays_in_the_list() {
        let mut i = Instances::new("no-such-host.invalid:1,127.0.0.1:2");
        assert_eq!(i.current().await.0, "no-such-host.invalid:1");
        assert!(i.failed());
        assert_eq!(i.current().await.0, "127.0.0.1:2");
        assert!(!i.failed());
    }
}
