//! The server's ed25519 identity, which signs tickets. Kept in a file of
//! 32 secret bytes, mode 0600: `DATA_DIR/server.key` unless `--key-file`
//! names another (instances of one server share one key), made on first
//! start.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

/// Loads the key at `path`, or makes and stores a new one there. Two
/// processes making it at once (instances started together on a shared
/// file) end up with the same key: the file is created only if absent,
/// and whoever loses the race reads the winner's.
pub(crate) fn load_or_create(path: &Path) -> std::io::Result<SigningKey> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(e),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> std::io::Result<SigningKey> {
    let seed: [u8; 32] = bytes.try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a 32-byte key", path.display()),
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn create(path: &Path) -> std::io::Result<SigningKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(key.as_bytes())?;
    f.sync_all()?;
    // A link, not a rename: it fails if the key appeared meanwhile.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            parse(path, &std::fs::read(path)?)
        }
        Err(e) => Err(e),
    }
}

/// The server's public key (hex) — its fingerprint, which nodes pin —
/// making the key at `path` if there is none yet.
pub fn fingerprint(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(
        load_or_create(path)?.verifying_key().as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_read_back_after() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys").join("server.key");
        let made = load_or_create(&path).expect("made");
        assert_eq!(
            load_or_create(&path).expect("read").to_bytes(),
            made.to_bytes()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn instances_making_the_key_at_once_agree_on_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.key");
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).expect("key").to_bytes()))
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("thread"))
                .collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for all");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.key");
        std::fs::write(&path, b"short").expect("write");
        let e = load_or_create(&path).expect_err("not a key");
        assert!(e.to_string().contains("not a 32-byte key"), "{e}");
    }
}
