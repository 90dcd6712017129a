#!/usr/bin/env python3
"""segchat's channel fan-out beside established servers, interleaved.

    scripts/fanout-anchors.py [--rounds 3] [--seconds 8]
                              [--loads 100x500,100x5000,1000x50,burst]
                              [--systems inspircd,nats,segchat,segchat-quic]

Each round runs every load on every system in turn (A B C, A B C, ...),
so the systems share the same minutes of this machine; the table then
gives, per load and system, the median over the rounds of the latency
p50 / p99 (message sent -> received by a subscriber) and of deliveries per
second, and segchat's p99 as a multiple of each anchor's. A load `SxR` is
S subscribers and R messages per second for --seconds; `burst` is 20,000
messages to 100 subscribers sent as fast as the sender can.

- The anchors run as ../shared/bench/README.md says: `run-anchor.sh`
  starts the server and its load generator (`fanbench`, one publisher,
  100-byte messages); for the burst this script starts the server and
  runs `fanbench` at rate 0 itself, with the same commands.
- segchat runs as `segchat-bench chat --members S --rate R --duration
  SECONDS` (a host node, S members, 4 senders, 64-byte bodies, every link
  encrypted): members reach the host over TLS on TCP, as a node does a
  host it reaches directly. `segchat-quic` adds `--quic`: the links over
  QUIC, as to a host behind NAT. Its burst is `--rate
  200000 --duration 0.1`: 20,000 posts as fast as its 4 senders go (until
  2026-12-06, later: paced at 20,000 a second, which capped it near 1.5 M
  deliveries/s); its deliveries per second are counted from the first post
  to the slowest delivery (a lower bound).
- Every run records the CPU share the hypervisor stole meanwhile
  (/proc/stat); a run over 5 % is marked and left out of the medians.

Needs: `cargo build --release -p segchat -p segchat-bench`; the anchors'
directory (../shared/bench, or FANOUT_ANCHORS=DIR); the servers
(`apt-get install -y inspircd nats-server`). A system that is not there
is left out, and said so. Prints the table and one JSON line.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from localports import wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ANCHORS = os.environ.get("FANOUT_ANCHORS", os.path.join(ROOT, "..", "shared", "bench"))
BENCH = os.path.join(ROOT, "target", "release", "segchat-bench")
FANBENCH_TARGET = os.environ.get("FANBENCH_TARGET", os.path.join(tempfile.gettempdir(), "fanbench-target"))
STOLEN_LIMIT = 5.0
BURST = (100, 20_000)

# How run-anchor.sh starts each server (kept in step with it).
SERVERS = {
    "inspircd": (["inspircd", "--runasroot", "--nofork", "--nolog", "--config", "{a}/inspircd.conf"], 6669, "irc"),
    "nats": (["nats-server", "-a", "127.0.0.1", "-p", "4222"], 4222, "nats"),
}


def cpu_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def stolen_since(before):
    total, steal = cpu_ticks()
    return 100.0 * (steal - before[1]) / max(1, total - before[0])


def parse_fanbench(out):
    line = next((l for l in out.splitlines() if l.startswith("proto=")), None)
    if line is None:
        raise RuntimeError("no result line from fanbench:\n" + out[-2000:])
    kv = dict(re.findall(r"(\w+)=([^\s]+)", line))
    delivered, expected = (int(x) for x in kv["delivered"].split("/"))
    return {
        "p50_ms": int(kv["p50"]) / 1000.0,
        "p99_ms": int(kv["p99"]) / 1000.0,
        "deliveries_per_s": float(kv["deliveries_per_s"]),
        "delivered_pct": 100.0 * delivered / max(1, expected),
    }


def run_anchor(system, subs, rate, seconds):
    script = os.path.join(ANCHORS, "run-anchor.sh")
    out = subprocess.run(
        ["bash", script, system, str(subs), str(rate), str(seconds)],
        capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"run-anchor.sh {system} failed:\n{out.stderr[-2000:]}")
    return parse_fanbench(out.stdout)


def run_anchor_burst(system):
    argv, port, proto = SERVERS[system]
    argv = [a.format(a=ANCHORS) for a in argv]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 5.0)
        fanbench = os.path.join(FANBENCH_TARGET, "release", "fanbench")
        subs, count = BURST
        out = subprocess.run(
            [fanbench, proto, f"127.0.0.1:{port}", str(subs), "0", str(count), "100"],
            capture_output=True, text=True, timeout=600,
        )
        return parse_fanbench(out.stdout)
    finally:
        server.terminate()
        server.wait(timeout=10)


SEGCHATS = {"segchat": [], "segchat-quic": ["--quic"]}


def run_segchat(subs, rate, seconds, extra):
    out = subprocess.run(
        [BENCH, "chat", "--members", str(subs), "--rate", str(rate), "--duration", str(seconds)] + extra,
        capture_output=True, text=True, timeout=900,
    )
    line = next((l for l in reversed(out.stdout.splitlines()) if l.startswith("{")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError("segchat-bench chat failed:\n" + (out.stderr + out.stdout)[-2000:])
    r = json.loads(line)
    span = r["send_window_s"] + r["latency"]["max_ms"] / 1000.0
    return {
        "p50_ms": r["latency"]["p50_ms"],
        "p99_ms": r["latency"]["p99_ms"],
        "deliveries_per_s": r["deliveries"] / max(span, 1e-9),
        "delivered_pct": r["delivered_pct"],
    }


def one(system, load, seconds):
    if load == "burst":
        if system in SEGCHATS:
            # 20,000 posts as fast as the 4 senders go (paced at 200,000 a
            # second for 0.1 s), as the anchors' publisher is unpaced.
            return run_segchat(BURST[0], BURST[1] * 10, 0.1, SEGCHATS[system])
        return run_anchor_burst(system)
    subs, rate = load
    if system in SEGCHATS:
        return run_segchat(subs, rate, seconds, SEGCHATS[system])
    return run_anchor(system, subs, rate, seconds)


def available(system):
    if system in SEGCHATS:
        return os.access(BENCH, os.X_OK), f"{BENCH} (cargo build --release -p segchat -p segchat-bench)"
    binary = SERVERS[system][0][0]
    return shutil.which(binary) is not None, f"{binary} (apt-get install -y {binary})"


def parse_loads(text):
    loads = []
    for part in text.split(","):
        if part == "burst":
            loads.append("burst")
        else:
            s, r = part.split("x")
            loads.append((int(s), int(r)))
    return loads


def name_of(load):
    return "burst 20,000 to 100" if load == "burst" else f"{load[0]} x {load[1]:,}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--loads", default="100x500,100x5000,1000x50,burst")
    p.add_argument("--systems", default="inspircd,nats,segchat")
    args = p.parse_args()
    loads = parse_loads(args.loads)
    systems = []
    for s in args.systems.split(","):
        ok, what = available(s)
        if ok:
            systems.append(s)
        else:
            print(f"left out: {s} (needs {what})", file=sys.stderr)
    if not os.path.isfile(os.path.join(ANCHORS, "run-anchor.sh")):
        sys.exit(f"the anchors' directory is not at {ANCHORS} (set FANOUT_ANCHORS)")
    if any(s not in SEGCHATS for s in systems):
        subprocess.run(
            ["cargo", "build", "-q", "--release", "--manifest-path",
             os.path.join(ANCHORS, "fanbench", "Cargo.toml"), "--target-dir", FANBENCH_TARGET],
            check=True,
        )
    results = {}  # (load, system) -> [result]
    for rnd in range(1, args.rounds + 1):
        for load in loads:
            for system in systems:
                before = cpu_ticks()
                try:
                    r = one(system, load, args.seconds)
                except Exception as e:  # one failed run is reported, not fatal
                    print(f"round {rnd} {name_of(load)} {system}: failed: {e}", file=sys.stderr)
                    continue
                r["stolen_pct"] = stolen_since(before)
                mark = " (stolen: left out)" if r["stolen_pct"] > STOLEN_LIMIT else ""
                print(
                    f"round {rnd} {name_of(load):>20} {system:>12}: p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, {r['deliveries_per_s'] / 1e6:.2f} M deliveries/s, "
                    f"{r['delivered_pct']:.1f} % delivered, stolen {r['stolen_pct']:.1f} %{mark}",
                    flush=True,
                )
                results.setdefault((name_of(load), system), []).append(r)

    def med(load, system, key):
        rs = [r for r in results.get((load, system), []) if r["stolen_pct"] <= STOLEN_LIMIT]
        return (statistics.median(r[key] for r in rs), len(rs)) if rs else (None, 0)

    print()
    print("| load | system | rounds | p50 (median) | p99 (median) | deliveries/s (median) "
          "| segchat p99 ÷ this | segchat deliveries/s ÷ this |")
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for load in map(name_of, loads):
        ours, _ = med(load, "segchat", "p99_ms")
        ours_rate, _ = med(load, "segchat", "deliveries_per_s")
        for system in systems:
            p50, n = med(load, system, "p50_ms")
            p99, _ = med(load, system, "p99_ms")
            rate, _ = med(load, system, "deliveries_per_s")
            if p50 is None:
                continue
            other = system not in SEGCHATS
            ratio = f"{ours / p99:.2f}" if ours is not None and other and p99 else "-"
            by_rate = f"{ours_rate / rate:.2f}" if ours_rate is not None and other and rate else "-"
            print(f"| {load} | {system} | {n} | {p50:.2f} ms | {p99:.2f} ms | {rate / 1e6:.2f} M "
                  f"| {ratio} | {by_rate} |")
            summary.append({"load": load, "system": system, "rounds": n, "p50_ms": p50,
                            "p99_ms": p99, "deliveries_per_s": rate})
    print(json.dumps({"bench": "fanout-anchors", "results": summary}))


if __name__ == "__main__":
    main()
