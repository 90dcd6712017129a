//! Names that look alike. A visitor's display name may not equal, or be
//! confusable with, a registered username: "аlice" with a Cyrillic "а", or
//! "aIice" with a capital I, would pass for alice in a chat window.
//!
//! Two names are confusable when a key of one is a key of the other; the
//! keys are built from the UTS #39 skeleton (`unicode-security`, the crate
//! rustc's own `confusable_idents` lint uses, kept in step with Unicode's
//! confusables data) and lower-casing, so case and look-alikes combine:
//! "ALICE", "aIice" and "аlice" all meet "alice". The keys of every registered name are
//! kept in memory, loaded at start and added on registration, so a visit
//! costs one lookup, not a scan.

use std::collections::HashSet;
use std::sync::Mutex;

use unicode_security::skeleton;

/// The confusable-skeleton keys of every registered username.
#[derive(Debug, Default)]
pub(crate) struct TakenNames {
    keys: Mutex<HashSet<String>>,
}

impl TakenNames {
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> TakenNames {
        let taken = TakenNames::default();
        for name in names {
            taken.add(&name);
        }
        taken
    }

    pub(crate) fn add(&self, name: &str) {
        let mut set = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        set.extend(keys(name));
    }

    /// Whether `name` equals or looks like a registered username.
    pub(crate) fn looks_taken(&self, name: &str) -> bool {
        let set = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys(name).iter().any(|k| set.contains(k))
    }
}

/// Two keys, so case and look-alikes combine either way round: the
/// skeleton of the lower-cased name ("ALICE" meets "alice"), and the
/// lower-cased skeleton skeletoned again ("aIice", whose capital I looks
/// like an l, meets "alice" too).
fn keys(name: &str) -> [String; 2] {
    let name = name.trim();
    let folded_first: String = skeleton(&name.to_lowercase()).collect();
    let shape_first: String = skeleton(name).collect::<String>().to_lowercase();
    [folded_first, skeleton(&shape_first).collect()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_case_folded_and_homoglyph_names_look_taken() {
        let taken = TakenNames::new(["alice".to_owned(), "Bob_99".to_owned()]);
        for same in [
            "alice",
            "ALICE",
            "aIice",
            "\u{430}lice",
            "al\u{456}ce",
            " alice ",
        ] {
            assert!(taken.looks_taken(same), "{same:?}");
        }
        assert!(taken.looks_taken("bob_99"));
        assert!(taken.looks_taken("B\u{43E}b_99"), "Cyrillic o");
        for other in ["alicia", "Guest", "bob"] {
            assert!(!taken.looks_taken(other), "{other:?}");
        }
        taken.add("carol");
        assert!(taken.looks_taken("CAROL"));
    }
}
