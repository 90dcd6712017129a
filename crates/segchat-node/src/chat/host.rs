//! Hosting: the channels this node's user owns live here. Members connect
//! over the peer link; the host checks their server-signed ticket with no
//! round trip, applies the channel's rules, stores and numbers every post,
//! and fans it out to every connected member through a bounded queue each
//! (a member whose queue fills is cut off and resyncs; it never stalls the
//! others). A backup task streams what the server lacks in acknowledged
//! batches; a pull task fetches what members posted through the server while
//! this node was away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use segchat_proto::message::{batch_len, Message, Sequenced, MAX_BATCH};
use segchat_proto::peer;
use segchat_proto::ticket::{ProofPurpose, SignedTicket, NONCE_LEN};
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{AccountKind, ChannelInfo};
use segchat_proto::{Failure, Frame, FrameCodec, Status, Welcome, PROTOCOL_VERSION};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::outbound::Outbound;
use super::{lock, Chat, ChatEvent, Via};
use crate::acl::ChannelAcl;
use crate::p2p::PeerReadCodec;
use crate::store::{Arrival, Cursor, DeliveryState, Source};

/// The peer link's codec and frames.
pub(crate) type PeerCodec = FrameCodec<peer::Request, peer::Reply, peer::Event>;
pub(crate) type PeerFrame = Frame<peer::Request, peer::Reply, peer::Event>;

/// Posts a hosted channel queues for storing before posters wait (a
/// member's read loop waits there, so a flood backs up into its socket).
const SEQUENCER_QUEUE: usize = 4096;
/// Most posts written in one transaction.
const SEQUENCER_BATCH: usize = 256;
/// How often the backup and pull tasks look even without a nudge.
const BACKUP_EVERY: Duration = Duration::from_secs(5);
const PULL_EVERY: Duration = Duration::from_secs(30);
/// How long the backup task waits after a nudge before it reads the backlog.
const BACKUP_LINGER: Duration = Duration::from_millis(50);
/// How often a member pings when it has nothing else to send (the
/// welcome's `heartbeat_ms`). See ARCHITECTURE.md, "Peer link liveness".
pub(crate) const PING_EVERY: Duration = Duration::from_secs(2);
/// A member link with no frame for this long is dropped (the welcome's
/// `peer_ttl_ms`): five missed pings, so a loaded member is not cut.
const LINK_IDLE: Duration = Duration::from_secs(10);
/// A link must be admitted (`peer_connect` or `watch` answered) this soon
/// after its welcome, whatever it sends meanwhile.
const ADMIT_WITHIN: Duration = Duration::from_secs(5);

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct Sub {
    out: Outbound,
    /// Which ticket each ticket number names on this member's link (the
    /// assignment in [`TicketRefs`]); shared by the link's subscriptions.
    refs: LinkRefs,
    cancel: CancellationToken,
    user: String,
    /// The session of the ticket it was admitted with.
    session: String,
    kind: AccountKind,
}

#[derive(Debug)]
struct Hosted {
    /// The link generation `host_channel` was last sent on.
    announced: u64,
    acl: Option<ChannelAcl>,
    subs: HashMap<u64, Sub>,
    backup: Arc<Notify>,
    pull: Arc<Notify>,
    /// Posts waiting to be numbered and stored, in arrival order.
    sequencer: mpsc::Sender<Job>,
    cancel: CancellationToken,
}

/// A message waiting for the sequencer.
#[derive(Debug)]
struct Job {
    message: Message,
    arrival: Arrival,
    /// A member's post, from this address: the sequencer verifies it (all
    /// of a batch's posts in one batched check). `None`: verified already.
    verify_from: Option<SocketAddr>,
    answer: Answer,
}

/// Who learns how a queued message ended.
#[derive(Debug)]
enum Answer {
    /// The member who posted it: the sequencer writes the `response` to
    /// its request `id` straight to the link (no task per post).
    Member {
        out: Outbound,
        id: u32,
        addr: SocketAddr,
        /// The post's id and author, for the answer and the log.
        post: Uuid,
        author: String,
    },
    /// A caller on this node, waiting.
    Local(oneshot::Sender<Result<u64, Failure>>),
}

impl Answer {
    fn send(self, chat: &Chat, channel: &str, result: Result<u64, Failure>) {
        match self {
            Answer::Local(reply) => {
                let _ = reply.send(result);
            }
            Answer::Member {
                out,
                id,
                addr,
                post,
                author,
            } => {
                let result = result.map(|seq| {
                    chat.log().record(
                        "MESSAGE_SENT",
                        addr,
                        format!("via=host channel={channel} id={post} author={author} seq={seq}"),
                    );
                    peer::Reply::Stored { id: post, seq }
                });
                if let Some(b) = encode(&Frame::Response { id, result }) {
                    let _ = out.send(b);
                }
            }
        }
    }
}

/// Per link: ticket number → the assignment it was last sent for.
type LinkRefs = Arc<Mutex<HashMap<u16, u64>>>;

