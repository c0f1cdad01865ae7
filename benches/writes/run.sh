#!/usr/bin/env bash
# Writes under load, in one run against a real quarryd (mutable collection,
# default sync WAL policy):
#   1. sustained upsert rate (vectors/s) over BulkUpsert at DIM (1024-d by
#      default) into an empty mutable collection, background flushes
#      included;
#   2. search latency (1 client, closed loop) with no writes;
#   3. the same while a second BulkUpsert stream writes;
#   4. the same during a compaction (merge of every segment and the fresh
#      index), with the merge's duration and quarryd's peak RSS (VmHWM)
#      before and after it.
#
#   benches/writes/run.sh [N] [DIM] [L]
#
# Data: a synthetic clustered set from `quarryctl gen` (N + N/2 vectors,
# cached under ~/.cache/quarry-exp/writes-<N>-<DIM>), ground truth over the
# first N for recall in phase 2. Results: JSON lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-40000}; DIM=${2:-1024}; L=${3:-64}
DUR=${DUR:-10}
# QUARRY_BIN=dir runs the binaries in dir (no build): benches/writes/ab.sh
# uses it to put two builds side by side.
if [ -n "${QUARRY_BIN:-}" ]; then T=$QUARRY_BIN; else
  T="${CARGO_TARGET_DIR:-target}/release"
  cargo build --release --bin quarryd --bin quarryctl --bin quarry-bench >&2
fi
D=~/.cache/quarry-exp/writes-$N-$DIM
if [ ! -f "$D/gt.ibin" ]; then
  "$T/quarryctl" gen --out "$D/all" --n $((N + N / 2)) --dim "$DIM" --queries 1000 --no-lid >&2
  python3 - "$D/all/base.fbin" "$D" "$N" <<'PY'
import struct, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src, "rb") as f:
    total, dim = struct.unpack("<II", f.read(8))
    for name, rows in (("first.fbin", n), ("second.fbin", total - n)):
        with open(f"{out}/{name}", "wb") as o:
            o.write(struct.pack("<II", rows, dim))
            o.write(f.read(rows * dim * 4))
PY
  cp "$D/all/queries.fbin" "$D/queries.fbin"
  "$T/quarryctl" gt --base "$D/first.fbin" --queries "$D/queries.fbin" --out "$D/gt.ibin" --k 10 >&2
fi
work=$(mktemp -d); trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/q.toml" <<EOF
listen = "127.0.0.1:7790"
metrics_listen = "127.0.0.1:7791"
flush_at = $((N / 4))
write_stall_at = $N
max_segments = 4
# Flushed segments (about N/4) in RAM, merged ones on disk: the ratio of a
# large collection (quarryd's default is 100000, which would hold this
# whole bench set in RAM).
ram_segment_nodes = $((N / 4 + N / 8))
EOF
"$T/quarryd" --config "$work/q.toml" --data-dir "$work/data" 2>"$work/log" &
srv=$!; echo $srv > "$work/pid"
for _ in $(seq 1000); do grep -q "quarryd listening" "$work/log" && break; sleep 0.01; done
C=("$T/quarryctl" collections --json --server http://127.0.0.1:7790)
hwm() { awk '/VmHWM/ {print $2 * 1024}' "/proc/$srv/status"; }
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$srv/status"; }
idle() {  # wait until no flush runs and nothing is left to flush
  for _ in $(seq 6000); do
    s=$("${C[@]}" describe w)
    python3 -c 'import json,sys; w=json.loads(sys.argv[1])["writes"]; sys.exit(0 if not w["flushing"] and w["fresh_vectors"] < int(sys.argv[2]) else 1)' "$s" "$((N / 4))" && return 0
    sleep 0.2
  done
}
"${C[@]}" create w --dim "$DIM" --mutable >&2
echo "== 1. upsert $N x $DIM over BulkUpsert" >&2
"${C[@]}" upsert w --source "$D/first.fbin" --batch 256 | python3 -c 'import json,sys; d=json.load(sys.stdin); d["phase"]="upsert"; print(json.dumps(d))'
idle
B=("$T/quarry-bench" --server http://127.0.0.1:7790 --collection w --queries "$D/queries.fbin" --k 10 --L "$L" --W 8 --clients 1 --duration "$DUR")
echo "== 2. search, no writes" >&2
"${B[@]}" --gt "$D/gt.ibin" --label search-idle
echo "== 3. search while BulkUpsert writes" >&2
"${C[@]}" upsert w --source "$D/second.fbin" --first-id "$N" --batch 256 > "$work/up2.json" &
up=$!
sleep 1
"${B[@]}" --label search-during-writes
wait $up
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["phase"]="upsert-during-search"; print(json.dumps(d))' "$work/up2.json"
idle
echo "== 4. search during a compaction" >&2
h0=$(hwm); r0=$(rss)
t0=$(date +%s.%N)
"${C[@]}" compact w > "$work/compact.json" 2>"$work/compact.err" &
cp=$!
sleep 1
"${B[@]}" --label search-during-merge
wait $cp
t1=$(date +%s.%N)
h1=$(hwm)
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({"phase": "compact", "merge_seconds": d["elapsed_seconds"], "vectors": d["vectors"], "rss_before": int(sys.argv[2]), "peak_rss_before": int(sys.argv[3]), "peak_rss_after": int(sys.argv[4]), "wall_seconds": float(sys.argv[6]) - float(sys.argv[5])}))' "$work/compact.json" "$r0" "$h0" "$h1" "$t0" "$t1"
echo "== 5. search after the compaction" >&2
"${B[@]}" --label search-after-merge
"${C[@]}" describe w --json >&2
kill -TERM $srv; wait $srv || true
grep -E "flushed|WARN|ERROR" "$work/log" >&2 || true
