//! The live, in-memory half of the server: who is connected, as whom, the
//! peer list, and event delivery to connections.
//!
//! One `std::sync::Mutex` guards it; every method takes the lock, does a
//! little bookkeeping and returns. No lock is ever held across `.await`, and
//! event delivery uses `try_send`: a connection whose queue is full is cut
//! off (it resumes after reconnecting) instead of stalling everybody else.
//!
//! With several instances (`cluster`), each change to this instance's
//! entries is also handed to the cluster link (`try_send` too, in the same
//! lock, so changes leave in the order they happened), the other
//! instances' entries are kept as replicas (`remote.rs`), and queries and
//! deliveries cover both.

mod by_user;
mod hosting;
mod push;
mod remote;
mod replicas;

use by_user::ByUser;
use replicas::conn_entry;

pub(crate) use remote::{Applied, Change, InstanceId, Outgoing};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use segchat_log::SystemLog;
use segchat_proto::stream::StreamInfo;
use segchat_proto::tracker::{Event, Reply, Request, MAX_PEERS_LISTED};
use segchat_proto::types::{AccountKind, NodeAddr, PeerInfo, Presence};
use segchat_proto::Frame;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::presence::{Presences, Shift};

/// A frame of the tracker link.
pub(crate) type TrackerFrame = Frame<Request, Reply, Event>;

/// A frame queued for a connection's writer. Boxed: a queue allocates room
/// for 32 entries up front, and 32 frames inline are ~6 KB on every idle
/// connection.
pub(crate) type Queued = Box<TrackerFrame>;

/// Identifies one accepted connection for its lifetime.
pub(crate) type ConnId = u64;

/// Who a connection is signed in as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Principal {
    /// `None` for visitors.
    pub(crate) user_id: Option<i64>,
    pub(crate) username: String,
    pub(crate) display_name: String,
    pub(crate) kind: AccountKind,
    pub(crate) session_id: String,
}

#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    /// The node key the connection's transport authenticated (hex).
    node_id: String,
    principal: Option<Principal>,
    /// Its node said its person is away (`set_activity`).
    idle: bool,
    tx: mpsc::Sender<Queued>,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct Peer {
    principal: Principal,
    node: NodeAddr,
    last_seen: Instant,
    last_seen_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    /// `conns` signed in as registered users, by user.
    by_user: ByUser<ConnId>,
    peers: HashMap<ConnId, Peer>,
    /// Each connected user's chosen status and how many of their
    /// connections are active.
    presence: Presences,
    /// Channel name → the connection hosting it, how to reach it, and the
    /// owner's user id.
    hosts: HashMap<String, (ConnId, NodeAddr, i64)>,
    /// Live streams by id, with the connection that streams each.
    streams: HashMap<u64, (ConnId, StreamInfo)>,
    next_stream: u64,
    /// The other instances' entries.
    remote: remote::Remote,
}

/// What happened to a user's presence because of a bind or unbind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresenceChange {
    pub(crate) user_id: i64,
    pub(crate) username: String,
    pub(crate) before: Presence,
    pub(crate) after: Presence,
}

/// The live state. See the module docs.
#[derive(Debug)]
pub(crate) struct Hub {
    state: Mutex<State>,
    log: SystemLog,
    /// Where changes go for the other instances; `None` when alone.
    cluster: Option<mpsc::Sender<Outgoing>>,
}

impl Hub {
    /// A hub for a server that runs alone.
    pub(crate) fn new(log: SystemLog) -> Self {
        Hub {
            state: Mutex::new(State::default()),
            log,
            cluster: None,
        }
    }

    /// A hub for instance `instance` of several, handing its changes to
    /// `cluster`. Its stream ids start from a per-instance offset so that
    /// two instances do not hand out the same one.
    pub(crate) fn clustered(
        log: SystemLog,
        instance: InstanceId,
        cluster: mpsc::Sender<Outgoing>,
    ) -> Self {
        let state = State {
            next_stream: (instance & 0xffff) << 32,
            ..State::default()
        };
        Hub {
            state: Mutex::new(state),
            log,
            cluster: Some(cluster),
        }
    }

