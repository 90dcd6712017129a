//! Hosting: the channels this node's user owns live here. Members connect
//! over the peer link; the host checks their server-signed ticket with no
//! round trip, applies the channel's rules, stores and numbers every post,
//! and fans it out to every connected member through a bounded queue each
//! (a member whose queue fills is cut off and resyncs; it never stalls the
//! others). A backup task streams what the server lacks in acknowledged
//! batches; a pull task fetches what members posted through the server while
//! this node was away.
//!
//! Layout: `mod.rs` the hosting state (channels, subscribers, ticket
//! numbers, fan-out) and starting to host; `sequencer.rs` storing and
//! numbering; `backup.rs` backup and pull with the server; `link.rs` one
//! member's peer link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use segchat_net::{RecvStream, SendStream};
use segchat_proto::message::{batch_len, Message, Sequenced, MAX_BATCH};
use segchat_proto::peer;
use segchat_proto::ticket::{ProofPurpose, SignedTicket, NONCE_LEN};
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{AccountKind, ChannelInfo};
use segchat_proto::{Failure, Frame, FrameCodec, Status, Welcome, PROTOCOL_VERSION};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod backup;
mod link;
mod sequencer;

pub(crate) use link::serve_peer;

use super::outbound::Outbound;
use super::{lock, Chat, ChatEvent, Via};
use crate::acl::ChannelAcl;
use crate::store::{Arrival, Cursor, DeliveryState, Source};
use bytes::BytesMut as ReadBuf;
use segchat_proto::frame::{CodecError, DecodeError};
use tokio_util::codec::Decoder;

/// The peer link's codec and frames.
pub(crate) type PeerCodec = FrameCodec<peer::Request, peer::Reply, peer::Event>;
pub(crate) type PeerFrame = Frame<peer::Request, peer::Reply, peer::Event>;

/// The peer link's reader: like [`PeerCodec`], but a whole `request`
/// frame whose body cannot be read comes out as `Err((id, reason))`
/// instead of ending the stream, so the host answers it with 400 and the
/// link carries on.
#[derive(Debug, Default)]
pub(crate) struct PeerReadCodec(PeerCodec);

impl PeerReadCodec {
    pub(crate) fn new(max_len: usize) -> Self {
        PeerReadCodec(PeerCodec::new(max_len))
    }
}

/// What [`PeerReadCodec`] reads: a frame, or a request it could not.
pub(crate) type PeerRead = Result<PeerFrame, (u32, String)>;

impl Decoder for PeerReadCodec {
    type Item = PeerRead;
    type Error = CodecError;

    fn decode(&mut self, src: &mut ReadBuf) -> Result<Option<PeerRead>, CodecError> {
        match self.0.decode(src) {
            Ok(frame) => Ok(frame.map(Ok)),
            Err(CodecError::Decode(DecodeError::BadRequest { id, reason })) => {
                Ok(Some(Err((id, reason))))
            }
            Err(e) => Err(e),
        }
    }

    fn decode_eof(&mut self, src: &mut ReadBuf) -> Result<Option<PeerRead>, CodecError> {
        match self.0.decode_eof(src) {
            Ok(frame) => Ok(frame.map(Ok)),
            Err(CodecError::Decode(DecodeError::BadRequest { id, reason })) => {
                Ok(Some(Err((id, reason))))
            }
            Err(e) => Err(e),
        }
    }
}

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
