//! What this instance knows of the other instances' live state, and the
//! changes instances tell each other (the vocabulary of `cluster`).
//!
//! Each instance owns its own connections, peer entries, hosted channels
//! and streams; it announces every change to them ([`Change`]) and, every
//! refresh period, all of them again. Here each other instance's entries
//! are kept as replicas, stamped when last announced. An entry not
//! announced again within the TTL is dropped, so the state of an instance
//! that died (and can no longer say anything) is gone within the TTL.
//!
//! Replicated connections count in the same [`Presences`] as local ones:
//! a user's presence is the sum of their connections on every instance.
//! Each instance derives presence changes from its own view and tells only
//! its own connections about them, so no change is announced twice.
//!
//! Invariant: every replicated connection of a registered user is counted
//! once in `Presences` (connected, and active unless `idle`), and is
//! uncounted exactly when it leaves this map.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use segchat_proto::stream::StreamInfo;
use segchat_proto::tracker::Event;
use segchat_proto::types::{NodeAddr, Presence};
use serde::{Deserialize, Serialize};

use super::by_user::ByUser;
use super::{change as shift_change, ConnId, PresenceChange, Principal};
use crate::presence::Presences;

/// A server instance, random for each process.
pub(crate) type InstanceId = u64;

/// One signed-in connection as other instances see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConnEntry {
    pub(crate) principal: Principal,
    /// The key its transport proved (the relay admits it by this).
    pub(crate) node_id: String,
    pub(crate) idle: bool,
    /// The user's chosen status, for instances that have none of their
    /// connections.
    pub(crate) chosen: Presence,
    /// Its peer-list entry, once it submitted its address.
    pub(crate) peer: Option<(NodeAddr, u64)>,
}

/// A channel's live host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostEntry {
    pub(crate) conn: ConnId,
    pub(crate) node: NodeAddr,
    pub(crate) owner_id: i64,
}

/// One change of an instance's live state, or all of it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Change {
    /// A connection signed in or changed (`Some`) or went (`None`).
    Conn {
        conn: ConnId,
        entry: Option<ConnEntry>,
    },
    /// The instance's connection `conn` hosts `channel` (`Some`) or
    /// stopped (`None`).
    Host {
        channel: String,
        host: Option<HostEntry>,
    },
    /// A stream started (`Some`) or ended (`None`).
    Stream {
        stream_id: u64,
        info: Option<(ConnId, StreamInfo)>,
    },
    /// A user chose a status: every instance applies it.
    Chosen { user_id: i64, status: Presence },
    /// A channel was deleted: every instance forgets its host and streams.
    ChannelGone { channel: String },
}

/// What the hub hands to the cluster link to send.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// To every instance.
    Change(Change),
    /// An event for some connections of another instance.
    Deliver {
        to: InstanceId,
        conns: Vec<ConnId>,
        event: Event,
    },
}

#[derive(Debug)]
pub(super) struct Stamped<T> {
    pub(super) value: T,
    pub(super) seen: Instant,
}

/// Replicas of the other instances' entries. Plain data: the hub guards
/// it.
#[derive(Debug, Default)]
pub(super) struct Remote {
    pub(super) conns: HashMap<(InstanceId, ConnId), Stamped<ConnEntry>>,
    /// `conns` of registered users, by user.
    pub(super) by_user: ByUser<(InstanceId, ConnId)>,
    pub(super) hosts: HashMap<String, Stamped<(InstanceId, HostEntry)>>,
    pub(super) streams: HashMap<u64, Stamped<(InstanceId, ConnId, StreamInfo)>>,
}

/// What applying changes did that the instance must tell its own
/// connections about.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) presence: Vec<PresenceChange>,
    /// Channels whose host appeared, moved or vanished.
    pub(crate) hosts: Vec<String>,
    /// Users who chose invisible (their streams here must end).
    pub(crate) invisible: Vec<i64>,
    /// Channels deleted elsewhere (local hosts and streams to drop).
    pub(crate) channels_gone: Vec<String>,
    /// Sessions ended elsewhere (this instance's connections of them to
    /// sign out).
    pub(crate) sessions_ended: Vec<String>,
}

