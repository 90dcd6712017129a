//! Sending: the outbox, sealing a message per device, handing it to
//! each online device's node and the rest to the server's mailbox, and
//! the receipts this device sends.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use segchat_proto::devices::ClaimedDevice;
use segchat_proto::dm::{self, DmContent, DmPayload, ReceiptState, Ref, Sealed};
use segchat_proto::mailbox::{Envelope, MAX_BODY, MAX_ENVELOPES, MAX_REQUEST_BYTES};
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::NodeAddr;
use segchat_proto::{Failure, Status};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{members_of, Delivery, Dms, BUSY_RETRY, DEVICES_FRESH, RETRY};
use crate::dm::olm::Olm;
use crate::events::ChatEvent;
use crate::store::{DmRow, SealedCopy};

/// `envelopes` in `send_dm`s the server takes: at most `MAX_ENVELOPES`
/// and `MAX_REQUEST_BYTES` of bodies each.
fn batches(envelopes: Vec<Envelope>) -> Vec<Vec<Envelope>> {
    let mut out: Vec<Vec<Envelope>> = Vec::new();
    let mut bytes = 0;
    for e in envelopes {
        let full = out
            .last()
            .is_none_or(|b| b.len() == MAX_ENVELOPES || bytes + e.body.len() > MAX_REQUEST_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += e.body.len();
        if let Some(b) = out.last_mut() {
            b.push(e);
        }
    }
    out
}

/// Devices one `claim_keys` may name as in session (the server's limit).
const MAX_HAVE_SESSIONS: usize = 64;

impl Dms {
    pub(super) async fn send_loop(self, shutdown: CancellationToken) {
        let mut changed = self.inner.link.watch();
        loop {
            let mut retry = None;
            if let Some(account) = self.account().filter(|_| self.inner.link.state().connected) {
                retry = self.flush(&account).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                gone = changed.changed() => if gone.is_err() { return },
                _ = self.inner.outbox.notified() => {}
                _ = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => {}
            }
        }
    }

    /// Sends what waits in the account's outbox; when to try again if
    /// something is left (soon when only the server's allowance of
    /// changes held it back).
    pub(super) async fn flush(&self, account: &str) -> Option<Duration> {
        let store = self.inner.device.store();
        let pending = match store.dm_pending(account).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the DM outbox");
                return Some(RETRY);
            }
        };
        // A conversation that cannot be sent to now (its members signed
        // out) keeps its messages, in order, without holding up others.
        let mut waiting: Vec<String> = Vec::new();
        let mut retry = None;
        for row in pending {
            if waiting.contains(&row.conversation) {
                continue;
            }
            match self.deliver(account, &row).await {
                Ok(_) | Err(Delivery::Never(_)) => {}
                Err(Delivery::Busy(why)) => {
                    // Everything else would be held back the same way.
                    tracing::debug!(id = %row.id, %why, "the server asks to slow down");
                    return Some(BUSY_RETRY);
                }
                Err(Delivery::Later(why)) => {
                    tracing::info!(id = %row.id, %why, "direct messages wait in the outbox");
                    waiting.push(row.conversation.clone());
                    retry = Some(RETRY);
                }
            }
        }
        retry
    }

    /// Encrypts `row` for every device of its conversation and hands the
    /// envelopes to the server.
    pub(super) async fn deliver(&self, account: &str, row: &DmRow) -> Result<DmRow, Delivery> {
        let members = members_of(account, &row.conversation);
        let uuid = |id: &str| {
            id.parse()
                .map_err(|_| Delivery::Never(Failure::bad_request("the message id is not a UUID")))
        };
        let re = match &row.re {
            Some((kind, target)) => Some(Ref {
                kind: *kind,
                id: uuid(target)?,
            }),
            None => None,
        };
        let payload = DmPayload {
            id: uuid(&row.id)?,
            from: account.to_owned(),
            members: members.clone(),
            sent_at_ms: row.sent_at_ms,
            content: DmContent::Text {
                text: row.text.clone(),
                re,
                file: row.dm_file(),
            },
        };
        let outcome = self
            .seal_and_send(account, &members, &payload, Sealing::Message)
            .await;
        let store = self.inner.device.store();
        let result = match outcome {
            Ok(reach) => {
                let path = reach.path();
                let kind = row.re.as_ref().map_or("message", |r| r.0.as_str());
                self.inner.log.record(
                    "DM_SENT",
                    &self.inner.server,
                    format!(
                        "id={} kind={kind} to={} devices={} direct={} path={path}",
                        row.id, row.conversation, reach.devices, reach.direct
                    ),
                );
                store.dm_sent(account, &row.id, Ok(path)).await
            }
            Err(Delivery::Never(f)) => {
                self.inner.log.record(
                    "DM_REFUSED",
                    &self.inner.server,
                    format!("id={} to={} reason={}", row.id, row.conversation, f.status),
                );
                let failed = store.dm_sent(account, &row.id, Err(f.reason.clone())).await;
                if let Ok(Some(now)) = failed {
                    self.publish(ChatEvent::DirectMessageUpdated { message: now });
                }
                return Err(Delivery::Never(f));
            }
            Err(later) => return Err(later),
        };
        match result {
            Ok(Some(now)) => {
                self.publish(ChatEvent::DirectMessageUpdated {
                    message: now.clone(),
                });
                Ok(now)
            }
            Ok(None) => Ok(row.clone()),
            Err(e) => Err(Delivery::Later(e.to_string())),
        }
    }

    /// Seals `payload` for every device of `to` but this one and sends it
    /// through the server's mailbox; how many devices it went to. When
    /// the server says a device was missed (a new sign-in) or is gone, the
    /// device lists of those users are claimed again and the missed ones
    /// get the same id, a few rounds at most; for a receipt, users the
    /// server names beyond `to` (the sender's own devices) are left out.
    pub(super) async fn seal_and_send(
        &self,
        account: &str,
        to: &[String],
        payload: &DmPayload,
        what: Sealing,
    ) -> Result<Reach, Delivery> {
        const ROUNDS: usize = 3;
        let plaintext = serde_json::to_vec(payload)
            .map_err(|e| Delivery::Never(Failure::bad_request(e.to_string())))?;
        let mut addressed: HashSet<String> = HashSet::new();
        let mut direct = 0;
        let mut refreshed = false;
        let mut users: Vec<String> = to.to_vec();
        for _ in 0..ROUNDS {
            let sealed = self
                .seal(account, &users, payload.id, &plaintext, &addressed, what)
                .await?;
            // Straight to each device whose node is online; the server's
            // mailbox for the others and for any that does not take it.
            let tries = sealed.iter().map(|(e, at)| async move {
                let at = (*at)?;
                let to = NodeAddr {
                    node_id: e.to_node.clone(),
                    addr: at,
                };
                match crate::dm::handover::hand_over(&self.hand_over_via(), to, e).await {
                    Ok(()) => Some(()),
                    Err(why) => {
                        tracing::info!(device = %e.to_node, %why, "direct hand-over failed; using the server");
                        // Its address may be stale: ask the server again
                        // next time rather than wait on it once more.
                        self.forget_devices(&e.to);
                        None
                    }
                }
            });
            let handed = futures::future::join_all(tries).await;
            let mut envelopes = Vec::new();
            for ((e, _), done) in sealed.into_iter().zip(handed) {
                if done.is_some() {
                    direct += 1;
                    addressed.insert(e.to_node);
                } else {
                    envelopes.push(e);
                }
            }
            let mut again: BTreeSet<String> = BTreeSet::new();
            if envelopes.is_empty() && !refreshed {
                // Nothing went through the server, which would have named
                // devices this node does not know of yet (a new sign-in):
                // ask for the lists once more.
                refreshed = true;
                for u in &users {
                    self.forget_devices(u);
                }
                again.extend(users.iter().cloned());
            }
            for chunk in batches(envelopes) {
                let request = Request::SendDm {
                    envelopes: chunk.clone(),
                };
                let (gone, missing) = match self.inner.link.request(request).await {
                    Ok(Reply::DmStored { gone, missing, .. }) => (gone, missing),
                    Ok(other) => {
                        tracing::warn!(?other, "unexpected answer to send_dm");
                        return Err(Delivery::Later("unexpected answer".into()));
                    }
                    Err(f) => match Delivery::from_failure(f) {
                        // Some devices have it already: refused for the
                        // rest (one member blocked the sender) is not
                        // failed for all.
                        Delivery::Never(f) if !addressed.is_empty() => {
                            tracing::warn!(reason = %f, "some recipients refused a direct message");
                            return Ok(Reach {
                                devices: addressed.len(),
                                direct,
                            });
                        }
                        other => return Err(other),
                    },
                };
                for e in &chunk {
                    if gone.contains(&e.to_node) {
                        again.insert(e.to.clone());
                    } else {
                        addressed.insert(e.to_node.clone());
                    }
                }
                again.extend(missing);
            }
            if what == Sealing::Receipt {
                again.retain(|u| to.iter().any(|t| t.eq_ignore_ascii_case(u)));
            }
            if again.is_empty() {
                break;
            }
            for u in &again {
                self.forget_devices(u);
            }
            users = again.into_iter().collect();
        }
        let others = to.iter().any(|u| !u.eq_ignore_ascii_case(account));
        if addressed.is_empty() && others {
            // Sealed for nobody (no device could be encrypted for): not
            // sent; the outbox tries again.
            return Err(Delivery::Later(
                "no device of theirs could take it yet".into(),
            ));
        }
        Ok(Reach {
            devices: addressed.len(),
            direct,
        })
    }

    /// Encrypts `plaintext` for the devices of `users` not yet in
    /// `addressed`, and saves the Olm state before anything leaves. A
    /// message is sealed once per device: the copy is kept with the state
    /// and sent again as it is on every retry.
    pub(super) async fn seal(
        &self,
        account: &str,
        users: &[String],
        id: Uuid,
        plaintext: &[u8],
        addressed: &HashSet<String>,
        what: Sealing,
    ) -> Result<Vec<(Envelope, Option<SocketAddr>)>, Delivery> {
        let device = &self.inner.device;
        let (_guard, mut olm) = device
            .open(account)
            .await
            .map_err(|e| Delivery::Later(e.to_string()))?;
        let store = device.store();
        let kept = match what {
            Sealing::Message => store
                .dm_sealed(account, &id.to_string())
                .await
                .map_err(|e| Delivery::Later(e.to_string()))?,
            Sealing::Receipt => Default::default(),
        };
        let mut copies: Vec<SealedCopy> = Vec::new();
        let me = olm.device_keys(device.node());
        let mut envelopes = Vec::new();
        for user in users {
            let (_, devices) = self.devices_of(user, &olm).await?;
            if devices.is_empty() && user != account {
                // Signed out everywhere: it waits here until they sign in
                // again (their node publishes its device then).
                return Err(Delivery::Later(format!(
                    "{user} has no device signed in to receive it"
                )));
            }
            for d in devices
                .iter()
                .filter(|d| !addressed.contains(&d.keys.node_key))
            {
                let envelope = |body: String| Envelope {
                    id,
                    to: user.clone(),
                    to_node: d.keys.node_key.clone(),
                    body,
                };
                if let Some(body) = kept.get(&d.keys.curve25519) {
                    envelopes.push((envelope(body.clone()), d.p2p_addr));
                    continue;
                }
                let sealed = match olm.encrypt(d, plaintext) {
                    Ok(m) => m,
                    Err(e) => {
                        // One device with bad keys does not stop the rest.
                        tracing::warn!(user, device = %d.keys.node_key, error = %e,
                            "could not encrypt for a device");
                        self.forget_devices(user);
                        continue;
                    }
                };
                let (kind, bytes) = sealed.to_parts();
                let body = serde_json::to_string(&Sealed {
                    sender: me.clone(),
                    kind: kind as u8,
                    ciphertext: vodozemac::base64_encode(bytes),
                })
                .map_err(|e| Delivery::Never(Failure::bad_request(e.to_string())))?;
                if body.len() > MAX_BODY {
                    return Err(Delivery::Never(Failure::new(
                        Status::TooLarge,
                        "the message is too large to encrypt",
                    )));
                }
                if what == Sealing::Message {
                    copies.push((id.to_string(), d.keys.curve25519.clone(), body.clone()));
                }
                envelopes.push((envelope(body), d.p2p_addr));
            }
        }
        let saved = match what {
            Sealing::Message => {
                store
                    .dm_seal_keep(account, olm.pickle(device.pickle_key()), copies)
                    .await
            }
            Sealing::Receipt => device.save(account, &olm).await,
        };
        saved.map_err(|e| Delivery::Later(e.to_string()))?;
        Ok(envelopes)
    }

    /// The devices of `user` (for oneself: the other devices) and the
    /// name as the server spells it: from the cache while fresh and while
    /// a session is held with each; otherwise claimed, taking a key only
    /// for devices without a session.
    pub(super) async fn devices_of(
        &self,
        user: &str,
        olm: &Olm,
    ) -> Result<(String, Vec<ClaimedDevice>), Delivery> {
        let sessions = olm.session_keys();
        let key = user.to_ascii_lowercase();
        // Only this user's devices with a session are named (the server
        // takes at most 64), from the list last seen of them.
        let mut have = Vec::new();
        {
            let cache = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, name, devices, stale)) = cache.get(&key) {
                let all_in_session = devices
                    .iter()
                    .all(|d| sessions.binary_search(&d.keys.curve25519).is_ok());
                if !stale && at.elapsed() < DEVICES_FRESH && all_in_session {
                    return Ok((name.clone(), devices.clone()));
                }
                have = devices
                    .iter()
                    .map(|d| d.keys.curve25519.clone())
                    .filter(|c| sessions.binary_search(c).is_ok())
                    .take(MAX_HAVE_SESSIONS)
                    .collect();
            }
        }
        let request = Request::ClaimKeys {
            username: user.to_owned(),
            have_sessions: have,
        };
        let (name, devices) = match self.inner.link.request(request).await {
            Ok(Reply::Devices { username, devices }) => (username, devices),
            Ok(other) => {
                tracing::warn!(?other, "unexpected answer to claim_keys");
                return Err(Delivery::Later("unexpected answer".into()));
            }
            Err(f) => return Err(Delivery::from_failure(f)),
        };
        let keyless: Vec<ClaimedDevice> = devices
            .iter()
            .map(|d| ClaimedDevice {
                keys: d.keys.clone(),
                one_time_key: None,
                p2p_addr: d.p2p_addr,
            })
            .collect();
        let mut cache = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key, (Instant::now(), name.clone(), keyless, false));
        Ok((name, devices))
    }

    /// Asks the server for `user`'s devices next time (the list is kept
    /// to name the devices this node already has sessions with).
    pub(super) fn forget_devices(&self, user: &str) {
        let mut cache = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = cache.get_mut(&user.to_ascii_lowercase()) {
            entry.3 = true;
        }
    }

    /// Tells the other senders of `rows` (in the conversation `members`)
    /// that they reached `state` here, and, for `read`, the account's own
    /// other devices too (they stop counting them unread). Best effort: a
    /// receipt that does not get through leaves the state where it was.
    pub(super) async fn send_receipts(
        &self,
        account: &str,
        members: &[String],
        rows: &[DmRow],
        state: ReceiptState,
    ) {
        let mut by_sender: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.sender != account) {
            if let Ok(id) = r.id.parse() {
                by_sender.entry(&r.sender).or_default().push(id);
            }
        }
        // (Always asked of the server: a device list kept here may not
        // know of a sign-in a minute old.)
        if state == ReceiptState::Read {
            let all: Vec<Uuid> = by_sender.values().flatten().copied().collect();
            if !all.is_empty() {
                by_sender.insert(account, all);
            }
        }
        for (sender, ids) in by_sender {
            for ids in ids.chunks(dm::MAX_RECEIPT_IDS) {
                let payload = DmPayload {
                    id: Uuid::now_v7(),
                    from: account.to_owned(),
                    members: members.to_vec(),
                    sent_at_ms: self.tick(0),
                    content: DmContent::Receipt {
                        ids: ids.to_vec(),
                        state,
                    },
                };
                let to = [sender.to_owned()];
                let sent = self
                    .seal_and_send(account, &to, &payload, Sealing::Receipt)
                    .await;
                if let Err(e) = sent {
                    tracing::info!(sender, error = ?e, "a receipt did not get through");
                }
            }
        }
    }
}

