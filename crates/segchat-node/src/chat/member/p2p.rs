//! One P2P session with a channel's host: catching up with `sync` (and
//! paging), repairing gaps, posting the outbox, taking in broadcasts and
//! answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use segchat_proto::message::{Sequenced, MAX_BATCH};
use segchat_proto::peer;
use segchat_proto::ticket::ProofPurpose;
use segchat_proto::types::NodeAddr;
use segchat_proto::{Failure, Frame, Hello, LinkKind, Status};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::{
    backup_check, final_refusal, sleep_until, within, Ended, Liveness, GAP_RETRY, GAP_RETRY_MAX,
    IDLE_TICK, MAX_EARLY_EVENTS, PEER_TIMEOUT,
};
use crate::chat::{Chat, Via};
use crate::p2p::{PeerCodec, PeerFrame};
use crate::store::{Arrival, Cursor, DeliveryState, Inserted, Source};

impl Chat {
    /// One P2P session with the channel's host.
    pub(super) async fn p2p_session(
        &self,
        channel: &str,
        node: &NodeAddr,
        host: &mut watch::Receiver<Option<NodeAddr>>,
        bell: &Arc<Notify>,
        cancel: &CancellationToken,
    ) -> Ended {
        let ticket = match self.ticket() {
            Some(t) => t,
            None => match self.fetch_ticket().await {
                Ok(t) => t,
                Err(f) => return Ended::Failed(format!("no ticket: {}", f.reason)),
            },
        };
        let addr = node.addr;
        let dialed = match self.transport().dial_chat(node, PEER_TIMEOUT).await {
            Ok(d) => d,
            Err(e) => return Ended::Failed(format!("cannot connect: {e}")),
        };
        // The host's key was proven by the handshake; on QUIC, a stream it
        // starts on this connection would carry datagrams, which a member
        // ignores.
        let _conn = dialed.conn;
        let path = dialed.path;
        let mut reader = FramedRead::new(dialed.recv, PeerCodec::default());
        let mut writer = FramedWrite::new(dialed.send, PeerCodec::default());
        let hello: PeerFrame = Frame::Hello(Hello::new(LinkKind::Peer, crate::config::AGENT));
        if writer.send(hello).await.is_err() {
            return Ended::Failed("the host closed the connection".into());
        }
        // The proof of this node's key signs the welcome's nonce, so the
        // request waits for it (one round trip more than a pipelined one).
        let welcome = tokio::time::timeout(PEER_TIMEOUT, reader.next()).await;
        let welcome = match welcome {
            Err(_) => return Ended::Failed("the host did not answer".into()),
            Ok(Some(Ok(Frame::Welcome(w)))) => w,
            Ok(Some(Ok(Frame::Error(f)))) => {
                return Ended::Failed(format!("the host refused: {f}"))
            }
            Ok(_) => return Ended::Failed("the host broke the handshake".into()),
        };
        let liveness = Liveness::of(&welcome);
        let proof = match self.prove(&welcome.nonce, ProofPurpose::PeerConnect { channel }) {
            Ok(p) => p,
            Err(e) => return Ended::Failed(format!("the host's welcome: {e}")),
        };
        let connect: PeerFrame = Frame::Request {
            id: 1,
            body: peer::Request::PeerConnect {
                ticket,
                channel: channel.to_owned(),
                proof,
            },
        };
        if writer.send(connect).await.is_err() {
            return Ended::Failed("the host closed the connection".into());
        }
        // Events may come before the answer (the link is subscribed as
        // it is admitted); they are kept and taken in first.
        let answer = tokio::time::timeout(PEER_TIMEOUT, async {
            let mut early = Vec::new();
            loop {
                match reader.next().await {
                    Some(Ok(Frame::Response { id: 1, result })) => return Ok((result, early)),
                    Some(Ok(Frame::Event(ev))) if early.len() < MAX_EARLY_EVENTS => early.push(ev),
                    Some(Ok(Frame::Error(f))) => return Err(format!("the host refused: {f}")),
                    _ => return Err("the host broke the handshake".to_owned()),
                }
            }
        })
        .await;
        let (can_write, early) = match answer {
            Err(_) => return Ended::Failed("the host did not answer".into()),
            Ok(Err(e)) => return Ended::Failed(e),
            Ok(Ok((result, early))) => match result {
                Ok(peer::Reply::Connected { can_write, .. }) => (can_write, early),
                Ok(other) => return Ended::Failed(format!("unexpected answer {other:?}")),
                Err(f) => return Ended::Failed(format!("the host refused: {f}")),
            },
        };
        self.log().record(
            "CONNECTION_ESTABLISHED",
            addr,
            format!("link=p2p role=member channel={channel} can_write={can_write} path={path}"),
        );
        self.set_via(channel, Via::Host);

        // Messages the host stored in an earlier session (or before a
        // server outage) may still wait for the backup: keep looking for it
        // from the start, not only after this session's first `stored`.
        let awaiting_backup = self
            .store()
            .count_in_state(channel.to_owned(), DeliveryState::Stored)
            .await
            .is_ok_and(|n| n > 0);
        let mut session = Session {
            channel: channel.to_owned(),
            from: addr.to_string(),
            next_id: 2,
            syncing: None,
            posts: HashMap::new(),
            in_flight: HashSet::new(),
            can_write,
            via_server: false,
            awaiting_backup,
            tickets: peer::LinkTickets::default(),
            page_after: None,
            repairing: false,
            repair_at: None,
            repair_every: GAP_RETRY,
            missing: u64::MAX,
        };
        for ev in early {
            if let Err(e) = self.on_host_event(&mut session, ev).await {
                return Ended::Lost(e);
            }
        }
        let mut flush_due = true;
        // When this side last sent and last heard anything.
        let (mut sent_at, mut heard_at) = (Instant::now(), Instant::now());
        let ended = loop {
            // A write the host does not take (a full socket buffer on a
            // silent link) must not push the link's deadline back.
            if Instant::now() >= heard_at + liveness.dead_after {
                break Ended::Lost(format!(
                    "nothing from the host for {} ms",
                    liveness.dead_after.as_millis()
                ));
            }
            if session.syncing.is_none() {
                match within(
                    heard_at,
                    &liveness,
                    self.send_sync(&mut session, &mut writer),
                )
                .await
                {
                    Ok(()) => sent_at = Instant::now(),
                    Err(e) => break Ended::Lost(e),
                }
            }
            let ping_at = sent_at + liveness.ping_every;
            let dead_at = heard_at + liveness.dead_after;
            tokio::select! {
                _ = cancel.cancelled() => break Ended::Cancelled,
                changed = host.changed() => {
                    if changed.is_err() { break Ended::Cancelled; }
                    if host.borrow().as_ref() != Some(node) { break Ended::HostChanged; }
                }
                _ = bell.notified() => {
                    flush_due = true;
                    if session.awaiting_backup {
                        session.awaiting_backup = self.confirm_backup(channel).await;
                    }
                }
                _ = backup_check(session.awaiting_backup) => {
                    session.awaiting_backup = self.confirm_backup(channel).await;
                }
                _ = tokio::time::sleep_until(ping_at.min(dead_at)) => {
                    if Instant::now() >= dead_at {
                        break Ended::Lost(format!(
                            "nothing from the host for {} ms",
                            liveness.dead_after.as_millis()
                        ));
                    }
                    let id = session.take_id();
                    let ping = writer.send(Frame::Request { id, body: peer::Request::Ping });
                    match within(heard_at, &liveness, async { ping.await.map_err(|e| e.to_string()) }).await {
                        Ok(()) => sent_at = Instant::now(),
                        Err(e) => break Ended::Lost(e),
                    }
                }
                _ = tokio::time::sleep(IDLE_TICK) => flush_due = true,
                _ = sleep_until(session.repair_at) => {
                    session.repair_at = None;
                    match within(heard_at, &liveness, self.request_gap(&mut session, &mut writer)).await {
                        Ok(()) => sent_at = Instant::now(),
                        Err(e) => break Ended::Lost(e),
                    }
                }
                frame = reader.next() => {
                    heard_at = Instant::now();
                    match frame {
                        None => break Ended::Lost("the host closed the connection".into()),
                        Some(Err(e)) => break Ended::Lost(format!("bad frame from the host: {e}")),
                        Some(Ok(Frame::Event(ev))) => {
                            let could_write = session.can_write;
                            if let Err(e) = self.on_host_event(&mut session, ev).await {
                                break Ended::Lost(e);
                            }
                            flush_due |= session.can_write != could_write;
                        }
                        Some(Ok(Frame::Response { id, result })) => {
                            self.on_answer(&mut session, id, result).await;
                        }
                        Some(Ok(Frame::Error(f))) => break Ended::Lost(format!("the host closed the link: {f}")),
                        Some(Ok(other)) => break Ended::Lost(format!("unexpected {:?} frame", other.kind())),
                    }
                },
            }
            if (flush_due || session.via_server) && session.syncing == Some(0) {
                flush_due = false;
                if session.can_write && !session.via_server {
                    match within(
                        heard_at,
                        &liveness,
                        self.post_outbox(&mut session, &mut writer),
                    )
                    .await
                    {
                        Ok(true) => sent_at = Instant::now(),
                        Ok(false) => {}
                        Err(e) => break Ended::Lost(e),
                    }
                } else if self.link().state().connected {
                    // Read-only here (a visitor, or the host has not heard
                    // of the join yet), or the host refused a post for
                    // now: what the user wrote goes through the server,
                    // which has the last word on membership.
                    session.via_server = false;
                    self.flush_via_server(channel, &session.in_flight).await;
                }
            }
        };
        self.log().record(
            "CONNECTION_CLOSED",
            addr,
            format!("link=p2p role=member channel={channel}"),
        );
        ended
    }

