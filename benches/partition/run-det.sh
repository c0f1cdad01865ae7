#!/usr/bin/env bash
# Determinism of the partitioned build on the dev set: threads 1, 2, 8.
set -euo pipefail
Q=$1; OUT=$2
D=~/.cache/quarry-data/npm-minilm-384
mkdir -p "$OUT"
for t in 2 8 1; do
  [ -f "$OUT/t$t/manifest.json" ] || /usr/bin/time -v "$Q" build --base $D/base.fbin --R 64 --L 100 --pq-bytes 64 --disk-vector f16 \
     --threads $t --build-ram-gb 0.4 --index "$OUT/t$t" > "$OUT/t$t.json" 2> "$OUT/t$t.log"
done
for t in 8 1; do
  for f in $(cd "$OUT/t2" && ls); do
    [ "$f" = build_report.json ] && continue
    cmp "$OUT/t2/$f" "$OUT/t$t/$f" && echo "t2 == t$t: $f" || echo "DIFFER t2 vs t$t: $f"
  done
done
