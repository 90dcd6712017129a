//! This device's Olm state for end-to-end encrypted direct messages: its
//! account (identity keys, one-time keys) and its sessions with other
//! devices, with `vodozemac` doing all the cryptography.
//!
//! Invariants:
//! - Keys from the server are used only after their node key's signature
//!   checks out ([`DeviceKeys::verify`], [`OneTimeKey::verify`]).
//! - A message that does not decrypt changes nothing: no session is kept
//!   from a failed attempt, and a replayed message fails (its key was used
//!   up), so the caller drops it.
//! - What changes the state (a new session, a one-time key used up by an
//!   incoming one, every ratchet step) must be saved before what was
//!   decrypted is acted on: [`Olm::pickle`] after each call, in one
//!   transaction with what the message did.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use segchat_proto::devices::{ClaimedDevice, DeviceKeys, KeyError, OneTimeKey};
use serde::{Deserialize, Serialize};
use vodozemac::olm::{Account, AccountPickle, OlmMessage, Session, SessionConfig, SessionPickle};
use vodozemac::Curve25519PublicKey;

/// Sessions kept per other device, most recently used first: a new one
/// comes when either side starts over (a lost session, a new key), and
/// messages of the last few may still be in flight.
const SESSIONS_PER_DEVICE: usize = 5;

/// Other devices sessions are held with, at most: what arrives from
/// strangers cannot grow the state (and the work of saving it) forever.
const MAX_DEVICES: usize = 1000;

/// One-time keys an account keeps ready (vodozemac holds at most 50).
pub(crate) const ONE_TIME_KEYS: usize = 50;

/// Why a message could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OlmError {
    #[error("the device's keys are not signed by its node: {0}")]
    Unsigned(#[from] KeyError),
    #[error("the device has no one-time or fallback key to start a session with")]
    NoOneTimeKey,
    #[error("no session with that device")]
    NoSession,
    #[error("could not start a session: {0}")]
    Session(String),
    #[error("could not encrypt: {0}")]
    Encrypt(String),
    #[error("could not decrypt: {0}")]
    Decrypt(String),
    #[error("stored Olm state could not be read: {0}")]
    Pickle(String),
}

/// This device's Olm account and sessions.
pub(crate) struct Olm {
    account: Account,
    /// By the other device's Curve25519 key (hex).
    sessions: HashMap<String, Vec<Session>>,
}

impl std::fmt::Debug for Olm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Olm")
            .field("curve25519", &self.curve25519())
            .field("devices", &self.sessions.len())
            .finish()
    }
}

/// The state as stored: each part encrypted with the pickle key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pickled {
    pub(crate) account: String,
    /// (other device's Curve25519 key, its sessions most recent first).
    pub(crate) sessions: Vec<(String, Vec<String>)>,
}

/// The key Olm state is stored under, derived from the node's secret key
/// (so the database alone, copied off the machine, does not give it up).
pub(crate) fn pickle_key(node: &SigningKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"segchat-olm-pickle-v1\0");
    h.update(node.to_bytes());
    h.finalize().into()
}

fn curve(hex_str: &str) -> Result<Curve25519PublicKey, OlmError> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut b).map_err(|_| KeyError::BadKey("curve25519"))?;
    Ok(Curve25519PublicKey::from_bytes(b))
}

impl Olm {
    /// A new account with its fallback key (published with the first
    /// one-time keys), and no sessions.
    pub(crate) fn new() -> Olm {
        let mut account = Account::new();
        account.generate_fallback_key();
        Olm {
            account,
            sessions: HashMap::new(),
        }
    }

    /// This device's Curve25519 identity key (hex).
    pub(crate) fn curve25519(&self) -> String {
        hex::encode(self.account.curve25519_key().to_bytes())
    }

    /// The identity keys to publish, signed by `node`.
    pub(crate) fn device_keys(&self, node: &SigningKey) -> DeviceKeys {
        DeviceKeys::sign(
            node,
            self.account.curve25519_key().to_bytes(),
            *self.account.ed25519_key().as_bytes(),
        )
    }

