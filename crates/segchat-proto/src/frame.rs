//! Framing: the one registry of frame kinds and the codec both links use.
//!
//! ```text
//! +----------------+-----------+------------------------+
//! | length: u32 BE | kind: u8  | payload (length-1 B)   |
//! +----------------+-----------+------------------------+
//! ```
//!
//! `length` counts the kind byte and the payload. It is checked against the
//! codec's limit before a single payload byte is buffered, so a peer cannot
//! make us allocate more than [`MAX_FRAME_LEN`].
//!
//! | kind   | name       | payload                                          |
//! |--------|------------|--------------------------------------------------|
//! | `0x01` | `hello`    | `version: u16` · JSON [`Hello`]                  |
//! | `0x02` | `welcome`  | `version: u16` · JSON [`Welcome`]                |
//! | `0x10` | `request`  | `id: u32` · JSON request                         |
//! | `0x11` | `response` | `id: u32` · `status: u16` · JSON reply or reason |
//! | `0x12` | `event`    | JSON event                                       |
//! | `0x13` | `binary_event` | `tag: u8` · fixed binary fields (see the link) |
//! | `0x7f` | `error`    | `status: u16` · UTF-8 reason; the sender closes  |
//!
//! All integers are big-endian. A `response` with status 200 carries the
//! reply; any other status carries `{"reason": "..."}`. Events are JSON
//! unless the link's [`LinkEvent`] gives one a binary layout: the peer
//! link's `broadcast`, sent to every member for every message, is one.

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::marker::PhantomData;

use crate::handshake::{Hello, Welcome};
use crate::status::{Failure, Status};

/// Largest frame (kind byte + payload) any segchat codec accepts by default.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Bytes before the payload: the length and the kind.
pub const HEADER_LEN: usize = 5;

/// The registry of frame kinds. A number is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 0x01,
    Welcome = 0x02,
    Request = 0x10,
    Response = 0x11,
    Event = 0x12,
    BinaryEvent = 0x13,
    Error = 0x7f,
}

impl FrameKind {
    pub fn from_byte(b: u8) -> Option<FrameKind> {
        Some(match b {
            0x01 => FrameKind::Hello,
            0x02 => FrameKind::Welcome,
            0x10 => FrameKind::Request,
            0x11 => FrameKind::Response,
            0x12 => FrameKind::Event,
            0x13 => FrameKind::BinaryEvent,
            0x7f => FrameKind::Error,
            _ => return None,
        })
    }
}

/// One decoded frame of a link whose requests, replies and events are
/// `Req`, `Rep` and `Ev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<Req, Rep, Ev> {
    Hello(Hello),
    Welcome(Welcome),
    Request {
        id: u32,
        body: Req,
    },
    Response {
        id: u32,
        result: Result<Rep, Failure>,
    },
    Event(Ev),
    /// The sender is closing the connection, and says why.
    Error(Failure),
}

/// Why bytes could not be decoded into a frame. After `FrameTooLarge`,
/// `UnknownKind` and `Truncated` the stream cannot be trusted and must be
/// closed; `BadRequest` keeps the stream in step and can be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes is larger than the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame (length 0)")]
    EmptyFrame,
    #[error("unknown frame kind 0x{kind:02x}")]
    UnknownKind { kind: u8 },
    #[error("{kind:?} frame is {got} bytes, needs at least {need}")]
    Truncated {
        kind: FrameKind,
        need: usize,
        got: usize,
    },
    #[error("malformed {kind:?} frame: {reason}")]
    Malformed { kind: FrameKind, reason: String },
    /// A request frame whose id could be read but whose body could not: the
    /// receiver answers `id` with `BAD_REQUEST` and carries on.
    #[error("malformed request {id}: {reason}")]
    BadRequest { id: u32, reason: String },
}

impl DecodeError {
    /// The failure to send back before closing (or, for `BadRequest`, as the
    /// response to that id).
    pub fn to_failure(&self) -> Failure {
        match self {
            DecodeError::FrameTooLarge { .. } => Failure::new(Status::TooLarge, self.to_string()),
            _ => Failure::bad_request(self.to_string()),
        }
    }
}

/// A link's events. They travel as JSON (`event`) unless the link gives a
/// hot one fixed binary fields (`binary_event`): that event's
/// `encode_binary` writes them and its `decode_binary` reads them back.
pub trait LinkEvent: Serialize + DeserializeOwned {
    /// Appends this event's binary payload and returns true, or appends
    /// nothing and returns false (it is sent as JSON).
    fn encode_binary(&self, dst: &mut BytesMut) -> bool {
        let _ = dst;
        false
    }