/// The channels this node hosts.
#[derive(Debug, Default)]
pub(super) struct Hosting {
    channels: Mutex<HashMap<String, Hosted>>,
    tickets: Mutex<TicketRefs>,
}

/// The numbers broadcasts give authors' tickets, node-wide, so a ticket
/// crosses each link once instead of with every message. A ticket keeps
/// its number while the table has room; when all [`peer::TICKET_REFS`] are
/// taken, numbers are reused round-robin under a new assignment, and a link
/// is sent the new ticket before a broadcast needs it.
#[derive(Debug, Default)]
struct TicketRefs {
    by_ticket: HashMap<SignedTicket, u16>,
    /// By number: the ticket and its assignment (never 0, never reused).
    slots: Vec<(SignedTicket, u64)>,
    next_reuse: usize,
    assignments: u64,
}

impl TicketRefs {
    /// The number of `ticket` and its assignment, giving it one if needed.
    fn number(&mut self, ticket: &SignedTicket) -> (u16, u64) {
        if let Some(&n) = self.by_ticket.get(ticket) {
            return (n, self.slots[n as usize].1);
        }
        self.assignments += 1;
        let n = if self.slots.len() < usize::from(peer::TICKET_REFS) {
            self.slots.push((ticket.clone(), self.assignments));
            self.slots.len() - 1
        } else {
            let n = self.next_reuse;
            self.next_reuse = (n + 1) % self.slots.len();
            let (old, _) =
                std::mem::replace(&mut self.slots[n], (ticket.clone(), self.assignments));
            self.by_ticket.remove(&old);
            n
        };
        // `slots` never grows past TICKET_REFS, a u16.
        let n = n as u16;
        self.by_ticket.insert(ticket.clone(), n);
        (n, self.assignments)
    }
}

/// A ticket some broadcasts of a batch name: (number, assignment, ticket).
type UsedTicket = (u16, u64, SignedTicket);

impl Hosting {
    pub(super) fn is_hosted(&self, channel: &str) -> bool {
        lock(&self.channels).contains_key(channel)
    }

    pub(super) fn wake_pull(&self, channel: &str) {
        if let Some(h) = lock(&self.channels).get(channel) {
            h.pull.notify_one();
        }
    }

    fn wake_backup(&self, channel: &str) {
        if let Some(h) = lock(&self.channels).get(channel) {
            h.backup.notify_one();
        }
    }

    /// Keeps the cached member list current as people join and leave, so
    /// admission never has to wait for the server, and makes the user's
    /// open links follow: a link admitted read-only before the host heard
    /// of the join is told it may write now (a `rights` event), and one
    /// that may no longer write is told so. Someone who left and may no
    /// longer read is cut off at once.
    pub(super) fn member_changed(&self, channel: &str, user: &str, joined: bool) {
        let mut map = lock(&self.channels);
        let Some(h) = map.get_mut(channel) else {
            return;
        };
        let Some(acl) = h.acl.as_mut() else { return };
        if joined {
            acl.members.insert(user.to_owned());
        } else {
            acl.members.remove(user);
        }
        if !acl.may_read(user, AccountKind::User) {
            h.subs.retain(|_, s| {
                let stays = s.user != user;
                if !stays {
                    s.cancel.cancel();
                }
                stays
            });
            return;
        }
        // Visitors' links keep their rights: a visitor is never a member.
        let can_write = acl.may_write(user, AccountKind::User);
        let event: PeerFrame = Frame::Event(peer::Event::Rights {
            channel: channel.to_owned(),
            can_write,
        });
        let Some(b) = encode(&event) else { return };
        for s in h
            .subs
            .values()
            .filter(|s| s.user == user && s.kind == AccountKind::User)
        {
            // Refused: the link is closing anyway.
            let _ = s.out.send(b.clone());
        }
    }

    /// Whether `user` may write in `channel` now (checked on every post, so
    /// leaving a channel takes effect on open connections too).
    fn may_write(&self, channel: &str, user: &str, kind: AccountKind) -> bool {
        lock(&self.channels)
            .get(channel)
            .and_then(|h| h.acl.as_ref())
            .is_some_and(|acl| acl.may_write(user, kind))
    }

    pub(super) fn stop_all(&self) {
        for (_, h) in lock(&self.channels).drain() {
            h.cancel.cancel();
            for s in h.subs.values() {
                s.cancel.cancel();
            }
        }
    }

    /// Sends pre-encoded broadcasts to every member of `channel`, each
    /// link first getting the `ticket` events it lacks for them. A member
    /// whose queue is full is cut off by its `Outbound` (which logs it);
    /// its connection then unsubscribes it.
    ///
    /// The writes happen outside the channels' lock: with members keeping
    /// up, each is a direct socket write (see [`Outbound`]), and posts
    /// being checked meanwhile must not wait for a hundred of them.
    fn fan_out(&self, channel: &str, frames: Bytes, tickets: &[UsedTicket]) {
        let subs: Vec<(Outbound, LinkRefs)> = match lock(&self.channels).get(channel) {
            Some(h) => h
                .subs
                .values()
                .map(|s| (s.out.clone(), s.refs.clone()))
                .collect(),
            None => return,
        };
        for (out, refs) in subs {
            // Refused: cut off or closing; the connection is ending.
            let _ = out.send(with_tickets(&refs, tickets, &frames));
        }
    }

