//! Livestreams: the record the server keeps for a live stream, and the UDP
//! datagram that carries its frames from the streamer to each viewer.
//!
//! A frame (one JPEG for [`Codec::Mjpeg`]) is cut into chunks of at most
//! [`MAX_PAYLOAD`] bytes; each chunk travels in one datagram:
//!
//! ```text
//! offset size field
//!      0    2 magic        "SG"
//!      2    1 version      1
//!      3    1 kind         1 = chunk (streamer → viewer), 2 = probe (viewer → streamer),
//!                          3 = challenge (streamer → viewer)
//!      4    8 stream_id    u64, the server's id of the stream
//!     12    4 frame        u32 frame number (chunk); viewer id (probe, challenge)
//!     16    2 chunk        u16 index of this chunk, 0-based (probe, challenge: 0)
//!     18    2 count        u16 chunks in the frame, 1..=MAX_CHUNKS (probe, challenge: 0)
//!     20    8 capture_us   u64 capture time, microseconds since the Unix epoch (chunk);
//!                          the probe counter (probe); 0 (challenge)
//!     28    2 payload_len  u16, at most MAX_PAYLOAD
//!     30    n payload
//!   30+n   16 tag          HMAC-SHA256(session key, bytes 0..30+n), first 16 bytes
//! ```
//!
//! All integers are big-endian. The largest datagram is
//! [`MAX_DATAGRAM`] = 1,146 bytes, under the 1,200-byte budget that fits
//! any path with a 1,280-byte IPv6 minimum MTU (after IP and UDP headers).
//! The session key is 32 random bytes the streamer gives each viewer over
//! the authenticated peer link (`watching`); a datagram whose tag does not
//! verify under the viewer's key is dropped, so a third party who knows the
//! viewer's port cannot inject frames.
//!
//! Probes are fresh and a new address proves itself. A probe's counter
//! goes up by one with every probe of a watch (from 1); the streamer drops
//! a probe whose counter is not above the highest it has seen, so a
//! captured probe replayed later does nothing. A fresh probe from an
//! address other than the one frames go to moves nothing by itself: the
//! streamer sends that address a `challenge` whose payload is 8 random
//! bytes (at most one a second per viewer), and moves the stream there only
//! when a probe from that same address carries those 8 bytes as its
//! payload — which takes the session key. A probe's payload is empty
//! otherwise.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::SocketAddr;

/// First two bytes of every stream datagram.
pub const MAGIC: [u8; 2] = *b"SG";
/// Version of the datagram layout.
pub const DATAGRAM_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 30;
/// Bytes of the truncated HMAC-SHA256 tag after the payload.
pub const TAG_LEN: usize = 16;
/// Largest payload of one datagram.
pub const MAX_PAYLOAD: usize = 1100;
/// Largest datagram: header, payload and tag.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_PAYLOAD + TAG_LEN;
/// The budget every datagram stays under (IPv6 minimum MTU less headers).
pub const DATAGRAM_BUDGET: usize = 1200;
/// Most chunks in one frame.
pub const MAX_CHUNKS: u16 = 1024;
/// Largest frame: [`MAX_CHUNKS`] full chunks (1,126,400 bytes).
pub const MAX_FRAME_BYTES: usize = MAX_PAYLOAD * MAX_CHUNKS as usize;
/// Bytes of a per-viewer session key.
pub const SESSION_KEY_LEN: usize = 32;
/// Largest width or height a stream may announce.
pub const MAX_DIMENSION: u16 = 4096;
/// Bytes of a challenge's payload (and of the probe that answers it).
pub const CHALLENGE_LEN: usize = 8;
/// Highest frame rate a stream may announce.
pub const MAX_FPS: u8 = 60;

const _: () = assert!(MAX_DATAGRAM <= DATAGRAM_BUDGET);

/// How a stream's frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Codec {
    /// Every frame is a whole baseline JPEG (motion JPEG): any frame that
    /// arrives can be shown, whatever was lost before it.
    Mjpeg,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Mjpeg => "mjpeg",
        }
    }
}

