//! Event delivery: to this instance's connections directly, and to the
//! other instances' through the cluster link, grouped per instance.

use std::collections::HashMap;

use segchat_proto::tracker::Event;
use segchat_proto::Frame;
use tokio::sync::mpsc;

use super::{Conn, ConnId, Hub, InstanceId, Outgoing, Principal, State};

impl Hub {
    /// Pushes an event to every connection of the given users (each
    /// listed once), on every instance.
    pub(crate) fn push_to_users(&self, users: &[i64], event: &Event) {
        self.push_to_users_except(users, None, event);
    }

    /// Pushes an event to every connection of the given users on this
    /// instance only (each instance tells its own connections of the
    /// presence changes it sees).
    pub(crate) fn push_here_to_users(&self, users: &[i64], event: &Event) {
        let st = self.lock();
        self.push_here(&st, users, None, event);
    }

    /// Pushes an event to every connection of the given users but
    /// `except` (the connection the news came from), on every instance.
    /// Costs the users' own connections: it goes through the index.
    pub(crate) fn push_to_users_except(
        &self,
        users: &[i64],
        except: Option<ConnId>,
        event: &Event,
    ) {
        let st = self.lock();
        self.push_here(&st, users, except, event);
        if self.cluster.is_none() {
            return;
        }
        let mut per_instance: HashMap<InstanceId, Vec<ConnId>> = HashMap::new();
        for user in users {
            for (instance, conn) in st.remote.by_user.of(*user) {
                per_instance.entry(*instance).or_default().push(*conn);
            }
        }
        self.deliver_elsewhere(per_instance, event);
    }

    /// Pushes an event to the connections of one node (by the key its
    /// transport authenticated) signed in as `user`, on every instance.
    pub(crate) fn push_to_node(&self, user: i64, node_id: &str, event: &Event) {
        let st = self.lock();
        for id in st.by_user.of(user) {
            if let Some(c) = st.conns.get(id).filter(|c| c.node_id == node_id) {
                self.deliver(*id, c, event);
            }
        }
        if self.cluster.is_none() {
            return;
        }
        let mut per_instance: HashMap<InstanceId, Vec<ConnId>> = HashMap::new();
        for (instance, conn) in st.remote.by_user.of(user) {
            let theirs = st.remote.conns.get(&(*instance, *conn));
            if theirs.is_some_and(|s| s.value.node_id == node_id) {
                per_instance.entry(*instance).or_default().push(*conn);
            }
        }
        self.deliver_elsewhere(per_instance, event);
    }

    /// Pushes an event to every signed-in connection of the node with key
    /// `node_id`, whoever it is signed in as, on every instance; how many
    /// connections that was. Walks every connection (no index by key):
    /// callers are rate-limited.
    pub(crate) fn push_to_node_key(&self, node_id: &str, event: &Event) -> usize {
        let st = self.lock();
        let mut told = 0;
        for (id, c) in &st.conns {
            if c.node_id == node_id && c.principal.is_some() {
                self.deliver(*id, c, event);
                told += 1;
            }
        }
        if self.cluster.is_none() {
            return told;
        }
        let mut per_instance: HashMap<InstanceId, Vec<ConnId>> = HashMap::new();
        for ((instance, conn), s) in &st.remote.conns {
            if s.value.node_id == node_id {
                per_instance.entry(*instance).or_default().push(*conn);
                told += 1;
            }
        }
        self.deliver_elsewhere(per_instance, event);
        told
    }

    fn push_here(&self, st: &State, users: &[i64], except: Option<ConnId>, event: &Event) {
        for user in users {
            for id in st.by_user.of(*user) {
                if Some(*id) != except {
                    if let Some(c) = st.conns.get(id) {
                        self.deliver(*id, c, event);
                    }
                }
            }
        }
    }

    /// Pushes an event to the listed connections of this instance.
    pub(crate) fn push_to_conns(&self, conns: &[ConnId], event: &Event) {
        let st = self.lock();
        for id in conns {
            if let Some(c) = st.conns.get(id) {
                self.deliver(*id, c, event);
            }
        }
    }

    /// Pushes an event to every signed-in connection whose principal
    /// matches, on every instance.
    pub(crate) fn push_where(&self, event: &Event, mut wanted: impl FnMut(&Principal) -> bool) {
        let st = self.lock();
        for (id, c) in &st.conns {
            if c.principal.as_ref().is_some_and(&mut wanted) {
                self.deliver(*id, c, event);
            }
        }
        self.push_elsewhere(&st, event, wanted);
    }

    /// Hands the event to the cluster link once per other instance that
    /// has a matching connection, naming those connections.
    fn push_elsewhere(
        &self,
        st: &State,
        event: &Event,
        mut wanted: impl FnMut(&Principal) -> bool,
    ) {
        if self.cluster.is_none() || st.remote.conns.is_empty() {
            return;
        }
        let mut per_instance: HashMap<InstanceId, Vec<ConnId>> = HashMap::new();
        for ((instance, conn), s) in &st.remote.conns {
            if wanted(&s.value.principal) {
                per_instance.entry(*instance).or_default().push(*conn);
            }
        }
        self.deliver_elsewhere(per_instance, event);
    }

    /// Hands the event to the cluster link once per instance, naming its
    /// connections.
    fn deliver_elsewhere(&self, per_instance: HashMap<InstanceId, Vec<ConnId>>, event: &Event) {
        for (to, conns) in per_instance {
            self.emit(Outgoing::Deliver {
                to,
                conns,
                event: event.clone(),
            });
        }
    }

    pub(super) fn deliver(&self, id: ConnId, conn: &Conn, event: &Event) {
        match conn.tx.try_send(Box::new(Frame::Event(event.clone()))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.log.record(
                    "SLOW_CONSUMER",
                    conn.addr,
                    format!("conn={id} queue full; disconnecting so it resyncs"),
                );
                conn.cancel.cancel();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}
