#!/usr/bin/env bash
# Restart and recovery times of a real quarryd (capacity question 3):
#   1. N vectors upserted (BulkUpsert) and never flushed, then kill -9:
#      the restart replays them all from the WAL into the fresh index;
#   2. the same collection compacted into one disk segment, then kill -9:
#      the restart opens the segment and replays nothing.
# Each restart's time is quarryd's own `startup_ms` (process start to
# listening, the catalog opened) and the wall time until a search answers.
#
#   benches/writes/recovery.sh BIN_DIR BASE.fbin N [WORK_DIR]
#
# BIN_DIR holds quarryd and quarryctl (release). JSON lines on stdout.
set -euo pipefail
B=$1; BASE=$2; N=$3; W=${4:-$HOME/.cache/quarry-exp/recovery-$N}
rm -rf "$W"; mkdir -p "$W"
DIM=$(python3 -c "import struct,sys; print(struct.unpack('<II', open(sys.argv[1],'rb').read(8))[1])" "$BASE")
PORT=7790
cat > "$W/q.toml" <<TOML
listen = "127.0.0.1:$PORT"
metrics_listen = "127.0.0.1:$((PORT + 1))"
data_dir = "$W/data"
log_format = "json"
flush_at = 100000000
write_stall_at = 100000000
memory_budget_mb = 16384
TOML
S="--server http://127.0.0.1:$PORT"
start() {
  local t0; t0=$(date +%s.%N)
  "$B/quarryd" --config "$W/q.toml" >> "$W/quarryd.log" 2>&1 < /dev/null &
  echo $! > "$W/pid"
  # Until a search answers (an empty result from a collection still
  # opening would not come: the catalog opens before the listener).
  until "$B/quarryctl" collections list $S > /dev/null 2>&1; do
    kill -0 "$(cat "$W/pid")" 2> /dev/null || { echo "quarryd exited; see $W/quarryd.log" >&2; exit 1; }
    sleep 0.05
  done
  local t1; t1=$(date +%s.%N)
  python3 -c "print(round(($t1 - $t0) * 1000, 1))"
}
# The server is not this shell's child (started in a command
# substitution): poll until it is gone, so its lock is free.
kill9() { local p; p=$(cat "$W/pid"); kill -9 "$p"; while kill -0 "$p" 2> /dev/null; do sleep 0.02; done; }
last_startup() { grep '"quarryd listening"' "$W/quarryd.log" | tail -1 | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['fields']['startup_ms'])"; }
last_replayed() { grep '"collection opened"' "$W/quarryd.log" | tail -1 | python3 -c "import json,sys; f=json.loads(sys.stdin.read())['fields']; print(f['replayed'], f['segments'])"; }

start > /dev/null
"$B/quarryctl" collections create bench --dim "$DIM" --metric l2 $S > /dev/null
t0=$(date +%s.%N)
"$B/quarryctl" collections upsert bench --source "$BASE" --limit "$N" $S > "$W/upsert.out"
t1=$(date +%s.%N)
kill9
wall=$(start)
read -r replayed segments < <(last_replayed)
echo "{\"phase\":\"replay\",\"n\":$N,\"dim\":$DIM,\"upsert_s\":$(python3 -c "print(round($t1 - $t0, 2))"),\"wal_bytes\":$(du -sb "$W/data" | cut -f1),\"startup_ms\":$(last_startup),\"wall_to_answer_ms\":$wall,\"replayed\":$replayed,\"segments\":$segments}"
"$B/quarryctl" collections compact bench $S > "$W/compact.out"
kill9
wall=$(start)
read -r replayed segments < <(last_replayed)
echo "{\"phase\":\"segment\",\"n\":$N,\"dim\":$DIM,\"startup_ms\":$(last_startup),\"wall_to_answer_ms\":$wall,\"replayed\":$replayed,\"segments\":$segments}"
kill9
