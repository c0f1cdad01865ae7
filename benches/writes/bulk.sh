#!/usr/bin/env bash
# Bulk-load rates (vectors/s), three ways into an empty collection, in one
# run against a real quarryd (default sync WAL policy), at each DIM:
#   build   BuildIndex from a file on the server (a bulk load: one segment
#           built at batch speed);
#   stream  BulkUpsert, one stream of --batch 256 (a stream that begins on
#           an empty collection is buffered and bulk-loaded too);
#   unary   Upsert RPCs of BATCH_UNARY points each (default 1), one at a
#           time: the write path (WAL fsync, fresh-index insert, flushes).
#
#   benches/writes/bulk.sh [N] [DIMS] [N_UNARY]
#
# Data: `quarryctl gen` sets cached under ~/.cache/quarry-exp/bulk-<N>-<DIM>.
# QUARRY_BIN=dir runs the binaries in dir (no build). JSON lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}; DIMS=${2:-"384 1024"}; NU=${3:-2000}
BATCH_UNARY=${BATCH_UNARY:-1}
if [ -n "${QUARRY_BIN:-}" ]; then T=$QUARRY_BIN; else
  T="${CARGO_TARGET_DIR:-target}/release"
  cargo build --release --bin quarryd --bin quarryctl >&2
fi
work=$(mktemp -d); trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
chmod 755 "$work"
for DIM in $DIMS; do
  D=~/.cache/quarry-exp/bulk-$N-$DIM
  [ -f "$D/base.fbin" ] || "$T/quarryctl" gen --out "$D" --n "$N" --dim "$DIM" --queries 10 --no-lid >&2
  rm -rf "$work/data"
  cat > "$work/q.toml" <<CFG
listen = "127.0.0.1:7794"
metrics_listen = "127.0.0.1:7795"
CFG
  "$T/quarryd" --config "$work/q.toml" --data-dir "$work/data" 2>"$work/log" &
  echo $! > "$work/pid"
  for _ in $(seq 1000); do grep -q "quarryd listening" "$work/log" && break; sleep 0.01; done
  C=("$T/quarryctl" collections --server http://127.0.0.1:7794)
  for how in build stream unary; do
    "${C[@]}" create "$how" --dim "$DIM" >/dev/null
    t0=$(date +%s.%N)
    case $how in
      build) "${C[@]}" build "$how" --source "$D/base.fbin" >/dev/null 2>&1; n=$N ;;
      stream) "${C[@]}" upsert "$how" --source "$D/base.fbin" --batch 256 >/dev/null; n=$N ;;
      unary) "${C[@]}" upsert "$how" --source "$D/base.fbin" --batch "$BATCH_UNARY" --limit "$NU" --unary >/dev/null; n=$NU ;;
    esac
    t1=$(date +%s.%N)
    got=$("${C[@]}" describe "$how" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["vectors"])')
    python3 -c 'import json,sys; n,t0,t1=int(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5]); print(json.dumps({"bench":"bulk","how":sys.argv[1],"dim":int(sys.argv[2]),"vectors":n,"live":int(sys.argv[6]),"seconds":round(t1-t0,3),"vectors_per_second":round(n/(t1-t0),1)}))' \
      "$how" "$DIM" "$n" "$t0" "$t1" "$got"
  done
  kill -TERM "$(cat "$work/pid")"; wait "$(cat "$work/pid")" 2>/dev/null || true
done