/// What is being sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sealing {
    /// A message (or an action) from the outbox: sealed once per device,
    /// the copies kept until it has left; to every device the server
    /// names, the sender's own other devices too.
    Message,
    /// A receipt: sealed afresh each time, only to the users named.
    Receipt,
}

/// How far a message went: to how many devices, how many of them
/// straight to their node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reach {
    pub(super) devices: usize,
    pub(super) direct: usize,
}

impl Reach {
    /// `p2p` when every device got it straight from this node (none
    /// through the server), else `server`.
    pub(super) fn path(self) -> &'static str {
        if self.direct > 0 && self.direct == self.devices {
            "p2p"
        } else {
            "server"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(n: usize, size: usize) -> Envelope {
        Envelope {
            id: Uuid::nil(),
            to: "bob".into(),
            to_node: format!("{n:064}"),
            body: "x".repeat(size),
        }
    }

    #[test]
    fn envelopes_go_in_requests_the_server_takes() {
        let many: Vec<Envelope> = (0..130).map(|n| envelope(n, 10)).collect();
        let sizes: Vec<usize> = batches(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 2]);
        let big: Vec<Envelope> = (0..20).map(|n| envelope(n, 60 * 1024)).collect();
        let out = batches(big);
        assert!(out
            .iter()
            .all(|b| { b.iter().map(|e| e.body.len()).sum::<usize>() <= MAX_REQUEST_BYTES }));
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), 20, "none lost");
        assert!(batches(Vec::new()).is_empty());
    }
}
