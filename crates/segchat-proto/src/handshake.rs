//! The first frame each way. The client sends `hello` with the protocol
//! version it speaks and which link it opens; the server answers `welcome`
//! or an `error` frame with [`Status::UnsupportedVersion`] and closes.
//!
//! [`Status::UnsupportedVersion`]: crate::Status::UnsupportedVersion

use serde::{Deserialize, Serialize};

/// The one protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Which link a connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LinkKind {
    /// node ↔ central server.
    Tracker,
    /// node ↔ node (a member to a channel's host).
    Peer,
}

/// Client → server, first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// Carried in the frame's binary header, not in the JSON body.
    #[serde(skip)]
    pub version: u16,
    pub link: LinkKind,
    /// Free text naming the software, e.g. `segchat-node/0.1.0`.
    pub agent: String,
}

/// Server → client, first frame once the version is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Welcome {
    /// Carried in the frame's binary header, not in the JSON body.
    #[serde(skip)]
    pub version: u16,
    pub agent: String,
    /// How often the client should send `heartbeat`, in milliseconds.
    pub heartbeat_ms: u64,
    /// After how long without a heartbeat a peer leaves the live list.
    pub peer_ttl_ms: u64,
    /// The server's ed25519 public key (hex), which signs tickets. Empty
    /// on a peer link.
    #[serde(default)]
    pub server_key: String,
    /// Largest message body the server accepts, in bytes.
    #[serde(default)]
    pub max_body_len: u32,
    /// Peer link only: 32 fresh random bytes (hex) this connection's
    /// `peer_connect` and `watch` sign with the ticket's node key, to prove
    /// the ticket is the presenter's own (see [`crate::ticket::prove`]).
    /// Absent on the tracker link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// Tracker link only: the UDP address the server sees this node's
    /// connection come from — behind NAT, the node's public mapping,
    /// which it offers peers for hole punching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::types::arb::socket_addr())")
    )]
    pub observed_addr: Option<std::net::SocketAddr>,
}

impl Hello {
    pub fn new(link: LinkKind, agent: impl Into<String>) -> Self {
        Hello {
            version: PROTOCOL_VERSION,
            link,
            agent: agent.into(),
        }
    }
}
