//! One member's peer link to this host: the welcome, admission (ticket,
//! proof of possession, channel rules), liveness, and the member's
//! requests (`peer_connect`, `sync`, `post`, `ping`, streams).

use super::*;

impl Chat {
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
    /// The connection: its key (what the transport authenticated) must be
    /// the key of every ticket presented on it; livestream datagrams go
    /// back on it.
    remote: crate::transport::Target,
    /// `remote`'s key, hex.
    remote_key: String,
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
    mut reader: FramedRead<RecvStream, PeerReadCodec>,
    writer: SendStream,
    addr: SocketAddr,
    remote: crate::transport::Target,
    shutdown: CancellationToken,
) -> String {
    let cancel = shutdown.child_token();
    let (out, write_task) =
        Outbound::start(Box::new(writer), cancel.clone(), chat.log().clone(), addr);
    let mut conn = PeerConn {
        id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        addr,
        remote_key: segchat_net::id_hex(&remote.0.remote_id()),
        remote,
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
        observed_addr: None,
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
                .on_peer_request(
                    crate::stream::PeerLink {
                        id: conn.id,
                        addr: conn.addr,
                        remote: conn.remote.clone(),
                        remote_key: &conn.remote_key,
                        nonce: &conn.nonce,
                        events: conn.out.clone(),
                    },
                    req,
                )
                .await
                .map(Some),
            None => Err(Failure::unavailable("this node does not stream yet")),
        },
        peer::Request::Post { message } => post(chat, conn, id, message).await.map(|()| None),
        peer::Request::Ping => Ok(Some(peer::Reply::Pong)),
    }
}
