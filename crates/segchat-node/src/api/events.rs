//! `GET /events`: a WebSocket that carries every [`NodeEvent`] as a JSON
//! text message. A subscriber that falls behind is told how many events it
//! missed (`{"type":"lagged","missed":N}`) rather than stalling anybody.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use segchat_proto::tracker::Event;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::ApiState;
use crate::chat::Chat;
use crate::events::{ChatEvent, NodeEvent, NodeNotice};

pub(super) async fn subscribe(State(st): State<ApiState>, ws: WebSocketUpgrade) -> Response {
    // Subscribe before the upgrade completes, so nothing after it is missed.
    let rx = st.inner.bus.subscribe();
    let shutdown = st.inner.shutdown.clone();
    let activity = st.inner.activity.clone();
    let chat = st.inner.chat.clone();
    ws.on_upgrade(move |socket| async move {
        // An open event stream is an attached client (presence).
        let _attached = activity.attach();
        pump(socket, rx, shutdown, chat).await
    })
}

async fn pump(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<NodeEvent>,
    shutdown: CancellationToken,
    chat: Chat,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            ev = rx.recv() => match ev {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    NodeEvent::Node(NodeNotice::Lagged { missed })
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        // An edit, deletion or reaction: the message it changed, as shown
        // now (read when sent, so the latest state wins).
        let event = match event {
            NodeEvent::Chat(ChatEvent::Acted { target, .. }) => match chat.shown(target).await {
                Some(message) => NodeEvent::Chat(ChatEvent::MessageUpdated { message }),
                None => continue,
            },
            // A reply's quote and a mention are read from the store (the
            // row was published before the store decorated it).
            NodeEvent::Chat(ChatEvent::Message { message })
                if message.reply_to.is_some() || message.body.contains('@') =>
            {
                let message = chat.shown(message.id.clone()).await.unwrap_or(message);
                NodeEvent::Chat(ChatEvent::Message { message })
            }
            // A sealed envelope: the DM service opens it and publishes
            // `direct_message`.
            NodeEvent::Tracker(Event::Dm(_)) => continue,
            // Between the node and the server only (`crate::relay`).
            NodeEvent::Tracker(Event::RelayWanted { .. }) => continue,
            ev => ev,
        };
        let text = match serde_json::to_string(&event) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "could not serialise an event");
                continue;
            }
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}
