#!/usr/bin/env bash
# Replication overhead in one run: write throughput and latency on a single
# node, a sync pair and an async pair (no searches), then the standby's
# search latency while it applies the same write load, and the standby's
# lag. Modes are interleaved round by round, the order rotating, so drift
# of this VM's disk and cores falls on all three alike.
#
#   benches/replication/overhead.sh [ROUNDS] [SECONDS] [WRITERS] > out.jsonl
#
# Uses target/release/{quarryd,quarry-failover} (cargo build --release -p
# quarry-server). One JSON line per measurement, tagged with the round.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-20}
WRITERS=${3:-4}
B=target/release
[ -x $B/quarry-failover ] && [ -x $B/quarryd ] || { echo "build first: cargo build --release -p quarry-server" >&2; exit 2; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
modes=(single sync async)
for r in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2; do
    m=${modes[$(( (k + r) % 3 ))]}
    for search in no yes; do
      [ "$m" = single ] && [ $search = yes ] && continue
      rm -rf "$W/run"
      flag=--no-search; [ $search = yes ] && flag=
      line=$($B/quarry-failover --quarryd $B/quarryd --dir "$W/run" --measure "$SECS" --mode "$m" \
             --writers "$WRITERS" --base-port 18400 $flag)
      echo "{\"round\": $r, \"searching_standby\": $([ $search = yes ] && echo true || echo false), \"m\": $line}"
    done
  done
done
