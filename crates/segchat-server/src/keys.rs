//! The server's ed25519 identity, which signs tickets. Kept in
//! `DATA_DIR/server.key` (32 secret bytes, mode 0600), made on first start.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

/// Loads the key, or makes and stores a new one.
pub(crate) fn load_or_create(dir: &Path) -> std::io::Result<SigningKey> {
    let path = dir.join("server.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte key", path.display()),
                )
            })?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let tmp = dir.join("server.key.tmp");
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The server's public key (hex) — its fingerprint, which nodes pin —
/// making the key if the data directory has none yet.
pub fn fingerprint(dir: &Path) -> std::io::Result<String> {
    Ok(hex::encode(load_or_create(dir)?.verifying_key().as_bytes()))
}
