//! The secure transport under every segchat link.
//!
//! Every link segchat opens between two nodes — member to host, viewer to
//! streamer, a file's fetcher to its seeders — is a QUIC connection made by
//! [iroh](https://docs.rs/iroh): TLS 1.3 with raw public keys, where an
//! endpoint's identity *is* an ed25519 key. segchat already names every
//! party by such a key (the server by the key that signs tickets, a node by
//! its node key), so the transport authenticates exactly the identities
//! the protocol reasons about: a connection's [`Connection::remote_id`] is
//! the key its peer proved it holds.
//!
//! On a connection, each link is one bidirectional QUIC stream carrying the
//! same length-prefixed JSON frames as before (see docs/PROTOCOL.md); a
//! livestream's chunks travel as QUIC datagrams on the viewer's connection.
//!
//! # Layout
//!
//! - this file: the ALPNs (one per service), key conversions, and
//!   [`PeerAddress`], how a node is dialled.
//! - [`endpoint`]: binding an endpoint with nothing that reaches a public
//!   server: no n0 relays, no DNS or pkarr lookup, no port mapping, no
//!   captive-portal probe.
//! - [`relay`]: the relay that `segchat server` embeds (iroh-relay's relay
//!   service behind our own TCP accept loop), and the one HTTP route that
//!   tells a new node the server's key.
//! - [`path`]: whether a connection runs direct or through the relay.
//! - [`tls`]: the tracker link, the one link that is not QUIC: TLS 1.3
//!   over TCP under the same raw keys, cheap for a server holding one per
//!   signed-in node.
//! - [`observe`]: a node asking the server where its UDP packets come
//!   from (its NAT mapping), which the TCP tracker link cannot tell.
//!
//! Invariant: nothing here decides *who* may do what — that is the
//! server's and the host's job. This crate only guarantees that the key a
//! caller sees is the key the other side holds, and that nothing is sent
//! in clear.

pub mod blobs;
pub mod client;
pub mod endpoint;
pub mod observe;
pub mod path;
pub mod relay;
pub mod tls;

use std::net::SocketAddr;

pub use iroh::endpoint::{Connection, RecvStream, SendStream};
pub use iroh::{Endpoint, EndpointAddr, EndpointId, RelayUrl};

/// The node ↔ server link (the tracker protocol).
pub const ALPN_TRACKER: &[u8] = b"segchat/tracker/1";
/// The member ↔ host and viewer ↔ streamer link (the peer protocol).
pub const ALPN_PEER: &[u8] = b"segchat/peer/1";

/// The transport identity of an ed25519 key.
pub fn endpoint_id(key: &ed25519_dalek::VerifyingKey) -> EndpointId {
    // iroh-base uses its own ed25519 types; the 32 bytes are the same key.
    EndpointId::from_bytes(key.as_bytes()).expect("a valid ed25519 key is a valid endpoint id")
}

/// The endpoint secret of a signing key.
pub fn secret_key(key: &ed25519_dalek::SigningKey) -> iroh::SecretKey {
    iroh::SecretKey::from_bytes(&key.to_bytes())
}

/// An endpoint id as lower-case hex: the form segchat uses for keys on the
/// wire (tickets' `node_key`, the server's fingerprint).
pub fn id_hex(id: &EndpointId) -> String {
    hex::encode(id.as_bytes())
}

/// Parses a 64-character hex key into an endpoint id.
pub fn parse_id(hex_key: &str) -> Result<EndpointId, BadKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(BadKey::NotHex)?;
    EndpointId::from_bytes(&bytes).map_err(|_| BadKey::NotAPoint)
}

/// Why a key given as text is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("a key is 64 hexadecimal characters (32 bytes)")]
    NotHex,
    #[error("those 32 bytes are not an ed25519 public key")]
    NotAPoint,
}

/// How to dial a node: its key, the addresses it may be reached at
/// directly, and the relay that can always reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    pub id: EndpointId,
    pub direct: Vec<SocketAddr>,
    pub relay: Option<RelayUrl>,
}

impl PeerAddress {
    /// The address iroh dials. Only the relay given here is ever named,
    /// never one a peer advertised, so nothing outside segchat is dialled.
    pub fn to_endpoint_addr(&self) -> EndpointAddr {
        let mut addr = EndpointAddr::new(self.id);
        for a in &self.direct {
            addr = addr.with_ip_addr(*a);
        }
        if let Some(relay) = &self.relay {
            addr = addr.with_relay_url(relay.clone());
        }
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_key_is_its_endpoint_id() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let id = endpoint_id(&key.verifying_key());
        assert_eq!(secret_key(&key).public(), id);
        assert_eq!(id_hex(&id), hex::encode(key.verifying_key().as_bytes()));
        assert_eq!(parse_id(&id_hex(&id)), Ok(id));
    }

    #[test]
    fn text_that_is_not_a_key_is_refused() {
        assert_eq!(parse_id("abc"), Err(BadKey::NotHex));
        assert_eq!(parse_id(&"zz".repeat(32)), Err(BadKey::NotHex));
    }
}
