//! The records that operations exchange. Field names are the JSON names.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Longest username, in bytes.
pub const MAX_USERNAME_LEN: usize = 32;
/// Longest visitor display name, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 48;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 64;
/// Longest channel title (the displayed name), in characters.
pub const MAX_CHANNEL_TITLE_CHARS: usize = 64;
/// Longest channel topic, in bytes.
pub const MAX_CHANNEL_TOPIC_LEN: usize = 300;
/// Shortest password accepted at registration, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in bytes (argon2 input is bounded too).
pub const MAX_PASSWORD_LEN: usize = 256;

/// What a user shows to others. `Invisible` is only ever seen by the user
/// themself: everybody else is told `Offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Presence {
    Online,
    Idle,
    Invisible,
    Offline,
}

impl Presence {
    /// How this presence looks to somebody other than its owner.
    pub fn as_seen_by_others(self) -> Presence {
        match self {
            Presence::Invisible => Presence::Offline,
            p => p,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Idle => "idle",
            Presence::Invisible => "invisible",
            Presence::Offline => "offline",
        }
    }
}

impl std::str::FromStr for Presence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "online" => Ok(Presence::Online),
            "idle" => Ok(Presence::Idle),
            "invisible" => Ok(Presence::Invisible),
            "offline" => Ok(Presence::Offline),
            _ => Err(format!(
                "unknown status {s:?} (expected online, idle, invisible or offline)"
            )),
        }
    }
}

/// Who may see and enter a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Visibility {
    /// Listed to everybody signed in; anyone registered may join; readable by
    /// visitors where `allow_visitors` is set.
    Public,
    /// Listed to registered users, who may join; only members read and
    /// write. Never shown to visitors.
    MembersOnly,
    /// Listed only to its members; entered by invitation.
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::MembersOnly => "members_only",
            Visibility::Private => "private",
        }
    }
}

impl std::str::FromStr for Visibility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Visibility::Public),
            "members_only" | "members-only" => Ok(Visibility::MembersOnly),
            "private" => Ok(Visibility::Private),
            _ => Err(format!(
                "unknown visibility {s:?} (expected public, members-only or private)"
            )),
        }
    }
}

/// A member's role in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Role {
    Owner,
    Moderator,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }
}

/// A registered account or a visitor (display name only, read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum AccountKind {
    User,
    Visitor,
}

/// A signed-in session, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SessionInfo {
    /// The account name; for a visitor, `visitor:<display name>#<suffix>`.
    pub username: String,
    pub display_name: String,
    pub kind: AccountKind,
    /// Public id of this session (unique per sign-in; safe to show others).
    pub session_id: String,
    /// Secret bearer token; `resume` with it after a reconnect.
    pub token: String,
    /// The user's status as they see it (may be `invisible`): the one they
    /// chose, except `idle` while they chose `online` and every node of
    /// theirs reports them away (`set_activity`).
    pub status: Presence,
}

/// One entry of the live peer list: unique by (address, user, session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerInfo {
    pub username: String,
    pub kind: AccountKind,
    pub session_id: String,
    /// The UDP address the node announced for P2P (QUIC) connections.
    #[cfg_attr(test, proptest(strategy = "crate::types::arb::socket_addr()"))]
    pub p2p_addr: SocketAddr,
    /// The node's key (hex): the identity its P2P connections authenticate
    /// with. The server takes it from the node's own connection, never
    /// from what the node says.
    pub node_id: String,
    /// As the asker may see it (never `invisible` for somebody else).
    pub status: Presence,
    /// Milliseconds since the Unix epoch of the last heartbeat.
    pub last_seen_ms: u64,
}

/// A channel as the asker may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ChannelInfo {
    /// The channel's key: signed into every message, so it never changes.
    pub name: String,
    /// The name shown for it, which its owner may change ("rename");
    /// the `name` itself when never set.
    #[serde(default)]
    pub title: String,
    /// One line about the channel, at most 300 bytes; `""` when unset.
    #[serde(default)]
    pub topic: String,
    pub owner: String,
    pub visibility: Visibility,
    pub allow_visitors: bool,
    pub created_at_ms: u64,
    pub member_count: u32,
    /// The asker's role, if they are a member.
    pub my_role: Option<Role>,
    /// How to reach the channel's host node while it is online; `null`
    /// while the host is offline (use the server's backup).
    #[serde(default)]
    pub host: Option<NodeAddr>,
}

/// How to reach a node over P2P: its key, which its QUIC connections
/// authenticate with, and the UDP address it announced. A node that
/// cannot be reached at `addr` (NAT) is still reached through the
/// server's relay, by key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct NodeAddr {
    /// The node's ed25519 public key, hex.
    pub node_id: String,
    #[cfg_attr(test, proptest(strategy = "crate::types::arb::socket_addr()"))]
    pub addr: SocketAddr,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.node_id, self.addr)
    }
}

/// A channel member with their presence as the asker may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MemberInfo {
    pub username: String,
    pub role: Role,
    pub presence: Presence,
}

