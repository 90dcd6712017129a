//! Direct messages, end-to-end encrypted. Built so far: this device's
//! Olm state (`olm.rs`) and keeping its keys published on the server's
//! directory while signed in (`keys.rs`). The DM service on the peer
//! layer and the server's store-and-forward of ciphertext come next.

pub(crate) mod keys;
pub(crate) mod olm;
