//! The node ↔ node link: a member's node connects to a channel's host.
//!
//! After the handshake (`hello` with `link: "peer"`), the member sends
//! `peer_connect` with its server-signed ticket; the host checks it with the
//! server's public key (no round trip), applies the channel's rules, and
//! from then on pushes every new message as a `broadcast` event. The member
//! catches up with `sync` from its cursor and writes with `post`.
//!
//! The same link subscribes a viewer to a livestream: `watch` with the
//! ticket, the streamer answers `watching` with a per-viewer session key
//! and sends the frames over UDP (see [`crate::stream`]); the viewer sends
//! `stream_report` now and then and `unwatch` at the end. The streamer
//! pushes `stream_ended` when the stream stops.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::message::{Message, Sequenced};
use crate::stream::{Codec, StreamReport};
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
    /// Subscribe to a livestream of this node: frames go to UDP port
    /// `udp_port` on the IP this connection comes from.
    Watch {
        ticket: SignedTicket,
        stream_id: u64,
        udp_port: u16,
    },
    /// Stop receiving a stream's frames.
    Unwatch { stream_id: u64 },
    /// How reception is going (loss, lateness, latency).
    StreamReport {
        stream_id: u64,
        report: StreamReport,
    },
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
    /// Answer to `watch`: the key that authenticates this viewer's
    /// datagrams (32 bytes, hex), the viewer's id (for its probes) and
    /// the stream's shape.
    Watching {
        stream_id: u64,
        viewer_id: u32,
        session_key: String,
        width: u16,
        height: u16,
        fps: u8,
        codec: Codec,
    },
    /// Answer to `unwatch` and `stream_report`.
    Done,
}

/// What a host pushes to its connected members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
// Broadcast is the hot variant; boxing it would cost an allocation per
// message to save bytes on the rare StreamEnded.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A message the host just stored.
    Broadcast { seq: u64, message: Message },
    /// A stream this member watches has ended.
    StreamEnded { stream_id: u64, reason: String },
}
