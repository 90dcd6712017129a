//! `/channels…` and `/peers`: the channel registry and the live peer list,
//! as the server shows them to the signed-in user.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::{ChannelInfo, MemberInfo, PeerInfo, Visibility};
use segchat_proto::Status;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Body};
use crate::link::ChannelChange;

/// `GET /channels`.
#[derive(Debug, Serialize)]
pub struct ChannelList {
    pub channels: Vec<ChannelInfo>,
    /// True when the server is unreachable and this is the last list seen.
    pub cached: bool,
    /// When the cached list was fetched (only when `cached`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_at_ms: Option<u64>,
}

pub(super) async fn list(State(st): State<ApiState>) -> Result<Json<ChannelList>, ApiError> {
    let mark = st.inner.store.channel_cache_mark().await;
    let mark = mark.unwrap_or(crate::store::CacheMark::NOW);
    match st.link().request(Request::ListChannels).await {
        Ok(Reply::Channels { channels }) => {
            let cached = st.inner.store.cache_channels(channels.clone(), mark);
            if let Err(e) = cached.await {
                tracing::warn!(error = %e, "could not cache the channel list");
            }
            Ok(Json(ChannelList {
                channels,
                cached: false,
                fetched_at_ms: None,
            }))
        }
        Ok(other) => Err(ApiError::unexpected("list_channels", &other)),
        Err(f) if f.status == Status::Unavailable => {
            let cached = st
                .inner
                .store
                .cached_channels()
                .await
                .map_err(|e| ApiError::internal("could not read the channel cache", &e))?;
            match cached {
                Some(c) => Ok(Json(ChannelList {
                    channels: c.channels,
                    cached: true,
                    fetched_at_ms: Some(c.fetched_at_ms),
                })),
                None => Err(f.into()),
            }
        }
        Err(f) => Err(f.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateBody {
    name: String,
    #[serde(default = "public")]
    visibility: Visibility,
    #[serde(default)]
    allow_visitors: bool,
}

fn public() -> Visibility {
    Visibility::Public
}

fn channel_of(op: &str, reply: Reply) -> Result<ChannelInfo, ApiError> {
    match reply {
        Reply::Channel(info) => Ok(info),
        other => Err(ApiError::unexpected(op, &other)),
    }
}

/// Keeps the cached list current between full listings.
async fn remember(st: &ApiState, info: &ChannelInfo) {
    if let Err(e) = st.inner.store.cache_channel(info.clone()).await {
        tracing::warn!(error = %e, "could not update the channel cache");
    }
}

pub(super) async fn create(
    State(st): State<ApiState>,
    Body(b): Body<CreateBody>,
) -> Result<(StatusCode, Json<ChannelInfo>), ApiError> {
    let reply = st
        .link()
        .request(Request::CreateChannel {
            name: b.name,
            visibility: b.visibility,
            allow_visitors: b.allow_visitors,
        })
        .await?;
    let info = channel_of("create_channel", reply)?;
    remember(&st, &info).await;
    st.record(
        "CHANNEL_CREATED",
        format!(
            "channel={} owner={} visibility={} allow_visitors={}",
            info.name,
            info.owner,
            info.visibility.as_str(),
            info.allow_visitors
        ),
    );
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn join(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let reply = st
        .link()
        .request(Request::JoinChannel { channel: name })
        .await?;
    let info = channel_of("join_channel", reply)?;
    remember(&st, &info).await;
    st.record("CHANNEL_JOINED", format!("channel={}", info.name));
    Ok(Json(info))
}

#[derive(Debug, Serialize)]
pub struct Left {
    pub channel: String,
    pub left: bool,
}

pub(super) async fn leave(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Left>, ApiError> {
    st.link()
        .request(Request::LeaveChannel {
            channel: name.clone(),
        })
        .await?;
    st.record("CHANNEL_LEFT", format!("channel={name}"));
    if let Err(e) = st.inner.store.uncache_channel(name.clone()).await {
        tracing::warn!(error = %e, "could not update the channel cache");
    }
    Ok(Json(Left {
        channel: name,
        left: true,
    }))
}

/// `PATCH /channels/{name}`: each field optional, absent = unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    topic: Option<String>,
    title: Option<String>,
    visibility: Option<Visibility>,
    allow_visitors: Option<bool>,
}

/// `PATCH /channels/{name}`: the server's `update_channel`.
pub(super) async fn update(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Body(b): Body<UpdateBody>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let change = ChannelChange {
        topic: b.topic,
        title: b.title,
        visibility: b.visibility,
        allow_visitors: b.allow_visitors,
    };
    let info = st.link().update_channel(&name, change).await?;
    remember(&st, &info).await;
    st.record(
        "CHANNEL_UPDATED",
        format!(
            "channel={} visibility={} allow_visitors={}",
            info.name,
            info.visibility.as_str(),
            info.allow_visitors
        ),
    );
    Ok(Json(info))
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub channel: String,
    pub deleted: bool,
}

/// `DELETE /channels/{name}`: the server's `delete_channel`.
pub(super) async fn delete(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    st.link().delete_channel(&name).await?;
    st.record("CHANNEL_DELETED", format!("channel={name}"));
    // The channel_deleted event forgets its messages too; the cache entry
    // goes now, so the next listing never shows it.
    if let Err(e) = st.inner.store.uncache_channel(name.clone()).await {
        tracing::warn!(error = %e, "could not update the channel cache");
    }
    Ok(Json(Deleted {
        channel: name,
        deleted: true,
    }))
}

#[derive(Debug, Serialize)]
pub struct Members {
    pub channel: String,
    pub members: Vec<MemberInfo>,
}

pub(super) async fn members(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Members>, ApiError> {
    match st
        .link()
        .request(Request::Members { channel: name })
        .await?
    {
        Reply::Members { channel, members } => Ok(Json(Members { channel, members })),
        other => Err(ApiError::unexpected("members", &other)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct InviteBody {
    username: String,
}

pub(super) async fn invite(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Body(b): Body<InviteBody>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let username = b.username.clone();
    let reply = st
        .link()
        .request(Request::Invite {
            channel: name,
            username: b.username,
        })
        .await?;
    let info = channel_of("invite", reply)?;
    st.record(
        "CHANNEL_INVITED",
        format!("channel={} user={username}", info.name),
    );
    Ok(Json(info))
}

#[derive(Debug, Deserialize)]
pub(super) struct PeersQuery {
    channel: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Peers {
    pub peers: Vec<PeerInfo>,
}

/// `GET /peers?channel=NAME`: the server's `get_list`.
pub(super) async fn peers(
    State(st): State<ApiState>,
    Query(q): Query<PeersQuery>,
) -> Result<Json<Peers>, ApiError> {
    match st
        .link()
        .request(Request::GetList {
            channel: q.channel,
            users: Vec::new(),
        })
        .await?
    {
        Reply::Peers { peers } => Ok(Json(Peers { peers })),
        other => Err(ApiError::unexpected("get_list", &other)),
    }
}
