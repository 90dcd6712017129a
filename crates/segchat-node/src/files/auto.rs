//! What this node fetches without being asked: fetches a stop or a crash
//! left part way, images as their messages arrive (so the timeline shows
//! them), and, for a channel this node hosts, a copy of each file shared
//! there, within `keep_for_others`.

use std::time::Duration;

use super::{lock, to_hash, Files, AUTO_FETCH, AUTO_RUNNING, DM_SCOPE};

impl Files {
    /// Resumes the fetches a stop or a crash left part way.
    pub(super) async fn resume(self) {
        // Seeders want this node's ticket: wait until it is signed in.
        for _ in 0..120 {
            if self.inner.chat.username().is_some() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
        let Ok(unfinished) = self.inner.store.unfinished_files().await else {
            return;
        };
        for r in unfinished {
            if let Err(e) = self.start(r.channel, r.file, r.for_others).await {
                tracing::warn!(error = %e, "could not resume a file fetch");
            }
        }
    }

    /// If this node hosts `channel`, fetches the file `hash` a message
    /// there shares (a holder just said it has it).
    pub(super) async fn keep_copy(&self, channel: &str, hash: &str) {
        let me = self.inner.chat.username();
        let hosted = match self.inner.store.cached_channels().await {
            Ok(Some(c)) => c
                .channels
                .iter()
                .any(|c| c.name == channel && Some(&c.owner) == me.as_ref()),
            _ => false,
        };
        if !hosted {
            return;
        }
        let shared = self
            .inner
            .store
            .file_shared_in(channel.to_owned(), hash.to_owned())
            .await;
        let Ok(Some(file)) = shared else {
            return;
        };
        let h = match to_hash(hash) {
            Ok(h) => h,
            Err(_) => return,
        };
        let _one_at_a_time = self.inner.keeping.lock().await;
        if self.complete_size(h).await.is_some() || lock(&self.inner.running).contains_key(&h) {
            return;
        }
        let kept = self.inner.store.kept_for_others().await.unwrap_or(u64::MAX);
        let quota = self.inner.keep_for_others;
        if kept.saturating_add(file.size) > quota {
            self.inner.log.record(
                "FILE_NOT_KEPT",
                "local",
                format!(
                    "hash={hash} size={} channel={channel} kept={kept} quota={quota}",
                    file.size
                ),
            );
            return;
        }
        if let Err(e) = self.fetch_for(channel, &file, true).await {
            tracing::info!(%hash, error = %e, "not keeping a copy");
        }
    }

    /// Resumes what a stop or a crash left part way, then fetches, as
    /// they arrive, the images shared in channels this node follows (up
    /// to [`AUTO_FETCH`] bytes), so the timeline shows them. Runs until
    /// the node stops.
    pub(crate) async fn run(self, bus: crate::events::EventBus) {
        let mut events = bus.subscribe();
        self.clone().resume().await;
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = self.inner.shutdown.cancelled() => return,
            };
            use crate::events::{ChatEvent, NodeEvent};
            let (scope, file) = match event {
                Ok(NodeEvent::Chat(ChatEvent::Message { message })) => {
                    (message.channel, message.file.map(|f| *f))
                }
                Ok(NodeEvent::Chat(ChatEvent::DirectMessage { message })) => {
                    (DM_SCOPE.to_owned(), message.file.map(|f| f.file))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                _ => continue,
            };
            let Some(file) = &file else {
                continue;
            };
            let busy = lock(&self.inner.running).len() >= AUTO_RUNNING;
            if file.is_image() && file.size <= AUTO_FETCH && !busy {
                if let Err(e) = self.fetch(&scope, file).await {
                    tracing::debug!(hash = %file.hash, error = %e, "image not fetched");
                }
            }
        }
    }
}
