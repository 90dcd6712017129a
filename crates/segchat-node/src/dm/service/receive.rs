//! Receiving: fetching the mailbox, opening each envelope, keeping a
//! batch with the Olm state and the mailbox position in one transaction,
//! acknowledging it; what peers hand over directly; telling the senders.

use std::collections::BTreeMap;
use std::time::Instant;

use segchat_proto::dm::{DmContent, DmPayload, ReceiptState, RefKind, Sealed};
use segchat_proto::friends::RelationKind;
use segchat_proto::mailbox::Delivered;
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::Failure;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vodozemac::olm::OlmMessage;

use super::{conversation_of, members_of, Dms, BLOCKS_FRESH, FETCH_BATCH, RETRY};
use crate::dm::olm::Olm;
use crate::events::{ChatEvent, NodeEvent};
use crate::store::{DmRow, DmState, Kept, Receipt};

impl Dms {
    /// Fetches the mailbox when there is a reason to: at start, when the
    /// server says a direct message waits (or the bus lost events, one of
    /// which may have said so), when the node signs in or reconnects, when
    /// this node handed something to the mailbox, and when a failed fetch
    /// is due again. Nothing else on the bus wakes it: every fetch opens
    /// the Olm account (a fixed-base scalar multiplication) and asks the
    /// server, and a busy channel puts hundreds of events a second there.
    pub(super) async fn receive_loop(self, shutdown: CancellationToken) {
        let mut changed = self.inner.link.watch();
        let mut events = self.inner.bus.subscribe();
        let mut due = true;
        let mut retry_at: Option<tokio::time::Instant> = None;
        // Who was signed in, and whether connected, when last looked.
        let mut signed_in = None;
        loop {
            if due {
                retry_at = None;
                signed_in = self.signed_in();
                if let Some((_, Some(account))) = signed_in.clone() {
                    if !self.fetch(&account).await {
                        retry_at = Some(tokio::time::Instant::now() + RETRY);
                    }
                }
            }
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            due = tokio::select! {
                _ = shutdown.cancelled() => return,
                gone = changed.changed() => match gone {
                    Err(_) => return,
                    // Signed in, out, or back on the server: fetch.
                    Ok(()) => self.signed_in() != signed_in,
                },
                _ = self.inner.mailbox.notified() => true,
                ev = events.recv() => match ev {
                    Ok(NodeEvent::Tracker(Event::Dm(_))) => true,
                    Ok(NodeEvent::Tracker(Event::Relation(_))) => {
                        *self.inner.blocked.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        false
                    }
                    Ok(_) => false,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = retry => true,
            };
        }
    }

    /// Which server connection the node is on, if connected, and then as
    /// which user (`None` inside: no user's session).
    fn signed_in(&self) -> Option<(u64, Option<String>)> {
        let state = self.inner.link.state();
        state.connected.then(|| (state.connection, self.account()))
    }

    /// Fetches, opens, keeps and acknowledges what waits for this device;
    /// false if it stopped on a failure (tried again later).
    pub(super) async fn fetch(&self, account: &str) -> bool {
        loop {
            match self.fetch_batch(account).await {
                Ok(true) => continue,
                Ok(false) => return true,
                Err(e) => {
                    tracing::info!(error = %e, "could not fetch direct messages");
                    return false;
                }
            }
        }
    }

    /// One batch; whether there may be more.
    pub(super) async fn fetch_batch(&self, account: &str) -> Result<bool, String> {
        let device = &self.inner.device;
        let store = device.store();
        let (guard, mut olm) = device.open(account).await.map_err(|e| e.to_string())?;
        let after_seq = store
            .dm_fetched_seq(account)
            .await
            .map_err(|e| e.to_string())?;
        let request = Request::FetchDms {
            after_seq,
            limit: FETCH_BATCH,
        };
        let (envelopes, has_more) = match self.inner.link.request(request).await {
            Ok(Reply::Dms {
                envelopes,
                has_more,
            }) => (envelopes, has_more),
            Ok(other) => return Err(format!("unexpected answer to fetch_dms: {other:?}")),
            Err(f) => return Err(f.to_string()),
        };
        let Some(last) = envelopes.iter().map(|e| e.seq).max() else {
            return Ok(false);
        };
        let mut messages = Vec::new();
        let mut receipts = Vec::new();
        for e in &envelopes {
            match self.open_envelope(account, &mut olm, e, "server") {
                Ok(Opened::Message(row)) => messages.push(*row),
                Ok(Opened::Receipt(r)) => receipts.push(r),
                Err(why) => self.inner.log.record(
                    "DM_DROPPED",
                    &self.inner.server,
                    format!("seq={} from={} reason={why}", e.seq, e.from),
                ),
            }
        }
        let kept = store
            .dm_keep(
                account,
                olm.pickle(device.pickle_key()),
                messages,
                receipts,
                last,
            )
            .await
            .map_err(|e| e.to_string())?;
        drop(guard);
        if let Err(f) = self
            .inner
            .link
            .request(Request::AckDms { up_to_seq: last })
            .await
        {
            // Kept already: the next fetch starts after it anyway.
            tracing::info!(error = %f, "could not acknowledge direct messages");
        }
        self.after_kept(account, kept, "server").await;
        Ok(has_more)
    }

    /// Tells what a batch changed: the log, this node's API subscribers,
    /// and the senders (a `delivered` receipt).
    pub(super) async fn after_kept(&self, account: &str, kept: Kept, path: &str) {
        for m in &kept.new {
            let kind = m.re.as_ref().map_or("message", |r| r.0.as_str());
            self.inner.log.record(
                "DM_RECEIVED",
                &self.inner.server,
                format!(
                    "id={} kind={kind} from={} conversation={} path={path}",
                    m.id, m.sender, m.conversation
                ),
            );
            if !m.is_action() {
                self.publish(ChatEvent::DirectMessage { message: m.clone() });
            }
        }
        for m in kept.updated {
            self.inner.log.record(
                "DM_STATE",
                &self.inner.server,
                format!("id={} state={}", m.id, m.state.as_str()),
            );
            self.publish(ChatEvent::DirectMessageUpdated { message: m });
        }
        let mut by_conversation: BTreeMap<&str, Vec<DmRow>> = BTreeMap::new();
        // Receipts are for messages; an action shows on the one it changes.
        for m in kept
            .new
            .iter()
            .filter(|m| m.sender != account && !m.is_action())
        {
            by_conversation
                .entry(&m.conversation)
                .or_default()
                .push(m.clone());
        }
        for (conversation, rows) in by_conversation {
            let members = members_of(account, conversation);
            self.send_receipts(account, &members, &rows, ReceiptState::Delivered)
                .await;
        }
    }

    /// Keeps a message a peer handed over directly (`dm` on a peer link)
    /// for `to`, this node's account: opened and kept like one from the
    /// mailbox, in one transaction with the Olm state.
    pub(crate) async fn receive_direct(&self, to: &str, e: Delivered) -> Result<(), Failure> {
        let account = self
            .account()
            .filter(|a| a.eq_ignore_ascii_case(to))
            .ok_or_else(|| Failure::not_found(format!("{to} is not signed in here")))?;
        if self.blocked_by_me(&e.from).await? {
            // As the server answers a blocked sender: nobody here.
            return Err(Failure::not_found(format!("no user named {account:?}")));
        }
        let device = &self.inner.device;
        let (guard, mut olm) = device.open(&account).await.map_err(super::not_kept)?;
        let (messages, receipts) = match self.open_envelope(&account, &mut olm, &e, "p2p") {
            Ok(Opened::Message(row)) => (vec![*row], Vec::new()),
            Ok(Opened::Receipt(r)) => (Vec::new(), vec![r]),
            Err(why) => {
                self.inner.log.record(
                    "DM_DROPPED",
                    &self.inner.server,
                    format!("from={} path=p2p reason={why}", e.from),
                );
                return Err(Failure::bad_request(format!("could not open it: {why}")));
            }
        };
        let store = device.store();
        let kept = store
            .dm_keep(
                &account,
                olm.pickle(device.pickle_key()),
                messages,
                receipts,
                0,
            )
            .await
            .map_err(super::not_kept)?;
        drop(guard);
        let this = self.clone();
        // Receipts go out after the answer, not before it.
        tokio::spawn(async move { this.after_kept(&account, kept, "p2p").await });
        Ok(())
    }

    /// Whether this node's user blocked `user`, from the server's list
    /// (kept for a while, dropped on every change); refused while it
    /// cannot be known.
    pub(super) async fn blocked_by_me(&self, user: &str) -> Result<bool, Failure> {
        {
            let cache = self.inner.blocked.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, blocked)) = cache.as_ref() {
                if at.elapsed() < BLOCKS_FRESH {
                    return Ok(blocked.iter().any(|b| b.eq_ignore_ascii_case(user)));
                }
            }
        }
        let relations = match self.inner.link.request(Request::Relations).await {
            Ok(Reply::Relations { relations }) => relations,
            Ok(_) => return Err(Failure::unavailable("cannot check blocks now")),
            Err(_) => {
                return Err(Failure::unavailable(
                    "cannot check blocks now; use the server",
                ))
            }
        };
        let blocked: Vec<String> = relations
            .into_iter()
            .filter(|r| r.kind == Some(RelationKind::Blocked))
            .map(|r| r.username)
            .collect();
        let found = blocked.iter().any(|b| b.eq_ignore_ascii_case(user));
        *self.inner.blocked.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), blocked));
        Ok(found)
    }

    /// Opens one envelope: who sent it, checked, and what it says.
    pub(super) fn open_envelope(
        &self,
        account: &str,
        olm: &mut Olm,
        e: &Delivered,
        path: &str,
    ) -> Result<Opened, String> {
        let sealed: Sealed =
            serde_json::from_str(&e.body).map_err(|_| "not a sealed message".to_owned())?;
        sealed.sender.verify().map_err(|e| e.to_string())?;
        if sealed.sender.node_key != e.from_node {
            return Err("sealed by another node than the one that sent it".into());
        }
        let bytes = vodozemac::base64_decode(&sealed.ciphertext)
            .map_err(|_| "ciphertext is not base64".to_owned())?;
        let message = OlmMessage::from_parts(sealed.kind.into(), &bytes)
            .map_err(|e| format!("not an Olm message: {e}"))?;
        let theirs = &sealed.sender.curve25519;
        let held = olm.sessions_with(theirs);
        let plain = olm.decrypt(theirs, &message).map_err(|e| e.to_string())?;
        let checked = (|| {
            let payload: DmPayload =
                serde_json::from_slice(&plain).map_err(|_| "not a DM payload".to_owned())?;
            payload.check().map_err(|e| e.to_string())?;
            if !payload.from.eq_ignore_ascii_case(&e.from) {
                return Err(format!(
                    "says it is from {} but {} sent it",
                    payload.from, e.from
                ));
            }
            // Names are one user whatever their case (a sender offline
            // sends them as typed).
            if !payload
                .members
                .iter()
                .any(|m| m.eq_ignore_ascii_case(account))
            {
                return Err("not a conversation of this account".into());
            }
            Ok(payload)
        })();
        let payload = match checked {
            Ok(p) => p,
            Err(why) => {
                // A session made for garbage is not kept.
                if olm.sessions_with(theirs) > held {
                    olm.drop_newest(theirs);
                }
                return Err(why);
            }
        };
        self.observe(payload.sent_at_ms);
        let conversation = conversation_of(account, &payload.members);
        let by_me = payload.from.eq_ignore_ascii_case(account);
        match payload.content {
            DmContent::Text { text, re, file } => Ok(Opened::Message(Box::new(DmRow {
                id: payload.id.to_string(),
                conversation,
                state: if by_me {
                    DmState::Sent
                } else {
                    DmState::Received
                },
                // As the server (or the ticket) spells the sender: one
                // user is one name here whatever the payload wrote.
                sender: e.from.clone(),
                sent_at_ms: payload.sent_at_ms,
                text,
                path: Some(path.into()),
                reply_to: re
                    .filter(|r| r.kind == RefKind::Reply)
                    .map(|r| r.id.to_string()),
                re: re.map(|r| (r.kind, r.id.to_string())),
                file: file.map(Into::into),
                ..DmRow::default()
            }))),
            DmContent::Receipt { ids, state } => Ok(Opened::Receipt(Receipt {
                conversation,
                ids: ids.iter().map(Uuid::to_string).collect(),
                state: match state {
                    ReceiptState::Delivered => DmState::Delivered,
                    ReceiptState::Read => DmState::Read,
                },
                by_me,
            })),
        }
    }
}

/// What an envelope held.
pub(super) enum Opened {
    Message(Box<DmRow>),
    Receipt(Receipt),
}