/// A live stream as the server announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamInfo {
    /// The server's id of the stream (unique while the server runs).
    pub stream_id: u64,
    pub channel: String,
    /// The streamer's username.
    pub streamer: String,
    /// Where viewers reach the streamer's node over the peer link to
    /// `watch` (its announced UDP address; the relay reaches it by key).
    #[cfg_attr(test, proptest(strategy = "crate::types::arb::socket_addr()"))]
    pub p2p_addr: SocketAddr,
    /// The streamer node's key (hex): the peer link to it must
    /// authenticate with this key.
    pub node_id: String,
    pub width: u16,
    pub height: u16,
    pub fps: u8,
    pub codec: Codec,
    pub started_at_ms: u64,
}

/// What a viewer tells the streamer about its reception (peer link,
/// `stream_report`), every second or so. Counts are since `watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamReport {
    /// Frames reassembled and shown.
    pub frames: u64,
    /// Frames that never completed (a chunk was lost) or never arrived.
    pub lost: u64,
    /// Datagrams that arrived for a frame at or before the one last
    /// shown (or older than every frame in flight), and were dropped.
    pub late: u64,
    /// Datagrams accepted.
    pub datagrams: u64,
    /// Datagrams dropped because their tag did not verify.
    pub forged: u64,
    /// Frames shown in the last second.
    pub fps: u32,
    /// Capture-to-reassembly latency over recent frames, microseconds.
    pub latency_p50_us: u64,
    pub latency_p95_us: u64,
}

/// The kinds of stream datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DatagramKind {
    /// A chunk of a frame, streamer → viewer.
    Chunk = 1,
    /// A viewer's "here I am", viewer → streamer, every second while
    /// watching: it proves the UDP path works and tells the streamer the
    /// viewer's address as seen from outside (NAT).
    Probe = 2,
    /// Streamer → a viewer's new address: "answer this from there with
    /// your key before I send you anything".
    Challenge = 3,
}

impl DatagramKind {
    pub fn from_byte(b: u8) -> Option<DatagramKind> {
        match b {
            1 => Some(DatagramKind::Chunk),
            2 => Some(DatagramKind::Probe),
            3 => Some(DatagramKind::Challenge),
            _ => None,
        }
    }
}

/// The fixed fields of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Header {
    pub kind: DatagramKind,
    pub stream_id: u64,
    /// Frame number of a chunk; the viewer id of a probe.
    pub frame: u32,
    pub chunk: u16,
    pub count: u16,
    pub capture_us: u64,
}

impl Header {
    /// Probe number `counter` (from 1, one up per probe) from viewer
    /// `viewer_id` of `stream_id`.
    pub fn probe(stream_id: u64, viewer_id: u32, counter: u64) -> Header {
        Header {
            kind: DatagramKind::Probe,
            stream_id,
            frame: viewer_id,
            chunk: 0,
            count: 0,
            capture_us: counter,
        }
    }

    /// A challenge to viewer `viewer_id` of `stream_id` at a new address
    /// (its payload: [`CHALLENGE_LEN`] random bytes).
    pub fn challenge(stream_id: u64, viewer_id: u32) -> Header {
        Header {
            kind: DatagramKind::Challenge,
            stream_id,
            frame: viewer_id,
            chunk: 0,
            count: 0,
            capture_us: 0,
        }
    }
}

/// Why a datagram was not accepted. Never fatal: the datagram is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("datagram of {len} bytes is shorter than the smallest ({min})")]
    TooShort { len: usize, min: usize },
    #[error("datagram of {len} bytes is longer than the largest ({max})")]
    TooLong { len: usize, max: usize },
    #[error("not a segchat stream datagram (bad magic)")]
    BadMagic,
    #[error("unsupported datagram version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("unknown datagram kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("payload length {declared} does not match the {actual} bytes present")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("payload of {len} bytes is over the limit of {MAX_PAYLOAD}")]
    PayloadTooLarge { len: usize },
    #[error("chunk {chunk} of {count} is out of range (1..={MAX_CHUNKS} chunks)")]
    BadChunk { chunk: u16, count: u16 },
    #[error("authentication tag does not verify")]
    BadTag,
    #[error("session key must be {SESSION_KEY_LEN} bytes")]
    BadKey,
}

