//! get_ticket, host_channel, backup, post_message, history: the server's
//! half of hosted channels — tickets, the durable backup, the fallback
//! while a host is offline, and new-message notices.

use segchat_proto::access::Viewer;
use segchat_proto::edits::{allowed, check_shape, RefKind, Target};
use segchat_proto::message::{Message, MAX_BATCH};
use segchat_proto::ticket::{decode_key, Ticket};
use segchat_proto::tracker::{Event, Reply};
use segchat_proto::types::Role;
use segchat_proto::{Failure, Status};

use super::channels::{load_channel, member_ids, viewer_of};
use super::{now_ms, registered, signed_in, store_failure, ConnCtx, Shared};
use crate::store::{ChannelRecord, MessageSource};

pub(super) fn get_ticket(
    shared: &Shared,
    ctx: &ConnCtx,
    node_key: String,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    decode_key(&node_key).map_err(|_| {
        Failure::bad_request("node_key must be an ed25519 public key as 64 hex characters")
    })?;
    let now = now_ms();
    let ticket = Ticket {
        username: p.username.clone(),
        kind: p.kind,
        session_id: p.session_id.clone(),
        node_key,
        issued_at_ms: now,
        expires_at_ms: now + shared.config.ticket_lifetime.as_millis() as u64,
    }
    .sign(&shared.key)
    .map_err(|e| Failure::bad_request(e.to_string()))?;
    shared.log.record(
        "TICKET_ISSUED",
        ctx.addr,
        format!("user={} session={}", p.username, p.session_id),
    );
    Ok(Reply::Ticket(ticket))
}

pub(super) async fn host_channel(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: String,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "host channels")?;
    let ch = load_channel(shared, ctx, &channel).await?;
    if ch.owner_id != uid {
        return Err(Failure::forbidden(format!(
            "only the owner's node hosts {channel:?}"
        )));
    }
    let addr = shared
        .hub
        .set_host(&ch.name, ctx.id, uid)
        .ok_or_else(|| Failure::bad_request("submit_info first: a host needs a P2P address"))?;
    shared.log.record(
        "HOST_ONLINE",
        ctx.addr,
        format!("channel={} host={} p2p={addr}", ch.name, p.username),
    );
    announce_host(shared, &ch).await;
    let server_last_seq = shared
        .store
        .last_seq(ch.id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    Ok(Reply::Hosting {
        channel: ch.name,
        server_last_seq,
    })
}

/// Tells a channel's members on this instance where its host is now (or
/// that it is gone). Every instance tells its own members when its view
/// of the host changes (hosts are replicated, see `hub`).
pub(crate) async fn announce_host(shared: &Shared, ch: &ChannelRecord) {
    let host = shared.hub.host_of(&ch.name);
    match shared
        .store
        .members(ch.id)
        .await
        .map(|m| m.into_iter().map(|m| m.user_id).collect::<Vec<_>>())
    {
        Ok(members) => shared.hub.push_here_to_users(
            &members,
            &Event::HostStatus {
                channel: ch.name.clone(),
                host,
            },
        ),
        Err(e) => tracing::warn!(reason = %e, "could not announce host status"),
    }
}

/// Checks a batch of messages for `ch`: size, channel, signatures.
fn check_messages(
    shared: &Shared,
    ctx: &ConnCtx,
    ch: &ChannelRecord,
    messages: &[Message],
) -> Result<(), Failure> {
    let refs: Vec<&Message> = messages.iter().collect();
    let verdicts = shared.verifier.verify_all(&refs);
    for (m, verdict) in messages.iter().zip(verdicts) {
        if m.channel != ch.name {
            return Err(Failure::bad_request(format!(
                "message {} belongs to {:?}, not {:?}",
                m.id, m.channel, ch.name
            )));
        }
        if m.body.len() > shared.config.max_body_len {
            return Err(Failure::new(
                Status::TooLarge,
                format!(
                    "message {} has a {}-byte body; the limit is {} bytes",
                    m.id,
                    m.body.len(),
                    shared.config.max_body_len
                ),
            ));
        }
        if let Err(e) = check_shape(m) {
            return Err(Failure::bad_request(format!("message {}: {e}", m.id)));
        }
        if let Err(e) = verdict {
            shared.log.record(
                "MESSAGE_REJECTED",
                ctx.addr,
                format!(
                    "channel={} id={} author={} reason={e}",
                    ch.name, m.id, m.author
                ),
            );
            return Err(Failure::bad_request(format!(
                "message {} is not authentic ({e}); nothing was stored",
                m.id
            )));
        }
    }
    Ok(())
}

pub(super) async fn backup(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: String,
    messages: Vec<Message>,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "back up channels")?;
    let ch = load_channel(shared, ctx, &channel).await?;
    if ch.owner_id != uid {
        return Err(Failure::forbidden(format!(
            "only the host of {channel:?} backs it up"
        )));
    }
    if messages.len() > MAX_BATCH {
        return Err(Failure::bad_request(format!(
            "at most {MAX_BATCH} messages per backup"
        )));
    }
    check_messages(shared, ctx, &ch, &messages)?;
    let inserted = shared
        .store
        .insert_messages(ch.id, &messages, MessageSource::Host, now_ms())
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "SYNC",
        ctx.addr,
        format!(
            "direction=host->server channel={} host={} received={} new={} server_last_seq={}",
            ch.name,
            p.username,
            messages.len(),
            inserted.new,
            inserted.last_seq
        ),
    );
    if let (Some(last), true) = (messages.last(), inserted.new > 0) {
        notify(shared, ctx, &ch, last, inserted.last_seq, inserted.new).await;
    }
    Ok(Reply::BackedUp {
        channel: ch.name,
        stored: inserted.new,
        server_last_seq: inserted.last_seq,
    })
}

