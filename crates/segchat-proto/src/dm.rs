//! What an end-to-end encrypted direct message is made of, inside the
//! server's envelope (`mailbox`): a [`Sealed`] Olm message from one
//! device to another, which decrypts to a [`DmPayload`].
//!
//! The server sees the envelope's routing (who sent it, which device it
//! is for) and nothing of the payload. The receiving device trusts the
//! sender's identity as follows: the server vouches that the envelope came
//! from the user `from` on the node `from_node` (its transport
//! authenticated the node key, and the device is published under that
//! user); the [`Sealed::sender`] device keys are signed by that node key;
//! and the Olm message decrypts only with the Curve25519 key they name.
//! The payload's `from` must then be the envelope's `from`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::devices::DeviceKeys;
use crate::edits::{check_body, ShapeError};
use crate::files::FileRef;
pub use crate::refs::{Ref, RefKind};

/// Most people in one conversation, the sender included.
pub const MAX_MEMBERS: usize = 10;

/// Largest text of one direct message (characters), as for channels.
pub const MAX_TEXT: usize = crate::message::MAX_BODY_LEN;

/// Most message ids one receipt covers.
pub const MAX_RECEIPT_IDS: usize = 200;

/// One device's Olm message to another: the JSON an envelope's `body`
/// holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The sending device, signed by its node key (which must be the
    /// envelope's `from_node`).
    pub sender: DeviceKeys,
    /// Olm's message type: 0 for a pre-key message (the first ones of a
    /// session), 1 for a normal one.
    #[serde(rename = "type")]
    pub kind: u8,
    /// The Olm message, unpadded standard base64 (as Olm writes it).
    pub ciphertext: String,
}

/// What a [`Sealed`] decrypts to (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmPayload {
    /// The message's id: the same id arriving twice is kept once.
    pub id: Uuid,
    /// The sender's username.
    pub from: String,
    /// Everyone in the conversation, the sender included, sorted, each
    /// once: a conversation is named by its members.
    pub members: Vec<String>,
    /// The sender's hybrid clock when it sent (milliseconds): the order
    /// messages are shown in.
    pub sent_at_ms: u64,
    pub content: DmContent,
}

/// What a direct message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DmContent {
    /// A message, or (with `re`) a reply, an edit, a deletion or a
    /// reaction, by the rules channels follow ([`crate::edits`]): `text`
    /// is the message's, the reply's or the edit's text, empty for a
    /// deletion, the emoji for a reaction. An edit or a deletion counts
    /// only from the target's sender; a reaction from any member; none
    /// across conversations or on another action.
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        re: Option<Ref>,
        /// A file shared with it (then `text` is an optional caption): a
        /// message or a reply only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<DmFile>,
    },
    /// The messages `ids` of this conversation reached the receipt's
    /// sender (`delivered`) or were read there (`read`).
    Receipt { ids: Vec<Uuid>, state: ReceiptState },
}

/// A file shared in a direct message: encrypted end to end like the
/// message. The sender encrypts the bytes with ChaCha20 under a fresh
/// random `key` (used for this file only, so the nonce is zero); `file`
/// describes the ciphertext as nodes fetch and verify it (its BLAKE3
/// hash, its size, which is the plaintext's) with the plaintext's name
/// and type. The key travels only inside the Olm-encrypted payload: a
/// seeder, the server or anyone who fetches the bytes sees ciphertext,
/// and the hash, signed into the payload Olm authenticates, makes the
/// plaintext the sender's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmFile {
    #[serde(flatten)]
    pub file: FileRef,
    /// The ChaCha20 key, 64 lowercase hex characters.
    pub key: String,
}

impl DmFile {
    /// The key's 32 bytes, if it is 64 lowercase hex characters.
    pub fn key_bytes(&self) -> Option<[u8; 32]> {
        crate::files::parse_hash(&self.key)
    }
}

/// How far a direct message got, as its recipients tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    Delivered,
    Read,
}

/// Why a payload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("members must be 2 to {MAX_MEMBERS} distinct names, sorted, the sender among them")]
    Members,
    #[error("the text is empty or longer than {MAX_TEXT} characters")]
    Text,
    #[error("{0}")]
    Shape(#[from] ShapeError),
    #[error("a receipt names 1 to {MAX_RECEIPT_IDS} messages")]
    Receipt,
    #[error("a file's key is 64 lowercase hex characters")]
    FileKey,
}

impl DmPayload {
    /// Checks what any receiver checks before keeping a payload.
    pub fn check(&self) -> Result<(), PayloadError> {
        let m = &self.members;
        let sorted = m.windows(2).all(|w| w[0] < w[1]);
        if m.len() < 2 || m.len() > MAX_MEMBERS || !sorted || !m.contains(&self.from) {
            return Err(PayloadError::Members);
        }
        match &self.content {
            DmContent::Text { text, re, file } => {
                if text.chars().count() > MAX_TEXT {
                    return Err(PayloadError::Text);
                }
                if re.is_some_and(|r| r.id == self.id) {
                    return Err(ShapeError::SelfReference.into());
                }
                let kind = re.map(|r| r.kind);
                match file {
                    // The text is an optional caption.
                    Some(f) if matches!(kind, None | Some(RefKind::Reply)) => {
                        f.file.check().map_err(ShapeError::from)?;
                        f.key_bytes().ok_or(PayloadError::FileKey)?;
                    }
                    Some(_) => return Err(ShapeError::FileOnAction.into()),
                    None => match check_body(kind, text) {
                        Err(ShapeError::Empty) => return Err(PayloadError::Text),
                        other => other?,
                    },
                }
            }
            DmContent::Receipt { ids, .. } => {
                if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS {
                    return Err(PayloadError::Receipt);
                }
            }
        }
        Ok(())
    }
}

