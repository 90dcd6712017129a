//! The node's files hold the session token, the node key and every
//! message: the data directory is 0700 and every file in it 0600, also for
//! a directory an older node left readable.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{eventually, start_node, tempdir, Api, TestServer};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_0700_and_its_files_0600_even_when_left_open_before() {
    let (_s, sdir) = tempdir();
    let (_n, parent) = tempdir();
    let server = TestServer::start(&sdir).await;
    // Left by an older node: a world-readable directory and database.
    let dir = parent.join("node");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let old = segchat_node::store::Store::open(&dir.join("node.db")).expect("old store");
    drop(old);
    for f in ["node.db", "node.db-wal", "node.db-shm"] {
        let path = dir.join(f);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }

    let node = start_node(server.addr, &dir).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    api.register("alice").await;
    // The ticket arrives after sign-in.
    eventually("the node to keep its ticket", || async {
        dir.join("ticket.json").exists().then_some(())
    })
    .await;
    assert_eq!(mode(&dir), 0o700, "the data directory");
    for f in [
        "node.db",
        "node.db-wal",
        "node.db-shm",
        "api.json",
        "node.key",
        "ticket.json",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_dir_is_made_0700() {
    let (_s, sdir) = tempdir();
    let (_n, parent) = tempdir();
    let server = TestServer::start(&sdir).await;
    let dir = parent.join("a").join("b");
    let node = start_node(server.addr, &dir).await;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("node.db")), 0o600);
    node.shutdown().await;
    server.stop().await;
}
