#!/usr/bin/env bash
# Runs every fuzz target in turn, each for SECONDS (default 600), under
# `nice -n 19`, one at a time; libFuzzer's log of each goes to
# fuzz/logs/<target>.log and its closing stats are printed. New inputs go
# into fuzz/corpus/<target>/ (minimise with `cargo fuzz cmin` afterwards,
# see docs/FUZZING.md). Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build
mkdir -p logs
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    status=0
    nice -n 19 cargo fuzz run "$t" -- \
        -max_total_time="$secs" -print_final_stats=1 \
        -rss_limit_mb=1024 -malloc_limit_mb=64 \
        >"logs/$t.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "logs/$t.log" || true
    grep -E 'cov: [0-9]+' "logs/$t.log" | tail -1 || true
    if [ "$status" -ne 0 ]; then
        echo "!! $t exited $status; see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    fi
done
