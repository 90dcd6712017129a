//! Seed inputs: real encodings of every frame kind, request, reply and
//! event of both links, the binary broadcast, datagrams of both kinds,
//! tickets and messages, all signed or tagged with the fixed keys. Each
//! seed is in the input form its target reads (see [`crate::frame_input`]).
//! `cargo run -p segchat-fuzz-check --bin seeds` writes them to `corpus/`.

use std::net::SocketAddr;

use bytes::BytesMut;
use segchat_proto::devices::{ClaimedDevice, DeviceKeys, OneTimeKey};
use segchat_proto::frame::{FrameKind, LinkEvent};
use segchat_proto::friends::{FriendAction, Relation, RelationKind};
use segchat_proto::handshake::{Hello, LinkKind, Welcome, PROTOCOL_VERSION};
use segchat_proto::mailbox::{Delivered, Envelope};
use segchat_proto::message::{Draft, Message, Sequenced};
use segchat_proto::stream::{self, Codec, DatagramKind, Header, StreamInfo};
use segchat_proto::ticket::{prove, ProofPurpose, SignedTicket};
use segchat_proto::types::{
    AccountKind, ChannelInfo, MemberInfo, PeerInfo, Presence, Role, SessionInfo, Visibility,
};
use segchat_proto::{peer, tracker, Failure, Frame, Status};
use uuid::Uuid;

use crate::{node_key, session_key, ticket_for};

/// One seed: the target it is for, a file name, the bytes.
#[derive(Debug)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn alice() -> SignedTicket {
    ticket_for("alice").unwrap_or_else(|| unreachable!("a short name signs"))
}

fn message(n: u128, body: &str) -> Message {
    Draft {
        file: None,
        id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n),
        channel: "general",
        author: "alice",
        ts_ms: 1_732_000_000_000 + n as u64,
        body,
        re: None,
    }
    .sign(&node_key(), alice())
    .unwrap_or_else(|e| unreachable!("a short message signs: {e}"))
}

/// The fixed node key's proof for `purpose` on a link whose welcome
/// carried [`crate::NONCE`].
fn proof(purpose: ProofPurpose<'_>) -> String {
    prove(&node_key(), &crate::NONCE, purpose)
        .unwrap_or_else(|e| panic!("a short purpose signs: {e}"))
}

fn addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 22237))
}

fn node_addr() -> segchat_proto::types::NodeAddr {
    segchat_proto::types::NodeAddr {
        node_id: "ef".repeat(32),
        addr: addr(),
    }
}

fn addr6() -> SocketAddr {
    "[2001:db8::7]:22237"
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid address"))
}

fn stream_info() -> StreamInfo {
    StreamInfo {
        stream_id: 7,
        channel: "general".into(),
        streamer: "alice".into(),
        p2p_addr: addr(),
        node_id: "ab".repeat(32),
        width: 640,
        height: 480,
        fps: 30,
        codec: Codec::Mjpeg,
        started_at_ms: 1_732_000_000_000,
    }
}

fn channel_info() -> ChannelInfo {
    ChannelInfo {
        name: "general".into(),
        owner: "alice".into(),
        visibility: Visibility::MembersOnly,
        allow_visitors: true,
        created_at_ms: 1_732_000_000_000,
        member_count: 3,
        my_role: Some(Role::Moderator),
        host: Some(node_addr()),
        title: "General".into(),
        topic: "Everything else".into(),
    }
}

fn peer_info() -> PeerInfo {
    PeerInfo {
        username: "alice".into(),
        kind: AccountKind::User,
        session_id: "s1".into(),
        p2p_addr: addr6(),
        node_id: "cd".repeat(32),
        status: Presence::Idle,
        last_seen_ms: 1_732_000_000_000,
    }
}

fn relation(kind: Option<RelationKind>) -> Relation {
    Relation {
        username: "bob".into(),
        kind,
        since_ms: if kind.is_some() { 1_732_000_000_000 } else { 0 },
        presence: None,
    }
}

