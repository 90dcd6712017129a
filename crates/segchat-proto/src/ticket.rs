//! Tickets: the server's signed statement "this node key speaks for this
//! user (or visitor) until then". A channel host checks a member's ticket
//! against the server's public key with no round trip, and every store
//! checks a message's author against the ticket it carries.
//!
//! The signature is ed25519 over [`Ticket::signing_bytes`]:
//!
//! ```text
//! "segchat-ticket-v1" 0x00
//! kind: u8 (0 user, 1 visitor)
//! username: u16 length · UTF-8
//! session_id: u16 length · UTF-8
//! node_key: 32 bytes
//! issued_at_ms: u64
//! expires_at_ms: u64
//! ```
//!
//! A ticket is public: every stored message carries its author's. So a
//! node that presents one on the peer link (`peer_connect`, `watch`) also
//! proves it holds the ticket's node key: it signs the fresh nonce of the
//! link's `welcome`, bound to what it asks for ([`prove`], checked by
//! [`SignedTicket::check_proof`]):
//!
//! ```text
//! "segchat-peer-proof-v1" 0x00
//! nonce: 32 bytes (from the peer link's welcome)
//! purpose: u8 (1 peer_connect, 2 watch)
//! peer_connect: channel: u16 length · UTF-8
//! watch:        stream_id: u64
//! ```
//!
//! Binding the purpose stops a host that received a member's proof for its
//! own channel (or stream) from replaying it to another host: it names
//! another channel (channel names are unique on a server).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::types::AccountKind;

const DOMAIN: &[u8] = b"segchat-ticket-v1\0";
const PROOF_DOMAIN: &[u8] = b"segchat-peer-proof-v1\0";

/// Bytes of the nonce a peer link's `welcome` carries.
pub const NONCE_LEN: usize = 32;

/// What a proof of the node key is for: it is signed in, so a proof made
/// for one request is worthless for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofPurpose<'a> {
    /// `peer_connect` to this channel.
    PeerConnect { channel: &'a str },
    /// `watch` of this stream.
    Watch { stream_id: u64 },
    /// `dm`: handing over this direct message (its id).
    Dm { id: &'a uuid::Uuid },
    /// `file_open` of this file (its hash, hex).
    File { hash: &'a str },
}

/// What the server vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Ticket {
    pub username: String,
    pub kind: AccountKind,
    pub session_id: String,
    /// The node's ed25519 public key, hex (64 characters).
    pub node_key: String,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A ticket with the server's signature (hex, 128 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SignedTicket {
    pub ticket: Ticket,
    pub signature: String,
}

/// Why a ticket or signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("malformed key or signature: {0}")]
    Malformed(&'static str),
    #[error("signature does not verify")]
    BadSignature,
    #[error("ticket expired")]
    Expired,
    #[error("ticket is for {ticket:?}, not {claimed:?}")]
    WrongUser { ticket: String, claimed: String },
    #[error("the proof is not signed by the ticket's node key: this ticket is not yours")]
    NotYours,
    #[error("message id {0} is not a UUIDv7 (RFC 9562 version 7)")]
    NotV7(uuid::Uuid),
}

impl Ticket {
    /// The exact bytes the server signs.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, TrustError> {
        let key = decode_key(&self.node_key)?;
        let mut out = Vec::with_capacity(96 + self.username.len() + self.session_id.len());
        out.extend_from_slice(DOMAIN);
        out.push(match self.kind {
            AccountKind::User => 0,
            AccountKind::Visitor => 1,
        });
        put_str16(&mut out, &self.username)?;
        put_str16(&mut out, &self.session_id)?;
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        Ok(out)
    }

    /// Signs the ticket with the server's key.
    pub fn sign(self, server: &SigningKey) -> Result<SignedTicket, TrustError> {
        let sig = server.sign(&self.signing_bytes()?);
        Ok(SignedTicket {
            ticket: self,
            signature: hex::encode(sig.to_bytes()),
        })
    }
}

impl SignedTicket {
    /// Checks the server's signature and, with `now_ms`, the expiry.
    pub fn verify(&self, server: &VerifyingKey, now_ms: Option<u64>) -> Result<(), TrustError> {
        let sig = decode_signature(&self.signature)?;
        server
            .verify(&self.ticket.signing_bytes()?, &sig)
            .map_err(|_| TrustError::BadSignature)?;
        if let Some(now) = now_ms {
            if now >= self.ticket.expires_at_ms {
                return Err(TrustError::Expired);
            }
        }
        Ok(())
    }

    /// The node key the ticket vouches for.
    pub fn node_key(&self) -> Result<VerifyingKey, TrustError> {
        decode_key(&self.ticket.node_key)
    }

    /// Checks that `proof` (hex signature) was made by this ticket's node
    /// key over `nonce` and `purpose`: the presenter holds the key.
    pub fn check_proof(
        &self,
        nonce: &[u8; NONCE_LEN],
        purpose: ProofPurpose<'_>,
        proof: &str,
    ) -> Result<(), TrustError> {
        let key = self.node_key()?;
        let sig = decode_signature(proof)?;
        key.verify_strict(&proof_bytes(nonce, purpose)?, &sig)
            .map_err(|_| TrustError::NotYours)
    }
}