    /// Closes every member's link (this node's user turned invisible).
    /// Answers how many.
    pub(super) fn drop_all_links(&self) -> usize {
        let mut links = std::collections::HashSet::new();
        for h in lock(&self.channels).values_mut() {
            for (conn, s) in h.subs.drain() {
                s.cancel.cancel();
                links.insert(conn);
            }
        }
        links.len()
    }

    /// A session's tickets were revoked: closes every link admitted under
    /// it. Answers how many.
    pub(super) fn drop_session(&self, session: &str) -> usize {
        let mut links = std::collections::HashSet::new();
        for h in lock(&self.channels).values_mut() {
            h.subs.retain(|conn, s| {
                if s.session != session {
                    return true;
                }
                s.cancel.cancel();
                links.insert(*conn);
                false
            });
        }
        links.len()
    }

    fn unsubscribe(&self, conn: u64) {
        for h in lock(&self.channels).values_mut() {
            h.subs.remove(&conn);
        }
    }
}

/// `frames`, preceded by the `ticket` events this link has not had yet.
fn with_tickets(refs: &LinkRefs, tickets: &[UsedTicket], frames: &Bytes) -> Bytes {
    let mut refs = lock(refs);
    let missing: Vec<&UsedTicket> = tickets
        .iter()
        .filter(|(n, assigned, _)| refs.get(n) != Some(assigned))
        .collect();
    if missing.is_empty() {
        return frames.clone();
    }
    let mut buf = BytesMut::new();
    for (n, assigned, ticket) in missing {
        let event: PeerFrame = Frame::Event(peer::Event::Ticket {
            ticket_ref: *n,
            ticket: ticket.clone(),
        });
        if let Err(e) = event.encode(&mut buf) {
            tracing::error!(error = %e, "could not encode a ticket");
            continue;
        }
        refs.insert(*n, *assigned);
    }
    buf.extend_from_slice(frames);
    buf.freeze()
}

fn encode(frame: &PeerFrame) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    match frame.encode(&mut buf) {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a peer frame");
            None
        }
    }
}

impl Chat {
    /// Makes sure `ch` (owned by this user) is hosted: tasks running,
    /// announced to the server on this link generation, rules known.
    pub(super) async fn host(
        &self,
        ch: &ChannelInfo,
        generation: u64,
        shutdown: &CancellationToken,
    ) {
        let (announce, need_acl) = {
            let mut map = lock(&self.inner.hosting.channels);
            let h = map.entry(ch.name.clone()).or_insert_with(|| {
                let (sequencer, jobs) = mpsc::channel(SEQUENCER_QUEUE);
                let h = Hosted {
                    announced: 0,
                    acl: None,
                    subs: HashMap::new(),
                    backup: Arc::new(Notify::new()),
                    pull: Arc::new(Notify::new()),
                    sequencer,
                    cancel: shutdown.child_token(),
                };
                let (chat, name) = (self.clone(), ch.name.clone());
                if let Err(e) = std::thread::Builder::new()
                    .name(format!("seq-{}", ch.name))
                    .spawn(move || chat.sequencer(name, jobs))
                {
                    // The queue's receiver is gone with the closure: posts
                    // are answered "no longer hosted here" and stay pending.
                    tracing::error!(error = %e, channel = %ch.name, "could not start the sequencer");
                }
                tokio::spawn(self.clone().backup_loop(
                    ch.name.clone(),
                    h.backup.clone(),
                    h.cancel.clone(),
                ));
                tokio::spawn(self.clone().pull_loop(
                    ch.name.clone(),
                    h.pull.clone(),
                    h.cancel.clone(),
                ));
                h
            });
            let announce = h.announced != generation;
            h.announced = generation;
            (announce, h.acl.is_none())
        };
        self.set_via(&ch.name, Via::Hosting);
        // What the user wrote here before hosting was up (or before a
        // restart) is stored now.
        for m in self.outbox_of(&ch.name).await {
            self.host_own(m).await;
        }
        if need_acl {
            self.load_acl(ch).await;
        }
        if announce {
            match self
                .link()
                .request(Request::HostChannel {
                    channel: ch.name.clone(),
                })
                .await
            {
                Ok(_) => {
                    self.log().record(
                        "HOST_ONLINE",
                        self.link()
                            .state()
                            .advertised
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        format!("channel={} hosting here", ch.name),
                    );
                    self.inner.hosting.wake_pull(&ch.name);
                    self.inner.hosting.wake_backup(&ch.name);
                }
                Err(f) => {
                    // Try again on the next refresh.
                    if let Some(h) = lock(&self.inner.hosting.channels).get_mut(&ch.name) {
                        h.announced = 0;
                    }
                    tracing::warn!(channel = %ch.name, reason = %f, "could not announce hosting");
                }
            }
        }
    }

