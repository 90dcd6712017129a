//! Chat messages and the canonical bytes their authors sign.
//!
//! A message's id is a UUIDv7 made by the author's node (any other id is
//! refused, see [`check_id`]); every store keeps
//! a channel as a set keyed by id and orders it by `(ts_ms, id)`. The
//! author signs with their node key; the message carries the author's
//! server-signed [`SignedTicket`], so anyone holding the server's public key
//! can check it, at any time, with nothing else:
//!
//! 1. the ticket verifies under the server's key,
//! 2. the ticket is for a registered user named `author`,
//! 3. `signature` verifies under the ticket's node key over:
//!
//! ```text
//! "segchat-msg-v2" 0x00
//! id: 16 bytes (the UUID's bytes)
//! channel: u16 length · UTF-8
//! author: u16 length · UTF-8
//! ts_ms: u64
//! re: 1 byte (0 none, 1 reply, 2 edit, 3 delete, 4 react, 5 unreact),
//!     then, unless 0, the 16 bytes of the id it points at
//! body: 32 bytes, the SHA-256 of the body's UTF-8 — or, when the
//!       message shares a file, of the body and the file's fields
//!       (`files::content_hash`)
//! ```
//!
//! Signing the body's hash rather than the body lets a store **redact** a
//! message — drop a deleted or superseded body, keep its hash in
//! `redacted` — and still pass it on as a message anyone can verify (see
//! `edits.rs`). Messages signed before version 2 (`"segchat-msg-v1"`,
//! the same fields without `re`, the body itself as u32 length · UTF-8)
//! still verify; they cannot be redacted.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sha2::{Digest, Sha256};

use crate::files::{content_hash, FileRef};
use crate::refs::Ref;
use crate::ticket::{decode_signature, put_str16, SignedTicket, TrustError};
use crate::types::AccountKind;

/// Default largest message body, in bytes (servers and hosts may lower it).
pub const MAX_BODY_LEN: usize = 4_000;
/// Most messages one `history` / `sync` / `backup` frame carries.
pub const MAX_BATCH: usize = 200;

/// Budget for the messages of one frame, in bytes of JSON, leaving room
/// under [`crate::MAX_FRAME_LEN`] for the rest of the frame.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

const DOMAIN: &[u8] = b"segchat-msg-v2\0";
const DOMAIN_V1: &[u8] = b"segchat-msg-v1\0";

/// An upper bound of a message's JSON size: every body byte may be escaped
/// as `\u00XX`, and the ticket, id and signature take well under 1 KiB
/// (a file's hash, size and field names under 128 bytes more; its
/// thumbnail is base64, which JSON never escapes).
pub fn wire_size_bound(m: &Message) -> usize {
    let file = m.file.as_ref().map_or(0, |f| {
        128 + 6 * (f.name.len() + f.mime.len()) + f.thumb.as_ref().map_or(0, String::len)
    });
    1024 + file
        + 6 * (m.body.len() + m.channel.len() + m.author.len() + m.ticket.ticket.username.len())
}

/// How many of `messages`, from the front, fit one frame's batch budget
/// (at least one, at most [`MAX_BATCH`]).
pub fn batch_len<'a>(messages: impl IntoIterator<Item = &'a Message>) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for m in messages.into_iter().take(MAX_BATCH) {
        bytes += wire_size_bound(m);
        if n > 0 && bytes > MAX_BATCH_BYTES {
            break;
        }
        n += 1;
    }
    n
}

/// Checks that a message id is a UUIDv7: version 7 and the RFC 9562
/// variant (`10` in the two top bits of byte 8). Its 16 bytes, wherever
/// they are signed or sent, are in RFC 9562 order: big-endian, the order
/// its text reads (`01a1ffcf-fece-7419-…` is `01 a1 ff cf fe ce 74 19 …`).
/// Version 7 makes ids sort by creation time; anything else is refused.
pub fn check_id(id: &Uuid) -> Result<(), TrustError> {
    if id.get_version_num() == 7 && id.get_variant() == uuid::Variant::RFC4122 {
        Ok(())
    } else {
        Err(TrustError::NotV7(*id))
    }
}

