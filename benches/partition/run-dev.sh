#!/usr/bin/env bash
# Partitioned vs one-pass build on the dev set at equal L (issue 20).
# Usage: run-dev.sh QUARRYCTL OUTDIR BUDGET_GB
set -euo pipefail
Q=$1; OUT=$2; BUDGET=$3
D=~/.cache/quarry-data/npm-minilm-384
mkdir -p "$OUT"
common=(--base $D/base.fbin --R 64 --L 100 --pq-bytes 64 --disk-vector f16 --threads 2)
build() { # name extra...
  local name=$1; shift
  if [ ! -f "$OUT/$name/manifest.json" ]; then
    /usr/bin/time -v "$Q" build "${common[@]}" --index "$OUT/$name" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  fi
}
build one --build-ram-gb 16
build prune --build-ram-gb "$BUDGET" --merge-cut prune
build shuffle --build-ram-gb "$BUDGET" --merge-cut shuffle
for rep in 1 2; do
  for name in one prune shuffle; do
    "$Q" search --index "$OUT/$name" --queries $D/queries.fbin --gt $D/gt.ibin --L 20,25,30,40,50 --W 4 --json \
      > "$OUT/search-$name-$rep.jsonl" 2> "$OUT/search-$name-$rep.log"
  done
done
