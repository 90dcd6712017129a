//! Direct messages end to end, with a real server and real nodes: sealed
//! per device, carried by the server's mailbox, opened only on the
//! members' devices, with receipts moving the sender's states in order.

mod common;

use std::path::Path;

use common::{ann_and_bob, eventually, keys_published, start_node, tempdir, AnnAndBob, Api};
use common::{TestServer, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn history(api: &Api, with: &str) -> Vec<Value> {
    let (status, v) = api.get(&format!("/dms/{with}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["messages"].as_array().expect("messages").clone()
}

/// The message `id` in the conversation with `with`, once `ok` holds.
async fn message_where(api: &Api, with: &str, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("message {id} as expected"), || async {
        history(api, with)
            .await
            .into_iter()
            .find(|m| m["id"] == id && ok(m))
    })
    .await
}

/// The safety number `api`'s user sees for the conversation with `with`.
async fn safety(api: &Api, with: &str) -> String {
    let (status, v) = api.get(&format!("/dms/{with}/safety")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let n = v["safety_number"].as_str().expect("number").to_owned();
    assert_eq!(n.len(), 12 * 5 + 11, "{n}");
    n
}

async fn send(api: &Api, to: &str, text: &str) -> Value {
    let (status, v) = api
        .post(&format!("/dms/{to}"), json!({ "text": text }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "send to {to}: {v}");
    v["message"].clone()
}

/// Every byte of the files in `dir` (recursively).
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(b) = std::fs::read(&path) {
            out.extend(b);
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_reaches_the_recipient_sealed_and_its_states_move_in_order() {
    let AnnAndBob {
        server,
        ann_node,
        bob_node,
        ann,
        bob,
        sdir,
        adir,
        bdir,
        _dirs,
    } = ann_and_bob().await;

    let mut events = bob.events().await;
    let sent = send(&ann, "bob", "first secret: marmalade").await;
    assert!(
        sent["state"] == "sent" || sent["state"] == "delivered",
        "bob's node took it (its receipt may be back already): {sent}"
    );
    assert_eq!(sent["path"], "p2p", "both online: straight to bob's node");
    let id = sent["id"].as_str().expect("id").to_owned();

    // Bob's node opens it, shows it live, and tells ann it arrived.
    let got = message_where(&bob, "ann", &id, |m| m["state"] == "received").await;
    assert_eq!(got["text"], "first secret: marmalade");
    assert_eq!(got["sender"], "ann");
    assert_eq!(got["path"], "p2p");
    let live = common::next_matching(&mut events, "a direct message", |e| {
        e["type"] == "direct_message" && e["message"]["state"] == "received"
    })
    .await;
    assert_eq!(live["message"]["id"], id);
    message_where(&ann, "bob", &id, |m| m["state"] == "delivered").await;

    // Read: bob's list counts it unread until he reads it; then ann sees
    // `read`.
    let (_, list) = bob.get("/dms").await;
    assert_eq!(list["conversations"][0]["conversation"], "ann");
    assert_eq!(list["conversations"][0]["unread"], 1);
    let (status, read) = bob.post("/dms/ann/read", json!({})).await;
    assert_eq!((status, read["read"].as_u64()), (StatusCode::OK, Some(1)));
    message_where(&ann, "bob", &id, |m| m["state"] == "read").await;

    // A reply in the same conversation, in order after it.
    let reply = send(&bob, "ann", "second secret: quince").await;
    let reply_id = reply["id"].as_str().expect("id").to_owned();
    message_where(&ann, "bob", &reply_id, |m| m["state"] == "received").await;
    let shown = history(&ann, "bob").await;
    let order: Vec<&str> = shown.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(order, [id.as_str(), reply_id.as_str()]);

    // Search works on both sides, from the local store; LIKE's wildcards
    // are only characters.
    for (api, n) in [(&ann, 1), (&bob, 1)] {
        let (status, found) = api.get("/dm-search?q=MARMALADE%20first").await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(
            found["messages"].as_array().map(Vec::len),
            Some(n),
            "{found}"
        );
    }
    let (_, none) = ann.get("/dm-search?q=%25").await;
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0), "{none}");

    // The server held only ciphertext: not in its database, its log,
    // nor anywhere in its data directory.
    let server_files = all_bytes(&sdir);
    for secret in ["marmalade", "quince"] {
        assert!(
            !holds(&server_files, secret),
            "the server's files hold the plaintext {secret:?}"
        );
    }
    let ann_log = std::fs::read_to_string(adir.join("logs").join("segchat.log")).expect("log");
    assert!(
        ann_log
            .lines()
            .any(|l| l.contains("DM_SENT") && l.contains(&id) && l.contains("path=p2p")),
        "the log says which path carried it"
    );
    assert!(!ann_log.contains("marmalade"), "no text in the system log");
    let bob_log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("log");
    assert!(bob_log
        .lines()
        .any(|l| l.contains("DM_RECEIVED") && l.contains(&id) && l.contains("path=p2p")));

    ann_node.shutdown().await;
    bob_node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_to_a_node_that_is_away_arrives_once_when_it_returns_and_on_each_of_its_devices() {
    let AnnAndBob {
        server,
        ann_node,
        bob_node,
        ann,
        bdir,
        _dirs,
        ..
    } = ann_and_bob().await;
    let (_p, pdir) = tempdir();

    // Bob's node goes away; ann writes twice.
    bob_node.shutdown().await;
    let first = send(&ann, "bob", "while you were away").await;
    let second = send(&ann, "bob", "and again").await;
    assert_eq!(first["state"], "sent", "the mailbox took it");
    assert_eq!(first["path"], "server", "bob's node is away");

    // Back: both arrive, once each, in order.
    let bob_node = start_node(server.addr, &bdir).await;
    let bob = Api::of(&bob_node);
    let second_id = second["id"].as_str().expect("id");
    message_where(&bob, "ann", second_id, |_| true).await;
    let shown = history(&bob, "ann").await;
    let texts: Vec<&str> = shown.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["while you were away", "and again"]);
    message_where(&ann, "bob", second_id, |m| m["state"] == "delivered").await;

    let before = safety(&ann, "bob").await;
    assert_eq!(before, safety(&bob, "ann").await, "the same on both sides");

    // Bob signs in on a second node (his phone): new messages reach both,
    // and what he writes from one shows on the other as his own.
    let phone_node = start_node(server.addr, &pdir).await;
    let phone = Api::of(&phone_node);
    phone.wait_connected().await;
    let (status, v) = phone
        .post(
            "/session/login",
            json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    assert!(status.is_success(), "login: {v}");
    keys_published(&pdir, 1).await;
    let after = safety(&ann, "bob").await;
    assert_ne!(after, before, "a new device changes the safety number");
    assert_eq!(after, safety(&phone, "ann").await);
    let both = send(&ann, "bob", "to all of you").await;
    let both_id = both["id"].as_str().expect("id");
    message_where(&bob, "ann", both_id, |m| m["text"] == "to all of you").await;
    message_where(&phone, "ann", both_id, |m| m["text"] == "to all of you").await;
    // Read on one of his devices is read on the other too.
    let unread = |api: &Api| {
        let api = api.clone();
        async move {
            let (_, v) = api.get("/dms").await;
            v["conversations"][0]["unread"].as_u64()
        }
    };
    assert!(
        unread(&phone).await >= Some(1),
        "unread on the phone at first"
    );
    let (status, v) = bob.post("/dms/ann/read", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    eventually("the phone learns bob read it elsewhere", || async {
        (unread(&phone).await == Some(0)).then_some(())
    })
    .await;
    let mine = send(&phone, "ann", "from my phone").await;
    let mine_id = mine["id"].as_str().expect("id");
    message_where(&ann, "bob", mine_id, |m| m["state"] == "received").await;
    let copy = message_where(&bob, "ann", mine_id, |_| true).await;
    assert_eq!(copy["sender"], "bob");
    assert_eq!(copy["text"], "from my phone");

    // Nothing twice, after a restart of the receiver too.
    bob_node.shutdown().await;
    let bob_node = start_node(server.addr, &bdir).await;
    let bob = Api::of(&bob_node);
    bob.wait_connected().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ids: Vec<String> = history(&bob, "ann")
        .await
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "a message shown twice: {ids:?}");
    assert_eq!(ids.len(), 4);

    ann_node.shutdown().await;
    bob_node.shutdown().await;
    phone_node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_user_and_a_visitor_cannot_send_and_names_are_checked() {
    let (_s, sdir) = tempdir();
    let (_a, adir) = tempdir();
    let (_b, bdir) = tempdir();
    let (_v, vdir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let ann_node = start_node(server.addr, &adir).await;
    let bob_node = start_node(server.addr, &bdir).await;
    let visitor_node = start_node(server.addr, &vdir).await;
    let (ann, bob, visitor) = (
        Api::of(&ann_node),
        Api::of(&bob_node),
        Api::of(&visitor_node),
    );
    for api in [&ann, &bob, &visitor] {
        api.wait_connected().await;
    }
    ann.register("ann").await;
    bob.register("bob").await;
    keys_published(&bdir, 1).await;

    let (status, _) = bob.put("/blocks/ann", json!({})).await;
    assert!(status.is_success());
    let (status, v) = ann.post("/dms/bob", json!({"text": "let me in"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "refused like nobody: {v}");
    assert!(
        history(&ann, "bob").await.is_empty(),
        "refused before it was kept"
    );
    assert!(history(&bob, "ann").await.is_empty());

    let (status, v) = visitor
        .post("/session/visit", json!({"display_name": "Drifter"}))
        .await;
    assert!(status.is_success(), "visit: {v}");
    let (status, v) = visitor.post("/dms/ann", json!({"text": "hi"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");

    for bad in ["..", "a/b", "x", "ann,,bob"] {
        let (status, _) = ann
            .post(&format!("/dms/{bad}"), json!({"text": "hi"}))
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{bad}: {status}"
        );
    }
    let (status, _) = ann.post("/dms/ann", json!({"text": "me?"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not to oneself");
    let (status, _) = ann.post("/dms/bob", json!({"text": "  "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no empty message");

    ann_node.shutdown().await;
    bob_node.shutdown().await;
    visitor_node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_dm_reaches_every_member_and_replies_reach_the_rest() {
    let (_s, sdir) = tempdir();
    let dirs: Vec<_> = (0..3).map(|_| tempdir()).collect();
    let server = TestServer::start(&sdir).await;
    let mut nodes = Vec::new();
    for (name, (_, dir)) in ["ann", "bob", "cyd"].iter().zip(&dirs) {
        let node = start_node(server.addr, dir).await;
        let api = Api::of(&node);
        api.wait_connected().await;
        api.register(name).await;
        keys_published(dir, 1).await;
        nodes.push((node, api));
    }
    let (ann, bob, cyd) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);

    let sent = send(ann, "cyd,bob", "group plans").await;
    let id = sent["id"].as_str().expect("id");
    assert_eq!(
        sent["conversation"], "bob,cyd",
        "named by its members, sorted"
    );
    message_where(bob, "ann,cyd", id, |m| m["text"] == "group plans").await;
    message_where(cyd, "ann,bob", id, |m| m["text"] == "group plans").await;

    let reply = send(bob, "ann,cyd", "count me in").await;
    let reply_id = reply["id"].as_str().expect("id");
    message_where(ann, "bob,cyd", reply_id, |m| m["sender"] == "bob").await;
    message_where(cyd, "ann,bob", reply_id, |m| m["sender"] == "bob").await;
    assert!(
        history(ann, "bob").await.is_empty(),
        "the group is not the two-person conversation"
    );
    let too_many: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    let (status, _) = ann
        .post(
            &format!("/dms/{}", too_many.join(",")),
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "at most 10 with you");

    for (node, _) in nodes {
        node.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_every_allowance_still_arrives_once_each_in_order() {
    let AnnAndBob {
        server,
        ann_node,
        bob_node,
        ann,
        bob,
        _dirs,
        ..
    } = ann_and_bob().await;

    // 40 at once: past what bob's node takes from one sender directly
    // and past the server's allowance; the rest waits and goes.
    let mut ids = Vec::new();
    for i in 0..40 {
        let m = send(&ann, "bob", &format!("burst {i:02}")).await;
        ids.push(m["id"].as_str().expect("id").to_owned());
    }
    let last = ids.last().expect("sent").clone();
    message_where(&bob, "ann", &last, |_| true).await;
    let got = eventually("all 40 at bob", || async {
        let h = history(&bob, "ann").await;
        (h.len() >= 40).then_some(h)
    })
    .await;
    let texts: Vec<String> = got
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..40).map(|i| format!("burst {i:02}")).collect();
    assert_eq!(texts, expected, "each once, in the order written");

    ann_node.shutdown().await;
    bob_node.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_deletions_and_reactions_show_the_same_on_both_sides() {
    let AnnAndBob {
        server,
        ann_node,
        bob_node,
        ann,
        bob,
        bdir,
        _dirs,
        ..
    } = ann_and_bob().await;

    let first = send(&ann, "bob", "lunch at noon?").await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    message_where(&bob, "ann", &first_id, |_| true).await;

    // A reply carries its quote, on both sides.
    let (status, v) = bob
        .post("/dms/ann", json!({"text": "yes!", "reply_to": first_id}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"]["quote"]["body"], "lunch at noon?");
    let reply_id = v["message"]["id"].as_str().expect("id").to_owned();
    let seen = message_where(&ann, "bob", &reply_id, |_| true).await;
    assert_eq!(seen["reply_to"], first_id.as_str());
    assert_eq!(seen["quote"]["author"], "ann");

    // Only its sender edits; the edit shows everywhere, in the quote too.
    let path = format!("/dms/bob/messages/{first_id}");
    let (status, v) = ann.patch(&path, json!({"text": "lunch at one?"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"]["text"], "lunch at one?");
    assert!(v["message"]["edited_ms"].is_u64(), "{v}");
    let edited = message_where(&bob, "ann", &first_id, |m| m["text"] == "lunch at one?").await;
    assert!(edited["edited_ms"].is_u64());
    message_where(&bob, "ann", &reply_id, |m| {
        m["quote"]["body"] == "lunch at one?"
    })
    .await;
    let theirs = format!("/dms/ann/messages/{first_id}");
    let (status, _) = bob.patch(&theirs, json!({"text": "mine now"})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "bob cannot edit ann's message"
    );
    let (status, _) = bob.delete(&theirs).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "nor delete it");
    let (status, _) = ann
        .patch(
            &format!("/dms/bob/messages/{reply_id}"),
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "nor ann bob's");
    let (status, _) = ann
        .patch(
            "/dms/bob/messages/00000000-0000-7000-8000-000000000000",
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Any member reacts; taking it back removes it everywhere.
    let react = format!("/dms/ann/messages/{first_id}/reactions/%F0%9F%91%8D");
    let (status, v) = bob.put(&react, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"]["reactions"][0]["me"], true);
    let counted = message_where(&ann, "bob", &first_id, |m| m["reactions"][0]["count"] == 1).await;
    assert_eq!(counted["reactions"][0]["emoji"], "👍");
    assert_eq!(counted["reactions"][0]["users"], json!(["bob"]));
    assert_eq!(counted["reactions"][0]["me"], false);
    let (status, _) = bob
        .put(
            &format!("/dms/ann/messages/{first_id}/reactions/a%20b"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one emoji, no spaces");
    let (status, _) = bob.delete(&react).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    message_where(&ann, "bob", &first_id, |m| {
        m["reactions"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // Bob goes away; ann deletes. He finds it deleted when he returns,
    // and his reply's quote says so.
    bob_node.shutdown().await;
    let (status, v) = ann.delete(&path).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"]["deleted"], true);
    assert_eq!(v["message"]["text"], "");
    let (status, _) = ann.patch(&path, json!({"text": "back"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a deleted message stays deleted"
    );
    let react_mine = format!("/dms/bob/messages/{first_id}/reactions/%F0%9F%91%8D");
    let (status, _) = ann.put(&react_mine, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "and takes no reactions");
    let bob_node = start_node(server.addr, &bdir).await;
    let bob = Api::of(&bob_node);
    message_where(&bob, "ann", &first_id, |m| {
        m["deleted"] == true && m["text"] == ""
    })
    .await;
    message_where(&bob, "ann", &reply_id, |m| m["quote"]["deleted"] == true).await;

    // Actions are not messages of their own: two rows on each side, and
    // the deleted text is not found.
    for (api, with) in [(&ann, "bob"), (&bob, "ann")] {
        assert_eq!(history(api, with).await.len(), 2, "{with}");
        let shouted = with.to_ascii_uppercase();
        assert_eq!(history(api, &shouted).await.len(), 2, "a name in any case");
        let (_, list) = api.get("/dms").await;
        assert_eq!(list["conversations"][0]["last"]["id"], reply_id.as_str());
        let (_, found) = api.get("/dm-search?q=lunch").await;
        assert_eq!(found["messages"], json!([]), "{found}");
    }
    let log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("log");
    assert!(log.contains("kind=delete"), "the log names what arrived");
    assert!(!log.contains("lunch"), "never the text");

    ann_node.shutdown().await;
    bob_node.shutdown().await;
    server.stop().await;
}
