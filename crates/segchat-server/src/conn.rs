//! One accepted tracker link: handshake, then a read loop that runs
//! requests in order, and a writer task that drains a bounded queue and
//! batches its writes. The link is a TLS connection over TCP (ALPN
//! `segchat/tracker/1`, `segchat_net::tls`) whose handshake already
//! proved the node's key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::SinkExt;
use segchat_net::tls::ServerStream;
use segchat_proto::frame::CodecError;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::{
    DecodeError, Failure, Frame, FrameCodec, LinkKind, Status, Welcome, PROTOCOL_VERSION,
};
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::admission::ConnSlot;
use crate::hub::{ConnId, Queued, TrackerFrame};
use crate::ops::{self, ConnCtx, Shared};

type Codec = FrameCodec<Request, Reply, Event>;
type ReadHalf = tokio::io::ReadHalf<ServerStream>;
type WriteHalf = tokio::io::WriteHalf<ServerStream>;

/// How long a client has to send `hello`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer may take to flush a last error frame on close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// What a connection's read and write buffers start at. They grow for
/// bigger frames and are given back once empty if they grew past
/// [`KEEP_BUF`], so an idle connection holds little, however large the
/// frames it once carried (thousands of idle nodes are the common case).
const IDLE_BUF: usize = 512;
/// Buffer capacity an empty buffer may keep.
const KEEP_BUF: usize = 8 * 1024;
/// Bytes of queued frames the writer gathers before writing them out.
const WRITE_BATCH: usize = 8 * 1024;

/// Answers a connection over the per-source cap with an error frame and
/// closes it.
pub(crate) async fn refuse(stream: ServerStream, addr: SocketAddr, shared: Arc<Shared>) {
    let max = shared.config.max_conns_per_source;
    shared.log.record(
        "CONNECTION_REFUSED",
        addr,
        format!("{max} connections from this source are open"),
    );
    let (r, w) = tokio::io::split(stream);
    let writer = FramedWrite::new(w, Codec::new(shared.config.max_frame_len));
    let failure = Failure::new(
        Status::RateLimited,
        format!("too many connections from your address (at most {max}); close some first"),
    );
    close_with(writer, r, failure).await;
}

/// Ends a link that never got going: sends `failure` (why) and closes,
/// within [`CLOSE_GRACE`] however slowly the client reads, then lingers.
async fn close_with(mut writer: FramedWrite<WriteHalf, Codec>, reader: ReadHalf, failure: Failure) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = writer.send(Frame::Error(failure)).await;
        let _ = writer.get_mut().shutdown().await;
    })
    .await;
    linger(reader).await;
}

/// Reads and drops what the client still sends until it closes too (at
/// most [`CLOSE_GRACE`]): closing a TCP socket with unread bytes resets
/// the connection, and a reset can destroy the last frame the client has
/// not read yet (the error that says why).
async fn linger(mut half: ReadHalf) {
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while matches!(half.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The transport's facts about a connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Where its packets come from.
    pub(crate) addr: SocketAddr,
    /// The node key it authenticated with (hex).
    pub(crate) node_id: String,
}

/// Serves one connection until it closes, errs or the server shuts down.
/// `_slot` holds the connection's place under the per-source cap.
pub(crate) async fn serve(
    stream: ServerStream,
    peer: Peer,
    id: ConnId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    _slot: ConnSlot,
) {
    let addr = peer.addr;
    let (r, w) = tokio::io::split(stream);
    let codec = Codec::new(shared.config.max_frame_len);
    let mut reader = FrameReader::new(r, shared.config.max_frame_len);
    let mut writer = FramedWrite::with_capacity(w, codec, IDLE_BUF);
    writer.set_backpressure_boundary(WRITE_BATCH);

    shared
        .log
        .record("CONNECTION_ESTABLISHED", addr, format!("conn={id}"));
    match handshake(&mut reader, &shared, addr).await {
        Ok(welcome) => {
            let sent =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, writer.send(Frame::Welcome(welcome)));
            if !matches!(sent.await, Ok(Ok(()))) {
                return;
            }
        }
        Err(failure) => {
            shared.log.record(
                "HANDSHAKE_FAILED",
                addr,
                format!("conn={id} {}", failure.reason),
            );
            close_with(writer, reader.half, failure).await;
            return;
        }
    }

    let (tx, rx) = mpsc::channel(shared.config.outbound_queue);
    let cancel = shutdown.child_token();
    shared
        .hub
        .add_conn(id, addr, peer.node_id.clone(), tx.clone(), cancel.clone());
    let write_task = tokio::spawn(write_loop(writer, rx, cancel.clone()));

    let mut ctx = ConnCtx::new(id, addr, &shared.config);
    ctx.node_id = Some(peer.node_id);
    let reason = read_loop(&mut reader, &tx, &shared, &mut ctx, &cancel).await;

    ops::sign_out_conn(&shared, &mut ctx).await;
    shared.hub.remove_conn(id);
    drop(tx);
    // Let the writer flush what is queued (an error frame, say), then stop it.
    let flushed = tokio::time::timeout(CLOSE_GRACE, write_task).await;
    if flushed.is_err() {
        cancel.cancel();
    }
    linger(reader.half).await;
    shared
        .log
        .record("CONNECTION_CLOSED", addr, format!("conn={id} {reason}"));
}

