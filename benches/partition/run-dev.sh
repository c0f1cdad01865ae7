#!/usr/bin/env bash
# Partitioned vs one-pass build at equal L (issue 20), on the dev set by
# default. Usage: run-dev.sh QUARRYCTL OUTDIR BUDGET_GB
# Env: DATA (a directory with base.fbin, queries.fbin, gt.ibin), PQ (64),
# DISK (f16), LS (the search list sizes, "20,25,30,40,50"), CUTS (the
# merge cuts to build, "prune shuffle").
set -euo pipefail
Q=$1; OUT=$2; BUDGET=$3
D=${DATA:-~/.cache/quarry-data/npm-minilm-384}
LS=${LS:-20,25,30,40,50}
mkdir -p "$OUT"
common=(--base $D/base.fbin --R 64 --L 100 --pq-bytes "${PQ:-64}" --disk-vector "${DISK:-f16}" --threads 2)
build() { # name extra...
  local name=$1; shift
  if [ ! -f "$OUT/$name/manifest.json" ]; then
    /usr/bin/time -v "$Q" build "${common[@]}" --index "$OUT/$name" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  fi
}
build one --build-ram-gb 16
CUTS=${CUTS:-prune shuffle}
for cut in $CUTS; do
  build "$cut" --build-ram-gb "$BUDGET" --merge-cut "$cut"
done
for rep in 1 2; do
  for name in one $CUTS; do
    "$Q" search --index "$OUT/$name" --queries $D/queries.fbin --gt $D/gt.ibin --L "$LS" --W 4 --json \
      > "$OUT/search-$name-$rep.jsonl" 2> "$OUT/search-$name-$rep.log"
  done
done
