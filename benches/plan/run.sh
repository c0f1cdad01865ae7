#!/usr/bin/env bash
# Measure the costs `quarryctl plan` is fitted on: one-pass builds of the
# first N rows of one data set at several N, each searched over a sweep of
# L (O_DIRECT reads, exact ground truth), a hot-node cache sweep at one N,
# and the device's random-read IOPS (fio). Writes one JSON line per search
# point (the search row plus its build and index) to OUT.
#
# Usage: run.sh QUARRYCTL DATA_DIR WORK_DIR OUT FAMILY [SIZES] [CACHE_N]
#   DATA_DIR holds base.fbin and queries.fbin (LID read from meta.json if
#   there). SIZES defaults to "100000 300000 1000000 3000000"; CACHE_N
#   (default 1000000) is the size swept over cache shares.
# Env: R (32), L (50), PQ (48), DISK (f32), LS (search L list), SHARES
# (cache shares), W (4). Prefix files, ground truth and indexes are kept
# in WORK_DIR and reused when present.
set -euo pipefail
Q=$1; DATA=$2; WORK=$3; OUT=$4; FAMILY=$5
SIZES=${6:-"100000 300000 1000000 3000000"}
CACHE_N=${7:-1000000}
R=${R:-32}; L=${L:-50}; PQ=${PQ:-48}; DISK=${DISK:-f32}; W=${W:-4}
LS=${LS:-10,12,15,20,30,40,60,80,100,150}
SHARES=${SHARES:-"0.01 0.05 0.1 0.25 0.5 1.0"}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
if [ ! -f "$WORK/fio.json" ]; then
  command -v fio >/dev/null || apt-get install -y fio >/dev/null
  fio --name=qd64 --filename="$WORK/fio.dat" --size=2G --rw=randread --bs=4k --direct=1 \
      --ioengine=io_uring --iodepth=64 --runtime=20 --time_based --output-format=json > "$WORK/fio.json"
  rm -f "$WORK/fio.dat"
fi
: > "$OUT.tmp"
for n in $SIZES; do
  d="$WORK/n$n"; mkdir -p "$d"
  if [ ! -f "$d/base.fbin" ]; then
    python3 "$HERE/prefix.py" "$DATA/base.fbin" "$d/base.fbin.part" "$n" && mv "$d/base.fbin.part" "$d/base.fbin"
  fi
  [ -f "$d/gt.ibin" ] || "$Q" gt --base "$d/base.fbin" --queries "$DATA/queries.fbin" --out "$d/gt.ibin" --k 100 > "$d/gt.out" 2> "$d/gt.log"
  if [ ! -f "$d/idx/manifest.json" ]; then
    /usr/bin/time -o "$d/build.time" -v "$Q" build --base "$d/base.fbin" --index "$d/idx" \
      --R "$R" --L "$L" --pq-bytes "$PQ" --disk-vector "$DISK" --threads 2 > "$d/build.json" 2> "$d/build.log"
  fi
  shares=0
  [ "$n" = "$CACHE_N" ] && shares="0 $SHARES"
  for s in $shares; do
    c=$(python3 -c "print(int(round($s * $n)))")
    f="$d/search-c$c.jsonl"
    [ -s "$f" ] || "$Q" search --index "$d/idx" --queries "$DATA/queries.fbin" --gt "$d/gt.ibin" \
      --L "$LS" --W "$W" --cache-nodes "$c" --json > "$f" 2> "$d/search-c$c.log"
    python3 "$HERE/rows.py" --family "$FAMILY" --n "$n" --R "$R" --build-l "$L" --pq-bytes "$PQ" \
      --disk "$DISK" --build "$d/build.json" --index "$d/idx" --fio "$WORK/fio.json" \
      --meta "$DATA/meta.json" --search "$f" --base "$d/base.fbin" >> "$OUT.tmp"
  done
done
mv "$OUT.tmp" "$OUT"
echo "wrote $(wc -l < "$OUT") points to $OUT"