    /// Hands `out` to the cluster link; called with the lock held so that
    /// changes leave in order. A full queue drops it: the next refresh
    /// carries the state again.
    fn emit(&self, out: Outgoing) {
        let Some(tx) = &self.cluster else { return };
        if tx.try_send(out).is_err() {
            tracing::warn!("cluster queue full; a change waits for the next refresh");
        }
    }

    /// Announces connection `id`'s entry (or its absence) to the cluster.
    fn emit_conn(&self, st: &State, id: ConnId) {
        if self.cluster.is_none() {
            return;
        }
        let entry = conn_entry(st, id);
        self.emit(Outgoing::Change(Change::Conn { conn: id, entry }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking an accepted connection.
    pub(crate) fn add_conn(
        &self,
        id: ConnId,
        addr: SocketAddr,
        node_id: String,
        tx: mpsc::Sender<Queued>,
        cancel: CancellationToken,
    ) {
        self.lock().conns.insert(
            id,
            Conn {
                addr,
                node_id,
                principal: None,
                idle: false,
                tx,
                cancel,
            },
        );
    }

    /// Signs a connection in. `chosen` is the user's stored status. Returns
    /// the presence change, if any (their first connection, or an active
    /// one while all the others were idle).
    pub(crate) fn bind(
        &self,
        id: ConnId,
        principal: Principal,
        chosen: Presence,
    ) -> Option<PresenceChange> {
        let mut st = self.lock();
        let user_id = principal.user_id;
        let username = principal.username.clone();
        let conn = st.conns.get_mut(&id)?;
        // Callers sign a connection out before signing it in again.
        debug_assert!(conn.principal.is_none(), "bind over a bound connection");
        conn.principal = Some(principal);
        conn.idle = false;
        st.by_user.moved(id, None, user_id);
        let shift = user_id.map(|uid| st.presence.connect(uid, chosen));
        self.emit_conn(&st, id);
        change(user_id?, username, shift?)
    }

    /// Signs a connection out (it stays connected) and drops its peer
    /// entry. Returns who it was and the presence change, if any.
    pub(crate) fn unbind(&self, id: ConnId) -> (Option<Principal>, Option<PresenceChange>) {
        let mut st = self.lock();
        st.peers.remove(&id);
        let Some(conn) = st.conns.get_mut(&id) else {
            return (None, None);
        };
        let Some(principal) = conn.principal.take() else {
            return (None, None);
        };
        let idle = std::mem::take(&mut conn.idle);
        st.by_user.moved(id, principal.user_id, None);
        let change = Self::presence_after_leaving(&mut st, &principal, idle);
        self.emit_conn(&st, id);
        (Some(principal), change)
    }

    /// Forgets a closed connection entirely.
    pub(crate) fn remove_conn(&self, id: ConnId) -> (Option<Principal>, Option<PresenceChange>) {
        let mut st = self.lock();
        st.peers.remove(&id);
        let Some(conn) = st.conns.remove(&id) else {
            return (None, None);
        };
        let Some(principal) = conn.principal else {
            return (None, None);
        };
        st.by_user.moved(id, principal.user_id, None);
        let change = Self::presence_after_leaving(&mut st, &principal, conn.idle);
        self.emit_conn(&st, id);
        (Some(principal), change)
    }

    fn presence_after_leaving(
        st: &mut State,
        principal: &Principal,
        idle: bool,
    ) -> Option<PresenceChange> {
        let uid = principal.user_id?;
        let shift = st.presence.disconnect(uid, idle);
        change(uid, principal.username.clone(), shift)
    }

    /// Records a newly chosen status for a connected user; returns the
    /// change of what they are shown as, if any.
    pub(crate) fn set_status(
        &self,
        user_id: i64,
        username: &str,
        status: Presence,
    ) -> Option<PresenceChange> {
        let mut st = self.lock();
        let shift = st.presence.choose(user_id, status);
        self.emit(Outgoing::Change(Change::Chosen { user_id, status }));
        change(user_id, username.to_owned(), shift)
    }

    /// Marks a signed-in user's connection idle or active (its node's
    /// person is away or back); returns the change of what the user is
    /// shown as, if any.
    pub(crate) fn set_idle(&self, id: ConnId, idle: bool) -> Option<PresenceChange> {
        let mut st = self.lock();
        let conn = st.conns.get_mut(&id)?;
        let principal = conn.principal.as_ref()?;
        let (uid, username) = (principal.user_id?, principal.username.clone());
        if conn.idle == idle {
            return None;
        }
        conn.idle = idle;
        let shift = st.presence.set_idle(uid, idle);
        self.emit_conn(&st, id);
        change(uid, username, shift)
    }

    /// A user's presence as they themself see it: their chosen status
    /// (shown idle while every connection is idle) while connected, else
    /// offline.
    pub(crate) fn presence(&self, user_id: i64) -> Presence {
        self.lock().presence.shown(user_id)
    }

    /// Adds or refreshes this connection's entry in the live peer list
    /// (`add_list`). Entries are unique by (address, user, session): an older
    /// entry with the same triple, left by a connection not yet noticed as
    /// dead, is replaced.
    pub(crate) fn submit(&self, id: ConnId, p2p_addr: SocketAddr, now_ms: u64) -> Option<PeerInfo> {
        let mut st = self.lock();
        let conn = st.conns.get(&id)?;
        let principal = conn.principal.clone()?;
        let node = NodeAddr {
            node_id: conn.node_id.clone(),
            addr: p2p_addr,
        };
        st.peers.retain(|cid, p| {
            *cid == id
                || !(p.node.addr == p2p_addr
                    && p.principal.username == principal.username
                    && p.principal.session_id == principal.session_id)
        });
        let status = principal
            .user_id
            .map_or(Presence::Online, |u| st.presence.shown(u));
        let peer = Peer {
            principal,
            node,
            last_seen: Instant::now(),
            last_seen_ms: now_ms,
        };
        let info = peer_info(&peer.principal, &peer.node, peer.last_seen_ms, status);
        st.peers.insert(id, peer);
        self.emit_conn(&st, id);
        Some(info)
    }

    /// Refreshes the connection's peer entry; false if it has none.
    pub(crate) fn heartbeat(&self, id: ConnId, now_ms: u64) -> bool {
        let mut st = self.lock();
        match st.peers.get_mut(&id) {
            Some(p) => {
                p.last_seen = Instant::now();
                p.last_seen_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// Removes entries not refreshed within `ttl`, cancels their connections
    /// and returns who they were.
    pub(crate) fn reap(&self, ttl: Duration) -> Vec<(ConnId, SocketAddr, Principal)> {
        let mut st = self.lock();
        let now = Instant::now();
        let expired: Vec<ConnId> = st
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_seen) > ttl)
            .map(|(id, _)| *id)
            .collect();
        let mut gone = Vec::with_capacity(expired.len());
        for id in expired {
            if let Some(p) = st.peers.remove(&id) {
                gone.push((id, p.node.addr, p.principal));
            }
            if let Some(c) = st.conns.get(&id) {
                c.cancel.cancel();
            }
        }
        gone
    }

    /// The live peer list as `asker` may see it, optionally only the peers
    /// whose user is in `users`: at most [`MAX_PEERS_LISTED`], the first
    /// by username. Invisible users are left out for everybody but
    /// themself, and so are the `hidden` users (who blocked the asker).
    /// One pass over the list under the lock, whatever its size; answers
    /// are built for the ones kept only.
    pub(crate) fn peers(
        &self,
        asker: &Principal,
        users: Option<&HashSet<i64>>,
        hidden: &HashSet<i64>,
    ) -> Vec<PeerInfo> {
        let st = self.lock();
        let here = st
            .peers
            .values()
            .map(|p| (&p.principal, &p.node, p.last_seen_ms));
        let elsewhere = st.remote.conns.values().filter_map(|s| {
            let (node, last_seen_ms) = s.value.peer.as_ref()?;
            Some((&s.value.principal, node, *last_seen_ms))
        });
        let mut list: Vec<_> = here
            .chain(elsewhere)
            .filter(|(principal, ..)| match users {
                Some(ids) => principal.user_id.is_some_and(|u| ids.contains(&u)),
                None => true,
            })
            .filter(|(principal, ..)| !principal.user_id.is_some_and(|u| hidden.contains(&u)))
            .filter_map(|(principal, node, last_seen_ms)| {
                let own = (principal.user_id.is_some() && principal.user_id == asker.user_id)
                    || principal.session_id == asker.session_id;
                let status = principal
                    .user_id
                    .map_or(Presence::Online, |u| st.presence.shown(u));
                let shown = if own {
                    status
                } else {
                    status.as_seen_by_others()
                };
                (shown != Presence::Offline).then_some((principal, node, last_seen_ms, shown))
            })
            .collect();
        let order = |a: &(&Principal, &NodeAddr, u64, Presence),
                     b: &(&Principal, &NodeAddr, u64, Presence)| {
            (&a.0.username, a.1.addr).cmp(&(&b.0.username, b.1.addr))
        };
        if list.len() > MAX_PEERS_LISTED {
            list.select_nth_unstable_by(MAX_PEERS_LISTED, order);
            list.truncate(MAX_PEERS_LISTED);
        }
        list.sort_unstable_by(order);
        list.into_iter()
            .map(|(principal, node, last_seen_ms, shown)| {
                peer_info(principal, node, last_seen_ms, shown)
            })
            .collect()
    }

    /// Where the node whose transport proved `node_id` stands: signed in
    /// on one of its connections, connected but not signed in, or unknown
    /// (the relay serves the first two, see `segchat_net::relay`).
    pub(crate) fn node_standing(&self, node_id: &str) -> segchat_net::relay::Standing {
        use segchat_net::relay::Standing;
        let st = self.lock();
        let mut standing = Standing::Stranger;
        for c in st.conns.values().filter(|c| c.node_id == node_id) {
            if c.principal.is_some() {
                return Standing::SignedIn;
            }
            standing = Standing::Linked;
        }
        if st.remote.conns.values().any(|s| s.value.node_id == node_id) {
            // Signed in on another instance, which may be down: this
            // instance's relay serves it too.
            return Standing::SignedIn;
        }
        standing
    }

    /// Whether connection `id` is signed in. A connection signed out by
    /// someone else (its session ended on another node, here or on
    /// another instance) learns it here before its next request.
    pub(crate) fn is_signed_in(&self, id: ConnId) -> bool {
        self.lock()
            .conns
            .get(&id)
            .is_some_and(|c| c.principal.is_some())
    }

    /// The node key connection `id`'s transport authenticated (hex).
    pub(crate) fn node_id(&self, id: ConnId) -> Option<String> {
        self.lock().conns.get(&id).map(|c| c.node_id.clone())
    }

    /// The address connection `id`'s node announced (`submit_info`), if
    /// it did.
    pub(crate) fn announced(&self, id: ConnId) -> Option<SocketAddr> {
        self.lock().peers.get(&id).map(|p| p.node.addr)
    }

    /// Where connection `id` comes from and who it is signed in as.
    pub(crate) fn who(&self, id: ConnId) -> Option<(SocketAddr, Option<Principal>)> {
        self.lock()
            .conns
            .get(&id)
            .map(|c| (c.addr, c.principal.clone()))
    }

    /// The sessions this instance's connections are signed in with, each
    /// once.
    pub(crate) fn signed_in_sessions(&self) -> Vec<String> {
        let st = self.lock();
        let mut sessions: Vec<String> = st
            .conns
            .values()
            .filter_map(|c| c.principal.as_ref().map(|p| p.session_id.clone()))
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions
    }

    /// Connections signed in with the given session.
    pub(crate) fn conns_of_session(&self, session_id: &str) -> Vec<ConnId> {
        self.lock()
            .conns
            .iter()
            .filter(|(_, c)| {
                c.principal
                    .as_ref()
                    .is_some_and(|p| p.session_id == session_id)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// This instance's connections signed in as the given registered user.
    pub(crate) fn conns_of_user(&self, user_id: i64) -> Vec<ConnId> {
        self.lock().by_user.of(user_id).to_vec()
    }
}

/// A change of what `user_id` is shown as, if there was one.
fn change(user_id: i64, username: String, (before, after): Shift) -> Option<PresenceChange> {
    (before != after).then_some(PresenceChange {
        user_id,
        username,
        before,
        after,
    })
}

fn peer_info(
    principal: &Principal,
    node: &NodeAddr,
    last_seen_ms: u64,
    status: Presence,
) -> PeerInfo {
    PeerInfo {
        username: principal.username.clone(),
        kind: principal.kind,
        session_id: principal.session_id.clone(),
        p2p_addr: node.addr,
        node_id: node.node_id.clone(),
        status,
        last_seen_ms,
    }
}

#[cfg(test)]
mod tests;