    /// One-time keys (and the fallback key) not published yet, signed by
    /// `node`, after making new ones so that `ONE_TIME_KEYS - server_holds`
    /// are waiting. Call [`Olm::mark_published`] once the server took them.
    pub(crate) fn keys_to_publish(
        &mut self,
        node: &SigningKey,
        server_holds: usize,
    ) -> Vec<OneTimeKey> {
        let want = ONE_TIME_KEYS.saturating_sub(server_holds);
        let waiting = self.account.one_time_keys().len();
        if want > waiting {
            self.account.generate_one_time_keys(want - waiting);
        }
        let mut keys: Vec<OneTimeKey> = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(id, k)| OneTimeKey::sign(node, &id.to_base64(), k.to_bytes(), false))
            .collect();
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        keys.extend(
            self.account
                .fallback_key()
                .into_iter()
                .map(|(id, k)| OneTimeKey::sign(node, &id.to_base64(), k.to_bytes(), true)),
        );
        keys
    }

    /// Makes a new fallback key, to be published with the next keys (the
    /// previous one still opens sessions already started with it).
    pub(crate) fn renew_fallback_key(&mut self) {
        self.account.generate_fallback_key();
    }

    /// The server holds what [`Olm::keys_to_publish`] gave.
    pub(crate) fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }
}

impl Olm {
    /// Encrypts for a device, with the newest session held with it, or
    /// else a new one from the key claimed for it (checked first).
    pub(crate) fn encrypt(
        &mut self,
        device: &ClaimedDevice,
        plaintext: &[u8],
    ) -> Result<OlmMessage, OlmError> {
        device.keys.verify()?;
        let theirs = device.keys.curve25519.clone();
        if self.sessions.get(&theirs).is_none_or(|s| s.is_empty()) {
            let otk = device.one_time_key.as_ref().ok_or(OlmError::NoOneTimeKey)?;
            otk.verify(&device.keys.node_key)?;
            let session = self
                .account
                .create_outbound_session(
                    SessionConfig::version_1(),
                    curve(&theirs)?,
                    curve(&otk.key)?,
                )
                .map_err(|e| OlmError::Session(e.to_string()))?;
            self.keep(&theirs, session);
        }
        self.encrypt_to(&theirs, plaintext)
    }

    /// Encrypts with the newest session held with the device whose
    /// Curve25519 key is `theirs`, if there is one.
    pub(crate) fn encrypt_to(
        &mut self,
        theirs: &str,
        plaintext: &[u8],
    ) -> Result<OlmMessage, OlmError> {
        let session = self
            .sessions
            .get_mut(theirs)
            .and_then(|s| s.first_mut())
            .ok_or(OlmError::NoSession)?;
        session
            .encrypt(plaintext)
            .map_err(|e| OlmError::Encrypt(e.to_string()))
    }

    /// Decrypts a message from the device whose Curve25519 key is
    /// `theirs`: with the session it names or one held (the one that
    /// works moves to the front), or a new inbound session for a first
    /// message (using up the one-time key it was made with).
    pub(crate) fn decrypt(
        &mut self,
        theirs: &str,
        message: &OlmMessage,
    ) -> Result<Vec<u8>, OlmError> {
        let held = self.sessions.entry(theirs.to_owned()).or_default();
        if let OlmMessage::PreKey(pre) = message {
            if let Some(i) = held.iter().position(|s| s.session_id() == pre.session_id()) {
                let plain = held[i]
                    .decrypt(message)
                    .map_err(|e| OlmError::Decrypt(e.to_string()))?;
                let s = held.remove(i);
                held.insert(0, s);
                return Ok(plain);
            }
            let created = self
                .account
                .create_inbound_session(SessionConfig::version_1(), curve(theirs)?, pre)
                .map_err(|e| OlmError::Decrypt(e.to_string()))?;
            self.keep(theirs, created.session);
            return Ok(created.plaintext);
        }
        let mut last = OlmError::NoSession;
        for i in 0..held.len() {
            match held[i].decrypt(message) {
                Ok(plain) => {
                    let s = held.remove(i);
                    held.insert(0, s);
                    return Ok(plain);
                }
                Err(e) => last = OlmError::Decrypt(e.to_string()),
            }
        }
        Err(last)
    }

