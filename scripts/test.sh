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

echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
# The web UI in a real headless Chromium against real processes
# (installs Chromium and playwright-core when missing).
if [ "${SEGCHAT_SKIP_E2E:-}" = 1 ]; then
    echo "== browser tests skipped (SEGCHAT_SKIP_E2E=1)"
else
    ./e2e/run.sh
fi
