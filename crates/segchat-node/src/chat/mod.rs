//! Chat: hosted channels, membership of other people's channels, the
//! outbox, and the local history.
//!
//! # Layout
//!
//! - this file: [`Chat`], the cloneable handle the API uses (send, history,
//!   search, unread), the node's key and ticket, the hybrid logical clock.
//! - `host/`: channels this node hosts, and chat as a protocol of the peer
//!   layer (`host/link.rs`): admitting members with their tickets, storing
//!   and fanning out posts, streaming the backup to the
//!   server and pulling what was posted there while this node was away.
//! - `compose.rs`: writing: messages, replies, edits, deletions and
//!   reactions, signed and put in the outbox.
//! - `member.rs`: following a channel hosted elsewhere: P2P to its host
//!   while it is online, the server's backup while it is not, and the
//!   outbox drained to whichever is reachable.
//! - `supervisor.rs`: deciding, on every (re)connection and channel
//!   event, which channels to host and which to follow.
//! - `keys.rs`: the node key and ticket on disk.
//!
//! Architecture invariant: a message reaches the local store only after
//! its signature and ticket were verified against the server's key, or
//! because this node wrote it.

mod compose;
mod host;
mod keys;
mod member;
mod supervisor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};
use segchat_log::SystemLog;
use segchat_proto::edits::RefKind;
use segchat_proto::message::{Message, Sequenced, MAX_BATCH};
use segchat_proto::ticket::{decode_key, SignedTicket};
use segchat_proto::types::SessionInfo;
use segchat_proto::verify::Verifier;
use segchat_proto::{Failure, Status};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::admission::Revoked;
use crate::events::{EventBus, NodeEvent};
use crate::link::{HistoryPage, LinkHandle};
use crate::store::{
    Arrival, Cursor, DeliveryState, Inserted, MessageRow, SearchPage, SearchQuery, Source, Store,
    StoreError,
};

pub use crate::events::{ChatEvent, Via};

/// Loads the node key from the data directory, making one on first start.
pub fn load_node_key(data_dir: &std::path::Path) -> std::io::Result<SigningKey> {
    keys::load_or_create_key(data_dir)
}

#[derive(Debug)]
struct Inner {
    store: Store,
    link: LinkHandle,
    bus: EventBus,
    log: SystemLog,
    data_dir: PathBuf,
    /// The server's address, for provenance.
    server_addr: String,
    /// The largest file a message may share in a channel this node hosts.
    max_file_size: u64,
    key: SigningKey,
    ticket: Mutex<Option<SignedTicket>>,
    /// Sessions whose tickets the server revoked (shared with streams;
    /// filled by the node, see `node.rs`).
    revoked: Revoked,
    /// Hybrid logical clock: the last timestamp used or seen.
    clock: Mutex<u64>,
    hosting: host::Hosting,
    /// Per followed channel: how it is reached, and a bell for notices.
    links: Mutex<HashMap<String, Via>>,
    /// Per followed channel: the highest host sequence number that arrived
    /// but could not be stored (the store may not even take a note of it
    /// while the disk is full). Shown as a gap until filled.
    unstored: Mutex<HashMap<String, u64>>,
    bells: Mutex<HashMap<String, Arc<Notify>>>,
    /// The node's endpoint: members dial hosts through it.
    transport: crate::transport::Transport,
    /// Checks messages against the server's key; with the hex of the key
    /// it was made for (a new key starts a new one).
    verifier: Mutex<Option<(String, Arc<Verifier>)>>,
}

/// The chat subsystem; cheap to clone.
#[derive(Debug, Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

/// Why a send was refused before it reached the outbox.
fn refuse(status: Status, reason: impl Into<String>) -> Failure {
    Failure::new(status, reason)
}

fn internal(e: StoreError) -> Failure {
    crate::error::store_failure(e)
}