fn envelope() -> Envelope {
    Envelope {
        id: message(4, "x").id,
        to: "bob".into(),
        to_node: hex::encode(node_key().verifying_key().as_bytes()),
        body: r#"{"type":0,"body":"AwogJ3d0YWxrIHRoaXMgaXMgb3BhcXVl"}"#.into(),
    }
}

fn delivered() -> Delivered {
    Delivered {
        seq: 4,
        id: message(4, "x").id,
        from: "alice".into(),
        from_node: hex::encode(node_key().verifying_key().as_bytes()),
        body: envelope().body,
        stored_at_ms: 1_732_000_000_000,
    }
}

fn device() -> DeviceKeys {
    DeviceKeys::sign(&node_key(), [1; 32], [2; 32])
}

fn friend() -> Relation {
    Relation {
        presence: Some(segchat_proto::types::Presence::Idle),
        ..relation(Some(RelationKind::Friend))
    }
}

fn tracker_requests() -> Vec<tracker::Request> {
    use tracker::Request::*;
    let ch = || "general".to_string();
    vec![
        Register {
            username: "alice".into(),
            password: "correct horse".into(),
        },
        Login {
            username: "alice".into(),
            password: "correct horse".into(),
        },
        Visit {
            display_name: "Guest ☕".into(),
        },
        Resume {
            token: "0f".repeat(16),
        },
        Logout,
        Whoami,
        SubmitInfo {
            p2p_addr: addr(),
            status: Some(Presence::Online),
        },
        Heartbeat,
        GetList {
            channel: Some(ch()),
            users: Vec::new(),
        },
        GetList {
            channel: None,
            users: Vec::new(),
        },
        GetList {
            channel: None,
            users: vec!["bob".into(), "carol".into()],
        },
        SetStatus {
            status: Presence::Invisible,
        },
        SetActivity { idle: true },
        CreateChannel {
            name: ch(),
            visibility: Visibility::Private,
            allow_visitors: false,
        },
        ListChannels,
        JoinChannel { channel: ch() },
        LeaveChannel { channel: ch() },
        Members { channel: ch() },
        Invite {
            channel: ch(),
            username: "bob".into(),
        },
        GetTicket {
            node_key: hex::encode(node_key().verifying_key().as_bytes()),
        },
        HostChannel { channel: ch() },
        UpdateChannel {
            channel: ch(),
            topic: Some("Ship it".into()),
            title: Some("General chat".into()),
            visibility: Some(Visibility::Private),
            allow_visitors: Some(false),
        },
        DeleteChannel { channel: ch() },
        Backup {
            channel: ch(),
            messages: vec![message(1, "one"), message(2, "two")],
        },
        PostMessage {
            message: message(3, "while the host is away").into(),
        },
        History {
            channel: ch(),
            after_seq: 41,
            limit: 200,
        },
        StartStream {
            channel: ch(),
            width: 640,
            height: 480,
            fps: 30,
            codec: Codec::Mjpeg,
        },
        StopStream { stream_id: 7 },
        ListStreams { channel: None },
        Relations,
        Relate {
            username: "bob".into(),
            action: FriendAction::Request,
        },
        Relate {
            username: "mallory".into(),
            action: FriendAction::Block,
        },
        PublishKeys {
            device: device(),
            one_time_keys: vec![
                OneTimeKey::sign(&node_key(), "AAAAAQ", [3; 32], false),
                OneTimeKey::sign(&node_key(), "AAAAAg", [4; 32], true),
            ],
        },
        ClaimKeys {
            username: "bob".into(),
            have_sessions: vec![hex::encode([5u8; 32])],
        },
        SendDm {
            envelopes: vec![envelope()],
        },
        FetchDms {
            after_seq: 3,
            limit: 50,
        },
        AckDms { up_to_seq: 4 },
    ]
}

