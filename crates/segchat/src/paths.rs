//! How verbs put what the user typed into the API's paths and queries:
//! percent-encoded, and never as something a URL parser would resolve
//! into another route. (`messages/..` is the channel itself, and a URL
//! parser treats `%2E%2E` as `..` too, so encoding alone is not enough.)

use segchat_proto::types::{validate_channel_name, validate_username};

use crate::client::ClientError;

/// Percent-encodes a query value (and the bytes of a path segment).
pub(crate) fn query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One path segment (a message id, an emoji), percent-encoded; never
/// empty, `.` or `..`.
pub(crate) fn segment(s: &str) -> Result<String, ClientError> {
    if matches!(s, "" | "." | "..") {
        return Err(ClientError::Other(format!("{s:?} names nothing here")));
    }
    Ok(query(s))
}

/// A channel name, checked as the server checks it, so what is not one
/// never reaches a path.
pub(crate) fn channel(name: &str) -> Result<&str, ClientError> {
    validate_channel_name(name)
        .map(|()| name)
        .map_err(|e| ClientError::Other(format!("{name:?} is not a channel name: {e}")))
}

/// A username, checked as the server checks it.
pub(crate) fn user(name: &str) -> Result<&str, ClientError> {
    validate_username(name)
        .map(|()| name)
        .map_err(|e| ClientError::Other(format!("{name:?} is not a username: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_typed_names_another_route() {
        assert_eq!(query("👍"), "%F0%9F%91%8D");
        assert_eq!(query("a b&c"), "a%20b%26c");
        assert_eq!(segment("0190f3c2-aa").expect("an id"), "0190f3c2-aa");
        for bad in ["", ".", ".."] {
            assert!(segment(bad).is_err(), "{bad:?}");
        }
        for bad in ["..", "../session", "a/b", "General"] {
            assert!(channel(bad).is_err(), "{bad:?}");
        }
        assert_eq!(channel("ops-2").expect("a channel"), "ops-2");
        assert!(user("../session").is_err());
        assert_eq!(user("bob.smith").expect("a user"), "bob.smith");
    }
}