    async fn load_acl(&self, ch: &ChannelInfo) {
        let members = match self
            .link()
            .request(Request::Members {
                channel: ch.name.clone(),
            })
            .await
        {
            Ok(Reply::Members { members, .. }) => members.into_iter().map(|m| m.username).collect(),
            Ok(_) | Err(_) => return,
        };
        if let Some(h) = lock(&self.inner.hosting.channels).get_mut(&ch.name) {
            h.acl = Some(ChannelAcl::new(ch.visibility, ch.allow_visitors, members));
        }
    }

    /// Stores a message of this node's own (the user's, or one pulled from
    /// the server and verified) in a hosted channel if new, fans it out and
    /// schedules its backup. Returns its hosted sequence number. Members'
    /// posts take [`post`] instead.
    async fn host_store(&self, m: Message, arrival: Arrival) -> Result<u64, Failure> {
        let (reply, answer) = oneshot::channel();
        self.queue_job(m, arrival, None, Answer::Local(reply))
            .await?;
        answer
            .await
            .map_err(|_| Failure::unavailable("this channel is no longer hosted here"))?
    }

    /// Hands a message to its channel's sequencer; `answer` hears how it
    /// ended (unless this fails).
    async fn queue_job(
        &self,
        m: Message,
        arrival: Arrival,
        verify_from: Option<SocketAddr>,
        answer: Answer,
    ) -> Result<(), Failure> {
        self.observe(m.ts_ms);
        let queue = lock(&self.inner.hosting.channels)
            .get(&m.channel)
            .map(|h| h.sequencer.clone())
            .ok_or_else(|| {
                Failure::not_found(format!("this node does not host {:?}", m.channel))
            })?;
        queue
            .send(Job {
                message: m,
                arrival,
                verify_from,
                answer,
            })
            .await
            .map_err(|_| Failure::unavailable("this channel is no longer hosted here"))
    }

    /// Numbers, stores and fans out a hosted channel's messages in order:
    /// whatever is queued is written in one transaction, then broadcast in
    /// sequence order, then acknowledged.
    ///
    /// Runs on a thread of its own (one per hosted channel): a post goes
    /// from the member's connection to this thread and on to the members'
    /// writers with no hop through the blocking pool. Ends when the channel
    /// stops being hosted (its queue's senders are gone).
    fn sequencer(self, channel: String, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < SEQUENCER_BATCH {
                match jobs.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let batch = self.refuse_forgeries(batch);
            if batch.is_empty() {
                continue;
            }
            let rows: Vec<(&Message, &Arrival)> =
                batch.iter().map(|j| (&j.message, &j.arrival)).collect();
            let stored = match self.store().host_append_blocking(&channel, &rows) {
                Ok(stored) => stored,
                Err(e) => {
                    let failure = super::internal(e);
                    for job in batch {
                        job.answer.send(&self, &channel, Err(failure.clone()));
                    }
                    continue;
                }
            };
            // One buffer of broadcasts for the whole batch: each member's
            // writer is woken once and writes it in one go.
            let mut frames = BytesMut::new();
            let mut tickets: Vec<UsedTicket> = Vec::new();
            let mut acks = Vec::with_capacity(batch.len());
            for (job, (new, seq)) in batch.into_iter().zip(stored) {
                if new {
                    let mut row = super::MessageRow::arrived(&job.message, &job.arrival);
                    row.host_seq = Some(seq);
                    let (message, ticket) = job.message.into_parts();
                    let (ticket_ref, assigned) = lock(&self.inner.hosting.tickets).number(&ticket);
                    if !tickets.iter().any(|(n, ..)| *n == ticket_ref) {
                        tickets.push((ticket_ref, assigned, ticket));
                    }
                    let event: PeerFrame = Frame::Event(peer::Event::Broadcast {
                        seq,
                        ticket_ref,
                        message,
                    });
                    if let Err(e) = event.encode(&mut frames) {
                        tracing::error!(error = %e, "could not encode a broadcast");
                    }
                    if row.source != Source::Local {
                        self.publish(ChatEvent::Message { message: row });
                    }
                }
                acks.push((job.answer, seq));
            }
            let any_new = !frames.is_empty();
            if any_new {
                self.inner
                    .hosting
                    .fan_out(&channel, frames.freeze(), &tickets);
            }
            for (answer, seq) in acks {
                answer.send(&self, &channel, Ok(seq));
            }
            if any_new {
                self.inner.hosting.wake_backup(&channel);
            }
        }
    }