fn tracker_replies() -> Vec<tracker::Reply> {
    use tracker::Reply::*;
    vec![
        Session(SessionInfo {
            username: "alice".into(),
            display_name: "alice".into(),
            kind: AccountKind::User,
            session_id: "s1".into(),
            token: "0f".repeat(16),
            status: Presence::Online,
        }),
        Listed(peer_info()),
        Pong {
            server_time_ms: 1_732_000_000_000,
        },
        Peers {
            peers: vec![peer_info()],
        },
        Channel(channel_info()),
        Channels {
            channels: vec![channel_info()],
        },
        Members {
            channel: "general".into(),
            members: vec![MemberInfo {
                username: "bob".into(),
                role: Role::Member,
                presence: Presence::Offline,
            }],
        },
        Done,
        Ticket(alice()),
        Hosting {
            channel: "general".into(),
            server_last_seq: 12,
        },
        BackedUp {
            channel: "general".into(),
            stored: 2,
            server_last_seq: 14,
        },
        Stored {
            id: message(3, "x").id,
            seq: 15,
        },
        Messages {
            channel: "general".into(),
            messages: vec![Sequenced {
                seq: 15,
                message: message(3, "while the host is away"),
            }],
            has_more: false,
        },
        Stream(stream_info()),
        Streams {
            streams: vec![stream_info()],
        },
        Relations {
            relations: vec![friend(), relation(Some(RelationKind::Incoming))],
        },
        Relation(relation(None)),
        KeysPublished { one_time_keys: 50 },
        DmStored {
            stored: 1,
            gone: vec![hex::encode([6u8; 32])],
            missing: vec!["bob".into()],
        },
        Dms {
            envelopes: vec![delivered()],
            has_more: false,
        },
        Devices {
            username: "bob".into(),
            devices: vec![
                ClaimedDevice {
                    keys: device(),
                    one_time_key: Some(OneTimeKey::sign(&node_key(), "AAAAAQ", [3; 32], false)),
                    p2p_addr: Some("192.0.2.7:7000".parse().expect("address")),
                },
                ClaimedDevice {
                    keys: device(),
                    one_time_key: None,
                    p2p_addr: None,
                },
            ],
        },
    ]
}

fn tracker_events() -> Vec<tracker::Event> {
    use tracker::Event::*;
    vec![
        Presence {
            username: "bob".into(),
            status: segchat_proto::types::Presence::Online,
        },
        MemberJoined {
            channel: "general".into(),
            username: "bob".into(),
            role: Role::Member,
        },
        MemberLeft {
            channel: "general".into(),
            username: "bob".into(),
        },
        ChannelCreated {
            channel: channel_info(),
        },
        ChannelUpdated {
            channel: channel_info(),
        },
        ChannelHidden {
            channel: "general".into(),
        },
        ChannelDeleted {
            channel: "general".into(),
        },
        Invited {
            channel: channel_info(),
            by: "alice".into(),
        },
        SessionEnded {
            reason: "logged out".into(),
        },
        from_json(serde_json::json!({
            "type": "session_revoked",
            "session_id": "s1",
            "expires_at_ms": 1_732_086_400_000u64,
        })),
        HostStatus {
            channel: "general".into(),
            host: Some(node_addr()),
        },
        HostStatus {
            channel: "general".into(),
            host: None,
        },
        MessageNotice {
            channel: "general".into(),
            seq: 15,
            id: message(3, "x").id,
            author: "alice".into(),
            count: 1,
        },
        Relation(friend()),
        Dm(delivered()),
        Relation(relation(Some(RelationKind::Blocked))),
        StreamStarted {
            stream: stream_info(),
        },
        StreamStopped {
            stream_id: 7,
            channel: "general".into(),
            reason: "stopped".into(),
        },
    ]
}

fn peer_requests() -> Vec<peer::Request> {
    use peer::Request::*;
    vec![
        from_json(serde_json::json!({
            "op": "peer_connect",
            "ticket": alice(),
            "channel": "general",
            "proof": proof(ProofPurpose::PeerConnect { channel: "general" }),
        })),
        Sync {
            channel: "general".into(),
            after_seq: 10,
            limit: 200,
        },
        Post {
            message: message(4, "hi 👋"),
        },
        from_json(serde_json::json!({
            "op": "watch",
            "ticket": alice(),
            "stream_id": 7,
            "proof": proof(ProofPurpose::Watch { stream_id: 7 }),
        })),
        Unwatch { stream_id: 7 },
        StreamReport {
            stream_id: 7,
            report: segchat_proto::stream::StreamReport {
                frames: 300,
                lost: 2,
                late: 1,
                datagrams: 9000,
                forged: 0,
                fps: 30,
                latency_p50_us: 20_000,
                latency_p95_us: 45_000,
            },
        },
        StreamReport {
            stream_id: 7,
            report: segchat_proto::stream::StreamReport::default(),
        },
        from_json(serde_json::json!({
            "op": "dm",
            "ticket": alice(),
            "proof": proof(ProofPurpose::Dm { id: &envelope().id }),
            "envelope": envelope(),
        })),
        from_json(serde_json::json!({ "op": "ping" })),
    ]
}

