//! Files shared in messages: what a message says of the file it shares,
//! and how that is signed.
//!
//! A file is named by the BLAKE3 hash of its bytes (the root of its
//! hash tree, so a receiver verifies every piece as it arrives). The
//! message that shares it carries a [`FileRef`]: hash, name, size and
//! media type. The author signs it with the body: the message's signed
//! hash becomes [`content_hash`] of both, which for a message without a
//! file is the body's SHA-256 exactly as before, so older messages verify
//! unchanged and a redacted message (body and file removed, hash kept)
//! still verifies.
//!
//! The bytes themselves never travel in a message: nodes fetch them from
//! each other by hash (`file_open` on the peer link, then the blobs
//! protocol; see `docs/PROTOCOL.md`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ticket::{put_str16, TrustError};

/// The largest file any node accepts in a message: a node's own limit
/// (`--max-file-size`) may be lower, never higher.
pub const MAX_FILE_SIZE: u64 = 16 << 30;
/// Longest file name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;
/// Longest media type, in bytes.
pub const MAX_MIME_LEN: usize = 127;
/// Longest thumbnail, in characters of base64 (12 KiB of JPEG).
pub const MAX_THUMB_LEN: usize = 16_384;

/// What a message says of the file it shares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileRef {
    /// The BLAKE3 hash of the bytes (root of the hash tree), 64 lowercase
    /// hex characters.
    pub hash: String,
    /// The name the sender gave it: shown, never used as a path.
    pub name: String,
    /// Its size in bytes; a receiver checks the verified size against it.
    pub size: u64,
    /// Its media type as the sender saw it (`image/png`); a receiver
    /// serves only a few types as themselves (see `safe_inline`).
    pub mime: String,
    /// For an image: a small JPEG of it (standard base64, at most
    /// [`MAX_THUMB_LEN`] characters) that the timeline shows at once,
    /// before (or instead of) fetching the image itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb: Option<String>,
}

/// Why a [`FileRef`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("a file's hash is 64 lowercase hex characters")]
    Hash,
    #[error("a file name is 1 to {MAX_NAME_LEN} bytes with no control characters")]
    Name,
    #[error("a file's media type looks like `type/subtype`, at most {MAX_MIME_LEN} bytes")]
    Mime,
    #[error("a file is at most {MAX_FILE_SIZE} bytes")]
    Size,
    #[error("a thumbnail is a JPEG in base64, at most {MAX_THUMB_LEN} characters")]
    Thumb,
}

impl FileRef {
    /// Checks every field's shape (not the bytes: nobody has them yet).
    pub fn check(&self) -> Result<(), FileError> {
        parse_hash(&self.hash).ok_or(FileError::Hash)?;
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_LEN
            || self.name.chars().any(char::is_control)
        {
            return Err(FileError::Name);
        }
        if !is_mime(&self.mime) {
            return Err(FileError::Mime);
        }
        if self.size > MAX_FILE_SIZE {
            return Err(FileError::Size);
        }
        if self.thumb.is_some() && self.thumb_bytes().is_none() {
            return Err(FileError::Thumb);
        }
        Ok(())
    }

    /// The thumbnail's JPEG bytes, if it has one of the right shape.
    pub fn thumb_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let t = self.thumb.as_deref()?;
        if t.len() > MAX_THUMB_LEN {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(t).ok()?;
        bytes.starts_with(&[0xFF, 0xD8, 0xFF]).then_some(bytes)
    }

    /// The hash's 32 bytes (after [`FileRef::check`]).
    pub fn hash_bytes(&self) -> Option<[u8; 32]> {
        parse_hash(&self.hash)
    }

    /// Whether it is an image a browser may show inline: the types whose
    /// decoders run no script. Everything else is served as a download.
    pub fn is_image(&self) -> bool {
        safe_inline(&self.mime).is_some()
    }
}

/// A file hash from its hex form: exactly 64 lowercase hex characters.
pub fn parse_hash(hex_hash: &str) -> Option<[u8; 32]> {
    if hex_hash.len() != 64
        || !hex_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).ok()?;
    Some(out)
}

/// The content type to serve a file under when showing it inline: only
/// raster images (no SVG, which can carry script). `None` means serve it
/// as `application/octet-stream`, as an attachment.
pub fn safe_inline(mime: &str) -> Option<&'static str> {
    match mime.to_ascii_lowercase().as_str() {
        "image/png" => Some("image/png"),
        "image/jpeg" | "image/jpg" => Some("image/jpeg"),
        "image/gif" => Some("image/gif"),
        "image/webp" => Some("image/webp"),
        "image/avif" => Some("image/avif"),
        _ => None,
    }
}

/// `type/subtype` with RFC 6838's restricted name characters, optionally
/// followed by parameters we keep but do not read.
fn is_mime(m: &str) -> bool {
    if m.is_empty() || m.len() > MAX_MIME_LEN || !m.is_ascii() || m.bytes().any(|b| b < 0x20) {
        return false;
    }
    let essence = m.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(essence.split_once('/'), Some((t, s)) if token(t) && token(s))
}

/// First byte of the file's part of the signed content: never the first
/// byte of UTF-8 text, so a body alone never hashes like a body and file.
const FILE_MARK: u8 = 0xFF;
const FILE_DOMAIN: &[u8] = b"segchat-file-v1\0";
/// The domain of a file with a thumbnail: another layout, never read as
/// the first's.
const THUMB_DOMAIN: &[u8] = b"segchat-file-v2\0";

