//! Messages: send (through the outbox), history and search from the local
//! store (they work with the network down), unread counts. Search pages
//! newest first with an opaque cursor and counts every match.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use segchat_proto::Failure;

use super::{ApiError, ApiState, Body};
use crate::chat::{History, Via};
use crate::store::{MessageRow, SearchCursor, SearchQuery};

#[derive(Debug, Deserialize)]
pub(super) struct SendBody {
    body: String,
    /// The id of the message this one replies to.
    #[serde(default)]
    reply_to: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct EditBody {
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
    st.inner.activity.input();
    let message = st
        .inner
        .chat
        .send(&name, &body.body, body.reply_to.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// `PATCH /channels/{name}/messages/{id}`: edits one of the user's
/// messages; answers the message as now shown (the edit itself goes
/// through the outbox like a message).
pub(super) async fn edit(
    State(st): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
    Body(body): Body<EditBody>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    let message = st.inner.chat.edit(&name, &id, &body.body).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// `DELETE /channels/{name}/messages/{id}`: deletes a message (the user's
/// own, or anyone's in a channel they own or moderate).
pub(super) async fn delete(
    State(st): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    let message = st.inner.chat.delete(&name, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// `PUT /channels/{name}/messages/{id}/reactions/{emoji}`: adds the
/// user's reaction.
pub(super) async fn react(
    State(st): State<ApiState>,
    Path((name, id, emoji)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    let message = st.inner.chat.react(&name, &id, &emoji, true).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message })))
}

/// `DELETE /channels/{name}/messages/{id}/reactions/{emoji}`: takes the
/// user's reaction back.
pub(super) async fn unreact(
    State(st): State<ApiState>,
    Path((name, id, emoji)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    st.inner.activity.input();
    let message = st.inner.chat.react(&name, &id, &emoji, false).await?;
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

/// `GET /search`'s parameters, all text, so each bad one gets its own
/// reason (see [`search`]).
#[derive(Debug, Deserialize)]
pub(super) struct SearchParams {
    q: Option<String>,
    channel: Option<String>,
    author: Option<String>,
    before: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /search`: a page of matches, newest first.
#[derive(Debug, Serialize)]
pub struct SearchResults {
    pub query: String,
    pub results: Vec<MessageRow>,
    /// How many messages match in all.
    pub total: u64,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /search?q=WORDS`: every message stored here that holds every word
/// (each also as the start of a longer one), newest first. Optional:
/// `channel`, `author` (a username), `before` (exclusive) and `after`
/// (inclusive) as RFC 3339 times, dates (midnight UTC) or milliseconds
/// since 1970, `limit` (1 to 200, default 50) and `cursor` (a previous
/// answer's `next_cursor`). A bad parameter is a 400 that names it.
pub(super) async fn search(
    State(st): State<ApiState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let Query(p) = params.map_err(|r| ApiError(Failure::bad_request(r.body_text())))?;
    let text = p.q.unwrap_or_default();
    let limit = match given(p.limit) {
        None => SearchQuery::DEFAULT_LIMIT,
        Some(l) => l.parse().map_err(|_| {
            bad(format!(
                "limit must be a whole number from 1 to {}, not {l:?}",
                SearchQuery::MAX_LIMIT
            ))
        })?,
    };
    let mut query = SearchQuery::new(&text, limit).map_err(|e| bad(e.to_string()))?;
    query.channel = given(p.channel);
    query.author = given(p.author);
    query.before_ms = given(p.before).map(|t| time("before", &t)).transpose()?;
    query.after_ms = given(p.after).map(|t| time("after", &t)).transpose()?;
    query.cursor = given(p.cursor)
        .map(|c| c.parse::<SearchCursor>())
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let page = st.inner.chat.search(query).await?;
    Ok(Json(SearchResults {
        query: text,
        results: page.results,
        total: page.total,
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// A parameter's value, if it is there and not empty.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
}

fn bad(reason: String) -> ApiError {
    ApiError(Failure::bad_request(reason))
}

/// A time parameter in ms since 1970: RFC 3339, a date (its midnight,
/// UTC) or a number of milliseconds.
fn time(name: &str, v: &str) -> Result<i64, ApiError> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    if let Some(t) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    Err(bad(format!(
        "{name} must be an RFC 3339 time (2025-01-31T18:00:00Z), a date \
         (2025-01-31) or milliseconds since 1970, not {v:?}"
    )))
}

/// `GET /unread`: unread messages per channel, and how each followed
/// channel is reached right now.
#[derive(Debug, Serialize)]
pub struct Unread {
    pub unread: HashMap<String, u64>,
    /// Per channel with unread messages, the id of the first of them
    /// (where the "New" divider goes).
    pub first_unread: HashMap<String, String>,
    /// Per channel, how many unread messages mention the user (`@name`).
    pub mentions: HashMap<String, u64>,
    pub links: HashMap<String, Via>,
}

pub(super) async fn unread(State(st): State<ApiState>) -> Result<Json<Unread>, ApiError> {
    let per_channel = st.inner.chat.unread().await?;
    Ok(Json(Unread {
        first_unread: per_channel
            .iter()
            .map(|u| (u.channel.clone(), u.first_id.clone()))
            .collect(),
        mentions: per_channel
            .iter()
            .filter(|u| u.mentions > 0)
            .map(|u| (u.channel.clone(), u.mentions))
            .collect(),
        unread: per_channel
            .into_iter()
            .map(|u| (u.channel, u.count))
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_times_are_rfc_3339_dates_or_milliseconds() {
        let ms = |v: &str| time("before", v).map_err(|e| e.0.reason);
        assert_eq!(ms("2025-01-31T18:00:00Z"), Ok(1_738_346_400_000));
        assert_eq!(ms("2025-01-31T19:00:00+01:00"), Ok(1_738_346_400_000));
        assert_eq!(
            ms("2025-01-31"),
            Ok(1_738_281_600_000),
            "a date is its midnight, UTC"
        );
        assert_eq!(ms("1738346400000"), Ok(1_738_346_400_000));
        let refused = ms("yesterday").expect_err("not a time");
        assert!(
            refused.starts_with("before must be an RFC 3339 time") && refused.contains("yesterday"),
            "{refused}"
        );
    }
}