impl Remote {
    /// Applies one change announced by instance `from` at `now`.
    pub(super) fn apply(
        &mut self,
        from: InstanceId,
        change: Change,
        now: Instant,
        presence: &mut Presences,
        out: &mut Applied,
    ) {
        match change {
            Change::Conn {
                conn,
                entry: Some(e),
            } => {
                let key = (from, conn);
                let old = match self.conns.get_mut(&key) {
                    Some(s) => {
                        s.seen = now;
                        if s.value == e {
                            // A refresh: only the stamp moves.
                            return;
                        }
                        Some(std::mem::replace(&mut s.value, e))
                    }
                    None => {
                        self.conns.insert(
                            key,
                            Stamped {
                                value: e,
                                seen: now,
                            },
                        );
                        None
                    }
                };
                let new = self.conns.get(&key).map(|s| &s.value);
                let user_of = |e: Option<&ConnEntry>| e.and_then(|e| e.principal.user_id);
                self.by_user.moved(key, user_of(old.as_ref()), user_of(new));
                count(presence, old.as_ref(), new, out);
            }
            Change::Conn { conn, entry: None } => self.drop_conn((from, conn), presence, out),
            Change::Host { channel, host } => match host {
                Some(h) => {
                    let moved = self
                        .hosts
                        .get(&channel)
                        .is_none_or(|s| s.value != (from, h.clone()));
                    self.hosts.insert(
                        channel.clone(),
                        Stamped {
                            value: (from, h),
                            seen: now,
                        },
                    );
                    if moved {
                        out.hosts.push(channel);
                    }
                }
                None => {
                    if self.hosts.get(&channel).is_some_and(|s| s.value.0 == from) {
                        self.hosts.remove(&channel);
                        out.hosts.push(channel);
                    }
                }
            },
            Change::Stream { stream_id, info } => match info {
                Some((conn, info)) => {
                    self.streams.insert(
                        stream_id,
                        Stamped {
                            value: (from, conn, info),
                            seen: now,
                        },
                    );
                }
                None => {
                    self.streams.remove(&stream_id);
                }
            },
            Change::Chosen { user_id, status } => {
                for key in self.by_user.of(user_id) {
                    if let Some(s) = self.conns.get_mut(key) {
                        s.value.chosen = status;
                    }
                }
                let shift = presence.choose(user_id, status);
                let name = self.username_of(user_id);
                if let Some(c) = name.and_then(|n| shift_change(user_id, n, shift)) {
                    out.presence.push(c);
                }
                if status == Presence::Invisible {
                    out.invisible.push(user_id);
                }
            }
            Change::ChannelGone { channel } => {
                self.hosts.remove(&channel);
                self.streams.retain(|_, s| s.value.2.channel != channel);
                out.channels_gone.push(channel);
            }
        }
    }

    /// Drops entries not announced again within `ttl` (from `None`: all
    /// of the instance's, which said it is stopping).
    pub(super) fn expire(
        &mut self,
        ttl: Duration,
        now: Instant,
        only: Option<InstanceId>,
        presence: &mut Presences,
        out: &mut Applied,
    ) {
        let stale = |inst: InstanceId, seen: Instant| match only {
            Some(i) => inst == i,
            None => now.duration_since(seen) > ttl,
        };
        let gone: Vec<(InstanceId, ConnId)> = self
            .conns
            .iter()
            .filter(|((i, _), s)| stale(*i, s.seen))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            self.drop_conn(key, presence, out);
        }
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, s)| stale(s.value.0, s.seen))
            .map(|(k, _)| k.clone())
            .collect();
        for channel in hosts {
            self.hosts.remove(&channel);
            out.hosts.push(channel);
        }
        self.streams.retain(|_, s| !stale(s.value.0, s.seen));
    }

    /// Forgets a replicated connection, uncounting it.
    fn drop_conn(
        &mut self,
        key: (InstanceId, ConnId),
        presence: &mut Presences,
        out: &mut Applied,
    ) {
        if let Some(old) = self.conns.remove(&key) {
            self.by_user.moved(key, old.value.principal.user_id, None);
            count(presence, Some(&old.value), None, out);
        }
    }

    fn username_of(&self, user_id: i64) -> Option<String> {
        let key = self.by_user.of(user_id).first()?;
        Some(self.conns.get(key)?.value.principal.username.clone())
    }
}

