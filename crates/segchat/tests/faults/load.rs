//! Continuous posting, and the ledger of what each post got.
//!
//! A poster sends `"{author} {n}"` with `n` counting up, every
//! [`POST_EVERY`], to its node's API, whatever state the node is in, and
//! records every attempt: accepted (202, with the id), refused (status and
//! reason), or no answer (the node is down). Bodies are unique, so a
//! message is known by its body as well as by its id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, Sent};

/// Two posters at this pace make 40 posts/s, the load of the runs.
pub(crate) const POST_EVERY: Duration = Duration::from_millis(50);

/// One attempt to post.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) author: String,
    pub(crate) body: String,
    /// When the answer came (relative to the ledger's start).
    pub(crate) at: Duration,
    pub(crate) outcome: Sent,
}

/// Every attempt of every poster, in the order the answers came.
#[derive(Debug, Clone)]
pub(crate) struct Ledger {
    start: Instant,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            start: Instant::now(),
            attempts: Arc::default(),
        }
    }
}

impl Ledger {
    pub(crate) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn record(&self, author: &str, body: String, outcome: Sent) {
        let a = Attempt {
            author: author.to_owned(),
            body,
            at: self.now(),
            outcome,
        };
        self.attempts.lock().expect("ledger lock").push(a);
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("ledger lock").clone()
    }

    /// Accepted posts: id → attempt.
    pub(crate) fn accepted(&self) -> BTreeMap<String, Attempt> {
        self.attempts()
            .into_iter()
            .filter_map(|a| match &a.outcome {
                Sent::Accepted { id } => Some((id.clone(), a.clone())),
                _ => None,
            })
            .collect()
    }

    /// Counts per outcome, for the test's output: (accepted, refused, no
    /// answer).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let all = self.attempts();
        let acc = all
            .iter()
            .filter(|a| matches!(a.outcome, Sent::Accepted { .. }))
            .count();
        let refused = all
            .iter()
            .filter(|a| matches!(a.outcome, Sent::Refused { .. }))
            .count();
        (acc, refused, all.len() - acc - refused)
    }
}

/// A task posting to one node until stopped.
#[derive(Debug)]
pub(crate) struct Poster {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Poster {
    /// Posts as `author` to `channel`, counting from `first`, through
    /// whatever client `api` holds at the time (it follows the node's
    /// restarts).
    pub(crate) fn start(
        ledger: &Ledger,
        api: Arc<Mutex<Api>>,
        author: &str,
        channel: &str,
        first: u64,
    ) -> Poster {
        let stop = CancellationToken::new();
        let (ledger, author, channel, token) = (
            ledger.clone(),
            author.to_owned(),
            channel.to_owned(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POST_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in first.. {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let client = api.lock().expect("api lock").clone();
                let body = format!("{author} {n}");
                let outcome = client.send(&channel, &body).await;
                ledger.record(&author, body, outcome);
            }
        });
        Poster { stop, task }
    }

    /// Stops after the post in flight has its answer.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
