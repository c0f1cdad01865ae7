#!/usr/bin/env bash
# The reader fallbacks, exercised for real as a non-root user (root ignores
# RLIMIT_MEMLOCK):
#  1. memlock limit 16 KiB -> io_uring buffer registration is refused; the
#     reader logs it and uses unregistered buffers.
#  2. memlock limit 0 makes io_uring_setup itself fail (ENOMEM) on this
#     kernel -> the pread reader is used, with a log line.
# Both must still answer with the same recall. The searches run at W=1:
# with several reads in flight the expansion order follows arrival order,
# which differs between pread (in submit order) and io_uring, and can move
# recall by a query; at W=1 the answers cannot depend on it.
#
# The clone may sit in a directory that `nobody` cannot enter (a home
# directory or a `mktemp -d` is mode 700), so the checks run a copy of
# quarryctl inside their own world-readable work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
built=${CARGO_TARGET_DIR:-$PWD/target}/release/quarryctl
cargo build --release -p quarry-tools
work=$(mktemp -d /tmp/quarry-fallback.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'echo "FAILED: fallback check at line $LINENO: $BASH_COMMAND" >&2' ERR
mkdir -p "$work/bin"
cp "$built" "$work/bin/quarryctl"
q=$work/bin/quarryctl
"$q" gen --out "$work/data" --n 5000 --dim 64 --queries 100 --no-lid >/dev/null 2>&1
"$q" gt --base "$work/data/base.fbin" --queries "$work/data/queries.fbin" --out "$work/data/gt.ibin" >/dev/null 2>&1
"$q" build --base "$work/data/base.fbin" --index "$work/idx" --R 24 --L 48 --pq-bytes 16 >/dev/null 2>&1
chmod -R a+rX "$work"
# nobody must reach the binary and the data: check before relying on it.
setpriv --reuid=65534 --regid=65534 --clear-groups -- "$q" --version >/dev/null \
  || { echo "FAILED: user nobody cannot run $q (check the modes of its directories)" >&2; exit 1; }
as_nobody() { local memlock=$1; shift; setpriv --reuid=65534 --regid=65534 --clear-groups -- prlimit --memlock=$memlock:$memlock -- "$@"; }
search() { as_nobody "$1" "$q" search --index "$work/idx" --queries "$work/data/queries.fbin" --gt "$work/data/gt.ibin" --L 40 --W 1 --json --no-qps; }
recall() { python3 -c 'import sys,json; print(json.loads(sys.stdin.readline())["recall_at_k"])'; }
check() { # name memlock expected-log expected-reader
  echo "== non-root, memlock $2 bytes: expect $4" >&2
  out=$(search "$2" 2>"$work/err")
  grep -q "$3" "$work/err" || { echo "FAIL ($1): no log line '$3'"; cat "$work/err"; exit 1; }
  echo "$out" | grep -q "\"reader\":\"$4" || { echo "FAIL ($1): expected reader '$4': $out"; exit 1; }
  echo "$out" | recall
}
# The ring itself needs a little locked memory on this kernel: with none,
# io_uring_setup fails (ENOMEM) and the pread reader takes over.
r0=$(check "io_uring refused" 0 "io_uring refused; falling back to the pread reader" "pread")
# Enough for the ring but not for the registered buffers.
r1=$(check "buffers refused" 16384 "buffer registration refused" "io_uring, unregistered buffers")
# Root (no limit): registered buffers.
r2=$("$q" search --index "$work/idx" --queries "$work/data/queries.fbin" --gt "$work/data/gt.ibin" --L 40 --W 1 --json --no-qps 2>/dev/null | recall)
echo "recall@10: pread $r0, io_uring unregistered $r1, io_uring registered $r2"
[ "$r0" = "$r1" ] && [ "$r1" = "$r2" ] || { echo "FAIL: recall differs between readers"; exit 1; }
echo "fallback checks passed"
