//! `/dms…`: direct messages, end-to-end encrypted (`dm::service`). A
//! conversation is named in the path by its other members: one username,
//! or several joined by `,` for a group. History and the list work from
//! the local store, with the network down too; new messages and state
//! changes arrive on `/events` as `direct_message` and
//! `direct_message_updated`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use segchat_proto::edits::RefKind;
use segchat_proto::types::validate_username;
use segchat_proto::{Failure, Status};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Body};
use crate::dm::service::{DmError, SafetyNumber};
use crate::store::{Conversation, DmRow};

impl From<DmError> for ApiError {
    fn from(e: DmError) -> Self {
        match e {
            DmError::NotSignedIn => ApiError(Failure::new(Status::Unauthorized, e.to_string())),
            DmError::Invalid(why) => ApiError(Failure::bad_request(why)),
            DmError::Refused(f) => ApiError(f),
            DmError::Local(why) => ApiError::internal("direct messages", &why),
        }
    }
}

/// The other members named in the path, each checked as a username.
pub(super) fn others(path: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = path.split(',').map(str::to_owned).collect();
    for n in &names {
        validate_username(n).map_err(|why| ApiError(Failure::bad_request(why)))?;
    }
    if names.len() >= segchat_proto::dm::MAX_MEMBERS {
        return Err(ApiError(Failure::bad_request(format!(
            "a conversation has at most {} members",
            segchat_proto::dm::MAX_MEMBERS
        ))));
    }
    Ok(names)
}

/// `GET /dms`.
#[derive(Debug, Serialize)]
pub(super) struct Conversations {
    conversations: Vec<Conversation>,
}

pub(super) async fn list(State(st): State<ApiState>) -> Result<Json<Conversations>, ApiError> {
    let conversations = st.inner.dms.conversations().await?;
    Ok(Json(Conversations { conversations }))
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<u32>,
    /// `sent_at_ms` and id of the oldest message shown: the page before
    /// it.
    before_ms: Option<u64>,
    before_id: Option<String>,
}

/// `GET /dms/{users}` (and `/dm-search`).
#[derive(Debug, Serialize)]
pub(super) struct History {
    /// Oldest first (search: newest first).
    messages: Vec<DmRow>,
}

pub(super) async fn history(
    State(st): State<ApiState>,
    Path(users): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let with = others(&users)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let before = q
        .before_ms
        .map(|ms| (ms, q.before_id.clone().unwrap_or_default()));
    let messages = st.inner.dms.history(&with, before, limit).await?;
    Ok(Json(History { messages }))
}

#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    q: String,
    limit: Option<u32>,
}

/// `GET /dm-search?q=`: direct messages holding every word, newest first.
pub(super) async fn search(
    State(st): State<ApiState>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<History>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let messages = st.inner.dms.search(&q.q, limit).await?;
    Ok(Json(History { messages }))
}

#[derive(Debug, Deserialize)]
pub(super) struct SendBody {
    text: String,
    /// The id of the message this one replies to.
    #[serde(default)]
    reply_to: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct EditBody {
    text: String,
}

/// `POST /dms/{users}`: the message as kept, `sent` when the server took
/// it, `pending` when it waits in the outbox (no server now).
#[derive(Debug, Serialize)]
pub(super) struct Sent {
    pub(super) message: DmRow,
}

pub(super) async fn send(
    State(st): State<ApiState>,
    Path(users): Path<String>,
    Body(body): Body<SendBody>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    let to = others(&users)?;
    let message = st
        .inner
        .dms
        .send(&to, &body.text, body.reply_to.as_deref(), None)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// One of the user's actions on message `id` of the conversation with
/// `users`: the message as shown now.
async fn act(
    st: &ApiState,
    users: &str,
    id: &str,
    kind: RefKind,
    text: &str,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    let to = others(users)?;
    let message = st.inner.dms.act(&to, id, kind, text).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// `PATCH /dms/{users}/messages/{id}`: edits one of the user's messages.
pub(super) async fn edit(
    State(st): State<ApiState>,
    Path((users, id)): Path<(String, String)>,
    Body(body): Body<EditBody>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    act(&st, &users, &id, RefKind::Edit, &body.text).await
}

/// `DELETE /dms/{users}/messages/{id}`: deletes one of the user's
/// messages on every device of the conversation.
pub(super) async fn delete(
    State(st): State<ApiState>,
    Path((users, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    act(&st, &users, &id, RefKind::Delete, "").await
}

/// `PUT /dms/{users}/messages/{id}/reactions/{emoji}`: adds the user's
/// reaction.
pub(super) async fn react(
    State(st): State<ApiState>,
    Path((users, id, emoji)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    act(&st, &users, &id, RefKind::React, &emoji).await
}

/// `DELETE /dms/{users}/messages/{id}/reactions/{emoji}`: takes the
/// user's reaction back.
pub(super) async fn unreact(
    State(st): State<ApiState>,
    Path((users, id, emoji)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    act(&st, &users, &id, RefKind::Unreact, &emoji).await
}

/// `GET /dms/{user}/safety`: the safety number to compare with them.
pub(super) async fn safety(
    State(st): State<ApiState>,
    Path(user): Path<String>,
) -> Result<Json<SafetyNumber>, ApiError> {
    validate_username(&user).map_err(|why| ApiError(Failure::bad_request(why)))?;
    Ok(Json(st.inner.dms.safety_number(&user).await?))
}

/// `POST /dms/{users}/read`.
#[derive(Debug, Serialize)]
pub(super) struct Read {
    /// How many messages were newly marked read.
    read: usize,
}

pub(super) async fn mark_read(
    State(st): State<ApiState>,
    Path(users): Path<String>,
) -> Result<Json<Read>, ApiError> {
    let with = others(&users)?;
    let read = st.inner.dms.mark_read(&with).await?;
    Ok(Json(Read { read }))
}
