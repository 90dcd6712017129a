//! The DM service: sends what the user writes to every device of the
//! conversation's members (and the user's own other devices), each copy
//! encrypted for that device, and keeps what reaches this device.
//!
//! Sending: a message is kept `pending` first (the outbox), then
//! encrypted per device and handed to the server's mailbox; it is `sent`
//! once the server stored it, `delivered` and `read` when a recipient's
//! receipt says so. A transient failure (no server, a timeout) leaves it
//! pending for the next try; a refusal for good (no such user, blocked)
//! makes it `failed` with the reason.
//!
//! Receiving: on every connection, sign-in and `dm` event, the mailbox is
//! fetched from where this device last kept it. Each envelope is opened
//! (sender's device keys signed by the node the server says sent it, Olm
//! decrypts, the payload names that sender); one that does not open is
//! logged and skipped, never retried forever. A batch is kept in one
//! transaction with the Olm state and the mailbox position, then
//! acknowledged, so a crash anywhere neither loses nor doubles a message.
//!
//! Nothing here logs or publishes a message's text except to this node's
//! own API subscribers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segchat_log::SystemLog;
use segchat_proto::devices::ClaimedDevice;
use segchat_proto::dm::{self, DmContent, DmPayload, ReceiptState, Sealed};
use segchat_proto::friends::RelationKind;
use segchat_proto::mailbox::{Delivered, Envelope, MAX_BODY, MAX_ENVELOPES};
use segchat_proto::tracker::{Event, Reply, Request};
use segchat_proto::types::{AccountKind, NodeAddr};
use segchat_proto::{Failure, Status};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vodozemac::olm::OlmMessage;

use super::olm::Olm;
use super::Device;
use crate::chat::Chat;
use crate::events::{ChatEvent, EventBus, NodeEvent};
use crate::link::LinkHandle;
use crate::store::{Conversation, DmRow, DmState, Kept, Receipt};

/// How long a user's device list is trusted before asking again (a new
/// device of theirs is reached after at most this long).
const DEVICES_FRESH: Duration = Duration::from_secs(60);
/// How long after a transient failure the outbox is tried again.
const RETRY: Duration = Duration::from_secs(10);
/// Envelopes fetched per `fetch_dms`.
const FETCH_BATCH: u32 = 200;
/// How long the list of users this node's user blocked is trusted.
const BLOCKS_FRESH: Duration = Duration::from_secs(30);
/// How far ahead of this node's clock a sender's clock is believed.
const CLOCK_SKEW_MS: u64 = 60_000;

/// The DM service (cheap to clone).
#[derive(Clone)]
pub(crate) struct Dms {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dms").finish_non_exhaustive()
    }
}

struct Inner {
    device: Device,
    link: LinkHandle,
    bus: EventBus,
    log: SystemLog,
    server: String,
    /// Wakes the sender (something new in the outbox).
    outbox: Notify,
    /// Wakes the receiver (a `dm` event, a connection).
    mailbox: Notify,
    /// The hybrid clock: the last `sent_at_ms` given or seen.
    clock: Mutex<u64>,
    /// Checks tickets on peer links; this node's ticket; dialing.
    chat: Chat,
    /// Whom this node's user blocked, and when that was asked.
    blocked: Mutex<Option<(Instant, Vec<String>)>>,
    /// Each user's devices as last claimed (by lowercased name): when,
    /// the name as the server spells it, the devices without keys.
    devices: Mutex<HashMap<String, DeviceList>>,
}

type DeviceList = (Instant, String, Vec<ClaimedDevice>);

/// Why a DM was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DmError {
    #[error("sign in as a user to send direct messages")]
    NotSignedIn,
    #[error("{0}")]
    Invalid(String),
    /// Refused by the server or unsendable for good.
    #[error("{}", .0.reason)]
    Refused(Failure),
    #[error("{0}")]
    Local(String),
}

