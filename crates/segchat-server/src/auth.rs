//! Passwords, tokens and the sign-in rate limit.
//!
//! Passwords are hashed with argon2id (the crate's default parameters,
//! OWASP's minimum) on the blocking pool. A sign-in for an unknown user
//! still verifies against a fixed hash, so timing does not tell whether a
//! username exists.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hashes a password with argon2id and a random salt.
pub(crate) async fn hash_password(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Checks a password against a stored hash; `None` checks against a dummy
/// hash and returns false, taking the same time.
pub(crate) async fn verify_password(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let dummy = dummy_hash();
        let (hash, real) = match &stored {
            Some(h) => (h.as_str(), true),
            None => (dummy, false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(b"segchat-dummy-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// A fresh random secret, hex-encoded (`bytes` random bytes).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The hash under which a bearer token is stored.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Counts failed sign-ins per username and per source IP in a sliding
/// window; past the limit, further attempts are refused until the oldest
/// failure leaves the window.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    per_user: u32,
    per_ip: u32,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    pub(crate) fn new(per_user: u32, per_ip: u32, window: Duration) -> Self {
        LoginLimiter {
            per_user,
            per_ip,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, ip: IpAddr) -> [String; 2] {
        [format!("u:{}", username.to_lowercase()), format!("ip:{ip}")]
    }

    /// `Some(wait)` if sign-ins for this username or IP are blocked now.
    pub(crate) fn blocked(&self, username: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let [user_key, ip_key] = Self::keys(username, ip);
        let mut wait = None;
        for (key, limit) in [(user_key, self.per_user), (ip_key, self.per_ip)] {
            if let Some(list) = map.get_mut(&key) {
                list.retain(|t| now.duration_since(*t) < self.window);
                if list.len() >= limit as usize {
                    let until = list[list.len() - limit as usize] + self.window;
                    let w = until.saturating_duration_since(now);
                    wait = Some(wait.map_or(w, |old: Duration| old.max(w)));
                }
            }
        }
        wait
    }

    /// Records a failed sign-in.
    pub(crate) fn failed(&self, username: &str, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in Self::keys(username, ip) {
            let list = map.entry(key).or_default();
            list.retain(|t| now.duration_since(*t) < self.window);
            list.push(now);
        }
        // Keep the map from growing without bound under a spray of names.
        if map.len() > 100_000 {
            map.retain(|_, l| {
                l.last()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
    }

    /// Forgets a username's failures after a successful sign-in.
    pub(crate) fn succeeded(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("u:{}", username.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash_password("correct horse".into()).await.expect("hash");
        let b = hash_password("correct horse".into()).await.expect("hash");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(a.clone())).await);
        assert!(!verify_password("wrong horse".into(), Some(a)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[test]
    fn limiter_blocks_after_the_limit_and_forgets_after_the_window() {
        let lim = LoginLimiter::new(3, 100, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(lim.blocked("Alice", ip, t0), None, "attempt {i}");
            lim.failed("alice", ip, t0);
        }
        let wait = lim.blocked("ALICE", ip, t0).expect("blocked");
        assert!(wait <= Duration::from_secs(60));
        assert_eq!(lim.blocked("bob", ip, t0), None, "other users unaffected");
        assert_eq!(lim.blocked("alice", ip, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn limiter_counts_per_ip_across_names() {
        let lim = LoginLimiter::new(100, 2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        lim.failed("a1", ip, t0);
        lim.failed("a2", ip, t0);
        assert!(lim.blocked("a3", ip, t0).is_some());
        assert!(lim
            .blocked("a3", "10.0.0.2".parse().expect("ip"), t0)
            .is_none());
    }
}
