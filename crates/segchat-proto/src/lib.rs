//! Every byte layout segchat puts on a wire, and nothing else: no sockets, no
//! files, no clocks. A stranger should be able to write a compatible client
//! from this crate and `docs/PROTOCOL.md` alone.
//!
//! # Layout
//!
//! - [`access`]: who may see, read, write and join a channel (pure rules).
//! - [`frame`]: the frame registry, the length-prefixed framing, its limits,
//!   and the [`frame::FrameCodec`] both links use.
//! - [`status`]: the status codes every response and error carries.
//! - [`handshake`]: `hello` / `welcome`, the first frame each way, which
//!   carry the protocol version.
//! - [`types`]: the records the operations exchange (sessions, peers,
//!   channels, members, presence).
//! - [`tracker`]: the node ↔ server link: requests, replies and events.
//! - [`peer`]: the node ↔ node link (member to channel host).
//! - [`ticket`]: server-signed tickets binding a node key to a user.
//! - [`message`]: chat messages and the canonical bytes authors sign.
//! - [`refs`]: what a message may point at (`re`: kind and target).
//! - [`mailbox`]: the server's store-and-forward of encrypted direct
//!   messages (envelopes opaque to it).
//! - [`files`]: what a message says of the file it shares (hash, name,
//!   size, type), how it is signed with the body, and which types a
//!   browser may be shown inline.
//! - [`edits`]: replies, edits, deletions and reactions (messages that
//!   point at another) and the rules every store applies them by.
//! - [`devices`]: the keys a node publishes for end-to-end encrypted
//!   direct messages, and the signatures binding them to its node key.
//! - [`friends`]: friends and blocks: what one user is to another and
//!   the pure rules by which `relate` changes it.
//! - [`stream`]: livestreams: the stream record and the UDP datagram
//!   that carries frames (chunking limits, per-viewer authentication).

pub mod access;
pub mod devices;
pub mod dm;
pub mod edits;
pub mod files;
pub mod frame;
pub mod friends;
pub mod handshake;
pub mod mailbox;
pub mod message;
pub mod peer;
pub mod refs;
pub mod status;
pub mod stream;
pub mod ticket;
pub mod tracker;
pub mod types;
pub mod verify;

pub use frame::{DecodeError, Frame, FrameCodec, FrameKind, MAX_FRAME_LEN};
pub use handshake::{Hello, LinkKind, Welcome, PROTOCOL_VERSION};
pub use status::{Failure, Status};

/// Default TCP port of the central server.
pub const DEFAULT_SERVER_PORT: u16 = 22236;
