//! `relations` and `relate`: friends, friend requests and blocks. The
//! rules are `segchat_proto::friends`; this applies them to the store by
//! compare-and-set (so two instances changing one pair at once cannot
//! leave its halves disagreeing) and tells both users.

use segchat_proto::friends::{self, FriendAction, Pair, Refusal, Relation, RelationKind};
use segchat_proto::tracker::{Event, Reply};
use segchat_proto::types::Presence;
use segchat_proto::{Failure, Status};

use super::{memberships_changed, now_ms, registered, store_failure, ConnCtx, Shared};
use crate::hub::Principal;
use crate::store::UserRecord;

/// Relations one user may hold (friends, requests both ways, blocks):
/// what a stranger can make the server keep about one account is
/// bounded. Discord's friend limit is the same.
pub(crate) const MAX_RELATIONS: usize = 1000;

/// Friend requests one user may have waiting for an answer.
pub(crate) const MAX_OUTGOING: usize = 100;

/// How often `relate` reads the pair again when another request changed
/// it between the read and the write.
const RETRIES: usize = 3;

pub(super) async fn list(shared: &Shared, ctx: &ConnCtx) -> Result<Reply, Failure> {
    let (_, me) = registered(ctx, "have friends")?;
    let relations = shared
        .store
        .relations(me)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .into_iter()
        .map(|r| Relation {
            presence: friend_presence(shared, r.kind, r.other_id),
            username: r.username,
            kind: Some(r.kind),
            since_ms: r.since_ms,
        })
        .collect();
    Ok(Reply::Relations { relations })
}

pub(super) async fn relate(
    shared: &Shared,
    ctx: &ConnCtx,
    username: String,
    action: FriendAction,
) -> Result<Reply, Failure> {
    let (p, me) = registered(ctx, "have friends")?;
    let other = super::user_named(shared, ctx, &username).await?;
    if other.id == me {
        return Err(Failure::bad_request("that is you"));
    }
    let mut tries = 0;
    let (before, after, now, was_watching) = loop {
        let before = shared
            .store
            .relation_pair(me, other.id)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?;
        let after = friends::apply(action, before).map_err(|r| refused(r, &other))?;
        if after == before {
            // Already so: a retry, or nothing to undo.
            return Ok(Reply::Relation(as_it_is(shared, ctx, me, &other).await?));
        }
        check_room(shared, ctx, me, &other, before, after).await?;
        let was_watching = watches(shared, me, other.id).await;
        let now = now_ms();
        let changed = shared
            .store
            .change_relation(me, other.id, before, after, now)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?;
        if changed {
            break (before, after, now, was_watching);
        }
        tries += 1;
        if tries == RETRIES {
            return Err(Failure::conflict(format!(
                "your relation with {} kept changing; try again",
                other.username
            )));
        }
    };
    shared.log.record(
        &format!("FRIEND_{}", action.as_str().to_ascii_uppercase()),
        ctx.addr,
        format!(
            "user={} other={} from={}/{} to={}/{}",
            p.username,
            other.username,
            name(before.mine),
            name(before.theirs),
            name(after.mine),
            name(after.theirs)
        ),
    );
    // Friends and blocks decide whom each is told of presence.
    memberships_changed(shared);
    let mine = relation(shared, &other.username, other.id, after.mine, now);
    shared
        .hub
        .push_to_users_except(&[me], Some(ctx.id), &Event::Relation(mine.clone()));
    if after.theirs != before.theirs {
        let theirs = relation(shared, &p.username, me, after.theirs, now);
        shared
            .hub
            .push_to_users(&[other.id], &Event::Relation(theirs));
    }
    // Blocked, they see me go offline wherever they saw me; unblocked,
    // back as I am, if they share a channel.
    let blocked = after.mine == Some(RelationKind::Blocked);
    if blocked && was_watching {
        shared.hub.push_to_users(
            &[other.id],
            &Event::Presence {
                username: p.username.clone(),
                status: Presence::Offline,
            },
        );
    } else if before.mine == Some(RelationKind::Blocked) && watches(shared, me, other.id).await {
        shared.hub.push_to_users(
            &[other.id],
            &Event::Presence {
                username: p.username.clone(),
                status: shared.hub.presence(me).as_seen_by_others(),
            },
        );
    }
    Ok(Reply::Relation(mine))
}

