//! The sign-in throttle: slows password guessing without locking the
//! owner out.
//!
//! Three counts of failed sign-ins, each in a sliding window:
//!
//! - per (account, source): `per_pair`. The only limit that applies to a
//!   source the account has signed in from before, so failures elsewhere
//!   never block the owner at a place they have used.
//! - per source, across accounts: `per_source`. Reaching it blocks the
//!   source (for sources new to the account) for a window, doubling with
//!   each repeat (at most [`MAX_BACKOFF_DOUBLINGS`] times); a success from
//!   the source resets the doubling.
//! - per account, from sources it has not signed in from before:
//!   `per_account`. Bounds a distributed guess at one account; the owner at
//!   a known source is not affected.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually holds a
//! whole /64). Every attempt is counted **before** its password is hashed
//! ([`LoginLimiter::reserve`]): parallel connections cannot get more
//! guesses checked than the limit. The reservation is taken back on
//! success or when the check never ran.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest block is `window × 2^MAX_BACKOFF_DOUBLINGS`.
const MAX_BACKOFF_DOUBLINGS: u32 = 4;
/// Sources remembered per account as "signed in from here before".
const KNOWN_SOURCES_PER_ACCOUNT: usize = 16;
/// Entries kept before expired ones are swept (a spray of names).
const SWEEP_ABOVE: usize = 100_000;

/// The limits; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) per_pair: u32,
    pub(crate) per_source: u32,
    pub(crate) per_account: u32,
    pub(crate) window: Duration,
}

/// Where an attempt comes from: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Source(IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
            v4 => Source(v4),
        }
    }
}

/// A counted attempt; hand it back with [`LoginLimiter::succeeded`],
/// [`LoginLimiter::failed`] or [`LoginLimiter::cancel`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Attempt {
    account: String,
    source: Source,
    at: Instant,
    known: bool,
}

#[derive(Debug, Default)]
struct SourceState {
    failures: Vec<Instant>,
    blocked_until: Option<Instant>,
    doublings: u32,
}

#[derive(Debug, Default)]
struct State {
    pairs: HashMap<(String, Source), Vec<Instant>>,
    sources: HashMap<Source, SourceState>,
    accounts: HashMap<String, Vec<Instant>>,
    known: HashMap<String, VecDeque<Source>>,
}

/// Counts failed sign-ins; see the module documentation.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    limits: Limits,
    state: Mutex<State>,
}

