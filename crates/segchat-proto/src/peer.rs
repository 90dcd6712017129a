//! The node ↔ node link: a member's node connects to a channel's host.
//!
//! After the handshake (`hello` with `link: "peer"`, a `welcome` with a
//! fresh `nonce`), the member sends `peer_connect` with its server-signed
//! ticket and a `proof` that it holds the ticket's node key (its signature
//! over the nonce and the channel, [`crate::ticket::prove`]); the host
//! checks both with no round trip, applies the channel's rules, and
//! from then on pushes every new message as a `broadcast` event. The member
//! catches up with `sync` from its cursor and writes with `post`.
//!
//! A `broadcast` is the one frame a host sends per member per message, so it
//! is compact: fixed binary fields (a `binary_event` frame) and no ticket.
//! The author's ticket goes once per link, as a `ticket` event that gives it
//! a number below [`TICKET_REFS`]; broadcasts name it by that number.
//!
//! The same link subscribes a viewer to a livestream: `watch` with the
//! ticket and a proof over the nonce and the stream id, the streamer answers `watching` with a per-viewer session key
//! and sends the frames over UDP (see [`crate::stream`]); the viewer sends
//! `stream_report` now and then and `unwatch` at the end. The streamer
//! pushes `stream_ended` when the stream stops.
//!
//! # Liveness
//!
//! The host's `welcome` gives `heartbeat_ms` (how often a member pings)
//! and `peer_ttl_ms` (how long the host waits for a frame before it drops
//! the link). A member sends `ping` whenever it has sent nothing for
//! `heartbeat_ms` and takes the link for dead when no frame at all came
//! for [`LIVENESS`] heartbeats; a link that has not been admitted
//! (`peer_connect` or `watch` answered) within a few seconds is closed.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::frame::LinkEvent;
use crate::message::{Message, Sequenced, Unticketed};
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
        /// The ticket's node key's signature (hex) over this link's
        /// welcome nonce and the channel ([`crate::ticket::prove`]).
        #[serde(default)]
        proof: String,
    },
    /// Messages with host sequence numbers above `after_seq`, oldest first.
    Sync {
        channel: String,
        after_seq: u64,
        limit: u32,
    },
    /// Store a message (signed by its author) and fan it out.
    Post { message: Message },
    /// Subscribe to a livestream of this node: its chunks come as QUIC
    /// datagrams on this connection.
    Watch {
        ticket: SignedTicket,
        stream_id: u64,
        /// The ticket's node key's signature (hex) over this link's
        /// welcome nonce and the stream id ([`crate::ticket::prove`]).
        #[serde(default)]
        proof: String,
    },
    /// Stop receiving a stream's frames.
    Unwatch { stream_id: u64 },
    /// How reception is going (loss, lateness, latency).
    StreamReport {
        stream_id: u64,
        report: StreamReport,
    },
    /// Hand over a direct message sealed for this node's device (the
    /// same envelope the server's mailbox would carry), proving who sends
    /// it like `peer_connect` does. Answers `dm_kept` once it is stored
    /// (or was already).
    Dm {
        ticket: SignedTicket,
        /// The ticket's node key's signature (hex) over this link's
        /// welcome nonce and the envelope's id ([`crate::ticket::prove`]).
        proof: String,
        envelope: crate::mailbox::Envelope,
    },
    /// Ask a node that may hold the file `hash` shared in `channel` to
    /// serve it: proves who asks like `peer_connect` (over the nonce and
    /// the hash). The node answers `file_opened` if the asker may read
    /// `channel` and a message there shares the file; the asker may then
    /// fetch it over the blobs protocol on the same key while this link
    /// lives.
    FileOpen {
        ticket: SignedTicket,
        /// The ticket's node key's signature (hex) over this link's
        /// welcome nonce and the hash ([`crate::ticket::prove`]).
        proof: String,
        /// The channel a message shares the file in; absent (`null`) for
        /// a file shared in a direct message with the ticket's user.
        #[serde(default)]
        channel: Option<String>,
        hash: String,
    },
    /// After `file_open` on this link: the asker now holds the whole
    /// file and serves it too; the node may name it to later askers.
    /// Answered `done`.
    FileHave { hash: String },
    /// Liveness: the host answers `pong`. A member sends one when it has
    /// sent nothing for the welcome's `heartbeat_ms` (see [`LIVENESS`]).
    Ping,
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
    /// Answer to `dm`: the message is stored on this device.
    DmKept {
        #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
        id: Uuid,
    },
    /// Answer to `file_open`: the size this node holds the whole file
    /// at (`None`: only part of it yet, or being fetched), and other
    /// nodes said to hold it (at most [`MAX_SEEDERS`]).
    FileOpened {
        hash: String,
        size: Option<u64>,
        seeders: Vec<crate::types::NodeAddr>,
    },
    /// Answer to `ping`.
    Pong,
}

