//! A channel's rules and member list as this node last learned them from
//! the server, for the places a node serves a channel itself (hosting it,
//! streaming in it). The rules are the protocol crate's, so a node admits
//! exactly whom the server would.

use std::collections::HashSet;

use segchat_proto::access::{Rules, Viewer};
use segchat_proto::types::{AccountKind, Role, Visibility};

/// Who may read and write a channel.
#[derive(Debug, Clone)]
pub(crate) struct ChannelAcl {
    pub(crate) rules: Rules,
    /// Usernames of the channel's members (owner included).
    pub(crate) members: HashSet<String>,
}

impl ChannelAcl {
    pub(crate) fn new(
        visibility: Visibility,
        allow_visitors: bool,
        members: HashSet<String>,
    ) -> ChannelAcl {
        ChannelAcl {
            rules: Rules {
                visibility,
                allow_visitors,
            },
            members,
        }
    }

    fn viewer(&self, user: &str, kind: AccountKind) -> Viewer {
        let member = kind == AccountKind::User && self.members.contains(user);
        Viewer {
            kind,
            role: member.then_some(Role::Member),
            invited: false,
        }
    }

    /// Whether a ticket holder may read the channel.
    pub(crate) fn may_read(&self, user: &str, kind: AccountKind) -> bool {
        self.rules.can_read(self.viewer(user, kind))
    }

    /// Whether a ticket holder may write in the channel.
    pub(crate) fn may_write(&self, user: &str, kind: AccountKind) -> bool {
        self.rules.can_write(self.viewer(user, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_write_strangers_read_public_visitors_only_where_allowed() {
        let mut acl = ChannelAcl::new(Visibility::Public, false, HashSet::from(["bob".to_owned()]));
        assert!(acl.may_read("carol", AccountKind::User));
        assert!(!acl.may_write("carol", AccountKind::User));
        assert!(acl.may_write("bob", AccountKind::User));
        assert!(!acl.may_read("visitor:x#1", AccountKind::Visitor));
        acl.rules.allow_visitors = true;
        assert!(acl.may_read("visitor:x#1", AccountKind::Visitor));
        assert!(!acl.may_write("visitor:x#1", AccountKind::Visitor));
        acl.rules.visibility = Visibility::MembersOnly;
        assert!(acl.may_read("bob", AccountKind::User));
        assert!(!acl.may_read("carol", AccountKind::User));
        assert!(!acl.may_read("visitor:x#1", AccountKind::Visitor));
    }
}
