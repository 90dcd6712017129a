//! The node's ed25519 identity and its current ticket, kept in the data
//! directory so a restarted node can sign (and host) before the server
//! answers.

use std::path::Path;

use ed25519_dalek::SigningKey;
use segchat_proto::ticket::SignedTicket;

const KEY_FILE: &str = "node.key";
const TICKET_FILE: &str = "ticket.json";

/// Writes `bytes` to `dir/name` atomically with mode 0600.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    segchat_log::write_private(&dir.join(name), bytes)
}

/// Loads the node key, or makes and stores one.
pub(crate) fn load_or_create_key(dir: &Path) -> std::io::Result<SigningKey> {
    match std::fs::read(dir.join(KEY_FILE)) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte key", dir.join(KEY_FILE).display()),
                )
            })?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            write_private(dir, KEY_FILE, key.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The last ticket the server issued to this node, if it is still on disk.
pub(crate) fn load_ticket(dir: &Path) -> Option<SignedTicket> {
    let text = std::fs::read_to_string(dir.join(TICKET_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Keeps the ticket for the next start.
pub(crate) fn save_ticket(dir: &Path, ticket: &SignedTicket) -> std::io::Result<()> {
    let json = serde_json::to_vec(ticket).map_err(std::io::Error::other)?;
    write_private(dir, TICKET_FILE, &json)
}

/// Forgets the ticket (on logout).
pub(crate) fn forget_ticket(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(TICKET_FILE));
}
