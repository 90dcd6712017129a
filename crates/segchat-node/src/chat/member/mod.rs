//! Following a channel hosted on another node. While its host is online the
//! node is connected to it P2P: it catches up from its cursor with `sync`,
//! receives every `broadcast`, and posts its outbox there. While the host is
//! offline (or unreachable) it reads the server's backup from its server
//! cursor, posts through the server, and wakes on the server's notices.
//! Every copy is verified before it is stored; a forged or altered one is
//! logged and dropped.

//!
//! `p2p.rs` is one session with the host, `server.rs` the fallback through
//! the server; this file decides between them and stores what arrives.

use std::time::Duration;

use segchat_proto::message::Message;
use segchat_proto::peer;
use segchat_proto::types::NodeAddr;
use segchat_proto::{Failure, Status, Welcome};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod p2p;
mod server;

use super::Chat;
use crate::store::{Arrival, DeliveryState, Inserted, Source, StoreError};

/// How long connecting to a host and its answers may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a channel is looked at without a nudge.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// How soon to look for the backup of a post the host stored.
const BACKUP_CHECK: Duration = Duration::from_millis(500);
/// Longest wait before trying an unreachable host again.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// After asking the host for a gap that did not fill (the disk is still
/// full, say), the first wait before asking again; it doubles up to
/// [`GAP_RETRY_MAX`], and a gap that fills resets it.
const GAP_RETRY: Duration = Duration::from_millis(250);
/// The longest wait between two requests for an open gap while the link is
/// up: how long a member whose disk came back may still miss messages.
const GAP_RETRY_MAX: Duration = Duration::from_secs(3);
/// How often to ping a host whose welcome names no interval.
const DEFAULT_PING: Duration = Duration::from_secs(2);
/// Events kept while waiting for the answer to `peer_connect`.
const MAX_EARLY_EVENTS: usize = 4096;

/// A P2P link's liveness rules, from the host's welcome: ping when
/// nothing was sent for `ping_every`; the link is dead when nothing came
/// for `dead_after` (a write that cannot finish within it is too).
struct Liveness {
    ping_every: Duration,
    dead_after: Duration,
}

impl Liveness {
    fn of(welcome: &Welcome) -> Liveness {
        let ping_every = match welcome.heartbeat_ms {
            0 => DEFAULT_PING,
            ms => Duration::from_millis(ms).clamp(Duration::from_millis(100), DEFAULT_PING * 5),
        };
        Liveness {
            ping_every,
            dead_after: ping_every * peer::LIVENESS,
        }
    }
}

/// `write`, unless the link's deadline (nothing heard since `heard_at`
/// for `dead_after`) passes first: a write the host does not take (a full
/// socket buffer over a cut link) ends the link at the same moment a
/// silent one would, rather than starting a fresh wait of its own.
async fn within<T>(
    heard_at: Instant,
    liveness: &Liveness,
    write: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout_at(heard_at + liveness.dead_after, write)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "nothing from the host for {} ms",
                liveness.dead_after.as_millis()
            ))
        })
}

/// Why a P2P session ended.
enum Ended {
    Cancelled,
    /// The server says the host moved or went away.
    HostChanged,
    /// Could not connect or was refused; try later.
    Failed(String),
    /// Was connected, then lost it.
    Lost(String),
}

/// Follows `channel` until cancelled.
pub(super) async fn follow(
    chat: Chat,
    channel: String,
    mut host: watch::Receiver<Option<NodeAddr>>,
    cancel: CancellationToken,
) {
    let bell = chat.bell(&channel);
    // Before the first sync: what it brings of a channel new to this node
    // is history, not unread.
    if let Err(e) = chat
        .store()
        .note_following(channel.clone(), crate::clock::now_ms())
        .await
    {
        tracing::warn!(%channel, error = %e, "could not note when unread starts");
    }
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let target = host.borrow_and_update().clone();
        let due = retry_at.is_none_or(|t| Instant::now() >= t);
        if let (Some(node), true) = (target, due) {
            let addr = node.addr;
            match chat
                .p2p_session(&channel, &node, &mut host, &bell, &cancel)
                .await
            {
                Ended::Cancelled => return,
                Ended::HostChanged => {
                    retry_at = None;
                    continue;
                }
                Ended::Lost(reason) => {
                    chat.log().record(
                        "HOST_UNREACHABLE",
                        addr,
                        format!("channel={channel} lost: {reason}"),
                    );
                    backoff = Duration::from_millis(500);
                    retry_at = Some(Instant::now() + backoff);
                }
                Ended::Failed(reason) => {
                    chat.log().record(
                        "HOST_UNREACHABLE",
                        addr,
                        format!("channel={channel} {reason}; reading the server's backup"),
                    );
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_RETRY);
                }
            }
        }
        if chat
            .server_session(&channel, &mut host, &bell, &cancel, retry_at)
            .await
        {
            return;
        }
    }
}

impl Chat {
    /// Verifies and stores a copy from the host or the server; an own
    /// message coming back moves its delivery state. `None` if it was
    /// rejected (never stored); an error if it could not be stored.
    async fn accept(
        &self,
        m: Message,
        arrival: Arrival,
        from: &str,
    ) -> Result<Option<Inserted>, StoreError> {
        if let Err(reason) = self.verify(&m) {
            self.log_rejected(from, &m, &reason);
            return Ok(None);
        }
        let own = self.session().is_some_and(|s| s.username == m.author);
        let (id, channel) = (m.id.to_string(), m.channel.clone());
        let served_by = match arrival.source {
            Source::Server => "server",
            _ => "host",
        };
        let detail = format!(
            "served_by={served_by} channel={channel} id={id} author={} host_seq={} server_seq={}",
            m.author,
            arrival.host_seq.map_or("-".into(), |s| s.to_string()),
            arrival.server_seq.map_or("-".into(), |s| s.to_string()),
        );
        let state = match arrival.source {
            Source::Server => DeliveryState::BackedUp,
            _ => DeliveryState::Stored,
        };
        let inserted = match self.receive(m, arrival).await {
            Ok(inserted) => inserted,
            Err(e) => {
                tracing::warn!(error = %e, %channel, %id, "could not store a message");
                return Err(e);
            }
        };
        if inserted.new {
            self.log().record("MESSAGE_RECEIVED", from, detail);
        }
        if own {
            self.set_state(id, &channel, state, None).await;
        }
        Ok(Some(inserted))
    }

    pub(super) async fn outbox_of(&self, channel: &str) -> Vec<Message> {
        match self.store().outbox(10_000).await {
            Ok(all) => all.into_iter().filter(|m| m.channel == channel).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the outbox");
                Vec::new()
            }
        }
    }
}

/// Fires a little after a post was stored by the host while its backup is
/// unconfirmed (the server's notice may have come before the host's ack).
async fn backup_check(awaiting: bool) {
    if awaiting {
        tokio::time::sleep(BACKUP_CHECK).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A refusal that retrying will not change.
fn final_refusal(f: &Failure) -> bool {
    matches!(
        f.status,
        Status::BadRequest | Status::Forbidden | Status::NotFound | Status::TooLarge
    )
}
