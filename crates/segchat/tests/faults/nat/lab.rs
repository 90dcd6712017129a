//! The lab of one case: network namespaces for the WAN, each node and
//! each NAT router, the veth pairs and bridge between them, and the
//! routers' nftables NAT (see the `nat` module's doc for the picture and
//! the NAT kinds). Dropping a [`Lab`] deletes it, also on failure.

use std::net::Ipv4Addr;

use crate::netns::{free_subnet, run, unique_tag, Ns};
use crate::procs::NodeAddrs;

/// Interface names inside the namespaces (each namespace has its own).
const WAN_IF: &str = "wan";
const LAN_IF: &str = "lan";
pub(super) const MGMT_IF: &str = "mgmt";
const BRIDGE: &str = "br0";

/// A kind of NAT (see the `nat` module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nat {
    Easy,
    PortRestricted,
    Symmetric,
    UdpBlocked,
}

impl Nat {
    pub(super) const ALL: [Nat; 4] = [
        Nat::Easy,
        Nat::PortRestricted,
        Nat::Symmetric,
        Nat::UdpBlocked,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Nat::Easy => "easy",
            Nat::PortRestricted => "port_restricted",
            Nat::Symmetric => "symmetric",
            Nat::UdpBlocked => "udp_blocked",
        }
    }

    /// The router's ruleset, for a node at `node` on its LAN.
    fn rules(self, node: Ipv4Addr) -> String {
        let (dnat, forward_dnat) = match self {
            Nat::Easy => (
                format!("iifname \"{WAN_IF}\" meta l4proto udp dnat to {node};"),
                "ct status dnat accept;",
            ),
            _ => (String::new(), ""),
        };
        let flags = match self {
            Nat::Symmetric => " fully-random",
            _ => "",
        };
        let outbound_udp = match self {
            Nat::UdpBlocked => format!("iifname \"{LAN_IF}\" meta l4proto udp drop;"),
            _ => String::new(),
        };
        format!(
            "table ip segchat_nat {{
               chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;
                 {dnat} }}
               chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
                 oifname \"{WAN_IF}\" masquerade{flags}; }}
               chain forward {{ type filter hook forward priority filter; policy drop;
                 {outbound_udp}
                 ct state established,related accept;
                 iifname \"{LAN_IF}\" oifname \"{WAN_IF}\" accept;
                 {forward_dnat} }}
               chain input {{ type filter hook input priority filter; policy accept;
                 iifname \"{WAN_IF}\" meta l4proto udp drop; }}
             }}"
        )
    }
}

/// Where a node sits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Place {
    Public,
    Behind(Nat),
}

/// One node's namespace, and the router in front of it, if any.
#[derive(Debug)]
pub(super) struct Site {
    pub(super) node: Ns,
    _router: Option<Ns>,
    /// Where the node's API listens (the management pair, TCP only).
    api_ip: Ipv4Addr,
    /// The node's QUIC address: on the WAN if public, on its LAN if not.
    p2p_ip: Ipv4Addr,
}

impl Site {
    pub(super) fn addrs(&self) -> NodeAddrs {
        NodeAddrs {
            p2p: format!("{}:0", self.p2p_ip),
            api: format!("{}:0", self.api_ip),
        }
    }
}

/// The whole topology of one case (see the `nat` module's doc). Dropping it
/// deletes every namespace and pair it made, also on failure.
#[derive(Debug)]
pub(super) struct Lab {
    /// The root namespace's ends of the pairs (deleted first).
    root_ifs: Vec<String>,
    pub(super) sites: Vec<Site>,
    wan: Ns,
    /// 10.W.0: the WAN's /24.
    wan_net: (u8, u8),
    /// Subnets in use, so none is picked twice.
    taken: Vec<(u8, u8)>,
    tag: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in &self.root_ifs {
            let _ = run(&["ip", "link", "del", i]);
        }
        // Then the fields: the sites' namespaces, the WAN's.
    }
}

/// Makes a veth pair: end `a` in namespace `a_ns` (the root namespace if
/// `None`), end `b` in namespace `b_ns`.
fn veth(a_ns: Option<&Ns>, a: &str, b: &str, b_ns: &Ns) -> anyhow::Result<()> {
    let mut args = vec!["ip"];
    if let Some(ns) = a_ns {
        args.extend(["-n", ns.name.as_str()]);
    }
    args.extend(["link", "add", a, "type", "veth", "peer", "name", b]);
    args.extend(["netns", b_ns.name.as_str()]);
    run(&args)
}

fn ip4((b, c): (u8, u8), d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, b, c, d)
}