    /// Verifies the members' posts of a batch in one go; answers and logs
    /// the ones that are not authentic and returns the rest.
    fn refuse_forgeries(&self, batch: Vec<Job>) -> Vec<Job> {
        if batch.iter().all(|j| j.verify_from.is_none()) {
            return batch;
        }
        let verdicts: Vec<Result<(), String>> = match self.verifier() {
            Some(v) => {
                let posts: Vec<&Message> = batch
                    .iter()
                    .filter(|j| j.verify_from.is_some())
                    .map(|j| &j.message)
                    .collect();
                v.verify_all(&posts)
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect()
            }
            None => vec![Err("the server's key is not known yet".into()); batch.len()],
        };
        let mut verdicts = verdicts.into_iter();
        let mut kept = Vec::with_capacity(batch.len());
        for job in batch {
            let Some(addr) = job.verify_from else {
                kept.push(job);
                continue;
            };
            // One verdict per post, in order.
            let verdict = verdicts
                .next()
                .unwrap_or_else(|| Err("it was not checked".into()));
            match verdict {
                Ok(()) => kept.push(job),
                Err(reason) => {
                    self.log_rejected(addr, &job.message, &reason);
                    job.answer.send(
                        self,
                        &job.message.channel,
                        Err(Failure::bad_request(format!(
                            "message is not authentic: {reason}"
                        ))),
                    );
                }
            }
        }
        kept
    }

    /// The user wrote in their own channel: it is stored by its host (this
    /// node) at once.
    pub(super) async fn host_own(&self, m: Message) {
        let (id, channel) = (m.id.to_string(), m.channel.clone());
        let arrival = Arrival {
            source: Source::Local,
            from: None,
            host_seq: None,
            server_seq: None,
        };
        match self.host_store(m, arrival).await {
            Ok(_) => {
                self.set_state(id, &channel, DeliveryState::Stored, None)
                    .await
            }
            // Still pending: stored when hosting (re)starts.
            Err(f) => tracing::info!(reason = %f, "own message waits for hosting"),
        }
    }

    async fn backup_loop(self, channel: String, bell: Arc<Notify>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = bell.notified() => {
                    // Let a burst of posts gather into one batch: one round
                    // trip and one server transaction for many messages.
                    tokio::time::sleep(BACKUP_LINGER).await;
                }
                _ = tokio::time::sleep(BACKUP_EVERY) => {}
            }
            if self.link().state().connected {
                self.backup_once(&channel).await;
            }
        }
    }

    /// Streams everything after the backup cursor to the server, one
    /// acknowledged batch at a time. Resumable: the cursor only moves on
    /// an acknowledgement.
    async fn backup_once(&self, channel: &str) {
        loop {
            let cursor = match self
                .store()
                .cursor(channel.to_owned(), Cursor::Backup)
                .await
            {
                Ok(c) => c,
                Err(e) => return tracing::warn!(error = %e, "backup cursor unreadable"),
            };
            let batch = match self
                .store()
                .hosted_after(channel.to_owned(), cursor, MAX_BATCH as u32)
                .await
            {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => return,
                Err(e) => return tracing::warn!(error = %e, "could not read the backlog"),
            };
            let n = batch_len(batch.iter().map(|s| &s.message));
            let last = batch[n - 1].seq;
            let messages: Vec<Message> = batch.into_iter().take(n).map(|s| s.message).collect();
            match self
                .link()
                .request(Request::Backup {
                    channel: channel.to_owned(),
                    messages,
                })
                .await
            {
                Ok(Reply::BackedUp {
                    stored,
                    server_last_seq,
                    ..
                }) => {
                    self.log().record(
                        "SYNC",
                        self.link().state().advertised.map(|a| a.to_string()).unwrap_or_default(),
                        format!(
                            "direction=host->server channel={channel} through_host_seq={last} new={stored} server_last_seq={server_last_seq}"
                        ),
                    );
                    if let Err(e) = self
                        .store()
                        .set_cursor(channel.to_owned(), Cursor::Backup, last)
                        .await
                    {
                        return tracing::warn!(error = %e, "could not move the backup cursor");
                    }
                    // If the server's numbers right after our pull cursor are
                    // exactly this batch, there is nothing there to pull back.
                    if let Ok(pulled) = self
                        .store()
                        .cursor(channel.to_owned(), Cursor::Server)
                        .await
                    {
                        if server_last_seq == pulled + u64::from(stored) {
                            let _ = self
                                .store()
                                .set_cursor(channel.to_owned(), Cursor::Server, server_last_seq)
                                .await;
                        }
                    }
                    match self
                        .store()
                        .mark_backed_up(channel.to_owned(), cursor, last)
                        .await
                    {
                        Ok(ids) => {
                            for id in ids {
                                self.publish(ChatEvent::MessageState {
                                    id,
                                    channel: channel.to_owned(),
                                    state: DeliveryState::BackedUp,
                                    reason: None,
                                });
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not mark backed-up messages"),
                    }
                }
                Ok(other) => return tracing::warn!(reply = ?other, "unexpected answer to backup"),
                Err(f) => return tracing::info!(reason = %f, "backup paused"),
            }
        }
    }

    async fn pull_loop(self, channel: String, bell: Arc<Notify>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = bell.notified() => {}
                _ = tokio::time::sleep(PULL_EVERY) => {}
            }
            if self.link().state().connected {
                self.pull_once(&channel).await;
            }
        }
    }

    /// Fetches from the server's backup what this host lacks (posted
    /// through the server while it was away) and fans it out.
    async fn pull_once(&self, channel: &str) {
        self.pull_backup(
            channel,
            "host",
            async |chat: &Chat, s: Sequenced, from: &str| {
                if let Err(reason) = chat.verify(&s.message) {
                    chat.log_rejected(from, &s.message, &reason);
                    return true;
                }
                let arrival = Arrival {
                    source: Source::Server,
                    from: Some(from.to_owned()),
                    host_seq: None,
                    server_seq: Some(s.seq),
                };
                chat.host_store(s.message, arrival).await.is_ok()
            },
        )
        .await;
    }

    /// Admits a member to a hosted channel: checks the ticket and the
    /// channel's rules; subscribes the connection to its broadcasts.
    fn admit(
        &self,
        conn: &PeerConn,
        ticket: &SignedTicket,
        channel: &str,
        proof: &str,
    ) -> Result<(String, AccountKind, bool), Failure> {
        if self.is_invisible() {
            // Invisible looks offline: the link just ends.
            conn.cancel.cancel();
            return Err(Failure::unavailable("this node is offline"));
        }
        let presented = crate::p2p::Presented {
            ticket,
            nonce: &conn.nonce,
            purpose: ProofPurpose::PeerConnect { channel },
            proof,
            addr: conn.addr,
        };
        crate::p2p::check_peer_ticket(
            self.server_key(),
            presented,
            self.revoked(),
            self.log(),
            "host",
        )?;
        let user = ticket.ticket.username.clone();
        let kind = ticket.ticket.kind;
        let mut map = lock(&self.inner.hosting.channels);
        let h = map
            .get_mut(channel)
            .ok_or_else(|| Failure::not_found(format!("this node does not host {channel:?}")))?;
        let acl = h.acl.as_ref().ok_or_else(|| {
            Failure::unavailable("this host cannot check membership until the server answers")
        })?;
        let (read, write) = (acl.may_read(&user, kind), acl.may_write(&user, kind));
        if !read {
            return Err(Failure::forbidden(match kind {
                AccountKind::Visitor => format!("{channel:?} does not admit visitors"),
                AccountKind::User => format!("{channel:?} is for its members; join it first"),
            }));
        }
        h.subs.insert(
            conn.id,
            Sub {
                out: conn.out.clone(),
                refs: conn.refs.clone(),
                cancel: conn.cancel.clone(),
                user: user.clone(),
                session: ticket.ticket.session_id.clone(),
                kind,
            },
        );
        Ok((user, kind, write))
    }
}