/// What a message's signature covers of its content: the body's SHA-256
/// when it shares no file (as before files existed), else the SHA-256 of
///
/// ```text
/// 0xFF "segchat-file-v1" 0x00
/// hash: 32 bytes · size: u64 · name: u16 length · UTF-8 · mime: u16 length · ASCII
/// body: UTF-8 (the rest)
/// ```
///
/// and, for a file with a thumbnail, `"segchat-file-v2"` with the
/// thumbnail's base64 (u16 length · ASCII) after the media type.
pub fn content_hash(body: &str, file: Option<&FileRef>) -> Result<[u8; 32], TrustError> {
    let Some(f) = file else {
        return Ok(Sha256::digest(body.as_bytes()).into());
    };
    let hash = f.hash_bytes().ok_or(TrustError::Malformed("file hash"))?;
    let mut out = Vec::with_capacity(64 + f.name.len() + f.mime.len() + body.len());
    out.push(FILE_MARK);
    out.extend_from_slice(if f.thumb.is_some() {
        THUMB_DOMAIN
    } else {
        FILE_DOMAIN
    });
    out.extend_from_slice(&hash);
    out.extend_from_slice(&f.size.to_be_bytes());
    put_str16(&mut out, &f.name)?;
    put_str16(&mut out, &f.mime)?;
    if let Some(thumb) = &f.thumb {
        put_str16(&mut out, thumb)?;
    }
    out.extend_from_slice(body.as_bytes());
    Ok(Sha256::digest(&out).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileRef {
        FileRef {
            hash: "ab".repeat(32),
            name: "cat.png".into(),
            size: 1234,
            mime: "image/png".into(),
            thumb: None,
        }
    }

    /// A thumbnail of the right shape: JPEG's first bytes, in base64.
    fn jpeg_b64() -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3])
    }

    #[test]
    fn a_thumbnail_is_a_small_jpeg_and_is_signed_with_the_rest() {
        let base = content_hash("x", Some(&file())).expect("hash");
        let mut f = file();
        f.thumb = Some(jpeg_b64());
        assert_eq!(f.check(), Ok(()));
        let with = content_hash("x", Some(&f)).expect("hash");
        assert_ne!(with, base);
        let mut other = f.clone();
        other.thumb = Some("/9j/4AAB".into());
        assert_ne!(content_hash("x", Some(&other)), Ok(with));
        for bad in [
            "not base64!",
            "iVBORw0KGgo=",
            &"A".repeat(MAX_THUMB_LEN + 4),
        ] {
            let mut g = file();
            g.thumb = Some(bad.to_owned());
            assert_eq!(g.check(), Err(FileError::Thumb), "{bad:.20}");
        }
        let json = serde_json::to_value(file()).expect("json");
        assert!(json.get("thumb").is_none(), "left out when none: {json}");
    }

    #[test]
    fn a_message_without_a_file_hashes_its_body_as_before() {
        let plain: [u8; 32] = Sha256::digest(b"hello").into();
        assert_eq!(content_hash("hello", None), Ok(plain));
        assert_ne!(content_hash("hello", Some(&file())), Ok(plain));
    }

    #[test]
    fn every_field_of_the_file_is_covered() {
        let base = content_hash("x", Some(&file())).expect("hash");
        let mut f = file();
        f.name = "dog.png".into();
        assert_ne!(content_hash("x", Some(&f)), Ok(base));
        let mut f = file();
        f.size += 1;
        assert_ne!(content_hash("x", Some(&f)), Ok(base));
        let mut f = file();
        f.mime = "image/gif".into();
        assert_ne!(content_hash("x", Some(&f)), Ok(base));
        let mut f = file();
        f.hash = "cd".repeat(32);
        assert_ne!(content_hash("x", Some(&f)), Ok(base));
        assert_ne!(content_hash("y", Some(&file())), Ok(base));
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(file().check(), Ok(()));
        let bad = |edit: fn(&mut FileRef)| {
            let mut f = file();
            edit(&mut f);
            f.check()
        };
        assert_eq!(bad(|f| f.hash = "AB".repeat(32)), Err(FileError::Hash));
        assert_eq!(bad(|f| f.hash = "ab".into()), Err(FileError::Hash));
        assert_eq!(bad(|f| f.name = String::new()), Err(FileError::Name));
        assert_eq!(bad(|f| f.name = "a\nb".into()), Err(FileError::Name));
        assert_eq!(bad(|f| f.name = "x".repeat(256)), Err(FileError::Name));
        assert_eq!(bad(|f| f.mime = "png".into()), Err(FileError::Mime));
        assert_eq!(bad(|f| f.mime = "image/p ng".into()), Err(FileError::Mime));
        assert_eq!(bad(|f| f.size = MAX_FILE_SIZE + 1), Err(FileError::Size));
        // A name is only shown: path-like names are fine on the wire.
        assert_eq!(bad(|f| f.name = "../../x".into()), Ok(()));
        assert_eq!(bad(|f| f.mime = "text/plain; charset=utf-8".into()), Ok(()));
    }

    #[test]
    fn only_raster_images_show_inline() {
        assert_eq!(safe_inline("IMAGE/PNG"), Some("image/png"));
        assert_eq!(safe_inline("image/svg+xml"), None);
        assert_eq!(safe_inline("text/html"), None);
    }
}
