//! Reassembly of frames from chunks, with bounded buffers and the
//! viewer's statistics. Pure: no sockets, no clocks (times are passed in).
//!
//! Rules:
//! - at most [`MAX_PARTIAL`] frames are in flight; a new frame beyond that
//!   evicts the oldest partial one;
//! - a partial frame older than [`STALE_US`] is dropped;
//! - when frame `n` completes, every frame between the last one shown and
//!   `n` counts as lost (partial ones are dropped), so a lost chunk never
//!   stalls the picture;
//! - a chunk of a frame at or before the last one shown is late and
//!   dropped.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use segchat_proto::stream::{Header, StreamReport, MAX_PAYLOAD};

/// Frames being reassembled at once.
pub(crate) const MAX_PARTIAL: usize = 4;
/// A partial frame older than this (by arrival) is given up, microseconds.
pub(crate) const STALE_US: u64 = 1_000_000;
/// Latency samples kept for the percentiles.
const LATENCY_SAMPLES: usize = 256;

/// A whole frame, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownFrame {
    pub number: u32,
    pub capture_us: u64,
    /// When it completed here, microseconds since the Unix epoch.
    pub shown_us: u64,
    pub jpeg: Bytes,
}

#[derive(Debug)]
struct Partial {
    count: u16,
    got: u16,
    chunks: Vec<Option<Bytes>>,
    capture_us: u64,
    first_us: u64,
}

/// One viewer's reassembly state and counters.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    partial: BTreeMap<u32, Partial>,
    last_shown: Option<u32>,
    frames: u64,
    lost: u64,
    late: u64,
    datagrams: u64,
    forged: u64,
    bytes: u64,
    latencies: VecDeque<u64>,
    shown_at: VecDeque<u64>,
}

impl Reassembler {
    /// Takes one authenticated chunk; returns the frame it completed.
    pub(crate) fn push(&mut self, h: &Header, payload: &[u8], now_us: u64) -> Option<ShownFrame> {
        self.datagrams += 1;
        self.bytes += payload.len() as u64;
        if self.last_shown.is_some_and(|last| h.frame <= last) {
            self.late += 1;
            return None;
        }
        self.partial
            .retain(|_, p| now_us.saturating_sub(p.first_us) <= STALE_US);
        if !self.partial.contains_key(&h.frame) {
            while self.partial.len() >= MAX_PARTIAL {
                let Some((&oldest, _)) = self.partial.iter().next() else {
                    break;
                };
                if oldest > h.frame {
                    // Older than everything in flight: not worth a slot.
                    self.late += 1;
                    return None;
                }
                self.partial.remove(&oldest);
            }
            self.partial.insert(
                h.frame,
                Partial {
                    count: h.count,
                    got: 0,
                    chunks: vec![None; h.count as usize],
                    capture_us: h.capture_us,
                    first_us: now_us,
                },
            );
        }
        let p = self.partial.get_mut(&h.frame)?;
        if p.count != h.count || p.capture_us != h.capture_us {
            // Inconsistent chunks: the frame cannot be trusted.
            self.partial.remove(&h.frame);
            return None;
        }
        let slot = p.chunks.get_mut(h.chunk as usize)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(Bytes::copy_from_slice(payload));
        p.got += 1;
        if p.got < p.count {
            return None;
        }
        let done = self.partial.remove(&h.frame)?;
        let mut jpeg = BytesMut::with_capacity(done.chunks.len() * MAX_PAYLOAD);
        for c in done.chunks.into_iter().flatten() {
            jpeg.extend_from_slice(&c);
        }
        if let Some(last) = self.last_shown {
            self.lost += u64::from(h.frame - last - 1);
        }
        self.partial = self.partial.split_off(&h.frame);
        self.last_shown = Some(h.frame);
        self.frames += 1;
        if self.latencies.len() == LATENCY_SAMPLES {
            self.latencies.pop_front();
        }
        self.latencies
            .push_back(now_us.saturating_sub(done.capture_us));
        self.shown_at.push_back(now_us);
        Some(ShownFrame {
            number: h.frame,
            capture_us: done.capture_us,
            shown_us: now_us,
            jpeg: jpeg.freeze(),
        })
    }

    /// Counts a datagram whose tag did not verify.
    pub(crate) fn forged(&mut self) {
        self.forged += 1;
    }

    /// Frames in flight (for tests and stats).
    pub(crate) fn in_flight(&self) -> usize {
        self.partial.len()
    }

    /// Payload bytes received so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The counters, the frame rate over the last second and the latency
    /// percentiles over recent frames.
    pub(crate) fn report(&mut self, now_us: u64) -> StreamReport {
        while self
            .shown_at
            .front()
            .is_some_and(|t| now_us.saturating_sub(*t) > 1_000_000)
        {
            self.shown_at.pop_front();
        }
        let mut lat: Vec<u64> = self.latencies.iter().copied().collect();
        lat.sort_unstable();
        StreamReport {
            frames: self.frames,
            lost: self.lost,
            late: self.late,
            datagrams: self.datagrams,
            forged: self.forged,
            fps: self.shown_at.len() as u32,
            latency_p50_us: percentile(&lat, 50),
            latency_p95_us: percentile(&lat, 95),
        }
    }
}

/// The `p`th percentile of sorted samples (nearest rank); 0 if none.
pub(crate) fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use segchat_proto::stream::DatagramKind;

    fn h(frame: u32, chunk: u16, count: u16) -> Header {
        Header {
            kind: DatagramKind::Chunk,
            stream_id: 1,
            frame,
            chunk,
            count,
            capture_us: u64::from(frame) * 1000,
        }
    }

    #[test]
    fn chunks_in_any_order_make_the_frame() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(&h(1, 2, 3), b"c", 10), None);
        assert_eq!(r.push(&h(1, 0, 3), b"a", 11), None);
        assert_eq!(r.push(&h(1, 0, 3), b"a", 11), None, "duplicate ignored");
        let f = r.push(&h(1, 1, 3), b"b", 1_500).expect("complete");
        assert_eq!(&f.jpeg[..], b"abc");
        assert_eq!(f.number, 1);
        let rep = r.report(1_500);
        assert_eq!((rep.frames, rep.lost, rep.late), (1, 0, 0));
        assert_eq!(rep.latency_p50_us, 500);
    }

    #[test]
    fn an_incomplete_frame_is_skipped_not_waited_for() {
        let mut r = Reassembler::default();
        r.push(&h(1, 0, 1), b"a", 0).expect("frame 1");
        assert_eq!(r.push(&h(2, 0, 2), b"x", 1), None); // chunk 1 lost
        r.push(&h(3, 0, 1), b"c", 2).expect("frame 3 shows at once");
        assert_eq!(r.in_flight(), 0, "frame 2 given up");
        assert_eq!(r.push(&h(2, 1, 2), b"y", 3), None, "late");
        let rep = r.report(3);
        assert_eq!((rep.frames, rep.lost, rep.late), (2, 1, 1));
    }

    #[test]
    fn buffers_stay_bounded() {
        let mut r = Reassembler::default();
        for f in 0..1000u32 {
            // Every frame misses its last chunk.
            r.push(&h(f, 0, 2), b"x", u64::from(f));
            assert!(r.in_flight() <= MAX_PARTIAL);
        }
        assert_eq!(r.report(1000).frames, 0);
        // Stale partials go even without new frames completing.
        r.push(&h(5000, 0, 2), b"x", 10 * STALE_US);
        assert_eq!(r.in_flight(), 1);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 95), 95);
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
