//! Device keys for end-to-end encrypted direct messages: what a node
//! publishes so others can open an Olm session with it (its identity keys
//! and a pool of one-time keys, each used once, plus a fallback key), and
//! the signatures that bind them to the node's key.
//!
//! A device is a node signed in as a user; its `node_key` is the ed25519
//! key its transport authenticates and tickets name. It signs what it
//! publishes, so the server cannot swap a key without the node's secret
//! (it could still vouch for a node of its own: comparing key
//! fingerprints out of band is the defence). Keys are hex, 32 bytes each.
//!
//! ```text
//! device:       "segchat-device-keys-v1" 0x00 · node_key · curve25519 · ed25519
//! one-time key: "segchat-one-time-key-v1" 0x00 · node_key · fallback: u8 ·
//!               key_id: u16 length · UTF-8 · key
//! ```

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

const DEVICE_DOMAIN: &[u8] = b"segchat-device-keys-v1\0";
const ONE_TIME_DOMAIN: &[u8] = b"segchat-one-time-key-v1\0";

/// Longest one-time key id (bytes).
pub const MAX_KEY_ID_LEN: usize = 64;

/// A device's identity keys (an Olm account's), signed by its node key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeviceKeys {
    /// The node's ed25519 key (hex): who signs.
    pub node_key: String,
    /// The Olm account's Curve25519 identity key (hex).
    pub curve25519: String,
    /// The Olm account's Ed25519 key (hex).
    pub ed25519: String,
    /// The node key's signature over the device bytes (hex, 64 bytes).
    pub signature: String,
}

/// A one-time key (or the fallback key, reused until replaced), signed by
/// its node key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OneTimeKey {
    pub key_id: String,
    /// Curve25519 (hex).
    pub key: String,
    #[serde(default)]
    pub fallback: bool,
    /// The node key's signature (hex, 64 bytes).
    pub signature: String,
}

/// Why published keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0} is not 32 bytes of hex")]
    BadKey(&'static str),
    #[error("the signature is not 64 bytes of hex")]
    BadSignature,
    #[error("a key id is 1 to {MAX_KEY_ID_LEN} bytes")]
    BadKeyId,
    #[error("the signature does not match the node key")]
    Forged,
}

fn key32(hex_str: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).map_err(|_| KeyError::BadKey(what))?;
    Ok(out)
}

fn signature(hex_str: &str) -> Result<Signature, KeyError> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(hex_str, &mut out).map_err(|_| KeyError::BadSignature)?;
    Ok(Signature::from_bytes(&out))
}

fn node_key(hex_str: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_bytes(&key32(hex_str, "node_key")?).map_err(|_| KeyError::BadKey("node_key"))
}