    /// Reads a `binary_event` payload.
    fn decode_binary(payload: &[u8]) -> Result<Self, String> {
        let _ = payload;
        Err("this link has no binary events".into())
    }
}

/// A link read as untyped JSON (tools and tests): every event is JSON.
impl LinkEvent for serde_json::Value {}

/// Errors of the codec: the transport's, or the bytes'.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("could not encode frame: {0}")]
    Encode(String),
}

#[derive(Serialize, Deserialize)]
struct ReasonBody {
    reason: String,
}

impl<Req, Rep, Ev> Frame<Req, Rep, Ev>
where
    Req: Serialize + DeserializeOwned,
    Rep: Serialize + DeserializeOwned,
    Ev: LinkEvent,
{
    /// The frame's kind (`Event` for events in either form).
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::Welcome(_) => FrameKind::Welcome,
            Frame::Request { .. } => FrameKind::Request,
            Frame::Response { .. } => FrameKind::Response,
            Frame::Event(_) => FrameKind::Event,
            Frame::Error(_) => FrameKind::Error,
        }
    }

    /// Appends the whole frame (header included) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        dst.put_u32(0); // patched below
        dst.put_u8(self.kind() as u8);
        match self {
            Frame::Hello(h) => {
                dst.put_u16(h.version);
                json(dst, h)?;
            }
            Frame::Welcome(w) => {
                dst.put_u16(w.version);
                json(dst, w)?;
            }
            Frame::Request { id, body } => {
                dst.put_u32(*id);
                json(dst, body)?;
            }
            Frame::Response { id, result } => {
                dst.put_u32(*id);
                match result {
                    Ok(rep) => {
                        dst.put_u16(Status::Ok.code());
                        json(dst, rep)?;
                    }
                    Err(f) => {
                        dst.put_u16(f.status.code());
                        json(
                            dst,
                            &ReasonBody {
                                reason: f.reason.clone(),
                            },
                        )?;
                    }
                }
            }
            Frame::Event(ev) => {
                if ev.encode_binary(dst) {
                    dst[start + 4] = FrameKind::BinaryEvent as u8;
                } else {
                    json(dst, ev)?;
                }
            }
            Frame::Error(f) => {
                dst.put_u16(f.status.code());
                dst.put_slice(f.reason.as_bytes());
            }
        }
        let len = dst.len() - start - 4;
        let len = u32::try_from(len).map_err(|_| CodecError::Encode("frame over 4 GiB".into()))?;
        dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes one frame from the front of `src`, consuming it. `Ok(None)`
    /// means more bytes are needed (not an error); nothing is consumed then.
    pub fn decode(src: &mut BytesMut, max_len: usize) -> Result<Option<Self>, DecodeError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > max_len {
            return Err(DecodeError::FrameTooLarge { len, max: max_len });
        }
        if len == 0 {
            return Err(DecodeError::EmptyFrame);
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let mut payload = src.split_to(len);
        let kind_byte = payload.get_u8();
        let kind =
            FrameKind::from_byte(kind_byte).ok_or(DecodeError::UnknownKind { kind: kind_byte })?;
        Self::decode_payload(kind, &payload).map(Some)
    }

    fn decode_payload(kind: FrameKind, p: &[u8]) -> Result<Self, DecodeError> {
        let need = |n: usize| {
            if p.len() < n {
                Err(DecodeError::Truncated {
                    kind,
                    need: n,
                    got: p.len(),
                })
            } else {
                Ok(())
            }
        };
        let malformed = |e: &dyn std::fmt::Display| DecodeError::Malformed {
            kind,
            reason: e.to_string(),
        };
        Ok(match kind {
            FrameKind::Hello => {
                need(2)?;
                let mut h: Hello = serde_json::from_slice(&p[2..]).map_err(|e| malformed(&e))?;
                h.version = u16::from_be_bytes([p[0], p[1]]);
                Frame::Hello(h)
            }
            FrameKind::Welcome => {
                need(2)?;
                let mut w: Welcome = serde_json::from_slice(&p[2..]).map_err(|e| malformed(&e))?;
                w.version = u16::from_be_bytes([p[0], p[1]]);
                Frame::Welcome(w)
            }
            FrameKind::Request => {
                need(4)?;
                let id = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                let body =
                    serde_json::from_slice(&p[4..]).map_err(|e| DecodeError::BadRequest {
                        id,
                        reason: e.to_string(),
                    })?;
                Frame::Request { id, body }
            }
            FrameKind::Response => {
                need(6)?;
                let id = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                let code = u16::from_be_bytes([p[4], p[5]]);
                let status = Status::from_code(code)
                    .ok_or_else(|| malformed(&format!("unknown status code {code}")))?;
                let result = if status == Status::Ok {
                    Ok(serde_json::from_slice(&p[6..]).map_err(|e| malformed(&e))?)
                } else {
                    let body: ReasonBody =
                        serde_json::from_slice(&p[6..]).map_err(|e| malformed(&e))?;
                    Err(Failure {
                        status,
                        reason: body.reason,
                    })
                };
                Frame::Response { id, result }
            }
            FrameKind::Event => Frame::Event(serde_json::from_slice(p).map_err(|e| malformed(&e))?),
            FrameKind::BinaryEvent => {
                Frame::Event(Ev::decode_binary(p).map_err(|e| malformed(&e))?)
            }
            FrameKind::Error => {
                need(2)?;
                let code = u16::from_be_bytes([p[0], p[1]]);
                let status = Status::from_code(code)
                    .ok_or_else(|| malformed(&format!("unknown status code {code}")))?;
                let reason = std::str::from_utf8(&p[2..])
                    .map_err(|e| malformed(&e))?
                    .to_owned();
                Frame::Error(Failure { status, reason })
            }
        })
    }
}