/// A per-viewer session key.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; SESSION_KEY_LEN]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn from_bytes(bytes: [u8; SESSION_KEY_LEN]) -> SessionKey {
        SessionKey(bytes)
    }

    /// Parses the hex form sent in `watching`.
    pub fn from_hex(s: &str) -> Result<SessionKey, DatagramError> {
        let mut bytes = [0u8; SESSION_KEY_LEN];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| DatagramError::BadKey)?;
        Ok(SessionKey(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

/// Appends one datagram (header, payload, tag) to `out`.
pub fn encode(
    header: &Header,
    payload: &[u8],
    key: &SessionKey,
    out: &mut Vec<u8>,
) -> Result<(), DatagramError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DatagramError::PayloadTooLarge { len: payload.len() });
    }
    check_chunk(header)?;
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(DATAGRAM_VERSION);
    out.push(header.kind as u8);
    out.extend_from_slice(&header.stream_id.to_be_bytes());
    out.extend_from_slice(&header.frame.to_be_bytes());
    out.extend_from_slice(&header.chunk.to_be_bytes());
    out.extend_from_slice(&header.count.to_be_bytes());
    out.extend_from_slice(&header.capture_us.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    let mut mac = key.mac();
    mac.update(&out[start..]);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(&tag[..TAG_LEN]);
    Ok(())
}

fn check_chunk(h: &Header) -> Result<(), DatagramError> {
    let ok = match h.kind {
        DatagramKind::Chunk => h.count >= 1 && h.count <= MAX_CHUNKS && h.chunk < h.count,
        DatagramKind::Probe | DatagramKind::Challenge => h.count == 0 && h.chunk == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(DatagramError::BadChunk {
            chunk: h.chunk,
            count: h.count,
        })
    }
}

