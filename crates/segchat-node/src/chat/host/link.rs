//! Chat as a protocol of the peer layer ([`crate::p2p`]): one member's
//! requests on its peer link to this host — `peer_connect` (admission:
//! ticket, proof of possession over the link's nonce, channel rules),
//! `sync` and `post`. The welcome, liveness and `ping` are the link's own.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::*;
use crate::p2p::{self, PeerLink, PeerProtocol, ProtocolLink};
use segchat_proto::edits::{allowed, check_shape, RefKind};

impl PeerProtocol for Chat {
    fn serves(&self, request: &peer::Request) -> bool {
        matches!(
            request,
            peer::Request::PeerConnect { .. }
                | peer::Request::Sync { .. }
                | peer::Request::Post { .. }
        )
    }

    fn open(&self, _link: &PeerLink) -> Box<dyn ProtocolLink> {
        Box::new(MemberLink {
            chat: self.clone(),
            refs: LinkRefs::default(),
            joined: HashMap::new(),
        })
    }
}

/// Chat's side of one member's link to this host.
#[derive(Debug)]
struct MemberLink {
    chat: Chat,
    /// Which ticket each ticket number names on this link.
    refs: LinkRefs,
    /// channel → (ticket's user, account kind)
    joined: HashMap<String, (String, AccountKind)>,
}

impl ProtocolLink for MemberLink {
    fn request<'a>(
        &'a mut self,
        link: &'a PeerLink,
        id: u32,
        request: peer::Request,
    ) -> BoxFuture<'a, Result<p2p::Answer, Failure>> {
        handle(self, link, id, request).boxed()
    }

    fn closed(&mut self, link: &PeerLink) {
        self.chat.inner.hosting.unsubscribe(link.id);
    }
}

impl Chat {
    /// Admits a member to a hosted channel: checks the ticket and the
    /// channel's rules; subscribes the connection to its broadcasts.
    fn admit(
        &self,
        conn: &PeerLink,
        refs: &LinkRefs,
        ticket: &SignedTicket,
        channel: &str,
        proof: &str,
    ) -> Result<(String, AccountKind, bool), Failure> {
        if self.is_invisible() {
            // Invisible looks offline: the link just ends.
            conn.cancel.cancel();
            return Err(Failure::unavailable("this node is offline"));
        }
        let presented = crate::admission::Presented {
            ticket,
            nonce: &conn.nonce,
            purpose: ProofPurpose::PeerConnect { channel },
            proof,
            addr: conn.addr,
            transport_key: &conn.remote_key,
        };
        crate::admission::check_peer_ticket(
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
                refs: refs.clone(),
                cancel: conn.cancel.clone(),
                user: user.clone(),
                session: ticket.ticket.session_id.clone(),
                kind,
            },
        );
        Ok((user, kind, write))
    }
}

/// The checks a post gets before it is queued: the member joined the
/// channel and may write, it is their own message, and it fits.
fn check_post(m: &MemberLink, conn: &PeerLink, message: &Message) -> Result<(), Failure> {
    let chat = &m.chat;
    let Some((user, kind)) = m.joined.get(&message.channel) else {
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
    let max = chat.max_file_size();
    if let Some(file) = message.file.as_ref().filter(|f| f.size > max) {
        chat.log().record(
            "MESSAGE_REJECTED",
            conn.addr,
            format!(
                "channel={} id={} author={} reason=file-too-large size={} max={max}",
                message.channel, message.id, message.author, file.size
            ),
        );
        return Err(Failure::new(
            Status::TooLarge,
            format!(
                "files shared in {} are at most {max} bytes (its host's limit); {} is {}",
                message.channel, file.name, file.size
            ),
        ));
    }
    Ok(())
}

/// Refuses a post whose shape does not fit its kind, and an edit,
/// deletion or reaction its author may not make on a message this host
/// holds (one pointing at a message not here yet is kept; every store
/// applies it only if the rules allow, see `segchat_proto::edits`). The
/// channel's owner is this node's user.
async fn check_action(chat: &Chat, conn: &PeerLink, message: &Message) -> Result<(), Failure> {
    check_shape(message).map_err(|e| Failure::bad_request(e.to_string()))?;
    let Some(r) = message.re.filter(|r| RefKind::is_action(Some(r.kind))) else {
        return Ok(());
    };
    let Some(t) = chat.shown(r.id.to_string()).await else {
        return Ok(());
    };
    let owner = chat.session().is_some_and(|s| s.username == message.author);
    if allowed(
        r.kind,
        &message.author,
        &message.channel,
        t.as_target(),
        owner,
    ) {
        return Ok(());
    }
    chat.log().record(
        "MESSAGE_REJECTED",
        conn.addr,
        format!(
            "channel={} id={} author={} reason=may-not-{} target={}",
            message.channel,
            message.id,
            message.author,
            r.kind.as_str(),
            r.id
        ),
    );
    Err(Failure::forbidden(format!(
        "{} may not {} message {} (only its author edits; its author or the channel's \
         owner deletes)",
        message.author,
        r.kind.as_str(),
        r.id
    )))
}

/// Checks a member's post and queues it for the channel's sequencer,
/// which verifies, stores and fans it out in the channel's order and
/// answers request `id` itself. The read loop goes on with the next
/// request meanwhile (it waits only while the sequencer's queue is full).
async fn post(m: &MemberLink, conn: &PeerLink, id: u32, message: Message) -> Result<(), Failure> {
    check_post(m, conn, &message)?;
    let chat = &m.chat;
    check_action(chat, conn, &message).await?;
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
    m: &mut MemberLink,
    conn: &PeerLink,
    id: u32,
    body: peer::Request,
) -> Result<p2p::Answer, Failure> {
    let chat = &m.chat.clone();
    match body {
        peer::Request::PeerConnect {
            ticket,
            channel,
            proof,
        } => {
            let (user, kind, can_write) = chat.admit(conn, &m.refs, &ticket, &channel, &proof)?;
            let last_seq = chat
                .store()
                .hosted_last(channel.clone())
                .await
                .map_err(super::super::internal)?;
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
            m.joined.insert(channel.clone(), (user, kind));
            Ok(p2p::Answer::Admitted(peer::Reply::Connected {
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
            if !m.joined.contains_key(&channel) {
                return Err(Failure::bad_request("peer_connect to the channel first"));
            }
            let limit = limit.clamp(1, MAX_BATCH as u32);
            let mut messages = chat
                .store()
                .hosted_after(channel.clone(), after_seq, limit + 1)
                .await
                .map_err(super::super::internal)?;
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
            Ok(p2p::Answer::Reply(peer::Reply::Messages {
                channel,
                messages,
                has_more,
            }))
        }
        peer::Request::Post { message } => post(m, conn, id, message)
            .await
            .map(|()| p2p::Answer::Later),
        // The router hands chat only what `serves` claimed.
        _ => Err(Failure::bad_request("not a chat request")),
    }
}