/// Appends `v` as JSON.
fn json<T: Serialize>(dst: &mut BytesMut, v: &T) -> Result<(), CodecError> {
    serde_json::to_writer(dst.writer(), v).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Marks which link a codec is for without owning any of its types.
type Link<Req, Rep, Ev> = fn() -> (Req, Rep, Ev);

/// A [`tokio_util::codec`] codec for one link. It refuses frames over
/// `max_len` before buffering them.
#[derive(Debug)]
pub struct FrameCodec<Req, Rep, Ev> {
    max_len: usize,
    _link: PhantomData<Link<Req, Rep, Ev>>,
}

impl<Req, Rep, Ev> FrameCodec<Req, Rep, Ev> {
    pub fn new(max_len: usize) -> Self {
        FrameCodec {
            max_len,
            _link: PhantomData,
        }
    }
}

impl<Req, Rep, Ev> Default for FrameCodec<Req, Rep, Ev> {
    fn default() -> Self {
        FrameCodec::new(MAX_FRAME_LEN)
    }
}

impl<Req, Rep, Ev> Clone for FrameCodec<Req, Rep, Ev> {
    fn clone(&self) -> Self {
        FrameCodec::new(self.max_len)
    }
}

impl<Req, Rep, Ev> tokio_util::codec::Decoder for FrameCodec<Req, Rep, Ev>
where
    Req: Serialize + DeserializeOwned,
    Rep: Serialize + DeserializeOwned,
    Ev: LinkEvent,
{
    type Item = Frame<Req, Rep, Ev>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        Ok(Frame::decode(src, self.max_len)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed in the middle of a frame ({} bytes)",
                    src.len()
                ),
            ))),
        }
    }
}

