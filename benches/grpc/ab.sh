#!/usr/bin/env bash
# A/B of two quarryd configurations on the 1-client added latency.
#
# On this project's shared 2-vCPU VM the added p50 of one interleaved
# round moves by tens of microseconds from one minute to the next with the
# code unchanged (docs/results/grpc-dev-2026-11-22d.md: 73–228 µs), and a
# 40 µs difference seen in six A-then-B pairs vanished when the order was
# swapped. So this script runs both configurations at once (A on port
# 7790, B on 7792, each with its own data directory adopting the same
# index) and measures them in PAIRS pairs of `quarry-bench --interleave`
# runs, A first in odd pairs and B first in even ones. The summary line
# gives each side's rounds and median, and the medians of whichever side
# ran first and second in a pair: when those two differ by as much as A
# and B do, the A/B difference is the order, not the configuration.
#
#   benches/grpc/ab.sh INDEX_DIR DATA_DIR CONFIG_A CONFIG_B [PAIRS]
#
# CONFIG_A / CONFIG_B: quarryd TOML files ("-" for the defaults). PAIRS
# defaults to 6. Env: DUR (seconds per round, default 5), L (25), W (8);
# QUARRYD_A / QUARRYD_B: the quarryd binary of each side (default: this
# tree's release build), to compare two releases on the same index with
# the same client. Results: one JSON line per round, then the summary line
# (medians per side of the added p50 and of the gRPC p50, p99 and recall),
# on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 4 ]; then
  echo "usage: benches/grpc/ab.sh INDEX_DIR DATA_DIR CONFIG_A CONFIG_B [PAIRS]" >&2; exit 2
fi
IDX=$(cd "$1" && pwd); DATA=$(cd "$2" && pwd); PAIRS=${5:-6}
DUR=${DUR:-5}; L=${L:-25}; W=${W:-8}
config_args() {  # file or "-": the --config argument, checked
  if [ "$1" = "-" ]; then return; fi
  [ -f "$1" ] || { echo "no such config file: $1" >&2; exit 2; }
  printf '%s\n' --config "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}
mapfile -t CA < <(config_args "$3"); mapfile -t CB < <(config_args "$4")
T="${CARGO_TARGET_DIR:-target}/release"
cargo build --release --bin quarryd --bin quarry-bench >&2
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
. benches/grpc/lib.sh
for s in a b; do adopt_index "$IDX" "$work/$s"; done
start_quarryd "${QUARRYD_A:-$T/quarryd}" "$work/a" 7790 "$work/a.log" "${CA[@]}"; pids+=("$QUARRYD_PID")
start_quarryd "${QUARRYD_B:-$T/quarryd}" "$work/b" 7792 "$work/b.log" "${CB[@]}"; pids+=("$QUARRYD_PID")
Q=(--queries "$DATA/queries.fbin" --gt "$DATA/gt.ibin" --k 10 --L "$L" --W "$W")
one() {  # side (a|b), pair, position (1|2)
  local port=7790; [ "$1" = b ] && port=7792
  "$T/quarry-bench" --server "http://127.0.0.1:$port" --collection bench --interleave "$IDX" "${Q[@]}" \
    --wait poll --duration "$DUR" --label "$1-pair$2-pos$3"
}
rows=()
for p in $(seq "$PAIRS"); do
  if [ $((p % 2)) = 1 ]; then order=(a b); else order=(b a); fi
  echo "== pair $p/$PAIRS: ${order[0]} then ${order[1]}" >&2
  for i in 0 1; do
    r=$(one "${order[$i]}" "$p" $((i + 1))); echo "$r"; rows+=("$r")
  done
done
python3 - "$3${QUARRYD_A:+ @ $QUARRYD_A}" "$4${QUARRYD_B:+ @ $QUARRYD_B}" "${rows[@]}" <<'PY'
import json, statistics, sys
cfg_a, cfg_b = sys.argv[1], sys.argv[2]
rows = [json.loads(x) for x in sys.argv[3:]]
def pick(f, key="added_p50_us"):
    v = [r[key] for r in rows if f(r["label"])]
    return v, statistics.median(v)
out = {"label": "ab-summary", "config_a": cfg_a, "config_b": cfg_b, "pairs": len(rows) // 2}
for side in "ab":
    for key in ("grpc_p50_us", "grpc_p99_us", "grpc_recall_at_k", "in_process_p50_us"):
        out[f"{side}_median_{key}"] = pick(lambda l: l.startswith(side + "-"), key)[1]
out["b_over_a_grpc_p50"] = out["b_median_grpc_p50_us"] / out["a_median_grpc_p50_us"]
out["b_over_a_grpc_p99"] = out["b_median_grpc_p99_us"] / out["a_median_grpc_p99_us"]
for name, f in [("a", lambda l: l.startswith("a-")), ("b", lambda l: l.startswith("b-")),
                ("first_in_pair", lambda l: l.endswith("pos1")), ("second_in_pair", lambda l: l.endswith("pos2"))]:
    v, m = pick(f)
    out[name + "_added_p50_us"] = v
    out[name + "_median_us"] = m
out["a_minus_b_median_us"] = out["a_median_us"] - out["b_median_us"]
out["first_minus_second_median_us"] = out["first_in_pair_median_us"] - out["second_in_pair_median_us"]
print(json.dumps(out))
PY