impl LoginLimiter {
    pub(crate) fn new(limits: Limits) -> Self {
        LoginLimiter {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts an attempt before its password is checked, or says how long
    /// to wait when a limit is reached.
    pub(crate) fn reserve(
        &self,
        username: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let account = username.to_lowercase();
        let source = Source::of(ip);
        let window = self.limits.window;
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let known = state
            .known
            .get(&account)
            .is_some_and(|k| k.contains(&source));

        let mut wait = Duration::ZERO;
        let pair = state.pairs.entry((account.clone(), source)).or_default();
        wait = wait.max(window_wait(pair, self.limits.per_pair, window, now));
        if !known {
            let s = state.sources.entry(source).or_default();
            if let Some(until) = s.blocked_until {
                wait = wait.max(until.saturating_duration_since(now));
            }
            let acc = state.accounts.entry(account.clone()).or_default();
            wait = wait.max(window_wait(acc, self.limits.per_account, window, now));
        }
        if !wait.is_zero() {
            return Err(wait);
        }

        // Count it now; `succeeded` and `cancel` take it back.
        self.count(state, &account, source, known, now);
        Ok(Attempt {
            account,
            source,
            at: now,
            known,
        })
    }

    /// Counts one attempt in every list that applies to it.
    fn count(&self, state: &mut State, account: &str, source: Source, known: bool, now: Instant) {
        let window = self.limits.window;
        state
            .pairs
            .entry((account.to_owned(), source))
            .or_default()
            .push(now);
        if !known {
            state
                .accounts
                .entry(account.to_owned())
                .or_default()
                .push(now);
            let s = state.sources.entry(source).or_default();
            s.failures.retain(|t| now.duration_since(*t) < window);
            s.failures.push(now);
            if s.failures.len() >= self.limits.per_source as usize {
                // The limit is reached with this attempt: it still runs,
                // the next ones wait, longer each time it happens again.
                let block = window * 2u32.pow(s.doublings);
                s.blocked_until = Some(now + block);
                s.doublings = (s.doublings + 1).min(MAX_BACKOFF_DOUBLINGS);
                s.failures.clear();
            }
        }
        let entries = state.pairs.len() + state.sources.len() + state.accounts.len();
        if entries > SWEEP_ABOVE {
            sweep(state, window, now);
        }
    }

    /// Another server instance checked a password for `username` from
    /// `ip`: a failure counts here too, a success makes the source known
    /// (so the limits hold across instances, give or take the moment the
    /// news takes to arrive).
    pub(crate) fn elsewhere(&self, username: &str, ip: IpAddr, ok: bool, now: Instant) {
        let account = username.to_lowercase();
        let source = Source::of(ip);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        if ok {
            state.pairs.remove(&(account.clone(), source));
            remember(state, account, source);
        } else {
            let known = state
                .known
                .get(&account)
                .is_some_and(|k| k.contains(&source));
            self.count(state, &account, source, known, now);
        }
    }

    /// The password was wrong: the attempt stays counted.
    pub(crate) fn failed(&self, attempt: Attempt) {
        drop(attempt);
    }

    /// The password was right: the attempt is taken back, the pair's
    /// failures are forgotten, the source's backoff reset, and the source
    /// becomes known for this account.
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        untake(&mut state, &attempt);
        state
            .pairs
            .remove(&(attempt.account.clone(), attempt.source));
        remember(&mut state, attempt.account, attempt.source);
    }

    /// A new account was registered from `ip`: that is where its owner is.
    pub(crate) fn registered(&self, username: &str, ip: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        remember(&mut state, username.to_lowercase(), Source::of(ip));
    }

    /// The password was never checked (the server was busy, the store
    /// failed): the attempt is taken back.
    pub(crate) fn cancel(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        untake(&mut state, &attempt);
    }
}

/// Makes `source` known for `account` (most recent last) and resets the
/// source's backoff.
fn remember(state: &mut State, account: String, source: Source) {
    if let Some(s) = state.sources.get_mut(&source) {
        s.doublings = 0;
    }
    let known = state.known.entry(account).or_default();
    if let Some(pos) = known.iter().position(|s| *s == source) {
        known.remove(pos);
    }
    known.push_back(source);
    if known.len() > KNOWN_SOURCES_PER_ACCOUNT {
        known.pop_front();
    }
}

/// How long until a list with `limit` entries in the window has room.
fn window_wait(list: &mut Vec<Instant>, limit: u32, window: Duration, now: Instant) -> Duration {
    list.retain(|t| now.duration_since(*t) < window);
    let limit = limit.max(1) as usize;
    if list.len() < limit {
        return Duration::ZERO;
    }
    let until = list[list.len() - limit] + window;
    until
        .saturating_duration_since(now)
        .max(Duration::from_millis(1))
}

/// Removes one entry of the attempt from each list that counted it.
fn untake(state: &mut State, attempt: &Attempt) {
    let remove = |list: &mut Vec<Instant>| {
        if let Some(pos) = list.iter().rposition(|t| *t == attempt.at) {
            list.remove(pos);
        }
    };
    if let Some(list) = state
        .pairs
        .get_mut(&(attempt.account.clone(), attempt.source))
    {
        remove(list);
    }
    if !attempt.known {
        if let Some(list) = state.accounts.get_mut(&attempt.account) {
            remove(list);
        }
        if let Some(s) = state.sources.get_mut(&attempt.source) {
            remove(&mut s.failures);
        }
    }
}

fn sweep(state: &mut State, window: Duration, now: Instant) {
    let fresh = |l: &Vec<Instant>| l.last().is_some_and(|t| now.duration_since(*t) < window);
    state.pairs.retain(|_, l| fresh(l));
    state.accounts.retain(|_, l| fresh(l));
    state
        .sources
        .retain(|_, s| fresh(&s.failures) || s.blocked_until.is_some_and(|u| u > now));
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn limiter(per_pair: u32, per_source: u32, per_account: u32) -> LoginLimiter {
        LoginLimiter::new(Limits {
            per_pair,
            per_source,
            per_account,
            window: WINDOW,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn fail(lim: &LoginLimiter, user: &str, from: &str, now: Instant) {
        let attempt = lim.reserve(user, ip(from), now).expect("allowed");
        lim.failed(attempt);
    }

    #[test]
    fn failures_counted_on_another_instance_block_here_too() {
        let (here, there) = (limiter(3, 100, 100), limiter(3, 100, 100));
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&there, "alice", "10.0.0.9", t0);
            here.elsewhere("alice", ip("10.0.0.9"), false, t0);
        }
        assert!(
            here.reserve("alice", ip("10.0.0.9"), t0).is_err(),
            "the guesses made through the other instance count here"
        );
        // The owner signing in elsewhere makes the source known here.
        here.elsewhere("alice", ip("10.0.0.9"), true, t0);
        assert!(here.reserve("alice", ip("10.0.0.9"), t0).is_ok());
    }

    #[test]
    fn a_pair_is_blocked_after_its_limit_and_forgets_after_the_window() {
        let lim = limiter(3, 100, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&lim, "Alice", "10.0.0.9", t0);
        }
        let wait = lim
            .reserve("ALICE", ip("10.0.0.9"), t0)
            .expect_err("blocked");
        assert!(wait <= WINDOW);
        assert!(
            lim.reserve("bob", ip("10.0.0.9"), t0).is_ok(),
            "other accounts"
        );
        assert!(
            lim.reserve("alice", ip("10.0.0.8"), t0).is_ok(),
            "other sources"
        );
        assert!(lim
            .reserve(
                "alice",
                ip("10.0.0.9"),
                t0 + WINDOW + Duration::from_secs(1)
            )
            .is_ok());
    }

    #[test]
    fn reservations_count_before_the_answer() {
        let lim = limiter(5, 100, 100);
        let t0 = Instant::now();
        let held: Vec<_> = (0..5)
            .map(|_| lim.reserve("alice", ip("10.0.0.9"), t0).expect("allowed"))
            .collect();
        assert!(
            lim.reserve("alice", ip("10.0.0.9"), t0).is_err(),
            "five guesses in flight use up the limit"
        );
        for a in held {
            lim.cancel(a);
        }
        assert!(
            lim.reserve("alice", ip("10.0.0.9"), t0).is_ok(),
            "cancelled ones return"
        );
    }

    #[test]
    fn a_source_is_blocked_across_accounts_with_growing_backoff() {
        let lim = limiter(100, 2, 100);
        let t0 = Instant::now();
        fail(&lim, "a1", "10.0.0.1", t0);
        fail(&lim, "a2", "10.0.0.1", t0);
        let first = lim.reserve("a3", ip("10.0.0.1"), t0).expect_err("blocked");
        assert!(
            lim.reserve("a3", ip("10.0.0.2"), t0).is_ok(),
            "other sources"
        );
        let t1 = t0 + first + Duration::from_millis(1);
        fail(&lim, "a4", "10.0.0.1", t1);
        fail(&lim, "a5", "10.0.0.1", t1);
        let second = lim
            .reserve("a6", ip("10.0.0.1"), t1)
            .expect_err("blocked again");
        assert!(second > first, "{second:?} after {first:?}");
    }

    #[test]
    fn ipv6_sources_are_whole_slash_64s() {
        let lim = limiter(1, 100, 100);
        let t0 = Instant::now();
        fail(&lim, "alice", "2001:db8:1:2::1", t0);
        assert!(lim.reserve("alice", ip("2001:db8:1:2::ffff"), t0).is_err());
        assert!(lim.reserve("alice", ip("2001:db8:1:3::1"), t0).is_ok());
    }

    #[test]
    fn the_owner_at_a_known_source_is_not_blocked_by_others_failures() {
        let lim = limiter(5, 20, 10);
        let t0 = Instant::now();
        let ok = lim.reserve("alice", ip("10.0.0.1"), t0).expect("allowed");
        lim.succeeded(ok);
        // A distributed attack uses up the account's limit for new sources.
        for n in 0..10 {
            fail(&lim, "alice", &format!("10.9.0.{n}"), t0);
        }
        assert!(
            lim.reserve("alice", ip("10.9.9.9"), t0).is_err(),
            "new sources are slowed"
        );
        let again = lim
            .reserve("alice", ip("10.0.0.1"), t0)
            .expect("known source");
        lim.succeeded(again);
    }

    #[test]
    fn a_known_pair_is_exempt_from_its_shared_source_limit() {
        let lim = limiter(5, 3, 100);
        let t0 = Instant::now();
        let ok = lim.reserve("alice", ip("192.0.2.1"), t0).expect("allowed");
        lim.succeeded(ok);
        // Someone else behind the same address guesses other accounts.
        for n in 0..3 {
            fail(&lim, &format!("victim{n}"), "192.0.2.1", t0);
        }
        assert!(lim.reserve("carol", ip("192.0.2.1"), t0).is_err());
        assert!(lim.reserve("alice", ip("192.0.2.1"), t0).is_ok());
    }
}