/// The users who blocked the asker: to them they look offline (no
/// presence, no peer-list entry). None for a visitor.
pub(super) async fn blockers(
    shared: &Shared,
    ctx: &ConnCtx,
    asker: &Principal,
) -> Result<Vec<i64>, Failure> {
    match asker.user_id {
        Some(id) => shared
            .store
            .blocked_by(id)
            .await
            .map_err(|e| store_failure(shared, ctx, e)),
        None => Ok(Vec::new()),
    }
}

/// Whether `watcher` is told of `user`'s presence (a store failure
/// reads as no: at worst an event is not sent).
async fn watches(shared: &Shared, user: i64, watcher: i64) -> bool {
    shared
        .mates
        .of(&*shared.store, user)
        .await
        .is_ok_and(|w| w.contains(&watcher))
}

/// Refuses what would grow a relation list past its bounds: mine (every
/// row I gain, and requests I have waiting) and theirs (a request I
/// would leave with them).
async fn check_room(
    shared: &Shared,
    ctx: &ConnCtx,
    me: i64,
    other: &UserRecord,
    before: Pair,
    after: Pair,
) -> Result<(), Failure> {
    let full = |n: usize| n >= MAX_RELATIONS;
    if before.mine.is_none() && after.mine.is_some() {
        let mine = shared
            .store
            .relations(me)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?;
        if full(mine.len()) {
            return Err(Failure::conflict(format!(
                "you have {MAX_RELATIONS} friends, requests and blocks; remove some first"
            )));
        }
        let waiting = mine
            .iter()
            .filter(|r| r.kind == RelationKind::Outgoing)
            .count();
        if after.mine == Some(RelationKind::Outgoing) && waiting >= MAX_OUTGOING {
            return Err(Failure::new(
                Status::RateLimited,
                format!(
                    "you have {MAX_OUTGOING} friend requests waiting for an answer; \
                     wait for some or cancel them"
                ),
            ));
        }
    }
    if before.theirs.is_none() && after.theirs.is_some() {
        let theirs = shared
            .store
            .relations(other.id)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?;
        if full(theirs.len()) {
            return Err(Failure::conflict(format!(
                "{} cannot take more friend requests",
                other.username
            )));
        }
    }
    Ok(())
}

fn refused(r: Refusal, other: &UserRecord) -> Failure {
    match r {
        Refusal::YouBlocked => Failure::conflict(format!(
            "you blocked {}; unblock them first",
            other.username
        )),
        // Worded like an unknown user's answer: asking does not reveal a
        // block.
        Refusal::Unreachable => Failure::not_found(format!(
            "no user named {:?} takes friend requests from you",
            other.username
        )),
        Refusal::NoRequest => Failure::not_found(format!(
            "{} has not asked to be your friend",
            other.username
        )),
    }
}

/// User `user_id` as the one who holds `kind` about them sees them.
fn relation(
    shared: &Shared,
    username: &str,
    user_id: i64,
    kind: Option<RelationKind>,
    since_ms: u64,
) -> Relation {
    Relation {
        username: username.to_owned(),
        kind,
        since_ms: if kind.is_some() { since_ms } else { 0 },
        presence: kind.and_then(|k| friend_presence(shared, k, user_id)),
    }
}

/// What `other` is to `me` as stored (an action that changed nothing).
async fn as_it_is(
    shared: &Shared,
    ctx: &ConnCtx,
    me: i64,
    other: &UserRecord,
) -> Result<Relation, Failure> {
    let held = shared
        .store
        .relations(me)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .into_iter()
        .find(|r| r.other_id == other.id);
    Ok(match held {
        Some(r) => relation(shared, &r.username, r.other_id, Some(r.kind), r.since_ms),
        None => relation(shared, &other.username, other.id, None, 0),
    })
}

/// A friend's presence as others may see it; nobody else's.
fn friend_presence(shared: &Shared, kind: RelationKind, user_id: i64) -> Option<Presence> {
    (kind == RelationKind::Friend).then(|| shared.hub.presence(user_id).as_seen_by_others())
}

fn name(kind: Option<RelationKind>) -> &'static str {
    kind.map_or("none", RelationKind::as_str)
}
