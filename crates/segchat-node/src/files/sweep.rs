//! Dropping what no message shares any more: a file whose messages were
//! deleted (or whose channel's messages are gone) stops taking room.
//!
//! Two steps. Every `sweep_every`, files recorded here that no message
//! shares, and that have not changed for `unused_for` (so a file just
//! uploaded, whose message is being written, stays), lose their record
//! and the tag that keeps them; a fetch running now is left alone. Then
//! iroh-blobs' collector removes the bytes no tag keeps, except those of
//! files still recorded ([`protect`]): a fetch stopped part way keeps
//! what it holds to resume from.

use std::collections::HashSet;
use std::sync::Arc;

use iroh_blobs::store::{ProtectCb, ProtectOutcome};
use iroh_blobs::Hash;

use super::{lock, tag_name, to_hash, Files};
use crate::store::Store;

/// What the collector must leave besides tagged files: every file this
/// node records. When the records cannot be read, nothing is collected.
pub(super) fn protect(store: Store) -> ProtectCb {
    Arc::new(move |live: &mut HashSet<Hash>| {
        let store = store.clone();
        Box::pin(async move {
            // Read on a task of its own: the callback's future must be
            // `Sync`, which the store's future is not.
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let _ = tx.send(store.recorded_files().await);
            });
            match rx.await {
                Ok(Ok(hashes)) => {
                    live.extend(hashes.iter().filter_map(|h| to_hash(h).ok()));
                    ProtectOutcome::Continue
                }
                _ => ProtectOutcome::Abort,
            }
        })
    })
}

impl Files {
    /// Sweeps every `sweep_every` until the node stops.
    pub(crate) async fn sweep_loop(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.sweep_every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            self.sweep().await;
        }
    }

    /// Forgets the files no message shares; how many.
    async fn sweep(&self) -> usize {
        let unused_for = self.inner.unused_for.as_millis() as u64;
        let before = crate::clock::now_ms().saturating_sub(unused_for);
        let Ok(unshared) = self.inner.store.unshared_files(before).await else {
            return 0;
        };
        let mut dropped = 0;
        for hex in unshared {
            let Ok(hash) = to_hash(&hex) else { continue };
            if lock(&self.inner.running).contains_key(&hash) {
                continue;
            }
            // The record first: once it is gone, nothing shares the file
            // and nothing resumes it; a message that came meanwhile keeps
            // both.
            if !matches!(self.inner.store.forget_file(hex.clone()).await, Ok(true)) {
                continue;
            }
            let _ = self.inner.blobs.tags().delete(tag_name(hash)).await;
            self.inner
                .log
                .record("FILE_DROPPED", "local", format!("hash={hex}"));
            dropped += 1;
        }
        dropped
    }
}
