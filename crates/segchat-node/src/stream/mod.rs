//! Livestreams, P2P as QUIC datagrams (UDP, encrypted). The server only
//! coordinates (who streams where); frames go from the streamer's node to
//! each viewer's on the viewer's peer connection: straight where the NATs
//! allow, through the server's relay (which cannot read them) where not.
//!
//! # Layout
//!
//! - this file: [`Streams`], the cloneable handle the API uses, livestreams
//!   as a protocol of the peer layer ([`crate::p2p`]: `watch`, `unwatch`,
//!   `stream_report`, and the datagrams of every peer connection), and the
//!   datagram dispatcher (chunks for streams this node
//!   watches, probes for streams it sends) that every peer connection's
//!   datagrams are fed to.
//! - `streamer.rs`: this node's own streams: start and stop through the
//!   server, admitting viewers over the peer link with their tickets and
//!   the channel's rules, per-viewer session keys, chunking and sending.
//! - `viewer.rs`: watching a stream: the peer-link session with the
//!   streamer, probes, reports, and why it ended or cannot play.
//! - `reassembly.rs`: frames from chunks with bounded buffers; loss,
//!   lateness, frame rate and latency.
//! - `source.rs`: the test pattern (moving bars and box with the capture
//!   time drawn in), JPEG-encoded on a thread of its own.
//!
//! Architecture invariant: a stream's frames are readable by the streamer
//! and its admitted viewers only: the relay forwards ciphertext.

mod reassembly;
mod source;
mod streamer;
mod viewer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use futures::future::BoxFuture;
use futures::FutureExt;
use segchat_log::SystemLog;
use segchat_proto::stream::{self as wire, DatagramError, DatagramKind, MAX_DATAGRAM};
use segchat_proto::tracker::Event;
use segchat_proto::{peer, Failure};
use tokio_util::sync::CancellationToken;

use crate::admission::Revoked;
use crate::events::{EventBus, NodeEvent};
use crate::link::LinkHandle;
use crate::p2p::{Answer, PeerLink, PeerProtocol, ProtocolLink};
use crate::transport::{Target, Transport};

pub use crate::config::LossHook;
pub use reassembly::ShownFrame;
pub use streamer::{OwnView, SourceKind, StartStream, ViewerView};
pub use viewer::{WatchState, WatchView};

#[derive(Debug)]
struct Inner {
    transport: Transport,
    link: LinkHandle,
    bus: EventBus,
    log: SystemLog,
    /// The node's key: a viewer proves it to the streamer on `watch`.
    key: SigningKey,
    /// Sessions whose tickets the server revoked (shared with the host).
    revoked: Revoked,
    loss: Option<Mutex<(u8, u64)>>,
    own: Mutex<HashMap<u64, streamer::Own>>,
    watched: Mutex<HashMap<u64, viewer::Watched>>,
    shutdown: CancellationToken,
}

/// The livestream subsystem; cheap to clone.
#[derive(Debug, Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

impl Streams {
    /// A stream subsystem on the node's endpoint, following the server's
    /// events on `bus`. Call [`Streams::run`] in the node's task tree.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        transport: Transport,
        link: LinkHandle,
        bus: EventBus,
        log: SystemLog,
        key: SigningKey,
        revoked: Revoked,
        loss: Option<LossHook>,
        shutdown: CancellationToken,
    ) -> Streams {
        Streams {
            inner: Arc::new(Inner {
                transport,
                link,
                bus,
                log,
                key,
                revoked,
                loss: loss
                    .filter(|l| l.percent > 0)
                    .map(|l| Mutex::new((l.percent.min(100), l.seed | 1))),
                own: Mutex::new(HashMap::new()),
                watched: Mutex::new(HashMap::new()),
                shutdown,
            }),
        }
    }

    fn link(&self) -> &LinkHandle {
        &self.inner.link
    }

    fn log(&self) -> &SystemLog {
        &self.inner.log
    }

    /// Feeds the datagrams that arrive on a peer connection to the
    /// dispatcher, until the connection ends. Spawned for every peer
    /// connection, accepted or dialled.
    pub(super) async fn read_datagrams(self, from: Target) {
        let shutdown = self.inner.shutdown.clone();
        loop {
            let bytes = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = from.0.read_datagram() => match d {
                    Ok(bytes) => bytes,
                    Err(_) => return,
                },
            };
            if bytes.len() <= MAX_DATAGRAM {
                self.on_datagram(&bytes, &from);
            }
        }
    }

    /// Follows server events until shutdown.
    pub async fn run(self) {
        let mut events = self.inner.bus.subscribe();
        let mut state = self.link().watch();
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(NodeEvent::Tracker(Event::StreamStopped { stream_id, reason, .. })) => {
                        self.stream_stopped(stream_id, &reason);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                changed = state.changed() => {
                    if changed.is_err() { break; }
                    let connected = state.borrow_and_update().connected;
                    if !connected {
                        // The server ends a stream whose streamer's link drops.
                        self.stop_all_own("the server link dropped");
                    }
                }
            }
        }
        self.stop_all_own("the node is shutting down");
        self.end_all_watches("the node is shutting down");
    }

    fn on_datagram(&self, bytes: &[u8], from: &Target) {
        let header = match wire::peek(bytes) {
            Ok((h, _)) => h,
            Err(e) => return tracing::trace!(%from, error = %e, "stray datagram dropped"),
        };
        match header.kind {
            DatagramKind::Chunk => {
                if self.lose() {
                    return;
                }
                self.on_chunk(header.stream_id, bytes);
            }
            DatagramKind::Probe => self.on_probe(header.stream_id, header.frame, bytes, from),
            DatagramKind::Challenge => self.on_challenge(header.stream_id, bytes, from),
        }
    }

    /// The loss hook's verdict for one chunk (xorshift64, seeded).
    fn lose(&self) -> bool {
        let Some(loss) = &self.inner.loss else {
            return false;
        };
        let mut l = lock(loss);
        let (percent, mut x) = *l;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *l = (percent, x);
        x % 100 < u64::from(percent)
    }
}

impl PeerProtocol for Streams {
    fn serves(&self, request: &peer::Request) -> bool {
        matches!(
            request,
            peer::Request::Watch { .. }
                | peer::Request::Unwatch { .. }
                | peer::Request::StreamReport { .. }
        )
    }

    fn open(&self, _link: &PeerLink) -> Box<dyn ProtocolLink> {
        Box::new(StreamLink(self.clone()))
    }

    /// Every peer connection's datagrams go to the dispatcher.
    fn connected(&self, remote: &Target) {
        tokio::spawn(self.clone().read_datagrams(remote.clone()));
    }
}

/// Livestreams' side of one peer link: the link's viewers live in
/// [`Streams`], keyed by the link's id.
#[derive(Debug)]
struct StreamLink(Streams);

impl ProtocolLink for StreamLink {
    fn request<'a>(
        &'a mut self,
        link: &'a PeerLink,
        _id: u32,
        request: peer::Request,
    ) -> BoxFuture<'a, Result<Answer, Failure>> {
        async move {
            match self.0.on_peer_request(link, request).await? {
                reply @ peer::Reply::Watching { .. } => Ok(Answer::Admitted(reply)),
                reply => Ok(Answer::Reply(reply)),
            }
        }
        .boxed()
    }

    fn closed(&mut self, link: &PeerLink) {
        self.0.on_peer_closed(link.id);
    }
}

fn is_forgery(e: &DatagramError) -> bool {
    matches!(e, DatagramError::BadTag)
}

/// Locks a std mutex, carrying on past a poisoned one (plain data inside).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
