//! This node's own streams: registered with the server, frames from a
//! source chunked and sent to every admitted viewer, each datagram tagged
//! with that viewer's session key.

use std::collections::{HashMap, HashSet};

use bytes::{Bytes, BytesMut};
use rand::RngCore;
use segchat_proto::peer;
use segchat_proto::stream::{
    self as wire, Codec, DatagramKind, Header, SessionKey, StreamInfo, StreamReport, CHALLENGE_LEN,
    MAX_CHUNKS, MAX_FRAME_BYTES, MAX_PAYLOAD, SESSION_KEY_LEN,
};
use segchat_proto::ticket::{decode_key, ProofPurpose};
use segchat_proto::types::AccountKind;
use segchat_proto::{Failure, Frame, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::source::{self, SourceFrame};
use super::{is_forgery, lock, Streams};
use crate::acl::ChannelAcl;
use crate::link::StreamRequest;
use crate::p2p::{Outbound, PeerLink};
use crate::transport::Target;

/// How often a viewer's new address may be challenged.
const CHALLENGE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Frames waiting for the sender; more are dropped (never queue latency).
const SOURCE_QUEUE: usize = 2;

/// Where a stream's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The built-in moving test pattern.
    TestPattern,
    /// JPEG frames pushed through the API (`POST /streams/{id}/frames`),
    /// e.g. by the web UI from a webcam.
    Push,
}

/// What `POST /streams` asks for.
#[derive(Debug, Clone, Deserialize)]
pub struct StartStream {
    pub channel: String,
    pub source: SourceKind,
    #[serde(default = "default_width")]
    pub width: u16,
    #[serde(default = "default_height")]
    pub height: u16,
    #[serde(default = "default_fps")]
    pub fps: u8,
}

fn default_width() -> u16 {
    640
}
fn default_height() -> u16 {
    480
}
fn default_fps() -> u8 {
    30
}

#[derive(Debug)]
struct Viewer {
    user: String,
    /// The session of the ticket it was admitted with.
    session: String,
    conn: u64,
    /// Where frames go: datagrams on the viewer's peer connection.
    target: Target,
    key: SessionKey,
    /// The highest probe counter seen: older or equal ones are replays.
    probes: u64,
    /// A challenge sent to an address probes came from: where, what, when.
    /// The stream moves there only when a probe from it answers.
    challenge: Option<(Target, [u8; CHALLENGE_LEN], std::time::Instant)>,
    events: Outbound,
    joined_ms: u64,
    report: Option<StreamReport>,
}

#[derive(Debug)]
pub(super) struct Own {
    info: StreamInfo,
    source: SourceKind,
    acl: ChannelAcl,
    viewers: HashMap<u32, Viewer>,
    next_viewer: u32,
    frames: mpsc::Sender<SourceFrame>,
    latest: Option<SourceFrame>,
    frames_sent: u64,
    bytes_sent: u64,
    cancel: CancellationToken,
}

/// One viewer as the streamer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerView {
    pub viewer_id: u32,
    pub user: String,
    /// The path its datagrams take: `direct <addr>` or `relayed`.
    pub path: String,
    pub joined_at_ms: u64,
    /// The viewer's last report (loss, latency), if any yet.
    pub report: Option<StreamReport>,
}

/// One of this node's streams.
#[derive(Debug, Clone, Serialize)]
pub struct OwnView {
    pub stream: StreamInfo,
    pub source: SourceKind,
    pub viewer_count: usize,
    pub viewers: Vec<ViewerView>,
    pub frames_sent: u64,
    /// Datagram bytes sent to all viewers together.
    pub bytes_sent: u64,
}

impl Own {
    fn view(&self) -> OwnView {
        let mut viewers: Vec<ViewerView> = self
            .viewers
            .iter()
            .map(|(id, v)| ViewerView {
                viewer_id: *id,
                user: v.user.clone(),
                path: crate::transport::path_of(&v.target.0).to_string(),
                joined_at_ms: v.joined_ms,
                report: v.report.clone(),
            })
            .collect();
        viewers.sort_by_key(|v| v.viewer_id);
        OwnView {
            stream: self.info.clone(),
            source: self.source,
            viewer_count: viewers.len(),
            viewers,
            frames_sent: self.frames_sent,
            bytes_sent: self.bytes_sent,
        }
    }
}

