//! Who may see, read, write and join a channel. Pure rules, no I/O, in the
//! protocol crate so that every place a channel is served — the server, the
//! channel's host, a streamer — enforces the very same rules.
//!
//! | visibility     | listed to                    | readable by                                | joinable by               |
//! |----------------|------------------------------|--------------------------------------------|---------------------------|
//! | `public`       | everyone signed in¹          | everyone registered; visitors¹             | any registered user       |
//! | `members_only` | registered users             | members                                    | any registered user       |
//! | `private`      | members and invited users    | members                                    | invited users             |
//!
//! ¹ visitors only where `allow_visitors` is set. Only members write;
//! visitors never write, join or create.

use crate::types::{AccountKind, Role, Visibility};

/// The facts about one viewer that the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub kind: AccountKind,
    pub role: Option<Role>,
    pub invited: bool,
}

/// The channel facts the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub visibility: Visibility,
    pub allow_visitors: bool,
}

impl Rules {
    pub fn can_see(self, v: Viewer) -> bool {
        match v.kind {
            AccountKind::Visitor => self.visibility == Visibility::Public && self.allow_visitors,
            AccountKind::User => match self.visibility {
                Visibility::Public | Visibility::MembersOnly => true,
                Visibility::Private => v.role.is_some() || v.invited,
            },
        }
    }

    pub fn can_read(self, v: Viewer) -> bool {
        match v.kind {
            AccountKind::Visitor => self.can_see(v),
            AccountKind::User => v.role.is_some() || self.visibility == Visibility::Public,
        }
    }

    pub fn can_write(self, v: Viewer) -> bool {
        v.kind == AccountKind::User && v.role.is_some()
    }

    pub fn can_join(self, v: Viewer) -> bool {
        v.kind == AccountKind::User
            && match self.visibility {
                Visibility::Public | Visibility::MembersOnly => true,
                Visibility::Private => v.invited || v.role.is_some(),
            }
    }

    pub fn can_invite(self, v: Viewer) -> bool {
        matches!(v.role, Some(Role::Owner | Role::Moderator))
    }

    /// Who may change a channel's settings (`update_channel`): its owner
    /// or a moderator.
    pub fn can_manage(self, v: Viewer) -> bool {
        matches!(v.role, Some(Role::Owner | Role::Moderator))
    }

    /// Who may delete a channel: its owner only.
    pub fn can_delete(self, v: Viewer) -> bool {
        v.role == Some(Role::Owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISITOR: Viewer = Viewer {
        kind: AccountKind::Visitor,
        role: None,
        invited: false,
    };
    const STRANGER: Viewer = Viewer {
        kind: AccountKind::User,
        role: None,
        invited: false,
    };
    const INVITED: Viewer = Viewer {
        kind: AccountKind::User,
        role: None,
        invited: true,
    };
    const MEMBER: Viewer = Viewer {
        kind: AccountKind::User,
        role: Some(Role::Member),
        invited: false,
    };
    const OWNER: Viewer = Viewer {
        kind: AccountKind::User,
        role: Some(Role::Owner),
        invited: false,
    };

    fn rules(visibility: Visibility, allow_visitors: bool) -> Rules {
        Rules {
            visibility,
            allow_visitors,
        }
    }

    #[test]
    fn visitors_read_only_public_channels_that_allow_them() {
        assert!(rules(Visibility::Public, true).can_read(VISITOR));
        assert!(!rules(Visibility::Public, false).can_see(VISITOR));
        assert!(!rules(Visibility::MembersOnly, true).can_see(VISITOR));
        assert!(!rules(Visibility::Private, true).can_see(VISITOR));
        for vis in [
            Visibility::Public,
            Visibility::MembersOnly,
            Visibility::Private,
        ] {
            let r = rules(vis, true);
            assert!(!r.can_write(VISITOR) && !r.can_join(VISITOR));
        }
    }

    #[test]
    fn members_only_is_listed_but_not_readable_by_strangers() {
        let r = rules(Visibility::MembersOnly, false);
        assert!(r.can_see(STRANGER) && r.can_join(STRANGER));
        assert!(!r.can_read(STRANGER) && !r.can_write(STRANGER));
        assert!(r.can_read(MEMBER) && r.can_write(MEMBER));
    }

    #[test]
    fn private_needs_an_invitation() {
        let r = rules(Visibility::Private, false);
        assert!(!r.can_see(STRANGER) && !r.can_join(STRANGER));
        assert!(r.can_see(INVITED) && r.can_join(INVITED) && !r.can_read(INVITED));
        assert!(r.can_invite(OWNER) && !r.can_invite(MEMBER));
    }

    #[test]
    fn only_the_owner_deletes_and_owners_or_moderators_manage() {
        let r = rules(Visibility::Public, true);
        let moderator = Viewer {
            role: Some(Role::Moderator),
            ..MEMBER
        };
        assert!(r.can_manage(OWNER) && r.can_manage(moderator));
        assert!(!r.can_manage(MEMBER) && !r.can_manage(STRANGER) && !r.can_manage(VISITOR));
        assert!(r.can_delete(OWNER));
        assert!(!r.can_delete(moderator) && !r.can_delete(MEMBER));
    }

    #[test]
    fn public_is_readable_but_only_members_write() {
        let r = rules(Visibility::Public, false);
        assert!(r.can_read(STRANGER) && !r.can_write(STRANGER));
        assert!(r.can_write(MEMBER));
    }
}
