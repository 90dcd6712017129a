//! What the server shows of each connected user's presence: the status
//! they chose, except that a user who chose `online` is shown `idle` while
//! every one of their connections says its person is away (`set_activity`).
//!
//! One person may run several nodes (a desktop and a laptop); each node
//! knows only whether *its* clients are being used. Only the server sees
//! them all, so only it can say "idle": a node that went quiet must not
//! make the person look away while they type on another.
//!
//! Invariant: for every user present here, `conns` is the number of their
//! signed-in connections and `active` the number of those not marked idle
//! (`active <= conns`, `conns >= 1`); a user with no connection is absent,
//! which reads as offline.

use std::collections::HashMap;

use segchat_proto::types::Presence;

#[derive(Debug, Clone, Copy)]
struct Live {
    chosen: Presence,
    conns: u32,
    active: u32,
}

impl Live {
    fn shown(&self) -> Presence {
        if self.chosen == Presence::Online && self.active == 0 {
            Presence::Idle
        } else {
            self.chosen
        }
    }
}

/// Per-user presence of connected users. Plain data: the hub guards it.
#[derive(Debug, Default)]
pub(crate) struct Presences {
    users: HashMap<i64, Live>,
}

/// A user's shown presence before and after one change.
pub(crate) type Shift = (Presence, Presence);

impl Presences {
    /// The user's presence as they themself see it (`offline` when not
    /// connected).
    pub(crate) fn shown(&self, user: i64) -> Presence {
        self.users.get(&user).map_or(Presence::Offline, Live::shown)
    }

    /// The status the user chose, while they are connected.
    pub(crate) fn chosen(&self, user: i64) -> Option<Presence> {
        self.users.get(&user).map(|l| l.chosen)
    }

    /// A connection of the user signed in, active. `chosen` is their
    /// stored status, used if this is their first connection.
    pub(crate) fn connect(&mut self, user: i64, chosen: Presence) -> Shift {
        let before = self.shown(user);
        let live = self.users.entry(user).or_insert(Live {
            chosen,
            conns: 0,
            active: 0,
        });
        live.conns += 1;
        live.active += 1;
        (before, self.shown(user))
    }

    /// A connection of the user went (`idle`: whether it was marked idle).
    pub(crate) fn disconnect(&mut self, user: i64, idle: bool) -> Shift {
        let before = self.shown(user);
        if let Some(live) = self.users.get_mut(&user) {
            live.conns = live.conns.saturating_sub(1);
            if !idle {
                live.active = live.active.saturating_sub(1);
            }
            if live.conns == 0 {
                self.users.remove(&user);
            }
        }
        (before, self.shown(user))
    }

    /// One of the user's connections changed from active to idle or back
    /// (the caller only calls on a real change).
    pub(crate) fn set_idle(&mut self, user: i64, idle: bool) -> Shift {
        let before = self.shown(user);
        if let Some(live) = self.users.get_mut(&user) {
            if idle {
                live.active = live.active.saturating_sub(1);
            } else {
                live.active = (live.active + 1).min(live.conns);
            }
        }
        (before, self.shown(user))
    }

    /// The user chose a status (only while connected).
    pub(crate) fn choose(&mut self, user: i64, status: Presence) -> Shift {
        let before = self.shown(user);
        if let Some(live) = self.users.get_mut(&user) {
            live.chosen = status;
        }
        (before, self.shown(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Presence::*;

    #[test]
    fn a_user_is_idle_only_when_every_node_is() {
        let mut p = Presences::default();
        assert_eq!(p.connect(1, Online), (Offline, Online));
        assert_eq!(p.connect(1, Online), (Online, Online), "second node");
        assert_eq!(p.set_idle(1, true), (Online, Online), "one node quiet");
        assert_eq!(p.set_idle(1, true), (Online, Idle), "both quiet");
        assert_eq!(p.set_idle(1, false), (Idle, Online), "input on one");
    }

    #[test]
    fn the_last_active_node_leaving_leaves_the_user_idle() {
        let mut p = Presences::default();
        p.connect(1, Online);
        p.connect(1, Online);
        p.set_idle(1, true);
        assert_eq!(p.disconnect(1, false), (Online, Idle));
        assert_eq!(p.disconnect(1, true), (Idle, Offline));
        assert_eq!(p.shown(1), Offline);
        assert_eq!(p.connect(1, Online), (Offline, Online), "starts afresh");
    }

    #[test]
    fn a_new_active_node_brings_an_idle_user_back() {
        let mut p = Presences::default();
        p.connect(1, Online);
        p.set_idle(1, true);
        assert_eq!(p.connect(1, Online), (Idle, Online));
    }

    #[test]
    fn a_chosen_status_other_than_online_is_shown_as_chosen() {
        let mut p = Presences::default();
        p.connect(1, Invisible);
        p.set_idle(1, true);
        assert_eq!(p.shown(1), Invisible);
        assert_eq!(p.choose(1, Idle), (Invisible, Idle));
        assert_eq!(p.set_idle(1, false), (Idle, Idle), "chosen idle stays");
        assert_eq!(p.choose(1, Online), (Idle, Online));
    }
}