fn encode_event(ev: peer::Event) -> Option<Bytes> {
    let frame: Frame<peer::Request, peer::Reply, peer::Event> = Frame::Event(ev);
    let mut buf = BytesMut::new();
    frame.encode(&mut buf).ok()?;
    Some(buf.freeze())
}

impl Streams {
    /// Starts a stream: the server records it (and refuses visitors and
    /// non-writers), then the source and the sender start.
    pub async fn start(&self, req: StartStream) -> Result<StreamInfo, Failure> {
        let me = self
            .link()
            .state()
            .session
            .ok_or_else(|| Failure::unauthorized("sign in first"))?;
        if me.kind == AccountKind::Visitor {
            return Err(Failure::forbidden(
                "visitors may watch streams but not start them; register an account to stream",
            ));
        }
        let channel = self
            .link()
            .list_channels()
            .await?
            .into_iter()
            .find(|c| c.name == req.channel)
            .ok_or_else(|| Failure::not_found(format!("no channel named {:?}", req.channel)))?;
        let info = self
            .link()
            .start_stream(StreamRequest {
                channel: req.channel.clone(),
                width: req.width,
                height: req.height,
                fps: req.fps,
                codec: Codec::Mjpeg,
            })
            .await?;
        let members = self.members(&req.channel).await.unwrap_or_default();
        let (tx, rx) = mpsc::channel(SOURCE_QUEUE);
        let cancel = self.inner.shutdown.child_token();
        if req.source == SourceKind::TestPattern {
            if let Err(e) = source::spawn_test_pattern(
                req.width,
                req.height,
                req.fps,
                tx.clone(),
                cancel.clone(),
            ) {
                tracing::error!(error = %e, "could not start the test pattern");
                let _ = self.link().stop_stream(info.stream_id).await;
                return Err(Failure::server_error());
            }
        }
        lock(&self.inner.own).insert(
            info.stream_id,
            Own {
                info: info.clone(),
                source: req.source,
                acl: ChannelAcl::new(channel.visibility, channel.allow_visitors, members),
                viewers: HashMap::new(),
                next_viewer: 1,
                frames: tx,
                latest: None,
                frames_sent: 0,
                bytes_sent: 0,
                cancel: cancel.clone(),
            },
        );
        tokio::spawn(self.clone().send_loop(info.stream_id, rx, cancel));
        self.log().record(
            "STREAM_START",
            info.p2p_addr,
            format!(
                "stream={} channel={} streamer={} {}x{}@{} codec={} source={:?}",
                info.stream_id,
                info.channel,
                info.streamer,
                info.width,
                info.height,
                info.fps,
                info.codec.as_str(),
                req.source
            ),
        );
        Ok(info)
    }

    async fn members(&self, channel: &str) -> Option<HashSet<String>> {
        let members = self.link().members(channel).await.ok()?;
        Some(members.into_iter().map(|m| m.username).collect())
    }