fn peer_replies() -> Vec<peer::Reply> {
    use peer::Reply::*;
    vec![
        Connected {
            channel: "general".into(),
            last_seq: 58,
            can_write: true,
        },
        Messages {
            channel: "general".into(),
            messages: vec![
                Sequenced {
                    seq: 57,
                    message: message(5, "a"),
                },
                Sequenced {
                    seq: 58,
                    message: message(6, "b"),
                },
            ],
            has_more: true,
        },
        Stored {
            id: message(4, "x").id,
            seq: 59,
        },
        Watching {
            stream_id: 7,
            viewer_id: 3,
            session_key: session_key().to_hex(),
            width: 640,
            height: 480,
            fps: 30,
            codec: Codec::Mjpeg,
        },
        Done,
        DmKept { id: envelope().id },
        from_json(serde_json::json!({ "type": "pong" })),
    ]
}

fn broadcast(body: &str) -> peer::Event {
    let (message, _) = message(7, body).into_parts();
    peer::Event::Broadcast {
        seq: 60,
        ticket_ref: 3,
        message,
    }
}

fn peer_events() -> Vec<peer::Event> {
    let mut json_broadcast = broadcast("upper-case signature");
    if let peer::Event::Broadcast { message, .. } = &mut json_broadcast {
        message.signature = message.signature.to_uppercase();
    }
    vec![
        broadcast("hi 👋"),
        json_broadcast,
        peer::Event::Ticket {
            ticket_ref: 3,
            ticket: alice(),
        },
        peer::Event::StreamEnded {
            stream_id: 7,
            reason: "stopped".into(),
        },
        from_json(serde_json::json!({
            "type": "rights",
            "channel": "general",
            "can_write": true,
        })),
    ]
}

fn hello(link: LinkKind) -> Hello {
    Hello::new(link, "segchat-node/0.1.0")
}

/// A tracker link's welcome (with the server key) or a peer link's (with
/// a nonce). Made from JSON, so that fields added with a default later do
/// not break this crate.
fn welcome(server_key: String) -> Welcome {
    let mut json = serde_json::json!({
        "agent": "segchat-server/0.1.0",
        "heartbeat_ms": 10_000,
        "peer_ttl_ms": 30_000,
        "max_body_len": 4000,
    });
    if server_key.is_empty() {
        json["nonce"] = hex::encode(crate::NONCE).into();
    } else {
        json["server_key"] = server_key.into();
    }
    let mut w: Welcome = from_json(json);
    w.version = PROTOCOL_VERSION;
    w
}

/// A value of `T` from its JSON (for variants and records whose fields
/// others are still adding to).
fn from_json<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).unwrap_or_else(|e| panic!("a seed's JSON does not decode: {e}"))
}

fn failures() -> Vec<Failure> {
    vec![
        Failure::bad_request("bad body"),
        Failure::new(Status::TooLarge, "frame too large"),
        Failure::new(Status::UnsupportedVersion, "speak version 1"),
        Failure::new(Status::RateLimited, "slow down"),
    ]
}

