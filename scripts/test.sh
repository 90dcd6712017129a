#!/usr/bin/env bash
# Runs every check and test segchat has. This is the README's test command
# and what CI runs; it installs what the tests need on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; get Rust from https://rustup.rs" >&2
    exit 1
fi
# The bundled SQLite and argon2 build with the C compiler.
if ! command -v cc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq build-essential
    else
        echo "error: a C compiler is needed (e.g. apt-get install build-essential)" >&2
        exit 1
    fi
fi

# The fault-injection suite (crates/segchat/tests/faults) cuts links with
# network namespaces and nftables and skews clocks with libfaketime. As
# root, install what is missing and make its scenarios fail rather than
# skip; otherwise they print why they skip.
if [ "$(id -u)" = 0 ]; then
    missing=""
    command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
    command -v nft >/dev/null 2>&1 || missing="$missing nftables"
    command -v faketime >/dev/null 2>&1 || missing="$missing faketime"
    command -v tcpdump >/dev/null 2>&1 || missing="$missing tcpdump"
    command -v curl >/dev/null 2>&1 || missing="$missing curl"
    # The store suite and tests/postgres.rs run a private PostgreSQL.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
        || missing="$missing postgresql"
    # tests/cluster.rs links server instances through a private nats-server.
    command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] \
        || missing="$missing nats-server"
    if [ -n "$missing" ]; then
        if command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq $missing
        else
            echo "error: the fault-injection suite needs:$missing" >&2
            exit 1
        fi
    fi
    export SEGCHAT_FAULTS_STRICT=1
else
    echo "note: not root: the partition and full-disk fault scenarios will be skipped" >&2
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
        echo "error: the tests run a private PostgreSQL: apt-get install postgresql" >&2
        exit 1
    fi
    if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
        echo "error: the tests run a private NATS: apt-get install nats-server" >&2
        exit 1
    fi
fi

echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
# The fuzz targets' checks, replayed over the committed corpus without
# libFuzzer: keeps the fuzz crate (outside the workspace) compiling and the
# corpus passing as the decoders change. Fuzzing itself: docs/FUZZING.md.
echo "== fuzz corpus replay"
cargo test --locked --manifest-path fuzz/Cargo.toml -p segchat-fuzz-check
# The web UI in a real headless Chromium against real processes
# (installs Chromium and playwright-core when missing).
echo "== the README's run command, from a fresh clone"
./scripts/readme-check.sh
if [ "${SEGCHAT_SKIP_E2E:-}" = 1 ]; then
    echo "== browser tests skipped (SEGCHAT_SKIP_E2E=1)"
else
    ./e2e/run.sh
fi
