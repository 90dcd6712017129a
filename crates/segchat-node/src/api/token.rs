//! The API token: how one is made, how a presented one is compared, and
//! the browser cookie that carries it. Shared by the guard, which checks
//! every request, and the web UI's sign-in link, which sets the cookie.

use std::net::SocketAddr;

/// A fresh random API token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The cookie that carries the token in a browser. Cookies are shared by
/// every port of a host, so the name carries the port: two nodes on one
/// machine do not overwrite each other's.
pub fn cookie_name(api: SocketAddr) -> String {
    format!("segchat_{}", api.port())
}

/// Compares without an early exit, so timing does not tell how much of a
/// guessed token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn a_new_token_is_64_hex_digits() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
