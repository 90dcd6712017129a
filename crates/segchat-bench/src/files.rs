//! The `files` scenario: a file shared in a channel, fetched by a node
//! from 1 seeder and from 4, each seeder's sending capped; what sharing
//! costs (hashing); and what a fetch killed half way fetches again.
//!
//! Every node is a real `segchat node` process on loopback. The caps are
//! `tc` classes on `lo` keyed by each seeder's UDP source port (its QUIC
//! endpoint), so only what a seeder sends is slowed: this needs root,
//! and without `--cap-mbit` the run is uncapped (then the machine's two
//! cores, not the seeders, are the limit). The classes are removed at
//! the end, also on failure.
//!
//! 1. `alice` hosts `#club` and shares file A (timed: upload, BLAKE3 hash
//!    tree, store) — the share rate; then file B.
//! 2. Three members fetch B uncapped, so B has four holders; A has one.
//! 3. Caps go on every seeder's port. A fresh node fetches A (1 seeder:
//!    the host) and another fetches B (the host and three members), each
//!    timed from the fetch request to `complete`, checked against the
//!    hash, with the bytes each seeder sent.
//! 4. Resume: a node fetching A is killed (SIGKILL) at half way and
//!    started again; the bytes fetched after the restart, against what it
//!    lacked, is the resume cost.
//! 5. A direct message: `alice` sends file C to `one` (timed: upload,
//!    ChaCha20, hash, store), `one` fetches it from alice's capped node,
//!    and reads back A (plain) and C (decrypted as it is read).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::procs::{segchat_exe, start_node, start_server, Api};

#[derive(Debug, clap::Args)]
pub(crate) struct FilesArgs {
    /// The file's size, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Each seeder's sending cap, Mbit/s (`tc` on `lo`, needs root);
    /// 0: uncapped.
    #[arg(long, default_value_t = 0)]
    cap_mbit: u64,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct FilesReport {
    bench: &'static str,
    size_bytes: u64,
    cap_mbit: u64,
    /// Sharing: upload over the local API, hashing, storing; MB/s.
    share_mb_s: f64,
    one_seeder: Fetch,
    four_seeders: Fetch,
    /// `four_seeders` over `one_seeder`, by rate.
    speedup: f64,
    /// Bytes held when killed, and fetched after the restart.
    resume_held: u64,
    resume_fetched_again: u64,
    /// Fetched again beyond what was lacking (negative: the last reading
    /// before the kill was behind the store).
    resume_extra: i64,
    /// A direct message's file, shared (encrypted, hashed, stored), MB/s.
    dm_share_mb_s: f64,
    /// Its fetch from the one seeder that holds it (the sender's node).
    dm_fetch: Fetch,
    /// Reading a file back from the node: a channel's, and a direct
    /// message's (decrypted as it is read); MB/s.
    read_plain_mb_s: f64,
    read_sealed_mb_s: f64,
}

#[derive(Debug, Serialize)]
struct Fetch {
    seconds: f64,
    mb_s: f64,
    /// Bytes from each seeder (its key's first 12 characters).
    from: Vec<(String, u64)>,
}

pub(crate) async fn run(args: FilesArgs) -> anyhow::Result<()> {
    let exe = segchat_exe()?;
    let dir = tempfile::tempdir_in(std::env::temp_dir())?;
    let size = args.size_mib << 20;
    let (server, addr) = start_server(&exe, dir.path()).await?;
    let mut procs = vec![server];
    let node = |sub: &'static str| {
        let (exe, dir) = (exe.clone(), dir.path().to_owned());
        async move { start_node(&exe, &dir, addr, sub, sub).await }
    };
    let (p, alice) = node("alice").await?;
    procs.push(p);
    sign_up(&alice, "alice").await?;
    alice
        .post("channels", json!({"name": "club", "visibility": "public"}))
        .await?;

    let a = write_noise(dir.path(), "a.bin", size, 1)?;
    let b = write_noise(dir.path(), "b.bin", size, 2)?;
    let t = Instant::now();
    let hash_a = share(&alice, &a).await?;
    let share_mb_s = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    let hash_b = share(&alice, &b).await?;
    std::fs::remove_file(&a)?;
    std::fs::remove_file(&b)?;

    // Three members hold B whole; each is then a seeder of B.
    let mut seeders = vec![alice.get("node").await?];
    for sub in ["mem1", "mem2", "mem3"] {
        let (p, api) = node(sub).await?;
        procs.push(p);
        sign_up(&api, sub).await?;
        api.post("channels/club/join", json!({})).await?;
        fetch(&api, &hash_b, size).await?;
        seeders.push(api.get("node").await?);
    }