/// A signed chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Message {
    #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
    pub id: Uuid,
    pub channel: String,
    pub author: String,
    /// Hybrid-logical-clock milliseconds: never earlier than any message
    /// the author's node had seen when it wrote this one.
    pub ts_ms: u64,
    pub body: String,
    /// The message this one replies to, edits, deletes or reacts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<Ref>,
    /// The file this message shares (signed with the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    /// Set when a store removed the body (deleted or superseded): the
    /// SHA-256 of the body that was signed, hex; `body` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// The author's ticket, binding their node key to their name.
    pub ticket: SignedTicket,
    /// ed25519 over the canonical bytes, hex.
    pub signature: String,
}

/// A message without its author's ticket: how a host broadcasts it. The
/// ticket travels once per link and is put back with
/// [`Unticketed::with_ticket`]; the signature covers the same canonical
/// bytes either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Unticketed {
    #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
    pub id: Uuid,
    pub channel: String,
    pub author: String,
    pub ts_ms: u64,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<Ref>,
    /// The file this message shares (signed with the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// ed25519 over the canonical bytes, hex.
    pub signature: String,
}

impl Unticketed {
    /// The whole message again, with the ticket that came on the link.
    pub fn with_ticket(self, ticket: SignedTicket) -> Message {
        Message {
            id: self.id,
            channel: self.channel,
            author: self.author,
            ts_ms: self.ts_ms,
            body: self.body,
            re: self.re,
            file: self.file,
            redacted: self.redacted,
            ticket,
            signature: self.signature,
        }
    }
}

/// A message as stores keep it, one text column per field (the ticket as
/// its JSON, `re` as its kind's name and the target's id): what a store
/// reads back, made whole by [`Columns::into_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub id: String,
    pub channel: String,
    pub author: String,
    pub ts_ms: i64,
    pub body: String,
    pub ticket: String,
    pub signature: String,
    pub re_kind: Option<String>,
    pub re_id: Option<String>,
    pub redacted: Option<String>,
    /// The shared file's [`FileRef`] as JSON.
    pub file: Option<String>,
}

impl Columns {
    /// The message, or which column does not parse.
    pub fn into_message(self) -> Result<Message, String> {
        let bad = |what: &str, e: &dyn std::fmt::Display| format!("message {what}: {e}");
        let re = match (self.re_kind, self.re_id) {
            (Some(kind), Some(to)) => Some(Ref {
                kind: crate::refs::RefKind::parse(&kind).ok_or_else(|| bad("re_kind", &kind))?,
                id: to.parse().map_err(|e| bad("re_id", &e))?,
            }),
            (None, None) => None,
            _ => {
                return Err("message re: a kind without a target or a target without a kind".into())
            }
        };
        Ok(Message {
            id: self.id.parse().map_err(|e| bad("id", &e))?,
            channel: self.channel,
            author: self.author,
            ts_ms: self.ts_ms as u64,
            body: self.body,
            re,
            file: self
                .file
                .map(|f| serde_json::from_str(&f))
                .transpose()
                .map_err(|e| bad("file", &e))?,
            redacted: self.redacted,
            ticket: serde_json::from_str(&self.ticket).map_err(|e| bad("ticket", &e))?,
            signature: self.signature,
        })
    }
}

/// A message with the sequence number one store gave it. Sequence numbers
/// are per store and per channel: "everything after N" is exact and cheap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Sequenced {
    pub seq: u64,
    pub message: Message,
}

/// The fields an author signs.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub id: Uuid,
    pub channel: &'a str,
    pub author: &'a str,
    pub ts_ms: u64,
    pub body: &'a str,
    pub re: Option<Ref>,
    pub file: Option<&'a FileRef>,
}

/// The SHA-256 of a body, as signed.
pub fn body_hash(body: &str) -> [u8; 32] {
    Sha256::digest(body.as_bytes()).into()
}

