#!/usr/bin/env bash
# gRPC overhead, in one run: the same index and queries searched
#   1. in-process by the engine (quarry-bench --in-process), and
#   2. over gRPC through quarryd (quarry-bench against a local quarryd),
# closed loop at 1 client (added latency) and at saturation (QPS), with
# each side's CPU use; then an open-loop overload at 4x the saturating
# rate and a recovery run at half of it. The 1-client run is repeated with
# the shards not polling (shard_poll_us = 0) and with the network side on
# its own thread (net_threads = 1) instead of on shard 0. quarry-bench
# reports, per request, client latency minus the engine time inside the
# shard (overhead_p50_us): the service path's cost paired request by
# request.
#
# Added latency is measured in ROUNDS (default 9) runs of quarry-bench
# --interleave: one client alternates 500 ms blocks of in-process searches
# (one query at a time, on the same index) with 500 ms blocks of 1-client
# gRPC searches, because this VM's disk drifts by more than the figure
# being measured from one minute to the next; the summary line
# ("added-latency") gives each round's p50 difference and their median,
# the paired overhead, and its split into the service's own code path
# (handler time minus shard time) and the transport (client latency minus
# handler time), and how much longer each read waited in the shard than
# in-process (mean per read: "read_wait_shard_minus_in_process_us").
# Each round runs three times: over TCP loopback ("added-latency") and over
# quarryd's Unix-domain socket (listen_unix; "added-latency-unix") with
# quarry-bench's lean client transport (tools/src/lean_grpc.rs: each unary
# request in one HTTP/2 write), and over TCP with tonic's stock client
# (--stock-client; "added-latency-stock-client"), which is what a tonic
# application would see.
# "ping" and "ping-unix" lines give the transport floor: the gRPC health
# check's round trip with no search.
#
#   benches/grpc/run.sh INDEX_DIR DATA_DIR [L] [W]
#
# INDEX_DIR is a built engine index (quarryctl build); DATA_DIR holds
# queries.fbin and gt.ibin. quarryd adopts the index as collection "bench"
# through a symlink in a temporary data directory (no rebuild). Results:
# JSON lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
IDX=$(cd "$1" && pwd); DATA=$(cd "$2" && pwd); L=${3:-30}; W=${4:-8}
DUR=${DUR:-10}
T="${CARGO_TARGET_DIR:-target}/release"
cargo build --release --bin quarryd --bin quarry-bench >&2
work=$(mktemp -d); trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
. benches/grpc/lib.sh
adopt_index "$IDX" "$work/data"
Q=(--queries "$DATA/queries.fbin" --gt "$DATA/gt.ibin" --k 10 --L "$L" --W "$W")
# In-process, one query in flight, blocking in io_uring_enter rather than
# polling (the polling figure is in the rounds below).
echo "== in-process (engine), 1 thread, 1 query in flight, wait=block" >&2
"$T/quarry-bench" --in-process "$IDX" "${Q[@]}" --wait block --latency-only --duration "$DUR" --label in-process-1-block
echo "== in-process (engine), 2 threads x 8 in flight (saturation)" >&2
"$T/quarry-bench" --in-process "$IDX" "${Q[@]}" --threads 2 --inflight 8 --duration "$DUR" --label in-process
start() {  # [config file]: start quarryd and wait until it listens
  start_quarryd "$T/quarryd" "$work/data" 7790 "$work/log" ${1:+--config "$1"} --listen-unix "$work/q.sock"
  srv=$QUARRYD_PID; echo "$srv" > "$work/pid"
}
stop() { kill -TERM "$srv"; wait "$srv" 2>/dev/null || true; }
start
cpu() { awk '{print $14+$15}' "/proc/$srv/stat"; }
tck=$(getconf CLK_TCK)
run() {  # label, quarry-bench args...
  local label=$1; shift
  local c0; c0=$(cpu); local t0; t0=$(date +%s.%N)
  local out; out=$("$T/quarry-bench" --server http://127.0.0.1:7790 --collection bench "${Q[@]}" --label "$label" "$@")
  local c1; c1=$(cpu); local t1; t1=$(date +%s.%N)
  python3 -c 'import json,sys
a = sys.argv; d = json.loads(a[1]); c0, c1, t0, t1, tck = map(float, a[2:7])
d["server_cpu_cores"] = round((c1 - c0) / tck / (t1 - t0), 3); print(json.dumps(d))' "$out" "$c0" "$c1" "$t0" "$t1" "$tck"
}
echo "== transport floor: gRPC health check, 1 client, over TCP and over the Unix socket" >&2
"$T/quarry-bench" --server http://127.0.0.1:7790 --ping --duration "$DUR" --label ping
"$T/quarry-bench" --server "unix:$work/q.sock" --ping --duration "$DUR" --label ping-unix
"$T/quarry-bench" --server http://127.0.0.1:7790 --ping --duration "$DUR" --stock-client --label ping-stock-client
ROUNDS=${ROUNDS:-9}
rounds=(); rounds_unix=(); rounds_stock=()
for r in $(seq "$ROUNDS"); do
  echo "== added latency, round $r/$ROUNDS: in-process and gRPC 1 client, interleaved in 500 ms blocks; TCP, Unix socket, then TCP with tonic's stock client" >&2
  il=$("$T/quarry-bench" --server http://127.0.0.1:7790 --collection bench --interleave "$IDX" "${Q[@]}" \
        --wait poll --duration "$DUR" --label "interleaved-r$r")
  echo "$il"
  rounds+=("$il")
  il=$("$T/quarry-bench" --server "unix:$work/q.sock" --collection bench --interleave "$IDX" "${Q[@]}" \
        --wait poll --duration "$DUR" --label "interleaved-unix-r$r")
  echo "$il"
  rounds_unix+=("$il")
  il=$("$T/quarry-bench" --server http://127.0.0.1:7790 --collection bench --interleave "$IDX" "${Q[@]}" \
        --wait poll --duration "$DUR" --stock-client --label "interleaved-stock-r$r")
  echo "$il"
  rounds_stock+=("$il")
done
summary() {  # label, rounds...
python3 - "$@" <<'PY'
import json, statistics, sys
label = sys.argv[1]
d = [json.loads(x) for x in sys.argv[2:]]
col = lambda k: [x[k] for x in d]
print(json.dumps({"label": label, "rounds": len(d),
                  "in_process_p50_us": col("in_process_p50_us"), "grpc_p50_us": col("grpc_p50_us"),
                  "added_p50_us": col("added_p50_us"),
                  "added_p50_median_us": statistics.median(col("added_p50_us")),
                  "paired_overhead_p50_us": col("overhead_p50_us"),
                  "paired_overhead_median_us": statistics.median(col("overhead_p50_us")),
                  "shard_minus_in_process_p50_us": [x["shard_p50_us"] - x["in_process_p50_us"] for x in d],
                  "read_wait_shard_minus_in_process_us": [
                      None if x.get("grpc_read_wait_us") is None or x.get("in_process_read_wait_us") is None
                      else round(x["grpc_read_wait_us"] - x["in_process_read_wait_us"], 1) for x in d],
                  "transport_p50_us": col("transport_p50_us"),
                  "server_path_p50_us": col("server_path_p50_us")}))
PY
}
summary added-latency "${rounds[@]}"
summary added-latency-unix "${rounds_unix[@]}"
summary added-latency-stock-client "${rounds_stock[@]}"
# The same with the shards never polling (shard_poll_us = 0): what polling
# buys, and what it costs in server CPU.
stop
printf 'shard_poll_us = 0\n' > "$work/nopoll.toml"
start "$work/nopoll.toml"
echo "== gRPC, 1 client, shard_poll_us = 0" >&2
run grpc-1-client-nopoll --clients 1 --duration "$DUR"
stop
# The network side on its own single-threaded runtime (net_threads = 1,
# the default before 2026-11-22) instead of on shard 0: what waking a
# separate network thread for each request and each reply costs.
printf 'net_threads = 1\n' > "$work/net1.toml"
start "$work/net1.toml"
echo "== gRPC, 1 client, net_threads = 1" >&2
run grpc-1-client-net1 --clients 1 --duration "$DUR"
stop
start
echo "== gRPC, 16 clients (saturation)" >&2
sat=$(run grpc-16-clients --clients 16 --duration "$DUR"); echo "$sat"
qps=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['qps'])" "$sat")
echo "== overload: open loop at 4x the saturating rate, 100 ms deadlines" >&2
run overload-4x --rate "$(python3 -c "print(4*$qps)")" --deadline-ms 100 --duration "$DUR" --warmup 0
echo "server RSS after overload: $(grep VmRSS /proc/$srv/status)" >&2
echo "== recovery: open loop at 0.5x" >&2
run recovery-0.5x --rate "$(python3 -c "print(0.5*$qps)")" --duration "$DUR" --warmup 1
stop
# Restart: the first 10 seconds after quarryd comes back, measured from the
# first request (no warm-up), against the steady 1-client run above. Reads
# are O_DIRECT, so no page cache is warm; RAM state (PQ codes, navigation
# tier, the BFS node cache if cache_nodes > 0) is loaded when the
# collection opens, before READY.
start
echo "== restart: 1 client, the first 10 s" >&2
run restart-first-10s --clients 1 --duration 10 --warmup 0
stop
