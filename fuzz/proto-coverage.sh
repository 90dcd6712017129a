#!/usr/bin/env bash
# How much of segchat-proto a target's corpus reaches: replays
# fuzz/corpus/<target>/ once (-runs=0) with libFuzzer's -print_coverage=1
# and adds up the edges of the functions whose source is in
# crates/segchat-proto/src. Left out: Debug impls, and serde's
# `visit_bytes` / `expecting`, which JSON never calls (keys are strings;
# `expecting` only words an error). Functions the binary
# never calls at all are not linked in, so this is "of what the target
# links", not of the whole crate. Usage: fuzz/proto-coverage.sh TARGET...
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
cargo fuzz build >/dev/null 2>&1
bin=target/x86_64-unknown-linux-gnu/release
for t in "$@"; do
    nice -n 19 "$bin/$t" -runs=0 -print_coverage=1 "corpus/$t" 2>&1 |
        grep -E '^(UN)?COVERED_FUNC: .*/crates/segchat-proto/src/' |
        grep -v -e 'as core::fmt::Debug>::fmt' -e '>::visit_bytes::' -e '>::expecting ' |
        awk -v t="$t" '{
            split($5, e, "/"); covered += e[1]; total += e[2]; n++
            if ($1 == "UNCOVERED_FUNC:") { missed++ }
        } END {
            printf "%s: segchat-proto edges %d of %d (%.0f%%) in %d functions, %d of them never entered\n",
                t, covered, total, total ? 100 * covered / total : 0, n, missed
        }'
done
