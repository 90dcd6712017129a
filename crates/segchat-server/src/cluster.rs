//! The link between server instances, over NATS (`--nats URL`).
//!
//! Each instance owns the live state of its own connections (see `hub`)
//! and tells the others about it; nothing live is shared any other way.
//! Subjects, under the prefix `segchat`:
//!
//! - `segchat.state`: every instance publishes its changes here, batched
//!   ([`Message::State`]), all of its entries again every refresh period
//!   (a third of the peer TTL, a twentieth of them at a time), and
//!   [`Message::Gone`] when it stops.
//!   Every instance subscribes: any of them may be asked for the peer
//!   list, a channel's host or the live streams.
//! - `segchat.to.<instance>`: events for some connections of that
//!   instance ([`Message::Deliver`]). Each instance subscribes to its own
//!   only, so an event crosses to the instances that have someone to
//!   give it to, once each.
//! - `segchat.signin`: the outcome of each password check, so that the
//!   sign-in throttle counts failures on every instance.
//! - `segchat.members`: how many times members changed (somebody joined
//!   or left a channel, or one was deleted) through the sender, sent at
//!   each change and every refresh period ([`Message::Members`]). An
//!   instance that sees the count go up asks the database again whom to
//!   tell of presence changes (`mates`); a lost message is noticed at
//!   the next refresh.
//! - `segchat.sessions`: a session that ended (its user logged out)
//!   ([`Message::SessionEnded`]). Every instance signs out its own
//!   connections of that session: a token used on two instances is
//!   dropped by both.
//!
//! NATS delivers at most once. A lost change is repaired by the next
//! refresh; a lost removal by the TTL. An instance that stops announcing
//! (killed, cut off from NATS) has its entries dropped by the others
//! within the TTL, its users shown offline there, its hosts gone.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use segchat_proto::tracker::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{Applied, Change, ConnId, InstanceId, Outgoing, PresenceChange};
use crate::ops::{self, Shared};

/// Changes queued for NATS before new ones are dropped (and wait for the
/// refresh).
pub(crate) const QUEUE: usize = 65_536;
/// Rounds of changes from elsewhere waiting to be told before the loop
/// waits too.
const SETTLE_QUEUE: usize = 1024;
/// Changes per published message.
const BATCH: usize = 256;
/// Slices of the refresh: one is announced every refresh period / this.
const REFRESH_SLICES: u32 = 20;
/// Subjects' prefix.
const PREFIX: &str = "segchat";

/// What instances send each other (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    State {
        from: InstanceId,
        changes: Vec<Change>,
    },
    Gone {
        from: InstanceId,
    },
    Deliver {
        conns: Vec<ConnId>,
        event: Event,
    },
    SignIn {
        from: InstanceId,
        username: String,
        ip: IpAddr,
        ok: bool,
    },
    Members {
        from: InstanceId,
        /// Membership changes made through `from` so far.
        changes: u64,
    },
    SessionEnded {
        from: InstanceId,
        session_id: String,
    },
}

/// A connected link, before the hub exists.
pub(crate) struct Link {
    pub(crate) instance: InstanceId,
    client: async_nats::Client,
    pub(crate) tx: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Outgoing>,
    member_changes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("instance", &format_args!("{:016x}", self.instance))
            .finish()
    }
}

/// Connects to NATS at `url` (comma-separated for several servers).
pub(crate) async fn connect(url: &str) -> Result<Link, async_nats::ConnectError> {
    let instance: InstanceId = rand::random::<u64>() | 1;
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .name(format!("segchat-server-{instance:016x}"))
        .connection_timeout(Duration::from_secs(5))
        .subscription_capacity(QUEUE)
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS link");
        })
        .connect(addrs)
        .await?;
    let (tx, rx) = mpsc::channel(QUEUE);
    Ok(Link {
        instance,
        client,
        tx,
        rx,
        member_changes: Arc::default(),
    })
}

/// Tells the other instances how a password check went.
pub(crate) fn signed_in(shared: &Shared, username: &str, ip: IpAddr, ok: bool) {
    let Some(link) = &shared.cluster else { return };
    let message = Message::SignIn {
        from: link.instance,
        username: username.to_owned(),
        ip,
        ok,
    };
    link.publish("signin", &message);
}

/// Tells the other instances that a channel's members changed.
pub(crate) fn memberships_changed(shared: &Shared) {
    let Some(link) = &shared.cluster else { return };
    link.member_changes.fetch_add(1, Ordering::SeqCst);
    link.publish("members", &link.members());
}

