//! Messages: send (through the outbox), history and search from the local
//! store (they work with the network down), unread counts.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Body};
use crate::chat::{History, Via};
use crate::store::MessageRow;

#[derive(Debug, Deserialize)]
pub(super) struct SendBody {
    body: String,
}

/// `POST /channels/{name}/messages`: the message as stored, usually
/// `pending` (the host or server acknowledges it shortly; watch
/// `/events` for `message_state`).
#[derive(Debug, Serialize)]
pub struct Sent {
    pub message: MessageRow,
}

pub(super) async fn send(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Body(body): Body<SendBody>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    let message = st.inner.chat.send(&name, &body.body).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<u32>,
    before: Option<String>,
}

pub(super) async fn history(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    Ok(Json(
        st.inner
            .chat
            .history(&name, q.before, q.limit.unwrap_or(50))
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    q: String,
    channel: Option<String>,
    limit: Option<u32>,
}

/// `GET /search`.
#[derive(Debug, Serialize)]
pub struct SearchResults {
    pub query: String,
    pub results: Vec<MessageRow>,
}

pub(super) async fn search(
    State(st): State<ApiState>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    let results = st
        .inner
        .chat
        .search(&q.q, q.channel, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(SearchResults {
        query: q.q,
        results,
    }))
}

/// `GET /unread`: unread messages per channel, and how each followed
/// channel is reached right now.
#[derive(Debug, Serialize)]
pub struct Unread {
    pub unread: HashMap<String, u64>,
    pub links: HashMap<String, Via>,
}

pub(super) async fn unread(State(st): State<ApiState>) -> Result<Json<Unread>, ApiError> {
    Ok(Json(Unread {
        unread: st.inner.chat.unread().await?,
        links: st.inner.chat.links(),
    }))
}

pub(super) async fn mark_read(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.inner.chat.mark_read(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
