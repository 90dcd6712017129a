//! One handler per tracker operation, grouped by aggregate. Each takes the
//! shared server state and the connection's context and returns the reply
//! or a [`Failure`]; [`handle`] dispatches.

mod channels;
mod devices;
mod files;
mod friends;
mod mailbox;
mod messages;
mod peers;
mod session;
mod streams;

pub(crate) use messages::announce_host;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use segchat_log::SystemLog;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{AccountKind, Presence};
use segchat_proto::{Failure, Status};

use crate::auth::{Hasher, LoginLimiter};
use crate::config::ServerConfig;
use crate::hub::{ConnId, Hub, PresenceChange, Principal};
use crate::names::TakenNames;
use crate::store::{Store, StoreError, UserRecord};

pub(crate) use session::{end_session, sign_out_conn};
pub(crate) use streams::end_all as end_streams;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hub: Hub,
    pub(crate) limiter: LoginLimiter,
    /// argon2id, a few at a time.
    pub(crate) hasher: Hasher,
    /// Registered names, for refusing look-alike visitor names.
    pub(crate) taken_names: TakenNames,
    pub(crate) log: SystemLog,
    /// Signs tickets.
    pub(crate) key: ed25519_dalek::SigningKey,
    /// Checks messages against this server's own key.
    pub(crate) verifier: segchat_proto::verify::Verifier,
    /// The link to the other instances, if any.
    pub(crate) cluster: Option<crate::cluster::Handle>,
    /// Whom to tell of each user's presence.
    pub(crate) mates: crate::mates::Mates,
    /// The backup copy of files.
    pub(crate) files: Arc<crate::files::ServerFiles>,
}

/// One connection's view of itself.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) id: ConnId,
    pub(crate) addr: SocketAddr,
    /// The node key the connection authenticated with (hex).
    pub(crate) node_id: Option<String>,
    pub(crate) principal: Option<Principal>,
    /// What is left of its allowance of changes others are told of.
    changes: governor::DefaultDirectRateLimiter,
    /// What is left of its allowance of `reach` requests.
    reaches: governor::DefaultDirectRateLimiter,
}

