//! The sending end of one peer link: every frame this node sends the peer
//! (welcome, answers, broadcasts, tickets, stream events), whichever
//! protocol it belongs to, goes through one [`Outbound`].
//!
//! A frame is queued and the link's writer task drains the queue,
//! gathering whatever waits into one write: a member that keeps up gets
//! each broadcast one task hop after it was sequenced, and a burst goes
//! out in as few writes as the stream takes. Order is the queue's order;
//! only the writer task ever writes to the stream.
//!
//! The queue is bounded in frames and bytes: a frame that does not fit
//! cuts the member off (slow-consumer policy, one `SLOW_CONSUMER` record in
//! the system log, whichever frame it was); it resyncs from its cursor when
//! it comes back, and it never holds up the other members.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use segchat_log::SystemLog;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lock;

/// Bytes queued for one member before it counts as too slow.
pub(crate) const MEMBER_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Frames queued for one member before it counts as too slow.
const MEMBER_QUEUE_FRAMES: usize = 8192;
/// The write half a link's writer owns (a QUIC stream; anything in tests).
pub(crate) type Sink = Box<dyn AsyncWrite + Send + Unpin>;

/// Frames the writer hands the stream in one vectored write.
const WRITE_SLICES: usize = 64;

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The member's queue is full: the link has just been cut off.
    Full,
    /// The link is closed (or closing).
    Closed,
}

/// A cloneable sending end of one peer link. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Rung when the queue gets its first frame, or on `close`.
    bell: Notify,
    /// Cancelled when the link is cut off or its socket fails.
    cancel: CancellationToken,
    log: SystemLog,
    addr: SocketAddr,
    /// Who the member is, once its ticket was accepted (for the log).
    member: Mutex<String>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    bytes: usize,
    /// The writer task has been rung and will drain the queue.
    writing: bool,
    /// No more frames are accepted; the writer drains the queue and ends.
    closing: bool,
}

impl Outbound {
    /// Takes over the link's write half; the writer task ends (and shuts
    /// the write side down) on `cancel`, on a socket error, or after
    /// [`Outbound::close`] once the queue is drained.
    pub(crate) fn start(
        sock: Sink,
        cancel: CancellationToken,
        log: SystemLog,
        addr: SocketAddr,
    ) -> (Outbound, JoinHandle<()>) {
        let out = Outbound {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                bell: Notify::new(),
                cancel,
                log,
                addr,
                member: Mutex::new("(not admitted yet)".into()),
            }),
        };
        let writer = tokio::spawn(out.clone().writer(sock));
        (out, writer)
    }

    /// Sends one or more whole frames. Never blocks: the frames are written
    /// now or queued. A member whose queue is full is cut off.
    pub(crate) fn send(&self, frames: Bytes) -> Result<(), Refused> {
        let inner = &*self.inner;
        let mut st = lock(&inner.state);
        if st.closing || inner.cancel.is_cancelled() {
            return Err(Refused::Closed);
        }
        let rest = frames;
        if st.bytes + rest.len() > MEMBER_QUEUE_BYTES || st.queue.len() >= MEMBER_QUEUE_FRAMES {
            st.closing = true;
            inner.cancel.cancel();
            inner.log.record(
                "SLOW_CONSUMER",
                inner.addr,
                format!(
                    "member={} queue full ({} bytes in {} frames waiting); cut off to resync",
                    lock(&inner.member),
                    st.bytes,
                    st.queue.len()
                ),
            );
            return Err(Refused::Full);
        }
        st.bytes += rest.len();
        st.queue.push_back(rest);
        if !st.writing {
            st.writing = true;
            inner.bell.notify_one();
        }
        Ok(())
    }

    /// Names the member on this link, for the system log.
    pub(crate) fn name_member(&self, user: &str) {
        *lock(&self.inner.member) = user.to_owned();
    }

    /// Accepts no more frames; the writer sends what is queued, shuts the
    /// write side down and ends.
    pub(crate) fn close(&self) {
        lock(&self.inner.state).closing = true;
        self.inner.bell.notify_one();
    }

    /// Bytes waiting to be written.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        lock(&self.inner.state).bytes
    }

    async fn writer(self, mut sock: Sink) {
        let inner = &*self.inner;
        loop {
            tokio::select! {
                _ = inner.cancel.cancelled() => break,
                _ = inner.bell.notified() => {}
            }
            if let Err(e) = self.drain(&mut sock).await {
                tracing::debug!(error = %e, "peer link write failed");
                inner.cancel.cancel();
                break;
            }
            if lock(&inner.state).closing {
                break;
            }
        }
        lock(&inner.state).closing = true;
        // The read half may live on; the member must see the end now.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.shutdown()).await;
    }

    /// Writes the queue until it is empty, then lets senders write
    /// directly again.
    async fn drain(&self, sock: &mut Sink) -> io::Result<()> {
        let inner = &*self.inner;
        loop {
            let batch: Vec<Bytes> = {
                let mut st = lock(&inner.state);
                if st.queue.is_empty() {
                    st.writing = false;
                    return Ok(());
                }
                st.writing = true;
                st.queue.iter().take(WRITE_SLICES).cloned().collect()
            };
            let written = write_some(sock, &batch, &inner.cancel).await?;
            let mut st = lock(&inner.state);
            st.bytes -= written;
            let mut left = written;
            while left > 0 {
                let Some(head) = st.queue.front_mut() else {
                    break;
                };
                if head.len() <= left {
                    left -= head.len();
                    st.queue.pop_front();
                } else {
                    let _ = head.split_to(left);
                    left = 0;
                }
            }
        }
    }
}