/// Waits for `hello` and checks it.
async fn handshake(
    reader: &mut FrameReader,
    shared: &Shared,
    addr: SocketAddr,
) -> Result<Welcome, Failure> {
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.next())
        .await
        .map_err(|_| Failure::bad_request("no hello within 10 s"))?;
    let hello = match first {
        Some(Ok(Frame::Hello(h))) => h,
        Some(Ok(_)) => return Err(Failure::bad_request("the first frame must be hello")),
        Some(Err(CodecError::Decode(e))) => return Err(e.to_failure()),
        Some(Err(e)) => return Err(Failure::bad_request(e.to_string())),
        None => return Err(Failure::bad_request("closed before hello")),
    };
    if hello.version != PROTOCOL_VERSION {
        return Err(Failure::new(
            Status::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
                hello.version
            ),
        ));
    }
    if hello.link != LinkKind::Tracker {
        return Err(Failure::bad_request(
            "this is a segchat server; it accepts only the tracker link",
        ));
    }
    Ok(Welcome {
        version: PROTOCOL_VERSION,
        agent: concat!("segchat-server/", env!("CARGO_PKG_VERSION")).into(),
        heartbeat_ms: shared.config.heartbeat.as_millis() as u64,
        peer_ttl_ms: shared.config.peer_ttl.as_millis() as u64,
        server_key: hex::encode(shared.key.verifying_key().as_bytes()),
        max_body_len: shared.config.max_body_len as u32,
        nonce: String::new(),
        observed_addr: Some(addr).filter(|a| !a.ip().is_unspecified() && a.port() != 0),
    })
}

/// Reads and answers requests until the connection ends; says why it did.
async fn read_loop(
    reader: &mut FrameReader,
    tx: &mpsc::Sender<Queued>,
    shared: &Shared,
    ctx: &mut ConnCtx,
    cancel: &CancellationToken,
) -> String {
    // Signed out, a connection must sign in within `signin_timeout` (asking
    // other things does not extend it); signed in, it must say something
    // (a heartbeat at least) within `silence`. Peers are also dropped by
    // the reaper after `peer_ttl` without a heartbeat.
    let signin_timeout = shared.config.signin_timeout;
    let silence = signin_timeout.max(shared.config.peer_ttl);
    let mut signed_out_since = Instant::now();
    let mut last_frame = Instant::now();
    loop {
        let (deadline, why) = if ctx.principal.is_none() {
            (
                signed_out_since + signin_timeout,
                format!("not signed in within {} s", signin_timeout.as_secs_f64()),
            )
        } else {
            (
                last_frame + silence,
                format!("nothing received for {} s", silence.as_secs_f64()),
            )
        };
        let next = tokio::select! {
            _ = cancel.cancelled() => return "closed by server".into(),
            _ = tokio::time::sleep_until(deadline.into()) => {
                shared.log.record("CONNECTION_TIMEOUT", ctx.addr, format!("conn={} {why}", ctx.id));
                let failure = Failure::new(Status::Unauthorized, format!("{why}; closing"));
                let _ = tx.try_send(Box::new(Frame::Error(failure)));
                return format!("timed out: {why}");
            }
            next = reader.next() => next,
        };
        last_frame = Instant::now();
        let frame = match next {
            None => return "closed by client".into(),
            Some(Ok(frame)) => frame,
            Some(Err(CodecError::Decode(DecodeError::BadRequest { id, reason }))) => {
                // The frame was whole; answer it and keep going.
                shared.log.record(
                    "BAD_REQUEST",
                    ctx.addr,
                    format!("conn={} id={id} {reason}", ctx.id),
                );
                let result = Err(Failure::bad_request(format!("malformed request: {reason}")));
                if tx
                    .send(Box::new(Frame::Response { id, result }))
                    .await
                    .is_err()
                {
                    return "writer gone".into();
                }
                continue;
            }
            Some(Err(CodecError::Decode(e))) => {
                shared
                    .log
                    .record("PROTOCOL_ERROR", ctx.addr, format!("conn={} {e}", ctx.id));
                let _ = tx.send(Box::new(Frame::Error(e.to_failure()))).await;
                return format!("protocol error: {e}");
            }
            Some(Err(e)) => return format!("read error: {e}"),
        };
        match frame {
            Frame::Request { id, body } => {
                let op = body.op_name();
                let span = tracing::debug_span!("request", conn = ctx.id, id, op);
                if ctx.principal.is_some() && !shared.hub.is_signed_in(ctx.id) {
                    // Its session was ended elsewhere (a logout on another
                    // node): it asks as a stranger from now on.
                    ctx.principal = None;
                    signed_out_since = Instant::now();
                }
                let was_signed_in = ctx.principal.is_some();
                let result = {
                    let _enter = span.enter();
                    tracing::debug!("handling");
                    // Boxed: inline, the largest operation's state would
                    // be part of every idle connection's task.
                    Box::pin(ops::handle(shared, ctx, body)).await
                };
                if was_signed_in && ctx.principal.is_none() {
                    signed_out_since = Instant::now();
                }
                if tx
                    .send(Box::new(Frame::Response { id, result }))
                    .await
                    .is_err()
                {
                    return "writer gone".into();
                }
            }
            other => {
                let failure = Failure::bad_request(format!(
                    "unexpected {:?} frame from a client after the handshake",
                    other.kind()
                ));
                let _ = tx.send(Box::new(Frame::Error(failure))).await;
                return "unexpected frame".into();
            }
        }
    }
}

