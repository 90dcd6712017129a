//! `segchat send-file` and `segchat get` against the real binary: a file
//! shared by one node is saved by another byte for byte, `--json` prints
//! progress for scripts, a sender's path-like name never escapes the
//! directory, and nothing is overwritten.

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