impl ConnCtx {
    /// A connection's context, signed out, with a full allowance of
    /// changes (`config.changes_*`).
    pub(crate) fn new(id: ConnId, addr: SocketAddr, config: &ServerConfig) -> ConnCtx {
        let per_second = NonZeroU32::new(config.changes_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.changes_burst).unwrap_or(NonZeroU32::MIN);
        ConnCtx {
            id,
            addr,
            node_id: None,
            principal: None,
            changes: governor::RateLimiter::direct(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
            reaches: governor::RateLimiter::direct(peers::reach_quota()),
        }
    }
}

/// Whether others are told of what `request` changes (or it spends what
/// another user holds: `send_dm` room in their mailbox; `claim_keys`
/// spends in `devices.rs`, only when it takes a key), so
/// that it counts against the connection's allowance of changes.
fn told_to_others(request: &Request) -> bool {
    matches!(
        request,
        Request::SetStatus { .. }
            | Request::SetActivity { .. }
            | Request::JoinChannel { .. }
            | Request::LeaveChannel { .. }
            | Request::Invite { .. }
            | Request::CreateChannel { .. }
            | Request::UpdateChannel { .. }
            | Request::DeleteChannel { .. }
            | Request::Relate { .. }
            | Request::SendDm { .. }
    )
}

/// Takes one change from the connection's allowance, or says when there
/// will be one.
fn spend_change(shared: &Shared, ctx: &ConnCtx, op: &str) -> Result<(), Failure> {
    use governor::clock::{Clock, DefaultClock};
    let Err(not_until) = ctx.changes.check() else {
        return Ok(());
    };
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    shared.log.record(
        "CHANGES_THROTTLED",
        ctx.addr,
        format!("conn={} op={op} retry_in_ms={}", ctx.id, wait.as_millis()),
    );
    Err(Failure::new(
        Status::RateLimited,
        format!(
            "too many changes (at most {} at once, then {} a second); try again in {} ms",
            shared.config.changes_burst,
            shared.config.changes_per_second,
            wait.as_millis().max(1)
        ),
    ))
}

/// Runs one request.
pub(crate) async fn handle(
    shared: &Shared,
    ctx: &mut ConnCtx,
    request: Request,
) -> Result<Reply, Failure> {
    if told_to_others(&request) {
        spend_change(shared, ctx, request.op_name())?;
    }
    match request {
        Request::Register { username, password } => {
            session::register(shared, ctx, username, password).await
        }
        Request::Login { username, password } => {
            session::login(shared, ctx, username, password).await
        }
        Request::Visit { display_name } => session::visit(shared, ctx, display_name).await,
        Request::Resume { token } => session::resume(shared, ctx, token).await,
        Request::Logout => session::logout(shared, ctx).await,
        Request::Whoami => session::whoami(shared, ctx),
        Request::SetStatus { status } => session::set_status(shared, ctx, status).await,
        Request::SetActivity { idle } => session::set_activity(shared, ctx, idle).await,
        Request::SubmitInfo { p2p_addr, status } => {
            peers::submit_info(shared, ctx, p2p_addr, status).await
        }
        Request::Heartbeat => Ok(peers::heartbeat(shared, ctx)),
        Request::GetList { channel, users } => peers::get_list(shared, ctx, channel, users).await,
        Request::CreateChannel {
            name,
            visibility,
            allow_visitors,
        } => channels::create(shared, ctx, name, visibility, allow_visitors).await,
        Request::ListChannels => channels::list(shared, ctx).await,
        Request::JoinChannel { channel } => channels::join(shared, ctx, channel).await,
        Request::LeaveChannel { channel } => channels::leave(shared, ctx, channel).await,
        Request::Members { channel } => channels::members(shared, ctx, channel).await,
        Request::Invite { channel, username } => {
            channels::invite(shared, ctx, channel, username).await
        }
        Request::UpdateChannel {
            channel,
            topic,
            title,
            visibility,
            allow_visitors,
        } => {
            let change = crate::store::ChannelUpdate {
                title,
                topic,
                visibility,
                allow_visitors,
            };
            channels::update(shared, ctx, channel, change).await
        }
        Request::DeleteChannel { channel } => channels::delete(shared, ctx, channel).await,
        Request::GetTicket { node_key } => messages::get_ticket(shared, ctx, node_key),
        Request::HostChannel { channel } => messages::host_channel(shared, ctx, channel).await,
        Request::Backup { channel, messages } => {
            messages::backup(shared, ctx, channel, messages).await
        }
        Request::PostMessage { message } => messages::post_message(shared, ctx, *message).await,
        Request::History {
            channel,
            after_seq,
            limit,
        } => messages::history(shared, ctx, channel, after_seq, limit).await,
        Request::StartStream {
            channel,
            width,
            height,
            fps,
            codec,
        } => streams::start(shared, ctx, channel, width, height, fps, codec).await,
        Request::StopStream { stream_id } => streams::stop(shared, ctx, stream_id).await,
        Request::ListStreams { channel } => streams::list(shared, ctx, channel).await,
        Request::Relations => friends::list(shared, ctx).await,
        Request::Relate { username, action } => {
            friends::relate(shared, ctx, username, action).await
        }
        Request::PublishKeys {
            device,
            one_time_keys,
        } => devices::publish(shared, ctx, device, one_time_keys).await,
        Request::ClaimKeys {
            username,
            have_sessions,
        } => devices::claim(shared, ctx, username, have_sessions).await,
        Request::SendDm { envelopes } => mailbox::send(shared, ctx, envelopes).await,
        Request::FetchDms { after_seq, limit } => {
            mailbox::fetch(shared, ctx, after_seq, limit).await
        }
        Request::AckDms { up_to_seq } => mailbox::ack(shared, ctx, up_to_seq).await,
        Request::FileBackup { channel, hash, dm } => {
            files::backup(shared, ctx, channel, hash, dm).await
        }
        Request::FileSource { channel, hash } => files::source(shared, ctx, channel, hash).await,
        Request::Reach { node_id } => peers::reach(shared, ctx, node_id),
    }
}

/// The principal, or UNAUTHORIZED.
fn signed_in(ctx: &ConnCtx) -> Result<&Principal, Failure> {
    ctx.principal
        .as_ref()
        .ok_or_else(|| Failure::unauthorized("sign in first (register, login, visit or resume)"))
}

/// The principal and their user id, or UNAUTHORIZED / FORBIDDEN for
/// visitors, with `what` saying what they tried.
fn registered<'a>(ctx: &'a ConnCtx, what: &str) -> Result<(&'a Principal, i64), Failure> {
    let p = signed_in(ctx)?;
    match (p.kind, p.user_id) {
        (AccountKind::User, Some(id)) => Ok((p, id)),
        _ => Err(Failure::forbidden(format!(
            "visitors cannot {what}; register an account to do that"
        ))),
    }
}

