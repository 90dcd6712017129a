//! The node ↔ node link: a member's node connects to a channel's host.
//!
//! After the handshake (`hello` with `link: "peer"`), the member sends
//! `peer_connect` with its server-signed ticket; the host checks it with the
//! server's public key (no round trip), applies the channel's rules, and
//! from then on pushes every new message as a `broadcast` event. The member
//! catches up with `sync` from its cursor and writes with `post`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::message::{Message, Sequenced};
use crate::ticket::SignedTicket;

/// A request from a member to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// Prove who this node speaks for and subscribe to a channel.
    PeerConnect {
        ticket: SignedTicket,
        channel: String,
    },
    /// Messages with host sequence numbers above `after_seq`, oldest first.
    Sync {
        channel: String,
        after_seq: u64,
        limit: u32,
    },
    /// Store a message (signed by its author) and fan it out.
    Post { message: Message },
}

/// A host's successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    /// Answer to `peer_connect`.
    Connected {
        channel: String,
        /// The highest sequence number the host has stored.
        last_seq: u64,
        /// Whether this member may `post`.
        can_write: bool,
    },
    /// Answer to `sync`.
    Messages {
        channel: String,
        messages: Vec<Sequenced>,
        has_more: bool,
    },
    /// Answer to `post`: the message is durably stored under `seq`.
    Stored {
        #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
        id: Uuid,
        seq: u64,
    },
}

/// What a host pushes to its connected members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Event {
    /// A message the host just stored.
    Broadcast { seq: u64, message: Message },
}
