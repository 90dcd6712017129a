//! `segchat up`, the README's "run it" command: one process with a server
//! and a node, whose printed addresses work and whose data directory the
//! verbs find.

mod common;

use common::*;

#[test]
fn up_prints_working_addresses_and_the_verbs_find_its_node() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("segchat");
    let d = dir.to_str().expect("utf-8 path");
    let up = Proc::spawn(&["up", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    let server = up.wait_line("server listening on");
    let api = up.wait_line("node API listening on");
    let web = up.wait_line("web UI:");
    assert!(server.starts_with("127.0.0.1:"), "{server}");
    assert!(web.starts_with(&format!("{api}/?token=")), "{web} vs {api}");

    // The web UI link is served.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, page) = rt.block_on(async {
        let resp = reqwest::get(&web).await.expect("web UI answers");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    });
    assert!(status.is_success(), "{status}");
    assert!(page.contains("segchat"), "{page}");

    // The verbs find the node through the directory given to `up`.
    wait_node(&dir.join("node"), "the node to connect", connected);
    register(&dir, "uma");
    ok(&dir, &["create", "hello", "--allow-visitors"]);
    ok(&dir, &["send", "hello", "first message"]);
    let v = ok_json(&dir, &["history", "hello"]);
    assert_eq!(v["messages"][0]["body"], "first message", "{v}");
    assert_eq!(v["via"], "hosting", "{v}");
}
