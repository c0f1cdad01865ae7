#!/usr/bin/env bash
# The demo of the disk index: generate a clustered data set, compute exact
# ground truth, build a Vamana + PQ index on 4 KiB sectors, verify it, and
# search it with pipelined io_uring beam search, printing recall, latency,
# QPS and IOs per L.
#
#   bash tools/demo.sh [N] [DIM]      (default 100000 x 128; data and index
#                                      go to ~/.cache/quarry-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
dim=${2:-128}
out=${QUARRY_DEMO_DIR:-$HOME/.cache/quarry-demo}/synth-$n-$dim
cargo build --release -p quarry-tools
q=${CARGO_TARGET_DIR:-target}/release/quarryctl
mkdir -p "$out"
[ -f "$out/base.fbin" ] || "$q" gen --out "$out" --n "$n" --dim "$dim" --queries 1000
[ -f "$out/gt.ibin" ] || "$q" gt --base "$out/base.fbin" --queries "$out/queries.fbin" --out "$out/gt.ibin"
[ -f "$out/index/manifest.json" ] || "$q" build --base "$out/base.fbin" --index "$out/index" --R 48 --L 96 --pq-bytes 32 --disk-vector f16
"$q" verify --index "$out/index"
"$q" search --index "$out/index" --queries "$out/queries.fbin" --gt "$out/gt.ibin" --L 20,30,50,100 --W 4 --threads 2
