//! The server's store-and-forward of end-to-end encrypted direct
//! messages: envelopes addressed to one device, whose body the server
//! never reads (an Olm message, see `devices`). A device fetches what
//! waits for it after a sequence number and acknowledges what it has
//! kept; the server deletes what is acknowledged.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest envelope body (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Most body bytes in one `send_dm` altogether: a text message sealed
/// for every device of a group is far less; what one request (one of
/// the allowance of changes) may make the server keep is bounded.
pub const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// Most bytes of encoded envelopes in one `fetch_dms` answer (at least
/// one envelope is always answered): far inside a frame's limit.
pub const MAX_FETCH_BYTES: usize = MAX_REQUEST_BYTES;

/// Most envelopes in one `send_dm` (a message to a group of 10, each
/// with a few devices, and the sender's own other devices).
pub const MAX_ENVELOPES: usize = 64;

/// An envelope as its sender hands it to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Envelope {
    /// The sender's id for what it carries: the same id sent twice to a
    /// device is stored once.
    #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
    pub id: Uuid,
    /// The recipient's username.
    pub to: String,
    /// The recipient device's node key (hex), from `claim_keys`.
    pub to_node: String,
    /// Opaque to the server.
    pub body: String,
}

/// An envelope as the server delivers it (`fetch_dms`, the `dm` event):
/// who sent it is what the server saw, not what the sender claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Delivered {
    /// The order the recipient device's mailbox received them in.
    pub seq: u64,
    #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
    pub id: Uuid,
    pub from: String,
    /// The sending node's key (hex), as its transport authenticated it.
    pub from_node: String,
    pub body: String,
    pub stored_at_ms: u64,
}