    /// Asks the host for what follows the cursor (or, for the next page,
    /// what follows the last page).
    async fn send_sync(&self, s: &mut Session, w: &mut PeerWriter) -> Result<(), String> {
        let after_seq = match s.page_after {
            Some(after) => after,
            None => self
                .store()
                .cursor(s.channel.clone(), Cursor::Host)
                .await
                .map_err(|e| e.to_string())?,
        };
        s.repairing = false;
        self.ask(s, w, after_seq, MAX_BATCH as u32).await
    }

    async fn ask(
        &self,
        s: &mut Session,
        w: &mut PeerWriter,
        after_seq: u64,
        limit: u32,
    ) -> Result<(), String> {
        let id = s.take_id();
        s.syncing = Some(id);
        w.send(Frame::Request {
            id,
            body: peer::Request::Sync {
                channel: s.channel.clone(),
                after_seq,
                limit,
            },
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Asks the host for the first open gap, if the link is idle (a
    /// `sync` in flight looks at the gaps itself when it ends).
    async fn request_gap(&self, s: &mut Session, w: &mut PeerWriter) -> Result<(), String> {
        if s.syncing != Some(0) {
            return Ok(());
        }
        let Some(&(from, to)) = self.missing(&s.channel).await.first() else {
            return Ok(());
        };
        let limit = (to - from + 1).min(MAX_BATCH as u64) as u32;
        tracing::debug!(channel = %s.channel, from, to, "asking the host for a gap");
        s.repairing = true;
        self.ask(s, w, from - 1, limit).await
    }

    /// Looks at the channel's open gaps and schedules the next request for
    /// one: at once if the last request filled something (or none was made
    /// yet), else after a wait that doubles up to [`GAP_RETRY_MAX`].
    async fn review_gaps(&self, s: &mut Session) {
        let gaps = self.missing(&s.channel).await;
        let missing: u64 = gaps.iter().map(|(a, b)| b - a + 1).sum();
        let now = Instant::now();
        if missing == 0 {
            s.repair_at = None;
            s.repair_every = GAP_RETRY;
        } else if missing < s.missing {
            s.repair_at = Some(now);
            s.repair_every = GAP_RETRY;
        } else {
            s.repair_at = Some(now + s.repair_every);
            s.repair_every = (s.repair_every * 2).min(GAP_RETRY_MAX);
        }
        s.missing = if missing == 0 { u64::MAX } else { missing };
    }

    /// Posts whatever in the outbox is not already on its way; true if it
    /// sent anything.
    async fn post_outbox(&self, s: &mut Session, w: &mut PeerWriter) -> Result<bool, String> {
        let mut sent = false;
        if !s.can_write {
            return Ok(sent);
        }
        for m in self.outbox_of(&s.channel).await {
            let mid = m.id.to_string();
            if !s.in_flight.insert(mid.clone()) {
                continue;
            }
            let id = s.take_id();
            s.posts.insert(id, mid);
            w.send(Frame::Request {
                id,
                body: peer::Request::Post { message: m },
            })
            .await
            .map_err(|e| e.to_string())?;
            sent = true;
        }
        Ok(sent)
    }

    /// Takes in an event from the host.
    async fn on_host_event(&self, s: &mut Session, ev: peer::Event) -> Result<(), String> {
        match ev {
            peer::Event::Ticket { ticket_ref, ticket } => s.tickets.learn(ticket_ref, ticket),
            peer::Event::Broadcast {
                seq,
                ticket_ref,
                message,
            } => {
                let message = s.tickets.resolve(ticket_ref, message)?;
                let held = self.on_hosted(s, Sequenced { seq, message }).await;
                // A hole below this number (or this number) is asked for
                // now, not on the next connect.
                let caught_up = s.syncing == Some(0);
                if !held && caught_up && s.repair_at.is_none() {
                    self.review_gaps(s).await;
                }
                Ok(())
            }
            peer::Event::Rights { channel, can_write } => {
                if channel == s.channel && can_write != s.can_write {
                    self.log().record(
                        "PEER_RIGHTS",
                        &s.from,
                        format!("channel={channel} can_write={can_write}"),
                    );
                    s.can_write = can_write;
                }
                Ok(())
            }
            peer::Event::StreamEnded { .. } => Ok(()),
        }
    }

    /// Stores a copy the host sent under its number. True if this number
    /// and every one below it are now held; false if a hole is open below
    /// it or it could not be stored (then it is remembered as a gap).
    async fn on_hosted(&self, s: &Session, sm: Sequenced) -> bool {
        let arrival = Arrival {
            source: Source::Host,
            from: Some(s.from.clone()),
            host_seq: Some(sm.seq),
            server_seq: None,
        };
        let seq = sm.seq;
        match self.accept(sm.message, arrival, &s.from).await {
            Ok(Some(Inserted {
                host_cursor: Some(cursor),
                ..
            })) => cursor >= seq,
            Ok(_) => false,
            Err(_) => {
                self.unstored(&s.channel, seq).await;
                false
            }
        }
    }

    async fn on_answer(&self, s: &mut Session, id: u32, result: Result<peer::Reply, Failure>) {
        if s.syncing == Some(id) {
            match result {
                Ok(peer::Reply::Messages {
                    messages, has_more, ..
                }) => {
                    let n = messages.len();
                    let last = messages.last().map(|m| m.seq);
                    for m in messages {
                        self.on_hosted(s, m).await;
                    }
                    if n > 0 {
                        self.log().record(
                            "SYNC",
                            &s.from,
                            format!(
                                "direction=host->member served_by=host channel={} count={n}",
                                s.channel
                            ),
                        );
                    }
                    // Another page, or done (0 marks "caught up"); a gap
                    // request is one page.
                    if has_more && !s.repairing && last.is_some() {
                        s.page_after = last;
                        s.syncing = None;
                        return;
                    }
                }
                other => tracing::warn!(answer = ?other, "sync refused"),
            }
            s.syncing = Some(0);
            s.page_after = None;
            s.repairing = false;
            self.review_gaps(s).await;
            return;
        }
        let Some(mid) = s.posts.remove(&id) else {
            return;
        };
        s.in_flight.remove(&mid);
        match result {
            Ok(peer::Reply::Stored { seq, .. }) => {
                self.log().record(
                    "MESSAGE_SENT",
                    &s.from,
                    format!("via=host channel={} id={mid} host_seq={seq}", s.channel),
                );
                self.set_state(mid, &s.channel, DeliveryState::Stored, None)
                    .await;
                s.awaiting_backup = true;
            }
            Ok(other) => tracing::warn!(answer = ?other, "unexpected answer to post"),
            // The host's idea of the members may lag the server's (a join
            // it has not heard of yet): the server decides instead.
            Err(f) if f.status == Status::Forbidden => {
                tracing::info!(reason = %f, "the host refused a post; trying the server");
                s.via_server = true;
            }
            Err(f) if final_refusal(&f) => {
                self.set_state(mid, &s.channel, DeliveryState::Refused, Some(f.reason))
                    .await;
            }
            Err(f) => tracing::debug!(reason = %f, "post will be retried"),
        }
    }
}

type PeerWriter = FramedWrite<crate::transport::ChatWrite, PeerCodec>;

/// One P2P session's bookkeeping.
struct Session {
    channel: String,
    from: String,
    next_id: u32,
    /// The id of the `sync` in flight; `Some(0)` once caught up.
    syncing: Option<u32>,
    /// Request id → message id of posts in flight.
    posts: HashMap<u32, String>,
    in_flight: HashSet<String>,
    can_write: bool,
    /// The host refused a post for now: the outbox goes through the
    /// server at the next chance.
    via_server: bool,
    /// A post was stored by the host and its backup is not confirmed yet.
    awaiting_backup: bool,
    /// The authors' tickets the host's broadcasts refer to.
    tickets: peer::LinkTickets,
    /// Where the next page of a `sync` starts (`None`: at the cursor).
    page_after: Option<u64>,
    /// The `sync` in flight asks for a gap (one page).
    repairing: bool,
    /// When to ask the host for the first open gap.
    repair_at: Option<Instant>,
    /// How long to wait if the next request fills nothing.
    repair_every: Duration,
    /// How many numbers were missing at the last look (`MAX`: none).
    missing: u64,
}

impl Session {
    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }
}
