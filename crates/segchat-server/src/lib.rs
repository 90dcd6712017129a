//! The segchat central server ("tracker"): accounts, visitors, sessions, the
//! live peer list, the channel registry, presence and notifications.
//!
//! # Layout
//!
//! - [`run`] (in `server.rs`): the accept loop and the background reaper;
//!   takes an already-bound listener and a shutdown token.
//! - `conn.rs`: one connection: handshake, read loop (with the sign-in
//!   and silence deadlines), batching writer.
//! - `admission.rs`: the per-source connection cap.
//! - `ops/`: one handler per operation, grouped by aggregate
//!   (`session.rs`, `peers.rs`, `channels.rs`).
//! - `hub/`: the in-memory live state: connections, the peer list,
//!   presence, hosts, streams, event delivery; replicas of the other
//!   instances' (`remote.rs`).
//! - `cluster.rs`: the link between instances over NATS.
//! - `auth/`: tokens; argon2id with bounded memory (`hasher.rs`); the
//!   sign-in throttle (`limiter.rs`).
//! - `mates.rs`: whom to tell of a user's presence, remembered until a
//!   membership changes.
//! - `names.rs`: which visitor names would pass for a registered user
//!   (confusable skeletons).
//! - `keys.rs`: the server's ed25519 key, which signs tickets.
//! - [`store`]: durable state behind the [`store::Store`] trait; SQLite
//!   today, PostgreSQL next.
//! - [`config`]: the settings.

mod admission;
mod auth;
mod cluster;
pub mod config;
mod conn;
mod files;
mod hub;
mod keys;
mod mates;
mod names;
mod ops;
mod presence;
mod server;
pub mod store;

pub use config::ServerConfig;
pub use keys::fingerprint as key_fingerprint;
pub use server::{run, ServerError};
