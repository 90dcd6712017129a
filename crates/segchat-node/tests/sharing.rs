//! Files shared in a channel, with a real server and real nodes: the
//! host keeps a copy, members fetch it verified from every node that has
//! it, a stopped fetch resumes from what it held, visitors cannot share,
//! and a path-like name is only a name.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{content, eventually, noise, start_node, tempdir, Api, TestServer};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn share(api: &Api, channel: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    share_in(api, channel, name, "have a look", bytes).await
}

/// Shares `bytes` as `name` in `club` with `caption`.
async fn share_as(api: &Api, name: &str, caption: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    share_in(api, "club", name, caption, bytes).await
}

async fn share_in(
    api: &Api,
    channel: &str,
    name: &str,
    caption: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = api
        .http
        .post(format!("{}/channels/{channel}/files", api.base))
        .query(&[("name", name), ("caption", caption)])
        .bearer_auth(&api.token)
        .body(bytes)
        .send()
        .await
        .expect("API reachable");
    let status = resp.status();
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, v)
}

/// A node in `dir` signed up as `name`, its config changed by `tweak`.
async fn person(
    server: &TestServer,
    dir: &Path,
    name: &str,
    tweak: impl FnOnce(&mut segchat_node::NodeConfig),
) -> segchat_node::NodeHandle {
    let node = common::start_node_with(server.addr, dir, tweak).await;
    let api = Api::of(&node);
    api.wait_connected().await;
    api.register(name).await;
    node
}

/// alice hosting `club` (her config changed by `tweak`) and bob, a member.
async fn alice_hosts_bob_joins(
    server: &TestServer,
    adir: &Path,
    bdir: &Path,
    tweak: impl FnOnce(&mut segchat_node::NodeConfig),
) -> (segchat_node::NodeHandle, segchat_node::NodeHandle) {
    let anode = person(server, adir, "alice", tweak).await;
    Api::of(&anode).create_channel("club", "public").await;
    let bnode = person(server, bdir, "bob", |_| {}).await;
    Api::of(&bnode).join("club").await;
    (anode, bnode)
}

