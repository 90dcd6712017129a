//! The secure links, end to end with real processes:
//!
//! - a node pins the server's key on first contact and refuses a server
//!   whose key changed, saying so (and a key given with `--server-key`
//!   that does not match is refused from the start);
//! - a capture of everything on the loopback wire (but the CLI's local
//!   HTTP API) while two nodes register, sign in, chat and stream holds
//!   no password, message body or ticket — while the server's public key,
//!   served in clear on purpose, shows the capture did see the traffic.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The server key a `segchat server` printed.
fn printed_key(server: &Proc) -> String {
    let key = server.wait_line("server key:");
    assert_eq!(key.len(), 64, "{key}");
    key
}

#[test]
fn a_node_pins_the_server_key_and_refuses_a_server_whose_key_changed() {
    let (_root, sdir, adir, bdir) = dirs();
    let (mut server, addr) = start_server(&sdir, "127.0.0.1:0");
    let key = printed_key(&server);
    let _a = start_node(&addr, &adir);
    wait_node(&adir, "the node to connect", connected);
    let pinned = std::fs::read_to_string(adir.join("server.pin")).expect("server.pin written");
    assert_eq!(
        pinned.trim(),
        key,
        "the node pinned the key the server printed"
    );
    wait_node(&adir, "the pinned key in GET /node", |v| {
        v["server_key"] == key.as_str()
    });

    // The server is reinstalled: same address, a new key.
    server.kill_9();
    std::fs::remove_file(sdir.join("server.key")).expect("remove the server key");
    let (server2, addr2) = start_server(&sdir, &addr);
    assert_eq!(addr2, addr);
    let new_key = printed_key(&server2);
    assert_ne!(new_key, key);
    wait_node(&adir, "the node to refuse the new key", |v| {
        v["server_connected"] == false
            && v["server_refused"]
                .as_str()
                .is_some_and(|r| r.contains(&new_key) && r.contains(&key))
    });
    let logs: String = std::fs::read_dir(adir.join("logs"))
        .expect("logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        logs.contains("SERVER_REFUSED"),
        "the refusal is in the system log"
    );
    assert!(
        logs.contains("delete") && logs.contains("--server-key"),
        "the refusal says what to do"
    );

    // A node told the right key up front connects; one told a wrong key
    // refuses from its first attempt.
    let good = Proc::spawn(&[
        "node",
        "--server",
        &addr,
        "--data-dir",
        bdir.to_str().expect("utf-8"),
        "--p2p",
        "127.0.0.1:0",
        "--server-key",
        &new_key,
    ]);
    good.wait_line("node API listening on");
    wait_node(&bdir, "the node with the right key to connect", connected);
    drop(good);
    let cdir = _root.path().join("c");
    let bad = Proc::spawn(&[
        "node",
        "--server",
        &addr,
        "--data-dir",
        cdir.to_str().expect("utf-8"),
        "--p2p",
        "127.0.0.1:0",
        "--server-key",
        &key,
    ]);
    bad.wait_line("node API listening on");
    wait_node(&cdir, "the node with a wrong key to refuse", |v| {
        v["server_connected"] == false
            && v["server_refused"]
                .as_str()
                .is_some_and(|r| r.contains("given with --server-key"))
    });
}

/// The API port of the node whose `api.json` is in `dir`.
fn api_port(dir: &Path) -> u16 {
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.join("api.json")).expect("api.json"))
            .expect("json");
    let url = file["url"].as_str().expect("url");
    url.rsplit(':').next().expect("port").parse().expect("port")
}

