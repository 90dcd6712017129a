//! Messages that point at another: replies, edits, deletions, reactions.
//!
//! Each is an ordinary signed [`Message`] whose `re` names the kind and the
//! target's id, so it travels every path a message does — outbox, host
//! sequence, server backup, sync, reconciliation — with the same
//! guarantees (a set keyed by id: idempotent, never a gap). What it does is
//! decided the same way by every store, whatever order things arrive in:
//!
//! - **Who may**: an edit only by the target's author; a deletion by the
//!   author or by the channel's owner or a moderator; a reaction by anyone
//!   who may write in the channel. Never across channels, never on an
//!   action (only on a plain message or a reply). See [`allowed`].
//! - **Order**: edits are last-writer-wins by the edit's `(ts_ms, id)` —
//!   hybrid-clock time, ties by id — so two concurrent edits end the same
//!   everywhere whichever arrives first. A deletion beats every edit, and
//!   is final. A reaction counts when a user's latest `react`/`unreact`
//!   for that emoji (same order) is `react`.
//! - **Redaction**: the text a deletion or a newer edit replaced is removed
//!   from every store ([`Message::redact`]): the row stays, verifiable, with
//!   its body's hash in place of the body.
//! - **Arriving first**: an action whose target a store does not have yet
//!   is kept and applied when the target arrives.
//!
//! The body of an edit is the new text; of a reaction, the emoji (at most
//! [`MAX_REACTION_LEN`] bytes, no spaces); of a deletion, empty.

use crate::message::Message;
pub use crate::refs::{Ref, RefKind};

/// The longest emoji a reaction may carry, in bytes.
pub const MAX_REACTION_LEN: usize = 32;

/// Why a message's shape does not fit its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("the message is empty")]
    Empty,
    #[error("a deletion carries no text")]
    DeleteWithBody,
    #[error("a reaction is one emoji of at most {MAX_REACTION_LEN} bytes, without spaces")]
    BadReaction,
    #[error("a message cannot point at itself")]
    SelfReference,
    #[error("only a message or a reply may share a file")]
    FileOnAction,
    #[error("{0}")]
    File(#[from] crate::files::FileError),
}

/// Checks that a message's body fits its kind (the body's length limit is
/// the caller's). A redacted message passes: its shape was checked when
/// it arrived whole.
pub fn check_shape(m: &Message) -> Result<(), ShapeError> {
    if m.redacted.is_some() {
        return Ok(());
    }
    if m.re.is_some_and(|r| r.id == m.id) {
        return Err(ShapeError::SelfReference);
    }
    let kind = m.re.map(|r| r.kind);
    match &m.file {
        None => check_body(kind, &m.body),
        Some(_) if !matches!(kind, None | Some(RefKind::Reply)) => Err(ShapeError::FileOnAction),
        // The text is an optional caption.
        Some(f) => Ok(f.check()?),
    }
}

/// Checks that `body` fits a message of `kind` (`None`: a plain message):
/// text for a message, a reply or an edit; nothing for a deletion; one
/// emoji for a reaction. Direct messages follow the same rules.
pub fn check_body(kind: Option<RefKind>, body: &str) -> Result<(), ShapeError> {
    match kind {
        None | Some(RefKind::Reply) | Some(RefKind::Edit) if body.trim().is_empty() => {
            Err(ShapeError::Empty)
        }
        Some(RefKind::Delete) if !body.is_empty() => Err(ShapeError::DeleteWithBody),
        Some(RefKind::React | RefKind::Unreact)
            if body.is_empty()
                || body.len() > MAX_REACTION_LEN
                || body.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Err(ShapeError::BadReaction)
        }
        _ => Ok(()),
    }
}

/// The message an action points at, as a store knows it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub channel: &'a str,
    pub author: &'a str,
    /// The target's own `re` kind (an action cannot be acted on).
    pub kind: Option<RefKind>,
}