impl Draft<'_> {
    /// The exact bytes that are signed. Refuses an id that is not a
    /// UUIDv7, so no node signs one and no store accepts one.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, TrustError> {
        self.signing_bytes_with(&content_hash(self.body, self.file)?)
    }

    /// The signed bytes with the body's hash given (a redacted message).
    fn signing_bytes_with(&self, hash: &[u8; 32]) -> Result<Vec<u8>, TrustError> {
        check_id(&self.id)?;
        let mut out = Vec::with_capacity(128 + self.channel.len() + self.author.len());
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(self.id.as_bytes());
        put_str16(&mut out, self.channel)?;
        put_str16(&mut out, self.author)?;
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        match self.re {
            None => out.push(0),
            Some(r) => {
                out.push(r.kind.tag());
                out.extend_from_slice(r.id.as_bytes());
            }
        }
        out.extend_from_slice(hash);
        Ok(out)
    }

    /// The bytes version 1 signed (no `re`, the whole body).
    fn signing_bytes_v1(&self) -> Result<Vec<u8>, TrustError> {
        check_id(&self.id)?;
        let mut out =
            Vec::with_capacity(64 + self.channel.len() + self.author.len() + self.body.len());
        out.extend_from_slice(DOMAIN_V1);
        out.extend_from_slice(self.id.as_bytes());
        put_str16(&mut out, self.channel)?;
        put_str16(&mut out, self.author)?;
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        let len = u32::try_from(self.body.len()).map_err(|_| TrustError::Malformed("body"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.body.as_bytes());
        Ok(out)
    }

    /// Signs the draft with the author's node key.
    pub fn sign(self, key: &SigningKey, ticket: SignedTicket) -> Result<Message, TrustError> {
        let sig = key.sign(&self.signing_bytes()?);
        Ok(Message {
            id: self.id,
            channel: self.channel.to_owned(),
            author: self.author.to_owned(),
            ts_ms: self.ts_ms,
            body: self.body.to_owned(),
            re: self.re,
            file: self.file.cloned(),
            redacted: None,
            ticket,
            signature: hex::encode(sig.to_bytes()),
        })
    }
}