impl Lab {
    /// The WAN and one site per place, in order.
    pub(super) fn build(places: &[Place]) -> anyhow::Result<Lab> {
        let tag = unique_tag();
        let wan_net = free_subnet(&[])?;
        let wan = Ns::create(format!("scnat{tag}w"))?;
        let mut lab = Lab {
            root_ifs: Vec::new(),
            sites: Vec::new(),
            wan,
            wan_net,
            taken: vec![wan_net],
            tag,
        };
        lab.wan.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        lab.wan.ip(&["link", "set", BRIDGE, "up"])?;
        let root_if = format!("scn{}w", lab.tag);
        lab.root_ifs.push(root_if.clone());
        veth(None, &root_if, "root", &lab.wan)?;
        lab.wan
            .ip(&["link", "set", "root", "master", BRIDGE, "up"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.server_ip()),
            "dev",
            &root_if,
        ])?;
        run(&["ip", "link", "set", &root_if, "up"])?;
        for (i, place) in places.iter().enumerate() {
            lab.site(i as u8, *place)?;
        }
        Ok(lab)
    }

    /// Where the server listens: the root namespace's end of the WAN.
    pub(super) fn server_ip(&self) -> Ipv4Addr {
        ip4(self.wan_net, 1)
    }

    /// Plugs a veth pair's end `wan_end` (made in the WAN namespace) into
    /// the bridge.
    fn plug(&self, wan_end: &str) -> anyhow::Result<()> {
        self.wan
            .ip(&["link", "set", wan_end, "master", BRIDGE, "up"])
    }

    fn site(&mut self, i: u8, place: Place) -> anyhow::Result<()> {
        let letter = (b'a' + i) as char;
        let node = Ns::create(format!("scnat{}{letter}", self.tag))?;
        // The management pair: the API, TCP only.
        let mgmt = free_subnet(&self.taken)?;
        self.taken.push(mgmt);
        let mgmt_if = format!("scn{}m{i}", self.tag);
        self.root_ifs.push(mgmt_if.clone());
        veth(None, &mgmt_if, MGMT_IF, &node)?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ip4(mgmt, 1)),
            "dev",
            &mgmt_if,
        ])?;
        run(&["ip", "link", "set", &mgmt_if, "up"])?;
        node.ip(&[
            "addr",
            "add",
            &format!("{}/24", ip4(mgmt, 2)),
            "dev",
            MGMT_IF,
        ])?;
        node.ip(&["link", "set", MGMT_IF, "up"])?;
        node.nft(&format!(
            "table inet segchat_mgmt {{
               chain input {{ type filter hook input priority filter; policy accept;
                 iifname \"{MGMT_IF}\" meta l4proto != tcp drop; }}
               chain output {{ type filter hook output priority filter; policy accept;
                 oifname \"{MGMT_IF}\" meta l4proto != tcp drop; }}
             }}"
        ))?;
        let (router, p2p_ip) = match place {
            Place::Public => {
                let wan_end = format!("n{i}");
                veth(Some(&node), WAN_IF, &wan_end, &self.wan)?;
                self.plug(&wan_end)?;
                let ip = ip4(self.wan_net, 10 + i);
                node.ip(&["addr", "add", &format!("{ip}/24"), "dev", WAN_IF])?;
                node.ip(&["link", "set", WAN_IF, "up"])?;
                (None, ip)
            }
            Place::Behind(nat) => {
                let router = Ns::create(format!("scnat{}{letter}r", self.tag))?;
                let wan_end = format!("r{i}");
                veth(Some(&router), WAN_IF, &wan_end, &self.wan)?;
                self.plug(&wan_end)?;
                let router_wan = ip4(self.wan_net, 20 + i);
                router.ip(&["addr", "add", &format!("{router_wan}/24"), "dev", WAN_IF])?;
                router.ip(&["link", "set", WAN_IF, "up"])?;
                let lan = free_subnet(&self.taken)?;
                self.taken.push(lan);
                veth(Some(&router), LAN_IF, LAN_IF, &node)?;
                router.ip(&["addr", "add", &format!("{}/24", ip4(lan, 1)), "dev", LAN_IF])?;
                router.ip(&["link", "set", LAN_IF, "up"])?;
                let ip = ip4(lan, 2);
                node.ip(&["addr", "add", &format!("{ip}/24"), "dev", LAN_IF])?;
                node.ip(&["link", "set", LAN_IF, "up"])?;
                node.ip(&["route", "add", "default", "via", &ip4(lan, 1).to_string()])?;
                router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
                router.nft(&nat.rules(ip))?;
                (Some(router), ip)
            }
        };
        self.sites.push(Site {
            node,
            _router: router,
            api_ip: ip4(mgmt, 2),
            p2p_ip,
        });
        Ok(())
    }
}
