//! Friends and blocks with the real binary: a server and three node
//! processes, driven by `segchat friend …`.

mod common;

use common::*;
use serde_json::Value;

/// What `user` is to the node at `dir`'s user: (relation, presence).
fn relation_to(dir: &std::path::Path, user: &str) -> Option<(String, String)> {
    let v = ok_json(dir, &["friend", "list"]);
    v["relations"].as_array()?.iter().find_map(|r: &Value| {
        (r["username"] == user).then(|| {
            (
                r["kind"].as_str().unwrap_or("?").to_owned(),
                r["presence"].as_str().unwrap_or("").to_owned(),
            )
        })
    })
}

#[test]
fn friends_ask_accept_see_presence_and_a_block_holds() {
    let (root, sdir, adir, bdir) = dirs();
    let cdir = root.path().join("c");
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    let _c = start_node(&addr, &cdir);
    for (dir, who) in [(&adir, "A"), (&bdir, "B"), (&cdir, "C")] {
        wait_node(dir, &format!("{who} connected"), connected);
    }
    register(&adir, "ann");
    register(&bdir, "bob");
    register(&cdir, "cyd");

    let asked = ok(&adir, &["friend", "add", "bob"]);
    assert!(asked.contains("asked bob"), "{asked}");
    let listed = ok(&bdir, &["friend", "list"]);
    assert!(
        listed.lines().next().is_some_and(|h| h.starts_with("USER")),
        "{listed}"
    );
    assert!(
        listed.contains("ann") && listed.contains("asked you"),
        "{listed}"
    );
    let accepted = ok(&bdir, &["friend", "accept", "ann"]);
    assert!(
        accepted.contains("ann is your friend (online)"),
        "{accepted}"
    );
    assert_eq!(
        relation_to(&adir, "bob"),
        Some(("friend".into(), "online".into()))
    );

    // Friends see presence without sharing a channel.
    ok(&bdir, &["status", "idle"]);
    wait_until("ann sees bob idle", || {
        relation_to(&adir, "bob") == Some(("friend".into(), "idle".into()))
    });

    // cyd blocks ann: ann cannot ask, and is told nothing of why.
    assert!(ok(&cdir, &["friend", "block", "ann"]).contains("blocked ann"));
    let (code, err) = refused(&adir, &["friend", "add", "cyd"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no user named") && !err.contains("block"),
        "{err}"
    );
    assert_eq!(relation_to(&adir, "cyd"), None);
    assert_eq!(
        relation_to(&cdir, "ann"),
        Some(("blocked".into(), String::new()))
    );
    ok(&cdir, &["friend", "unblock", "ann"]);
    assert!(ok(&adir, &["friend", "add", "cyd"]).contains("asked cyd"));
    assert!(ok(&cdir, &["friend", "remove", "ann"]).contains("neither"));
    assert_eq!(relation_to(&adir, "cyd"), None, "declined");

    // What is typed is never a path: `..` is refused before it reaches
    // the API (a URL parser would resolve `friends/../session` to
    // `session`, and `messages/..` to the channel itself).
    for (args, why) in [
        (&["friend", "remove", "../session"][..], "not a username"),
        (&["leave", "../session"][..], "not a channel name"),
        (&["delete", "ops", ".."][..], "names nothing here"),
    ] {
        let (code, err) = refused(&adir, args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert!(ok(&adir, &["whoami"]).contains("ann"), "still signed in");

    // The server's system log has each change, by name.
    let log = std::fs::read_to_string(sdir.join("logs").join("segchat.log")).expect("log");
    for kind in [
        "FRIEND_REQUEST",
        "FRIEND_ACCEPT",
        "FRIEND_BLOCK",
        "FRIEND_UNBLOCK",
    ] {
        assert!(log.contains(kind), "{kind} missing from the server log");
    }

    // Visitors have no friends.
    ok(&cdir, &["logout"]);
    ok(&cdir, &["visit", "Guest"]);
    let (code, err) = refused(&cdir, &["friend", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("visitors"), "{err}");
}
