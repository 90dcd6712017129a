//! Following a channel through the server while its host is away: reading
//! the backup after the server cursor, posting the outbox there, and
//! confirming what the host stored reached the backup.

use std::collections::HashSet;
use std::sync::Arc;

use segchat_proto::message::Sequenced;
use segchat_proto::types::NodeAddr;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{final_refusal, IDLE_TICK};
use crate::chat::{Chat, Via};
use crate::store::{Arrival, DeliveryState, Source};

impl Chat {
    /// Reads and writes through the server until the host (re)appears, a
    /// retry is due, or cancellation (then true).
    pub(super) async fn server_session(
        &self,
        channel: &str,
        host: &mut watch::Receiver<Option<NodeAddr>>,
        bell: &Arc<Notify>,
        cancel: &CancellationToken,
        retry_at: Option<Instant>,
    ) -> bool {
        loop {
            let connected = self.link().state().connected;
            self.set_via(channel, if connected { Via::Server } else { Via::Offline });
            if connected {
                self.pull_as_member(channel).await;
                self.flush_via_server(channel, &HashSet::new()).await;
            }
            let host_known = host.borrow().is_some();
            let retry = async {
                match (retry_at, host_known) {
                    (Some(t), true) => tokio::time::sleep_until(t).await,
                    (None, true) => {}
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return true,
                changed = host.changed() => {
                    if changed.is_err() { return true; }
                    return false;
                }
                _ = retry => return false,
                _ = bell.notified() => {}
                _ = tokio::time::sleep(IDLE_TICK) => {}
            }
        }
    }

    /// Pulls the server's backup after the server cursor.
    async fn pull_as_member(&self, channel: &str) {
        self.pull_backup(
            channel,
            "member",
            async |chat: &Chat, s: Sequenced, from: &str| {
                let arrival = Arrival {
                    source: Source::Server,
                    from: Some(from.to_owned()),
                    host_seq: None,
                    server_seq: Some(s.seq),
                };
                chat.accept(s.message, arrival, from).await.is_ok()
            },
        )
        .await;
    }

    /// Posts the channel's outbox through the server, but for the
    /// messages in `skip` (on their way to the host).
    pub(super) async fn flush_via_server(&self, channel: &str, skip: &HashSet<String>) {
        for m in self.outbox_of(channel).await {
            let id = m.id.to_string();
            if skip.contains(&id) {
                continue;
            }
            match self.link().post_message(m).await {
                Ok(seq) => {
                    self.log().record(
                        "MESSAGE_SENT",
                        self.server_addr(),
                        format!("via=server channel={channel} id={id} server_seq={seq}"),
                    );
                    self.set_state(id, channel, DeliveryState::BackedUp, None)
                        .await;
                }
                Err(f) if final_refusal(&f) => {
                    self.set_state(id, channel, DeliveryState::Refused, Some(f.reason))
                        .await;
                }
                Err(f) => return tracing::debug!(reason = %f, "outbox waits for the server"),
            }
        }
    }

    /// Reads the server's backup to learn which of the user's messages it
    /// holds; true while some stored by the host are not confirmed yet.
    pub(super) async fn confirm_backup(&self, channel: &str) -> bool {
        self.pull_as_member(channel).await;
        self.store()
            .count_in_state(channel.to_owned(), DeliveryState::Stored)
            .await
            .is_ok_and(|n| n > 0)
    }
}
