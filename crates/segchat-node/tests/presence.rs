//! Presence follows the person: a real server and two real nodes. Carol's
//! node shows her idle when nobody touches her clients (and when none is
//! attached), online again at her next input, and never changes a status
//! she chose herself. Dave's node sees it through the server.

mod common;

use std::time::Duration;

use common::{eventually, start_node_with, tempdir, Api, TestServer};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Carol's presence as Dave's node sees it (members of #plaza).
async fn seen_by(dave: &Api) -> String {
    let v = dave.ok(Method::GET, "/channels/plaza/members", None).await;
    v["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["username"] == "carol")
        .and_then(|m| m["presence"].as_str())
        .unwrap_or("missing")
        .to_owned()
}

async fn own_status(api: &Api) -> String {
    let (status, v) = api.get("/status").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["status"].as_str().expect("status").to_owned()
}

async fn wait_own(carol: &Api, want: &str) {
    eventually(&format!("carol {want} on her node"), || async {
        (own_status(carol).await == want).then_some(())
    })
    .await;
}

async fn wait_seen(dave: &Api, want: &str) {
    eventually(&format!("carol seen {want}"), || async {
        (seen_by(dave).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_goes_idle_without_input_and_comes_back_with_it() {
    let (_s, sdir) = tempdir();
    let (_c, cdir) = tempdir();
    let (_d, ddir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let idle_after = Duration::from_millis(1500);
    let carol_node = start_node_with(server.addr, &cdir, |c| c.idle_after = idle_after).await;
    let dave_node = common::start_node(server.addr, &ddir).await;
    let (carol, dave) = (Api::of(&carol_node), Api::of(&dave_node));
    carol.wait_connected().await;
    dave.wait_connected().await;
    carol.register("carol").await;
    dave.register("dave").await;
    carol.create_channel("plaza", "public").await;
    dave.join("plaza").await;

    // A tab is open (the event stream) and Carol types: online.
    let mut tab = carol.events().await;
    let (status, _) = carol.post("/activity", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(own_status(&carol).await, "online");
    wait_seen(&dave, "online").await;

    // No input for longer than idle_after: idle, everywhere.
    tokio::time::sleep(idle_after).await;
    wait_own(&carol, "idle").await;
    wait_seen(&dave, "idle").await;

    // Input again: online at once (not at the next tick).
    carol.post("/activity", json!({})).await;
    wait_own(&carol, "online").await;
    wait_seen(&dave, "online").await;

    // Sending a message is input too; keep her busy past idle_after.
    for i in 0..4 {
        carol
            .ok(
                Method::POST,
                "/channels/plaza/messages",
                Some(json!({"body": format!("still here {i}")})),
            )
            .await;
        tokio::time::sleep(idle_after / 2).await;
        assert_eq!(
            own_status(&carol).await,
            "online",
            "busy people stay online"
        );
    }

    // A status she chose is hers: invisible stays invisible, however quiet.
    carol
        .ok(Method::PUT, "/status", Some(json!({"status": "invisible"})))
        .await;
    tokio::time::sleep(idle_after * 2).await;
    assert_eq!(own_status(&carol).await, "invisible");
    wait_seen(&dave, "offline").await;
    carol.post("/activity", json!({})).await;
    tokio::time::sleep(idle_after / 2).await;
    assert_eq!(
        own_status(&carol).await,
        "invisible",
        "input does not undo a choice"
    );

    // Online again, then the tab closes: with no client attached she
    // shows idle (the node is still there; she is not looking).
    carol
        .ok(Method::PUT, "/status", Some(json!({"status": "online"})))
        .await;
    wait_seen(&dave, "online").await;
    let _ = tab.close(None).await;
    while tab.next().await.is_some() {}
    wait_own(&carol, "idle").await;
    wait_seen(&dave, "idle").await;

    // The system log says what the node reported and why.
    let log = cdir.join("logs").join("segchat.log");
    eventually("activity reports logged", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let reported = |what: &str| {
            text.lines()
                .filter(|l| l.contains("ACTIVITY_REPORTED") && l.contains(what))
                .count()
        };
        (reported("idle=true (no input)") >= 2 && reported("idle=false (input again)") >= 1)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_on_two_nodes_is_idle_only_when_both_are() {
    let (_s, sdir) = tempdir();
    let (_d, desk_dir) = tempdir();
    let (_l, laptop_dir) = tempdir();
    let (_v, ddir) = tempdir();
    let server = TestServer::start(&sdir).await;
    let idle_after = Duration::from_millis(1500);
    let desk_node = start_node_with(server.addr, &desk_dir, |c| c.idle_after = idle_after).await;
    let laptop_node =
        start_node_with(server.addr, &laptop_dir, |c| c.idle_after = idle_after).await;
    let dave_node = common::start_node(server.addr, &ddir).await;
    let (desk, laptop, dave) = (
        Api::of(&desk_node),
        Api::of(&laptop_node),
        Api::of(&dave_node),
    );
    for api in [&desk, &laptop, &dave] {
        api.wait_connected().await;
    }
    desk.register("carol").await;
    let (status, v) = laptop
        .post(
            "/session/login",
            json!({"username": "carol", "password": common::PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    dave.register("dave").await;
    desk.create_channel("plaza", "public").await;
    dave.join("plaza").await;
    let _desk_tab = desk.events().await;
    let _laptop_tab = laptop.events().await;

    // She types on the desktop only: the quiet laptop does not make her
    // look away.
    let typing = async {
        for _ in 0..6 {
            desk.post("/activity", json!({})).await;
            tokio::time::sleep(idle_after / 3).await;
        }
    };
    typing.await;
    assert_eq!(seen_by(&dave).await, "online", "busy on one node");
    assert_eq!(own_status(&laptop).await, "online", "as her laptop sees it");

    // Both quiet: idle, as everyone sees it, her own nodes included.
    wait_seen(&dave, "idle").await;
    wait_own(&desk, "idle").await;
    wait_own(&laptop, "idle").await;

    // A key on the laptop: online again everywhere.
    laptop.post("/activity", json!({})).await;
    wait_seen(&dave, "online").await;
    wait_own(&desk, "online").await;

    // The laptop goes quiet and then away altogether: the desktop, quiet
    // too, leaves her idle, not offline; her chosen status stayed online.
    laptop_node.shutdown().await;
    wait_seen(&dave, "idle").await;
    desk.post("/activity", json!({})).await;
    wait_seen(&dave, "online").await;
    desk_node.shutdown().await;
    wait_seen(&dave, "offline").await;
    dave_node.shutdown().await;
    server.stop().await;
}
