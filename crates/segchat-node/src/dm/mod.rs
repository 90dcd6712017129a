//! Direct messages, end-to-end encrypted with Olm (`vodozemac`).
//!
//! - `olm.rs`: this device's Olm account and sessions, pickled encrypted.
//! - `keys.rs`: keeps the device's keys published on the server's
//!   directory while signed in.
//! - `service.rs`: sending (outbox, encrypting per device, the server's
//!   mailbox), receiving (fetching, opening, keeping, acknowledging),
//!   receipts, and the conversations the API shows.
//! - `p2p.rs`: the same envelopes handed straight to an online device's
//!   node on a peer link (`dm`), the server's mailbox when that fails.
//!
//! Invariant: the Olm state is loaded, changed and saved under
//! [`Device::lock`] only, so the key publisher and the DM service never
//! save over each other's changes (a lost ratchet step would make the
//! next message unreadable).

pub(crate) mod handover;
pub(crate) mod keys;
pub(crate) mod olm;
pub(crate) mod p2p;
pub(crate) mod service;

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tokio::sync::{Mutex, MutexGuard};

use crate::store::{Store, StoreError};
use olm::{pickle_key, Olm, OlmError};

/// This node's device: its key, its store, and the lock over its Olm
/// state.
#[derive(Clone)]
pub(crate) struct Device {
    store: Store,
    node: SigningKey,
    pickle: [u8; 32],
    lock: Arc<Mutex<()>>,
}

/// Why the Olm state could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Olm(#[from] OlmError),
}

impl Device {
    pub(crate) fn new(store: Store, node: SigningKey) -> Device {
        Device {
            store,
            pickle: pickle_key(&node),
            node,
            lock: Arc::new(Mutex::new(())),
        }
    }

    pub(crate) fn node(&self) -> &SigningKey {
        &self.node
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn pickle_key(&self) -> &[u8; 32] {
        &self.pickle
    }

    /// Takes the lock and loads `username`'s Olm state (a new account,
    /// saved at once, the first time). Hold the guard until what changed
    /// is saved.
    pub(crate) async fn open(
        &self,
        username: &str,
    ) -> Result<(MutexGuard<'_, ()>, Olm), StateError> {
        let guard = self.lock.lock().await;
        let olm = match self.store.olm_state(username).await? {
            Some(p) => Olm::unpickle(&p, &self.pickle)?,
            None => {
                let fresh = Olm::new();
                self.store
                    .save_olm_state(username, fresh.pickle(&self.pickle))
                    .await?;
                fresh
            }
        };
        Ok((guard, olm))
    }

    /// Saves `olm` as `username`'s state (call with the guard held).
    pub(crate) async fn save(&self, username: &str, olm: &Olm) -> Result<(), StoreError> {
        self.store
            .save_olm_state(username, olm.pickle(&self.pickle))
            .await
    }
}