/// Drains the outbound queue, batching whatever is already waiting into one
/// flush. Ends when every sender is gone or the connection is cancelled.
async fn write_loop(
    mut writer: FramedWrite<WriteHalf, Codec>,
    mut rx: mpsc::Receiver<Queued>,
    cancel: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            f = rx.recv() => match f { Some(f) => f, None => break },
        };
        let closing = matches!(*frame, Frame::Error(_));
        if writer.feed(*frame).await.is_err() {
            cancel.cancel();
            break;
        }
        while let Ok(f) = rx.try_recv() {
            if writer.feed(*f).await.is_err() {
                cancel.cancel();
                return;
            }
        }
        if writer.flush().await.is_err() || closing {
            cancel.cancel();
            break;
        }
        give_back(writer.write_buffer_mut());
    }
    let _ = writer.flush().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, writer.get_mut().shutdown()).await;
}

/// Reads frames off the socket. Unlike `FramedRead`, it keeps going after a
/// recoverable decode error (a whole request frame with a bad body), so
/// that request can be answered with BAD_REQUEST on a live connection.
struct FrameReader {
    half: ReadHalf,
    buf: BytesMut,
    max_len: usize,
}

impl FrameReader {
    fn new(half: ReadHalf, max_len: usize) -> Self {
        FrameReader {
            half,
            buf: BytesMut::with_capacity(IDLE_BUF),
            max_len,
        }
    }

    /// The next frame; `None` on a clean close between frames.
    async fn next(&mut self) -> Option<Result<TrackerFrame, CodecError>> {
        loop {
            match TrackerFrame::decode(&mut self.buf, self.max_len) {
                Ok(Some(frame)) => {
                    give_back(&mut self.buf);
                    return Some(Ok(frame));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(CodecError::Decode(e))),
            }
            self.buf.reserve(IDLE_BUF);
            match self.half.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return None,
                Ok(0) => {
                    return Some(Err(CodecError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed in the middle of a frame",
                    ))))
                }
                Ok(_) => {}
                Err(e) => return Some(Err(CodecError::Io(e))),
            }
        }
    }
}

/// Replaces an empty buffer that grew past [`KEEP_BUF`] with a small one.
fn give_back(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_BUF {
        *buf = BytesMut::with_capacity(IDLE_BUF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_that_grew_is_given_back_and_a_busy_one_is_kept() {
        let mut grown = BytesMut::with_capacity(64 * 1024);
        give_back(&mut grown);
        assert!(
            grown.capacity() <= KEEP_BUF,
            "an idle connection keeps little"
        );
        let mut busy = BytesMut::with_capacity(64 * 1024);
        busy.extend_from_slice(b"half a frame");
        give_back(&mut busy);
        assert!(
            busy.capacity() >= 64 * 1024,
            "a frame in the middle is kept"
        );
        assert_eq!(&busy[..], b"half a frame");
        let mut small = BytesMut::with_capacity(KEEP_BUF);
        let before = small.capacity();
        give_back(&mut small);
        assert_eq!(small.capacity(), before, "within the allowance: untouched");
    }
}