/// The members of the conversation between `me` and `others`: sorted,
/// each once.
pub fn members(me: &str, others: &[String]) -> Vec<String> {
    let mut all: Vec<String> = others.to_vec();
    all.push(me.to_owned());
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(from: &str, members: &[&str], text: &str) -> DmPayload {
        DmPayload {
            id: Uuid::nil(),
            from: from.into(),
            members: members.iter().map(|s| s.to_string()).collect(),
            sent_at_ms: 1,
            content: DmContent::Text {
                text: text.into(),
                re: None,
                file: None,
            },
        }
    }

    #[test]
    fn a_payload_names_its_sender_among_sorted_distinct_members() {
        assert_eq!(text("ann", &["ann", "bob"], "hi").check(), Ok(()));
        for bad in [
            text("ann", &["bob", "ann"], "hi"),
            text("ann", &["ann", "ann"], "hi"),
            text("ann", &["ann"], "hi"),
            text("eve", &["ann", "bob"], "hi"),
        ] {
            assert_eq!(bad.check(), Err(PayloadError::Members), "{bad:?}");
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("u{i:02}")).collect();
        let refs: Vec<&str> = eleven.iter().map(String::as_str).collect();
        assert_eq!(text("u00", &refs, "hi").check(), Err(PayloadError::Members));
        assert_eq!(
            members("bob", &["ann".into(), "bob".into()]),
            ["ann", "bob"]
        );
    }

    #[test]
    fn empty_or_overlong_text_and_empty_receipts_are_refused() {
        assert_eq!(
            text("ann", &["ann", "bob"], " ").check(),
            Err(PayloadError::Text)
        );
        let long = "x".repeat(MAX_TEXT + 1);
        assert_eq!(
            text("ann", &["ann", "bob"], &long).check(),
            Err(PayloadError::Text)
        );
        let mut receipt = text("ann", &["ann", "bob"], "x");
        receipt.content = DmContent::Receipt {
            ids: Vec::new(),
            state: ReceiptState::Read,
        };
        assert_eq!(receipt.check(), Err(PayloadError::Receipt));
    }

    #[test]
    fn actions_have_the_shapes_channels_give_them() {
        let target = Uuid::from_u128(7);
        let with = |kind, body: &str| {
            let mut p = text("ann", &["ann", "bob"], "x");
            p.content = DmContent::Text {
                text: body.into(),
                re: Some(Ref { kind, id: target }),
                file: None,
            };
            p
        };
        assert_eq!(with(RefKind::Reply, "yes").check(), Ok(()));
        assert_eq!(with(RefKind::Edit, "new").check(), Ok(()));
        assert_eq!(with(RefKind::Edit, " ").check(), Err(PayloadError::Text));
        assert_eq!(with(RefKind::Delete, "").check(), Ok(()));
        assert_eq!(
            with(RefKind::Delete, "x").check(),
            Err(ShapeError::DeleteWithBody.into())
        );
        assert_eq!(with(RefKind::React, "👍").check(), Ok(()));
        assert_eq!(
            with(RefKind::React, "a b").check(),
            Err(ShapeError::BadReaction.into())
        );
        let mut own = with(RefKind::Reply, "me");
        own.id = target;
        assert_eq!(own.check(), Err(ShapeError::SelfReference.into()));
        let json = serde_json::to_value(with(RefKind::Edit, "new")).expect("json");
        assert_eq!(json["content"]["re"]["kind"], "edit");
        let plain = serde_json::to_value(text("ann", &["ann", "bob"], "hi")).expect("json");
        assert!(plain["content"].get("re").is_none(), "{plain}");
    }

    #[test]
    fn a_file_goes_with_a_message_or_a_reply_and_its_key() {
        let file = DmFile {
            file: FileRef {
                hash: "ab".repeat(32),
                name: "cat.png".into(),
                size: 3,
                mime: "image/png".into(),
                thumb: None,
            },
            key: "cd".repeat(32),
        };
        let with = |re: Option<RefKind>, caption: &str, file: DmFile| {
            let mut p = text("ann", &["ann", "bob"], "x");
            p.content = DmContent::Text {
                text: caption.into(),
                re: re.map(|kind| Ref {
                    kind,
                    id: Uuid::from_u128(7),
                }),
                file: Some(file),
            };
            p
        };
        assert_eq!(with(None, "", file.clone()).check(), Ok(()));
        assert_eq!(
            with(Some(RefKind::Reply), "look", file.clone()).check(),
            Ok(())
        );
        assert_eq!(
            with(Some(RefKind::Edit), "x", file.clone()).check(),
            Err(ShapeError::FileOnAction.into())
        );
        let mut keyless = file.clone();
        keyless.key = "short".into();
        assert_eq!(with(None, "", keyless).check(), Err(PayloadError::FileKey));
        let mut pathy = file.clone();
        pathy.file.name = "a\nb".into();
        assert!(with(None, "", pathy).check().is_err());
        let json = serde_json::to_value(with(None, "", file)).expect("json");
        assert_eq!(json["content"]["file"]["name"], "cat.png");
        assert_eq!(json["content"]["file"]["key"], "cd".repeat(32));
    }

    #[test]
    fn the_wire_form_is_tagged_json() {
        let p = text("ann", &["ann", "bob"], "hi");
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["content"]["type"], "text");
        assert_eq!(serde_json::from_value::<DmPayload>(json).expect("back"), p);
    }
}