impl Message {
    fn draft(&self) -> Draft<'_> {
        Draft {
            id: self.id,
            channel: &self.channel,
            author: &self.author,
            ts_ms: self.ts_ms,
            body: &self.body,
            re: self.re,
            file: self.file.as_ref(),
        }
    }

    /// The body's hash as signed: from `redacted` when the body was
    /// removed (which must leave it empty), else computed.
    fn signed_hash(&self) -> Result<[u8; 32], TrustError> {
        match &self.redacted {
            None => content_hash(&self.body, self.file.as_ref()),
            Some(h) if self.body.is_empty() && self.file.is_none() => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map_err(|_| TrustError::Malformed("redacted"))?;
                Ok(out)
            }
            Some(_) => Err(TrustError::Malformed("redacted with a body")),
        }
    }

    /// Removes the body, keeping what verifies it: the signature still
    /// checks, the text is gone. Does nothing to a message signed before
    /// version 2 (its signature covers the body itself) and answers
    /// whether the body is gone.
    pub fn redact(&mut self) -> bool {
        if self.redacted.is_some() {
            return true;
        }
        if self.verify_v1_shape() {
            return false;
        }
        let Ok(hash) = content_hash(&self.body, self.file.as_ref()) else {
            return false;
        };
        self.redacted = Some(hex::encode(hash));
        self.body.clear();
        self.file = None;
        true
    }

    /// Whether this message's signature is over version 1's bytes (its
    /// signature does not verify as version 2 but does as version 1).
    /// Only for stores deciding whether a body can be removed.
    fn verify_v1_shape(&self) -> bool {
        let (Ok(key), Ok(sig)) = (self.ticket.node_key(), decode_signature(&self.signature)) else {
            return false;
        };
        let v2 = self
            .signed_hash()
            .and_then(|h| self.draft().signing_bytes_with(&h));
        if v2.is_ok_and(|b| key.verify(&b, &sig).is_ok()) {
            return false;
        }
        self.re.is_none()
            && self.file.is_none()
            && self
                .draft()
                .signing_bytes_v1()
                .is_ok_and(|b| key.verify(&b, &sig).is_ok())
    }

    /// Checks the ticket under the server's key, that it names the author,
    /// and the author's signature. Does not check the ticket's expiry: a
    /// message stays valid after its author's ticket runs out.
    pub fn verify(&self, server: &VerifyingKey) -> Result<(), TrustError> {
        self.ticket.verify(server, None)?;
        self.verify_author_signature()
    }

    /// Checks only that the ticket names the author and the author's
    /// signature, for callers that already verified this exact ticket.
    pub fn verify_author_signature(&self) -> Result<(), TrustError> {
        self.verify_author_signature_with(&self.ticket.node_key()?)
    }

    /// As [`Message::verify_author_signature`], with the ticket's node key
    /// already decoded (callers that cache it per ticket).
    pub fn verify_author_signature_with(&self, node_key: &VerifyingKey) -> Result<(), TrustError> {
        let (bytes, sig) = self.signed_parts()?;
        if node_key.verify(&bytes, &sig).is_ok() {
            return Ok(());
        }
        // Signed before version 2: whole body, no `re` or file, never
        // redacted.
        if self.re.is_none() && self.file.is_none() && self.redacted.is_none() {
            let v1 = self.draft().signing_bytes_v1()?;
            if node_key.verify(&v1, &sig).is_ok() {
                return Ok(());
            }
        }
        Err(TrustError::BadSignature)
    }

    /// Checks that the ticket names the author, and returns the bytes the
    /// author signed and the signature (for checking many at once).
    pub fn signed_parts(&self) -> Result<(Vec<u8>, ed25519_dalek::Signature), TrustError> {
        let t = &self.ticket.ticket;
        if t.username != self.author || t.kind != AccountKind::User {
            return Err(TrustError::WrongUser {
                ticket: t.username.clone(),
                claimed: self.author.clone(),
            });
        }
        Ok((
            self.draft().signing_bytes_with(&self.signed_hash()?)?,
            decode_signature(&self.signature)?,
        ))
    }

    /// Splits off the author's ticket (to send it once per link).
    pub fn into_parts(self) -> (Unticketed, SignedTicket) {
        (
            Unticketed {
                id: self.id,
                channel: self.channel,
                author: self.author,
                ts_ms: self.ts_ms,
                body: self.body,
                re: self.re,
                file: self.file,
                redacted: self.redacted,
                signature: self.signature,
            },
            self.ticket,
        )
    }

    /// The display order key.
    pub fn order_key(&self) -> (u64, Uuid) {
        (self.ts_ms, self.id)
    }

    /// The shared file as stores keep it: [`Columns::file`].
    pub fn file_column(&self) -> Option<String> {
        self.file
            .as_ref()
            .and_then(|f| serde_json::to_string(f).ok())
    }
}

