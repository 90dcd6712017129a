//! The DM service: sends what the user writes to every device of the
//! conversation's members (and the user's own other devices), each copy
//! encrypted for that device, and keeps what reaches this device.
//!
//! Writing (`write.rs`): a message, a reply, an edit, a deletion or a
//! reaction is kept `pending` first (the outbox); an action shows here at
//! once and travels like a message.
//!
//! Sending (`send.rs`): a message is kept `pending` first (the outbox),
//! then encrypted per device and handed straight to each device's node
//! while it is online (`dm::p2p`), to the server's mailbox otherwise; it
//! is `sent` once every device's node or the server has it, `delivered`
//! and `read` when a recipient's receipt says so. A transient failure (no server, a timeout) leaves it
//! pending for the next try; a refusal for good (no such user, blocked)
//! makes it `failed` with the reason.
//!
//! Receiving (`receive.rs`): on every connection, sign-in and `dm`
//! event, the mailbox is
//! fetched from where this device last kept it. Each envelope is opened
//! (sender's device keys signed by the node the server says sent it, Olm
//! decrypts, the payload names that sender); one that does not open is
//! logged and skipped, never retried forever. A batch (or one message a
//! peer handed over) is kept in one
//! transaction with the Olm state and the mailbox position, then
//! acknowledged, so a crash anywhere neither loses nor doubles a message.
//!
//! Nothing here logs or publishes a message's text except to this node's
//! own API subscribers.

mod receive;
mod send;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segchat_log::SystemLog;
use segchat_proto::devices::{ClaimedDevice, DeviceKeys};
use segchat_proto::dm::{self, ReceiptState};
use segchat_proto::types::AccountKind;
use segchat_proto::{Failure, Status};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Device;
use crate::chat::Chat;
use crate::events::{ChatEvent, EventBus, NodeEvent};
use crate::link::LinkHandle;
use crate::store::{Conversation, DmRow};

/// How long a user's device list is trusted before asking again (a new
/// device of theirs is reached after at most this long).
const DEVICES_FRESH: Duration = Duration::from_secs(60);
/// How long after a transient failure the outbox is tried again.
const RETRY: Duration = Duration::from_secs(10);
/// How long after the server asked to slow down (its allowance of
/// changes) the outbox is tried again.
const BUSY_RETRY: Duration = Duration::from_millis(500);
/// Envelopes fetched per `fetch_dms`.
const FETCH_BATCH: u32 = 200;
/// How long the list of users this node's user blocked is trusted.
const BLOCKS_FRESH: Duration = Duration::from_secs(30);
/// Direct hand-overs one sender may make: a second's worth and a burst,
/// as the server allows into mailboxes.
const SENDER_PER_SECOND: u32 = 10;
const SENDER_BURST: u32 = 20;
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
    /// What each sender may hand over directly, as the server's allowance
    /// of changes bounds what it may put in a mailbox.
    senders: governor::DefaultKeyedRateLimiter<String>,
    /// Peer links kept to devices' nodes (`dm::p2p`).
    links: crate::dm::handover::Links,
    /// Whom this node's user blocked, and when that was asked.
    blocked: Mutex<Option<(Instant, Vec<String>)>>,
    /// Each user's devices as last claimed (by lowercased name): when,
    /// the name as the server spells it, the devices without keys.
    devices: Mutex<HashMap<String, DeviceList>>,
}