impl DeviceKeys {
    fn signing_bytes(node_key: &[u8; 32], curve25519: &[u8; 32], ed25519: &[u8; 32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(DEVICE_DOMAIN.len() + 96);
        b.extend_from_slice(DEVICE_DOMAIN);
        b.extend_from_slice(node_key);
        b.extend_from_slice(curve25519);
        b.extend_from_slice(ed25519);
        b
    }

    /// The device keys `node` publishes for an account's two keys.
    pub fn sign(node: &SigningKey, curve25519: [u8; 32], ed25519: [u8; 32]) -> DeviceKeys {
        let nk = node.verifying_key().to_bytes();
        let sig = node.sign(&Self::signing_bytes(&nk, &curve25519, &ed25519));
        DeviceKeys {
            node_key: hex::encode(nk),
            curve25519: hex::encode(curve25519),
            ed25519: hex::encode(ed25519),
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// Checks the form of every key and the node key's signature.
    pub fn verify(&self) -> Result<(), KeyError> {
        let nk = node_key(&self.node_key)?;
        let curve = key32(&self.curve25519, "curve25519")?;
        let ed = key32(&self.ed25519, "ed25519")?;
        let bytes = Self::signing_bytes(&nk.to_bytes(), &curve, &ed);
        nk.verify(&bytes, &signature(&self.signature)?)
            .map_err(|_| KeyError::Forged)
    }
}

impl OneTimeKey {
    fn signing_bytes(node_key: &[u8; 32], key_id: &str, key: &[u8; 32], fallback: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(ONE_TIME_DOMAIN.len() + 67 + key_id.len());
        b.extend_from_slice(ONE_TIME_DOMAIN);
        b.extend_from_slice(node_key);
        b.push(u8::from(fallback));
        b.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
        b.extend_from_slice(key_id.as_bytes());
        b.extend_from_slice(key);
        b
    }

    /// A one-time (or fallback) key signed by `node`.
    pub fn sign(node: &SigningKey, key_id: &str, key: [u8; 32], fallback: bool) -> OneTimeKey {
        let nk = node.verifying_key().to_bytes();
        let sig = node.sign(&Self::signing_bytes(&nk, key_id, &key, fallback));
        OneTimeKey {
            key_id: key_id.to_owned(),
            key: hex::encode(key),
            fallback,
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// Checks the key's form and `node_key`'s signature over it.
    pub fn verify(&self, node_key_hex: &str) -> Result<(), KeyError> {
        if self.key_id.is_empty() || self.key_id.len() > MAX_KEY_ID_LEN {
            return Err(KeyError::BadKeyId);
        }
        let nk = node_key(node_key_hex)?;
        let key = key32(&self.key, "key")?;
        let bytes = Self::signing_bytes(&nk.to_bytes(), &self.key_id, &key, self.fallback);
        nk.verify(&bytes, &signature(&self.signature)?)
            .map_err(|_| KeyError::Forged)
    }
}

/// A device of a user as `claim_keys` answers: its identity keys and one
/// of its one-time keys (taken from the server's pool, never given out
/// again), or its fallback key when the pool is empty, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClaimedDevice {
    pub keys: DeviceKeys,
    pub one_time_key: Option<OneTimeKey>,
    /// Where the device's node takes peer connections, while it is online
    /// (and visible to the claimer): a direct message goes there first,
    /// and through the server's mailbox when that fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(crate::types::arb::socket_addr())")
    )]
    pub p2p_addr: Option<std::net::SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn signed_keys_verify_and_any_change_is_caught() {
        let d = DeviceKeys::sign(&node(), [1; 32], [2; 32]);
        assert_eq!(d.verify(), Ok(()));
        let mut swapped = d.clone();
        swapped.curve25519 = hex::encode([3u8; 32]);
        assert_eq!(swapped.verify(), Err(KeyError::Forged));
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut resigned = DeviceKeys::sign(&other, [1; 32], [2; 32]);
        resigned.node_key = d.node_key.clone();
        assert_eq!(
            resigned.verify(),
            Err(KeyError::Forged),
            "signed by another node"
        );

        let k = OneTimeKey::sign(&node(), "AAAAAQ", [4; 32], false);
        assert_eq!(k.verify(&d.node_key), Ok(()));
        let mut as_fallback = k.clone();
        as_fallback.fallback = true;
        assert_eq!(as_fallback.verify(&d.node_key), Err(KeyError::Forged));
        let mut renamed = k.clone();
        renamed.key_id = "AAAAAg".into();
        assert_eq!(renamed.verify(&d.node_key), Err(KeyError::Forged));
    }

    #[test]
    fn malformed_keys_are_named() {
        let mut d = DeviceKeys::sign(&node(), [1; 32], [2; 32]);
        d.ed25519 = "zz".into();
        assert_eq!(d.verify(), Err(KeyError::BadKey("ed25519")));
        let mut k = OneTimeKey::sign(&node(), "a", [4; 32], false);
        k.key_id = "x".repeat(MAX_KEY_ID_LEN + 1);
        assert_eq!(k.verify(&d.node_key), Err(KeyError::BadKeyId));
    }
}
