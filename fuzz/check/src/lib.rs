//! What each fuzz target checks, one public function per target, each a
//! plain function of the input bytes: the libFuzzer targets in
//! `fuzz_targets/` only call these, and `tests/corpus.rs` runs them over the
//! committed corpus with a plain `cargo test` (no sanitizer, no nightly
//! flags), which is also how a crash input is replayed without libFuzzer.
//!
//! Every function asserts two things: decoding never panics (the panic is
//! the crash libFuzzer reports), and whatever decodes survives a round
//! trip: encode it again and decode that, and the value is the same (for
//! the fixed binary layouts, the bytes are the same). The signed records
//! also check that what they sign can be signed and verified again.
//!
//! The keys are fixed (`server_key`, `node_key`, `session_key`) so that the
//! seeds in `corpus/` carry valid signatures and tags, and the fuzzer
//! starts past the checks a forger cannot pass.

use std::fmt::Debug;

use bytes::{BufMut, BytesMut};
use ed25519_dalek::SigningKey;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::Decoder;

use segchat_proto::frame::{FrameKind, LinkEvent, HEADER_LEN};
use segchat_proto::message::{wire_size_bound, Draft, Message, Sequenced};
use segchat_proto::peer::{self, LinkTickets};
use segchat_proto::stream::{self, DatagramKind, Header, SessionKey};
use segchat_proto::ticket::{decode_nonce, prove, ProofPurpose, SignedTicket, Ticket, NONCE_LEN};
use segchat_proto::types::{
    validate_channel_name, validate_display_name, validate_username, AccountKind,
};
use segchat_proto::verify::Verifier;
use segchat_proto::{tracker, DecodeError, Frame, FrameCodec, Hello, Welcome, MAX_FRAME_LEN};

pub mod seeds;

