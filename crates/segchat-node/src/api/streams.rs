//! Livestreams: start (test pattern, or frames pushed as JPEG), stop,
//! list, watch, statistics and the latest frame.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/streams?channel=` | live streams (server), this node's, watched |
//! | POST | `/streams` | start `{channel, source: "test_pattern"\|"push", width, height, fps}` |
//! | GET, DELETE | `/streams/{id}` | statistics (as streamer and/or viewer); stop |
//! | POST | `/streams/{id}/frames` | push one JPEG frame (`image/jpeg` body) |
//! | GET | `/streams/{id}/frame` | the newest whole frame (`image/jpeg`) |
//! | POST, DELETE | `/streams/{id}/watch` | watch; stop watching |
//! | GET | `/streams/{id}/ws` | WebSocket: JPEG frames (binary) and stats (text) |

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use segchat_proto::stream::StreamInfo;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::Failure;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Body};
use crate::stream::{OwnView, StartStream, Streams, WatchView};

fn streams(st: &ApiState) -> &Streams {
    &st.inner.streams
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    channel: Option<String>,
}

/// `GET /streams`.
#[derive(Debug, Serialize)]
pub struct StreamList {
    /// Live streams the user may watch, from the server.
    pub streams: Vec<StreamInfo>,
    /// This node's own streams.
    pub own: Vec<OwnView>,
    /// Streams this node watches.
    pub watching: Vec<WatchView>,
}

pub(super) async fn list(
    State(st): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<StreamList>, ApiError> {
    let s = streams(&st);
    let streams = match st
        .link()
        .request(Request::ListStreams {
            channel: q.channel.clone(),
        })
        .await?
    {
        Reply::Streams { streams } => streams,
        other => return Err(ApiError::unexpected("list_streams", &other)),
    };
    Ok(Json(StreamList {
        streams,
        own: s.own(),
        watching: s.watching(),
    }))
}

/// `POST /streams`.
#[derive(Debug, Serialize)]
pub struct Started {
    pub stream: StreamInfo,
}

pub(super) async fn start(
    State(st): State<ApiState>,
    Body(body): Body<StartStream>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let stream = streams(&st).start(body).await?;
    Ok((StatusCode::CREATED, Json(Started { stream })))
}

/// `GET /streams/{id}`: this node's view of a stream.
#[derive(Debug, Serialize)]
pub struct StreamStats {
    /// Set if this node streams it: viewers and their reports.
    pub streaming: Option<OwnView>,
    /// Set if this node watches it: state, loss, latency, bitrate.
    pub watching: Option<WatchView>,
}

pub(super) async fn stats(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<Json<StreamStats>, ApiError> {
    let s = streams(&st);
    let stats = StreamStats {
        streaming: s.own_view(id),
        watching: s.watch_view(id),
    };
    if stats.streaming.is_none() && stats.watching.is_none() {
        return Err(ApiError(Failure::not_found(format!(
            "this node neither streams nor watches stream {id}"
        ))));
    }
    Ok(Json(stats))
}

pub(super) async fn stop(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    streams(&st).stop(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn push_frame(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
    jpeg: Bytes,
) -> Result<StatusCode, ApiError> {
    streams(&st).push_frame(id, jpeg)?;
    Ok(StatusCode::ACCEPTED)
}

/// The newest whole frame: of the watched stream, else of this node's.
/// Headers `X-Frame-Capture-Us` (capture time, µs since the epoch) and,
/// when watched, `X-Frame-Number`.
pub(super) async fn latest_frame(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let s = streams(&st);
    let (number, capture_us, jpeg) = match s.latest_frame(id) {
        Some(f) => (Some(f.number), f.capture_us, f.jpeg),
        None => {
            let (capture_us, jpeg) = s.own_latest(id).ok_or_else(|| {
                ApiError(Failure::not_found(format!("no frame of stream {id} yet")))
            })?;
            (None, capture_us, jpeg)
        }
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, "image/jpeg".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::HeaderName::from_static("x-frame-capture-us"),
                capture_us.to_string(),
            ),
        ],
        jpeg,
    )
        .into_response();
    if let Some(n) = number {
        if let Ok(v) = n.to_string().parse() {
            resp.headers_mut()
                .insert(header::HeaderName::from_static("x-frame-number"), v);
        }
    }
    Ok(resp)
}

pub(super) async fn watch(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<Json<WatchView>, ApiError> {
    Ok(Json(streams(&st).watch(id).await?))
}

pub(super) async fn unwatch(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    streams(&st).unwatch(id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Seconds between two statistics messages on a stream's WebSocket.
const WS_STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /streams/{id}/ws`: a WebSocket of one stream, for the web UI. Each
/// whole frame of a watched stream as it completes, as a binary message
/// (the JPEG; a slow reader gets the newest and skips the rest), and
/// [`StreamStats`] as a text message (JSON) at once and then every second.
/// Closes when this node neither streams nor watches the stream any more.
pub(super) async fn socket(
    State(st): State<ApiState>,
    Path(id): Path<u64>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let s = streams(&st).clone();
    if s.own_view(id).is_none() && s.watch_view(id).is_none() {
        return Err(ApiError(Failure::not_found(format!(
            "this node neither streams nor watches stream {id}"
        ))));
    }
    let shutdown = st.inner.shutdown.clone();
    Ok(ws.on_upgrade(move |socket| stream_pump(socket, s, id, shutdown)))
}

async fn stream_pump(
    mut socket: WebSocket,
    s: Streams,
    id: u64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut frames = s.frames(id);
    let mut tick = tokio::time::interval(WS_STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                let stats = StreamStats {
                    streaming: s.own_view(id),
                    watching: s.watch_view(id),
                };
                if stats.streaming.is_none() && stats.watching.is_none() {
                    break;
                }
                if frames.is_none() {
                    frames = s.frames(id);
                }
                let Ok(text) = serde_json::to_string(&stats) else { continue };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            changed = async {
                match frames.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    frames = None;
                    continue;
                }
                let frame = frames.as_mut().and_then(|rx| rx.borrow_and_update().clone());
                if let Some(f) = frame {
                    if socket.send(Message::Binary(f.jpeg)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