/// Tells the other instances that a session ended: they sign out their
/// connections of it.
pub(crate) fn session_ended(shared: &Shared, session_id: &str) {
    let Some(link) = &shared.cluster else { return };
    let message = Message::SessionEnded {
        from: link.instance,
        session_id: session_id.to_owned(),
    };
    link.publish("sessions", &message);
}

/// What `Shared` keeps of the link.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) instance: InstanceId,
    client: async_nats::Client,
    /// Membership changes made through this instance.
    member_changes: Arc<AtomicU64>,
}

impl Handle {
    fn members(&self) -> Message {
        Message::Members {
            from: self.instance,
            changes: self.member_changes.load(Ordering::SeqCst),
        }
    }

    /// Publishes `message` on `segchat.<subject>` without waiting.
    fn publish(&self, subject: &str, message: &Message) {
        let Ok(body) = serde_json::to_vec(message) else {
            return;
        };
        let (client, subject) = (self.client.clone(), format!("{PREFIX}.{subject}"));
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, body.into()).await {
                tracing::warn!(error = %e, "could not publish to NATS");
            }
        });
    }
}

impl Link {
    pub(crate) fn handle(&self) -> Handle {
        Handle {
            instance: self.instance,
            client: self.client.clone(),
            member_changes: self.member_changes.clone(),
        }
    }
}

/// Runs the link until `shutdown`: sends this instance's changes, applies
/// the others', refreshes and expires.
pub(crate) async fn run(link: Link, shared: Arc<Shared>, shutdown: CancellationToken) {
    let Link {
        instance,
        client,
        rx,
        ..
    } = link;
    let subscribe = |subject: String| {
        let client = client.clone();
        async move { client.subscribe(subject).await }
    };
    let (state, mine, signin, members, sessions) = match tokio::try_join!(
        subscribe(format!("{PREFIX}.state")),
        subscribe(format!("{PREFIX}.to.{instance:016x}")),
        subscribe(format!("{PREFIX}.signin")),
        subscribe(format!("{PREFIX}.members")),
        subscribe(format!("{PREFIX}.sessions")),
    ) {
        Ok(subs) => subs,
        Err(e) => {
            tracing::error!(error = %e, "could not subscribe on NATS; running without the others");
            return;
        }
    };
    shared.log.record(
        "CLUSTER_JOINED",
        "nats",
        format!("instance={instance:016x}"),
    );
    let sender = tokio::spawn(send(instance, client.clone(), rx));
    // What changed elsewhere is told to this instance's connections by a
    // task of its own, so the loop keeps applying while it waits on the
    // database; under load the announcements gather into larger rounds.
    let (told_tx, told_rx) = mpsc::channel::<Applied>(SETTLE_QUEUE);
    let teller = tokio::spawn(tell(shared.clone(), told_rx));
    // Every entry is announced again once per refresh period, a slice at
    // a time: all at once, a big instance's refresh held the changes
    // queued behind it on every instance (~100 ms at 10k connections).
    let refresh = (shared.config.peer_ttl / 3).max(Duration::from_millis(100));
    let mut refresh_tick = tokio::time::interval(refresh / REFRESH_SLICES);
    let mut slice = 0;
    let mut expire_tick = tokio::time::interval(Duration::from_millis(250));
    let mut incoming = futures::stream::select_all([state, mine, signin, members, sessions]);
    let mut member_changes = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = refresh_tick.tick() => {
                if slice == 0 {
                    // A membership note NATS lost is noticed here.
                    if let Some(link) = &shared.cluster {
                        link.publish("members", &link.members());
                    }
                }
                let part = shared.hub.snapshot(slice, REFRESH_SLICES);
                for chunk in part.chunks(BATCH) {
                    publish(&client, instance, chunk.to_vec()).await;
                }
                slice = (slice + 1) % REFRESH_SLICES;
            }
            _ = expire_tick.tick() => {
                let applied = shared.hub.expire_remote(shared.config.peer_ttl);
                let _ = told_tx.send(applied).await;
            }
            message = incoming.next() => {
                let Some(message) = message else { break };
                let payload = &message.payload;
                if let Some(applied) = receive(&shared, instance, &mut member_changes, payload) {
                    let _ = told_tx.send(applied).await;
                }
            }
        }
    }
    sender.abort();
    teller.abort();
    if let Ok(body) = serde_json::to_vec(&Message::Gone { from: instance }) {
        let _ = client.publish(format!("{PREFIX}.state"), body.into()).await;
    }
    let _ = client.flush().await;
}