/// One member's connection to this host.
#[derive(Debug)]
struct PeerConn {
    id: u64,
    addr: SocketAddr,
    out: Outbound,
    refs: LinkRefs,
    cancel: CancellationToken,
    /// The nonce this link's `welcome` carried: `peer_connect` and `watch`
    /// sign it with the ticket's node key.
    nonce: [u8; NONCE_LEN],
    /// channel → (ticket's user, account kind)
    joined: HashMap<String, (String, AccountKind)>,
    /// A `peer_connect` or `watch` was answered: the link is held while
    /// it pings, instead of for [`ADMIT_WITHIN`] in all.
    admitted: bool,
}

/// Serves one member's peer link after its `hello` was accepted.
pub(crate) async fn serve_peer(
    chat: Chat,
    mut reader: FramedRead<OwnedReadHalf, PeerReadCodec>,
    writer: OwnedWriteHalf,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> String {
    let cancel = shutdown.child_token();
    let (out, write_task) = Outbound::start(writer, cancel.clone(), chat.log().clone(), addr);
    let mut conn = PeerConn {
        id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        addr,
        out,
        refs: LinkRefs::default(),
        cancel: cancel.clone(),
        nonce: {
            let mut n = [0u8; NONCE_LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut n);
            n
        },
        joined: HashMap::new(),
        admitted: false,
    };
    let welcome: PeerFrame = Frame::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        agent: crate::AGENT.into(),
        heartbeat_ms: PING_EVERY.as_millis() as u64,
        peer_ttl_ms: LINK_IDLE.as_millis() as u64,
        server_key: chat.link().state().server_key.unwrap_or_default(),
        max_body_len: chat.max_body_len() as u32,
        nonce: hex::encode(conn.nonce),
    });
    let greeted = match encode(&welcome) {
        Some(b) => conn.out.send(b).is_ok(),
        None => false,
    };
    // Until admitted the link has ADMIT_WITHIN in all; then LINK_IDLE
    // from its last frame.
    let idle = tokio::time::sleep(ADMIT_WITHIN);
    tokio::pin!(idle);
    let reason = match greeted {
        true => loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break "closed by host (slow consumer or shutdown)".to_string(),
                _ = &mut idle => {
                    let f = match conn.admitted {
                        true => Failure::bad_request(format!(
                            "no frame for {} s (ping every {} s)",
                            LINK_IDLE.as_secs(),
                            PING_EVERY.as_secs()
                        )),
                        false => Failure::bad_request(format!(
                            "no peer_connect or watch admitted within {} s",
                            ADMIT_WITHIN.as_secs()
                        )),
                    };
                    let reason = format!("idle: {}", f.reason);
                    if let Some(b) = encode(&Frame::Error(f)) {
                        let _ = conn.out.send(b);
                    }
                    break reason;
                }
                n = reader.next() => n,
            };
            if conn.admitted {
                idle.as_mut().reset(tokio::time::Instant::now() + LINK_IDLE);
            }
            match next {
                None => break "closed by member".into(),
                Some(Err(e)) => {
                    let f = match &e {
                        segchat_proto::frame::CodecError::Decode(d) => d.to_failure(),
                        _ => Failure::bad_request(e.to_string()),
                    };
                    if let Some(b) = encode(&Frame::Error(f)) {
                        let _ = conn.out.send(b);
                    }
                    break format!("bad frame: {e}");
                }
                // A whole request whose body could not be read: answered
                // 400, and the link carries on (PROTOCOL.md §1).
                Some(Ok(Err((id, reason)))) => {
                    let result = Err(Failure::bad_request(format!("malformed request: {reason}")));
                    if let Some(b) = encode(&Frame::Response { id, result }) {
                        if conn.out.send(b).is_err() {
                            break "writer gone".into();
                        }
                    }
                }
                Some(Ok(Ok(Frame::Request { id, body }))) => {
                    let result = match handle(&chat, &mut conn, id, body).await {
                        // A queued post: the sequencer answers it.
                        Ok(None) => continue,
                        Ok(Some(reply)) => Ok(reply),
                        Err(f) => Err(f),
                    };
                    if !conn.admitted
                        && matches!(
                            result,
                            Ok(peer::Reply::Connected { .. } | peer::Reply::Watching { .. })
                        )
                    {
                        conn.admitted = true;
                        idle.as_mut().reset(tokio::time::Instant::now() + LINK_IDLE);
                    }
                    let Some(b) = encode(&Frame::Response { id, result }) else {
                        continue;
                    };
                    if conn.out.send(b).is_err() {
                        break "writer gone".into();
                    }
                }
                Some(Ok(Ok(other))) => {
                    let f = Failure::bad_request(format!(
                        "unexpected {:?} frame from a member",
                        other.kind()
                    ));
                    if let Some(b) = encode(&Frame::Error(f)) {
                        let _ = conn.out.send(b);
                    }
                    break "unexpected frame".into();
                }
            }
        },
        false => "could not greet".into(),
    };
    chat.inner.hosting.unsubscribe(conn.id);
    if let Some(streams) = chat.streams() {
        streams.on_peer_closed(conn.id);
    }
    // The last frames (an error, say) still go out; then the write side
    // is shut down.
    conn.out.close();
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(2), write_task).await;
    cancel.cancel();
    reason
}

