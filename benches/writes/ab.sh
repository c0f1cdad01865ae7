#!/usr/bin/env bash
# Two builds of quarryd side by side on the writes bench (run.sh): search
# latency idle, during a BulkUpsert stream (background flushes) and during
# a compaction (a merge), interleaved A B B A ... so that the host's slow
# and quiet phases fall on both. Each JSON line gains "side": "A" or "B".
#
#   benches/writes/ab.sh DIR_A DIR_B [ROUNDS] [N] [DIM] [L]
#
# DIR_A and DIR_B hold quarryd, quarryctl and quarry-bench (e.g. a copy of
# an older target/release and the current one).
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$1; B=$2; ROUNDS=${3:-2}; shift 3 || true
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    dir=$A; [ "$side" = B ] && dir=$B
    echo "== round $r side $side ($dir)" >&2
    QUARRY_BIN=$dir bash benches/writes/run.sh "$@" | python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line); d["side"] = sys.argv[1]; d["round"] = int(sys.argv[2]); print(json.dumps(d), flush=True)' "$side" "$r"
  done
done