/// One vectored write of `batch`; how many bytes it took (at least one).
async fn write_some(
    sock: &mut Sink,
    batch: &[Bytes],
    cancel: &CancellationToken,
) -> io::Result<usize> {
    let slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let n = tokio::select! {
        _ = cancel.cancelled() => return Err(io::Error::other("cut off")),
        n = sock.write_vectored(&slices) => n?,
    };
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// An `Outbound` on one end of a loopback connection, and the other end.
    struct Link {
        out: Outbound,
        writer: JoinHandle<()>,
        member: TcpStream,
        cancel: CancellationToken,
        log: SystemLog,
        log_dir: tempfile::TempDir,
    }

    async fn link() -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (member, host) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (host, member_addr) = host.expect("accept");
        let (_read, write) = host.into_split();
        let write: Sink = Box::new(write);
        let cancel = CancellationToken::new();
        let log_dir = tempfile::tempdir().expect("log dir");
        let log = SystemLog::open(segchat_log::LogConfig::new(log_dir.path())).expect("log");
        let (out, writer) = Outbound::start(write, cancel.clone(), log.clone(), member_addr);
        Link {
            out,
            writer,
            member: member.expect("connect"),
            cancel,
            log,
            log_dir,
        }
    }

    /// Frame `i`: its number, then `len - 4` copies of its low byte.
    fn frame(i: u32, len: usize) -> Bytes {
        let mut b = i.to_be_bytes().to_vec();
        b.resize(len, i as u8);
        Bytes::from(b)
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_when_the_member_lags() {
        let Link {
            out,
            writer,
            mut member,
            ..
        } = link().await;
        // Far more than the socket buffers hold while nobody reads: the
        // first frames go straight out, the rest wait in the queue.
        let (count, len) = (2_000u32, 3_000usize);
        for i in 0..count {
            out.send(frame(i, len)).expect("queued");
        }
        assert!(
            out.queued() > 0,
            "the socket took everything; the test proves nothing"
        );
        out.close();
        let mut got = Vec::new();
        member.read_to_end(&mut got).await.expect("read");
        assert_eq!(got.len(), count as usize * len);
        for (i, chunk) in got.chunks(len).enumerate() {
            assert_eq!(chunk, &frame(i as u32, len)[..], "frame {i}");
        }
        writer.await.expect("writer");
        assert_eq!(out.send(frame(0, 8)), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_member_that_stops_reading_is_cut_off_not_buffered_forever() {
        let Link {
            out,
            writer,
            mut member,
            cancel,
            log,
            log_dir,
        } = link().await;
        out.name_member("eve");
        let len = 64 * 1024;
        let mut sent = 0usize;
        let refused = loop {
            match out.send(frame(sent as u32, len)) {
                Ok(()) => sent += 1,
                Err(r) => break r,
            }
            assert!(sent * len < 4 * MEMBER_QUEUE_BYTES, "never cut off");
        };
        assert_eq!(refused, Refused::Full);
        assert!(cancel.is_cancelled(), "the link is cut off");
        log.flush();
        let records = std::fs::read_to_string(log_dir.path().join("segchat.log")).expect("log");
        let cut: Vec<&str> = records
            .lines()
            .filter(|l| l.contains("] SLOW_CONSUMER |"))
            .collect();
        assert_eq!(cut.len(), 1, "{records}");
        assert!(cut[0].contains("member=eve queue full"), "{}", cut[0]);
        assert_eq!(out.send(frame(0, 8)), Err(Refused::Closed));
        writer.await.expect("writer");
        // The member sees its link end: what was written, in order (the
        // last frame may be cut short), then EOF.
        let mut rest = Vec::new();
        member.read_to_end(&mut rest).await.expect("read");
        assert!(rest.len() < sent * len);
        for (i, chunk) in rest.chunks(len).enumerate() {
            assert_eq!(chunk, &frame(i as u32, len)[..chunk.len()], "frame {i}");
        }
    }

    #[tokio::test]
    async fn frames_from_two_threads_arrive_whole_and_each_in_its_senders_order() {
        let Link {
            out,
            writer,
            mut member,
            ..
        } = link().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            member.read_to_end(&mut got).await.expect("read");
            got
        });
        // Bursts large enough to fill the socket now and then, from two
        // threads at once, while the member reads as fast as it can.
        let len = 1_000;
        let senders: Vec<_> = (0..2u32)
            .map(|t| {
                let out = out.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000u32 {
                        out.send(frame(t << 16 | i, len)).expect("sent");
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().expect("sender thread");
        }
        out.close();
        writer.await.expect("writer");
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), 4_000 * len);
        let mut next = [0u32; 2];
        for chunk in got.chunks(len) {
            let n = u32::from_be_bytes(chunk[..4].try_into().expect("4 bytes"));
            let (t, i) = ((n >> 16) as usize, n & 0xffff);
            assert_eq!(i, next[t], "thread {t}'s frames in order");
            assert_eq!(chunk, &frame(n, len)[..], "frame {n} whole");
            next[t] += 1;
        }
    }
}
