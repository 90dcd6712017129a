//! What the server leaves on disk is private to the user running it: the
//! data directory and the log directory 0700, the database (with its
//! `-wal` and `-shm`), the key and every log file 0600.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Client, TestServer};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn data_dir_is_0700_and_database_key_and_logs_are_0600() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("server");
    // A data directory an older version left readable by everyone.
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let server = TestServer::start(&dir).await;
    let mut alice = Client::connect(server.addr).await;
    alice.register("alice").await;

    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("logs")), 0o700, "log directory");
    for file in ["server.db", "server.db-wal", "server.db-shm", "server.key"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&dir.join("logs").join("segchat.log")), 0o600);
    server.stop().await;
}
