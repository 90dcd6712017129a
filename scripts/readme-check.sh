#!/usr/bin/env bash
# The README's two commands, as a newcomer types them, from a fresh clone.
#
# - The run command (the README's "Two commands" block, the line that
#   runs `up`) is taken from the README itself, run as written in a fresh
#   clone of this repository with a fresh data directory (XDG_DATA_HOME),
#   and must print its web UI link; the link must serve the page, and the
#   node must reach its server and answer its API with the token it wrote.
# - The test command is the other line of that block; CI (`.ci/run`) runs
#   it on a fresh clone, so this checks `.ci/run` runs exactly it (running
#   it here again would run this script again).
#
# The clone builds in this checkout's `target/readme` (CARGO_TARGET_DIR) so a
# second run builds nothing, and is built without optimisation
# (CARGO_PROFILE_RELEASE_OPT_LEVEL=0): the command line is the README's,
# only the compiler works less. SEGCHAT_README_OPTIMIZED=1 builds it as a
# newcomer would, optimised (about 10 minutes more on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

block=$(awk '/^## Two commands/{on=1} on && /^```sh/{inblock=1; next} inblock && /^```/{exit} inblock{print}' README.md)
run_cmd=$(printf '%s\n' "$block" | grep -m1 -E '^cargo run .*-- up' | sed -E 's/[[:space:]]+#.*$//')
test_cmd=$(printf '%s\n' "$block" | grep -m1 -vE '^cargo run ' | sed -E 's/[[:space:]]+#.*$//')
if [ -z "$run_cmd" ] || [ -z "$test_cmd" ]; then
    echo "error: README.md's \"Two commands\" block does not hold a run line and a test line:" >&2
    printf '%s\n' "$block" >&2
    exit 1
fi
echo "run command:  $run_cmd"
echo "test command: $test_cmd"

if ! grep -qF "exec $test_cmd" .ci/run; then
    echo "error: .ci/run does not run the README's test command ($test_cmd)" >&2
    exit 1
fi

work=$(mktemp -d /tmp/segchat-readme-XXXXXX)
child=""
cleanup() {
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$child" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/segchat"
export CARGO_TARGET_DIR="$repo/target/readme"
export XDG_DATA_HOME="$work/data"
if [ "${SEGCHAT_README_OPTIMIZED:-}" != 1 ]; then
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=0
    export CARGO_PROFILE_RELEASE_DEBUG=false
    export CARGO_PROFILE_RELEASE_INCREMENTAL=true
fi
# Nothing of the caller's settings: a newcomer has none.
for v in $(env | grep -oE '^SEGCHAT_[A-Z_]+' || true); do unset "$v"; done

out="$work/up.out"
(cd "$work/segchat" && exec bash -c "$run_cmd") >"$out" 2>"$work/up.err" &
child=$!

# Building from scratch takes minutes; starting, seconds.
url=""
for _ in $(seq 3600); do
    url=$(sed -nE 's/^web UI: (http[^ ]+)$/\1/p' "$out" | head -n1)
    [ -n "$url" ] && break
    if ! kill -0 "$child" 2>/dev/null; then
        echo "error: \`$run_cmd\` stopped before printing its web UI link:" >&2
        tail -n 40 "$work/up.err" >&2
        cat "$out" >&2
        exit 1
    fi
    sleep 0.5
done
if [ -z "$url" ]; then
    echo "error: \`$run_cmd\` printed no web UI link within 30 minutes" >&2
    tail -n 40 "$work/up.err" >&2
    exit 1
fi
echo "it printed:"
sed 's/^/  /' "$out"

grep -qE '^server key: [0-9a-f]{64}$' "$out" || { echo "error: no server key printed" >&2; exit 1; }
api_file="$XDG_DATA_HOME/segchat/node/api.json"
[ -f "$api_file" ] || { echo "error: no $api_file" >&2; exit 1; }
api=$(sed -nE 's/.*"url": *"([^"]+)".*/\1/p' "$api_file")
token=$(sed -nE 's/.*"token": *"([^"]+)".*/\1/p' "$api_file")

# The link signs the browser in (a cookie) and leads to the page.
page=$(curl -fsSL --max-time 10 -c "$work/cookies" -b "$work/cookies" "$url")
grep -q '<title>' <<<"$page" || { echo "error: the web UI link did not serve the page" >&2; exit 1; }

# The node reaches its server.
for _ in $(seq 100); do
    node=$(curl -fsS --max-time 5 -H "Authorization: Bearer $token" "$api/api/v1/node" || true)
    grep -q '"server_connected":true' <<<"$node" && break
    sleep 0.2
done
grep -q '"server_connected":true' <<<"$node" || { echo "error: the node did not reach its server: $node" >&2; exit 1; }
echo "ok: the README's run command works from a fresh clone (web UI served, node connected to its server)"
