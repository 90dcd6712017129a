//! Status codes. They follow HTTP's numbers so that the node's HTTP API can
//! pass them through unchanged and a reader already knows what they mean.

use serde::{Deserialize, Serialize};

/// The outcome of a request, or the reason a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    UnsupportedVersion,
    RateLimited,
    ServerError,
    Unavailable,
    InsufficientStorage,
}

impl Status {
    /// Every status, in registry order. No code is ever reused.
    pub const ALL: [Status; 12] = [
        Status::Ok,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::Conflict,
        Status::TooLarge,
        Status::UnsupportedVersion,
        Status::RateLimited,
        Status::ServerError,
        Status::Unavailable,
        Status::InsufficientStorage,
    ];

    /// The number on the wire (a big-endian `u16`).
    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::Conflict => 409,
            Status::TooLarge => 413,
            Status::UnsupportedVersion => 426,
            Status::RateLimited => 429,
            Status::ServerError => 500,
            Status::Unavailable => 503,
            Status::InsufficientStorage => 507,
        }
    }

    /// The status with this wire number, if there is one.
    pub fn from_code(code: u16) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The upper-case name used in documentation and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "BAD_REQUEST",
            Status::Unauthorized => "UNAUTHORIZED",
            Status::Forbidden => "FORBIDDEN",
            Status::NotFound => "NOT_FOUND",
            Status::Conflict => "CONFLICT",
            Status::TooLarge => "TOO_LARGE",
            Status::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Status::RateLimited => "RATE_LIMITED",
            Status::ServerError => "SERVER_ERROR",
            Status::Unavailable => "UNAVAILABLE",
            Status::InsufficientStorage => "INSUFFICIENT_STORAGE",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(d)?;
        Status::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status code {code}")))
    }
}

/// A refused request or a closing connection: a status that is not `Ok` and
/// a reason a person can read. Reasons never carry internals (SQL, paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{status}: {reason}")]
pub struct Failure {
    pub status: Status,
    pub reason: String,
}

impl Failure {
    pub fn new(status: Status, reason: impl Into<String>) -> Self {
        Failure {
            status,
            reason: reason.into(),
        }
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Failure::new(Status::BadRequest, reason)
    }
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Failure::new(Status::Unauthorized, reason)
    }
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Failure::new(Status::Forbidden, reason)
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Failure::new(Status::NotFound, reason)
    }
    pub fn conflict(reason: impl Into<String>) -> Self {
        Failure::new(Status::Conflict, reason)
    }
    pub fn server_error() -> Self {
        Failure::new(Status::ServerError, "internal error; see the server log")
    }
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Failure::new(Status::Unavailable, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            assert!(seen.insert(s.code()), "code {} reused", s.code());
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(Status::from_code(201), None);
    }
}
