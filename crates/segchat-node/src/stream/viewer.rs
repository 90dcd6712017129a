//! Watching a stream: a peer-link session with the streamer (ticket,
//! session key, reports, the end of the stream), probes as datagrams on
//! the same connection, and the reassembly of what arrives.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use segchat_net::{RecvStream, SendStream};
use segchat_proto::peer;
use segchat_proto::stream::{self as wire, Header, SessionKey, StreamInfo, StreamReport};
use segchat_proto::ticket::{decode_nonce, prove, ProofPurpose};
use segchat_proto::types::NodeAddr;
use segchat_proto::{Failure, Frame, FrameCodec, Hello, LinkKind, Status};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::reassembly::{Reassembler, ShownFrame};
use super::{is_forgery, lock, Streams};
use crate::transport::Target;

type Codec = FrameCodec<peer::Request, peer::Reply, peer::Event>;
type PeerFrame = Frame<peer::Request, peer::Reply, peer::Event>;

/// How long reaching the streamer may take before we say it cannot be.
/// (A first connection through the relay, then the handshake.)
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a viewer probes and reports.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Without a datagram for this long, the viewer is told UDP is blocked.
const UDP_SILENCE: Duration = Duration::from_secs(3);

/// How a watched stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// Admitted; no frame yet.
    Waiting,
    /// Frames arrive.
    Playing,
    /// Admitted, but no datagram arrives: see `message`.
    NoUdp,
    /// The stream or the session ended: see `message`.
    Ended,
}

#[derive(Debug)]
pub(super) struct Watched {
    info: StreamInfo,
    /// The connection to the streamer: probes go on it, chunks come on it.
    conn: Target,
    key: SessionKey,
    viewer_id: u32,
    /// The last probe counter used (probes count up from 1).
    probes: u64,
    re: Reassembler,
    latest: watch::Sender<Option<ShownFrame>>,
    state: WatchState,
    message: Option<String>,
    since: Instant,
    last_datagram: Option<Instant>,
    first_datagram: Option<Instant>,
    cancel: CancellationToken,
}

/// A watched stream, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct WatchView {
    pub stream: StreamInfo,
    pub state: WatchState,
    /// Why the state is `no_udp` or `ended`.
    pub message: Option<String>,
    pub report: StreamReport,
    /// Average payload bitrate since the first datagram, kbit/s.
    pub bitrate_kbps: u64,
    /// Frames being reassembled now (bounded).
    pub in_flight: usize,
}

