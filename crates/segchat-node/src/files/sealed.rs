//! Files shared in direct messages: encrypted end to end.
//!
//! The sender's node encrypts the upload with ChaCha20 under a fresh
//! random key before it enters the blob store; from then on the file is
//! an ordinary blob, named by the BLAKE3 hash of its ciphertext and
//! fetched and verified like any other. The key goes only into the
//! Olm-encrypted message (`segchat_proto::dm::DmFile`), so seeders and
//! the server hold bytes they cannot read. The owner's node decrypts as
//! it serves the file to its own user (`GET /files/{hash}/content`).
//!
//! Each key encrypts one file, so the nonce is fixed (zero). ChaCha20 is
//! RustCrypto's `chacha20`, the well-kept implementation of the cipher
//! the node's other dependencies already build.

use std::io::{Read, Write};
use std::path::Path;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use rand::RngCore;
use segchat_proto::dm::DmFile;
use segchat_proto::files::FileRef;
use segchat_proto::tracker::DmBackup;
use segchat_proto::types::NodeAddr;
use segchat_proto::Failure;

use super::{disk_failure, Files, DM_SCOPE};

/// A file key: 32 random bytes.
pub(crate) type FileKey = [u8; 32];

/// Bytes encrypted per read and write.
const BLOCK: usize = 256 << 10;

/// A fresh random key.
pub(crate) fn new_key() -> FileKey {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// The cipher for a file's key, at its start.
pub(crate) fn cipher(key: &FileKey) -> ChaCha20 {
    ChaCha20::new(key.into(), &[0u8; 12].into())
}

/// Encrypts the file at `plain` into `sealed` under `key` (blocking: run
/// it off the runtime).
pub(crate) fn seal_file(plain: &Path, sealed: &Path, key: &FileKey) -> std::io::Result<()> {
    let mut input = std::fs::File::open(plain)?;
    let mut output = std::fs::File::create(sealed)?;
    let mut c = cipher(key);
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        c.apply_keystream(&mut buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.sync_all()
}

impl Files {
    /// Encrypts the file at `path` (an upload, removed afterwards) under a
    /// fresh key and adds the ciphertext to the blob store: what a direct
    /// message shares.
    pub async fn seal(&self, path: &Path, name: &str, mime: &str) -> Result<DmFile, Failure> {
        let sealed = self.upload_path();
        let key = new_key();
        let (from, to) = (path.to_owned(), sealed.clone());
        let done = tokio::task::spawn_blocking(move || seal_file(&from, &to, &key)).await;
        let failed = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(disk_failure(&e)),
            Err(_) => Some(Failure::server_error()),
        };
        if let Some(f) = failed {
            for p in [path, sealed.as_path()] {
                let _ = tokio::fs::remove_file(p).await;
            }
            return Err(f);
        }
        // The thumbnail is of the plain image (it travels inside the
        // encrypted message); both files go once the ciphertext is in.
        let file = self.import_of(&sealed, path, name, mime, DM_SCOPE).await?;
        Ok(DmFile {
            file,
            key: hex::encode(key),
        })
    }

    /// Asks the server to keep a copy of `file` (sealed, just shared in a
    /// direct message with `readers`), in the background.
    pub fn back_up_sealed(&self, file: &FileRef, readers: Vec<String>) {
        let (files, file) = (self.clone(), file.clone());
        let dm = DmBackup {
            size: file.size,
            readers,
        };
        tokio::spawn(
            async move { super::seeders::backup(&files, DM_SCOPE, &file, Some(dm)).await },
        );
    }

    /// The key `file` (as [`Files::status`] gave it) is read with, if it
    /// is a direct message's file (it was first shared or fetched as one).
    pub async fn key_of(&self, file: &super::FileStatus) -> Result<Option<FileKey>, Failure> {
        if file.channel != DM_SCOPE {
            return Ok(None);
        }
        let found = self
            .inner
            .store
            .dm_file(file.hash.clone())
            .await
            .map_err(crate::error::store_failure)?;
        // A file whose message is gone (deleted) is not read any more.
        found.and_then(|f| f.key_bytes()).map(Some).ok_or_else(|| {
            Failure::not_found(format!("no direct message here shares {}", file.hash))
        })
    }

    /// Whether `user` is in a conversation here where a direct message
    /// shares `hash`.
    pub(super) async fn dm_member(&self, hash: &str, user: &str) -> bool {
        self.inner
            .store
            .dm_file_members(hash.to_owned())
            .await
            .is_ok_and(|names| names.contains(&user.to_lowercase()))
    }

    /// The online nodes of the people in the conversations sharing
    /// `hash`: the sender's and every other member's (one of them may
    /// have fetched it), as the server's peer list gives them.
    pub(super) async fn dm_candidates(&self, hash: &str) -> Vec<NodeAddr> {
        let Ok(names) = self.inner.store.dm_file_members(hash.to_owned()).await else {
            return Vec::new();
        };
        let users = names
            .into_iter()
            .take(segchat_proto::tracker::MAX_LIST_USERS)
            .collect();
        let listed = self
            .inner
            .link
            .request(segchat_proto::tracker::Request::GetList {
                channel: None,
                users,
            })
            .await;
        let Ok(segchat_proto::tracker::Reply::Peers { peers }) = listed else {
            return Vec::new();
        };
        peers
            .into_iter()
            .map(|p| NodeAddr {
                node_id: p.node_id,
                addr: p.p2p_addr,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_hides_the_bytes_and_the_same_key_opens_them() {
        let dir = tempfile::tempdir().expect("dir");
        let (plain, sealed) = (dir.path().join("p"), dir.path().join("s"));
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&plain, &bytes).expect("write");
        let key = new_key();
        seal_file(&plain, &sealed, &key).expect("seal");
        let mut out = std::fs::read(&sealed).expect("read");
        assert_eq!(out.len(), bytes.len());
        assert_ne!(out[..1024], bytes[..1024]);
        // Opened in pieces of another size, as a stream is served.
        let mut c = cipher(&key);
        for piece in out.chunks_mut(7_001) {
            c.apply_keystream(piece);
        }
        assert_eq!(out, bytes);
        assert_ne!(new_key(), key, "each file gets its own key");
    }
}
