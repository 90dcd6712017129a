//! create_channel, list_channels, join_channel, leave_channel, members,
//! invite, update_channel, delete_channel.

use std::collections::{HashMap, HashSet};

use segchat_proto::tracker::{Event, Reply};
use segchat_proto::types::{
    validate_channel_name, validate_channel_title, validate_channel_topic, ChannelInfo, MemberInfo,
    Presence, Role, Visibility,
};
use segchat_proto::Failure;

use super::{now_ms, presence_for, registered, signed_in, store_failure, ConnCtx, Shared};
use crate::hub::Principal;
use crate::store::{ChannelRecord, ChannelUpdate, NewChannel, StoreError};
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
            title: if self.title.is_empty() {
                self.name.clone()
            } else {
                self.title.clone()
            },
            topic: self.topic.clone(),
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
    let added = shared
        .store
        .add_member(ch.id, uid, Role::Member, now_ms())
        .await;
    // Noted whatever the answer: a failed round trip may have committed.
    super::memberships_changed(shared);
    added.map_err(|e| store_failure(shared, ctx, e))?;
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
    let removed = shared.store.remove_member(ch.id, uid).await;
    super::memberships_changed(shared);
    removed.map_err(|e| store_failure(shared, ctx, e))?;
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
    let hidden = super::friends::blockers(shared, ctx, p).await?;
    let members = shared
        .store
        .members(ch.id)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .into_iter()
        .map(|m| MemberInfo {
            presence: if hidden.contains(&m.user_id) {
                Presence::Offline
            } else {
                presence_for(shared, p, m.user_id)
            },
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
    let target = super::user_named(shared, ctx, &username).await?;
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

/// Who stands where in one channel: enough to apply its rules to every
/// connection when telling them of a change.
struct Audience {
    roles: HashMap<i64, Role>,
    invited: HashSet<i64>,
}

impl Audience {
    async fn of(shared: &Shared, ctx: &ConnCtx, ch: &ChannelRecord) -> Result<Audience, Failure> {
        let roles = shared
            .store
            .members(ch.id)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?
            .into_iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        let invited = shared
            .store
            .invitees(ch.id)
            .await
            .map_err(|e| store_failure(shared, ctx, e))?
            .into_iter()
            .collect();
        Ok(Audience { roles, invited })
    }

    fn viewer(&self, p: &Principal) -> Viewer {
        let role = p.user_id.and_then(|u| self.roles.get(&u).copied());
        Viewer {
            kind: p.kind,
            role,
            invited: p.user_id.is_some_and(|u| self.invited.contains(&u)),
        }
    }

    fn with_role(&self, role: Role) -> Vec<i64> {
        self.roles
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(u, _)| *u)
            .collect()
    }
}

pub(super) async fn update(
    shared: &Shared,
    ctx: &ConnCtx,
    name: String,
    change: ChannelUpdate,
) -> Result<Reply, Failure> {
    let (p, _) = registered(ctx, "change channels")?;
    let ch = load_channel(shared, ctx, &name).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    let before = ch.rules();
    if !before.can_see(viewer) {
        return Err(no_such_channel(&name));
    }
    if !before.can_manage(viewer) {
        return Err(Failure::forbidden(format!(
            "only the owner or a moderator of {name:?} can change its settings"
        )));
    }
    if change == ChannelUpdate::default() {
        return Err(Failure::bad_request(
            "nothing to change: give topic, title, visibility or allow_visitors",
        ));
    }
    let mut change = change;
    if let Some(title) = change.title.as_mut() {
        validate_channel_title(title).map_err(Failure::bad_request)?;
        *title = title.trim().to_owned();
    }
    if let Some(topic) = change.topic.as_ref() {
        validate_channel_topic(topic).map_err(Failure::bad_request)?;
    }
    let audience = Audience::of(shared, ctx, &ch).await?;
    let after = shared
        .store
        .update_channel(ch.id, &change)
        .await
        .map_err(|e| store_failure(shared, ctx, e))?
        .ok_or_else(|| no_such_channel(&name))?;
    shared.log.record(
        "CHANNEL_UPDATED",
        ctx.addr,
        format!(
            "channel={} by={} visibility={} allow_visitors={} title_changed={} topic_changed={}",
            after.name,
            p.username,
            after.visibility.as_str(),
            after.allow_visitors,
            change.title.is_some(),
            change.topic.is_some()
        ),
    );
    let host = shared.hub.host_of(&after.name);
    let now = after.rules();
    // Members (who always see it) with their own role; everyone else who
    // can see it now with none; whoever could see it and no longer can
    // is told it is gone.
    for role in [Role::Owner, Role::Moderator, Role::Member] {
        let users = audience.with_role(role);
        if !users.is_empty() {
            let channel = after.info(Some(role), host.clone());
            shared
                .hub
                .push_to_users(&users, &Event::ChannelUpdated { channel });
        }
    }
    let updated = Event::ChannelUpdated {
        channel: after.info(None, host.clone()),
    };
    shared.hub.push_where(&updated, |other| {
        let v = audience.viewer(other);
        v.role.is_none() && now.can_see(v)
    });
    let hidden = Event::ChannelHidden {
        channel: after.name.clone(),
    };
    shared.hub.push_where(&hidden, |other| {
        let v = audience.viewer(other);
        before.can_see(v) && !now.can_see(v)
    });
    Ok(Reply::Channel(after.info(viewer.role, host)))
}

pub(super) async fn delete(shared: &Shared, ctx: &ConnCtx, name: String) -> Result<Reply, Failure> {
    let (p, _) = registered(ctx, "delete channels")?;
    let ch = load_channel(shared, ctx, &name).await?;
    let viewer = viewer_of(shared, ctx, p, &ch).await?;
    let rules = ch.rules();
    if !rules.can_see(viewer) {
        return Err(no_such_channel(&name));
    }
    if !rules.can_delete(viewer) {
        return Err(Failure::forbidden(format!(
            "only the owner of {name:?} can delete it"
        )));
    }
    let audience = Audience::of(shared, ctx, &ch).await?;
    let deleted = shared.store.delete_channel(ch.id).await;
    super::memberships_changed(shared);
    let deleted = deleted.map_err(|e| store_failure(shared, ctx, e))?;
    if !deleted {
        return Err(no_such_channel(&name));
    }
    shared.log.record(
        "CHANNEL_DELETED",
        ctx.addr,
        format!(
            "channel={} by={} members={}",
            ch.name, p.username, ch.member_count
        ),
    );
    let streams = shared.hub.forget_channel(&ch.name);
    let could_see = |other: &Principal| rules.can_see(audience.viewer(other));
    for stream in streams {
        shared.log.record(
            "STREAM_STOP",
            ctx.addr,
            format!(
                "stream={} channel={} streamer={} reason=channel_deleted",
                stream.stream_id, stream.channel, stream.streamer
            ),
        );
        let stopped = Event::StreamStopped {
            stream_id: stream.stream_id,
            channel: stream.channel,
            reason: "channel_deleted".into(),
        };
        shared.hub.push_where(&stopped, could_see);
    }
    let event = Event::ChannelDeleted {
        channel: ch.name.clone(),
    };
    shared.hub.push_where(&event, could_see);
    Ok(Reply::Done)
}