/// Moves a replicated connection's count in `presence` from `before` to
/// `after` (either may be absent) and notes the user's change, if any.
fn count(
    presence: &mut Presences,
    before: Option<&ConnEntry>,
    after: Option<&ConnEntry>,
    out: &mut Applied,
) {
    let uid_of = |e: Option<&ConnEntry>| e.and_then(|e| e.principal.user_id);
    let (was, is) = (uid_of(before), uid_of(after));
    if was == is {
        let (Some(uid), Some(b), Some(a)) = (is, before, after) else {
            return;
        };
        if b.idle != a.idle {
            let shift = presence.set_idle(uid, a.idle);
            out.presence
                .extend(shift_change(uid, a.principal.username.clone(), shift));
        }
        return;
    }
    if let (Some(uid), Some(b)) = (was, before) {
        let shift = presence.disconnect(uid, b.idle);
        out.presence
            .extend(shift_change(uid, b.principal.username.clone(), shift));
    }
    if let (Some(uid), Some(a)) = (is, after) {
        let first = presence.connect(uid, a.chosen);
        let shift = if a.idle {
            (first.0, presence.set_idle(uid, true).1)
        } else {
            first
        };
        out.presence
            .extend(shift_change(uid, a.principal.username.clone(), shift));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segchat_proto::types::AccountKind;
    use Presence::*;

    const A: InstanceId = 0xa;
    const B: InstanceId = 0xb;

    fn alice(idle: bool) -> Change {
        Change::Conn {
            conn: 1,
            entry: Some(ConnEntry {
                principal: Principal {
                    user_id: Some(7),
                    username: "alice".into(),
                    display_name: "Alice".into(),
                    kind: AccountKind::User,
                    session_id: "s".into(),
                },
                node_id: "n".into(),
                idle,
                chosen: Online,
                peer: None,
            }),
        }
    }

    fn shown(p: &Presences) -> Presence {
        p.shown(7)
    }

    #[test]
    fn a_connection_elsewhere_counts_in_presence_until_it_expires() {
        let (mut remote, mut presence, t0) =
            (Remote::default(), Presences::default(), Instant::now());
        let mut out = Applied::default();
        remote.apply(A, alice(false), t0, &mut presence, &mut out);
        assert_eq!(shown(&presence), Online);
        assert_eq!(out.presence.len(), 1, "offline to online is a change");
        let ttl = Duration::from_secs(2);
        let mut out = Applied::default();
        remote.expire(
            ttl,
            t0 + Duration::from_secs(1),
            None,
            &mut presence,
            &mut out,
        );
        assert_eq!(shown(&presence), Online, "still within the TTL");
        remote.apply(
            A,
            alice(false),
            t0 + Duration::from_secs(2),
            &mut presence,
            &mut out,
        );
        remote.expire(
            ttl,
            t0 + Duration::from_secs(3),
            None,
            &mut presence,
            &mut out,
        );
        assert_eq!(shown(&presence), Online, "refreshed, so kept");
        assert!(out.presence.is_empty(), "a refresh changes nothing");
        remote.expire(
            ttl,
            t0 + Duration::from_secs(5),
            None,
            &mut presence,
            &mut out,
        );
        assert_eq!(shown(&presence), Offline, "not announced again: gone");
        assert_eq!(out.presence[0].after, Offline);
    }

    #[test]
    fn a_user_is_idle_only_when_their_connections_on_every_instance_are() {
        let (mut remote, mut presence, now) =
            (Remote::default(), Presences::default(), Instant::now());
        let mut out = Applied::default();
        presence.connect(7, Online);
        presence.set_idle(7, true);
        assert_eq!(shown(&presence), Idle, "the local connection is idle");
        remote.apply(B, alice(false), now, &mut presence, &mut out);
        assert_eq!(shown(&presence), Online, "active on the other instance");
        remote.apply(B, alice(true), now, &mut presence, &mut out);
        assert_eq!(shown(&presence), Idle, "idle there too");
        remote.apply(
            B,
            Change::Conn {
                conn: 1,
                entry: None,
            },
            now,
            &mut presence,
            &mut out,
        );
        assert_eq!(shown(&presence), Idle, "the local one remains");
        assert_eq!(presence.chosen(7), Some(Online));
    }

    #[test]
    fn an_instance_that_says_it_stops_takes_only_its_own_entries() {
        let (mut remote, mut presence, now) =
            (Remote::default(), Presences::default(), Instant::now());
        let mut out = Applied::default();
        remote.apply(A, alice(false), now, &mut presence, &mut out);
        remote.apply(B, alice(false), now, &mut presence, &mut out);
        let host = |conn| HostEntry {
            conn,
            node: NodeAddr {
                node_id: "n".into(),
                addr: "127.0.0.1:1".parse().expect("addr"),
            },
            owner_id: 7,
        };
        remote.apply(
            A,
            Change::Host {
                channel: "ops".into(),
                host: Some(host(1)),
            },
            now,
            &mut presence,
            &mut out,
        );
        let mut out = Applied::default();
        remote.expire(Duration::ZERO, now, Some(A), &mut presence, &mut out);
        assert_eq!(shown(&presence), Online, "still connected on B");
        assert_eq!(out.hosts, vec!["ops".to_owned()], "A's host is gone");
        assert!(remote.hosts.is_empty());
        // A late removal from another instance does not drop B's host.
        remote.apply(
            B,
            Change::Host {
                channel: "ops".into(),
                host: Some(host(2)),
            },
            now,
            &mut presence,
            &mut out,
        );
        remote.apply(
            A,
            Change::Host {
                channel: "ops".into(),
                host: None,
            },
            now,
            &mut presence,
            &mut out,
        );
        assert_eq!(remote.hosts["ops"].value.0, B);
    }

    #[test]
    fn a_status_chosen_elsewhere_applies_here() {
        let (mut remote, mut presence, now) =
            (Remote::default(), Presences::default(), Instant::now());
        let mut out = Applied::default();
        remote.apply(A, alice(false), now, &mut presence, &mut out);
        let mut out = Applied::default();
        let chosen = Change::Chosen {
            user_id: 7,
            status: Invisible,
        };
        remote.apply(A, chosen, now, &mut presence, &mut out);
        assert_eq!(shown(&presence), Invisible);
        assert_eq!(out.invisible, vec![7], "their streams here must end");
        assert_eq!(out.presence[0].after, Invisible);
    }
}