fn tcpdump_usable() -> Result<(), String> {
    let found = Command::new("tcpdump")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        return Err("tcpdump is not installed".into());
    }
    // Capturing needs root.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("capturing packets needs root".into());
    }
    Ok(())
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn nothing_secret_crosses_the_wire_in_clear() {
    if let Err(why) = tcpdump_usable() {
        assert!(
            std::env::var_os("SEGCHAT_FAULTS_STRICT").is_none(),
            "the wire capture cannot run: {why}"
        );
        eprintln!("SKIPPED nothing_secret_crosses_the_wire_in_clear: {why}");
        return;
    }
    let (root, sdir, adir, bdir) = dirs();
    let (server, addr) = start_server(&sdir, "127.0.0.1:0");
    let server_key = printed_key(&server);
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "alice's node to connect", connected);
    wait_node(&bdir, "bob's node to connect", connected);

    // Everything on loopback except the two nodes' local HTTP APIs (the
    // CLI's own channel to its node, on this machine only).
    let pcap = root.path().join("wire.pcap");
    let filter = format!(
        "not (tcp port {} or tcp port {})",
        api_port(&adir),
        api_port(&bdir)
    );
    let mut dump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-s", "0", "-w"])
        .arg(&pcap)
        .arg(&filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_secs(1));

    // The positive control: the server's key is public and served in
    // clear; asked for during the capture, it must show up in it.
    {
        use std::io::{Read, Write};
        let mut http = std::net::TcpStream::connect(&addr).expect("the server's TCP port");
        http.write_all(b"GET /segchat/server-key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("ask for the key");
        let mut answer = String::new();
        let _ = http.read_to_string(&mut answer);
        assert!(answer.contains(&server_key), "{answer}");
    }

    let secret_password = "Wire-Canary-Password-4711";
    // `register` or `login` with the password on stdin.
    let with_password = |dir: &Path, verb: &str, user: &str| {
        let out = verb_with(
            dir,
            &[verb, user, "--password-stdin"],
            Some(&format!("{secret_password}\n")),
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    with_password(&adir, "register", "alice");
    with_password(&bdir, "register", "bob");
    // Sign in again, password on the wire a second time.
    ok(&bdir, &["logout"]);
    with_password(&bdir, "login", "bob");
    ok(&adir, &["create", "wire"]);
    ok(&bdir, &["join", "wire"]);
    let bodies = ["Body-Canary-from-bob-0815", "Body-Canary-from-alice-2342"];
    wait_until("bob to reach alice's node P2P", || {
        ok_json(&bdir, &["unread"])["links"]["wire"] == "host"
    });
    ok(&bdir, &["send", "wire", bodies[0]]);
    ok(&adir, &["send", "wire", bodies[1]]);
    for dir in [&adir, &bdir] {
        wait_until("both messages everywhere", || {
            let h = ok(dir, &["history", "wire"]);
            bodies.iter().all(|b| h.contains(b))
        });
    }
    // Direct messages, end-to-end encrypted: one each way (P2P while
    // both are online; receipts through the server).
    let dm_bodies = ["Dm-Canary-from-alice-9911", "Dm-Canary-from-bob-7733"];
    for dir in [&adir, &bdir] {
        wait_until("the device keys are published", || {
            std::fs::read_to_string(dir.join("logs").join("segchat.log"))
                .unwrap_or_default()
                .contains("KEYS_PUBLISHED")
        });
    }
    ok(&adir, &["dm", "bob", dm_bodies[0]]);
    wait_until("bob reads alice's DM", || {
        ok(&bdir, &["dm", "history", "alice"]).contains(dm_bodies[0])
    });
    ok(&bdir, &["dm", "alice", dm_bodies[1]]);
    wait_until("alice reads bob's DM", || {
        ok(&adir, &["dm", "history", "bob"]).contains(dm_bodies[1])
    });
    // A livestream: test pattern frames to bob for a few seconds.
    ok(&adir, &["stream", "start", "wire", "--test-pattern"]);
    let watcher = Proc::spawn(&[
        "stream",
        "watch",
        "wire",
        "--stats",
        "--data-dir",
        bdir.to_str().expect("utf-8"),
    ]);
    std::thread::sleep(Duration::from_secs(4));
    drop(watcher);
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(dump.id().to_string())
        .status();
    let _ = dump.wait();

    let wire = std::fs::read(&pcap).expect("the capture");
    assert!(
        wire.len() > 100_000,
        "the capture holds the chat and the stream ({} bytes)",
        wire.len()
    );
    assert!(
        contains(&wire, &server_key),
        "positive control: the key fetched in clear during the capture is in it"
    );
    assert!(
        !contains(&wire, secret_password),
        "a password crossed the wire in clear"
    );
    for b in bodies.iter().chain(&dm_bodies) {
        assert!(
            !contains(&wire, b),
            "the message body {b:?} crossed the wire in clear"
        );
    }
    let ticket: Value =
        serde_json::from_slice(&std::fs::read(bdir.join("ticket.json")).expect("bob's ticket"))
            .expect("ticket json");
    for secret in [
        ticket["signature"].as_str().expect("signature"),
        ticket["ticket"]["session_id"].as_str().expect("session id"),
    ] {
        assert!(
            !contains(&wire, secret),
            "bob's ticket crossed the wire in clear"
        );
    }
}