impl Chat {
    /// Opens chat with the node key (see [`load_node_key`]) and the
    /// stored clock. Chat publishes on `bus` and follows the server's
    /// events there; `revoked` is the node's list of revoked sessions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open(
        store: Store,
        link: LinkHandle,
        bus: EventBus,
        revoked: Revoked,
        log: SystemLog,
        transport: crate::transport::Transport,
        key: SigningKey,
        data_dir: PathBuf,
        server_addr: String,
        max_file_size: u64,
    ) -> std::io::Result<Chat> {
        let ticket = keys::load_ticket(&data_dir);
        let max_ts = store.max_ts().await.unwrap_or(0);
        Ok(Chat {
            inner: Arc::new(Inner {
                store,
                link,
                bus,
                log,
                key,
                ticket: Mutex::new(ticket),
                revoked,
                clock: Mutex::new(max_ts),
                hosting: host::Hosting::default(),
                links: Mutex::new(HashMap::new()),
                unstored: Mutex::new(HashMap::new()),
                bells: Mutex::new(HashMap::new()),
                verifier: Mutex::new(None),
                transport,
                data_dir,
                server_addr,
                max_file_size,
            }),
        })
    }

    fn server_addr(&self) -> String {
        self.inner.server_addr.clone()
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn transport(&self) -> &crate::transport::Transport {
        &self.inner.transport
    }

    fn link(&self) -> &LinkHandle {
        &self.inner.link
    }

    fn log(&self) -> &SystemLog {
        &self.inner.log
    }

    /// The node's public key, hex.
    pub fn node_key(&self) -> String {
        hex::encode(self.inner.key.verifying_key().as_bytes())
    }

    /// Whether this node's user is invisible: its P2P port then looks
    /// offline (no connection is served).
    fn is_invisible(&self) -> bool {
        self.link().state().is_invisible()
    }

    /// Sessions whose tickets the server revoked.
    fn revoked(&self) -> &Revoked {
        &self.inner.revoked
    }

    /// This node's proof that it holds its key, for `purpose` on a peer
    /// link whose `welcome` carried `nonce` (hex).
    pub(crate) fn prove(
        &self,
        nonce: &str,
        purpose: segchat_proto::ticket::ProofPurpose<'_>,
    ) -> Result<String, segchat_proto::ticket::TrustError> {
        let nonce = segchat_proto::ticket::decode_nonce(nonce)?;
        segchat_proto::ticket::prove(&self.inner.key, &nonce, purpose)
    }

    /// The signed-in user's name, if any.
    pub(crate) fn username(&self) -> Option<String> {
        self.session().map(|s| s.username)
    }

    fn session(&self) -> Option<SessionInfo> {
        self.link().state().session
    }

    /// The server's ticket-signing key, once a `welcome` told us (decoded
    /// once per key: decoding is a curve-point decompression).
    fn server_key(&self) -> Option<VerifyingKey> {
        self.verifier().map(|v| *v.server_key())
    }

    /// The verifier for the server's key, once a `welcome` told us the key.
    fn verifier(&self) -> Option<Arc<Verifier>> {
        let hex = self.link().state().server_key?;
        let mut cache = lock(&self.inner.verifier);
        match &*cache {
            Some((h, v)) if *h == hex => Some(v.clone()),
            _ => {
                let v = Arc::new(Verifier::new(decode_key(&hex).ok()?));
                *cache = Some((hex, v.clone()));
                Some(v)
            }
        }
    }

    fn max_body_len(&self) -> usize {
        self.link().state().max_body_len()
    }

    /// The largest file a member may share in a channel this node hosts.
    fn max_file_size(&self) -> u64 {
        self.inner.max_file_size
    }

    /// This node's ticket for its session, fetched when it has none or
    /// it is about to expire: for other protocols on the peer layer.
    pub(crate) async fn peer_ticket(&self) -> Result<SignedTicket, Failure> {
        let soon = crate::clock::now_ms() + 60_000;
        match self.ticket() {
            Some(t) if t.ticket.expires_at_ms > soon => Ok(t),
            _ => self.fetch_ticket().await,
        }
    }

    /// How this node dials peers: for other protocols on the peer layer.
    pub(crate) fn dialer(&self) -> &crate::transport::Transport {
        self.transport()
    }

    /// Checks a ticket presented on a peer link for `purpose` (the
    /// server's signature, not expired nor revoked, the link's own key,
    /// the proof over its nonce): for other protocols on the peer layer.
    pub(crate) fn check_presented(
        &self,
        link: &crate::p2p::PeerLink,
        ticket: &SignedTicket,
        purpose: segchat_proto::ticket::ProofPurpose<'_>,
        proof: &str,
        role: &str,
    ) -> Result<(), Failure> {
        let presented = crate::admission::Presented {
            ticket,
            nonce: &link.nonce,
            purpose,
            proof,
            addr: link.addr,
            transport_key: &link.remote_key,
        };
        crate::admission::check_peer_ticket(
            self.server_key(),
            presented,
            self.revoked(),
            self.log(),
            role,
        )
    }

    fn ticket(&self) -> Option<SignedTicket> {
        let t = lock(&self.inner.ticket).clone()?;
        let me = self.session()?;
        (t.ticket.username == me.username && t.ticket.session_id == me.session_id).then_some(t)
    }

    /// A timestamp for a new message: now, but never at or before a
    /// timestamp this node has already used or seen.
    fn stamp(&self) -> u64 {
        let mut last = lock(&self.inner.clock);
        *last = crate::clock::now_ms().max(*last + 1);
        *last
    }

    /// Moves the clock past a timestamp seen on a message.
    fn observe(&self, ts_ms: u64) {
        let mut last = lock(&self.inner.clock);
        *last = (*last).max(ts_ms);
    }

    fn publish(&self, event: ChatEvent) {
        self.inner.bus.publish(NodeEvent::Chat(event));
    }

    /// Tells subscribers about a message new to the store: itself, or, for
    /// an edit, deletion or reaction (`acted` on a message), that message.
    fn announce(&self, row: MessageRow, acted: Option<Uuid>) {
        match acted {
            None => self.publish(ChatEvent::Message { message: row }),
            Some(target) => self.publish(ChatEvent::Acted {
                channel: row.channel,
                target: target.to_string(),
            }),
        }
    }

    fn set_via(&self, channel: &str, via: Via) {
        let changed = lock(&self.inner.links).insert(channel.to_owned(), via) != Some(via);
        if changed {
            self.publish(ChatEvent::ChannelLink {
                channel: channel.to_owned(),
                via,
            });
        }
    }

    /// How each followed or hosted channel is reached right now.
    pub fn links(&self) -> HashMap<String, Via> {
        lock(&self.inner.links).clone()
    }

    fn bell(&self, channel: &str) -> Arc<Notify> {
        lock(&self.inner.bells)
            .entry(channel.to_owned())
            .or_default()
            .clone()
    }

    /// Verifies a message from the network against the server's key.
    fn verify(&self, m: &Message) -> Result<(), String> {
        let verifier = self.verifier().ok_or("the server's key is not known yet")?;
        verifier.verify(m).map_err(|e| e.to_string())
    }

    /// Logs a message that failed verification (it is never stored).
    fn log_rejected(&self, from: impl std::fmt::Display, m: &Message, reason: &str) {
        self.log().record(
            "MESSAGE_REJECTED",
            from,
            format!(
                "channel={} id={} author={} reason={reason}",
                m.channel, m.id, m.author
            ),
        );
    }

    /// Stores a verified copy from a host or the server; publishes it if
    /// new, and keeps the clock ahead of it.
    async fn receive(&self, m: Message, arrival: Arrival) -> Result<Inserted, StoreError> {
        self.observe(m.ts_ms);
        let row = MessageRow::arrived(&m, &arrival);
        let acted = crate::store::acted_on(&m);
        let inserted = self.store().insert_message(m, arrival).await?;
        if inserted.new {
            self.announce(row, acted);
        }
        Ok(inserted)
    }

    /// Remembers that the host's number `seq` in `channel` arrived but
    /// could not be stored: in memory, and in the store if it can still
    /// take a note. It stays a gap until a `sync` fills it.
    async fn unstored(&self, channel: &str, seq: u64) {
        {
            let mut unstored = lock(&self.inner.unstored);
            let highest = unstored.entry(channel.to_owned()).or_default();
            *highest = (*highest).max(seq);
        }
        if let Err(e) = self.store().heard_host_seq(channel.to_owned(), seq).await {
            tracing::debug!(error = %e, channel, seq, "could not note an unstored number");
        }
    }

    /// The channel's open gaps, host sequence numbers (empty if the store
    /// cannot be read).
    async fn missing(&self, channel: &str) -> Vec<(u64, u64)> {
        self.gaps(channel).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, channel, "could not read the gaps");
            Vec::new()
        })
    }

    async fn gaps(&self, channel: &str) -> Result<Vec<(u64, u64)>, StoreError> {
        let heard = lock(&self.inner.unstored)
            .get(channel)
            .copied()
            .unwrap_or(0);
        self.store().gaps(channel.to_owned(), heard).await
    }

    async fn set_state(
        &self,
        id: String,
        channel: &str,
        state: DeliveryState,
        reason: Option<String>,
    ) {
        match self
            .store()
            .set_state(id.clone(), state, reason.clone())
            .await
        {
            Ok(true) => self.publish(ChatEvent::MessageState {
                id,
                channel: channel.to_owned(),
                state,
                reason,
            }),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not record a delivery state"),
        }
    }

    /// Reads the server's backup of `channel` after this node's server
    /// cursor, page by page, handing each message to `each` and moving the
    /// cursor after every page, so an interrupted pull resumes where it
    /// stopped. `each` says false when it could not store a message: the
    /// cursor stops before it and the pull ends (the next one fetches it
    /// again). `role` names this node's side in the `SYNC` record.
    async fn pull_backup(
        &self,
        channel: &str,
        role: &str,
        mut each: impl AsyncFnMut(&Chat, Sequenced, &str) -> bool,
    ) {
        let from = self.server_addr();
        loop {
            let cursor = match self
                .store()
                .cursor(channel.to_owned(), Cursor::Server)
                .await
            {
                Ok(c) => c,
                Err(e) => return tracing::warn!(error = %e, "server cursor unreadable"),
            };
            let page = self.link().history(channel, cursor, MAX_BATCH as u32).await;
            let HistoryPage { messages, has_more } = match page {
                Ok(page) => page,
                Err(f) => return tracing::debug!(reason = %f, "could not read the backup"),
            };
            if messages.is_empty() {
                return;
            }
            let count = messages.len();
            let (mut last, mut stopped) = (None, false);
            for s in messages {
                let seq = s.seq;
                if !each(self, s, &from).await {
                    stopped = true;
                    break;
                }
                last = Some(seq);
            }
            self.log().record(
                "SYNC",
                &from,
                format!(
                    "direction=server->{role} served_by=server channel={channel} after_seq={cursor} count={count}"
                ),
            );
            if let Some(last) = last {
                if let Err(e) = self
                    .store()
                    .set_cursor(channel.to_owned(), Cursor::Server, last)
                    .await
                {
                    return tracing::warn!(error = %e, "could not move the server cursor");
                }
            }
            if stopped {
                return tracing::warn!(
                    channel,
                    "could not store the server's copy; the server cursor waits before it"
                );
            }
            if !has_more {
                return;
            }
        }
    }

    /// Asks the server for a ticket for this node's key and keeps it.
    async fn fetch_ticket(&self) -> Result<SignedTicket, Failure> {
        let t = self.link().get_ticket(self.node_key()).await?;
        if let Err(e) = keys::save_ticket(&self.inner.data_dir, &t) {
            tracing::warn!(error = %e, "could not keep the ticket on disk");
        }
        *lock(&self.inner.ticket) = Some(t.clone());
        Ok(t)
    }

    /// A page of history, newest first, from the local store (works with
    /// the network down).
    pub async fn history(
        &self,
        channel: &str,
        before: Option<String>,
        limit: u32,
    ) -> Result<History, Failure> {
        let limit = limit.clamp(1, 500);
        let messages = self
            .store()
            .history(channel.to_owned(), before, limit)
            .await
            .map_err(|e| match e {
                StoreError::Corrupt(reason) if reason.contains("before") => {
                    Failure::bad_request("`before` names no message in this channel")
                }
                e => internal(e),
            })?;
        let gaps = self
            .gaps(channel)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|(from, to)| Gap {
                from_host_seq: from,
                to_host_seq: to,
            })
            .collect();
        let next_before = (messages.len() == limit as usize)
            .then(|| messages.last().map(|m| m.id.clone()))
            .flatten();
        Ok(History {
            channel: channel.to_owned(),
            via: lock(&self.inner.links).get(channel).copied(),
            messages,
            next_before,
            gaps,
        })
    }

    /// Full-text search over everything stored locally: a page of
    /// matches, newest first, their count and where the next page starts.
    pub async fn search(&self, query: SearchQuery) -> Result<SearchPage, Failure> {
        self.store().search(query).await.map_err(internal)
    }

    /// Unread counts per channel.
    pub async fn unread(&self) -> Result<Vec<crate::store::Unread>, Failure> {
        let me = self.session().map(|s| s.username).unwrap_or_default();
        self.store().unread(me).await.map_err(internal)
    }

    /// Marks a channel read.
    pub async fn mark_read(&self, channel: &str) -> Result<(), Failure> {
        self.store()
            .mark_read(channel.to_owned())
            .await
            .map_err(internal)
    }
}