    /// The Curve25519 keys (hex) of the devices a session is held with.
    pub(crate) fn session_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn keep(&mut self, theirs: &str, session: Session) {
        if !self.sessions.contains_key(theirs) && self.sessions.len() >= MAX_DEVICES {
            // Bounded whatever strangers send: one other device's
            // sessions make room (it starts a new one if it writes again).
            if let Some(out) = self.sessions.keys().find(|k| *k != theirs).cloned() {
                self.sessions.remove(&out);
            }
        }
        let held = self.sessions.entry(theirs.to_owned()).or_default();
        held.insert(0, session);
        held.truncate(SESSIONS_PER_DEVICE);
    }

    /// How many sessions are held with the device `theirs`.
    pub(crate) fn sessions_with(&self, theirs: &str) -> usize {
        self.sessions.get(theirs).map_or(0, Vec::len)
    }

    /// Drops the newest session with `theirs` (one just made for a
    /// message that then proved to be garbage).
    pub(crate) fn drop_newest(&mut self, theirs: &str) {
        if let Some(held) = self.sessions.get_mut(theirs) {
            if !held.is_empty() {
                held.remove(0);
            }
            if held.is_empty() {
                self.sessions.remove(theirs);
            }
        }
    }
}

impl Olm {
    /// The whole state, encrypted with `key`, to store.
    pub(crate) fn pickle(&self, key: &[u8; 32]) -> Pickled {
        let mut sessions: Vec<(String, Vec<String>)> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| {
                (
                    k.clone(),
                    s.iter().map(|s| s.pickle().encrypt(key)).collect(),
                )
            })
            .collect();
        sessions.sort();
        Pickled {
            account: self.account.pickle().encrypt(key),
            sessions,
        }
    }

    /// The state [`Olm::pickle`] stored.
    pub(crate) fn unpickle(p: &Pickled, key: &[u8; 32]) -> Result<Olm, OlmError> {
        let bad = |e: vodozemac::PickleError| OlmError::Pickle(e.to_string());
        let account =
            Account::from_pickle(AccountPickle::from_encrypted(&p.account, key).map_err(bad)?);
        let mut sessions = HashMap::new();
        for (theirs, pickles) in &p.sessions {
            let mut held = Vec::with_capacity(pickles.len());
            for s in pickles {
                held.push(Session::from_pickle(
                    SessionPickle::from_encrypted(s, key).map_err(bad)?,
                ));
            }
            sessions.insert(theirs.clone(), held);
        }
        Ok(Olm { account, sessions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// `olm`'s device as the server would hand it out, with one key.
    fn claimed(olm: &mut Olm, node: &SigningKey) -> ClaimedDevice {
        let keys = olm.keys_to_publish(node, 0);
        olm.mark_published();
        ClaimedDevice {
            keys: olm.device_keys(node),
            one_time_key: keys.into_iter().find(|k| !k.fallback),
            p2p_addr: None,
        }
    }

    #[test]
    fn a_conversation_opens_with_a_one_time_key_and_goes_both_ways() {
        let (mut ann, mut bob) = (Olm::new(), Olm::new());
        let bob_device = claimed(&mut bob, &node(2));
        let first = ann.encrypt(&bob_device, b"hello bob").expect("encrypt");
        assert!(matches!(first, OlmMessage::PreKey(_)));
        assert_eq!(
            bob.decrypt(&ann.curve25519(), &first).expect("decrypt"),
            b"hello bob"
        );
        let back = bob.encrypt_to(&ann.curve25519(), b"hi ann").expect("reply");
        assert_eq!(
            ann.decrypt(&bob.curve25519(), &back).expect("decrypt"),
            b"hi ann"
        );
        let again = ann.encrypt(&bob_device, b"how are you").expect("encrypt");
        assert!(
            matches!(again, OlmMessage::Normal(_)),
            "the session is set up now"
        );
        assert_eq!(
            bob.decrypt(&ann.curve25519(), &again).expect("decrypt"),
            b"how are you"
        );
    }

    #[test]
    fn a_replayed_or_misattributed_message_does_not_decrypt() {
        let (mut ann, mut bob, eve) = (Olm::new(), Olm::new(), Olm::new());
        let bob_device = claimed(&mut bob, &node(2));
        let first = ann.encrypt(&bob_device, b"once").expect("encrypt");
        bob.decrypt(&ann.curve25519(), &first).expect("decrypt");
        let back = bob.encrypt_to(&ann.curve25519(), b"ok").expect("reply");
        ann.decrypt(&bob.curve25519(), &back).expect("decrypt");
        let second = ann.encrypt(&bob_device, b"twice?").expect("encrypt");
        bob.decrypt(&ann.curve25519(), &second).expect("decrypt");
        assert!(bob.decrypt(&ann.curve25519(), &second).is_err(), "replayed");
        // Said to come from eve: no session with her opens it.
        let third = ann.encrypt(&bob_device, b"from ann").expect("encrypt");
        assert!(bob.decrypt(&eve.curve25519(), &third).is_err());
    }

    #[test]
    fn keys_the_node_did_not_sign_are_refused() {
        let (mut ann, mut bob) = (Olm::new(), Olm::new());
        let mut bob_device = claimed(&mut bob, &node(2));
        let mallory = Olm::new();
        bob_device.keys.curve25519 = mallory.curve25519();
        assert!(matches!(
            ann.encrypt(&bob_device, b"x"),
            Err(OlmError::Unsigned(KeyError::Forged))
        ));
        let mut bob_device = claimed(&mut bob, &node(2));
        if let Some(k) = bob_device.one_time_key.as_mut() {
            k.key = hex::encode([9u8; 32]);
        }
        assert!(matches!(
            ann.encrypt(&bob_device, b"x"),
            Err(OlmError::Unsigned(KeyError::Forged))
        ));
    }

    #[test]
    fn the_state_survives_a_restart_and_the_wrong_key_reads_nothing() {
        let (mut ann, mut bob) = (Olm::new(), Olm::new());
        let bob_device = claimed(&mut bob, &node(2));
        let first = ann.encrypt(&bob_device, b"before").expect("encrypt");
        let key = pickle_key(&node(2));
        let stored = bob.pickle(&key);
        let mut bob = Olm::unpickle(&stored, &key).expect("unpickle");
        assert_eq!(
            bob.decrypt(&ann.curve25519(), &first).expect("decrypt"),
            b"before"
        );
        let stored = bob.pickle(&key);
        let mut bob = Olm::unpickle(&stored, &key).expect("again");
        let next = ann.encrypt(&bob_device, b"after").expect("encrypt");
        assert_eq!(
            bob.decrypt(&ann.curve25519(), &next).expect("decrypt"),
            b"after"
        );
        assert!(Olm::unpickle(&stored, &pickle_key(&node(3))).is_err());
    }

    #[test]
    fn published_keys_are_signed_and_topped_up() {
        let mut olm = Olm::new();
        let n = node(4);
        let keys = olm.keys_to_publish(&n, 0);
        assert_eq!(keys.iter().filter(|k| !k.fallback).count(), ONE_TIME_KEYS);
        assert_eq!(keys.iter().filter(|k| k.fallback).count(), 1);
        let device = olm.device_keys(&n);
        device.verify().expect("device signed");
        for k in &keys {
            k.verify(&device.node_key).expect("key signed");
        }
        olm.mark_published();
        let more = olm.keys_to_publish(&n, 40);
        assert_eq!(
            more.len(),
            10,
            "tops up to {ONE_TIME_KEYS}, fallback already out"
        );
    }
}