pub(super) async fn post_message(
    shared: &Shared,
    ctx: &ConnCtx,
    message: Message,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let ch = load_channel(shared, ctx, &message.channel).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    if !ch.rules().can_see(viewer) {
        return Err(Failure::not_found(format!(
            "no channel named {:?}",
            message.channel
        )));
    }
    if !ch.rules().can_write(viewer) {
        return Err(Failure::forbidden(format!(
            "{} cannot write in {:?}: {}",
            p.username,
            ch.name,
            if p.user_id.is_none() {
                "visitors only read"
            } else {
                "only members write; join first"
            }
        )));
    }
    if message.author != p.username {
        shared.log.record(
            "MESSAGE_REJECTED",
            ctx.addr,
            format!(
                "channel={} id={} claimed author={} by={}",
                ch.name, message.id, message.author, p.username
            ),
        );
        return Err(Failure::forbidden("you can only post your own messages"));
    }
    check_messages(shared, ctx, &ch, std::slice::from_ref(&message))?;
    check_action(shared, ctx, &ch, viewer, &message).await?;
    let inserted = shared
        .store
        .insert_messages(
            ch.id,
            std::slice::from_ref(&message),
            MessageSource::Member,
            now_ms(),
        )
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let seq = inserted.seqs.first().copied().unwrap_or(inserted.last_seq);
    shared.log.record(
        "MESSAGE_SENT",
        ctx.addr,
        format!(
            "via=server channel={} id={} author={} seq={seq} new={}",
            ch.name, message.id, message.author, inserted.new
        ),
    );
    if inserted.new > 0 {
        notify(shared, ctx, &ch, &message, seq, 1).await;
    }
    Ok(Reply::Stored {
        id: message.id,
        seq,
    })
}

/// Refuses an edit, deletion or reaction its sender may not make, when the
/// backup holds what it points at (one that arrives before its target is
/// kept, and every store applies it only if the rules allow; see
/// `segchat_proto::edits`).
async fn check_action(
    shared: &Shared,
    ctx: &ConnCtx,
    ch: &ChannelRecord,
    viewer: Viewer,
    m: &Message,
) -> Result<(), Failure> {
    let Some(r) = m.re.filter(|r| RefKind::is_action(Some(r.kind))) else {
        return Ok(());
    };
    let Some(t) = shared
        .store
        .message_target(ch.id, r.id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
    else {
        return Ok(());
    };
    let target = Target {
        channel: &ch.name,
        author: &t.author,
        kind: t.kind,
    };
    let moderates = matches!(viewer.role, Some(Role::Owner | Role::Moderator));
    if allowed(r.kind, &m.author, &m.channel, target, moderates) {
        return Ok(());
    }
    shared.log.record(
        "MESSAGE_REJECTED",
        ctx.addr,
        format!(
            "channel={} id={} author={} reason=may-not-{} target={}",
            ch.name,
            m.id,
            m.author,
            r.kind.as_str(),
            r.id
        ),
    );
    Err(Failure::forbidden(format!(
        "{} may not {} message {} (only its author edits; its author, the channel's owner \
         or a moderator deletes; actions act on messages)",
        m.author,
        r.kind.as_str(),
        r.id
    )))
}

/// Pushes a new-message notice to every member of the channel.
async fn notify(
    shared: &Shared,
    ctx: &ConnCtx,
    ch: &ChannelRecord,
    last: &Message,
    seq: u64,
    count: u32,
) {
    let members = match member_ids(shared, ctx, ch.id).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(reason = %e, "could not notify members");
            return;
        }
    };
    // Not to the connection the messages came from: it has them.
    shared.hub.push_to_users_except(
        &members,
        Some(ctx.id),
        &Event::MessageNotice {
            channel: ch.name.clone(),
            seq,
            id: last.id,
            author: last.author.clone(),
            count,
        },
    );
    shared.log.record(
        "NOTIFICATION_SENT",
        ctx.addr,
        format!(
            "served_by=server channel={} seq={seq} count={count} members={}",
            ch.name,
            members.len()
        ),
    );
}

pub(super) async fn history(
    shared: &Shared,
    ctx: &ConnCtx,
    channel: String,
    after_seq: u64,
    limit: u32,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let ch = load_channel(shared, ctx, &channel).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    if !ch.rules().can_see(viewer) {
        return Err(Failure::not_found(format!("no channel named {channel:?}")));
    }
    if !ch.rules().can_read(viewer) {
        return Err(Failure::forbidden(format!(
            "only members of {channel:?} read it"
        )));
    }
    let limit = limit.clamp(1, MAX_BATCH as u32);
    let mut messages = shared
        .store
        .messages_after(ch.id, after_seq, limit + 1)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let fits = segchat_proto::message::batch_len(messages.iter().map(|s| &s.message));
    let has_more = messages.len() > fits.min(limit as usize);
    messages.truncate(fits.min(limit as usize));
    if !messages.is_empty() {
        shared.log.record(
            "SYNC",
            ctx.addr,
            format!(
                "direction=server->node served_by=server channel={} to={} after_seq={after_seq} count={} last_seq={}",
                ch.name,
                p.username,
                messages.len(),
                messages.last().map_or(after_seq, |m| m.seq)
            ),
        );
    }
    Ok(Reply::Messages {
        channel: ch.name,
        messages,
        has_more,
    })
}
