#!/usr/bin/env bash
# Browser tests of the web UI: builds the segchat binary, installs what the
# tests need when it is missing (Debian's Chromium, playwright-core from
# npm), and runs them against a real server and real nodes.
set -euo pipefail
cd "$(dirname "$0")"

echo "== e2e: build segchat"
(cd .. && cargo build --bin segchat --locked)
export SEGCHAT_BIN="${SEGCHAT_BIN:-${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}/debug/segchat}"

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== e2e: install chromium"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "error: the browser tests need Chromium at $chromium (apt-get install chromium, or set CHROMIUM_PATH)" >&2
        exit 1
    fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "error: the browser tests need Node.js 20+ and npm" >&2
        exit 1
    fi
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
    echo "== e2e: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi

echo "== e2e: browser tests (screenshots in $(cd .. && pwd)/screenshots)"
node --test --test-concurrency=1 --test-timeout=300000 tests/
