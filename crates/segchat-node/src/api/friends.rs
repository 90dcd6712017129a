//! `/friends…` and `/blocks…`: the signed-in user's friends, friend
//! requests and blocks, as the server keeps them (`relations`, `relate`).
//! Changes arrive live on `/events` as `relation` events, those made
//! through this API included.

use axum::extract::{Path, State};
use axum::Json;
use segchat_proto::friends::{FriendAction, Relation};
use segchat_proto::tracker::{Event, Reply, Request};
use serde::Serialize;

use super::{ApiError, ApiState};
use crate::events::NodeEvent;

/// `GET /friends`.
#[derive(Debug, Serialize)]
pub(super) struct Relations {
    /// Friends, requests both ways and blocks, by name.
    relations: Vec<Relation>,
}

pub(super) async fn list(State(st): State<ApiState>) -> Result<Json<Relations>, ApiError> {
    match st.link().request(Request::Relations).await? {
        Reply::Relations { relations } => Ok(Json(Relations { relations })),
        other => Err(ApiError::unexpected("relations", &other)),
    }
}

async fn relate(
    st: &ApiState,
    username: String,
    action: FriendAction,
) -> Result<Json<Relation>, ApiError> {
    let request = Request::Relate {
        username: username.clone(),
        action,
    };
    match st.link().request(request).await? {
        Reply::Relation(r) => {
            let kind = r.kind.map_or("none", |k| k.as_str());
            st.record(
                "FRIEND_CHANGED",
                format!("user={username} action={} now={kind}", action.as_str()),
            );
            // The server tells this node's other connections, not the
            // one the change came through: this node's other clients
            // (another tab, the CLI's watcher) learn it here.
            st.inner
                .bus
                .publish(NodeEvent::Tracker(Event::Relation(r.clone())));
            Ok(Json(r))
        }
        other => Err(ApiError::unexpected("relate", &other)),
    }
}

/// `POST /friends/{username}`: ask to be friends (accepts if they asked).
pub(super) async fn request(
    State(st): State<ApiState>,
    Path(username): Path<String>,
) -> Result<Json<Relation>, ApiError> {
    relate(&st, username, FriendAction::Request).await
}

/// `POST /friends/{username}/accept`.
pub(super) async fn accept(
    State(st): State<ApiState>,
    Path(username): Path<String>,
) -> Result<Json<Relation>, ApiError> {
    relate(&st, username, FriendAction::Accept).await
}

/// `DELETE /friends/{username}`: unfriend, decline or cancel.
pub(super) async fn remove(
    State(st): State<ApiState>,
    Path(username): Path<String>,
) -> Result<Json<Relation>, ApiError> {
    relate(&st, username, FriendAction::Remove).await
}

/// `PUT /blocks/{username}`.
pub(super) async fn block(
    State(st): State<ApiState>,
    Path(username): Path<String>,
) -> Result<Json<Relation>, ApiError> {
    relate(&st, username, FriendAction::Block).await
}

/// `DELETE /blocks/{username}`.
pub(super) async fn unblock(
    State(st): State<ApiState>,
    Path(username): Path<String>,
) -> Result<Json<Relation>, ApiError> {
    relate(&st, username, FriendAction::Unblock).await
}
