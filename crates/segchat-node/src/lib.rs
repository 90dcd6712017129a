//! A segchat node as a library: the user's own process. It keeps a link to
//! the central server, listens for peers on TCP and UDP, keeps a local
//! store, and serves the local HTTP API that every interface (web UI, TUI,
//! command line, bots) goes through.
//!
//! # Layout
//!
//! - [`config`]: [`NodeConfig`], everything [`Node::start`] needs.
//! - [`node`]: [`Node::start`] binds the sockets and spawns the task tree;
//!   [`NodeHandle`] reports the bound addresses and shuts it down.
//! - [`link`]: the server link, an actor with a typed inbox and a
//!   cloneable [`link::LinkHandle`]: handshake, session resume,
//!   `submit_info`, heartbeats, request multiplexing, reconnects.
//! - [`events`]: what API subscribers receive: tracker events plus the
//!   node's own notices (`server_connected`, `server_disconnected`).
//! - [`store`]: the local SQLite store (session, cached channel list) and
//!   its migrations under `migrations/`.
//! - [`p2p`]: the peer listeners (TCP and UDP); a peer's `hello` is
//!   checked here, then the peer link is served by [`chat`].
//! - [`admission`]: the one check of a peer's ticket (signature, expiry,
//!   revocation, proof of possession) for host and streamer alike, and
//!   the sessions the server revoked.
//! - `acl.rs`: a channel's rules and members as the node last learned
//!   them, for hosting and streaming (the rules are `segchat_proto::access`).
//! - [`chat`]: hosted channels, following other people's channels P2P
//!   or through the server, the outbox, history and search.
//! - [`presence`]: the person's presence following their activity (idle
//!   after a while without input in any client, online again on input).
//! - `relay.rs`: the server's relay on demand: held while UDP is blocked,
//!   otherwise opened only while someone dials this node (`reach`,
//!   `relay_wanted`).
//! - [`stream`]: livestreams P2P over UDP: this node's streams (test
//!   pattern or pushed JPEG frames), watching others', the UDP dispatcher.
//! - [`api`]: the local HTTP API and its WebSocket of events, with the
//!   Host check, the token check (bearer or the browser's cookie, with
//!   its CSRF rule), its OpenAPI document, and the one place errors
//!   become HTTP responses.
//! - [`web`]: the web UI, HTML/CSS/JS from `web/` compiled into the
//!   binary and served by the API's server at `/`.
//! - [`error`]: [`NodeError`], why a node could not start.
//!
//! Architecture invariant: only the link talks to the server, and only the
//! API talks to local clients; both go through [`link::LinkHandle`], so a
//! request made while the server is unreachable fails fast with
//! `UNAVAILABLE` instead of hanging.

mod acl;
pub mod admission;
pub mod api;
pub mod chat;
mod clock;
pub mod config;
mod dm;
pub mod error;
pub mod events;
pub mod files;
pub mod link;
pub mod node;
pub mod p2p;
pub mod presence;
mod relay;
pub mod store;
pub mod stream;
pub mod transport;

pub use api::web;

pub use config::{NodeConfig, AGENT};
pub use error::NodeError;
pub use events::NodeEvent;
pub use node::{Node, NodeHandle};