/// The exact bytes a proof of the node key signs.
pub fn proof_bytes(
    nonce: &[u8; NONCE_LEN],
    purpose: ProofPurpose<'_>,
) -> Result<Vec<u8>, TrustError> {
    let mut out = Vec::with_capacity(PROOF_DOMAIN.len() + NONCE_LEN + 11);
    out.extend_from_slice(PROOF_DOMAIN);
    out.extend_from_slice(nonce);
    match purpose {
        ProofPurpose::PeerConnect { channel } => {
            out.push(1);
            put_str16(&mut out, channel)?;
        }
        ProofPurpose::Watch { stream_id } => {
            out.push(2);
            out.extend_from_slice(&stream_id.to_be_bytes());
        }
        ProofPurpose::Dm { id } => {
            out.push(3);
            out.extend_from_slice(id.as_bytes());
        }
        ProofPurpose::File { hash } => {
            out.push(4);
            put_str16(&mut out, hash)?;
        }
    }
    Ok(out)
}

/// Proves possession of `node` for `purpose` on the link whose `welcome`
/// carried `nonce`: the hex signature a `peer_connect` or `watch` carries.
pub fn prove(
    node: &SigningKey,
    nonce: &[u8; NONCE_LEN],
    purpose: ProofPurpose<'_>,
) -> Result<String, TrustError> {
    Ok(hex::encode(
        node.sign(&proof_bytes(nonce, purpose)?).to_bytes(),
    ))
}

/// Parses the hex nonce of a peer link's `welcome`.
pub fn decode_nonce(hex_nonce: &str) -> Result<[u8; NONCE_LEN], TrustError> {
    let mut bytes = [0u8; NONCE_LEN];
    hex::decode_to_slice(hex_nonce, &mut bytes).map_err(|_| TrustError::Malformed("nonce"))?;
    Ok(bytes)
}

pub(crate) fn put_str16(out: &mut Vec<u8>, s: &str) -> Result<(), TrustError> {
    let len = u16::try_from(s.len()).map_err(|_| TrustError::Malformed("string too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Parses a hex ed25519 public key.
pub fn decode_key(hex_key: &str) -> Result<VerifyingKey, TrustError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes).map_err(|_| TrustError::Malformed("key"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| TrustError::Malformed("key"))
}

/// Parses a hex ed25519 signature.
pub fn decode_signature(hex_sig: &str) -> Result<Signature, TrustError> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(hex_sig, &mut bytes).map_err(|_| TrustError::Malformed("signature"))?;
    Ok(Signature::from_bytes(&bytes))
}

/// A ticket for `username`'s node key, signed by `server`, valid from 0 to
/// `expires_at_ms` (for tests).
#[cfg(test)]
pub(crate) fn test_ticket(
    server: &SigningKey,
    node: &SigningKey,
    username: &str,
    expires_at_ms: u64,
) -> SignedTicket {
    Ticket {
        username: username.into(),
        kind: AccountKind::User,
        session_id: "s".into(),
        node_key: hex::encode(node.verifying_key().as_bytes()),
        issued_at_ms: 0,
        expires_at_ms,
    }
    .sign(server)
    .expect("sign ticket")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ticket(node: &SigningKey) -> Ticket {
        Ticket {
            username: "alice".into(),
            kind: AccountKind::User,
            session_id: "s1".into(),
            node_key: hex::encode(node.verifying_key().as_bytes()),
            issued_at_ms: 1_000,
            expires_at_ms: 2_000,
        }
    }

    #[test]
    fn a_signed_ticket_verifies_only_under_its_server() {
        let server = key(1);
        let t = ticket(&key(2)).sign(&server).expect("sign");
        assert_eq!(t.verify(&server.verifying_key(), Some(1_500)), Ok(()));
        assert_eq!(
            t.verify(&key(3).verifying_key(), Some(1_500)),
            Err(TrustError::BadSignature)
        );
        assert_eq!(
            t.verify(&server.verifying_key(), Some(2_000)),
            Err(TrustError::Expired)
        );
    }

    #[test]
    fn only_the_ticket_holder_proves_and_only_for_what_it_signed() {
        let (server, alice, mallory) = (key(1), key(2), key(3));
        let t = ticket(&alice).sign(&server).expect("sign");
        let nonce = [5u8; NONCE_LEN];
        let club = ProofPurpose::PeerConnect { channel: "club" };
        let proof = prove(&alice, &nonce, club).expect("prove");
        assert_eq!(t.check_proof(&nonce, club, &proof), Ok(()));
        // Someone else's key, another nonce, another channel or a stream.
        let stolen = prove(&mallory, &nonce, club).expect("prove");
        assert_eq!(
            t.check_proof(&nonce, club, &stolen),
            Err(TrustError::NotYours)
        );
        assert_eq!(
            t.check_proof(&[6; NONCE_LEN], club, &proof),
            Err(TrustError::NotYours)
        );
        assert_eq!(
            t.check_proof(
                &nonce,
                ProofPurpose::PeerConnect { channel: "clubs" },
                &proof
            ),
            Err(TrustError::NotYours)
        );
        assert_eq!(
            t.check_proof(&nonce, ProofPurpose::Watch { stream_id: 1 }, &proof),
            Err(TrustError::NotYours)
        );
        assert_eq!(
            t.check_proof(&nonce, club, ""),
            Err(TrustError::Malformed("signature"))
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let server = key(1);
        let good = ticket(&key(2)).sign(&server).expect("sign");
        let mut t = good.clone();
        t.ticket.username = "mallory".into();
        assert_eq!(
            t.verify(&server.verifying_key(), None),
            Err(TrustError::BadSignature)
        );
        let mut t = good.clone();
        t.ticket.kind = AccountKind::Visitor;
        assert_eq!(
            t.verify(&server.verifying_key(), None),
            Err(TrustError::BadSignature)
        );
        let mut t = good;
        t.ticket.node_key = hex::encode(key(9).verifying_key().as_bytes());
        assert_eq!(
            t.verify(&server.verifying_key(), None),
            Err(TrustError::BadSignature)
        );
    }
}
