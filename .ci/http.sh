#!/usr/bin/env bash
# The JSON HTTP API against a real quarryd: README's curl examples as
# written (none may answer an error), then schemathesis (from PyPI, in a
# cached virtualenv) over the served OpenAPI document: no 5xx, every
# response, status code, header and content type as documented.
#   .ci/http.sh [SECONDS]   schemathesis's time budget (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-60}
target="${CARGO_TARGET_DIR:-target}"
bin="$(cd "$target/release" && pwd)/quarryd"
[ -x "$bin" ] || cargo build --release --bin quarryd
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; }
venv="${XDG_CACHE_HOME:-$HOME/.cache}/quarry-schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
cat > "$tmp/q.toml" <<EOF
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:$port"
EOF
"$bin" --config "$tmp/q.toml" --data-dir "$tmp/data" 2> "$tmp/log" &
pid=$!
export QUARRY_HTTP="http://127.0.0.1:$port"
for _ in $(seq 100); do
  curl -sf "$QUARRY_HTTP/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done

# README's curl block: the ```sh block after the "ci: .ci/http.sh runs" marker.
awk '/ci: .ci\/http.sh runs/ {f=1; next} f && /^```sh/ {b=1; next} b && /^```/ {exit} b' README.md > "$tmp/readme.sh"
[ -s "$tmp/readme.sh" ] || { echo "http: no curl block found in README.md" >&2; exit 1; }
out=$(bash -euo pipefail "$tmp/readme.sh")
echo "$out"
if echo "$out" | grep -q '"error":{'; then
  echo "http: a README curl example answered an error" >&2
  exit 1
fi
[ "$(echo "$out" | grep -c '^{')" -ge 6 ] || { echo "http: README's curl block printed too little" >&2; exit 1; }

"$venv/bin/schemathesis" run "$QUARRY_HTTP/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-time "$budget" -w 2 --no-color
# quarryd kept serving through it.
curl -sf "$QUARRY_HTTP/v1/health" | grep -q SERVING
echo "http: README's curl examples and schemathesis passed"
