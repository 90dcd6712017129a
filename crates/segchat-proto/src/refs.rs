//! What a message may point at: the `re` of a reply, an edit, a deletion
//! or a reaction (see [`crate::edits`] for what each does). Below both
//! [`crate::message`], which signs it, and [`crate::edits`], which applies
//! it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a message does to the one it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RefKind {
    /// A new message quoting it.
    Reply,
    /// New text for it.
    Edit,
    /// Removes it.
    Delete,
    /// Adds the body's emoji to it.
    React,
    /// Takes the author's reaction with the body's emoji back.
    Unreact,
}

impl RefKind {
    /// Its byte in the signed bytes.
    pub fn tag(self) -> u8 {
        match self {
            RefKind::Reply => 1,
            RefKind::Edit => 2,
            RefKind::Delete => 3,
            RefKind::React => 4,
            RefKind::Unreact => 5,
        }
    }

    /// Its name in JSON and in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Reply => "reply",
            RefKind::Edit => "edit",
            RefKind::Delete => "delete",
            RefKind::React => "react",
            RefKind::Unreact => "unreact",
        }
    }

    pub fn parse(s: &str) -> Option<RefKind> {
        Some(match s {
            "reply" => RefKind::Reply,
            "edit" => RefKind::Edit,
            "delete" => RefKind::Delete,
            "react" => RefKind::React,
            "unreact" => RefKind::Unreact,
            _ => return None,
        })
    }

    /// Whether a message of this kind is shown as a message of its own
    /// (a plain message or a reply), rather than changing another.
    pub fn is_action(kind: Option<RefKind>) -> bool {
        !matches!(kind, None | Some(RefKind::Reply))
    }
}

/// The message a message points at, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Ref {
    pub kind: RefKind,
    #[cfg_attr(test, proptest(strategy = "crate::message::arb_uuid()"))]
    pub id: Uuid,
}