impl<Req, Rep, Ev> tokio_util::codec::Encoder<Frame<Req, Rep, Ev>> for FrameCodec<Req, Rep, Ev>
where
    Req: Serialize + DeserializeOwned,
    Rep: Serialize + DeserializeOwned,
    Ev: LinkEvent,
{
    type Error = CodecError;

    fn encode(&mut self, frame: Frame<Req, Rep, Ev>, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{LinkKind, PROTOCOL_VERSION};
    use crate::tracker::{Event, Reply, Request};
    use proptest::prelude::*;

    type TFrame = Frame<Request, Reply, Event>;

    // Each arm is boxed: the derived strategies of the tracker's enums
    // are deep types, and one unboxed union of them overflows a test
    // thread's 2 MiB stack in a debug build.
    fn arb_frame() -> impl Strategy<Value = TFrame> {
        prop_oneof![
            any::<Hello>().prop_map(|mut h| {
                h.version = PROTOCOL_VERSION;
                Frame::Hello(h)
            }),
            (any::<Welcome>(), any::<u16>()).prop_map(|(mut w, v)| {
                w.version = v;
                Frame::Welcome(w)
            }),
            (any::<u32>(), any::<Request>())
                .prop_map(|(id, body)| Frame::Request { id, body })
                .boxed(),
            (any::<u32>(), any::<Reply>())
                .prop_map(|(id, r)| Frame::Response { id, result: Ok(r) })
                .boxed(),
            (any::<u32>(), any::<Failure>())
                .prop_filter("errors are not OK", |(_, f)| f.status != Status::Ok)
                .prop_map(|(id, f)| Frame::Response { id, result: Err(f) }),
            any::<Event>().prop_map(Frame::Event).boxed(),
            any::<Failure>().prop_map(Frame::Error),
        ]
    }

    fn encode(f: &TFrame) -> BytesMut {
        let mut buf = BytesMut::new();
        f.encode(&mut buf).expect("encodes");
        buf
    }

    type PFrame = Frame<crate::peer::Request, crate::peer::Reply, crate::peer::Event>;

    fn arb_peer_frame() -> impl Strategy<Value = PFrame> {
        prop_oneof![
            (any::<u32>(), any::<crate::peer::Request>())
                .prop_map(|(id, body)| Frame::Request { id, body }),
            (any::<u32>(), any::<crate::peer::Reply>())
                .prop_map(|(id, r)| Frame::Response { id, result: Ok(r) }),
            any::<crate::peer::Event>().prop_map(Frame::Event),
        ]
    }

    proptest! {
        #[test]
        fn peer_frames_round_trip(frame in arb_peer_frame()) {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf).expect("encodes");
            let back = PFrame::decode(&mut buf, MAX_FRAME_LEN).expect("decodes").expect("complete");
            prop_assert_eq!(back, frame);
        }

        #[test]
        fn decode_inverts_encode(frame in arb_frame()) {
            let mut buf = encode(&frame);
            let back = TFrame::decode(&mut buf, MAX_FRAME_LEN).expect("decodes").expect("complete");
            prop_assert_eq!(back, frame);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn every_prefix_asks_for_more(frame in arb_frame()) {
            let full = encode(&frame);
            for cut in 0..full.len() {
                let mut part = BytesMut::from(&full[..cut]);
                prop_assert_eq!(TFrame::decode(&mut part, MAX_FRAME_LEN), Ok(None));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            // Whatever it says, it must say it without panicking.
            while let Ok(Some(_)) = TFrame::decode(&mut buf, 256) {}
        }

        #[test]
        fn perturbed_frames_never_panic(frame in arb_frame(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&frame).to_vec();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] ^= b;
            }
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = TFrame::decode(&mut buf, MAX_FRAME_LEN) {}
        }
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::MAX);
        buf.put_u8(FrameKind::Request as u8);
        assert_eq!(
            TFrame::decode(&mut buf, MAX_FRAME_LEN),
            Err(DecodeError::FrameTooLarge {
                len: u32::MAX as usize,
                max: MAX_FRAME_LEN
            })
        );
        assert!(
            buf.capacity() < 1024,
            "must not reserve the announced length"
        );
    }

    #[test]
    fn unknown_op_keeps_the_request_id() {
        let mut buf = BytesMut::new();
        let body = br#"{"op":"fly_to_the_moon"}"#;
        buf.put_u32(1 + 4 + body.len() as u32);
        buf.put_u8(FrameKind::Request as u8);
        buf.put_u32(42);
        buf.put_slice(body);
        match TFrame::decode(&mut buf, MAX_FRAME_LEN) {
            Err(DecodeError::BadRequest { id: 42, .. }) => {}
            other => panic!("expected BadRequest for id 42, got {other:?}"),
        }
        assert!(
            buf.is_empty(),
            "the bad frame is consumed; the stream stays in step"
        );
    }

    #[test]
    fn hello_layout_matches_the_documentation() {
        let frame: TFrame = Frame::Hello(Hello::new(LinkKind::Tracker, "t"));
        let bytes = encode(&frame);
        let json = br#"{"link":"tracker","agent":"t"}"#;
        let mut expected = vec![];
        expected.extend_from_slice(&(1 + 2 + json.len() as u32).to_be_bytes());
        expected.push(0x01);
        expected.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        expected.extend_from_slice(json);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn request_json_uses_op_names() {
        let frame: TFrame = Frame::Request {
            id: 7,
            body: Request::GetList {
                channel: Some("general".into()),
                users: Vec::new(),
            },
        };
        let bytes = encode(&frame);
        assert_eq!(&bytes[9..], br#"{"op":"get_list","channel":"general"}"#);
    }
}