/// Checks a username: 3–32 bytes of ASCII letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit. Uniqueness is case-insensitive.
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.len() < 3 || name.len() > MAX_USERNAME_LEN {
        return Err(format!(
            "a username is 3 to {MAX_USERNAME_LEN} characters long"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err("a username may contain only letters, digits, '_', '-' and '.'".into());
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("a username starts with a letter or a digit".into());
    }
    Ok(())
}

/// Checks a channel name: 1–64 bytes of lower-case ASCII letters, digits,
/// `-` and `_`.
pub fn validate_channel_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CHANNEL_NAME_LEN {
        return Err(format!(
            "a channel name is 1 to {MAX_CHANNEL_NAME_LEN} characters long"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
    {
        return Err(
            "a channel name may contain only lower-case letters, digits, '-' and '_'".into(),
        );
    }
    Ok(())
}

/// Checks a channel title (the displayed name, which "rename" changes):
/// 1–64 characters after trimming, none of them control, formatting,
/// invisible or text-direction characters.
pub fn validate_channel_title(title: &str) -> Result<(), String> {
    let chars = title.chars().count();
    if title.trim().is_empty() || chars > MAX_CHANNEL_TITLE_CHARS {
        return Err(format!(
            "a channel title is 1 to {MAX_CHANNEL_TITLE_CHARS} characters long"
        ));
    }
    if let Some(c) = title.chars().find(|c| is_hidden_char(*c)) {
        return Err(format!(
            "a channel title may not contain U+{:04X} (control, formatting, invisible or \
             text-direction characters)",
            c as u32
        ));
    }
    Ok(())
}

/// Checks a channel topic: at most 300 bytes (empty clears it), one line,
/// with no control, formatting, invisible or text-direction characters.
pub fn validate_channel_topic(topic: &str) -> Result<(), String> {
    if topic.len() > MAX_CHANNEL_TOPIC_LEN {
        return Err(format!(
            "a channel topic is at most {MAX_CHANNEL_TOPIC_LEN} bytes long (this one is {})",
            topic.len()
        ));
    }
    if let Some(c) = topic.chars().find(|c| is_hidden_char(*c)) {
        return Err(format!(
            "a channel topic may not contain U+{:04X} (control, formatting, invisible or \
             text-direction characters)",
            c as u32
        ));
    }
    Ok(())
}

/// Checks a visitor's display name: 1–48 bytes, no control, format,
/// invisible or direction-changing characters (a name must look like what
/// it is: U+202E could make "evil" read as something else, a zero-width
/// joiner could make two names look the same). Whether it is confusable
/// with a registered username is the server's check (it knows the names).
pub fn validate_display_name(name: &str) -> Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.len() > MAX_DISPLAY_NAME_LEN {
        return Err(format!(
            "a display name is 1 to {MAX_DISPLAY_NAME_LEN} bytes long"
        ));
    }
    if let Some(c) = name.chars().find(|c| is_hidden_char(*c)) {
        return Err(format!(
            "a display name may not contain U+{:04X} (control, formatting, invisible or \
             text-direction characters)",
            c as u32
        ));
    }
    Ok(())
}

/// Control characters (Cc), format characters (Cf: bidi controls
/// U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C, zero-width
/// characters, tags…), line and paragraph separators, variation
/// selectors, and letters that render as nothing (Hangul fillers and the
/// like).
fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

#[cfg(test)]
pub(crate) mod arb {
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// Socket addresses that survive a text round trip (no IPv6 flow info
    /// or scope id, which the text form does not carry).
    pub(crate) fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_refuse_direction_control_and_invisible_characters() {
        for ok in ["Guest", "Zoë", "李小龙", "Guest 42", "Anne-Marie"] {
            assert_eq!(validate_display_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "evil\u{202E}gnp.exe",
            "a\u{202A}b",
            "a\u{2066}b",
            "a\u{2069}b",
            "a\u{200E}b",
            "a\u{200F}b",
            "a\u{061C}b",
            "al\u{200B}ice",
            "al\u{200D}ice",
            "al\u{2060}ice",
            "\u{FEFF}alice",
            "alice\u{E0041}",
            "a\u{0007}b",
            "a\nb",
            "\u{3164}",
            "a\u{FE0F}",
        ] {
            let e = validate_display_name(bad).expect_err(bad);
            assert!(e.contains("U+"), "{e}");
        }
    }

    #[test]
    fn usernames() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a.b-c_9").is_ok());
        assert!(validate_username("ab").is_err());
        assert!(validate_username("_alice").is_err());
        assert!(validate_username("al ice").is_err());
        assert!(validate_username("ålice").is_err());
    }

    #[test]
    fn channel_names() {
        assert!(validate_channel_name("general").is_ok());
        assert!(validate_channel_name("dev-ops_2").is_ok());
        assert!(validate_channel_name("General").is_err());
        assert!(validate_channel_name("").is_err());
    }

    #[test]
    fn channel_titles_and_topics() {
        assert!(validate_channel_title("Général ☕").is_ok());
        assert!(
            validate_channel_title(&"é".repeat(64)).is_ok(),
            "characters, not bytes"
        );
        assert!(validate_channel_title(&"é".repeat(65)).is_err());
        assert!(validate_channel_title("   ").is_err());
        assert!(validate_channel_title("a\u{202E}b").is_err());
        assert!(validate_channel_topic("").is_ok(), "empty clears it");
        assert!(validate_channel_topic(&"x".repeat(300)).is_ok());
        let e = validate_channel_topic(&"x".repeat(301)).expect_err("too long");
        assert!(e.contains("300"), "{e}");
        assert!(validate_channel_topic("two\nlines").is_err());
    }

    #[test]
    fn invisible_looks_offline_to_others() {
        assert_eq!(Presence::Invisible.as_seen_by_others(), Presence::Offline);
        assert_eq!(Presence::Idle.as_seen_by_others(), Presence::Idle);
    }
}