/// Every frame a link carries, in the target's wrapped form (a kind
/// selector and the payload) and, all of them at once, as one raw stream.
fn link_seeds<Req, Rep, Ev>(
    target: &'static str,
    requests: Vec<Req>,
    replies: Vec<Rep>,
    events: Vec<Ev>,
    link: LinkKind,
) -> Vec<Seed>
where
    Req: serde::Serialize + serde::de::DeserializeOwned,
    Rep: serde::Serialize + serde::de::DeserializeOwned,
    Ev: LinkEvent,
{
    let server_key = if link == LinkKind::Tracker {
        hex::encode(crate::server_key().verifying_key().as_bytes())
    } else {
        String::new()
    };
    let mut frames: Vec<(String, Frame<Req, Rep, Ev>)> = vec![
        ("hello".into(), Frame::Hello(hello(link))),
        ("welcome".into(), Frame::Welcome(welcome(server_key))),
    ];
    for (i, body) in requests.into_iter().enumerate() {
        frames.push((
            format!("request-{i:02}"),
            Frame::Request {
                id: i as u32 + 1,
                body,
            },
        ));
    }
    for (i, rep) in replies.into_iter().enumerate() {
        frames.push((
            format!("response-{i:02}"),
            Frame::Response {
                id: i as u32 + 1,
                result: Ok(rep),
            },
        ));
    }
    for (i, f) in failures().into_iter().enumerate() {
        frames.push((
            format!("response-err-{i}"),
            Frame::Response {
                id: 9,
                result: Err(f.clone()),
            },
        ));
        frames.push((format!("error-{i}"), Frame::Error(f)));
    }
    for (i, ev) in events.into_iter().enumerate() {
        frames.push((format!("event-{i:02}"), Frame::Event(ev)));
    }
    let mut seeds = Vec::new();
    let mut stream = vec![0u8];
    for (name, frame) in frames {
        let mut buf = BytesMut::new();
        frame
            .encode(&mut buf)
            .unwrap_or_else(|e| unreachable!("a seed frame encodes: {e}"));
        stream.extend_from_slice(&buf);
        let kind = FrameKind::from_byte(buf[4]).unwrap_or_else(|| unreachable!("a known kind"));
        let mut bytes = vec![selector(kind)];
        bytes.extend_from_slice(&buf[5..]);
        seeds.push(Seed {
            target,
            name,
            bytes,
        });
    }
    seeds.push(Seed {
        target,
        name: "stream-of-every-frame".into(),
        bytes: stream,
    });
    seeds
}