/// When a user's devices were claimed, the name as the server spells it,
/// the devices (without keys), and whether to ask again before use.
type DeviceList = (Instant, String, Vec<ClaimedDevice>, bool);

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
                links: Default::default(),
                senders: governor::RateLimiter::hashmap(
                    governor::Quota::per_second(
                        NonZeroU32::new(SENDER_PER_SECOND).unwrap_or(NonZeroU32::MIN),
                    )
                    .allow_burst(NonZeroU32::new(SENDER_BURST).unwrap_or(NonZeroU32::MIN)),
                ),
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

    /// Takes one from `user`'s allowance of direct hand-overs (`429`
    /// beyond it: the sender uses the server's mailbox, bounded there).
    pub(crate) fn spend_from(&self, user: &str) -> Result<(), Failure> {
        let senders = &self.inner.senders;
        if senders.len() > 4096 {
            senders.retain_recent();
        }
        senders.check_key(&user.to_ascii_lowercase()).map_err(|_| {
            Failure::new(
                Status::RateLimited,
                format!("too many direct messages from {user}; use the server"),
            )
        })
    }

    /// What handing an envelope straight to a device's node needs.
    pub(crate) fn hand_over_via(&self) -> crate::dm::handover::HandOver<'_> {
        crate::dm::handover::HandOver {
            links: &self.inner.links,
            chat: &self.inner.chat,
            node: self.inner.device.node(),
        }
    }

    /// The signed-in user, if a registered one.
    fn account(&self) -> Option<String> {
        let state = self.inner.link.state();
        state
            .session
            .filter(|s| s.kind == AccountKind::User)
            .map(|s| s.username)
    }

    /// The user this node's API speaks for: the signed-in one, or, while
    /// the server is unreachable (or not yet answered after a restart),
    /// the one whose session this node keeps: their DMs are read and
    /// written from the local store meanwhile.
    async fn user(&self) -> Result<String, DmError> {
        if let Some(a) = self.account() {
            return Ok(a);
        }
        let kept = self.inner.device.store().session().await;
        match kept.map_err(|e| DmError::Local(e.to_string()))? {
            Some(s) if s.kind == AccountKind::User => Ok(s.username),
            _ => Err(DmError::NotSignedIn),
        }
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

    /// The account's conversations, the most recent first.
    pub(crate) async fn conversations(&self) -> Result<Vec<Conversation>, DmError> {
        let account = self.user().await?;
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
        let account = self.user().await?;
        let conversation = conversation_of(&account, &dm::members(&account, with));
        let store = self.inner.device.store();
        store
            .dm_history(&account, &conversation, before, limit)
            .await
            .map_err(|e| DmError::Local(e.to_string()))
    }

    /// The safety number of the conversation with `with`: a digest of
    /// every device key of both users as the server gives them now (asked
    /// afresh). Both sides compute the same number unless somebody's
    /// device list differs between them — a device the server added under
    /// a user's name shows as a different number, compared out of band.
    pub(crate) async fn safety_number(&self, with: &str) -> Result<SafetyNumber, DmError> {
        let account = self.user().await?;
        if with.eq_ignore_ascii_case(&account) {
            return Err(DmError::Invalid("compare keys with someone else".into()));
        }
        if !self.inner.link.state().connected {
            return Err(DmError::Refused(Failure::unavailable(
                "the server is unreachable: device keys cannot be checked now",
            )));
        }
        let (_guard, olm) = self
            .inner
            .device
            .open(&account)
            .await
            .map_err(|e| DmError::Local(e.to_string()))?;
        let mut users: Vec<(String, Vec<DeviceKeys>)> = Vec::new();
        for name in [with.to_owned(), account.clone()] {
            self.forget_devices(&name);
            let (canonical, devices) = match self.devices_of(&name, &olm).await {
                Ok(found) => found,
                Err(Delivery::Never(f)) => return Err(DmError::Refused(f)),
                Err(Delivery::Later(why) | Delivery::Busy(why)) => {
                    return Err(DmError::Refused(Failure::unavailable(why)))
                }
            };
            let mut keys: Vec<DeviceKeys> = devices.into_iter().map(|d| d.keys).collect();
            if canonical.eq_ignore_ascii_case(&account) {
                keys.push(olm.device_keys(self.inner.device.node()));
            }
            keys.sort_by(|a, b| a.node_key.cmp(&b.node_key));
            users.push((canonical, keys));
        }
        Ok(SafetyNumber::of(users))
    }

    /// The account's direct messages holding every word of `query`,
    /// newest first (from the local store: works offline).
    pub(crate) async fn search(&self, query: &str, limit: u32) -> Result<Vec<DmRow>, DmError> {
        let account = self.user().await?;
        let words: Vec<String> = query.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() || words.len() > 16 {
            return Err(DmError::Invalid("search for 1 to 16 words".into()));
        }
        let store = self.inner.device.store();
        store
            .dm_search(&account, words, limit)
            .await
            .map_err(|e| DmError::Local(e.to_string()))
    }

    /// Marks the conversation with `with` read here and tells the senders.
    pub(crate) async fn mark_read(&self, with: &[String]) -> Result<usize, DmError> {
        let account = self.user().await?;
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
}

/// Why a delivery stopped.
#[derive(Debug)]
enum Delivery {
    /// Try again later (no server, a timeout, the local store).
    Later(String),
    /// The server's allowance of changes is used up: try again shortly.
    Busy(String),
    /// Refused for good.
    Never(Failure),
}

impl Delivery {
    fn from_failure(f: Failure) -> Delivery {
        match f.status {
            Status::NotFound | Status::Forbidden | Status::BadRequest | Status::TooLarge => {
                Delivery::Never(f)
            }
            Status::RateLimited => Delivery::Busy(f.to_string()),
            _ => Delivery::Later(f.to_string()),
        }
    }
}

/// What two people compare to know that each one's devices are the
/// other's (`Dms::safety_number`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SafetyNumber {
    /// Twelve groups of five digits.
    pub(crate) safety_number: String,
    /// Each user's devices (node keys) that went into it.
    pub(crate) devices: BTreeMap<String, Vec<String>>,
}

impl SafetyNumber {
    fn of(mut users: Vec<(String, Vec<DeviceKeys>)>) -> SafetyNumber {
        use sha2::{Digest, Sha256};
        users.sort_by_key(|u| u.0.to_ascii_lowercase());
        let mut h = Sha256::new();
        h.update(b"segchat-safety-number-v1\0");
        for (name, keys) in &users {
            h.update(name.to_ascii_lowercase().as_bytes());
            h.update([0]);
            for k in keys {
                for part in [&k.node_key, &k.curve25519, &k.ed25519] {
                    h.update(part.as_bytes());
                    h.update([0]);
                }
            }
            h.update([1]);
        }
        let first: [u8; 32] = h.finalize().into();
        let second: [u8; 32] = Sha256::digest(first).into();
        let bytes: Vec<u8> = first.iter().chain(&second).copied().collect();
        let groups: Vec<String> = bytes
            .chunks(5)
            .take(12)
            .map(|c| {
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect();
        SafetyNumber {
            safety_number: groups.join(" "),
            devices: users
                .into_iter()
                .map(|(name, keys)| (name, keys.into_iter().map(|k| k.node_key).collect()))
                .collect(),
        }
    }
}

/// A conversation's name for `account`: the other members, joined.
pub(crate) fn conversation_of(account: &str, members: &[String]) -> String {
    members
        .iter()
        .filter(|m| !m.eq_ignore_ascii_case(account))
        .cloned()
        .collect::<Vec<_>>()
        .join(",")
}

/// The members of `account`'s conversation named `conversation`.
pub(crate) fn members_of(account: &str, conversation: &str) -> Vec<String> {
    let others: Vec<String> = conversation.split(',').map(str::to_owned).collect();
    dm::members(account, &others)
}

/// The failure a peer gets when this node cannot keep its message.
pub(crate) fn not_kept(why: impl std::fmt::Display) -> Failure {
    Failure::new(Status::ServerError, format!("could not keep it: {why}"))
}
