# Shared by benches/grpc/run.sh and benches/grpc/ab.sh (sourced, not run).
#
# adopt_index INDEX_DIR DATA_DIR: make DATA_DIR a quarryd data directory
# whose collection "bench" is the built engine index at INDEX_DIR, adopted
# through a symlink (no rebuild, no copy).
adopt_index() {
  local idx=$1 data=$2
  mkdir -p "$data/collections/bench"
  ln -s "$idx" "$data/collections/bench/index-1"
  python3 - "$idx/manifest.json" "$data/collections/bench/collection.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
json.dump({"name": "bench", "dim": m["dim"], "metric": m["metric"],
           "params": {"max_degree": m["r"], "build_list_size": m["l_build"], "alpha": m["alpha"],
                      "pq_bytes": m["pq_bytes"], "opq": False, "nav_sample": m["nav_nodes"]},
           "stored": m["stored"], "state": "ready", "index_dir": "index-1", "generation": 1,
           "operation_id": "", "error": "", "vector_count": m["n"]}, open(sys.argv[2], "w"))
PY
}

# start_quarryd BIN DATA_DIR PORT LOG [quarryd args...]: start quarryd
# serving gRPC on 127.0.0.1:PORT and metrics on PORT+1, wait until it
# listens, and set QUARRYD_PID (a child of the calling shell, so `wait`
# works on it). Exits the calling script with quarryd's log if it does not
# start: a port already taken by a leftover quarryd must not let a bench
# measure the wrong server.
start_quarryd() {
  local bin=$1 data=$2 port=$3 log=$4; shift 4
  "$bin" "$@" --data-dir "$data" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$((port + 1))" >"$log" 2>&1 &
  QUARRYD_PID=$!
  for _ in $(seq 1000); do grep -q "quarryd listening" "$log" && break; sleep 0.01; done
  if ! grep -q "quarryd listening" "$log"; then
    echo "quarryd did not start on port $port:" >&2; cat "$log" >&2; kill "$QUARRYD_PID" 2>/dev/null; exit 1
  fi
}