/// The first byte [`crate::frame_input`] maps to `kind`.
fn selector(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Hello => 1,
        FrameKind::Welcome => 2,
        FrameKind::Request => 3,
        FrameKind::Response => 4,
        FrameKind::Event => 5,
        FrameKind::BinaryEvent => 6,
        FrameKind::Error => 7,
    }
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = link_seeds(
        "tracker_frame",
        tracker_requests(),
        tracker_replies(),
        tracker_events(),
        LinkKind::Tracker,
    );
    seeds.extend(link_seeds(
        "peer_frame",
        peer_requests(),
        peer_replies(),
        peer_events(),
        LinkKind::Peer,
    ));

    for (i, ev) in peer_events().into_iter().enumerate() {
        let mut buf = BytesMut::new();
        if ev.encode_binary(&mut buf) {
            seeds.push(Seed {
                target: "peer_broadcast",
                name: format!("broadcast-{i}"),
                bytes: buf.to_vec(),
            });
        }
    }

    for (sel, link) in [(0u8, LinkKind::Tracker), (2, LinkKind::Peer)] {
        let json = serde_json::to_vec(&hello(link)).unwrap_or_default();
        let mut bytes = vec![sel];
        bytes.extend(crate::versioned(PROTOCOL_VERSION, &json));
        seeds.push(Seed {
            target: "handshake",
            name: format!("hello-{link:?}").to_lowercase(),
            bytes,
        });
    }
    for (name, key) in [
        (
            "tracker",
            hex::encode(crate::server_key().verifying_key().as_bytes()),
        ),
        ("peer", String::new()),
    ] {
        let json = serde_json::to_vec(&welcome(key)).unwrap_or_default();
        let mut bytes = vec![1u8];
        bytes.extend(crate::versioned(PROTOCOL_VERSION, &json));
        seeds.push(Seed {
            target: "handshake",
            name: format!("welcome-{name}"),
            bytes,
        });
    }

    let key = session_key();
    let datagrams = [
        (
            "chunk-first",
            Header {
                kind: DatagramKind::Chunk,
                stream_id: 7,
                frame: 12,
                chunk: 0,
                count: 3,
                capture_us: 1_732_000_000_000_000,
            },
            vec![0xffu8, 0xd8, 0xff, 0xe0],
        ),
        (
            "chunk-last-full",
            Header {
                kind: DatagramKind::Chunk,
                stream_id: 7,
                frame: 12,
                chunk: 2,
                count: 3,
                capture_us: 1_732_000_000_000_000,
            },
            vec![0x5a; stream::MAX_PAYLOAD],
        ),
        ("probe", Header::probe(7, 3, 1), vec![]),
        (
            "probe-answering-a-challenge",
            Header::probe(7, 3, 2),
            vec![0x9c; stream::CHALLENGE_LEN],
        ),
        (
            "challenge",
            Header::challenge(7, 3),
            vec![0x9c; stream::CHALLENGE_LEN],
        ),
    ];
    for (name, header, payload) in datagrams {
        let mut out = vec![0u8];
        if stream::encode(&header, &payload, &key, &mut out).is_ok() {
            seeds.push(Seed {
                target: "stream_datagram",
                name: format!("received-{name}"),
                bytes: out,
            });
        }
        let kind = match header.kind {
            DatagramKind::Chunk => 0,
            DatagramKind::Probe => 1,
            DatagramKind::Challenge => 2,
        };
        let mut fields = vec![1u8, kind];
        fields.extend_from_slice(&header.stream_id.to_be_bytes());
        fields.extend_from_slice(&header.frame.to_be_bytes());
        fields.extend_from_slice(&header.chunk.to_be_bytes());
        fields.extend_from_slice(&header.count.to_be_bytes());
        fields.extend_from_slice(&header.capture_us.to_be_bytes());
        fields.extend_from_slice(&payload[..payload.len().min(64)]);
        seeds.push(Seed {
            target: "stream_datagram",
            name: format!("fields-{name}"),
            bytes: fields,
        });
    }

    let mut visitor = alice();
    visitor.ticket.kind = AccountKind::Visitor;
    for (name, t) in [("alice", alice()), ("visitor-unsigned", visitor)] {
        seeds.push(Seed {
            target: "ticket",
            name: format!("ticket-{name}"),
            bytes: serde_json::to_vec(&t).unwrap_or_default(),
        });
    }

    for (i, request) in peer_requests().into_iter().take(4).enumerate() {
        if matches!(
            request,
            peer::Request::PeerConnect { .. } | peer::Request::Watch { .. }
        ) {
            seeds.push(Seed {
                target: "ticket",
                name: format!("admission-{i}"),
                bytes: serde_json::to_vec(&request).unwrap_or_default(),
            });
        }
    }

    let good = message(8, "hello, world");
    let mut forged = good.clone();
    forged.author = "bob".into();
    seeds.push(Seed {
        target: "message",
        name: "message".into(),
        bytes: serde_json::to_vec(&good).unwrap_or_default(),
    });
    seeds.push(Seed {
        target: "message",
        name: "message-forged-author".into(),
        bytes: serde_json::to_vec(&forged).unwrap_or_default(),
    });
    // An edit, and a reply whose body a store redacted (both still verify).
    let edit = Draft {
        file: None,
        id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_000a),
        channel: "general",
        author: "alice",
        ts_ms: 1_732_000_000_010,
        body: "hello, world (fixed)",
        re: Some(segchat_proto::edits::Ref {
            kind: segchat_proto::edits::RefKind::Edit,
            id: good.id,
        }),
    }
    .sign(&node_key(), alice())
    .unwrap_or_else(|e| unreachable!("a short edit signs: {e}"));
    let mut redacted = edit.clone();
    redacted.redact();
    for (name, m) in [("message-edit", &edit), ("message-redacted", &redacted)] {
        seeds.push(Seed {
            target: "message",
            name: name.into(),
            bytes: serde_json::to_vec(m).unwrap_or_default(),
        });
    }
    seeds.push(Seed {
        target: "message",
        name: "sequenced".into(),
        bytes: serde_json::to_vec(&Sequenced {
            seq: 3,
            message: message(9, "escaped \"quotes\" and \u{1} control"),
        })
        .unwrap_or_default(),
    });
    seeds
}
