//! `segchat send-file` and `segchat get` against the real binary: a file
//! shared by one node is saved by another byte for byte, `--json` prints
//! progress for scripts, a sender's path-like name never escapes the
//! directory, nothing is overwritten, and a fetch killed half way
//! resumes, fetching again at most one piece of what it held; a file
//! sent in a direct message (`segchat dm send-file`) is saved by its
//! recipient without naming a channel.

mod common;

use common::*;

#[test]
fn a_file_sent_from_the_cli_is_saved_by_a_member_byte_for_byte() {
    let (root, sdir, adir, bdir) = dirs();
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "alice's node to connect", connected);
    wait_node(&bdir, "bob's node to connect", connected);
    register(&adir, "alice");
    register(&bdir, "bob");
    ok(&adir, &["create", "club"]);
    ok(&bdir, &["join", "club"]);

    // 3 MB that do not repeat, under a name with spaces.
    let mut bytes = Vec::with_capacity(3_000_000);
    let mut x: u32 = 12345;
    while bytes.len() < 3_000_000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        bytes.push((x >> 24) as u8);
    }
    let src = root.path().join("holiday photos.bin");
    std::fs::write(&src, &bytes).expect("write");
    let said = ok(
        &adir,
        &[
            "send-file",
            "club",
            src.to_str().expect("path"),
            "--caption",
            "from the trip",
        ],
    );
    assert!(
        said.starts_with("shared holiday photos.bin (3.0 MB) in #club"),
        "{said}"
    );
    let hash = said.rsplit("file ").next().expect("hash").trim().to_owned();
    assert_eq!(hash.len(), 64, "{said}");

    // bob's history shows it; he fetches it with progress as JSON lines.
    wait_until("bob to see the file message", || {
        ok(&bdir, &["history", "club"]).contains(&hash)
    });
    let out_dir = root.path().join("downloads");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let target = out_dir.join("got.bin");
    let out = ok(
        &bdir,
        &[
            "--json",
            "get",
            &hash,
            "--channel",
            "club",
            "--out",
            target.to_str().expect("path"),
        ],
    );
    let mut lines = out.lines();
    let first: serde_json::Value =
        serde_json::from_str(lines.next().expect("a progress line")).expect("json line");
    assert_eq!(first["event"], "progress", "{out}");
    assert_eq!(first["size"], 3_000_000);
    assert!(out.contains("\"saved_to\""), "{out}");
    assert_eq!(std::fs::read(&target).expect("saved"), bytes);

    // Saved again into the same place: a new name, the first untouched.
    let (code, why) = refused(
        &bdir,
        &[
            "get",
            &hash,
            "--channel",
            "club",
            "--out",
            target.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 1, "{why}");
    assert!(why.contains("exists"), "{why}");
    assert_eq!(std::fs::read(&target).expect("kept"), bytes);

    // A file nobody shared there is refused by name.
    let (code, why) = refused(&bdir, &["get", &"ab".repeat(32), "--channel", "club"]);
    assert_eq!(code, 1);
    assert!(why.contains("no message in \"club\""), "{why}");
}

/// A payload that does not repeat.
#[test]
fn a_file_sent_in_a_direct_message_from_the_cli_is_saved_by_its_recipient() {
    let (root, sdir, adir, bdir) = dirs();
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    let _b = start_node(&addr, &bdir);
    wait_node(&adir, "alice's node to connect", connected);
    wait_node(&bdir, "bob's node to connect", connected);
    register(&adir, "alice");
    register(&bdir, "bob");
    for dir in [&adir, &bdir] {
        wait_until("the device keys are published", || {
            std::fs::read_to_string(dir.join("logs").join("segchat.log"))
                .unwrap_or_default()
                .contains("KEYS_PUBLISHED")
        });
    }
    let bytes = noise(1_500_000, 77);
    let src = root.path().join("notes.txt");
    std::fs::write(&src, &bytes).expect("write");
    let said = ok(
        &adir,
        &["dm", "send-file", "bob", src.to_str().expect("path")],
    );
    assert!(
        said.starts_with("shared notes.txt (1.5 MB) in a direct message to bob"),
        "{said}"
    );
    let hash = said.rsplit("file ").next().expect("hash").trim().to_owned();
    wait_until("bob to see the file message", || {
        ok(&bdir, &["dm", "history", "alice"]).contains("notes.txt")
    });
    let target = root.path().join("from-alice.txt");
    let out = ok(
        &bdir,
        &["get", &hash, "--out", target.to_str().expect("path")],
    );
    assert!(out.starts_with("saved notes.txt"), "{out}");
    assert_eq!(std::fs::read(&target).expect("saved"), bytes);
}

fn noise(len: usize, mut x: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        bytes.push((x >> 24) as u8);
    }
    bytes
}

#[test]
fn a_fetch_killed_half_way_resumes_and_fetches_again_at_most_one_piece() {
    let (root, sdir, adir, bdir) = dirs();
    let (_server, addr) = start_server(&sdir, "127.0.0.1:0");
    let _a = start_node(&addr, &adir);
    // bob fetches at 8 MiB/s, so there is a half way to be killed at.
    let slow = ["--download-limit-mib", "8"];
    let mut b = start_node_with(&addr, &bdir, &slow);
    wait_node(&adir, "alice's node to connect", connected);
    wait_node(&bdir, "bob's node to connect", connected);
    register(&adir, "alice");
    register(&bdir, "bob");
    ok(&adir, &["create", "club"]);
    ok(&bdir, &["join", "club"]);
    let size = 48 << 20;
    let bytes = noise(size, 99);
    let src = root.path().join("big.bin");
    std::fs::write(&src, &bytes).expect("write");
    let said = ok(&adir, &["send-file", "club", src.to_str().expect("path")]);
    let hash = said.rsplit("file ").next().expect("hash").trim().to_owned();
    wait_until("bob to see the file message", || {
        ok(&bdir, &["history", "club"]).contains(&hash)
    });

    let target = root.path().join("got.bin");
    let t = target.to_str().expect("path");
    let bd = bdir.to_str().expect("path");
    let get = Proc::spawn(&[
        "--data-dir",
        bd,
        "--json",
        "get",
        &hash,
        "--channel",
        "club",
        "--out",
        t,
    ]);
    let held = loop {
        let line = get.next_line().expect("progress before the deadline");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let n = v["bytes"].as_u64().unwrap_or(0);
        assert!(
            n < size as u64,
            "finished before it could be killed: {line}"
        );
        if n >= size as u64 * 2 / 5 {
            break n;
        }
    };
    b.kill_9();
    drop(get);

    // Back up: the node resumes by itself; `get` waits for it and saves.
    let _b = start_node_with(&addr, &bdir, &slow);
    wait_node(&bdir, "bob's node to reconnect", connected);
    let out = ok(&bdir, &["get", &hash, "--channel", "club", "--out", t]);
    assert!(out.starts_with("saved big.bin"), "{out}");
    assert_eq!(std::fs::read(&target).expect("saved"), bytes);
    let log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("log");
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("FILE_FETCHED") && l.contains(&hash))
        .expect("a FILE_FETCHED record");
    let from = line
        .split(" from=")
        .nth(1)
        .expect("from=")
        .split(' ')
        .next()
        .expect("list");
    let again: u64 = from
        .split(',')
        .filter_map(|p| p.split_once(':')?.1.parse::<u64>().ok())
        .sum();
    let piece = 1 << 20;
    eprintln!("killed holding {held} of {size} bytes; fetched {again} after the restart");
    assert!(
        again <= size as u64 - held + piece,
        "held {held} of {size} when killed, then fetched {again} again: {line}"
    );
}
