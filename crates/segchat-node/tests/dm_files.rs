//! Files in direct messages, with a real server and real nodes: the
//! bytes are encrypted before they enter the sender's blob store, reach
//! the other member node to node and read back whole there, and no one
//! outside the conversation can open them on the sender's node.

mod common;

use std::path::Path;

use common::{ann_and_bob, content, eventually, first_request, noise, registered};
use common::{start_node, ticket_for, AnnAndBob, Api};
use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use segchat_proto::peer;
use segchat_proto::ticket::{prove, ProofPurpose};
use serde_json::{json, Value};

/// A PNG of `w`×`h` pixels of noise (it barely compresses).
fn png_of_noise(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let pixels = noise((w * h * 3) as usize, seed);
    let img = image::RgbImage::from_raw(w, h, pixels).expect("pixels");
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// Whether any file under `dir` holds `needle`.
fn anywhere_in(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let path = e.path();
                if path.is_dir() {
                    anywhere_in(&path, needle)
                } else {
                    std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
                }
            })
        })
        .unwrap_or(false)
}

/// `api`'s user sends `bytes` to bob with `query` (name, caption):
/// the message as the node answers it.
async fn send_file(api: &Api, query: &[(&str, &str)], bytes: &[u8]) -> Value {
    let resp = api
        .http
        .post(format!("{}/dms/bob/files", api.base))
        .query(query)
        .bearer_auth(&api.token)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("API reachable");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_a_dm_reaches_the_other_member_encrypted_and_no_one_else_opens_it() {
    let AnnAndBob {
        server,
        ann_node,
        bob_node,
        sdir,
        adir,
        bdir,
        _dirs,
        ann,
        bob,
    } = ann_and_bob().await;

    let photo = png_of_noise(1200, 800, 7);
    let sent = send_file(
        &ann,
        &[("name", "holiday.png"), ("caption", "the view")],
        &photo,
    )
    .await;
    let file = &sent["message"]["file"];
    assert_eq!(file["name"], "holiday.png");
    assert_eq!(file["mime"], "image/png");
    assert_eq!(file["size"], photo.len());
    assert!(file.get("key").is_none(), "the key is never shown: {file}");
    let hash = file["hash"].as_str().expect("hash").to_owned();
    // Named by its ciphertext: the plaintext's hash is not it, and no
    // stretch of the plaintext is on the sender's disk.
    assert_ne!(hash, blake3::hash(&photo).to_hex().to_string());
    let sample = &photo[1 << 20..(1 << 20) + 64];
    assert!(!anywhere_in(&adir.join("blobs"), sample));
    assert!(!anywhere_in(&adir.join("uploads"), sample));
    // The sender reads it back as it was.
    let (status, _, bytes) = content(&ann, &hash).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == photo, "ann's own copy reads back whole");

    // bob's node fetches the image as the message arrives, from ann's.
    let got = eventually("bob's copy to be whole", || async {
        let (_, h) = bob.get("/dms/ann").await;
        let shared = h["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["file"]["hash"] == hash.as_str()));
        let (s, v) = bob.get(&format!("/files/{hash}")).await;
        (shared && s == StatusCode::OK && v["state"] == "complete").then_some(v)
    })
    .await;
    assert_eq!(got["name"], "holiday.png");
    // The message brought a thumbnail: a small JPEG of the picture, which
    // crossed the server only inside the encrypted message.
    let (_, h) = bob.get("/dms/ann").await;
    let thumb = h["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["file"]["hash"] == hash.as_str()))
        .and_then(|m| m["file"]["thumb"].as_str())
        .expect("a thumbnail")
        .to_owned();
    let jpeg = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&thumb)
            .expect("base64")
    };
    let small = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).expect("jpeg");
    // 320 pixels wide, or 160 for noise that JPEG cannot shrink; the
    // picture's shape either way.
    assert!([160, 320].contains(&small.width()), "{}", small.width());
    let (w, h) = (small.width(), small.height());
    assert!(w.abs_diff(h * 3 / 2) <= 2, "{w}x{h}");
    assert!(!anywhere_in(&sdir, &thumb.as_bytes()[..64]));
    let (status, headers, bytes) = content(&bob, &hash).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[reqwest::header::CONTENT_TYPE], "image/png");
    assert!(bytes == photo, "bob reads the plaintext, byte for byte");
    assert!(!anywhere_in(&bdir.join("blobs"), sample));
    let log = std::fs::read_to_string(bdir.join("logs").join("segchat.log")).expect("log");
    let ann_key = &ann_node.node_id()[..12];
    assert!(
        log.lines()
            .any(|l| l.contains("FILE_FETCHED") && l.contains(&hash) && l.contains(ann_key)),
        "fetched from ann's node"
    );

    // A reply to it quotes the file by name.
    let id = sent["message"]["id"].as_str().expect("id");
    let (s, v) = bob
        .post("/dms/ann", json!({"text": "lovely", "reply_to": id}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"]["quote"]["file"], "holiday.png", "{v}");

    // eve, signed in but not in the conversation, is refused by ann's
    // node, the same answer as for a file it does not have.
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let eve = common::client(&key).await;
    let mut t = registered(&eve, server.addr, "eve").await;
    let ticket = ticket_for(&mut t, 2, &key).await;
    let ann_at = ann.node_addr().await;
    for asked in [hash.clone(), "ab".repeat(32)] {
        let (_, answer) = first_request(&eve, &ann_at, |nonce| peer::Request::FileOpen {
            ticket: ticket.clone(),
            proof: prove(&key, nonce, ProofPurpose::File { hash: &asked }).expect("prove"),
            channel: None,
            hash: asked.clone(),
        })
        .await;
        match answer {
            Err(f) => assert_eq!(f.status, segchat_proto::Status::NotFound, "{f}"),
            Ok(other) => panic!("eve was granted a file of ann and bob: {other:?}"),
        }
    }
    // A node fetches only a file a message there shares.
    let unknown = format!("/files/{}/fetch", "cd".repeat(32));
    let (s, v) = bob.post(&unknown, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // Deleted, the message's file is no longer read back by its sender.
    let (s, v) = ann.delete(&format!("/dms/bob/messages/{id}")).await;
    assert!(s.is_success(), "{v}");
    eventually("the deleted message's file to be gone", || async {
        let (status, _, _) = content(&ann, &hash).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;

    ann_node.shutdown().await;
    bob_node.shutdown().await;
    server.stop().await;
    eve.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_to_someone_away_comes_from_the_servers_copy_once_its_sender_is_gone() {
    let AnnAndBob {
        server,
        ann_node,
        bob_node,
        sdir,
        bdir,
        _dirs,
        ann,
        ..
    } = ann_and_bob().await;

    // bob is away when ann sends; the server keeps the (sealed) file.
    bob_node.shutdown().await;
    let report = noise(2_500_000, 11);
    let sent = send_file(&ann, &[("name", "report.pdf")], &report).await;
    let hash = sent["message"]["file"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let server_log = || std::fs::read_to_string(sdir.join("logs").join("segchat.log"));
    eventually("the server to keep a copy", || async {
        let log = server_log().ok()?;
        log.lines()
            .any(|l| l.contains("FILE_BACKED_UP") && l.contains(&hash))
            .then_some(())
    })
    .await;
    // What the server keeps is the ciphertext.
    let sample = &report[1_000_000..1_000_064];
    assert!(!anywhere_in(&sdir.join("blobs"), sample));
    ann_node.shutdown().await;

    // bob is back, ann is gone: the message comes from the mailbox, the
    // file from the server's copy, and reads back whole.
    let bob_node = start_node(server.addr, &bdir).await;
    let bob = Api::of(&bob_node);
    eventually("the message to arrive", || async {
        let (_, h) = bob.get("/dms/ann").await;
        h["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["file"]["hash"] == hash.as_str()))
            .then_some(())
    })
    .await;
    let (s, v) = bob.post(&format!("/files/{hash}/fetch"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    eventually("bob's copy to be whole", || async {
        let (s, v) = bob.get(&format!("/files/{hash}")).await;
        (s == StatusCode::OK && v["state"] == "complete").then_some(())
    })
    .await;
    let (status, headers, bytes) = content(&bob, &hash).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[reqwest::header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert!(bytes == report, "the server's copy opens to the file");
    let log = server_log().expect("log");
    assert!(
        log.lines()
            .any(|l| l.contains("FILE_SOURCE") && l.contains(&hash) && l.contains("dm")),
        "the server granted its copy to bob"
    );

    // Someone the file was not kept for gets nothing from the server.
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let eve = common::client(&key).await;
    let mut t = registered(&eve, server.addr, "eve").await;
    let asked = segchat_proto::tracker::Request::FileSource {
        channel: None,
        hash: hash.clone(),
    };
    match common::ask(&mut t, 2, asked).await {
        Err(f) => assert_eq!(f.status, segchat_proto::Status::NotFound, "{f}"),
        Ok(other) => panic!("eve got the server's copy: {other:?}"),
    }

    bob_node.shutdown().await;
    server.stop().await;
    eve.close().await;
}