    /// Stops one of this node's streams and tells the server and viewers.
    pub async fn stop(&self, stream_id: u64) -> Result<(), Failure> {
        if !self.end_own(stream_id, "stopped by the streamer") {
            return Err(Failure::not_found(format!(
                "this node has no live stream {stream_id}"
            )));
        }
        match self.link().stop_stream(stream_id).await {
            Ok(_) => Ok(()),
            // Already gone there (e.g. the link dropped meanwhile).
            Err(f) if f.status == Status::NotFound || f.status == Status::Unavailable => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// Ends an own stream locally: stops the source and sender, tells and
    /// forgets its viewers. False if there was no such stream.
    fn end_own(&self, stream_id: u64, reason: &str) -> bool {
        let Some(own) = lock(&self.inner.own).remove(&stream_id) else {
            return false;
        };
        own.cancel.cancel();
        for (id, v) in &own.viewers {
            if let Some(b) = encode_event(peer::Event::StreamEnded {
                stream_id,
                reason: reason.to_owned(),
            }) {
                let _ = v.events.send(b);
            }
            self.log().record(
                "VIEWER_LEAVE",
                crate::transport::log_addr(&v.target.0),
                format!(
                    "stream={stream_id} channel={} viewer={} id={id} reason=stream ended",
                    own.info.channel, v.user
                ),
            );
        }
        self.log().record(
            "STREAM_STOP",
            own.info.p2p_addr,
            format!(
                "stream={stream_id} channel={} frames_sent={} bytes_sent={} reason={reason}",
                own.info.channel, own.frames_sent, own.bytes_sent
            ),
        );
        true
    }

    pub(super) fn stop_all_own(&self, reason: &str) {
        let ids: Vec<u64> = lock(&self.inner.own).keys().copied().collect();
        for id in ids {
            self.end_own(id, reason);
        }
    }

    /// This node's streams.
    pub fn own(&self) -> Vec<OwnView> {
        let mut v: Vec<OwnView> = lock(&self.inner.own).values().map(Own::view).collect();
        v.sort_by_key(|o| o.stream.stream_id);
        v
    }

    /// One of this node's streams.
    pub fn own_view(&self, stream_id: u64) -> Option<OwnView> {
        lock(&self.inner.own).get(&stream_id).map(Own::view)
    }

    /// The last frame an own stream sent (a preview for its streamer).
    pub fn own_latest(&self, stream_id: u64) -> Option<(u64, Bytes)> {
        let own = lock(&self.inner.own);
        let f = own.get(&stream_id)?.latest.as_ref()?;
        Some((f.capture_us, f.jpeg.clone()))
    }

    /// Takes one JPEG frame for a stream whose source is `push`.
    pub fn push_frame(&self, stream_id: u64, jpeg: Bytes) -> Result<(), Failure> {
        if jpeg.len() < 4 || jpeg[..2] != [0xff, 0xd8] {
            return Err(Failure::bad_request(
                "a frame is one JPEG image (image/jpeg)",
            ));
        }
        if jpeg.len() > MAX_FRAME_BYTES {
            return Err(Failure::new(
                Status::TooLarge,
                format!("a frame is at most {MAX_FRAME_BYTES} bytes"),
            ));
        }
        let own = lock(&self.inner.own);
        let s = own.get(&stream_id).ok_or_else(|| {
            Failure::not_found(format!("this node has no live stream {stream_id}"))
        })?;
        if s.source != SourceKind::Push {
            return Err(Failure::conflict(
                "this stream plays the test pattern; start one with source \"push\" to send frames",
            ));
        }
        // A full queue means the sender is behind: drop, never queue latency.
        let _ = s.frames.try_send(SourceFrame {
            capture_us: crate::clock::now_us(),
            jpeg,
        });
        Ok(())
    }

    /// Chunks each frame and sends it to every viewer with its key.
    async fn send_loop(
        self,
        stream_id: u64,
        mut rx: mpsc::Receiver<SourceFrame>,
        cancel: CancellationToken,
    ) {
        let mut number: u32 = 0;
        let mut buf = Vec::with_capacity(wire::MAX_DATAGRAM);
        loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => return,
                f = rx.recv() => match f { Some(f) => f, None => return },
            };
            let count = wire::chunks_for(frame.jpeg.len());
            if count > usize::from(MAX_CHUNKS) {
                tracing::warn!(bytes = frame.jpeg.len(), "frame too large to send; dropped");
                continue;
            }
            number = number.wrapping_add(1);
            let targets: Vec<(Target, SessionKey)> = {
                let mut own = lock(&self.inner.own);
                let Some(s) = own.get_mut(&stream_id) else {
                    return;
                };
                s.latest = Some(frame.clone());
                s.frames_sent += 1;
                s.viewers
                    .values()
                    .map(|v| (v.target.clone(), v.key.clone()))
                    .collect()
            };
            let mut sent = 0u64;
            for (target, key) in &targets {
                for i in 0..count {
                    let start = i * MAX_PAYLOAD;
                    let end = (start + MAX_PAYLOAD).min(frame.jpeg.len());
                    let header = Header {
                        kind: DatagramKind::Chunk,
                        stream_id,
                        frame: number,
                        chunk: i as u16,
                        count: count as u16,
                        capture_us: frame.capture_us,
                    };
                    buf.clear();
                    if wire::encode(&header, &frame.jpeg[start..end], key, &mut buf).is_err() {
                        continue;
                    }
                    sent += target.send(&buf) as u64;
                }
            }
            if let Some(s) = lock(&self.inner.own).get_mut(&stream_id) {
                s.bytes_sent += sent;
            }
        }
    }

