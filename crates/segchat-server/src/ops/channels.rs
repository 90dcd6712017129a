//! create_channel, list_channels, join_channel, leave_channel, members,
//! invite.

use segchat_proto::tracker::{Event, Reply};
use segchat_proto::types::{validate_channel_name, ChannelInfo, MemberInfo, Role, Visibility};
use segchat_proto::Failure;

use super::{now_ms, presence_for, registered, signed_in, store_failure, ConnCtx, Shared};
use crate::hub::Principal;
use crate::store::{ChannelRecord, NewChannel, StoreError};
use segchat_proto::access::{Rules, Viewer};

impl ChannelRecord {
    pub(crate) fn rules(&self) -> Rules {
        Rules {
            visibility: self.visibility,
            allow_visitors: self.allow_visitors,
        }
    }

    fn info(
        &self,
        my_role: Option<Role>,
        host: Option<segchat_proto::types::NodeAddr>,
    ) -> ChannelInfo {
        ChannelInfo {
            name: self.name.clone(),
            owner: self.owner.clone(),
            visibility: self.visibility,
            allow_visitors: self.allow_visitors,
            created_at_ms: self.created_at_ms,
            member_count: self.member_count,
            my_role,
            host,
        }
    }
}

fn no_such_channel(name: &str) -> Failure {
    Failure::not_found(format!("no channel named {name:?}"))
}

/// The channel, or NOT_FOUND.
pub(super) async fn load_channel(
    shared: &Shared,
    ctx: &ConnCtx,
    name: &str,
) -> Result<ChannelRecord, Failure> {
    shared
        .store
        .channel_by_name(name)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .ok_or_else(|| no_such_channel(name))
}

/// The facts about `p` that the channel's rules need.
pub(super) async fn viewer_of(
    shared: &Shared,
    ctx: &ConnCtx,
    p: &Principal,
    ch: &ChannelRecord,
) -> Result<Viewer, Failure> {
    let Some(uid) = p.user_id else {
        return Ok(Viewer {
            kind: p.kind,
            role: None,
            invited: false,
        });
    };
    let role = shared
        .store
        .memberships(uid)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .into_iter()
        .find(|(cid, _)| *cid == ch.id)
        .map(|(_, r)| r);
    let invited = role.is_none()
        && ch.visibility == Visibility::Private
        && shared
            .store
            .is_invited(ch.id, uid)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?;
    Ok(Viewer {
        kind: p.kind,
        role,
        invited,
    })
}

pub(super) async fn create(
    shared: &Shared,
    ctx: &ConnCtx,
    name: String,
    visibility: Visibility,
    allow_visitors: bool,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "create channels")?;
    validate_channel_name(&name).map_err(Failure::bad_request)?;
    let new = NewChannel {
        name: name.clone(),
        owner_id: uid,
        visibility,
        allow_visitors,
        created_at_ms: now_ms(),
    };
    let ch = match shared.store.create_channel(&new).await {
        Ok(ch) => ch,
        Err(StoreError::Conflict(_)) => {
            return Err(Failure::conflict(format!(
                "a channel named {name:?} already exists"
            )))
        }
        Err(e) => return Err(store_failure(shared, ctx, e)),
    };
    shared.log.record(
        "CHANNEL_CREATED",
        ctx.addr,
        format!(
            "channel={} owner={} visibility={} allow_visitors={}",
            ch.name,
            p.username,
            ch.visibility.as_str(),
            ch.allow_visitors
        ),
    );
    // Tell everyone who can now see it (for a private channel: its owner).
    let rules = ch.rules();
    let event = Event::ChannelCreated {
        channel: ch.info(None, shared.hub.host_of(&ch.name)),
    };
    shared.hub.push_where(&event, |other| {
        other.user_id != Some(uid)
            && rules.can_see(Viewer {
                kind: other.kind,
                role: None,
                invited: false,
            })
    });
    shared.hub.push_to_users(
        &[uid],
        &Event::ChannelCreated {
            channel: ch.info(Some(Role::Owner), shared.hub.host_of(&ch.name)),
        },
    );
    Ok(Reply::Channel(
        ch.info(Some(Role::Owner), shared.hub.host_of(&ch.name)),
    ))
}

pub(super) async fn list(shared: &Shared, ctx: &ConnCtx) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let all = shared
        .store
        .list_channels()
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    let mine = match p.user_id {
        Some(uid) => shared
            .store
            .memberships(uid)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?,
        None => Vec::new(),
    };
    let mut channels = Vec::new();
    for ch in all {
        let role = mine.iter().find(|(id, _)| *id == ch.id).map(|(_, r)| *r);
        let invited = match (p.user_id, role, ch.visibility) {
            (Some(uid), None, Visibility::Private) => shared
                .store
                .is_invited(ch.id, uid)
                .await
                .map_err(|e| store_failure(shared, ctx, e))?,
            _ => false,
        };
        let viewer = Viewer {
            kind: p.kind,
            role,
            invited,
        };
        if ch.rules().can_see(viewer) {
            channels.push(ch.info(role, shared.hub.host_of(&ch.name)));
        }
    }
    Ok(Reply::Channels { channels })
}

