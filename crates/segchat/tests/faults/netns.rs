//! A network namespace joined to this one by a veth pair, and silent cuts
//! made with nftables inside it; and the parts of bigger topologies (a
//! bare [`Ns`], free subnets, nftables rules in a namespace) for the NAT
//! lab of `nat/lab.rs`.
//!
//! Names carry this process's id and a counter, and each /24 subnet is
//! checked to be unused, so parallel tests and parallel runs do not
//! collide. Dropping a [`Netns`] (or an [`Ns`]) deletes the pair and the
//! namespace (and so every rule in it), also when the test panicked.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

use crate::procs::Launch;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The nftables table a cut lives in.
const CUT_TABLE: &str = "segchat_fault_cut";

#[derive(Debug)]
pub(crate) struct Netns {
    pub(crate) name: String,
    /// This side of the pair (deleting it deletes both ends).
    outer_if: String,
    /// The address on this side (reachable from inside).
    pub(crate) outer_ip: Ipv4Addr,
    /// The address inside the namespace.
    pub(crate) inner_ip: Ipv4Addr,
}

/// Runs a command to completion; its stderr is the error.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether any interface here has an address in 10.`b`.`c`.0/24.
fn subnet_in_use(b: u8, c: u8) -> bool {
    let out = Command::new("ip")
        .args([
            "-4",
            "-o",
            "addr",
            "show",
            "to",
            &format!("10.{b}.{c}.0/24"),
        ])
        .output();
    !matches!(out, Ok(o) if o.status.success() && o.stdout.is_empty())
}

/// A /24 picked from the pid and `n`; skips used ones (another run, or a
/// LAN on 10/8) and those in `taken`.
fn pick_subnet(n: u32, taken: &[(u8, u8)]) -> anyhow::Result<(u8, u8)> {
    let pid = std::process::id();
    for k in 0..64u32 {
        let h = pid
            .wrapping_mul(2_654_435_761)
            .wrapping_add((n + k) * 40_503);
        let (b, c) = (200 + (h % 50) as u8, ((h >> 8) % 256) as u8);
        if !taken.contains(&(b, c)) && !subnet_in_use(b, c) {
            return Ok((b, c));
        }
    }
    bail!("no free 10.x.y.0/24 subnet found")
}

/// A free 10.`b`.`c`.0/24, not one of `taken`, for a topology of several
/// namespaces.
pub(crate) fn free_subnet(taken: &[(u8, u8)]) -> anyhow::Result<(u8, u8)> {
    pick_subnet(NEXT.fetch_add(1, Ordering::Relaxed), taken)
}

/// A tag unique to this process and call, for names of namespaces and
/// interfaces (at most 7 characters).
pub(crate) fn unique_tag() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:05}{:02}", std::process::id() % 100_000, n % 100)
}

/// Loads an nftables ruleset inside namespace `ns`.
pub(crate) fn nft_in(ns: &str, rules: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not run nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft refused the rules in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A bare network namespace (loopback up), for topologies built of
/// several; deleted when dropped (with every interface and rule in it).
#[derive(Debug)]
pub(crate) struct Ns {
    pub(crate) name: String,
}

impl Ns {
    pub(crate) fn create(name: String) -> anyhow::Result<Ns> {
        run(&["ip", "netns", "add", &name])?;
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS ARGS`.
    pub(crate) fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Runs a command inside the namespace.
    pub(crate) fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    pub(crate) fn nft(&self, rules: &str) -> anyhow::Result<()> {
        nft_in(&self.name, rules)
    }

    /// How to start a process inside the namespace.
    pub(crate) fn launch(&self) -> Launch {
        launch_in(&self.name)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

impl Netns {
    /// Makes the namespace and the pair, with addresses, links up.
    pub(crate) fn create() -> anyhow::Result<Netns> {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", pid % 1_000_000);
        let (b, c) = pick_subnet(n, &[])?;
        let ns = Netns {
            name: format!("scfault{tag}"),
            outer_if: format!("scf{tag}o"),
            outer_ip: Ipv4Addr::new(10, b, c, 1),
            inner_ip: Ipv4Addr::new(10, b, c, 2),
        };
        let inner_if = format!("scf{tag}i");
        run(&["ip", "netns", "add", &ns.name])?;
        // From here on, Drop cleans up whatever was made.
        let outer_addr = format!("{}/24", ns.outer_ip);
        let inner_addr = format!("{}/24", ns.inner_ip);
        run(&[
            "ip",
            "link",
            "add",
            &ns.outer_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_if,
        ])?;
        run(&["ip", "link", "set", &inner_if, "netns", &ns.name])?;
        run(&["ip", "addr", "add", &outer_addr, "dev", &ns.outer_if])?;
        run(&["ip", "link", "set", &ns.outer_if, "up"])?;
        ns.exec(&["ip", "addr", "add", &inner_addr, "dev", &inner_if])?;
        ns.exec(&["ip", "link", "set", &inner_if, "up"])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub(crate) fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// How to start a process inside the namespace.
    pub(crate) fn launch(&self) -> Launch {
        launch_in(&self.name)
    }

    /// Silently drops every packet (TCP or UDP) between this namespace and
    /// `peer` (a node's QUIC address outside), and with `relay` the TCP
    /// packets to and from the server's relay, so the peer is unreachable
    /// by any path: nothing is closed or refused, the packets just vanish,
    /// as on a dead route. The relay shares its TCP port with the tracker
    /// links: `relay` names the server's address and the local port of the
    /// node's tracker link, whose packets still pass. Everything else (the
    /// server, the node's API) still passes.
    pub(crate) fn cut(
        &self,
        peer: SocketAddr,
        relay: Option<(SocketAddr, u16)>,
    ) -> anyhow::Result<Cut<'_>> {
        let (ip, port) = (peer.ip(), peer.port());
        let (relay_out, relay_in) = match relay {
            Some((r, tracker)) => (
                format!(
                    "ip daddr {} tcp dport {} tcp sport != {tracker} drop;",
                    r.ip(),
                    r.port()
                ),
                format!(
                    "ip saddr {} tcp sport {} tcp dport != {tracker} drop;",
                    r.ip(),
                    r.port()
                ),
            ),
            None => (String::new(), String::new()),
        };
        let rules = format!(
            "table inet {CUT_TABLE} {{
               chain out {{ type filter hook output priority 0; policy accept;
                 ip daddr {ip} meta l4proto {{ tcp, udp }} th dport {port} drop; {relay_out} }}
               chain in {{ type filter hook input priority 0; policy accept;
                 ip saddr {ip} meta l4proto {{ tcp, udp }} th sport {port} drop; {relay_in} }}
             }}"
        );
        nft_in(&self.name, &rules).context("the cut")?;
        Ok(Cut {
            ns: self,
            healed: false,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.outer_if]);
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A cut in force; healed when dropped.
#[derive(Debug)]
pub(crate) struct Cut<'a> {
    ns: &'a Netns,
    healed: bool,
}

impl Cut<'_> {
    /// Lets the packets through again.
    pub(crate) fn heal(mut self) -> anyhow::Result<()> {
        self.healed = true;
        self.ns.exec(&["nft", "delete", "table", "inet", CUT_TABLE])
    }
}

impl Drop for Cut<'_> {
    fn drop(&mut self) {
        if !self.healed {
            let _ = self.ns.exec(&["nft", "delete", "table", "inet", CUT_TABLE]);
        }
    }
}

/// How to start a process inside the namespace `name`.
fn launch_in(name: &str) -> Launch {
    Launch {
        prefix: vec!["ip".into(), "netns".into(), "exec".into(), name.into()],
        env: Vec::new(),
    }
}
