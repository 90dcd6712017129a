//! Direct messages with the real binary: a server and two node processes
//! driven by `segchat dm …`, with kill -9 of the recipient, the server and
//! the sender mid-conversation. Nothing acknowledged is lost or doubled,
//! and no plaintext reaches the server's files.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Waits until the node at `dir` has published its device keys.
fn keys_published(dir: &Path) {
    wait_until("the device keys are published", || {
        std::fs::read_to_string(dir.join("logs").join("segchat.log"))
            .unwrap_or_default()
            .contains("KEYS_PUBLISHED")
    });
}

/// (text, state) of each message in the conversation with `with`.
fn dm_history(dir: &Path, with: &str) -> Vec<(String, String)> {
    let v = ok_json(dir, &["dm", "history", with, "--limit", "200"]);
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m: &Value| {
            (
                m["text"].as_str().unwrap_or("?").to_owned(),
                m["state"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn texts(dir: &Path, with: &str) -> Vec<String> {
    dm_history(dir, with).into_iter().map(|(t, _)| t).collect()
}

fn server_files(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(server_files(&path));
        } else if let Ok(b) = std::fs::read(&path) {
            out.extend(b);
        }
    }
    out
}

#[test]
fn dms_survive_kill_9_of_either_side_and_of_the_server() {
    let (_root, sdir, adir, bdir) = dirs();
    let (mut server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let mut b = start_node(&addr, &bdir);
    wait_node(&adir, "A connected", connected);
    wait_node(&bdir, "B connected", connected);
    register(&adir, "ann");
    register(&bdir, "bob");
    keys_published(&adir);
    keys_published(&bdir);

    let said = ok(&adir, &["dm", "bob", "hello", "bob,", "pineapple", "here"]);
    // Straight to bob's node, whose receipt may be back before the answer.
    assert!(
        said.contains("sent to bob") || said.contains("delivered to bob"),
        "{said}"
    );
    wait_until("bob reads it", || {
        texts(&bdir, "ann") == ["hello bob, pineapple here"]
    });
    wait_until("ann sees it delivered", || {
        dm_history(&adir, "bob")[0].1 == "delivered"
    });
    let shown = ok(&adir, &["dm", "history", "bob"]);
    assert!(
        shown.contains("<ann> hello bob, pineapple here  [delivered]"),
        "{shown}"
    );
    let listed = ok(&bdir, &["dm", "list"]);
    assert!(
        listed.starts_with("WITH") && listed.contains("ann"),
        "{listed}"
    );

    // The recipient dies: what the server took waits for it.
    b.kill_9();
    for i in 1..=5 {
        let said = ok(&adir, &["dm", "bob", &format!("while down {i}")]);
        assert!(said.contains("sent to bob"), "{said}");
    }
    let _b = start_node(&addr, &bdir);
    wait_until("bob gets all five, once, in order", || {
        texts(&bdir, "ann").len() >= 6
    });
    let expected: Vec<String> = std::iter::once("hello bob, pineapple here".to_owned())
        .chain((1..=5).map(|i| format!("while down {i}")))
        .collect();
    assert_eq!(texts(&bdir, "ann"), expected);

    // The server dies: ann's message waits in her outbox and goes when it
    // is back; bob's reply too.
    server.kill_9();
    wait_node(&adir, "A notices", |v| v["server_connected"] == false);
    // (Typed in another case: still the one conversation with bob.)
    let said = ok(&adir, &["dm", "BOB", "written while the server was down"]);
    assert!(said.contains("queued"), "{said}");
    let (_server, _) = start_server(&sdir, &addr);
    wait_until("the queued message reaches bob", || {
        texts(&bdir, "ann").last().map(String::as_str) == Some("written while the server was down")
    });
    ok(&bdir, &["dm", "ann", "got them all, mango"]);
    wait_until("ann gets the reply", || {
        texts(&adir, "bob").last().map(String::as_str) == Some("got them all, mango")
    });

    // The sender dies: what it sent and received is all still there.
    drop(_a);
    let _a = start_node(&addr, &adir);
    wait_node(&adir, "A back", connected);
    let after = texts(&adir, "bob");
    assert_eq!(after.len(), 8, "{after:?}");
    assert_eq!(after.iter().filter(|t| t.contains("mango")).count(), 1);

    // Reply, edit, react and delete from the command line, seen on the
    // other side.
    let v = ok_json(&adir, &["dm", "history", "bob", "--limit", "200"]);
    let first = v["messages"][0]["id"].as_str().expect("id").to_owned();
    let replied = ok(&bdir, &["dm", "reply", "ann", &first, "yes", "please"]);
    assert!(replied.contains("↳ <ann> hello bob"), "{replied}");
    let edited = ok(
        &adir,
        &["dm", "edit", "bob", &first, "hello bob, kiwi here"],
    );
    assert!(edited.contains("kiwi here (edited)"), "{edited}");
    let reacted = ok(&bdir, &["dm", "react", "ann", &first, "👍"]);
    assert!(reacted.contains("[👍 1]"), "{reacted}");
    wait_until("ann sees the edit's reaction", || {
        ok(&adir, &["dm", "history", "bob"]).contains("kiwi here (edited)  [👍 1]")
    });
    let deleted = ok(&adir, &["dm", "delete", "bob", &first]);
    assert!(deleted.contains("(message deleted)"), "{deleted}");
    wait_until("bob sees it deleted", || {
        let shown = ok(&bdir, &["dm", "history", "ann", "--ids"]);
        shown.contains(&format!("{first} ")) && shown.contains("<ann> (message deleted)")
    });

    let files = server_files(&sdir);
    for secret in ["pineapple", "mango", "while down", "kiwi"] {
        assert!(
            !files.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the server's files hold {secret:?}"
        );
    }
}