/// Reads a datagram's header and checks its shape, without checking the
/// tag (the receiver needs the stream id to find the key). Returns the
/// header and the payload.
pub fn peek(bytes: &[u8]) -> Result<(Header, &[u8]), DatagramError> {
    let min = HEADER_LEN + TAG_LEN;
    if bytes.len() < min {
        return Err(DatagramError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    if bytes.len() > MAX_DATAGRAM {
        return Err(DatagramError::TooLong {
            len: bytes.len(),
            max: MAX_DATAGRAM,
        });
    }
    if bytes[0..2] != MAGIC {
        return Err(DatagramError::BadMagic);
    }
    if bytes[2] != DATAGRAM_VERSION {
        return Err(DatagramError::UnsupportedVersion { version: bytes[2] });
    }
    let kind =
        DatagramKind::from_byte(bytes[3]).ok_or(DatagramError::UnknownKind { kind: bytes[3] })?;
    let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let header = Header {
        kind,
        stream_id: u64_at(4),
        frame: u32_at(12),
        chunk: u16_at(16),
        count: u16_at(18),
        capture_us: u64_at(20),
    };
    let declared = u16_at(28) as usize;
    let actual = bytes.len() - HEADER_LEN - TAG_LEN;
    if declared != actual {
        return Err(DatagramError::LengthMismatch { declared, actual });
    }
    if declared > MAX_PAYLOAD {
        return Err(DatagramError::PayloadTooLarge { len: declared });
    }
    check_chunk(&header)?;
    Ok((header, &bytes[HEADER_LEN..HEADER_LEN + declared]))
}

/// Checks a datagram's tag under `key`, then its shape.
pub fn open<'a>(bytes: &'a [u8], key: &SessionKey) -> Result<(Header, &'a [u8]), DatagramError> {
    let parsed = peek(bytes)?;
    let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_truncated_left(tag)
        .map_err(|_| DatagramError::BadTag)?;
    Ok(parsed)
}

/// How many chunks a frame of `len` bytes needs.
pub fn chunks_for(len: usize) -> usize {
    len.div_ceil(MAX_PAYLOAD).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> SessionKey {
        SessionKey::from_bytes([b; SESSION_KEY_LEN])
    }

    fn chunk_header() -> impl Strategy<Value = Header> {
        (any::<u64>(), any::<u32>(), 1..=MAX_CHUNKS, any::<u64>()).prop_flat_map(
            |(stream_id, frame, count, capture_us)| {
                (0..count).prop_map(move |chunk| Header {
                    kind: DatagramKind::Chunk,
                    stream_id,
                    frame,
                    chunk,
                    count,
                    capture_us,
                })
            },
        )
    }

    proptest! {
        #[test]
        fn open_inverts_encode(h in chunk_header(), payload in proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD)) {
            let mut buf = Vec::new();
            encode(&h, &payload, &key(7), &mut buf).expect("encodes");
            prop_assert!(buf.len() <= DATAGRAM_BUDGET);
            let (back, p) = open(&buf, &key(7)).expect("opens");
            prop_assert_eq!(back, h);
            prop_assert_eq!(p, &payload[..]);
        }

        #[test]
        fn another_key_never_opens(h in chunk_header(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = Vec::new();
            encode(&h, &payload, &key(7), &mut buf).expect("encodes");
            prop_assert_eq!(open(&buf, &key(8)), Err(DatagramError::BadTag));
        }

        #[test]
        fn any_flipped_bit_is_refused(h in chunk_header(), payload in proptest::collection::vec(any::<u8>(), 0..64), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            encode(&h, &payload, &key(7), &mut buf).expect("encodes");
            let i = at.index(buf.len());
            buf[i] ^= 1 << bit;
            prop_assert!(open(&buf, &key(7)).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let _ = peek(&bytes);
            let _ = open(&bytes, &key(1));
        }
    }

    #[test]
    fn layout_matches_the_documentation() {
        let h = Header {
            kind: DatagramKind::Chunk,
            stream_id: 0x0102_0304_0506_0708,
            frame: 9,
            chunk: 1,
            count: 2,
            capture_us: 10,
        };
        let mut buf = Vec::new();
        encode(&h, b"hi", &key(0), &mut buf).expect("encodes");
        assert_eq!(&buf[..4], b"SG\x01\x01");
        assert_eq!(&buf[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[12..16], &9u32.to_be_bytes());
        assert_eq!(&buf[16..20], &[0, 1, 0, 2]);
        assert_eq!(&buf[20..28], &10u64.to_be_bytes());
        assert_eq!(&buf[28..32], &[0, 2, b'h', b'i']);
        assert_eq!(buf.len(), HEADER_LEN + 2 + TAG_LEN);
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let mut buf = Vec::new();
        let h = Header::probe(1, 2, 3);
        assert_eq!(
            encode(&h, &[0; MAX_PAYLOAD + 1], &key(0), &mut buf),
            Err(DatagramError::PayloadTooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
        let bad = Header {
            kind: DatagramKind::Chunk,
            chunk: 3,
            count: 3,
            ..h
        };
        assert!(matches!(
            encode(&bad, b"", &key(0), &mut buf),
            Err(DatagramError::BadChunk { .. })
        ));
        assert_eq!(chunks_for(0), 1);
        assert_eq!(chunks_for(MAX_PAYLOAD), 1);
        assert_eq!(chunks_for(MAX_PAYLOAD + 1), 2);
        assert!(SessionKey::from_hex("zz").is_err());
        assert_eq!(SessionKey::from_hex(&key(3).to_hex()).expect("hex"), key(3));
    }
}