/// The checks a post gets before it is queued: the member joined the
/// channel and may write, it is their own message, and it fits.
fn check_post(chat: &Chat, conn: &PeerConn, message: &Message) -> Result<(), Failure> {
    let Some((user, kind)) = conn.joined.get(&message.channel) else {
        return Err(Failure::bad_request("peer_connect to the channel first"));
    };
    if !chat.inner.hosting.may_write(&message.channel, user, *kind) {
        return Err(Failure::forbidden(format!(
            "{user} cannot write in {:?}: {}",
            message.channel,
            if *kind == AccountKind::Visitor {
                "visitors only read"
            } else {
                "only members write; join first"
            }
        )));
    }
    if &message.author != user {
        chat.log().record(
            "MESSAGE_REJECTED",
            conn.addr,
            format!(
                "channel={} id={} claimed author={} by={user}",
                message.channel, message.id, message.author
            ),
        );
        return Err(Failure::forbidden("you can only post your own messages"));
    }
    let max = chat.max_body_len();
    if message.body.len() > max {
        return Err(Failure::new(
            Status::TooLarge,
            format!("a message is at most {max} bytes"),
        ));
    }
    Ok(())
}

/// Checks a member's post and queues it for the channel's sequencer,
/// which verifies, stores and fans it out in the channel's order and
/// answers request `id` itself. The read loop goes on with the next
/// request meanwhile (it waits only while the sequencer's queue is full).
async fn post(chat: &Chat, conn: &PeerConn, id: u32, message: Message) -> Result<(), Failure> {
    check_post(chat, conn, &message)?;
    let answer = Answer::Member {
        out: conn.out.clone(),
        id,
        addr: conn.addr,
        post: message.id,
        author: message.author.clone(),
    };
    let arrival = Arrival {
        source: Source::Host,
        from: Some(format!("member {}", conn.addr)),
        host_seq: None,
        server_seq: None,
    };
    chat.queue_job(message, arrival, Some(conn.addr), answer)
        .await
}