impl Dms {
    pub(crate) fn new(
        device: Device,
        chat: Chat,
        link: LinkHandle,
        bus: EventBus,
        log: SystemLog,
        server: String,
    ) -> Dms {
        Dms {
            inner: Arc::new(Inner {
                device,
                chat,
                blocked: Mutex::new(None),
                link,
                bus,
                log,
                server,
                outbox: Notify::new(),
                mailbox: Notify::new(),
                clock: Mutex::new(0),
                devices: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub(crate) fn chat(&self) -> &Chat {
        &self.inner.chat
    }

    pub(crate) fn node_signing_key(&self) -> &ed25519_dalek::SigningKey {
        self.inner.device.node()
    }

    /// The signed-in user, if a registered one.
    fn account(&self) -> Option<String> {
        let state = self.inner.link.state();
        state
            .session
            .filter(|s| s.kind == AccountKind::User)
            .map(|s| s.username)
    }

    fn tick(&self, seen: u64) -> u64 {
        let now = crate::clock::now_ms();
        let mut last = self.inner.clock.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(seen.min(now + CLOCK_SKEW_MS));
        *last = (*last + 1).max(now);
        *last
    }

    fn observe(&self, sent_at_ms: u64) {
        let now = crate::clock::now_ms();
        let mut last = self.inner.clock.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(sent_at_ms.min(now + CLOCK_SKEW_MS));
    }

    fn publish(&self, event: ChatEvent) {
        self.inner.bus.publish(NodeEvent::Chat(event));
    }

    /// Writes `text` to `to` (one or more other users): kept pending, then
    /// sent at once if the server is reachable. The row as it is after
    /// that first try; `Err` if it was refused for good.
    pub(crate) async fn send(&self, to: &[String], text: &str) -> Result<DmRow, DmError> {
        let account = self.account().ok_or(DmError::NotSignedIn)?;
        if to.iter().any(|u| u.eq_ignore_ascii_case(&account)) {
            return Err(DmError::Invalid(
                "a direct message goes to someone else".into(),
            ));
        }
        let mut payload = DmPayload {
            id: Uuid::now_v7(),
            from: account.clone(),
            members: dm::members(&account, to),
            sent_at_ms: 0,
            content: DmContent::Text {
                text: text.to_owned(),
            },
        };
        payload
            .check()
            .map_err(|e| DmError::Invalid(e.to_string()))?;
        let to = self.canonical(&account, to).await?;
        payload.members = dm::members(&account, &to);
        let members = payload.members.clone();
        let latest = self
            .inner
            .device
            .store()
            .dm_latest_ms(&account)
            .await
            .map_err(|e| DmError::Local(e.to_string()))?;
        let row = DmRow {
            id: payload.id.to_string(),
            conversation: conversation_of(&account, &members),
            sender: account.clone(),
            sent_at_ms: self.tick(latest),
            text: text.to_owned(),
            state: DmState::Pending,
            path: None,
            error: None,
        };
        let store = self.inner.device.store();
        store
            .dm_queue(&account, row.clone())
            .await
            .map_err(|e| DmError::Local(e.to_string()))?;
        self.publish(ChatEvent::DirectMessage {
            message: row.clone(),
        });
        match self.deliver(&account, &row).await {
            Ok(now) => Ok(now),
            Err(Delivery::Later(why)) => {
                tracing::info!(id = %row.id, %why, "direct message waits in the outbox");
                self.inner.outbox.notify_one();
                Ok(row)
            }
            Err(Delivery::Never(f)) => Err(DmError::Refused(f)),
        }
    }

    /// `names` as the server spells them (usernames are unique whatever
    /// their case), when it is reachable; as given when it is not.
    async fn canonical(&self, account: &str, names: &[String]) -> Result<Vec<String>, DmError> {
        if !self.inner.link.state().connected {
            return Ok(names.to_vec());
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
                Err(Delivery::Later(_)) => out.push(n.clone()),
            }
        }
        Ok(out)
    }

    /// The account's conversations, the most recent first.
    pub(crate) async fn conversations(&self) -> Result<Vec<Conversation>, DmError> {
        let account = self.account().ok_or(DmError::NotSignedIn)?;
        let store = self.inner.device.store();
        store
            .dm_conversations(&account)
            .await
            .map_err(|e| DmError::Local(e.to_string()))
    }

    /// A page of the conversation with `with`, oldest first.
    pub(crate) async fn history(
        &self,
        with: &[String],
        before: Option<(u64, String)>,
        limit: u32,
    ) -> Result<Vec<DmRow>, DmError> {
        let account = self.account().ok_or(DmError::NotSignedIn)?;
        let conversation = conversation_of(&account, &dm::members(&account, with));
        let store = self.inner.device.store();
        store
            .dm_history(&account, &conversation, before, limit)
            .await
            .map_err(|e| DmError::Local(e.to_string()))
    }

    /// Marks the conversation with `with` read here and tells the senders.
    pub(crate) async fn mark_read(&self, with: &[String]) -> Result<usize, DmError> {
        let account = self.account().ok_or(DmError::NotSignedIn)?;
        let members = dm::members(&account, with);
        let conversation = conversation_of(&account, &members);
        let store = self.inner.device.store();
        let read = store
            .dm_mark_read(&account, &conversation)
            .await
            .map_err(|e| DmError::Local(e.to_string()))?;
        for r in &read {
            self.publish(ChatEvent::DirectMessageUpdated { message: r.clone() });
        }
        self.send_receipts(&account, &members, &read, ReceiptState::Read)
            .await;
        Ok(read.len())
    }

    /// Runs until `shutdown`: the outbox and the mailbox.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let receiver = tokio::spawn(self.clone().receive_loop(shutdown.clone()));
        self.send_loop(shutdown).await;
        let _ = receiver.await;
    }

    async fn send_loop(self, shutdown: CancellationToken) {
        let mut changed = self.inner.link.watch();
        loop {
            let mut retry = false;
            if let Some(account) = self.account().filter(|_| self.inner.link.state().connected) {
                retry = !self.flush(&account).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                gone = changed.changed() => if gone.is_err() { return },
                _ = self.inner.outbox.notified() => {}
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
        }
    }

    /// Sends what waits in the account's outbox; false if something is
    /// left for later.
    async fn flush(&self, account: &str) -> bool {
        let store = self.inner.device.store();
        let pending = match store.dm_pending(account).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the DM outbox");
                return false;
            }
        };
        // A conversation that cannot be sent to now (its members signed
        // out) keeps its messages, in order, without holding up others.
        let mut waiting: Vec<String> = Vec::new();
        for row in pending {
            if waiting.contains(&row.conversation) {
                continue;
            }
            match self.deliver(account, &row).await {
                Ok(_) | Err(Delivery::Never(_)) => {}
                Err(Delivery::Later(why)) => {
                    tracing::info!(id = %row.id, %why, "direct messages wait in the outbox");
                    waiting.push(row.conversation.clone());
                }
            }
        }
        waiting.is_empty()
    }

    /// Encrypts `row` for every device of its conversation and hands the
    /// envelopes to the server.
    async fn deliver(&self, account: &str, row: &DmRow) -> Result<DmRow, Delivery> {
        let members = members_of(account, &row.conversation);
        let payload = DmPayload {
            id: row.id.parse().map_err(|_| {
                Delivery::Never(Failure::bad_request("the message id is not a UUID"))
            })?,
            from: account.to_owned(),
            members: members.clone(),
            sent_at_ms: row.sent_at_ms,
            content: DmContent::Text {
                text: row.text.clone(),
            },
        };
        let outcome = self.seal_and_send(account, &members, &payload, false).await;
        let store = self.inner.device.store();
        let result = match outcome {
            Ok(reach) => {
                let path = reach.path();
                self.inner.log.record(
                    "DM_SENT",
                    &self.inner.server,
                    format!(
                        "id={} to={} devices={} direct={} path={path}",
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
    /// get the same id, a few rounds at most; with `only_named`, users the
    /// server names beyond `to` (the sender's own devices, for a receipt)
    /// are left out.
    async fn seal_and_send(
        &self,
        account: &str,
        to: &[String],
        payload: &DmPayload,
        only_named: bool,
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
                .seal(account, &users, payload.id, &plaintext, &addressed)
                .await?;
            // Straight to each device whose node is online; the server's
            // mailbox for the others and for any that does not take it.
            let tries = sealed.iter().map(|(e, at)| async move {
                let at = (*at)?;
                let to = NodeAddr {
                    node_id: e.to_node.clone(),
                    addr: at,
                };
                match super::p2p::hand_over(self, to, e).await {
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
            for chunk in envelopes.chunks(MAX_ENVELOPES) {
                let request = Request::SendDm {
                    envelopes: chunk.to_vec(),
                };
                let (gone, missing) = match self.inner.link.request(request).await {
                    Ok(Reply::DmStored { gone, missing, .. }) => (gone, missing),
                    Ok(other) => {
                        tracing::warn!(?other, "unexpected answer to send_dm");
                        return Err(Delivery::Later("unexpected answer".into()));
                    }
                    Err(f) => return Err(Delivery::from_failure(f)),
                };
                for e in chunk {
                    if gone.contains(&e.to_node) {
                        again.insert(e.to.clone());
                    } else {
                        addressed.insert(e.to_node.clone());
                    }
                }
                again.extend(missing);
            }
            if only_named {
                again.retain(|u| to.iter().any(|t| t.eq_ignore_ascii_case(u)));
            }
            if again.is_empty() {
                return Ok(Reach {
                    devices: addressed.len(),
                    direct,
                });
            }
            for u in &again {
                self.forget_devices(u);
            }
            users = again.into_iter().collect();
        }
        Ok(Reach {
            devices: addressed.len(),
            direct,
        })
    }

    /// Encrypts `plaintext` for the devices of `users` not yet in
    /// `addressed`, and saves the Olm state before anything leaves.
    async fn seal(
        &self,
        account: &str,
        users: &[String],
        id: Uuid,
        plaintext: &[u8],
        addressed: &HashSet<String>,
    ) -> Result<Vec<(Envelope, Option<SocketAddr>)>, Delivery> {
        let device = &self.inner.device;
        let (_guard, mut olm) = device
            .open(account)
            .await
            .map_err(|e| Delivery::Later(e.to_string()))?;
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
                let envelope = Envelope {
                    id,
                    to: user.clone(),
                    to_node: d.keys.node_key.clone(),
                    body,
                };
                envelopes.push((envelope, d.p2p_addr));
            }
        }
        device
            .save(account, &olm)
            .await
            .map_err(|e| Delivery::Later(e.to_string()))?;
        Ok(envelopes)
    }

    /// The devices of `user` (for oneself: the other devices) and the
    /// name as the server spells it: from the cache while fresh and while
    /// a session is held with each; otherwise claimed, taking a key only
    /// for devices without a session.
    async fn devices_of(
        &self,
        user: &str,
        olm: &Olm,
    ) -> Result<(String, Vec<ClaimedDevice>), Delivery> {
        let have = olm.session_keys();
        let key = user.to_ascii_lowercase();
        {
            let cache = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, name, devices)) = cache.get(&key) {
                let all_in_session = devices
                    .iter()
                    .all(|d| have.binary_search(&d.keys.curve25519).is_ok());
                if at.elapsed() < DEVICES_FRESH && all_in_session {
                    return Ok((name.clone(), devices.clone()));
                }
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
        cache.insert(key, (Instant::now(), name.clone(), keyless));
        Ok((name, devices))
    }

    fn forget_devices(&self, user: &str) {
        let mut cache = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(&user.to_ascii_lowercase());
    }

    /// Tells the other senders of `rows` (in the conversation `members`)
    /// that they reached `state` here. Best effort: a receipt that does
    /// not get through leaves the sender's state where it was.
    async fn send_receipts(
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
                if let Err(e) = self.seal_and_send(account, &to, &payload, true).await {
                    tracing::info!(sender, error = ?e, "a receipt did not get through");
                }
            }
        }
    }

    async fn receive_loop(self, shutdown: CancellationToken) {
        let mut changed = self.inner.link.watch();
        let mut events = self.inner.bus.subscribe();
        loop {
            let mut retry = false;
            if let Some(account) = self.account().filter(|_| self.inner.link.state().connected) {
                retry = !self.fetch(&account).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                gone = changed.changed() => if gone.is_err() { return },
                _ = self.inner.mailbox.notified() => {}
                ev = events.recv() => match ev {
                    Ok(NodeEvent::Tracker(Event::Dm(_))) => {}
                    Ok(NodeEvent::Tracker(Event::Relation(_))) => {
                        *self.inner.blocked.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        continue;
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
        }
    }

    /// Fetches, opens, keeps and acknowledges what waits for this device;
    /// false if it stopped on a failure (tried again later).
    async fn fetch(&self, account: &str) -> bool {
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
    async fn fetch_batch(&self, account: &str) -> Result<bool, String> {
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
                Ok(Opened::Message(row)) => messages.push(row),
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
    async fn after_kept(&self, account: &str, kept: Kept, path: &str) {
        for m in &kept.new {
            self.inner.log.record(
                "DM_RECEIVED",
                &self.inner.server,
                format!(
                    "id={} from={} conversation={} path={path}",
                    m.id, m.sender, m.conversation
                ),
            );
            self.publish(ChatEvent::DirectMessage { message: m.clone() });
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
        for m in kept.new.iter().filter(|m| m.sender != account) {
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
        let (guard, mut olm) = device.open(&account).await.map_err(super::p2p::not_kept)?;
        let (messages, receipts) = match self.open_envelope(&account, &mut olm, &e, "p2p") {
            Ok(Opened::Message(row)) => (vec![row], Vec::new()),
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
            .map_err(super::p2p::not_kept)?;
        drop(guard);
        let this = self.clone();
        // Receipts go out after the answer, not before it.
        tokio::spawn(async move { this.after_kept(&account, kept, "p2p").await });
        Ok(())
    }

    /// Whether this node's user blocked `user`, from the server's list
    /// (kept for a while, dropped on every change); refused while it
    /// cannot be known.
    async fn blocked_by_me(&self, user: &str) -> Result<bool, Failure> {
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
    fn open_envelope(
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
        let plain = olm
            .decrypt(&sealed.sender.curve25519, &message)
            .map_err(|e| e.to_string())?;
        let payload: DmPayload =
            serde_json::from_slice(&plain).map_err(|_| "not a DM payload".to_owned())?;
        payload.check().map_err(|e| e.to_string())?;
        if payload.from != e.from {
            return Err(format!(
                "says it is from {} but {} sent it",
                payload.from, e.from
            ));
        }
        if !payload.members.iter().any(|m| m == account) {
            return Err("not a conversation of this account".into());
        }
        self.observe(payload.sent_at_ms);
        let conversation = conversation_of(account, &payload.members);
        match payload.content {
            DmContent::Text { text } => Ok(Opened::Message(DmRow {
                id: payload.id.to_string(),
                conversation,
                state: if payload.from == account {
                    DmState::Sent
                } else {
                    DmState::Received
                },
                sender: payload.from,
                sent_at_ms: payload.sent_at_ms,
                text,
                path: Some(path.into()),
                error: None,
            })),
            DmContent::Receipt { ids, state } => Ok(Opened::Receipt(Receipt {
                conversation,
                ids: ids.iter().map(Uuid::to_string).collect(),
                state: match state {
                    ReceiptState::Delivered => DmState::Delivered,
                    ReceiptState::Read => DmState::Read,
                },
            })),
        }
    }
}

/// How far a message went: to how many devices, how many of them
/// straight to their node.
#[derive(Debug, Clone, Copy)]
struct Reach {
    devices: usize,
    direct: usize,
}

impl Reach {
    /// `p2p` when every device got it straight from this node (none
    /// through the server), else `server`.
    fn path(self) -> &'static str {
        if self.direct > 0 && self.direct == self.devices {
            "p2p"
        } else {
            "server"
        }
    }
}

/// What an envelope held.
enum Opened {
    Message(DmRow),
    Receipt(Receipt),
}

/// Why a delivery stopped.
#[derive(Debug)]
enum Delivery {
    /// Try again later (no server, a timeout, the local store).
    Later(String),
    /// Refused for good.
    Never(Failure),
}

impl Delivery {
    fn from_failure(f: Failure) -> Delivery {
        match f.status {
            Status::NotFound | Status::Forbidden | Status::BadRequest | Status::TooLarge => {
                Delivery::Never(f)
            }
            _ => Delivery::Later(f.to_string()),
        }
    }
}

/// A conversation's name for `account`: the other members, joined.
pub(crate) fn conversation_of(account: &str, members: &[String]) -> String {
    members
        .iter()
        .filter(|m| *m != account)
        .cloned()
        .collect::<Vec<_>>()
        .join(",")
}

/// The members of `account`'s conversation named `conversation`.
pub(crate) fn members_of(account: &str, conversation: &str) -> Vec<String> {
    let others: Vec<String> = conversation.split(',').map(str::to_owned).collect();
    dm::members(account, &others)
}