/// Waits until `api`'s node has the message that shares `hash` in `club`.
async fn has_message(api: &Api, hash: &str, what: &str) {
    eventually(what, || async {
        let (_, v) = api.get("/channels/club/messages").await;
        v["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["file"]["hash"] == hash))
            .then_some(())
    })
    .await;
}

/// Asks `api`'s node to fetch file `hash` shared in `club`, and waits
/// until it holds it whole.
async fn fetch_whole(api: &Api, hash: &str, who: &str) -> Value {
    let (s, v) = api
        .post(&format!("/files/{hash}/fetch"), json!({"channel": "club"}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    wait_complete(api, hash, who).await
}

/// The hash of the file a share answer's message shares.
fn hash_of(sent: &Value) -> String {
    sent["message"]["file"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned()
}

async fn wait_complete(api: &Api, hash: &str, who: &str) -> Value {
    eventually(&format!("{who} to hold the file"), || async {
        let (s, v) = api.get(&format!("/files/{hash}")).await;
        (s == StatusCode::OK && v["state"] == "complete").then_some(v)
    })
    .await
}

/// The `from=` of the node's last `FILE_FETCHED` record for `hash`:
/// bytes by seeder.
fn fetched_from(dir: &Path, hash: &str) -> Option<Vec<(String, u64)>> {
    let log = std::fs::read_to_string(dir.join("logs").join("segchat.log")).ok()?;
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("FILE_FETCHED") && l.contains(hash))?;
    let from = line.split(" from=").nth(1)?.split(' ').next()?;
    Some(
        from.split(',')
            .filter_map(|p| {
                let (k, n) = p.split_once(':')?;
                Some((k.to_owned(), n.parse().ok()?))
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_file_reaches_members_verified_from_every_seeder() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let mut dirs = Vec::new();
    let mut apis = Vec::new();
    let mut nodes = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let (guard, dir) = tempdir();
        let node = person(&server, &dir, name, |_| {}).await;
        dirs.push((guard, dir));
        apis.push(Api::of(&node));
        nodes.push(node);
    }
    let [alice, bob, carol, dave] = [&apis[0], &apis[1], &apis[2], &apis[3]];
    alice.create_channel("club", "public").await;
    for m in [bob, carol, dave] {
        m.join("club").await;
    }

    // bob shares 50 MB under a name that looks like a path.
    let bytes = noise(50_000_000, 7);
    let expect = blake3::hash(&bytes).to_hex().to_string();
    let (status, sent) = share(bob, "club", "../../x.bin", bytes.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let file = &sent["message"]["file"];
    assert_eq!(file["hash"], expect.as_str(), "named by its BLAKE3 hash");
    assert_eq!(file["name"], "x.bin", "a name, not a path");
    assert_eq!(file["size"], 50_000_000);
    assert_eq!(sent["message"]["body"], "have a look");
    let hash = expect.clone();

    // The host keeps a copy of what is shared in its channel.
    wait_complete(alice, &hash, "the host").await;

    // carol sees the message and fetches the file.
    has_message(carol, &hash, "carol to have bob's message").await;
    fetch_whole(carol, &hash, "carol").await;
    let (s, headers, got) = content(carol, &hash).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        blake3::hash(&got).to_hex().to_string(),
        expect,
        "verified bytes"
    );
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(headers["content-disposition"]
        .to_str()
        .is_ok_and(|d| d.starts_with("attachment") && d.contains("x%2Ebin")));
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // dave fetches from the host, bob and carol at once.
    has_message(dave, &hash, "dave to have bob's message").await;
    fetch_whole(dave, &hash, "dave").await;
    let (_, _, got) = content(dave, &hash).await;
    assert_eq!(blake3::hash(&got).to_hex().to_string(), expect);
    let from = eventually("dave's log to name the seeders", || async {
        fetched_from(&dirs[3].1, &hash)
    })
    .await;
    assert_eq!(from.len(), 3, "every seeder sent pieces: {from:?}");
    assert!(from.iter().all(|(_, n)| *n > 0), "{from:?}");

    // bob, who shared it, goes offline, and carol's copy goes bad on her
    // disk: erin catches carol's bytes within the piece that carried
    // them, drops her, and completes from the host's copy.
    let bob_node = nodes.remove(1);
    bob_node.shutdown().await;
    let data = dirs[2]
        .1
        .join("blobs")
        .join("data")
        .join(format!("{hash}.data"));
    let mut bad = std::fs::read(&data).expect("carol's copy");
    for i in (0..bad.len()).step_by(100_000) {
        bad[i] ^= 0xff;
    }
    std::fs::write(&data, &bad).expect("corrupt carol's copy");
    let (_e, edir) = tempdir();
    let enode = start_node(server.addr, &edir).await;
    let erin = Api::of(&enode);
    erin.wait_connected().await;
    erin.register("erin").await;
    erin.join("club").await;
    has_message(&erin, &hash, "erin to have bob's message").await;
    fetch_whole(&erin, &hash, "erin").await;
    let (_, _, got) = content(&erin, &hash).await;
    assert_eq!(
        blake3::hash(&got).to_hex().to_string(),
        expect,
        "only verified bytes"
    );
    let log = std::fs::read_to_string(edir.join("logs").join("segchat.log")).expect("log");
    let carol_key = carol.node_addr().await.node_id;
    assert!(
        log.lines()
            .any(|l| l.contains("FILE_SEEDER_DROPPED") && l.contains(&carol_key[..12])),
        "erin dropped carol: {log}"
    );
    let host_key = alice.node_addr().await.node_id;
    let from = fetched_from(&edir, &hash).expect("erin's FILE_FETCHED");
    assert!(
        from.iter()
            .any(|(k, n)| host_key.starts_with(k.as_str()) && *n > 0),
        "with the sender offline the host's copy served it: {from:?}"
    );

    // A file nobody shared in the channel is not fetched for the asking.
    let (s, _) = dave
        .post(
            &format!("/files/{}/fetch", "ab".repeat(32)),
            json!({"channel": "club"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A visitor may read the channel but never share a file in it.
    let (_v, vdir) = tempdir();
    let vnode = start_node(server.addr, &vdir).await;
    let visitor = Api::of(&vnode);
    visitor.wait_connected().await;
    let (s, v) = visitor
        .post("/session/visit", json!({"display_name": "Vera"}))
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = share(&visitor, "club", "y.bin", vec![1, 2, 3]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // The data directory holds no file named after the sender's path.
    assert!(!dirs[2].1.parent().expect("parent").join("x.bin").exists());
    assert!(!dirs[2].1.join("x.bin").exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_stopped_part_way_resumes_from_what_it_held() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (anode, mut bnode) = alice_hosts_bob_joins(&server, &adir, &bdir, |_| {}).await;
    let (alice, bob) = (Api::of(&anode), Api::of(&bnode));

    let size = 40_000_000u64;
    let bytes = noise(size as usize, 11);
    let (status, sent) = share(&alice, "club", "big.bin", bytes.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let hash = hash_of(&sent);
    has_message(&bob, &hash, "bob to have the message").await;
    let (s, v) = bob
        .post(&format!("/files/{hash}/fetch"), json!({"channel": "club"}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Stopped once a quarter is here.
    let held = eventually("bob to hold a quarter", || async {
        let (_, v) = bob.get(&format!("/files/{hash}")).await;
        let n = v["bytes"].as_u64().unwrap_or(0);
        (n >= size / 4 && v["state"] != "complete").then_some(n)
    })
    .await;
    bnode.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Back: the fetch resumes by itself and fetches only what is missing.
    bnode = start_node(server.addr, &bdir).await;
    let bob = Api::of(&bnode);
    wait_complete(&bob, &hash, "bob after the restart").await;
    let (_, _, got) = content(&bob, &hash).await;
    assert_eq!(got, bytes);
    let from = eventually("bob's log to say what the resumed fetch took", || async {
        fetched_from(&bdir, &hash)
    })
    .await;
    let refetched: u64 = from.iter().map(|(_, n)| n).sum();
    let piece = 1 << 20;
    assert!(
        refetched <= size - held + piece,
        "held {held} of {size} before the stop, then fetched {refetched}"
    );
    bnode.shutdown().await;
    server.stop().await;
}

/// bob's message sharing `hash` in `club`, as bob's node shows it.
async fn own_message(api: &Api, hash: &str) -> Option<Value> {
    let (_, v) = api.get("/channels/club/messages").await;
    v["messages"]
        .as_array()?
        .iter()
        .find(|m| m["file"]["hash"] == hash)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_keeps_copies_for_others_within_its_limits() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    // alice hosts: files up to 3 MB in her channels, 2.5 MB kept for others.
    let (anode, bnode) = alice_hosts_bob_joins(&server, &adir, &bdir, |c| {
        c.max_file_size = 3_000_000;
        c.keep_for_others = 2_500_000;
    })
    .await;
    let (alice, bob) = (Api::of(&anode), Api::of(&bnode));

    // 2 MB fits both limits: the host keeps a copy.
    let (s, v) = share_as(&bob, "two.bin", "", noise(2_000_000, 21)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let two = hash_of(&v);
    let two_id = v["message"]["id"].as_str().expect("id").to_owned();
    wait_complete(&alice, &two, "the host").await;
    // A reply to a message that is only a file quotes the file's name.
    let (s, v) = alice
        .post(
            "/channels/club/messages",
            json!({"body": "got it", "reply_to": two_id}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    assert_eq!(v["message"]["quote"]["file"], "two.bin", "{v}");

    // 1 MB more would pass the 2.5 MB kept for others: no copy, and the
    // host's log says why.
    let (s, v) = share(&bob, "club", "one.bin", noise(1_000_000, 22)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let one = hash_of(&v);
    eventually("the host to say it keeps no copy", || async {
        let log = std::fs::read_to_string(adir.join("logs").join("segchat.log")).ok()?;
        log.lines()
            .any(|l| l.contains("FILE_NOT_KEPT") && l.contains(&one) && l.contains("kept=2000000"))
            .then_some(())
    })
    .await;
    let (s, v) = alice.get(&format!("/files/{one}")).await;
    assert!(
        s == StatusCode::NOT_FOUND || v["state"] != "complete",
        "no copy kept: {s} {v}"
    );
    // Asked for by alice herself, it is hers: fetched, whatever the quota.
    let (s, v) = alice
        .post(&format!("/files/{one}/fetch"), json!({"channel": "club"}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    wait_complete(&alice, &one, "alice, who asked").await;

    // 4 MB is over the host's file limit: bob's node took it (its own
    // limit is larger) but the host refuses the message, and bob sees why.
    let (s, v) = share(&bob, "club", "four.bin", noise(4_000_000, 23)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let four = hash_of(&v);
    let refused = eventually("bob's message to be refused", || async {
        own_message(&bob, &four)
            .await
            .filter(|m| m["state"] == "refused")
    })
    .await;
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("at most 3000000 bytes"), "{refused}");
    let (_, v) = alice.get("/channels/club/messages").await;
    assert!(
        !v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["file"]["hash"] == four.as_str()),
        "the host stored no message over its limit: {v}"
    );
    bnode.shutdown().await;
    anode.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_cut_off_resumes_from_what_the_node_holds_even_after_a_restart() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (anode, mut bnode) = alice_hosts_bob_joins(&server, &adir, &bdir, |_| {}).await;
    let (alice, bob) = (Api::of(&anode), Api::of(&bnode));

    let bytes = noise(6_000_000, 31);
    let (s, v) = bob.post("/uploads", json!({"size": bytes.len()})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["offset"], 0);
    let id = v["id"].as_str().expect("id").to_owned();
    let part = |offset: usize, body: reqwest::Body| {
        bob.http
            .put(format!("{}/uploads/{id}", bob.base))
            .query(&[("offset", offset)])
            .bearer_auth(&bob.token)
            .body(body)
            .send()
    };

    // The first 2 MB arrive, then the connection breaks.
    let first = bytes[..2_000_000].to_vec();
    let cut = futures::stream::iter([Ok::<_, std::io::Error>(first)]).chain(futures::stream::once(
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err(std::io::Error::other("cable pulled"))
        },
    ));
    assert!(part(0, reqwest::Body::wrap_stream(cut)).await.is_err());
    eventually("the node to hold what arrived", || async {
        let (_, v) = bob.get(&format!("/uploads/{id}")).await;
        (v["offset"] == 2_000_000).then_some(())
    })
    .await;
    // Sending from the start again is a conflict, not a duplicate.
    let resp = part(0, bytes[..1000].to_vec().into())
        .await
        .expect("API reachable");
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    // The node restarts; the upload is still there at the same offset.
    bnode.shutdown().await;
    bnode = start_node(server.addr, &bdir).await;
    let bob = Api::of(&bnode);
    bob.wait_connected().await;
    let (s, v) = bob.get(&format!("/uploads/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["offset"], 2_000_000);
    let resp = bob
        .http
        .put(format!("{}/uploads/{id}", bob.base))
        .query(&[("offset", 2_000_000)])
        .bearer_auth(&bob.token)
        .body(bytes[2_000_000..].to_vec())
        .send()
        .await
        .expect("API reachable");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["offset"], 6_000_000);

    // Shared whole, named by the hash of every byte.
    let resp = bob
        .http
        .post(format!("{}/channels/club/files", bob.base))
        .query(&[("name", "big.bin"), ("upload", id.as_str())])
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("API reachable");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.expect("json");
    let hash = blake3::hash(&bytes).to_hex().to_string();
    assert_eq!(v["message"]["file"]["hash"], hash.as_str(), "{v}");
    let (s, _) = bob.get(&format!("/uploads/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "an upload is shared once");
    wait_complete(&alice, &hash, "the host").await;
    let (_, _, got) = content(&alice, &hash).await;
    assert!(got == bytes, "the host's copy is the file");
    bnode.shutdown().await;
    anode.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_node_that_holds_it_offline_a_file_comes_from_the_servers_copy() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let (guard, dir) = tempdir();
        nodes.push(person(&server, &dir, name, |_| {}).await);
        dirs.push((guard, dir));
    }
    let apis: Vec<Api> = nodes.iter().map(Api::of).collect();
    let [alice, bob, carol] = [&apis[0], &apis[1], &apis[2]];
    alice.create_channel("club", "public").await;
    bob.join("club").await;
    carol.join("club").await;

    // bob shares; the host keeps a copy, and so does the server.
    let bytes = noise(3_000_000, 41);
    let (s, v) = share(bob, "club", "kept.bin", bytes.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let hash = hash_of(&v);
    wait_complete(alice, &hash, "the host").await;
    eventually("the server to keep a copy", || async {
        let log = std::fs::read_to_string(sdir.join("logs").join("segchat.log")).ok()?;
        log.lines()
            .any(|l| l.contains("FILE_BACKED_UP") && l.contains(&hash))
            .then_some(())
    })
    .await;
    has_message(carol, &hash, "carol to have the message").await;

    // Sender and host go offline: carol still gets the file, verified,
    // from the server.
    let carol_node = nodes.pop().expect("carol");
    for node in nodes {
        node.shutdown().await;
    }
    let carol = Api::of(&carol_node);
    fetch_whole(&carol, &hash, "carol").await;
    let (_, _, got) = content(&carol, &hash).await;
    assert!(got == bytes, "the server's copy is the file");
    let log = std::fs::read_to_string(sdir.join("logs").join("segchat.log")).expect("log");
    assert!(
        log.lines()
            .any(|l| l.contains("FILE_SOURCE") && l.contains(&hash)),
        "the server granted its copy"
    );
    carol_node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_fetch_stops_and_goes_on_from_what_it_held_when_asked_again() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let anode = person(&server, &adir, "alice", |_| {}).await;
    let alice = Api::of(&anode);
    alice.create_channel("club", "public").await;
    // bob fetches at 4 MiB/s, so the fetch is still running when he stops
    // it; his blob store is swept and collected every 200 ms, which must
    // leave what a stopped fetch holds.
    let bnode = person(&server, &bdir, "bob", |c| {
        c.download_limit = Some(4 << 20);
        c.files_unused_for = Duration::ZERO;
        c.files_sweep_every = Duration::from_millis(200);
    })
    .await;
    let bob = Api::of(&bnode);
    bob.join("club").await;

    let size = 12_000_000u64;
    let bytes = noise(size as usize, 51);
    let (s, v) = share(&alice, "club", "slow.bin", bytes.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let hash = hash_of(&v);
    has_message(&bob, &hash, "bob to have the message").await;
    // Asked for many times at once (the web UI and the node itself may
    // both ask): one fetch, and every asker is told it runs.
    let path = format!("/files/{hash}/fetch");
    let asks = (0..8).map(|_| bob.post(&path, json!({"channel": "club"})));
    for (s, v) in futures::future::join_all(asks).await {
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["state"], "fetching", "{v}");
    }
    eventually("bob to hold some of it", || async {
        let (_, v) = bob.get(&format!("/files/{hash}")).await;
        (v["bytes"].as_u64().unwrap_or(0) > 0 && v["state"] == "fetching").then_some(())
    })
    .await;
    let resp = bob
        .http
        .delete(format!("{}/files/{hash}/fetch", bob.base))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("API reachable");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    eventually("the fetch to stop", || async {
        let (_, v) = bob.get(&format!("/files/{hash}")).await;
        (v["state"] == "failed" && v["reason"] == "cancelled").then_some(())
    })
    .await;
    // Nothing more arrives once stopped; what came is kept.
    let at = |v: &Value| v["bytes"].as_u64().unwrap_or(0);
    let (_, first) = bob.get(&format!("/files/{hash}")).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, later) = bob.get(&format!("/files/{hash}")).await;
    let held = at(&first);
    assert!(held > 0 && held < size, "kept what came: {first}");
    assert_eq!(held, at(&later), "stopped: {first} then {later}");
    // A second cancel has nothing to stop.
    let resp = bob
        .http
        .delete(format!("{}/files/{hash}/fetch", bob.base))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("API reachable");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Asked again, it goes on from there and ends whole.
    fetch_whole(&bob, &hash, "bob").await;
    let (_, _, got) = content(&bob, &hash).await;
    assert!(got == bytes, "the file, whole");
    let from = eventually("bob's log to say what the second fetch took", || async {
        fetched_from(&bdir, &hash)
    })
    .await;
    let refetched: u64 = from.iter().map(|(_, n)| n).sum();
    assert!(
        refetched <= size - held + (1 << 20),
        "held {held} of {size} when stopped, then fetched {refetched}"
    );
    bnode.shutdown().await;
    anode.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_no_message_shares_any_more_is_dropped_and_the_others_stay() {
    let (_s, sdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let soon = |c: &mut segchat_node::NodeConfig| {
        c.files_unused_for = Duration::ZERO;
        c.files_sweep_every = Duration::from_millis(500);
    };
    let anode = person(&server, &adir, "alice", soon).await;
    let alice = Api::of(&anode);
    alice.create_channel("club", "public").await;
    let bnode = person(&server, &bdir, "bob", soon).await;
    let bob = Api::of(&bnode);
    bob.join("club").await;

    let (s, kept) = share(&alice, "club", "kept.bin", noise(3_000_000, 61)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{kept}");
    let (s, gone) = share(&alice, "club", "gone.bin", noise(3_000_000, 62)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{gone}");
    let (kept_hash, gone_hash) = (hash_of(&kept), hash_of(&gone));
    for hash in [&kept_hash, &gone_hash] {
        has_message(&bob, hash, "bob to have the message").await;
        fetch_whole(&bob, hash, "bob").await;
    }
    // Several sweeps pass: what messages share stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for api in [&alice, &bob] {
        let (_, _, got) = content(api, &kept_hash).await;
        assert_eq!(got.len(), 3_000_000);
    }

    // alice deletes the message that shared gone.bin: on both nodes its
    // record and then its bytes go; kept.bin's stay.
    let id = gone["message"]["id"].as_str().expect("id");
    let (s, v) = alice.delete(&format!("/channels/club/messages/{id}")).await;
    assert!(s.is_success(), "{v}");
    for (api, dir) in [(&alice, &adir), (&bob, &bdir)] {
        eventually("the unshared file to be dropped", || async {
            let (s, _) = api.get(&format!("/files/{gone_hash}")).await;
            let data = dir
                .join("blobs")
                .join("data")
                .join(format!("{gone_hash}.data"));
            (s == StatusCode::NOT_FOUND && !data.exists()).then_some(())
        })
        .await;
        let (s, _, got) = content(api, &kept_hash).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(got.len(), 3_000_000, "the file still shared stays whole");
        let kept_data = dir
            .join("blobs")
            .join("data")
            .join(format!("{kept_hash}.data"));
        assert!(kept_data.exists(), "bytes are where the gone file's were");
        let log = std::fs::read_to_string(dir.join("logs").join("segchat.log")).expect("log");
        assert!(log
            .lines()
            .any(|l| l.contains("FILE_DROPPED") && l.contains(&gone_hash)));
    }
    anode.shutdown().await;
    bnode.shutdown().await;
    server.stop().await;
}
