//! A hosted channel's two tasks with the server: the backup streams what
//! the server lacks in acknowledged batches, the pull fetches what members
//! posted through the server while this node was away.

use super::*;

impl Chat {
    pub(super) async fn backup_loop(
        self,
        channel: String,
        bell: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = bell.notified() => {
                    // Let a burst of posts gather into one batch: one round
                    // trip and one server transaction for many messages.
                    tokio::time::sleep(BACKUP_LINGER).await;
                }
                _ = tokio::time::sleep(BACKUP_EVERY) => {}
            }
            if self.link().state().connected {
                self.backup_once(&channel).await;
            }
        }
    }

    /// Streams everything after the backup cursor to the server, one
    /// acknowledged batch at a time. Resumable: the cursor only moves on
    /// an acknowledgement.
    async fn backup_once(&self, channel: &str) {
        loop {
            let cursor = match self
                .store()
                .cursor(channel.to_owned(), Cursor::Backup)
                .await
            {
                Ok(c) => c,
                Err(e) => return tracing::warn!(error = %e, "backup cursor unreadable"),
            };
            let batch = match self
                .store()
                .hosted_after(channel.to_owned(), cursor, MAX_BATCH as u32)
                .await
            {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => return,
                Err(e) => return tracing::warn!(error = %e, "could not read the backlog"),
            };
            let n = batch_len(batch.iter().map(|s| &s.message));
            let last = batch[n - 1].seq;
            let messages: Vec<Message> = batch.into_iter().take(n).map(|s| s.message).collect();
            match self.link().backup(channel, messages).await {
                Ok((stored, server_last_seq)) => {
                    self.log().record(
                        "SYNC",
                        self.link().state().advertised.map(|a| a.to_string()).unwrap_or_default(),
                        format!(
                            "direction=host->server channel={channel} through_host_seq={last} new={stored} server_last_seq={server_last_seq}"
                        ),
                    );
                    if let Err(e) = self
                        .store()
                        .set_cursor(channel.to_owned(), Cursor::Backup, last)
                        .await
                    {
                        return tracing::warn!(error = %e, "could not move the backup cursor");
                    }
                    // If the server's numbers right after our pull cursor are
                    // exactly this batch, there is nothing there to pull back.
                    if let Ok(pulled) = self
                        .store()
                        .cursor(channel.to_owned(), Cursor::Server)
                        .await
                    {
                        if server_last_seq == pulled + u64::from(stored) {
                            let _ = self
                                .store()
                                .set_cursor(channel.to_owned(), Cursor::Server, server_last_seq)
                                .await;
                        }
                    }
                    match self
                        .store()
                        .mark_backed_up(channel.to_owned(), cursor, last)
                        .await
                    {
                        Ok(ids) => {
                            for id in ids {
                                self.publish(ChatEvent::MessageState {
                                    id,
                                    channel: channel.to_owned(),
                                    state: DeliveryState::BackedUp,
                                    reason: None,
                                });
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not mark backed-up messages"),
                    }
                }
                Err(f) => return tracing::info!(reason = %f, "backup paused"),
            }
        }
    }

    pub(super) async fn pull_loop(
        self,
        channel: String,
        bell: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = bell.notified() => {}
                _ = tokio::time::sleep(PULL_EVERY) => {}
            }
            if self.link().state().connected {
                self.pull_once(&channel).await;
            }
        }
    }

    /// Fetches from the server's backup what this host lacks (posted
    /// through the server while it was away) and fans it out.
    async fn pull_once(&self, channel: &str) {
        self.pull_backup(
            channel,
            "host",
            async |chat: &Chat, s: Sequenced, from: &str| {
                if let Err(reason) = chat.verify(&s.message) {
                    chat.log_rejected(from, &s.message, &reason);
                    return true;
                }
                let arrival = Arrival {
                    source: Source::Server,
                    from: Some(from.to_owned()),
                    host_seq: None,
                    server_seq: Some(s.seq),
                };
                chat.host_store(s.message, arrival).await.is_ok()
            },
        )
        .await;
    }
}