/// The account named `username` (any case), or NOT_FOUND.
async fn user_named(shared: &Shared, ctx: &ConnCtx, username: &str) -> Result<UserRecord, Failure> {
    shared
        .store
        .user_by_name(username)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .ok_or_else(|| no_user(username))
}

/// The answer for a name that is nobody's (or, to its asker, a blocker's).
fn no_user(username: &str) -> Failure {
    Failure::not_found(format!("no user named {username:?}"))
}

/// Maps a store failure to what a client may see; details go to the log.
fn store_failure(shared: &Shared, ctx: &ConnCtx, e: StoreError) -> Failure {
    tracing::error!(error = %e, conn = ctx.id, "store operation failed");
    shared
        .log
        .record("SERVER_ERROR", ctx.addr, format!("store: {e}"));
    Failure::server_error()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Tells a user's channel mates (as others see it) and the user's own
/// connections (as they see it) on this instance about a presence change,
/// and logs it. Every instance does this for the changes it sees (presence
/// counts every instance's connections, see `hub`), so each connection
/// hears of a change once.
pub(crate) async fn announce_presence(
    shared: &Shared,
    change: PresenceChange,
    source: impl std::fmt::Display,
) {
    let PresenceChange {
        user_id,
        username,
        before,
        after,
    } = change;
    shared.log.record(
        "PRESENCE_CHANGED",
        source,
        format!(
            "user={username} from={} to={}",
            before.as_str(),
            after.as_str()
        ),
    );
    shared.hub.push_here_to_users(
        &[user_id],
        &Event::Presence {
            username: username.clone(),
            status: after,
        },
    );
    let (seen_before, seen_after) = (before.as_seen_by_others(), after.as_seen_by_others());
    if seen_before == seen_after {
        return;
    }
    // Going invisible hides the user's hosted channels' address too.
    for channel in shared.hub.hosted_by(user_id) {
        if let Ok(Some(ch)) = shared.store.channel_by_name(&channel).await {
            messages::announce_host(shared, &ch).await;
        }
    }
    match shared.mates.of(&*shared.store, user_id).await {
        Ok(mates) => shared.hub.push_here_to_users(
            &mates,
            &Event::Presence {
                username,
                status: seen_after,
            },
        ),
        Err(e) => tracing::error!(error = %e, "could not find whom to tell about presence"),
    }
}

/// Somebody joined or left a channel, or one was deleted: whom to tell of
/// presence changes is asked again, here and on the other instances.
pub(crate) fn memberships_changed(shared: &Shared) {
    shared.mates.changed();
    crate::cluster::memberships_changed(shared);
}

/// Presence as `asker` may see `user_id`'s.
pub(crate) fn presence_for(shared: &Shared, asker: &Principal, user_id: i64) -> Presence {
    let p = shared.hub.presence(user_id);
    if asker.user_id == Some(user_id) {
        p
    } else {
        p.as_seen_by_others()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allowance_of_changes_is_small_beside_a_connection() {
        // Every connection carries one: it must stay a few words.
        let size = std::mem::size_of::<governor::DefaultDirectRateLimiter>();
        assert!(size <= 96, "{size} bytes");
    }
}