async fn publish(client: &async_nats::Client, from: InstanceId, changes: Vec<Change>) {
    let message = Message::State { from, changes };
    match serde_json::to_vec(&message) {
        Ok(body) => {
            if let Err(e) = client.publish(format!("{PREFIX}.state"), body.into()).await {
                tracing::warn!(error = %e, "could not publish to NATS");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode a state change"),
    }
}

/// Sends what the hub queued, changes batched (as many as are waiting,
/// up to [`BATCH`]) so that a busy instance sends few large messages.
async fn send(from: InstanceId, client: async_nats::Client, mut rx: mpsc::Receiver<Outgoing>) {
    let mut changes = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Outgoing::Change(c) => changes.push(c),
                Outgoing::Deliver { to, conns, event } => {
                    // Changes queued before it leave first.
                    if !changes.is_empty() {
                        publish(&client, from, std::mem::take(&mut changes)).await;
                    }
                    let message = Message::Deliver { conns, event };
                    if let Ok(body) = serde_json::to_vec(&message) {
                        let subject = format!("{PREFIX}.to.{to:016x}");
                        if let Err(e) = client.publish(subject, body.into()).await {
                            tracing::warn!(error = %e, "could not publish to NATS");
                        }
                    }
                }
            }
            if changes.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !changes.is_empty() {
            publish(&client, from, std::mem::take(&mut changes)).await;
        }
    }
}

/// Applies one message from NATS; answers what this instance's
/// connections must be told.
/// `member_changes`: the last count of membership changes heard from
/// each other instance.
fn receive(
    shared: &Shared,
    me: InstanceId,
    member_changes: &mut HashMap<InstanceId, u64>,
    payload: &[u8],
) -> Option<Applied> {
    let message: Message = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => {
            shared.log.record(
                "CLUSTER_BAD_MESSAGE",
                "nats",
                format!("bytes={} {e}", payload.len()),
            );
            return None;
        }
    };
    match message {
        Message::State { from, .. }
        | Message::Gone { from }
        | Message::SignIn { from, .. }
        | Message::Members { from, .. }
        | Message::SessionEnded { from, .. }
            if from == me =>
        {
            None
        }
        Message::Members { from, changes } => {
            let known = member_changes.entry(from).or_default();
            if changes > *known {
                *known = changes;
                shared.mates.changed();
            }
            None
        }
        Message::SessionEnded { session_id, .. } => Some(Applied {
            sessions_ended: vec![session_id],
            ..Applied::default()
        }),
        Message::State { from, changes } => Some(shared.hub.apply_remote(from, changes)),
        Message::Gone { from } => {
            shared
                .log
                .record("CLUSTER_LEFT", "nats", format!("instance={from:016x}"));
            member_changes.remove(&from);
            Some(shared.hub.forget_instance(from))
        }
        Message::Deliver { conns, event } => {
            shared.hub.push_to_conns(&conns, &event);
            None
        }
        Message::SignIn {
            username, ip, ok, ..
        } => {
            shared
                .limiter
                .elsewhere(&username, ip, ok, std::time::Instant::now());
            None
        }
    }
}

/// Tells what `receive` and the expiry found, gathering whatever queued
/// up while the previous round was being told into one round.
async fn tell(shared: Arc<Shared>, mut rx: mpsc::Receiver<Applied>) {
    while let Some(mut round) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            round.presence.extend(more.presence);
            round.hosts.extend(more.hosts);
            round.invisible.extend(more.invisible);
            round.sessions_ended.extend(more.sessions_ended);
        }
        round.hosts.sort();
        round.hosts.dedup();
        settle(&shared, round).await;
    }
}

/// Tells this instance's connections what changed elsewhere. A user's
/// changes within one round are told as one (from the first `before` to
/// the last `after`), and different users' at once: each announcement
/// waits on the database for whom to tell, and one at a time would hold
/// every change behind it.
async fn settle(shared: &Shared, applied: Applied) {
    let here = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut order: Vec<PresenceChange> = Vec::new();
    let mut at: HashMap<i64, usize> = HashMap::new();
    for change in applied.presence {
        match at.get(&change.user_id) {
            Some(&i) => order[i].after = change.after,
            None => {
                at.insert(change.user_id, order.len());
                order.push(change);
            }
        }
    }
    let told = order
        .into_iter()
        .filter(|c| c.before != c.after)
        .map(|c| ops::announce_presence(shared, c, "cluster"));
    futures::future::join_all(told).await;
    for channel in applied.hosts {
        if let Ok(Some(ch)) = shared.store.channel_by_name(&channel).await {
            ops::announce_host(shared, &ch).await;
        }
    }
    for session in applied.sessions_ended {
        ops::end_session(shared, &session, None, "you logged out on another node").await;
    }
    for user in applied.invisible {
        for conn in shared.hub.conns_of_user(user) {
            ops::end_streams(shared, conn, here, "streamer_disconnected").await;
        }
    }
}
