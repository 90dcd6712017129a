//! Friends and blocks: what one user is to another, and the pure rules
//! by which a request, an acceptance, a removal, a block or an unblock
//! changes it. The server applies them (`relate`); a client can predict
//! them.
//!
//! A relation is held by each side of a pair about the other, and the two
//! halves always agree ([`Pair::is_consistent`]):
//!
//! | mine | theirs |
//! |---|---|
//! | none | none, or `blocked` |
//! | `outgoing` (I asked) | `incoming` |
//! | `friend` | `friend` |
//! | `blocked` | none, or `blocked` |
//!
//! Blocking someone ends whatever else the pair had (friendship, a
//! request either way); the blocked user is left with no relation, so
//! they learn no more than an unfriending would tell them. While
//! blocked, they can neither ask again nor see their blocker's presence.

use serde::{Deserialize, Serialize};

use crate::types::Presence;

/// What another user is to me.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RelationKind {
    /// We are friends: each sees the other's presence.
    Friend,
    /// They asked to be my friend; I have not answered.
    Incoming,
    /// I asked to be their friend; they have not answered.
    Outgoing,
    /// I blocked them.
    Blocked,
}

impl RelationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationKind::Friend => "friend",
            RelationKind::Incoming => "incoming",
            RelationKind::Outgoing => "outgoing",
            RelationKind::Blocked => "blocked",
        }
    }

    /// A friendship or a request either way (not a block).
    fn is_friendly(self) -> bool {
        !matches!(self, RelationKind::Blocked)
    }
}

impl std::str::FromStr for RelationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "friend" => Ok(RelationKind::Friend),
            "incoming" => Ok(RelationKind::Incoming),
            "outgoing" => Ok(RelationKind::Outgoing),
            "blocked" => Ok(RelationKind::Blocked),
            _ => Err(format!("unknown relation {s:?}")),
        }
    }
}

/// One user as another sees them: the answer to `relate`, an entry of
/// `relations`, and the `relation` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Relation {
    pub username: String,
    /// `null`: none any more (unfriended, a request declined or
    /// cancelled, unblocked). Never `null` in a `relations` list.
    pub kind: Option<RelationKind>,
    /// When it became what it is (ms since the epoch; 0 when `kind` is
    /// `null`).
    pub since_ms: u64,
    /// Their presence as others may see it; only for a friend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Presence>,
}

/// What one user does about another (`relate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FriendAction {
    /// Ask to be friends; accepts their request if they asked first.
    Request,
    /// Accept their request.
    Accept,
    /// Unfriend, decline their request or cancel mine. Leaves a block
    /// alone.
    Remove,
    /// Block them: ends a friendship or request either way.
    Block,
    /// Lift my block.
    Unblock,
}

impl FriendAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FriendAction::Request => "request",
            FriendAction::Accept => "accept",
            FriendAction::Remove => "remove",
            FriendAction::Block => "block",
            FriendAction::Unblock => "unblock",
        }
    }
}

/// Both halves of a pair's relation: mine about them, theirs about me.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Pair {
    pub mine: Option<RelationKind>,
    pub theirs: Option<RelationKind>,
}

impl Pair {
    /// Whether the halves agree (the table in the module docs).
    pub fn is_consistent(self) -> bool {
        use RelationKind::*;
        matches!(
            (self.mine, self.theirs),
            (None | Some(Blocked), None | Some(Blocked))
                | (Some(Outgoing), Some(Incoming))
                | (Some(Incoming), Some(Outgoing))
                | (Some(Friend), Some(Friend))
        )
    }

    /// The same pair seen from the other side.
    pub fn flipped(self) -> Pair {
        Pair {
            mine: self.theirs,
            theirs: self.mine,
        }
    }
}

/// Why an action cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// I blocked them: unblock first.
    #[error("you blocked this user; unblock them first")]
    YouBlocked,
    /// They blocked me. Answered like an unknown user, so a block is not
    /// revealed by asking.
    #[error("no such user takes friend requests from you")]
    Unreachable,
    /// `accept` with no request from them.
    #[error("this user has not asked to be your friend")]
    NoRequest,
}