/// Whether an action by `actor` in `channel` may change `target`;
/// `moderates` says whether `actor` is the channel's owner or a moderator.
/// Replies may point at anything in the channel (a reply to a message
/// that never arrives shows without its quote).
pub fn allowed(
    kind: RefKind,
    actor: &str,
    channel: &str,
    target: Target<'_>,
    moderates: bool,
) -> bool {
    if target.channel != channel || RefKind::is_action(target.kind) {
        return false;
    }
    match kind {
        RefKind::Reply | RefKind::React | RefKind::Unreact => true,
        RefKind::Edit => actor == target.author,
        RefKind::Delete => actor == target.author || moderates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Draft;
    use ed25519_dalek::SigningKey;
    use uuid::Uuid;

    fn v7(n: u128) -> Uuid {
        Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n)
    }

    fn signed(re: Option<Ref>, body: &str) -> Message {
        let server = SigningKey::from_bytes(&[1; 32]);
        let node = SigningKey::from_bytes(&[2; 32]);
        let ticket = crate::ticket::test_ticket(&server, &node, "alice", 10);
        Draft {
            file: None,
            id: v7(9),
            channel: "general",
            author: "alice",
            ts_ms: 5,
            body,
            re,
        }
        .sign(&node, ticket)
        .expect("sign")
    }

    #[test]
    fn each_kind_has_its_shape() {
        let to = |kind| Some(Ref { kind, id: v7(1) });
        assert_eq!(check_shape(&signed(None, "hi")), Ok(()));
        assert_eq!(check_shape(&signed(None, "  ")), Err(ShapeError::Empty));
        assert_eq!(
            check_shape(&signed(to(RefKind::Edit), "")),
            Err(ShapeError::Empty)
        );
        assert_eq!(check_shape(&signed(to(RefKind::Delete), "")), Ok(()));
        assert_eq!(
            check_shape(&signed(to(RefKind::Delete), "x")),
            Err(ShapeError::DeleteWithBody)
        );
        assert_eq!(check_shape(&signed(to(RefKind::React), "👍")), Ok(()));
        for bad in ["", "a b", &"x".repeat(33), "\u{7}"] {
            assert_eq!(
                check_shape(&signed(to(RefKind::React), bad)),
                Err(ShapeError::BadReaction),
                "{bad:?}"
            );
        }
        let mut own = signed(None, "hi");
        own.re = Some(Ref {
            kind: RefKind::Reply,
            id: own.id,
        });
        assert_eq!(check_shape(&own), Err(ShapeError::SelfReference));
    }

    #[test]
    fn only_the_author_edits_and_the_author_or_a_moderator_deletes() {
        let text = Target {
            channel: "general",
            author: "alice",
            kind: None,
        };
        assert!(allowed(RefKind::Edit, "alice", "general", text, false));
        assert!(!allowed(RefKind::Edit, "bob", "general", text, true));
        assert!(allowed(RefKind::Delete, "alice", "general", text, false));
        assert!(!allowed(RefKind::Delete, "bob", "general", text, false));
        assert!(allowed(RefKind::Delete, "bob", "general", text, true));
        assert!(allowed(RefKind::React, "bob", "general", text, false));
        assert!(
            !allowed(RefKind::Edit, "alice", "other", text, false),
            "never across channels"
        );
        let edit = Target {
            kind: Some(RefKind::Edit),
            ..text
        };
        assert!(
            !allowed(RefKind::Delete, "alice", "general", edit, true),
            "never on an action"
        );
        let reply = Target {
            kind: Some(RefKind::Reply),
            ..text
        };
        assert!(allowed(RefKind::Edit, "alice", "general", reply, false));
    }

    #[test]
    fn a_redacted_message_still_verifies_and_its_old_text_is_gone() {
        let server = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let mut m = signed(
            Some(Ref {
                kind: RefKind::Reply,
                id: v7(1),
            }),
            "secret text",
        );
        assert!(m.redact());
        assert_eq!(m.body, "");
        assert_eq!(m.verify(&server), Ok(()));
        let json = serde_json::to_string(&m).expect("json");
        assert!(!json.contains("secret"), "{json}");
        // A redacted message with a body put back, or a wrong hash, fails.
        let mut refilled = m.clone();
        refilled.body = "other".into();
        assert!(refilled.verify(&server).is_err());
        let mut rehashed = m;
        rehashed.redacted = Some(hex::encode(crate::message::body_hash("x")));
        assert!(rehashed.verify(&server).is_err());
    }

    #[test]
    fn the_kind_and_target_are_signed() {
        let server = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let edit = signed(
            Some(Ref {
                kind: RefKind::Edit,
                id: v7(1),
            }),
            "new",
        );
        let mut retargeted = edit.clone();
        retargeted.re = Some(Ref {
            kind: RefKind::Edit,
            id: v7(2),
        });
        assert!(retargeted.verify(&server).is_err());
        let mut rekinded = edit.clone();
        rekinded.re = Some(Ref {
            kind: RefKind::Reply,
            id: v7(1),
        });
        assert!(rekinded.verify(&server).is_err());
        let mut dropped = edit;
        dropped.re = None;
        assert!(dropped.verify(&server).is_err());
    }
}