/// What a target checks: a function of the input bytes that panics on a
/// defect.
pub type Check = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/` file.
pub const TARGETS: [(&str, Check); 7] = [
    ("tracker_frame", tracker_frame),
    ("peer_frame", peer_frame),
    ("peer_broadcast", peer_broadcast),
    ("handshake", handshake),
    ("stream_datagram", stream_datagram),
    ("ticket", ticket),
    ("message", message),
];

/// The server key the seeds' tickets are signed with.
pub fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5e; 32])
}

/// The node key the seeds' messages are signed with.
pub fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[0x40; 32])
}

/// The session key the seeds' datagrams are tagged with.
pub fn session_key() -> SessionKey {
    SessionKey::from_bytes([0x33; stream::SESSION_KEY_LEN])
}

/// A ticket for `username`'s node (`node_key`) signed by `server_key`, or
/// `None` when the name cannot be signed (over 65,535 bytes).
pub fn ticket_for(username: &str) -> Option<SignedTicket> {
    Ticket {
        username: username.to_owned(),
        kind: AccountKind::User,
        session_id: "fuzz-session".into(),
        node_key: hex::encode(node_key().verifying_key().as_bytes()),
        issued_at_ms: 1_732_000_000_000,
        expires_at_ms: 1_732_086_400_000,
    }
    .sign(&server_key())
    .ok()
}

/// How a frame target reads its input: `0x00` then raw bytes is a stream of
/// whole frames (lengths and all); any other first byte picks a frame kind
/// and the rest is that frame's payload, wrapped in a correct header (so
/// the fuzzer mutates JSON bodies without having to fix up lengths).
pub fn frame_input(data: &[u8]) -> Vec<u8> {
    const KINDS: [FrameKind; 7] = [
        FrameKind::Hello,
        FrameKind::Welcome,
        FrameKind::Request,
        FrameKind::Response,
        FrameKind::Event,
        FrameKind::BinaryEvent,
        FrameKind::Error,
    ];
    match data.split_first() {
        None => Vec::new(),
        Some((0, rest)) => rest.to_vec(),
        Some((&sel, payload)) => wrap(KINDS[usize::from(sel - 1) % KINDS.len()], payload),
    }
}

/// A frame of `kind` around `payload` (header and all).
pub fn wrap(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
    out
}

/// Target `tracker_frame`: the node ↔ server link's codec (every frame
/// kind, every request, reply and event).
pub fn tracker_frame(data: &[u8]) {
    frames::<tracker::Request, tracker::Reply, tracker::Event>(&frame_input(data));
}

/// Target `peer_frame`: the node ↔ node link's codec, with its binary
/// `broadcast` event.
pub fn peer_frame(data: &[u8]) {
    frames::<peer::Request, peer::Reply, peer::Event>(&frame_input(data));
}

/// Target `handshake`: the first frame each way. The input is a `hello`
/// (first byte even) or `welcome` (odd) payload, read by both links and
/// by the untyped JSON link tools use.
pub fn handshake(data: &[u8]) {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let kind = if sel % 2 == 0 {
        FrameKind::Hello
    } else {
        FrameKind::Welcome
    };
    let bytes = wrap(kind, payload);
    frames::<tracker::Request, tracker::Reply, tracker::Event>(&bytes);
    frames::<peer::Request, peer::Reply, peer::Event>(&bytes);
    frames::<serde_json::Value, serde_json::Value, serde_json::Value>(&bytes);
    if payload.len() >= 2 {
        if let Ok(h) = serde_json::from_slice::<Hello>(&payload[2..]) {
            json_round_trip(&h);
        }
        if let Ok(w) = serde_json::from_slice::<Welcome>(&payload[2..]) {
            json_round_trip(&w);
            if let Ok(nonce) = decode_nonce(&w.nonce) {
                assert!(hex::encode(nonce).eq_ignore_ascii_case(&w.nonce));
            }
        }
    }
}

/// Reads frames off `bytes` as a link does, each decoded frame checked by
/// [`frame_round_trip`]; then reads the same bytes through the tokio codec
/// to their end (`decode_eof`).
fn frames<Req, Rep, Ev>(bytes: &[u8])
where
    Req: Serialize + DeserializeOwned + PartialEq + Debug,
    Rep: Serialize + DeserializeOwned + PartialEq + Debug,
    Ev: LinkEvent + PartialEq + Debug,
{
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match Frame::<Req, Rep, Ev>::decode(&mut buf, MAX_FRAME_LEN) {
            Ok(Some(frame)) => frame_round_trip(&frame),
            Ok(None) => break,
            // A frame that was consumed (a bad body) keeps the stream in
            // step: read on. One that was not (a bad length) ends it.
            Err(_) if buf.len() < before => continue,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        DecodeError::FrameTooLarge { .. } | DecodeError::EmptyFrame
                    ),
                    "an error that consumed nothing: {e:?}"
                );
                break;
            }
        }
    }
    let mut codec = FrameCodec::<Req, Rep, Ev>::default();
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = codec.decode_eof(&mut buf) {}
}

/// A decoded frame encodes; every cut of that encoding asks for more bytes;
/// the whole of it decodes to the same frame and nothing is left over.
fn frame_round_trip<Req, Rep, Ev>(frame: &Frame<Req, Rep, Ev>)
where
    Req: Serialize + DeserializeOwned + PartialEq + Debug,
    Rep: Serialize + DeserializeOwned + PartialEq + Debug,
    Ev: LinkEvent + PartialEq + Debug,
{
    let mut enc = BytesMut::new();
    if let Err(e) = frame.encode(&mut enc) {
        panic!("a decoded frame does not encode: {e} ({frame:?})");
    }
    // Re-encoding may add defaulted fields, so allow more than the limit.
    let limit = 2 * MAX_FRAME_LEN;
    for cut in [0, 3, HEADER_LEN, enc.len() / 2, enc.len() - 1] {
        if cut < enc.len() {
            let mut part = BytesMut::from(&enc[..cut]);
            assert_eq!(
                Frame::<Req, Rep, Ev>::decode(&mut part, limit),
                Ok(None),
                "a cut at {cut} of {} bytes",
                enc.len()
            );
        }
    }
    match Frame::<Req, Rep, Ev>::decode(&mut enc, limit) {
        Ok(Some(back)) => assert_eq!(&back, frame, "decode(encode(frame)) differs"),
        other => panic!("the encoding of {frame:?} decodes to {other:?}"),
    }
    assert!(enc.is_empty(), "{} bytes left after the frame", enc.len());
}

/// JSON → value → JSON → value gives the same value.
fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
    let text = serde_json::to_vec(v).unwrap_or_else(|e| panic!("{v:?} does not encode: {e}"));
    match serde_json::from_slice::<T>(&text) {
        Ok(back) => assert_eq!(&back, v, "JSON round trip differs"),
        Err(e) => panic!("{v:?} encodes to JSON that does not decode: {e}"),
    }
}

/// Target `peer_broadcast`: the binary `broadcast` payload alone. What
/// decodes encodes back to the very same bytes (the layout is canonical),
/// and resolves against the link's ticket table to a whole message.
pub fn peer_broadcast(data: &[u8]) {
    let Ok(event) = peer::Event::decode_binary(data) else {
        return;
    };
    let mut enc = BytesMut::new();
    assert!(
        event.encode_binary(&mut enc),
        "a decoded broadcast goes as JSON: {event:?}"
    );
    assert_eq!(&enc[..], data, "encode(decode(bytes)) differs");
    let peer::Event::Broadcast {
        ticket_ref,
        message,
        ..
    } = event
    else {
        panic!("decode_binary made something other than a broadcast: {event:?}");
    };
    let mut tickets = LinkTickets::default();
    let learnt = ticket_for(&message.author).map(|t| tickets.learn(ticket_ref, t));
    match tickets.resolve(ticket_ref, message) {
        Ok(m) => {
            assert!(matches!(learnt, Some(Ok(()))));
            let _ = m.verify(&server_key().verifying_key());
        }
        Err(_) => assert!(!matches!(learnt, Some(Ok(())))),
    }
}

/// Target `stream_datagram`: UDP stream datagrams (chunks, probes and
/// challenges), both
/// ways. First byte even: the rest is a datagram as received (`peek`,
/// `open` under the fixed key); what peeks encodes back to the same header
/// and payload bytes, and what opens to the very same bytes. First byte
/// odd: the rest is a header's fields and a payload to `encode`; what
/// encodes opens to the same header and payload.
pub fn stream_datagram(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let key = session_key();
    if sel % 2 == 0 {
        received(rest, &key);
    } else if rest.len() >= 25 {
        let (f, payload) = rest.split_at(25);
        let u16_at = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
        let mut u64_at = [0u8; 8];
        u64_at.copy_from_slice(&f[1..9]);
        let mut capture = [0u8; 8];
        capture.copy_from_slice(&f[17..25]);
        let header = Header {
            kind: match f[0] % 3 {
                0 => DatagramKind::Chunk,
                1 => DatagramKind::Probe,
                _ => DatagramKind::Challenge,
            },
            stream_id: u64::from_be_bytes(u64_at),
            frame: u32::from_be_bytes([f[9], f[10], f[11], f[12]]),
            chunk: u16_at(13),
            count: u16_at(15),
            capture_us: u64::from_be_bytes(capture),
        };
        let mut out = Vec::new();
        if stream::encode(&header, payload, &key, &mut out).is_ok() {
            assert!(out.len() <= stream::DATAGRAM_BUDGET);
            assert_eq!(stream::open(&out, &key), Ok((header, payload)));
            received(&out, &key);
        } else {
            assert!(out.is_empty(), "a refused datagram left bytes behind");
        }
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(k) = SessionKey::from_hex(text) {
            assert_eq!(SessionKey::from_hex(&k.to_hex()), Ok(k));
        }
    }
}

fn received(bytes: &[u8], key: &SessionKey) {
    let peeked = stream::peek(bytes);
    let opened = stream::open(bytes, key);
    if let Ok(o) = &opened {
        assert_eq!(peeked.as_ref(), Ok(o), "open accepts what peek refuses");
    }
    let Ok((header, payload)) = peeked else {
        return;
    };
    assert!(payload.len() <= stream::MAX_PAYLOAD);
    let mut out = Vec::new();
    if let Err(e) = stream::encode(&header, payload, key, &mut out) {
        panic!("a datagram that peeks does not encode: {e} ({header:?})");
    }
    let body = bytes.len() - stream::TAG_LEN;
    assert_eq!(out.len(), bytes.len());
    assert_eq!(out[..body], bytes[..body], "encode(peek(bytes)) differs");
    if opened.is_ok() {
        assert_eq!(out, bytes, "encode(open(bytes)) differs");
    }
}

/// Target `ticket`: a `SignedTicket` as JSON (it rides in `peer_connect`,
/// `watch`, `ticket` events and every message). JSON round trip; the
/// signing bytes have their documented length; verification under the
/// fixed server key agrees with the signing bytes; and a ticket whose
/// signing bytes exist can be signed and then verifies. An input that is a
/// `peer_connect` or `watch` request instead also has its proof of the
/// node key checked (see [`admission`]).
pub fn ticket(data: &[u8]) {
    let t = match serde_json::from_slice::<SignedTicket>(data) {
        Ok(t) => t,
        Err(_) => match serde_json::from_slice::<peer::Request>(data) {
            Ok(request) => return admission(&request),
            Err(_) => return,
        },
    };
    signed_ticket(&t);
}

/// A `peer_connect` or `watch` with its ticket and proof of the node key,
/// checked against the link's nonce ([`NONCE`]) as a host does. Only a
/// proof made by the ticket's own node key passes: the fixed node key's
/// fresh proof passes exactly when the ticket names that key.
fn admission(request: &peer::Request) {
    let (t, purpose, proof) = match request {
        peer::Request::PeerConnect {
            ticket,
            channel,
            proof,
            ..
        } => (ticket, ProofPurpose::PeerConnect { channel }, proof),
        peer::Request::Watch {
            ticket,
            stream_id,
            proof,
            ..
        } => (
            ticket,
            ProofPurpose::Watch {
                stream_id: *stream_id,
            },
            proof,
        ),
        _ => return,
    };
    json_round_trip(request);
    signed_ticket(t);
    let verdict = t.check_proof(&NONCE, purpose, proof);
    let Ok(fresh) = prove(&node_key(), &NONCE, purpose) else {
        assert!(verdict.is_err(), "a proof for what cannot be signed passed");
        return;
    };
    let ours = t.node_key().ok() == Some(node_key().verifying_key());
    let again = t.check_proof(&NONCE, purpose, &fresh);
    if ours {
        assert_eq!(again, Ok(()), "the holder's own proof is refused");
    } else {
        assert!(again.is_err(), "another key's proof passed");
    }
    if verdict.is_ok() {
        // A proof that passed is bound to this link's nonce.
        assert!(
            t.check_proof(&[!NONCE[0]; NONCE_LEN], purpose, proof)
                .is_err(),
            "a proof passed under another nonce"
        );
    }
}

/// The nonce the seeds' peer links carry in `welcome` and sign.
pub const NONCE: [u8; NONCE_LEN] = [0xa5; NONCE_LEN];

fn signed_ticket(t: &SignedTicket) {
    json_round_trip(t);
    let server = server_key();
    let verdict = t.verify(&server.verifying_key(), None);
    let _ = t.node_key();
    match t.ticket.signing_bytes() {
        Ok(bytes) => {
            let want =
                18 + 1 + 2 + t.ticket.username.len() + 2 + t.ticket.session_id.len() + 32 + 16;
            assert_eq!(bytes.len(), want, "signing bytes of the wrong length");
            assert!(bytes.starts_with(b"segchat-ticket-v1\0"));
            let resigned = match t.ticket.clone().sign(&server) {
                Ok(r) => r,
                Err(e) => panic!("signing bytes exist but signing fails: {e}"),
            };
            assert_eq!(resigned.verify(&server.verifying_key(), None), Ok(()));
            let expires = t.ticket.expires_at_ms;
            if verdict.is_ok() {
                let now = Some(expires.saturating_sub(1));
                let late = Some(expires);
                assert_eq!(
                    t.verify(&server.verifying_key(), late),
                    Err(segchat_proto::ticket::TrustError::Expired)
                );
                if expires > 0 {
                    assert_eq!(t.verify(&server.verifying_key(), now), Ok(()));
                }
            }
        }
        Err(_) => assert!(verdict.is_err(), "a ticket with no signing bytes verified"),
    }
}

/// Target `message`: a `Message` as JSON, and a `Sequenced` one (how
/// `post`, `sync`, `history` and `backup` carry them). JSON round trip;
/// one check and the batched [`Verifier`] agree; a verified message's JSON
/// stays under [`wire_size_bound`] (the batch budget relies on it);
/// splitting off and putting back the ticket gives the same message; the
/// name checks run on its fields; and the same fields signed by a node
/// with a valid ticket for the author verify.
pub fn message(data: &[u8]) {
    let m = match serde_json::from_slice::<Message>(data) {
        Ok(m) => m,
        Err(_) => match serde_json::from_slice::<Sequenced>(data) {
            Ok(s) => {
                json_round_trip(&s);
                s.message
            }
            Err(_) => return,
        },
    };
    json_round_trip(&m);
    let server = server_key().verifying_key();
    let single = m.verify(&server);
    let verifier = Verifier::new(server);
    assert_eq!(verifier.verify(&m), single, "the verifier disagrees");
    let batch = verifier.verify_all(&[&m, &m]);
    assert_eq!(batch.len(), 2);
    if single.is_ok() {
        assert!(
            batch.iter().all(Result::is_ok),
            "a batch refuses a good message"
        );
        let size = serde_json::to_vec(&m).map(|v| v.len()).unwrap_or(0);
        assert!(
            size <= wire_size_bound(&m),
            "a verified message of {size} bytes of JSON is over its bound {}",
            wire_size_bound(&m)
        );
    }
    let (unticketed, t) = m.clone().into_parts();
    assert_eq!(unticketed.with_ticket(t), m);
    let _ = validate_username(&m.author);
    let _ = validate_channel_name(&m.channel);
    let _ = validate_display_name(&m.author);

    let draft = Draft {
        file: None,
        id: m.id,
        channel: &m.channel,
        author: &m.author,
        ts_ms: m.ts_ms,
        body: &m.body,
        re: None,
    };
    let Some(ticket) = ticket_for(&m.author) else {
        return;
    };
    match draft.sign(&node_key(), ticket) {
        Ok(signed) => {
            assert_eq!(
                signed.verify(&server),
                Ok(()),
                "a fresh signature does not verify"
            );
            assert_eq!(verifier.verify(&signed), Ok(()));
        }
        Err(_) => assert!(single.is_err(), "a message with no signing bytes verified"),
    }
}

/// Appends `payload` to a frame buffer after a `u16` version (hello and
/// welcome payloads).
pub fn versioned(version: u16, json: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u16(version);
    out.put_slice(json);
    out.to_vec()
}