    /// A viewer's probe: proves its key, and tells where it is seen from.
    /// Only a fresh one counts (its counter above every one before), and a
    /// new address gets a challenge, not frames: the stream moves there
    /// when a probe from it carries the challenge's bytes.
    pub(super) fn on_probe(&self, stream_id: u64, viewer_id: u32, bytes: &[u8], from: &Target) {
        let mut own = lock(&self.inner.own);
        let Some(v) = own
            .get_mut(&stream_id)
            .and_then(|s| s.viewers.get_mut(&viewer_id))
        else {
            return;
        };
        let (header, payload) = match wire::open(bytes, &v.key) {
            Ok(opened) => opened,
            Err(e) if is_forgery(&e) => return tracing::debug!(%from, "forged probe dropped"),
            Err(_) => return,
        };
        if header.capture_us <= v.probes {
            return tracing::debug!(%from, counter = header.capture_us, "replayed probe dropped");
        }
        v.probes = header.capture_us;
        if *from == v.target {
            v.challenge = None;
            return;
        }
        let answered = matches!(
            &v.challenge,
            Some((at, nonce, _)) if at == from && payload == nonce.as_slice()
        );
        if answered {
            let before = std::mem::replace(&mut v.target, from.clone());
            v.challenge = None;
            let user = v.user.clone();
            drop(own);
            self.log().record(
                "VIEWER_MOVED",
                crate::transport::log_addr(&from.0),
                format!("stream={stream_id} viewer={user} id={viewer_id} from={before}"),
            );
            return;
        }
        // At most one challenge a second per viewer: a spoofed source gets
        // one small datagram a second, never the stream.
        let recent = matches!(
            &v.challenge,
            Some((at, _, sent)) if at == from && sent.elapsed() < CHALLENGE_EVERY
        );
        if recent {
            return;
        }
        let mut nonce = [0u8; CHALLENGE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        v.challenge = Some((from.clone(), nonce, std::time::Instant::now()));
        let mut out = Vec::with_capacity(64);
        let sealed = wire::encode(
            &Header::challenge(stream_id, viewer_id),
            &nonce,
            &v.key,
            &mut out,
        );
        drop(own);
        if sealed.is_ok() {
            // Non-blocking: a full send buffer drops it; the next probe
            // asks again.
            from.send(&out);
        }
    }

    /// Serves `watch`, `unwatch` and `stream_report` on the peer link.
    pub(super) async fn on_peer_request(
        &self,
        link: &PeerLink,
        req: peer::Request,
    ) -> Result<peer::Reply, Failure> {
        let (conn, addr, remote, remote_key, nonce) = (
            link.id,
            link.addr,
            link.datagrams.clone(),
            &link.remote_key[..],
            &link.nonce,
        );
        let events = link.out.clone();
        match req {
            peer::Request::Watch {
                ticket,
                stream_id,
                proof,
            } => {
                // A stream's video comes as datagrams, which only QUIC
                // carries (a viewer dials its streamer on QUIC).
                let target = remote.ok_or_else(|| {
                    Failure::bad_request("a watch needs a QUIC link: the video comes as datagrams")
                })?;
                let server_key = self
                    .link()
                    .state()
                    .server_key
                    .and_then(|k| decode_key(&k).ok());
                let presented = crate::admission::Presented {
                    ticket: &ticket,
                    nonce,
                    purpose: ProofPurpose::Watch { stream_id },
                    proof: &proof,
                    addr,
                    transport_key: remote_key,
                };
                crate::admission::check_peer_ticket(
                    server_key,
                    presented,
                    &self.inner.revoked,
                    self.log(),
                    "streamer",
                )?;
                let user = ticket.ticket.username.clone();
                let kind = ticket.ticket.kind;
                let channel = lock(&self.inner.own)
                    .get(&stream_id)
                    .map(|s| s.info.channel.clone())
                    .ok_or_else(|| {
                        Failure::not_found(format!("this node has no live stream {stream_id}"))
                    })?;
                // Membership may have changed since the stream started.
                let fresh = match kind {
                    AccountKind::User => self.members(&channel).await,
                    AccountKind::Visitor => None,
                };
                let mut key = [0u8; SESSION_KEY_LEN];
                rand::thread_rng().fill_bytes(&mut key);
                let key = SessionKey::from_bytes(key);
                let path = target.to_string();
                let mut own = lock(&self.inner.own);
                let s = own.get_mut(&stream_id).ok_or_else(|| {
                    Failure::not_found(format!("this node has no live stream {stream_id}"))
                })?;
                if let Some(m) = fresh {
                    s.acl.members = m;
                }
                if !s.acl.may_read(&user, kind) {
                    self.log().record(
                        "VIEWER_REFUSED",
                        addr,
                        format!("stream={stream_id} channel={channel} viewer={user}"),
                    );
                    return Err(Failure::forbidden(match kind {
                        AccountKind::Visitor => format!("{channel:?} does not admit visitors"),
                        AccountKind::User => {
                            format!("{channel:?} is for its members; join it first")
                        }
                    }));
                }
                let viewer_id = s.next_viewer;
                s.next_viewer += 1;
                s.viewers.insert(
                    viewer_id,
                    Viewer {
                        user: user.clone(),
                        session: ticket.ticket.session_id.clone(),
                        conn,
                        target,
                        key: key.clone(),
                        probes: 0,
                        challenge: None,
                        events,
                        joined_ms: crate::clock::now_ms(),
                        report: None,
                    },
                );
                let count = s.viewers.len();
                let info = s.info.clone();
                drop(own);
                self.log().record(
                    "VIEWER_JOIN",
                    addr,
                    format!(
                        "stream={stream_id} channel={channel} viewer={user} id={viewer_id} path={path} viewers={count}"
                    ),
                );
                Ok(peer::Reply::Watching {
                    stream_id,
                    viewer_id,
                    session_key: key.to_hex(),
                    width: info.width,
                    height: info.height,
                    fps: info.fps,
                    codec: info.codec,
                })
            }
            peer::Request::Unwatch { stream_id } => {
                self.drop_viewers(|sid, v| sid == stream_id && v.conn == conn, "unwatch");
                Ok(peer::Reply::Done)
            }
            peer::Request::StreamReport { stream_id, report } => {
                if let Some(s) = lock(&self.inner.own).get_mut(&stream_id) {
                    for v in s.viewers.values_mut().filter(|v| v.conn == conn) {
                        v.report = Some(report.clone());
                    }
                }
                Ok(peer::Reply::Done)
            }
            _ => Err(Failure::bad_request("not a stream request")),
        }
    }

    /// A session's tickets were revoked: its viewers are sent no more and
    /// told the stream ended for them. Answers how many left.
    pub(crate) fn drop_session(&self, session: &str) -> usize {
        let mut told = Vec::new();
        for (sid, s) in lock(&self.inner.own).iter() {
            for v in s.viewers.values().filter(|v| v.session == session) {
                told.push((*sid, v.events.clone()));
            }
        }
        for (stream_id, events) in &told {
            if let Some(b) = encode_event(peer::Event::StreamEnded {
                stream_id: *stream_id,
                reason: "your session ended".into(),
            }) {
                let _ = events.send(b);
            }
        }
        self.drop_viewers(|_, v| v.session == session, "session_revoked");
        told.len()
    }

    /// A peer link closed: its viewers leave.
    pub(super) fn on_peer_closed(&self, conn: u64) {
        self.drop_viewers(|_, v| v.conn == conn, "disconnected");
    }

    fn drop_viewers(&self, gone: impl Fn(u64, &Viewer) -> bool, reason: &str) {
        let mut left = Vec::new();
        for (sid, s) in lock(&self.inner.own).iter_mut() {
            let ids: Vec<u32> = s
                .viewers
                .iter()
                .filter(|(_, v)| gone(*sid, v))
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(v) = s.viewers.remove(&id) {
                    left.push((*sid, s.info.channel.clone(), id, v, s.viewers.len()));
                }
            }
        }
        for (sid, channel, id, v, count) in left {
            self.log().record(
                "VIEWER_LEAVE",
                crate::transport::log_addr(&v.target.0),
                format!(
                    "stream={sid} channel={channel} viewer={} id={id} reason={reason} viewers={count}",
                    v.user
                ),
            );
        }
    }
}
