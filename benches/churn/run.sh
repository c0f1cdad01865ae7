#!/usr/bin/env bash
# Recall stability of a mutable collection under churn (benches/README.md,
# "Churn"). Builds the `churn` binary and runs it niced; every argument is
# passed to it (`--help` lists them). JSON lines go to $OUT.jsonl, progress
# and the final markdown table to $OUT.log (and the terminal).
#
#   benches/churn/run.sh                         # the dev set, defaults
#   OUT=/tmp/churn-smoke benches/churn/run.sh --max-base 6000 --queries 100 --rounds 2
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
out=${OUT:-$HOME/.cache/quarry-exp/results/churn-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$(dirname "$out")"
(cd "$repo" && CARGO_TARGET_DIR="$target" nice -n 10 cargo build --release -p quarry-benches --bin churn)
cmd=(nice -n 10 "$target/release/churn" "$@")
{
    echo "command: ${cmd[*]}"
    echo "repo: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "machine: $(uname -r), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out.log" >&2
"${cmd[@]}" 2>&1 > "$out.jsonl" | tee -a "$out.log" >&2
echo "results: $out.jsonl (JSON lines), $out.log (progress and markdown)" >&2
