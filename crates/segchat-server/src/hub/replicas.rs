//! The hub's side of the cluster link: applying what other instances
//! announce, expiring what they stopped announcing, and this instance's
//! whole state for the periodic refresh.

use std::time::{Duration, Instant};

use super::remote::{ConnEntry, HostEntry};
use super::{Applied, Change, ConnId, Hub, InstanceId, State};

impl Hub {
    /// Applies changes announced by instance `from`.
    pub(crate) fn apply_remote(&self, from: InstanceId, changes: Vec<Change>) -> Applied {
        let mut out = Applied::default();
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        for change in changes {
            st.remote
                .apply(from, change, now, &mut st.presence, &mut out);
        }
        for channel in &out.channels_gone {
            Hub::forget_channel_here(st, channel);
        }
        out
    }

    /// Drops the other instances' entries not announced again within
    /// `ttl`: an instance that died stops announcing.
    pub(crate) fn expire_remote(&self, ttl: Duration) -> Applied {
        let mut out = Applied::default();
        let mut st = self.lock();
        let st = &mut *st;
        st.remote
            .expire(ttl, Instant::now(), None, &mut st.presence, &mut out);
        out
    }

    /// Drops every entry of instance `from`, which said it is stopping.
    pub(crate) fn forget_instance(&self, from: InstanceId) -> Applied {
        let mut out = Applied::default();
        let mut st = self.lock();
        let st = &mut *st;
        st.remote.expire(
            Duration::ZERO,
            Instant::now(),
            Some(from),
            &mut st.presence,
            &mut out,
        );
        out
    }

    /// Slice `slice` of `slices` of everything this instance owns, as
    /// changes: what the periodic refresh announces. Entries fall in
    /// slices by their connection, so every slice in turn covers all.
    pub(crate) fn snapshot(&self, slice: u32, slices: u32) -> Vec<Change> {
        let st = self.lock();
        let mine = |conn: &ConnId| conn % u64::from(slices.max(1)) == u64::from(slice);
        let conns = st.conns.keys().filter(|id| mine(id)).filter_map(|id| {
            conn_entry(&st, *id).map(|entry| Change::Conn {
                conn: *id,
                entry: Some(entry),
            })
        });
        let hosts = st.hosts.iter().filter(|(_, (conn, ..))| mine(conn)).map(
            |(channel, (conn, node, owner_id))| Change::Host {
                channel: channel.clone(),
                host: Some(HostEntry {
                    conn: *conn,
                    node: node.clone(),
                    owner_id: *owner_id,
                }),
            },
        );
        let streams =
            st.streams
                .iter()
                .filter(|(_, (conn, _))| mine(conn))
                .map(|(id, (conn, info))| Change::Stream {
                    stream_id: *id,
                    info: Some((*conn, info.clone())),
                });
        conns.chain(hosts).chain(streams).collect()
    }
}

/// How other instances see connection `id`: `None` unless signed in.
pub(super) fn conn_entry(st: &State, id: ConnId) -> Option<ConnEntry> {
    let conn = st.conns.get(&id)?;
    let principal = conn.principal.clone()?;
    let chosen = principal
        .user_id
        .and_then(|u| st.presence.chosen(u))
        .unwrap_or(segchat_proto::types::Presence::Online);
    Some(ConnEntry {
        principal,
        node_id: conn.node_id.clone(),
        idle: conn.idle,
        chosen,
        peer: st.peers.get(&id).map(|p| (p.node.clone(), p.last_seen_ms)),
    })
}