#[cfg(test)]
pub(crate) fn arb_uuid() -> impl proptest::strategy::Strategy<Value = Uuid> {
    use proptest::prelude::*;
    any::<u128>().prop_map(Uuid::from_u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SigningKey, SigningKey, SignedTicket) {
        let server = SigningKey::from_bytes(&[1; 32]);
        let node = SigningKey::from_bytes(&[2; 32]);
        let ticket = crate::ticket::test_ticket(&server, &node, "alice", 10);
        (server, node, ticket)
    }

    /// A UUIDv7 (version 7, RFC 9562 variant) numbered `n`.
    fn v7(n: u128) -> Uuid {
        Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n)
    }

    fn message(node: &SigningKey, ticket: SignedTicket, author: &str) -> Message {
        Draft {
            file: None,
            id: v7(7),
            channel: "general",
            author,
            ts_ms: 1_000,
            body: "hello",
            re: None,
        }
        .sign(node, ticket)
        .expect("sign")
    }

    #[test]
    fn a_signed_message_verifies_even_after_the_ticket_expired() {
        let (server, node, ticket) = setup();
        assert_eq!(
            message(&node, ticket, "alice").verify(&server.verifying_key()),
            Ok(())
        );
    }

    #[test]
    fn the_id_is_signed_as_its_16_bytes_in_the_order_its_text_reads() {
        let id: Uuid = "01a1ffcf-fece-7419-ac87-4ce4f5b50d89"
            .parse()
            .expect("uuid");
        let draft = Draft {
            file: None,
            id,
            channel: "c",
            author: "a",
            ts_ms: 1,
            body: "b",
            re: None,
        };
        let bytes = draft.signing_bytes().expect("bytes");
        assert_eq!(
            hex::encode(&bytes[DOMAIN.len()..DOMAIN.len() + 16]),
            "01a1ffcffece7419ac874ce4f5b50d89"
        );
    }

    #[test]
    fn an_id_that_is_not_a_uuid_v7_is_refused_when_signing_and_verifying() {
        let (server, node, ticket) = setup();
        let draft = |id| Draft {
            file: None,
            id,
            channel: "general",
            author: "alice",
            ts_ms: 1_000,
            body: "hello",
            re: None,
        };
        // Version 4, the nil id, version 7 with the wrong variant.
        let not_v7 = [
            "4a1f1e2d-3c4b-4a59-8687-98a9babcdcfe",
            "00000000-0000-0000-0000-000000000000",
            "01a1ffcf-fece-7419-cc87-4ce4f5b50d89",
        ];
        for text in not_v7 {
            let id: Uuid = text.parse().expect("uuid");
            assert_eq!(
                draft(id).sign(&node, ticket.clone()).map(|_| ()),
                Err(TrustError::NotV7(id)),
                "{text}"
            );
            // Signed by a client that did not check: every store refuses it.
            let sig = node.sign(&signing_bytes_unchecked(&draft(id)));
            let m = Message {
                signature: hex::encode(sig.to_bytes()),
                ..message(&node, ticket.clone(), "alice")
            };
            let m = Message { id, ..m };
            assert_eq!(
                m.verify(&server.verifying_key()),
                Err(TrustError::NotV7(id))
            );
        }
    }

    /// The canonical bytes without the id check, as a careless client
    /// would sign them.
    fn signing_bytes_unchecked(d: &Draft<'_>) -> Vec<u8> {
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(d.id.as_bytes());
        put_str16(&mut out, d.channel).expect("channel");
        put_str16(&mut out, d.author).expect("author");
        out.extend_from_slice(&d.ts_ms.to_be_bytes());
        out.extend_from_slice(&(d.body.len() as u32).to_be_bytes());
        out.extend_from_slice(d.body.as_bytes());
        out
    }

    #[test]
    fn a_message_signed_before_version_2_still_verifies_and_keeps_its_body() {
        let (server, node, ticket) = setup();
        let mut old = message(&node, ticket, "alice");
        let v1 = old.draft().signing_bytes_v1().expect("v1 bytes");
        old.signature = hex::encode(node.sign(&v1).to_bytes());
        assert_eq!(old.verify(&server.verifying_key()), Ok(()));
        assert!(!old.redact(), "its signature covers the body");
        assert_eq!(old.body, "hello");
        // Version 1's bytes never pass for a message with `re`.
        old.re = Some(Ref {
            kind: crate::refs::RefKind::Reply,
            id: v7(1),
        });
        assert_eq!(
            old.verify(&server.verifying_key()),
            Err(TrustError::BadSignature)
        );
    }

    #[test]
    fn an_altered_body_or_forged_author_is_caught() {
        let (server, node, ticket) = setup();
        let good = message(&node, ticket.clone(), "alice");
        let mut altered = good.clone();
        altered.body = "hellO".into();
        assert_eq!(
            altered.verify(&server.verifying_key()),
            Err(TrustError::BadSignature)
        );
        let mut moved = good.clone();
        moved.channel = "other".into();
        assert_eq!(
            moved.verify(&server.verifying_key()),
            Err(TrustError::BadSignature)
        );
        // A host signing in someone else's name with its own ticket.
        let forged = message(&node, ticket, "bob");
        assert!(matches!(
            forged.verify(&server.verifying_key()),
            Err(TrustError::WrongUser { .. })
        ));
        // A ticket the server never signed.
        let mut fake = good;
        fake.ticket.ticket.username = "mallory".into();
        fake.author = "mallory".into();
        assert_eq!(
            fake.verify(&server.verifying_key()),
            Err(TrustError::BadSignature)
        );
    }
}
