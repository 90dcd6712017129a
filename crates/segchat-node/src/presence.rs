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
//! - **Only a chosen *online* is ever changed**, and only in what others
//!   are shown: a status the person set (idle, invisible) is theirs, and
//!   the status they chose stays stored as they chose it.
//! - **Across nodes**: one person may run several nodes. Each node tells
//!   the server only whether *its* person is away (`set_activity`); the
//!   server shows a user who chose online as idle while every one of
//!   their nodes says so, and online again as soon as one does not.
//!
//! Invariant: the keeper never changes the status the person chose; it
//! only reports this node's activity, once per change and again on every
//! new connection to the server (which starts it as active).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use segchat_log::SystemLog;
use segchat_proto::tracker::{Reply, Request};
use segchat_proto::types::AccountKind;
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
        self.lock().last_input = Instant::now();
        self.inner.wake.notify_one();
    }

    /// A client attached (held for as long as it stays).
    pub fn attach(&self) -> Attached {
        let mut st = self.lock();
        st.clients += 1;
        st.alone_since = None;
        drop(st);
        Attached(self.clone())
    }

    /// Whether the person is away from this node: no input for
    /// `idle_after`, or no client attached for the grace.
    fn away(&self, idle_after: Duration) -> bool {
        let st = self.lock();
        let now = Instant::now();
        let quiet = now.duration_since(st.last_input) >= idle_after;
        let alone = st.alone_since.is_some_and(|t| {
            now.duration_since(t.max(st.last_input)) >= NO_CLIENT_GRACE.min(idle_after)
        });
        quiet || alone
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
    let mut link_changed = link.watch();
    // What the server was last told, on which connection.
    let mut told: Option<(u64, bool)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
            _ = activity.inner.wake.notified() => {}
            gone = link_changed.changed() => if gone.is_err() { return },
        }
        let state = link.state();
        let Some(session) = state.session.as_ref() else {
            continue;
        };
        if !state.connected || session.kind != AccountKind::User {
            continue;
        }
        let idle = activity.away(idle_after);
        let now = (state.connection, idle);
        if told == Some(now) {
            continue;
        }
        if !idle && told.is_none_or(|(connection, _)| connection != state.connection) {
            // A new connection starts active: nothing to say.
            told = Some(now);
            continue;
        }
        match link.request(Request::SetActivity { idle }).await {
            Ok(Reply::Done) => {
                told = Some(now);
                log.record(
                    "ACTIVITY_REPORTED",
                    &server,
                    format!(
                        "user={} idle={idle} ({})",
                        session.username,
                        if idle { "no input" } else { "input again" }
                    ),
                );
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to set_activity"),
            Err(e) => tracing::debug!(error = %e.reason, "could not report activity; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn away_without_input_and_back_with_it() {
        let a = Activity::default();
        let _tab = a.attach();
        let short = Duration::from_millis(30);
        assert!(!a.away(short), "just touched");
        std::thread::sleep(short * 2);
        assert!(a.away(short));
        a.input();
        assert!(!a.away(short));
    }

    #[test]
    fn with_no_client_attached_the_person_is_away_after_the_grace() {
        let a = Activity::default();
        let idle_after = Duration::from_millis(40);
        // idle_after shorter than the grace: it bounds the wait.
        let tab = a.attach();
        a.input();
        drop(tab);
        assert!(!a.away(Duration::from_secs(3600)), "within the grace");
        std::thread::sleep(idle_after * 2);
        assert!(a.away(idle_after));
    }
}
