#!/usr/bin/env bash
# 10M x 96-d synthetic set, exact ground truth for 1000 queries, a
# partitioned build under a budget that forces >= 3 shards, then search
# (O_DIRECT reads). Usage: run-10m.sh QUARRYCTL DIR BUDGET_GB
# Stopped and run again, the build resumes after its last finished shard
# (DIR/idx/.partition keeps them). Env R and L (default 64 and 100), LS
# (search list sizes, default 20,40,60,100,150,200,300).
set -euo pipefail
Q=$1; D=$2; B=$3
mkdir -p "$D"
if [ ! -f "$D/data/meta.json" ]; then
  /usr/bin/time -v "$Q" gen --out "$D/data" --n 10000000 --dim 96 --queries 1000 > "$D/gen.out" 2> "$D/gen.log"
fi
if [ ! -f "$D/data/gt.ibin" ]; then
  /usr/bin/time -v "$Q" gt --base "$D/data/base.fbin" --queries "$D/data/queries.fbin" --out "$D/data/gt.ibin" --k 100 > "$D/gt.out" 2> "$D/gt.log"
fi
if [ ! -f "$D/idx/manifest.json" ]; then
  # Appends: a resumed build keeps the earlier runs' logs.
  /usr/bin/time -a -o "$D/build.time" -v "$Q" build --base "$D/data/base.fbin" --index "$D/idx" \
    --R "${R:-64}" --L "${L:-100}" --pq-bytes 48 --disk-vector f32 --threads 2 --build-ram-gb "$B" \
    > "$D/build.json" 2>> "$D/build.log"
fi
for rep in 1 2; do
  "$Q" search --index "$D/idx" --queries "$D/data/queries.fbin" --gt "$D/data/gt.ibin" --L "${LS:-20,40,60,100,150,200,300}" --W 4 --json \
    > "$D/search-$rep.jsonl" 2> "$D/search-$rep.log"
done
