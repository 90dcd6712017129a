//! Passwords, tokens and the sign-in throttle.
//!
//! - `hasher.rs`: argon2id with bounded memory (a few slots, a short
//!   queue, reused working buffers).
//! - `limiter.rs`: the sign-in throttle, per (account, source), per source
//!   and per account, counted before hashing.
//!
//! A sign-in for an unknown user still runs argon2 against a dummy, so
//! timing does not tell whether a username exists.

mod hasher;
mod limiter;

pub(crate) use hasher::{HashError, Hasher};
pub(crate) use limiter::{Limits, LoginLimiter, Source};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random secret, hex-encoded (`bytes` random bytes).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The hash under which a bearer token is stored.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