impl Streams {
    /// Watches a stream: reaches its streamer directly (never through the
    /// server), presents this node's ticket, and starts receiving.
    pub async fn watch(&self, stream_id: u64) -> Result<WatchView, Failure> {
        if let Some(v) = self.watch_view(stream_id) {
            if v.state != WatchState::Ended {
                return Ok(v);
            }
        }
        let info = self
            .link()
            .list_streams()
            .await?
            .into_iter()
            .find(|s| s.stream_id == stream_id)
            .ok_or_else(|| Failure::not_found(format!("no live stream {stream_id}")))?;
        let ticket = self
            .link()
            .get_ticket(hex::encode(self.inner.key.verifying_key().as_bytes()))
            .await?;
        let unreachable = |why: String| {
            self.log().record(
                "STREAM_UNREACHABLE",
                info.p2p_addr,
                format!("stream={stream_id} streamer={} {why}", info.streamer),
            );
            Failure::unavailable(format!(
                "cannot reach {}'s node, neither directly at {} nor through the server's relay \
                 ({why}); it may have just gone offline",
                info.streamer, info.p2p_addr
            ))
        };
        let streamer = NodeAddr {
            node_id: info.node_id.clone(),
            addr: info.p2p_addr,
        };
        let dialed = self
            .inner
            .transport
            .dial(&streamer, CONNECT_TIMEOUT)
            .await
            .map_err(unreachable)?;
        let conn = Target(dialed.conn);
        let mut reader = FramedRead::new(dialed.recv, Codec::default());
        let mut writer = FramedWrite::new(dialed.send, Codec::default());
        let hello: PeerFrame = Frame::Hello(Hello::new(LinkKind::Peer, crate::config::AGENT));
        if writer.send(hello).await.is_err() {
            return Err(unreachable("the connection closed".into()));
        }
        // The proof of this node's key signs the welcome's nonce.
        let nonce = match tokio::time::timeout(CONNECT_TIMEOUT, reader.next()).await {
            Err(_) => return Err(unreachable("the streamer did not answer".into())),
            Ok(Some(Ok(Frame::Welcome(w)))) => decode_nonce(&w.nonce).map_err(|e| {
                Failure::new(Status::ServerError, format!("the streamer's welcome: {e}"))
            })?,
            Ok(Some(Ok(Frame::Error(f)))) => {
                return Err(Failure::new(
                    f.status,
                    format!("the streamer refused: {}", f.reason),
                ))
            }
            Ok(_) => return Err(unreachable("the streamer broke the handshake".into())),
        };
        let proof = prove(&self.inner.key, &nonce, ProofPurpose::Watch { stream_id })
            .map_err(|e| Failure::new(Status::ServerError, e.to_string()))?;
        let req: PeerFrame = Frame::Request {
            id: 1,
            body: peer::Request::Watch {
                ticket,
                stream_id,
                proof,
            },
        };
        if writer.send(req).await.is_err() {
            return Err(unreachable("the connection closed".into()));
        }
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, reader.next()).await;
        let (viewer_id, key) = match answer {
            Err(_) => return Err(unreachable("the streamer did not answer".into())),
            Ok(Some(Ok(Frame::Response { result, .. }))) => match result {
                Ok(peer::Reply::Watching {
                    viewer_id,
                    session_key,
                    ..
                }) => {
                    let key = SessionKey::from_hex(&session_key).map_err(|_| {
                        Failure::new(Status::ServerError, "the streamer sent a bad session key")
                    })?;
                    (viewer_id, key)
                }
                Ok(other) => {
                    return Err(Failure::new(
                        Status::ServerError,
                        format!("the streamer answered {other:?}"),
                    ))
                }
                Err(f) => {
                    return Err(Failure::new(
                        f.status,
                        format!("the streamer refused: {}", f.reason),
                    ))
                }
            },
            Ok(Some(Ok(Frame::Error(f)))) => {
                return Err(Failure::new(
                    f.status,
                    format!("the streamer refused: {}", f.reason),
                ))
            }
            Ok(_) => return Err(unreachable("the streamer broke the handshake".into())),
        };
        let cancel = self.inner.shutdown.child_token();
        let (latest, _) = watch::channel(None);
        lock(&self.inner.watched).insert(
            stream_id,
            Watched {
                info: info.clone(),
                conn: conn.clone(),
                key: key.clone(),
                viewer_id,
                probes: 0,
                re: Reassembler::default(),
                latest,
                state: WatchState::Waiting,
                message: None,
                since: Instant::now(),
                last_datagram: None,
                first_datagram: None,
                cancel: cancel.clone(),
            },
        );
        self.log().record(
            "WATCH_START",
            info.p2p_addr,
            format!(
                "stream={stream_id} channel={} streamer={} viewer_id={viewer_id} path={conn}",
                info.channel, info.streamer
            ),
        );
        tokio::spawn(self.clone().read_datagrams(conn.clone()));
        tokio::spawn(self.clone().session(info, conn, reader, writer, cancel));
        self.watch_view(stream_id).ok_or_else(Failure::server_error)
    }

    /// Keeps the session with the streamer: probes and reports every
    /// second, notices the end of the stream, says unwatch when told to.
    async fn session(
        self,
        info: StreamInfo,
        conn: Target,
        mut reader: FramedRead<RecvStream, Codec>,
        mut writer: FramedWrite<SendStream, Codec>,
        cancel: CancellationToken,
    ) {
        let stream_id = info.stream_id;
        let mut tick = tokio::time::interval(REPORT_EVERY);
        let mut next_id = 2u32;
        let reason = loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let bye: PeerFrame = Frame::Request { id: next_id, body: peer::Request::Unwatch { stream_id } };
                    let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(bye)).await;
                    break None;
                }
                _ = tick.tick() => {
                    if let Some(probe) = self.next_probe(stream_id, &[]) {
                        conn.send(&probe);
                    }
                    let Some(report) = self.check_silence(stream_id) else { break None };
                    next_id = next_id.wrapping_add(1);
                    let req: PeerFrame = Frame::Request {
                        id: next_id,
                        body: peer::Request::StreamReport { stream_id, report },
                    };
                    if writer.send(req).await.is_err() {
                        break Some("the streamer's node closed the link".to_owned());
                    }
                }
                frame = reader.next() => match frame {
                    Some(Ok(Frame::Event(peer::Event::StreamEnded { reason, .. }))) => {
                        break Some(format!("the stream ended: {reason}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Some(format!("bad frame from the streamer: {e}")),
                    None => break Some("the streamer's node closed the link".to_owned()),
                },
            }
        };
        if let Some(reason) = reason {
            self.end_watch(stream_id, &reason);
        }
    }

    /// Updates the state from what arrived; the report to send, or `None`
    /// if the watch is over.
    fn check_silence(&self, stream_id: u64) -> Option<StreamReport> {
        let mut watched = lock(&self.inner.watched);
        let w = watched.get_mut(&stream_id)?;
        if w.state == WatchState::Ended {
            return None;
        }
        let silent_since = w.last_datagram.unwrap_or(w.since);
        if silent_since.elapsed() > UDP_SILENCE {
            if w.state != WatchState::NoUdp {
                let msg = format!(
                    "no stream datagrams from {}'s node for {} s (path: {}); the streamer's \
                     source may have stalled, or the network drops them",
                    w.info.streamer,
                    UDP_SILENCE.as_secs(),
                    w.conn
                );
                self.log().record(
                    "STREAM_NO_UDP",
                    w.info.p2p_addr,
                    format!("stream={stream_id} {msg}"),
                );
                w.message = Some(msg);
                w.state = WatchState::NoUdp;
            }
        } else if w.state == WatchState::NoUdp {
            w.state = WatchState::Playing;
            w.message = None;
        }
        Some(w.re.report(crate::clock::now_us()))
    }

    /// A chunk for a stream this node watches.
    /// The next probe of a watch, carrying `answer` (empty, or a
    /// challenge's bytes): counters go up by one per probe.
    fn next_probe(&self, stream_id: u64, answer: &[u8]) -> Option<Vec<u8>> {
        let mut watched = lock(&self.inner.watched);
        let w = watched.get_mut(&stream_id)?;
        w.probes += 1;
        let mut out = Vec::with_capacity(64);
        let h = Header::probe(stream_id, w.viewer_id, w.probes);
        wire::encode(&h, answer, &w.key, &mut out).ok()?;
        Some(out)
    }

    /// The streamer asks this address to prove it is ours: answer with a
    /// probe that carries the challenge's bytes (only a genuine challenge,
    /// on the connection to the streamer).
    pub(super) fn on_challenge(&self, stream_id: u64, bytes: &[u8], from: &Target) {
        let genuine = {
            let watched = lock(&self.inner.watched);
            let Some(w) = watched.get(&stream_id) else {
                return;
            };
            match wire::open(bytes, &w.key) {
                Ok((h, nonce)) if h.frame == w.viewer_id && w.conn == *from => Some(nonce.to_vec()),
                _ => None,
            }
        };
        let Some(nonce) = genuine else {
            return tracing::debug!(%from, "stray challenge dropped");
        };
        if let Some(probe) = self.next_probe(stream_id, &nonce) {
            from.send(&probe);
        }
    }

    pub(super) fn on_chunk(&self, stream_id: u64, bytes: &[u8]) {
        let mut watched = lock(&self.inner.watched);
        let Some(w) = watched.get_mut(&stream_id) else {
            return;
        };
        if w.state == WatchState::Ended {
            return;
        }
        match wire::open(bytes, &w.key) {
            Ok((h, payload)) => {
                let now = Instant::now();
                w.last_datagram = Some(now);
                w.first_datagram.get_or_insert(now);
                if w.state != WatchState::Playing {
                    w.state = WatchState::Playing;
                    w.message = None;
                }
                if let Some(frame) = w.re.push(&h, payload, crate::clock::now_us()) {
                    w.latest.send_replace(Some(frame));
                }
            }
            Err(e) if is_forgery(&e) => w.re.forged(),
            Err(_) => {}
        }
    }

    /// The server says a stream stopped.
    pub(super) fn stream_stopped(&self, stream_id: u64, reason: &str) {
        self.end_watch(stream_id, &format!("the stream ended: {reason}"));
    }

    fn end_watch(&self, stream_id: u64, reason: &str) {
        let mut watched = lock(&self.inner.watched);
        let Some(w) = watched.get_mut(&stream_id) else {
            return;
        };
        if w.state == WatchState::Ended {
            return;
        }
        w.state = WatchState::Ended;
        w.message = Some(reason.to_owned());
        w.cancel.cancel();
        let report = w.re.report(crate::clock::now_us());
        let addr = w.info.p2p_addr;
        drop(watched);
        self.log().record(
            "WATCH_STOP",
            addr,
            format!(
                "stream={stream_id} frames={} lost={} late={} forged={} reason={reason}",
                report.frames, report.lost, report.late, report.forged
            ),
        );
    }

    pub(super) fn end_all_watches(&self, reason: &str) {
        let ids: Vec<u64> = lock(&self.inner.watched).keys().copied().collect();
        for id in ids {
            self.end_watch(id, reason);
        }
    }

    /// Stops watching a stream and forgets it.
    pub fn unwatch(&self, stream_id: u64) -> Result<(), Failure> {
        self.end_watch(stream_id, "unwatched");
        lock(&self.inner.watched)
            .remove(&stream_id)
            .map(|_| ())
            .ok_or_else(|| {
                Failure::not_found(format!("this node does not watch stream {stream_id}"))
            })
    }

    /// How a watched stream is doing.
    pub fn watch_view(&self, stream_id: u64) -> Option<WatchView> {
        let mut watched = lock(&self.inner.watched);
        let w = watched.get_mut(&stream_id)?;
        let report = w.re.report(crate::clock::now_us());
        let secs = w.first_datagram.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let bitrate_kbps = if secs > 0.0 {
            (w.re.bytes() as f64 * 8.0 / 1000.0 / secs) as u64
        } else {
            0
        };
        Some(WatchView {
            stream: w.info.clone(),
            state: w.state,
            message: w.message.clone(),
            report,
            bitrate_kbps,
            in_flight: w.re.in_flight(),
        })
    }

    /// Every watched stream.
    pub fn watching(&self) -> Vec<WatchView> {
        let ids: Vec<u64> = lock(&self.inner.watched).keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.watch_view(id))
            .collect()
    }

    /// The newest whole frame of a watched stream.
    pub fn latest_frame(&self, stream_id: u64) -> Option<ShownFrame> {
        lock(&self.inner.watched)
            .get(&stream_id)?
            .latest
            .borrow()
            .clone()
    }

    /// Frames of a watched stream as they complete (for a WebSocket).
    pub fn frames(&self, stream_id: u64) -> Option<watch::Receiver<Option<ShownFrame>>> {
        Some(
            lock(&self.inner.watched)
                .get(&stream_id)?
                .latest
                .subscribe(),
        )
    }
}