/// A page of history.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub channel: String,
    /// How the channel is reached right now (`null` if not followed).
    pub via: Option<Via>,
    /// Newest first.
    pub messages: Vec<MessageRow>,
    /// Pass as `before` to get the next (older) page; `null` at the start.
    pub next_before: Option<String>,
    /// Host sequence numbers known to be missing here; they fill in when
    /// the host is reachable again.
    pub gaps: Vec<Gap>,
}

/// A known hole in a channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from_host_seq: u64,
    pub to_host_seq: u64,
}

impl MessageRow {
    fn arrived(m: &Message, a: &Arrival) -> MessageRow {
        MessageRow {
            id: m.id.to_string(),
            channel: m.channel.clone(),
            author: m.author.clone(),
            ts_ms: m.ts_ms,
            body: m.body.clone(),
            source: a.source,
            from: a.from.clone(),
            host_seq: a.host_seq,
            server_seq: a.server_seq,
            state: None,
            reason: None,
            reply_to: m
                .re
                .filter(|r| r.kind == RefKind::Reply)
                .map(|r| r.id.to_string()),
            quote: None,
            edited_ms: None,
            deleted: false,
            file: m.file.clone().map(Box::new),
            reactions: Vec::new(),
            mentions_me: false,
            local_id: 0,
        }
    }

    fn written(m: &Message) -> MessageRow {
        let mut row = MessageRow::arrived(
            m,
            &Arrival {
                source: Source::Local,
                from: None,
                host_seq: None,
                server_seq: None,
            },
        );
        row.state = Some(DeliveryState::Pending);
        row
    }
}

/// Locks a std mutex, carrying on past a poisoned one (plain data inside).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
