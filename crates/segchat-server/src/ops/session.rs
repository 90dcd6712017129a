//! register, login, visit, resume, logout, whoami, set_status,
//! set_activity.

use std::net::SocketAddr;

use segchat_proto::tracker::{Event, Reply};
use segchat_proto::types::{
    validate_display_name, validate_username, AccountKind, Presence, SessionInfo, MAX_PASSWORD_LEN,
    MIN_PASSWORD_LEN,
};
use segchat_proto::{Failure, Status};

use super::{
    announce_presence, now, now_ms, registered, signed_in, store_failure, ConnCtx, Shared,
};
use crate::auth::{random_hex, token_hash, HashError};
use crate::hub::{ConnId, Principal};
use crate::store::{SessionRecord, StoreError};

const USER_SESSION_MS: u64 = 30 * 24 * 3600 * 1000;
const VISITOR_SESSION_MS: u64 = 24 * 3600 * 1000;
/// The one answer to every failed sign-in: never which half was wrong.
const BAD_CREDENTIALS: &str = "invalid username or password";

pub(super) async fn register(
    shared: &Shared,
    ctx: &mut ConnCtx,
    username: String,
    password: String,
) -> Result<Reply, Failure> {
    validate_username(&username).map_err(Failure::bad_request)?;
    check_password_shape(&password)?;
    let taken = || Failure::conflict(format!("the username {username:?} is taken"));
    // A taken name is refused before any hashing (the insert below still
    // catches a race).
    if shared
        .store
        .user_by_name(&username)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .is_some()
    {
        shared.log.record(
            "REGISTER_REFUSED",
            ctx.addr,
            format!("user={username} taken"),
        );
        return Err(taken());
    }
    let hash = shared
        .hasher
        .hash(password)
        .await
        .map_err(|e| hash_failure(shared, ctx, "REGISTER_BUSY", &username, e))?;
    let user = match shared.store.create_user(&username, &hash, now_ms()).await {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => {
            shared.log.record(
                "REGISTER_REFUSED",
                ctx.addr,
                format!("user={username} taken"),
            );
            return Err(taken());
        }
        Err(e) => return Err(store_failure(shared, ctx, e)),
    };
    shared.limiter.registered(&user.username, ctx.addr.ip());
    shared.taken_names.add(&user.username);
    shared
        .log
        .record("REGISTER", ctx.addr, format!("user={}", user.username));
    start_session(
        shared,
        ctx,
        Some(user.id),
        user.username,
        user.status,
        AccountKind::User,
    )
    .await
}

