//! The real binary: a server and two node processes on ephemeral ports,
//! driven by the CLI verbs.

mod common;

use common::*;

#[test]
fn verbs_end_to_end_with_errors_on_stderr() {
    let (_root, sdir, adir, bdir) = dirs();
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "A connected", connected);
    wait_node(&bdir, "B connected", connected);

    register(&adir, "alice");
    // Bob's password comes from the environment instead.
    let out = verb_with(
        &bdir,
        &["register", "bob"],
        None,
        &[("SEGCHAT_PASSWORD", PASSWORD)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(ok(&adir, &["whoami"]).contains("alice"));
    let created = ok(&adir, &["create", "general", "--allow-visitors"]);
    assert!(created.contains("general"), "{created}");
    ok(&adir, &["create", "staff", "--visibility", "members-only"]);
    assert!(ok(&bdir, &["join", "general"]).contains("general"));

    let v = ok_json(&bdir, &["channels"]);
    assert_eq!(v["cached"], false);
    let general = v["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "general"))
        .expect("general listed");
    assert_eq!(general["member_count"], 2);
    assert_eq!(general["my_role"], "member");

    let members = ok(&adir, &["members", "general"]);
    let header = members.lines().next().expect("a header");
    assert!(
        header.starts_with("USER") && header.contains("PRESENCE"),
        "{members}"
    );
    assert!(
        members.contains("alice") && members.contains("bob"),
        "{members}"
    );

    let peers = ok_json(&adir, &["peers", "--channel", "general"]);
    let names: Vec<&str> = peers["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["username"].as_str())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"bob"),
        "{peers}"
    );

    // Refusals: stderr, exit 1.
    let (code, err) = refused(&bdir, &["join", "nope"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    let out = verb_with(
        &bdir,
        &["login", "alice", "--password-stdin"],
        Some("wrong password\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    let out = verb_with(
        &bdir,
        &["register", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));

    // Status round trip.
    assert!(ok(&adir, &["status", "invisible"]).contains("invisible"));
    assert_eq!(ok(&adir, &["status"]).trim(), "invisible");

    // Usage errors: exit 2. No node: exit 3 with a hint.
    let (code, _) = refused(&adir, &["status", "sleepy"]);
    assert_eq!(code, 2);
    let nowhere = adir.join("no-node-here");
    let (code, err) = refused(&nowhere, &["whoami"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("no node found at") && err.contains("segchat up"),
        "{err}"
    );
}

#[test]
fn server_kill_9_and_restart_keeps_data_and_nodes_reconnect() {
    let (_root, sdir, adir, bdir) = dirs();
    let (mut server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "A connected", connected);
    wait_node(&bdir, "B connected", connected);
    register(&adir, "alice");
    register(&bdir, "bob");
    ok(&adir, &["create", "general"]);
    ok(&bdir, &["join", "general"]);

    server.kill_9();
    wait_node(&adir, "A to notice the server is gone", |v| !connected(v));
    wait_node(&bdir, "B to notice the server is gone", |v| !connected(v));
    // Meanwhile: requests fail fast; the channel list comes from the cache.
    let (code, err) = refused(&adir, &["create", "other"]);
    assert_eq!(code, 1);
    assert!(err.contains("unreachable"), "{err}");
    let cached = ok_json(&adir, &["channels"]);
    assert_eq!(cached["cached"], true, "{cached}");

    // Same port, same data directory.
    let (_server, again) = start_server(&sdir, &addr);
    assert_eq!(again, addr);
    wait_node(&adir, "A to reconnect by itself", connected);
    wait_node(&bdir, "B to reconnect by itself", connected);

    // Sessions resumed: no new login needed.
    assert!(ok(&adir, &["whoami"]).starts_with("alice"));
    assert!(ok(&bdir, &["whoami"]).starts_with("bob"));
    // Accounts and channels are intact.
    let v = ok_json(&bdir, &["channels"]);
    assert_eq!(v["cached"], false);
    let general = v["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "general"))
        .expect("general survived");
    assert_eq!(general["owner"], "alice");
    let members = ok(&adir, &["members", "general"]);
    assert!(
        members.contains("alice") && members.contains("bob"),
        "{members}"
    );
    ok(&adir, &["logout"]);
    // The account survived.
    login(&adir, "alice");
}
