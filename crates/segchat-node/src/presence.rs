//! Presence that follows the person: a user who set themselves *online*
//! is shown *idle* once nobody has touched any of their clients for a
//! while, and *online* again at the next touch.
//!
//! - **Input** is what a person does: the web UI reports keys, clicks and
//!   pointer moves (`POST /activity`, at most every few seconds), and
//!   sending a message or setting a status through the API counts too.
//!   Polling, event streams and background refreshes do not.
//! - **Idle after `idle_after`** (`config::IDLE_AFTER`, 5 minutes, by
//!   default; `--idle-after`)
//!   without input from any client.
//! - **No client attached** (no web UI tab and no event stream open): the
//!   person is shown idle after [`NO_CLIENT_GRACE`] (or `idle_after`, if
//!   shorter), not offline: the node is still there, still receiving and
//!   storing their messages; they are just not looking. A reload or a
//!   reconnecting tab within the grace changes nothing.
//! - **Only a chosen *online* is ever changed.** A status the person set
//!   (idle, invisible) is theirs: the keeper never touches it, and a
//!   status changed elsewhere while auto-idle ends the auto-idle. The
//!   auto-idle mark lives in memory: a node restarted while auto-idle
//!   shows idle until the next input, which then brings it back.
//!
//! Invariant: the keeper only ever moves between online and idle, and
//! only from a state it set itself (or the person's online).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segchat_log::SystemLog;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::Presence;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::link::LinkHandle;

/// With no client attached, idle after this long (a reload fits well in it).
pub const NO_CLIENT_GRACE: Duration = Duration::from_secs(60);

/// What the keeper knows of the person's clients. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Debug)]
struct State {
    last_input: Instant,
    clients: usize,
    /// Since when no client has been attached (`None` while one is).
    alone_since: Option<Instant>,
    /// The idle shown now was set by the keeper, not the person.
    auto_idle: bool,
}

/// An attached client (an open event stream); detaches when dropped.
#[derive(Debug)]
pub struct Attached(Activity);

impl Drop for Attached {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.clients = st.clients.saturating_sub(1);
        if st.clients == 0 {
            st.alone_since = Some(Instant::now());
        }
        drop(st);
        self.0.inner.wake.notify_one();
    }
}

impl Default for Activity {
    fn default() -> Self {
        let now = Instant::now();
        Activity {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    last_input: now,
                    clients: 0,
                    alone_since: Some(now),
                    auto_idle: false,
                }),
                wake: Notify::new(),
            }),
        }
    }
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The person did something in a client.
    pub fn input(&self) {
        let wake = {
            let mut st = self.lock();
            st.last_input = Instant::now();
            st.auto_idle
        };
        if wake {
            self.inner.wake.notify_one();
        }
    }

    /// A client attached (held for as long as it stays).
    pub fn attach(&self) -> Attached {
        let mut st = self.lock();
        st.clients += 1;
        st.alone_since = None;
        drop(st);
        Attached(self.clone())
    }

    /// What the keeper should do now, given the person's current status.
    fn decide(&self, status: Presence, idle_after: Duration) -> Option<Presence> {
        let mut st = self.lock();
        let now = Instant::now();
        let quiet = now.duration_since(st.last_input) >= idle_after;
        let alone = st.alone_since.is_some_and(|t| {
            now.duration_since(t.max(st.last_input)) >= NO_CLIENT_GRACE.min(idle_after)
        });
        if st.auto_idle {
            if status != Presence::Idle {
                // Changed elsewhere (another node of theirs, or by hand).
                st.auto_idle = false;
                return None;
            }
            return (!quiet && !alone).then_some(Presence::Online);
        }
        (status == Presence::Online && (quiet || alone)).then_some(Presence::Idle)
    }

    fn set_auto_idle(&self, on: bool) {
        self.lock().auto_idle = on;
    }
}

/// Keeps the person's presence following their activity until `shutdown`.
pub async fn keep(
    activity: Activity,
    link: LinkHandle,
    log: SystemLog,
    server: String,
    idle_after: Duration,
    shutdown: CancellationToken,
) {
    let tick = (idle_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
            _ = activity.inner.wake.notified() => {}
        }
        let state = link.state();
        let Some(session) = state.session.as_ref() else {
            continue;
        };
        if !state.connected {
            continue;
        }
        let Some(to) = activity.decide(session.status, idle_after) else {
            continue;
        };
        match link.request(Request::SetStatus { status: to }).await {
            Ok(Reply::Session(info)) => {
                activity.set_auto_idle(to == Presence::Idle);
                log.record(
                    "PRESENCE_CHANGED",
                    &server,
                    format!(
                        "user={} status={} (automatic: {})",
                        info.username,
                        to.as_str(),
                        if to == Presence::Idle {
                            "no input"
                        } else {
                            "input again"
                        }
                    ),
                );
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to set_status"),
            Err(e) => tracing::debug!(error = %e.reason, "could not change presence; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_goes_idle_without_input_and_back_with_it() {
        let a = Activity::default();
        let _tab = a.attach();
        let short = Duration::from_millis(30);
        assert_eq!(a.decide(Presence::Online, short), None, "just touched");
        std::thread::sleep(short * 2);
        assert_eq!(a.decide(Presence::Online, short), Some(Presence::Idle));
        a.set_auto_idle(true);
        assert_eq!(a.decide(Presence::Idle, short), None, "still quiet");
        a.input();
        assert_eq!(a.decide(Presence::Idle, short), Some(Presence::Online));
    }

    #[test]
    fn a_status_the_person_chose_is_never_changed() {
        let a = Activity::default();
        let _tab = a.attach();
        let short = Duration::from_millis(10);
        std::thread::sleep(short * 3);
        assert_eq!(a.decide(Presence::Invisible, short), None);
        assert_eq!(a.decide(Presence::Idle, short), None, "their own idle");
        a.input();
        assert_eq!(
            a.decide(Presence::Idle, short),
            None,
            "input does not undo a chosen idle"
        );
    }

    #[test]
    fn a_status_changed_elsewhere_ends_the_auto_idle() {
        let a = Activity::default();
        let _tab = a.attach();
        a.set_auto_idle(true);
        assert_eq!(a.decide(Presence::Invisible, Duration::from_secs(60)), None);
        a.input();
        assert_eq!(
            a.decide(Presence::Invisible, Duration::from_secs(60)),
            None,
            "no longer the keeper's to change"
        );
    }

    #[test]
    fn with_no_client_attached_the_person_goes_idle_after_the_grace() {
        let a = Activity::default();
        let idle_after = Duration::from_millis(40);
        // idle_after shorter than the grace: it bounds the wait.
        let tab = a.attach();
        a.input();
        drop(tab);
        assert_eq!(
            a.decide(Presence::Online, Duration::from_secs(3600)),
            None,
            "within the grace"
        );
        std::thread::sleep(idle_after * 2);
        assert_eq!(a.decide(Presence::Online, idle_after), Some(Presence::Idle));
    }
}