    let ports: Vec<u16> = seeders
        .iter()
        .filter_map(|n| n["p2p_addr"].as_str()?.rsplit(':').next()?.parse().ok())
        .collect();
    let _caps = match args.cap_mbit {
        0 => None,
        mbit => Some(Caps::on_lo(&ports, mbit)?),
    };

    let (p, one) = node("one").await?;
    procs.push(p);
    sign_up(&one, "one").await?;
    one.post("channels/club/join", json!({})).await?;
    let one_seeder = fetch(&one, &hash_a, size).await?;
    let (p, four) = node("four").await?;
    procs.push(p);
    sign_up(&four, "four").await?;
    four.post("channels/club/join", json!({})).await?;
    let four_seeders = fetch(&four, &hash_b, size).await?;

    // Resume: kill a fetch of B half way, start the node again.
    let (p, again) = node("again").await?;
    sign_up(&again, "again").await?;
    again.post("channels/club/join", json!({})).await?;
    wait_message(&again, &hash_b).await?;
    again
        .post(&format!("files/{hash_b}/fetch"), json!({"channel": "club"}))
        .await?;
    let held = loop {
        let s = again.get(&format!("files/{hash_b}")).await?;
        let n = s["bytes"].as_u64().unwrap_or(0);
        if n >= size / 2 || s["state"] == "complete" {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    p.stop().await;
    let (p, again) = node("again").await?;
    procs.push(p);
    let resumed = wait_complete(&again, &hash_b, size).await?;
    let fetched_again: u64 = log_fetched_from(&dir.path().join("again"), &hash_b)
        .iter()
        .map(|(_, n)| n)
        .sum();
    let _ = resumed;

    // A direct message's file: sealed (ChaCha20) as it is shared, fetched
    // like any other, opened as it is read back.
    let c = write_noise(dir.path(), "c.bin", size, 3)?;
    let t = Instant::now();
    let sent = alice.send_dm_file("one", &c, "c.bin").await?;
    let dm_share_mb_s = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_file(&c)?;
    let hash_c = sent["message"]["file"]["hash"]
        .as_str()
        .context("the share's answer has no file hash")?
        .to_owned();
    let t = Instant::now();
    loop {
        let v = one.get("dms/alice").await?;
        if v["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["file"]["hash"] == hash_c.as_str()))
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the direct message did not arrive");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    one.post(&format!("files/{hash_c}/fetch"), json!({}))
        .await?;
    wait_complete(&one, &hash_c, size).await?;
    let dm_seconds = t.elapsed().as_secs_f64();
    let read_plain_mb_s = one.read_back(&hash_a).await? / 1e6;
    let read_sealed_mb_s = one.read_back(&hash_c).await? / 1e6;

    let report = FilesReport {
        bench: "files",
        size_bytes: size,
        cap_mbit: args.cap_mbit,
        share_mb_s,
        speedup: four_seeders.mb_s / one_seeder.mb_s,
        one_seeder,
        four_seeders,
        resume_held: held,
        resume_fetched_again: fetched_again,
        resume_extra: fetched_again as i64 - (size - held) as i64,
        dm_share_mb_s,
        dm_fetch: Fetch {
            seconds: dm_seconds,
            mb_s: size as f64 / dm_seconds / 1e6,
            from: Vec::new(),
        },
        read_plain_mb_s,
        read_sealed_mb_s,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "file {} MiB, seeders capped at {} Mbit/s each{}",
            args.size_mib,
            args.cap_mbit,
            if args.cap_mbit == 0 {
                " (uncapped)"
            } else {
                ""
            }
        );
        println!("share (upload, hash, store): {:.0} MB/s", report.share_mb_s);
        for (what, f) in [
            ("1 seeder", &report.one_seeder),
            ("4 seeders", &report.four_seeders),
        ] {
            let from: Vec<String> = f
                .from
                .iter()
                .map(|(k, n)| format!("{k}… {:.0} MB", *n as f64 / 1e6))
                .collect();
            println!(
                "{what:>9}: {:.1} s, {:.1} MB/s; from {}",
                f.seconds,
                f.mb_s,
                from.join(", ")
            );
        }
        println!("4 over 1: {:.2}x", report.speedup);
        println!(
            "direct message: share (encrypt, hash, store) {:.0} MB/s; fetch from 1 seeder {:.1} s, {:.1} MB/s",
            report.dm_share_mb_s, report.dm_fetch.seconds, report.dm_fetch.mb_s
        );
        println!(
            "read back: {:.0} MB/s plain, {:.0} MB/s decrypted",
            report.read_plain_mb_s, report.read_sealed_mb_s
        );
        println!(
            "resume: killed holding {:.1} MB; fetched {:.1} MB after the restart ({:+} bytes beyond what it lacked)",
            held as f64 / 1e6,
            fetched_again as f64 / 1e6,
            report.resume_extra
        );
    }
    for p in procs {
        p.stop().await;
    }
    Ok(())
}

async fn sign_up(api: &Api, user: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if api.get("node").await?["server_connected"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.post(
        "session/register",
        json!({"username": user, "password": "bench password 1"}),
    )
    .await?;
    Ok(())
}

/// `size` bytes that do not repeat, in `dir/name`.
fn write_noise(dir: &Path, name: &str, size: u64, seed: u64) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(path)
}

async fn share(api: &Api, path: &Path) -> anyhow::Result<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let v = api.share_file("club", path, name).await?;
    v["message"]["file"]["hash"]
        .as_str()
        .map(str::to_owned)
        .context("the share's answer has no file hash")
}

async fn wait_message(api: &Api, hash: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let v = api.get("channels/club/messages?limit=50").await?;
        let here = v["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["file"]["hash"] == hash));
        if here {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the file's message did not arrive");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fetches `hash` at `api`'s node, timed from the request to complete.
async fn fetch(api: &Api, hash: &str, size: u64) -> anyhow::Result<Fetch> {
    wait_message(api, hash).await?;
    let t = Instant::now();
    api.post(&format!("files/{hash}/fetch"), json!({"channel": "club"}))
        .await?;
    let from = wait_complete(api, hash, size).await?;
    let seconds = t.elapsed().as_secs_f64();
    Ok(Fetch {
        seconds,
        mb_s: size as f64 / seconds / 1e6,
        from,
    })
}

/// Waits until `hash` is complete at `api`'s node; the bytes by seeder
/// of the last reading while it was fetching.
async fn wait_complete(api: &Api, hash: &str, size: u64) -> anyhow::Result<Vec<(String, u64)>> {
    let mut from = Vec::new();
    let start = Instant::now();
    loop {
        let s = match api.get(&format!("files/{hash}")).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match s["state"].as_str() {
            Some("complete") => {
                if s["size"].as_u64() != Some(size) {
                    bail!("fetched at the wrong size: {s}");
                }
                return Ok(from);
            }
            Some("failed") => bail!("the fetch failed: {s}"),
            _ => {}
        }
        if let Ok(f) = serde_json::from_value::<Vec<(String, u64)>>(s["seeders"].clone()) {
            if !f.is_empty() {
                from = f;
            }
        }
        if start.elapsed() > Duration::from_secs(3600) {
            bail!("no end to the fetch: {s}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `from=` of the node's last `FILE_FETCHED` record for `hash`.
fn log_fetched_from(dir: &Path, hash: &str) -> Vec<(String, u64)> {
    let Ok(log) = std::fs::read_to_string(dir.join("logs").join("segchat.log")) else {
        return Vec::new();
    };
    let Some(line) = log
        .lines()
        .rev()
        .find(|l| l.contains("FILE_FETCHED") && l.contains(hash))
    else {
        return Vec::new();
    };
    line.split(" from=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .map(|list| {
            list.split(',')
                .filter_map(|p| {
                    let (k, n) = p.split_once(':')?;
                    Some((k.to_owned(), n.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `tc` classes on `lo` capping what each of `ports` sends; removed when
/// dropped.
struct Caps;

impl Caps {
    fn on_lo(ports: &[u16], mbit: u64) -> anyhow::Result<Caps> {
        let tc = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new("tc")
                .args(args)
                .output()
                .context("running tc (the caps need root and iproute2)")?;
            if !out.status.success() {
                bail!(
                    "tc {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        };
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
        let caps = Caps;
        tc(&[
            "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "99",
        ])?;
        tc(&[
            "class", "add", "dev", "lo", "parent", "1:", "classid", "1:99", "htb", "rate",
            "100gbit",
        ])?;
        for (i, port) in ports.iter().enumerate() {
            let class = format!("1:{}", 10 + i);
            let rate = format!("{mbit}mbit");
            tc(&[
                "class", "add", "dev", "lo", "parent", "1:", "classid", &class, "htb", "rate",
                &rate, "ceil", &rate,
            ])?;
            tc(&[
                "filter",
                "add",
                "dev",
                "lo",
                "protocol",
                "ip",
                "parent",
                "1:",
                "prio",
                "1",
                "u32",
                "match",
                "ip",
                "sport",
                &port.to_string(),
                "0xffff",
                "flowid",
                &class,
            ])?;
        }
        Ok(caps)
    }
}

impl Drop for Caps {
    fn drop(&mut self) {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
    }
}
