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
//! numbers in use, fan-out) and starting to host; `tickets.rs` the numbers
//! broadcasts give authors' tickets; `sequencer.rs` storing and
//! numbering; `backup.rs` backup and pull with the server; `link.rs` chat
//! as a protocol of the peer layer: one member's requests on its link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use segchat_proto::message::{batch_len, Message, Sequenced, MAX_BATCH};
use segchat_proto::peer;
use segchat_proto::ticket::{ProofPurpose, SignedTicket};
use segchat_proto::types::{AccountKind, ChannelInfo};
use segchat_proto::{Failure, Frame, Status};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod backup;
mod link;
mod sequencer;
mod tickets;

use tickets::{with_tickets, LinkRefs, TicketRefs, UsedTicket};

use super::{lock, Chat, ChatEvent, Via};
use crate::acl::ChannelAcl;
use crate::p2p::{encode, Outbound, PeerFrame};
use crate::store::{Arrival, Cursor, DeliveryState, Source};

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

/// The channels this node hosts.
#[derive(Debug, Default)]
pub(super) struct Hosting {
    channels: Mutex<HashMap<String, Hosted>>,
    tickets: Mutex<TicketRefs>,
}

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

    /// The channel's visibility or `allow_visitors` changed
    /// (`channel_updated`): the cached rules follow at once, and every
    /// link whose user may no longer read is cut off, as when a member
    /// leaves. Who may write does not change with these rules.
    pub(super) fn rules_changed(&self, channel: &ChannelInfo) {
        let mut map = lock(&self.channels);
        let Some(h) = map.get_mut(&channel.name) else {
            return;
        };
        let Some(acl) = h.acl.as_mut() else { return };
        acl.rules.visibility = channel.visibility;
        acl.rules.allow_visitors = channel.allow_visitors;
        let acl = acl.clone();
        h.subs.retain(|_, s| {
            let stays = acl.may_read(&s.user, s.kind);
            if !stays {
                s.cancel.cancel();
            }
            stays
        });
    }

    /// The channel was deleted: stops hosting it (its sequencer, backup
    /// and pull end) and closes every member's link to it. False if it
    /// was not hosted here.
    pub(super) fn stop(&self, channel: &str) -> bool {
        let Some(h) = lock(&self.channels).remove(channel) else {
            return false;
        };
        h.cancel.cancel();
        for s in h.subs.values() {
            s.cancel.cancel();
        }
        true
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
            match self.link().host_channel(&ch.name).await {
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
        let members = match self.link().members(&ch.name).await {
            Ok(members) => members.into_iter().map(|m| m.username).collect(),
            Err(_) => return,
        };
        if let Some(h) = lock(&self.inner.hosting.channels).get_mut(&ch.name) {
            h.acl = Some(ChannelAcl::new(ch.visibility, ch.allow_visitors, members));
        }
    }
}