/// Serves request `id`; `None`: the answer comes later (a post's, from
/// the sequencer).
async fn handle(
    chat: &Chat,
    conn: &mut PeerConn,
    id: u32,
    body: peer::Request,
) -> Result<Option<peer::Reply>, Failure> {
    match body {
        peer::Request::PeerConnect {
            ticket,
            channel,
            proof,
        } => {
            let (user, kind, can_write) = chat.admit(conn, &ticket, &channel, &proof)?;
            let last_seq = chat
                .store()
                .hosted_last(channel.clone())
                .await
                .map_err(super::internal)?;
            chat.log().record(
                "PEER_CONNECT",
                conn.addr,
                format!(
                    "channel={channel} member={user} kind={} can_write={can_write}",
                    if kind == AccountKind::Visitor {
                        "visitor"
                    } else {
                        "user"
                    }
                ),
            );
            conn.out.name_member(&user);
            conn.joined.insert(channel.clone(), (user, kind));
            Ok(Some(peer::Reply::Connected {
                channel,
                last_seq,
                can_write,
            }))
        }
        peer::Request::Sync {
            channel,
            after_seq,
            limit,
        } => {
            if !conn.joined.contains_key(&channel) {
                return Err(Failure::bad_request("peer_connect to the channel first"));
            }
            let limit = limit.clamp(1, MAX_BATCH as u32);
            let mut messages = chat
                .store()
                .hosted_after(channel.clone(), after_seq, limit + 1)
                .await
                .map_err(super::internal)?;
            let fits = batch_len(messages.iter().map(|s| &s.message)).min(limit as usize);
            let has_more = messages.len() > fits;
            messages.truncate(fits);
            if let Some(last) = messages.last() {
                chat.log().record(
                    "SYNC",
                    conn.addr,
                    format!(
                        "direction=host->member served_by=host channel={channel} after_seq={after_seq} count={} last_seq={}",
                        messages.len(),
                        last.seq
                    ),
                );
            }
            Ok(Some(peer::Reply::Messages {
                channel,
                messages,
                has_more,
            }))
        }
        req @ (peer::Request::Watch { .. }
        | peer::Request::Unwatch { .. }
        | peer::Request::StreamReport { .. }) => match chat.streams() {
            Some(streams) => streams
                .on_peer_request(conn.id, conn.addr, &conn.nonce, conn.out.clone(), req)
                .await
                .map(Some),
            None => Err(Failure::unavailable("this node does not stream yet")),
        },
        peer::Request::Post { message } => post(chat, conn, id, message).await.map(|()| None),
        peer::Request::Ping => Ok(Some(peer::Reply::Pong)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segchat_proto::ticket::Ticket;

    fn ticket(n: u32) -> SignedTicket {
        SignedTicket {
            ticket: Ticket {
                username: format!("user{n}"),
                kind: AccountKind::User,
                session_id: n.to_string(),
                node_key: String::new(),
                issued_at_ms: 0,
                expires_at_ms: 1,
            },
            signature: String::new(),
        }
    }

    /// The ticket events in front of a fan-out buffer, as (number, user).
    fn tickets_sent(bytes: &Bytes) -> Vec<(u16, String)> {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut out = Vec::new();
        while let Ok(Some(frame)) = PeerFrame::decode(&mut buf, 1 << 20) {
            if let Frame::Event(peer::Event::Ticket { ticket_ref, ticket }) = frame {
                out.push((ticket_ref, ticket.ticket.username));
            }
        }
        out
    }

    #[test]
    fn a_ticket_keeps_its_number_until_the_table_is_full() {
        let mut refs = TicketRefs::default();
        let (a, assigned_a) = refs.number(&ticket(1));
        let (b, _) = refs.number(&ticket(2));
        assert_eq!((a, b), (0, 1));
        assert_eq!(refs.number(&ticket(1)), (a, assigned_a));
        for n in 3..=u32::from(peer::TICKET_REFS) {
            refs.number(&ticket(n));
        }
        // Full: the next new ticket reuses number 0 under a new assignment.
        let (reused, assigned) = refs.number(&ticket(99_999));
        assert_eq!(reused, 0);
        assert_ne!(assigned, assigned_a);
        // The ticket that had it gets a number again when it comes back.
        let (again, _) = refs.number(&ticket(1));
        assert_eq!(again, 1);
    }

    #[test]
    fn each_link_is_sent_a_ticket_once_and_again_after_its_number_moved() {
        let mut refs = TicketRefs::default();
        let link = LinkRefs::default();
        let frames = Bytes::from_static(b"");
        let t1 = ticket(1);
        let (n, a) = refs.number(&t1);
        let used = [(n, a, t1.clone())];
        assert_eq!(
            tickets_sent(&with_tickets(&link, &used, &frames)),
            vec![(0, "user1".into())]
        );
        assert!(tickets_sent(&with_tickets(&link, &used, &frames)).is_empty());
        // Another link starts with nothing.
        let other = LinkRefs::default();
        assert_eq!(tickets_sent(&with_tickets(&other, &used, &frames)).len(), 1);
        // Number 0 goes to another ticket: the first link hears of it.
        for n in 2..=u32::from(peer::TICKET_REFS) + 1 {
            refs.number(&ticket(n));
        }
        let t = ticket(u32::from(peer::TICKET_REFS) + 1);
        let (n, a) = refs.number(&t);
        assert_eq!(n, 0);
        assert_eq!(
            tickets_sent(&with_tickets(&link, &[(n, a, t)], &frames)),
            vec![(0, format!("user{}", peer::TICKET_REFS + 1))]
        );
    }
}