/// Most other holders one `file_opened` names.
pub const MAX_SEEDERS: usize = 16;

/// After how many heartbeats without a frame from the host a member takes
/// its link for dead (`ping` is answered at once, so a live host is never
/// silent that long).
pub const LIVENESS: u32 = 3;

/// How many ticket numbers a peer link uses: a `ticket` event's
/// `ticket_ref` is below this, so a member's table of them is bounded.
pub const TICKET_REFS: u16 = 4096;

/// What a host pushes to its connected members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Event {
    /// A message the host just stored, without its author's ticket: that
    /// is the ticket this link's last `ticket` event numbered `ticket_ref`.
    /// Sent as a `binary_event` (see [`Event::encode_binary`]).
    Broadcast {
        seq: u64,
        ticket_ref: u16,
        message: Unticketed,
    },
    /// From now on on this link, `ticket_ref` names this ticket (replacing
    /// whatever it named before). Sent before the first broadcast that
    /// needs it.
    Ticket {
        ticket_ref: u16,
        ticket: SignedTicket,
    },
    /// A stream this member watches has ended.
    StreamEnded { stream_id: u64, reason: String },
    /// This member's rights in `channel` changed on an open link (it
    /// joined or left while connected): from now on its posts there are
    /// accepted (`can_write`) or refused, as `connected` would say now.
    Rights { channel: String, can_write: bool },
}

/// A member's side of a link's ticket numbers: what each `ticket_ref`
/// names. Holds at most [`TICKET_REFS`] tickets.
#[derive(Debug, Default)]
pub struct LinkTickets(HashMap<u16, SignedTicket>);

impl LinkTickets {
    /// Takes in a `ticket` event.
    pub fn learn(&mut self, ticket_ref: u16, ticket: SignedTicket) -> Result<(), String> {
        if ticket_ref >= TICKET_REFS {
            return Err(format!(
                "ticket number {ticket_ref} is not below {TICKET_REFS}"
            ));
        }
        self.0.insert(ticket_ref, ticket);
        Ok(())
    }

    /// The ticket `ticket_ref` names on this link.
    pub fn get(&self, ticket_ref: u16) -> Option<&SignedTicket> {
        self.0.get(&ticket_ref)
    }

    /// The whole message of a `broadcast`, with the ticket it names.
    pub fn resolve(&self, ticket_ref: u16, message: Unticketed) -> Result<Message, String> {
        match self.get(ticket_ref) {
            Some(ticket) => Ok(message.with_ticket(ticket.clone())),
            None => Err(format!(
                "broadcast {} names ticket {ticket_ref}, which this link was never sent",
                message.id
            )),
        }
    }
}

/// The `binary_event` tag of a broadcast.
const TAG_BROADCAST: u8 = 0x01;

