#!/usr/bin/env bash
# Check ops/quarryd.service with `systemd-analyze verify`, its ExecStart
# pointed at the quarryd this tree built (verify checks that it exists and
# is executable, and every directive's syntax).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bin="$(cd "$target/release" && pwd)/quarryd"
[ -x "$bin" ] || cargo build --release --bin quarryd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=/usr/local/bin/quarryd|ExecStart=$bin|" ops/quarryd.service > "$tmp/quarryd.service"
grep -q "^ExecStart=$bin " "$tmp/quarryd.service"
out=$(systemd-analyze verify "$tmp/quarryd.service" 2>&1) || { echo "$out" >&2; exit 1; }
# verify exits 0 on some warnings; treat any output about our unit as failure.
if echo "$out" | grep -q "quarryd.service"; then
  echo "$out" >&2
  exit 1
fi
echo "unit: ops/quarryd.service passes systemd-analyze verify (ExecStart=$bin)"
