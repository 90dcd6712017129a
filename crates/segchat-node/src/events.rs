//! The node's event bus and what travels on it.
//!
//! The node owns one [`EventBus`], built in `node.rs` and handed to every
//! part that speaks or listens: the server link publishes the server's
//! events and its own notices, chat publishes messages and channel links,
//! and the API's `/api/v1/events` WebSocket, the chat supervisor and the
//! livestreams subscribe. Nobody owns the bus but the node, so no part
//! reaches another through it.
//!
//! Events serialise flat, as API subscribers receive them: every tracker
//! event the server pushes as the protocol serialises it (e.g.
//! `{"type":"presence","username":"bob","status":"offline"}`), plus the
//! node's own notices and chat's events.
//!
//! Invariant: publishing never waits. A subscriber that falls
//! [`EVENT_BUFFER`] events behind loses the oldest and is told how many.

use segchat_proto::tracker::Event;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{DeliveryState, DmRow, MessageRow};

/// How many events a slow subscriber may fall behind before it is told it
/// missed some.
pub const EVENT_BUFFER: usize = 256;

/// The node's event bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<NodeEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    /// An empty bus holding up to [`EVENT_BUFFER`] events per subscriber.
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        EventBus { tx }
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.tx.subscribe()
    }

    /// Hands `event` to every subscriber (none: dropped).
    pub fn publish(&self, event: NodeEvent) {
        let _ = self.tx.send(event);
    }
}

/// One event on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum NodeEvent {
    /// Pushed by the server.
    Tracker(Event),
    /// About the node itself.
    Node(NodeNotice),
    /// Messages and channel links.
    Chat(ChatEvent),
}

/// The node's own notices. Their `type` never collides with a tracker
/// event's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeNotice {
    /// The link to the server is up (and signed in again, if it was).
    ServerConnected,
    /// The link to the server dropped; the node is reconnecting.
    ServerDisconnected,
    /// This subscriber fell behind and `missed` events were dropped.
    Lagged { missed: u64 },
}

/// Chat events for API subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A message reached the local store (new to this node).
    Message { message: MessageRow },
    /// A message changed: edited, deleted, or its reactions (the row as
    /// it is shown now).
    MessageUpdated { message: MessageRow },
    /// An edit, deletion or reaction pointing at `target` reached the
    /// local store. Internal: the API's event stream sends the target as
    /// `message_updated` instead.
    Acted { channel: String, target: String },
    /// A message the user wrote changed delivery state.
    MessageState {
        id: String,
        channel: String,
        state: DeliveryState,
        reason: Option<String>,
    },
    /// How this node is reading and writing a channel now.
    ChannelLink { channel: String, via: Via },
    /// A direct message reached this node (sent here, or arrived). Not
    /// the server's `dm` event, which carries the sealed envelope and
    /// stays inside the node.
    DirectMessage { message: DmRow },
    /// A direct message's state changed (the row as it is now).
    DirectMessageUpdated { message: DmRow },
}

/// How a channel is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// This node hosts it.
    Hosting,
    /// P2P to its host.
    Host,
    /// Through the server's backup (the host is offline or unreachable).
    Server,
    /// Neither the host nor the server is reachable: local history only.
    Offline,
}

#[cfg(test)]
mod tests {
    use super::*;
    use segchat_proto::types::Presence;

    #[test]
    fn events_serialise_flat_with_a_type() {
        let ev = NodeEvent::Tracker(Event::Presence {
            username: "bob".into(),
            status: Presence::Offline,
        });
        assert_eq!(
            serde_json::to_string(&ev).expect("json"),
            r#"{"type":"presence","username":"bob","status":"offline"}"#
        );
        let ev = NodeEvent::Node(NodeNotice::ServerConnected);
        assert_eq!(
            serde_json::to_string(&ev).expect("json"),
            r#"{"type":"server_connected"}"#
        );
        let ev = NodeEvent::Chat(ChatEvent::ChannelLink {
            channel: "ops".into(),
            via: Via::Server,
        });
        assert_eq!(
            serde_json::to_string(&ev).expect("json"),
            r#"{"type":"channel_link","channel":"ops","via":"server"}"#
        );
    }

    #[tokio::test]
    async fn every_subscriber_hears_what_is_published_after_it_subscribed() {
        let bus = EventBus::new();
        bus.publish(NodeEvent::Node(NodeNotice::ServerConnected));
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.publish(NodeEvent::Node(NodeNotice::ServerDisconnected));
        for rx in [&mut a, &mut b] {
            assert_eq!(
                rx.recv().await.expect("event"),
                NodeEvent::Node(NodeNotice::ServerDisconnected)
            );
        }
    }
}
