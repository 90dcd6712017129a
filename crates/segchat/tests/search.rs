//! `segchat search` against the real binary (`segchat up`): a word finds
//! the longer words it starts, results come newest first a page at a time,
//! and the printed "more:" command shows the next page until every match
//! was shown once.

mod common;

use common::*;

/// The messages a page of `segchat search` printed, and its last line.
fn page(out: &str) -> (Vec<String>, String) {
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let last = lines.pop().expect("a summary line");
    let bodies = lines
        .iter()
        .map(|l| {
            let (_, body) = l
                .split_once("> ")
                .expect("a message line: TIME #CHANNEL <AUTHOR> BODY");
            assert!(l.contains(" #notes <una> "), "{l}");
            body.to_owned()
        })
        .collect();
    (bodies, last)
}

#[test]
fn search_pages_newest_first_and_a_word_finds_what_it_starts() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("segchat");
    let d = dir.to_str().expect("utf-8 path");
    let up = Proc::spawn(&["up", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    up.wait_line("node API listening on");
    wait_node(&dir.join("node"), "the node to connect", connected);
    register(&dir, "una");
    ok(&dir, &["create", "notes"]);
    const N: usize = 45;
    for i in 0..N {
        ok(&dir, &["send", "notes", &format!("lorem ipsum {i}")]);
    }
    ok(&dir, &["send", "notes", "something else"]);

    // "lore" finds "lorem": the first page of 20, newest first, and the
    // command that shows the next one.
    let mut args: Vec<String> = ["search", "lore", "--limit", "20"]
        .map(String::from)
        .to_vec();
    let mut seen = Vec::new();
    let mut lasts = Vec::new();
    loop {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (bodies, last) = page(&ok(&dir, &argv));
        seen.extend(bodies);
        lasts.push(last.clone());
        let Some((_, again)) = last.split_once("; more: segchat ") else {
            break;
        };
        assert!(lasts.len() < 5, "the pages never end: {lasts:?}");
        args = again.split(' ').map(String::from).collect();
    }
    let want: Vec<String> = (0..N).rev().map(|i| format!("lorem ipsum {i}")).collect();
    assert_eq!(seen, want, "every match once, newest first");
    assert_eq!(lasts.len(), 3, "{lasts:?}");
    assert!(
        lasts[0].starts_with("showing 20 of 45; more: segchat search lore --limit 20 --cursor "),
        "{lasts:?}"
    );
    assert!(
        lasts[1].starts_with("showing 20 of 45; more: "),
        "{lasts:?}"
    );
    assert_eq!(lasts[2], "showing the last 5 of 45");

    // Filters, and --json prints the API's answer.
    let v = ok_json(
        &dir,
        &[
            "search",
            "ipsum",
            "4",
            "--channel",
            "notes",
            "--author",
            "una",
        ],
    );
    let bodies: Vec<&str> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        [
            "lorem ipsum 44",
            "lorem ipsum 43",
            "lorem ipsum 42",
            "lorem ipsum 41",
            "lorem ipsum 40",
            "lorem ipsum 4"
        ]
    );
    assert_eq!(v["total"], 6, "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    assert_eq!(
        ok(&dir, &["search", "lorem", "--author", "nobody"]).trim(),
        "no matches"
    );
    assert_eq!(
        ok(&dir, &["search", "lorem", "--before", "2001-01-01"]).trim(),
        "no matches"
    );
    assert_eq!(
        ok(&dir, &["search", "else"]).lines().last(),
        Some("1 match")
    );

    // Bad parameters are refused with the reason.
    let (code, err) = refused(&dir, &["search", "lorem", "--limit", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("limit must be from 1 to 200"), "{err}");
    let (_, err) = refused(&dir, &["search", "lorem", "--after", "yesterday"]);
    assert!(err.contains("after must be an RFC 3339 time"), "{err}");
    let (_, err) = refused(&dir, &["search", "lorem", "--cursor", "nope"]);
    assert!(err.contains("cursor"), "{err}");
}
