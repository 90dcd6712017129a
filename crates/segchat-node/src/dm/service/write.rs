//! What the user writes: a message, a reply, an edit, a deletion or a
//! reaction. Each is kept `pending` in the outbox first (an edit, a
//! deletion or a reaction shows on this device at once), then sent like
//! any message (`send.rs`); the receivers apply it by the same rules
//! (`store::dm_edits`).

use segchat_proto::dm::{self, DmContent, DmFile, DmPayload, Ref, RefKind};
use segchat_proto::{Failure, Status};
use uuid::Uuid;

use super::{conversation_of, Delivery, DmError, Dms, DEVICES_FRESH};
use crate::events::ChatEvent;
use crate::store::{conversation_key, DmRow, DmState};

impl Dms {
    /// Writes `text` to `to` (one or more other users), replying to
    /// `reply_to` if given, sharing `file` (sealed, in the blob store) if
    /// given: kept pending, then sent at once if the server is reachable.
    /// The row as it is after that first try; `Err` if it was refused for
    /// good.
    pub(crate) async fn send(
        &self,
        to: &[String],
        text: &str,
        reply_to: Option<&str>,
        file: Option<DmFile>,
    ) -> Result<DmRow, DmError> {
        let account = self.user().await?;
        let re = match reply_to {
            Some(id) => Some((RefKind::Reply, self.target(&account, to, id).await?.id)),
            None => None,
        };
        self.write(&account, to, text, re, file).await
    }

    /// Edits (`text`), deletes (no text) or reacts to (`text` is the
    /// emoji) message `id` of the conversation with `to`; the message as
    /// shown now. Only its sender edits or deletes a message.
    pub(crate) async fn act(
        &self,
        to: &[String],
        id: &str,
        kind: RefKind,
        text: &str,
    ) -> Result<DmRow, DmError> {
        let account = self.user().await?;
        let target = self.target(&account, to, id).await?;
        let own = target.sender.eq_ignore_ascii_case(&account);
        if matches!(kind, RefKind::Edit | RefKind::Delete) && !own {
            return Err(DmError::Refused(Failure::new(
                Status::Forbidden,
                "only its sender may edit or delete a message",
            )));
        }
        if target.deleted {
            return Err(DmError::Invalid("the message was deleted".into()));
        }
        self.write(&account, to, text, Some((kind, target.id)), None)
            .await
    }

    /// The shown message `id` of the conversation with `to`.
    async fn target(&self, account: &str, to: &[String], id: &str) -> Result<DmRow, DmError> {
        let conversation = conversation_of(account, &dm::members(account, to));
        let store = self.inner.device.store();
        let found = store
            .dm_message(account, id)
            .await
            .map_err(|e| DmError::Local(e.to_string()))?;
        let key = conversation_key(&conversation);
        found
            .filter(|m| conversation_key(&m.conversation) == key)
            .ok_or_else(|| {
                DmError::Refused(Failure::not_found("no such message in this conversation"))
            })
    }

    /// Keeps what the user wrote pending and tries to send it; the
    /// message as shown now (for an action, the one it changes).
    async fn write(
        &self,
        account: &str,
        to: &[String],
        text: &str,
        re: Option<(RefKind, String)>,
        file: Option<DmFile>,
    ) -> Result<DmRow, DmError> {
        if to.iter().any(|u| u.eq_ignore_ascii_case(account)) {
            return Err(DmError::Invalid(
                "a direct message goes to someone else".into(),
            ));
        }
        let id = Uuid::now_v7();
        let reference = match &re {
            Some((kind, target)) => Some(Ref {
                kind: *kind,
                id: target
                    .parse()
                    .map_err(|_| DmError::Invalid("the message id is not a UUID".into()))?,
            }),
            None => None,
        };
        DmPayload {
            id,
            from: account.to_owned(),
            members: dm::members(account, to),
            sent_at_ms: 0,
            content: DmContent::Text {
                text: text.to_owned(),
                re: reference,
                file: file.clone(),
            },
        }
        .check()
        .map_err(|e| DmError::Invalid(e.to_string()))?;
        let to = self.canonical(account, to).await?;
        let members = dm::members(account, &to);
        let row = DmRow {
            id: id.to_string(),
            conversation: conversation_of(account, &members),
            sender: account.to_owned(),
            sent_at_ms: self.next_ms(account).await?,
            text: text.to_owned(),
            state: DmState::Pending,
            reply_to: re
                .as_ref()
                .filter(|r| r.0 == RefKind::Reply)
                .map(|r| r.1.clone()),
            re,
            file: file.map(Into::into),
            ..DmRow::default()
        };
        let store = self.inner.device.store();
        let shown = store
            .dm_queue(account, row.clone())
            .await
            .map_err(|e| DmError::Local(e.to_string()))?
            .unwrap_or_else(|| row.clone());
        if row.is_action() {
            self.publish(ChatEvent::DirectMessageUpdated {
                message: shown.clone(),
            });
        } else {
            self.publish(ChatEvent::DirectMessage {
                message: shown.clone(),
            });
        }
        match self.deliver(account, &row).await {
            Ok(now) => Ok(now),
            Err(Delivery::Later(why) | Delivery::Busy(why)) => {
                tracing::info!(id = %row.id, %why, "direct message waits in the outbox");
                self.inner.outbox.notify_one();
                Ok(shown)
            }
            Err(Delivery::Never(f)) => Err(DmError::Refused(f)),
        }
    }

    /// The time of the next message: the hybrid clock, started after what
    /// the store holds (a restart); once running it keeps up by itself.
    async fn next_ms(&self, account: &str) -> Result<u64, DmError> {
        let started = *self.inner.clock.lock().unwrap_or_else(|p| p.into_inner()) > 0;
        let latest = if started {
            0
        } else {
            let store = self.inner.device.store();
            store
                .dm_latest_ms(account)
                .await
                .map_err(|e| DmError::Local(e.to_string()))?
        };
        Ok(self.tick(latest))
    }

    /// `names` as the server spells them (usernames are unique whatever
    /// their case), when it is reachable; as given when it is not.
    async fn canonical(&self, account: &str, names: &[String]) -> Result<Vec<String>, DmError> {
        if !self.inner.link.state().connected {
            // As typed: the store keeps it in the conversation whatever
            // its case.
            return Ok(names.to_vec());
        }
        // Names claimed lately are known already: no Olm state to load
        // (sealing loads it next), no request.
        let known: Option<Vec<String>> = {
            let cache = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
            names
                .iter()
                .map(|n| {
                    cache
                        .get(&n.to_ascii_lowercase())
                        .filter(|(at, _, _, stale)| !stale && at.elapsed() < DEVICES_FRESH)
                        .map(|(_, name, _, _)| name.clone())
                })
                .collect()
        };
        if let Some(known) = known {
            return Ok(known);
        }
        let (_guard, olm) = self
            .inner
            .device
            .open(account)
            .await
            .map_err(|e| DmError::Local(e.to_string()))?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            match self.devices_of(n, &olm).await {
                Ok((name, _)) => out.push(name),
                Err(Delivery::Never(f)) => return Err(DmError::Refused(f)),
                Err(Delivery::Later(_) | Delivery::Busy(_)) => out.push(n.clone()),
            }
        }
        Ok(out)
    }
}