/// The pair after `action`, or why it cannot be done. Doing what is
/// already done answers the pair unchanged (asking twice, accepting a
/// friend, removing nothing), so a retried action is harmless.
pub fn apply(action: FriendAction, pair: Pair) -> Result<Pair, Refusal> {
    use RelationKind::*;
    let now = |mine, theirs| Ok(Pair { mine, theirs });
    match action {
        FriendAction::Request => match pair.mine {
            Some(Blocked) => Err(Refusal::YouBlocked),
            _ if pair.theirs == Some(Blocked) => Err(Refusal::Unreachable),
            Some(Friend | Outgoing) => Ok(pair),
            Some(Incoming) => now(Some(Friend), Some(Friend)),
            None => now(Some(Outgoing), Some(Incoming)),
        },
        FriendAction::Accept => match pair.mine {
            Some(Incoming) => now(Some(Friend), Some(Friend)),
            Some(Friend) => Ok(pair),
            _ => Err(Refusal::NoRequest),
        },
        FriendAction::Remove => {
            let keep = |k: Option<RelationKind>| k.filter(|k| !k.is_friendly());
            now(keep(pair.mine), keep(pair.theirs))
        }
        FriendAction::Block => now(Some(Blocked), pair.theirs.filter(|k| *k == Blocked)),
        FriendAction::Unblock => match pair.mine {
            Some(Blocked) => now(None, pair.theirs),
            _ => Ok(pair),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use RelationKind::*;

    fn pair(mine: Option<RelationKind>, theirs: Option<RelationKind>) -> Pair {
        Pair { mine, theirs }
    }

    #[test]
    fn a_request_answered_by_a_request_makes_friends() {
        let asked = apply(FriendAction::Request, Pair::default()).expect("allowed");
        assert_eq!(asked, pair(Some(Outgoing), Some(Incoming)));
        let back = apply(FriendAction::Request, asked.flipped()).expect("allowed");
        assert_eq!(back, pair(Some(Friend), Some(Friend)));
    }

    #[test]
    fn only_a_request_can_be_accepted() {
        assert_eq!(
            apply(FriendAction::Accept, Pair::default()),
            Err(Refusal::NoRequest)
        );
        assert_eq!(
            apply(FriendAction::Accept, pair(Some(Outgoing), Some(Incoming))),
            Err(Refusal::NoRequest),
            "my own request"
        );
        assert_eq!(
            apply(FriendAction::Accept, pair(Some(Incoming), Some(Outgoing))),
            Ok(pair(Some(Friend), Some(Friend)))
        );
    }

    #[test]
    fn a_blocked_user_cannot_ask_and_is_not_told_why() {
        let blocked =
            apply(FriendAction::Block, pair(Some(Friend), Some(Friend))).expect("allowed");
        assert_eq!(blocked, pair(Some(Blocked), None), "the friendship ends");
        assert_eq!(
            apply(FriendAction::Request, blocked.flipped()),
            Err(Refusal::Unreachable)
        );
        assert_eq!(
            apply(FriendAction::Request, blocked),
            Err(Refusal::YouBlocked)
        );
    }

    #[test]
    fn removing_leaves_a_block_alone() {
        let both = pair(Some(Blocked), Some(Blocked));
        assert_eq!(apply(FriendAction::Remove, both), Ok(both));
        assert_eq!(
            apply(FriendAction::Unblock, both),
            Ok(pair(None, Some(Blocked))),
            "their block stays"
        );
    }

    proptest! {
        #[test]
        fn every_action_keeps_a_pair_consistent(action: FriendAction, before: Pair) {
            prop_assume!(before.is_consistent());
            if let Ok(after) = apply(action, before) {
                prop_assert!(after.is_consistent(), "{before:?} --{action:?}--> {after:?}");
            }
        }

        #[test]
        fn doing_it_again_changes_nothing(action: FriendAction, before: Pair) {
            prop_assume!(before.is_consistent());
            if let Ok(after) = apply(action, before) {
                prop_assert_eq!(apply(action, after), Ok(after));
            }
        }
    }
}