pub(super) async fn join(shared: &Shared, ctx: &ConnCtx, name: String) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "join channels")?;
    let ch = load_channel(shared, ctx, &name).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    let rules = ch.rules();
    if !rules.can_see(viewer) {
        return Err(no_such_channel(&name));
    }
    if let Some(role) = viewer.role {
        return Ok(Reply::Channel(
            ch.info(Some(role), shared.hub.host_of(&ch.name)),
        ));
    }
    if !rules.can_join(viewer) {
        return Err(Failure::forbidden(format!(
            "{name:?} is private; ask its owner for an invitation"
        )));
    }
    shared
        .store
        .add_member(ch.id, uid, Role::Member, now_ms())
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "CHANNEL_JOINED",
        ctx.addr,
        format!("channel={} user={}", ch.name, p.username),
    );
    let members = member_ids(shared, ctx, ch.id).await?;
    shared.hub.push_to_users(
        &members,
        &Event::MemberJoined {
            channel: ch.name.clone(),
            username: p.username.clone(),
            role: Role::Member,
        },
    );
    let ch = load_channel(shared, ctx, &name).await?;
    Ok(Reply::Channel(
        ch.info(Some(Role::Member), shared.hub.host_of(&ch.name)),
    ))
}

pub(super) async fn leave(shared: &Shared, ctx: &ConnCtx, name: String) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "leave channels")?;
    let ch = load_channel(shared, ctx, &name).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    match viewer.role {
        None if !ch.rules().can_see(viewer) => return Err(no_such_channel(&name)),
        None => {
            return Err(Failure::not_found(format!(
                "you are not a member of {name:?}"
            )))
        }
        Some(Role::Owner) => {
            return Err(Failure::conflict(
                "the owner cannot leave their own channel",
            ))
        }
        Some(_) => {}
    }
    let mut tell = member_ids(shared, ctx, ch.id).await?;
    shared
        .store
        .remove_member(ch.id, uid)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "CHANNEL_LEFT",
        ctx.addr,
        format!("channel={} user={}", ch.name, p.username),
    );
    tell.push(uid);
    shared.hub.push_to_users(
        &tell,
        &Event::MemberLeft {
            channel: ch.name.clone(),
            username: p.username.clone(),
        },
    );
    Ok(Reply::Done)
}

pub(super) async fn members(
    shared: &Shared,
    ctx: &ConnCtx,
    name: String,
) -> Result<Reply, Failure> {
    let p = signed_in(ctx)?;
    let ch = load_channel(shared, ctx, &name).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    if !ch.rules().can_see(viewer) {
        return Err(no_such_channel(&name));
    }
    if !ch.rules().can_read(viewer) {
        return Err(Failure::forbidden(format!(
            "only members of {name:?} see who is in it"
        )));
    }
    let members = shared
        .store
        .members(ch.id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .into_iter()
        .map(|m| MemberInfo {
            presence: presence_for(shared, p, m.user_id),
            username: m.username,
            role: m.role,
        })
        .collect();
    Ok(Reply::Members {
        channel: ch.name,
        members,
    })
}

pub(super) async fn invite(
    shared: &Shared,
    ctx: &ConnCtx,
    name: String,
    username: String,
) -> Result<Reply, Failure> {
    let (p, uid) = registered(ctx, "invite people")?;
    let ch = load_channel(shared, ctx, &name).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    if !ch.rules().can_see(viewer) {
        return Err(no_such_channel(&name));
    }
    if !ch.rules().can_invite(viewer) {
        return Err(Failure::forbidden(format!(
            "only the owner or a moderator of {name:?} can invite"
        )));
    }
    let target = shared
        .store
        .user_by_name(&username)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .ok_or_else(|| Failure::not_found(format!("no user named {username:?}")))?;
    shared
        .store
        .add_invite(ch.id, target.id, uid, now_ms())
        .await
        .map_err(|e| store_failure(shared, ctx, e))?;
    shared.log.record(
        "CHANNEL_INVITE",
        ctx.addr,
        format!(
            "channel={} user={} by={}",
            ch.name, target.username, p.username
        ),
    );
    // Live, on every node the invitee is signed in on: the channel is
    // theirs to see (and join) now, not at their next reload.
    shared.hub.push_to_users(
        &[target.id],
        &Event::Invited {
            channel: ch.info(None, shared.hub.host_of(&ch.name)),
            by: p.username.clone(),
        },
    );
    Ok(Reply::Channel(
        ch.info(viewer.role, shared.hub.host_of(&ch.name)),
    ))
}

pub(super) async fn member_ids(
    shared: &Shared,
    ctx: &ConnCtx,
    channel_id: i64,
) -> Result<Vec<i64>, Failure> {
    Ok(shared
        .store
        .members(channel_id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .into_iter()
        .map(|m| m.user_id)
        .collect())
}
