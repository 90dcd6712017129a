//! What API subscribers receive on `/api/v1/events`: every tracker event
//! the server pushes, as the protocol serialises it (e.g.
//! `{"type":"presence","username":"bob","status":"offline"}`), plus the
//! node's own notices about its link to the server.

use segchat_proto::tracker::Event;
use serde::Serialize;

/// How many events a slow subscriber may fall behind before it is told it
/// missed some.
pub const EVENT_BUFFER: usize = 256;

/// One event for API subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum NodeEvent {
    /// Pushed by the server.
    Tracker(Event),
    /// About the node itself.
    Node(NodeNotice),
    /// Messages and channel links.
    Chat(crate::chat::ChatEvent),
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
    }
}