/// A broadcast's binary payload:
///
/// ```text
/// tag: u8 = 0x01 · seq: u64 · ticket_ref: u16 · id: 16 bytes · ts_ms: u64
/// · signature: 64 bytes · channel: u16 length · UTF-8
/// · author: u16 length · UTF-8 · body: u32 length · UTF-8
/// ```
///
/// A message whose fields do not fit that (a signature that is not 64
/// bytes of lowercase hex, a name over 65,535 bytes, a message with `re`,
/// `redacted` or a `file`) goes as JSON instead.
impl LinkEvent for Event {
    fn encode_binary(&self, dst: &mut BytesMut) -> bool {
        let Event::Broadcast {
            seq,
            ticket_ref,
            message: m,
        } = self
        else {
            return false;
        };
        let mut sig = [0u8; 64];
        let canonical = hex::decode_to_slice(&m.signature, &mut sig).is_ok()
            && !m.signature.bytes().any(|b| b.is_ascii_uppercase());
        let (Ok(channel_len), Ok(author_len), Ok(body_len)) = (
            u16::try_from(m.channel.len()),
            u16::try_from(m.author.len()),
            u32::try_from(m.body.len()),
        ) else {
            return false;
        };
        if !canonical || m.re.is_some() || m.redacted.is_some() || m.file.is_some() {
            return false;
        }
        dst.reserve(1 + 8 + 2 + 16 + 8 + 64 + 8 + m.channel.len() + m.author.len() + m.body.len());
        dst.put_u8(TAG_BROADCAST);
        dst.put_u64(*seq);
        dst.put_u16(*ticket_ref);
        dst.put_slice(m.id.as_bytes());
        dst.put_u64(m.ts_ms);
        dst.put_slice(&sig);
        dst.put_u16(channel_len);
        dst.put_slice(m.channel.as_bytes());
        dst.put_u16(author_len);
        dst.put_slice(m.author.as_bytes());
        dst.put_u32(body_len);
        dst.put_slice(m.body.as_bytes());
        true
    }

    fn decode_binary(payload: &[u8]) -> Result<Self, String> {
        let mut r = Reader(payload);
        match r.u8()? {
            TAG_BROADCAST => {}
            tag => return Err(format!("unknown binary event tag 0x{tag:02x}")),
        }
        let seq = r.u64()?;
        let ticket_ref = r.u16()?;
        let id = Uuid::from_bytes(r.array()?);
        let ts_ms = r.u64()?;
        let mut hex_sig = [0u8; 128];
        hex::encode_to_slice(r.array::<64>()?, &mut hex_sig).map_err(|e| e.to_string())?;
        // ASCII hex digits: always UTF-8. (`hex::encode` goes a char at a
        // time, and this runs once per member per message.)
        let signature = String::from_utf8(hex_sig.to_vec()).map_err(|e| e.to_string())?;
        let len = r.u16()? as usize;
        let channel = r.str(len)?;
        let len = r.u16()? as usize;
        let author = r.str(len)?;
        let len = r.u32()? as usize;
        let body = r.str(len)?;
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the body", r.0.len()));
        }
        Ok(Event::Broadcast {
            seq,
            ticket_ref,
            message: Unticketed {
                file: None,
                id,
                channel,
                author,
                ts_ms,
                body,
                re: None,
                redacted: None,
                signature,
            },
        })
    }
}

/// Reads fixed fields off the front of a payload; never reads past it.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "broadcast cut short: needs {n} more bytes, has {}",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str(&mut self, len: usize) -> Result<String, String> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("not UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn broadcast(signature: String) -> Event {
        Event::Broadcast {
            seq: 58,
            ticket_ref: 3,
            message: Unticketed {
                file: None,
                id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
                channel: "general".into(),
                author: "alice".into(),
                ts_ms: 1_732_000_000_000,
                body: "hi 👋".into(),
                re: None,
                redacted: None,
                signature,
            },
        }
    }

    #[test]
    fn a_broadcast_is_binary_and_round_trips() {
        let ev = broadcast("ab".repeat(64));
        let mut buf = BytesMut::new();
        assert!(ev.encode_binary(&mut buf));
        // tag, seq, ref, id, ts, signature, 3 lengths, 3 strings
        assert_eq!(buf.len(), 1 + 8 + 2 + 16 + 8 + 64 + 2 + 7 + 2 + 5 + 4 + 7);
        assert_eq!(Event::decode_binary(&buf), Ok(ev));
    }

    #[test]
    fn a_signature_that_is_not_canonical_hex_goes_as_json() {
        let mut buf = BytesMut::new();
        assert!(!broadcast("AB".repeat(64)).encode_binary(&mut buf));
        assert!(!broadcast("not hex".into()).encode_binary(&mut buf));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_cut_or_padded_broadcast_is_refused() {
        let mut buf = BytesMut::new();
        assert!(broadcast("00".repeat(64)).encode_binary(&mut buf));
        for cut in 0..buf.len() {
            assert!(Event::decode_binary(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = buf.to_vec();
        padded.push(0);
        assert!(Event::decode_binary(&padded).is_err());
        assert!(Event::decode_binary(&[0x02]).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Event::decode_binary(&bytes);
        }
    }
}