pub(super) async fn login(
    shared: &Shared,
    ctx: &mut ConnCtx,
    username: String,
    password: String,
) -> Result<Reply, Failure> {
    // Counted before the password is checked, so parallel attempts cannot
    // get more guesses than the limit.
    let attempt = match shared.limiter.reserve(&username, ctx.addr.ip(), now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            shared.log.record(
                "LOGIN_RATE_LIMITED",
                ctx.addr,
                format!("user={username} wait={}s", wait.as_secs()),
            );
            return Err(Failure::new(
                Status::RateLimited,
                format!(
                    "too many failed sign-ins; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
    };
    let user = if password.len() > MAX_PASSWORD_LEN {
        None
    } else {
        match shared.store.user_by_name(&username).await {
            Ok(user) => user,
            Err(e) => {
                shared.limiter.cancel(attempt);
                return Err(store_failure(shared, ctx, e));
            }
        }
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = match shared.hasher.verify(password, stored).await {
        Ok(ok) => ok,
        Err(e) => {
            shared.limiter.cancel(attempt);
            return Err(hash_failure(shared, ctx, "LOGIN_BUSY", &username, e));
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        shared.limiter.failed(attempt);
        crate::cluster::signed_in(shared, &username, ctx.addr.ip(), false);
        shared
            .log
            .record("LOGIN_FAILED", ctx.addr, format!("user={username}"));
        return Err(Failure::unauthorized(BAD_CREDENTIALS));
    };
    shared.limiter.succeeded(attempt);
    crate::cluster::signed_in(shared, &username, ctx.addr.ip(), true);
    shared
        .log
        .record("LOGIN", ctx.addr, format!("user={}", user.username));
    start_session(
        shared,
        ctx,
        Some(user.id),
        user.username,
        user.status,
        AccountKind::User,
    )
    .await
}

/// What a client sees when its password could not be checked: busy is
/// UNAVAILABLE (try again shortly), anything else a server error.
fn hash_failure(
    shared: &Shared,
    ctx: &ConnCtx,
    busy_kind: &str,
    username: &str,
    e: HashError,
) -> Failure {
    match e {
        HashError::Busy => {
            shared
                .log
                .record(busy_kind, ctx.addr, format!("user={username}"));
            Failure::new(
                Status::Unavailable,
                "the server is busy checking other passwords; try again in a few seconds",
            )
        }
        e => {
            tracing::error!(error = %e, user = username, "password hashing failed");
            shared
                .log
                .record("SERVER_ERROR", ctx.addr, format!("password hash: {e}"));
            Failure::server_error()
        }
    }
}

pub(super) async fn visit(
    shared: &Shared,
    ctx: &mut ConnCtx,
    display_name: String,
) -> Result<Reply, Failure> {
    validate_display_name(&display_name).map_err(Failure::bad_request)?;
    let display_name = display_name.trim().to_owned();
    if shared.taken_names.looks_taken(&display_name) {
        shared.log.record(
            "VISITOR_REFUSED",
            ctx.addr,
            format!("name={display_name} looks like a registered username"),
        );
        return Err(Failure::conflict(format!(
            "{display_name:?} is, or looks like, a registered username; choose another name"
        )));
    }
    shared
        .log
        .record("VISITOR", ctx.addr, format!("name={display_name}"));
    start_session(
        shared,
        ctx,
        None,
        display_name,
        Presence::Online,
        AccountKind::Visitor,
    )
    .await
}

/// Creates and stores a session, signs the connection in with it.
async fn start_session(
    shared: &Shared,
    ctx: &mut ConnCtx,
    user_id: Option<i64>,
    name: String,
    status: Presence,
    kind: AccountKind,
) -> Result<Reply, Failure> {
    let token = random_hex(32);
    let session_id = random_hex(8);
    let now = now_ms();
    let lifetime = match kind {
        AccountKind::User => USER_SESSION_MS,
        AccountKind::Visitor => VISITOR_SESSION_MS,
    };
    let record = SessionRecord {
        id: session_id.clone(),
        token_hash: token_hash(&token),
        user_id,
        display_name: name.clone(),
        kind,
        created_at_ms: now,
        expires_at_ms: now + lifetime,
    };
    shared
        .store
        .create_session(&record)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let principal = principal_of(&record, name);
    let mut info = session_info(&principal, status);
    info.token = token;
    sign_in(shared, ctx, principal, status).await;
    Ok(Reply::Session(info))
}

pub(super) async fn resume(
    shared: &Shared,
    ctx: &mut ConnCtx,
    token: String,
) -> Result<Reply, Failure> {
    let now = now_ms();
    let expired = || Failure::unauthorized("this session has ended or expired; sign in again");
    let record = shared
        .store
        .session_by_token_hash(&token_hash(&token), now)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .ok_or_else(expired)?;
    let (name, status) = match record.user_id {
        Some(uid) => {
            let user = shared
                .store
                .user_by_id(uid)
                .await
                .map_err(|e| store_failure(shared, ctx, e))?
                .ok_or_else(expired)?;
            (user.username, user.status)
        }
        None => (record.display_name.clone(), Presence::Online),
    };
    let lifetime = match record.kind {
        AccountKind::User => USER_SESSION_MS,
        AccountKind::Visitor => VISITOR_SESSION_MS,
    };
    shared
        .store
        .touch_session(&record.id, now + lifetime)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let principal = principal_of(&record, name);
    shared.log.record(
        "SESSION_RESUMED",
        ctx.addr,
        format!(
            "user={} session={}",
            principal.username, principal.session_id
        ),
    );
    let mut info = session_info(&principal, status);
    info.token = token;
    sign_in(shared, ctx, principal, status).await;
    Ok(Reply::Session(info))
}

pub(super) async fn logout(shared: &Shared, ctx: &mut ConnCtx) -> Result<Reply, Failure> {
    let principal = signed_in(ctx)?.clone();
    shared
        .store
        .delete_session(&principal.session_id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "LOGOUT",
        ctx.addr,
        format!(
            "user={} session={}",
            principal.username, principal.session_id
        ),
    );
    // Every other connection using this session is signed out too, on
    // this instance and on the others.
    let reason = "you logged out on another node";
    end_session(shared, &principal.session_id, Some(ctx.id), reason).await;
    crate::cluster::session_ended(shared, &principal.session_id);
    sign_out_conn(shared, ctx).await;
    // The session's tickets are void: every node hears it (a host cannot
    // be told apart from a node that may present a ticket to one, and a
    // sign-out is rare next to messages), so hosts and streamers drop the
    // links admitted under it and refuse its tickets until they expire.
    let revoked = Event::SessionRevoked {
        session_id: principal.session_id.clone(),
        expires_at_ms: now_ms() + shared.config.ticket_lifetime.as_millis() as u64,
    };
    shared.hub.push_where(&revoked, |_| true);
    Ok(Reply::Done)
}

pub(super) fn whoami(shared: &Shared, ctx: &ConnCtx) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let status = match p.user_id {
        Some(uid) => shared.hub.presence(uid),
        None => Presence::Online,
    };
    Ok(Reply::Session(session_info(p, status)))
}

pub(super) async fn set_status(
    shared: &Shared,
    ctx: &mut ConnCtx,
    status: Presence,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "set a status")?;
    if status == Presence::Offline {
        return Err(Failure::bad_request(
            "offline is not a status you can choose; use invisible to appear offline",
        ));
    }
    let username = p.username.clone();
    shared
        .store
        .set_user_status(uid, status)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let change = shared.hub.set_status(uid, &username, status);
    if status == Presence::Invisible {
        // Invisible must look like offline: the user's streams end as if
        // their node had gone (a stream would show their addresses).
        for conn in shared.hub.conns_of_user(uid) {
            super::streams::end_all(shared, conn, ctx.addr, "streamer_disconnected").await;
        }
    }
    if let Some(change) = change {
        announce_presence(shared, change, ctx.addr).await;
    }
    whoami(shared, ctx)
}

/// `set_activity`: this connection's node says whether its person is
/// away; the user is shown idle while every connection of theirs is.
pub(super) async fn set_activity(
    shared: &Shared,
    ctx: &ConnCtx,
    idle: bool,
) -> Result<Reply, Failure> {
    registered(ctx, "report activity")?;
    if let Some(change) = shared.hub.set_idle(ctx.id, idle) {
        announce_presence(shared, change, ctx.addr).await;
    }
    Ok(Reply::Done)
}

/// Binds the connection to a principal, first signing out whoever it was.
async fn sign_in(shared: &Shared, ctx: &mut ConnCtx, principal: Principal, status: Presence) {
    if ctx.principal.is_some() {
        sign_out_conn(shared, ctx).await;
    }
    ctx.principal = Some(principal.clone());
    if let Some(change) = shared.hub.bind(ctx.id, principal, status) {
        announce_presence(shared, change, ctx.addr).await;
    }
}

/// Signs the connection out (it stays open) and announces the presence
/// change if it was the user's last connection.
pub(crate) async fn sign_out_conn(shared: &Shared, ctx: &mut ConnCtx) {
    let who = ctx.principal.take();
    sign_out(shared, ctx.id, ctx.addr, who.as_ref()).await;
}

/// Signs connection `id` out: its streams end, the channels it hosts go
/// offline, its presence is told. Doing it twice does nothing more.
async fn sign_out(shared: &Shared, id: ConnId, addr: SocketAddr, who: Option<&Principal>) {
    super::streams::end_all(shared, id, addr, "streamer_disconnected").await;
    for channel in shared.hub.drop_hosts(id) {
        shared.log.record(
            "HOST_OFFLINE",
            addr,
            format!(
                "channel={channel} host={}",
                who.map_or("?", |p| p.username.as_str())
            ),
        );
        if let Ok(Some(ch)) = shared.store.channel_by_name(&channel).await {
            super::messages::announce_host(shared, &ch).await;
        }
    }
    let (_, change) = shared.hub.unbind(id);
    if let Some(change) = change {
        announce_presence(shared, change, addr).await;
    }
}

/// Ends session `session_id` on this instance's connections (but
/// `except`, the one that asked): each is told why and signed out, and
/// its next request is answered as a stranger's (`conn.rs` checks). The
/// session's row is already gone, so none of them can resume it.
pub(crate) async fn end_session(
    shared: &Shared,
    session_id: &str,
    except: Option<ConnId>,
    reason: &str,
) {
    let ended: Vec<ConnId> = shared
        .hub
        .conns_of_session(session_id)
        .into_iter()
        .filter(|id| Some(*id) != except)
        .collect();
    shared.hub.push_to_conns(
        &ended,
        &Event::SessionEnded {
            reason: reason.into(),
        },
    );
    for id in ended {
        let Some((addr, who)) = shared.hub.who(id) else {
            continue;
        };
        shared.log.record(
            "SESSION_ENDED",
            addr,
            format!("conn={id} session={session_id} {reason}"),
        );
        sign_out(shared, id, addr, who.as_ref()).await;
    }
}

fn check_password_shape(password: &str) -> Result<(), Failure> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Failure::bad_request(format!(
            "a password has at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Failure::bad_request(format!(
            "a password has at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

fn principal_of(record: &SessionRecord, name: String) -> Principal {
    let username = match record.kind {
        AccountKind::User => name,
        AccountKind::Visitor => format!("visitor:{}#{}", record.display_name, &record.id[..4]),
    };
    Principal {
        user_id: record.user_id,
        username,
        display_name: record.display_name.clone(),
        kind: record.kind,
        session_id: record.id.clone(),
    }
}

fn session_info(p: &Principal, status: Presence) -> SessionInfo {
    SessionInfo {
        username: p.username.clone(),
        display_name: p.display_name.clone(),
        kind: p.kind,
        session_id: p.session_id.clone(),
        token: String::new(),
        status,
    }
}
