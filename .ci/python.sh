#!/usr/bin/env bash
# The Python client (clients/python): install it into a venv from PyPI,
# check the generated stubs match proto/, type-check it, and run its tests
# against the quarryd this tree built (target/release/quarryd; CI builds it
# before this step). Usage: bash .ci/python.sh [pytest args...]
#
# The venv lives in ${XDG_CACHE_HOME:-$HOME/.cache}/quarry-py-venv and is
# reused; it is rebuilt when the Python version changes. Needs python3
# (>= 3.9) with venv, and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
py_dir=clients/python

target="${CARGO_TARGET_DIR:-target}"
quarryd="${QUARRYD:-$target/release/quarryd}"
if [ ! -x "$quarryd" ]; then
  echo "python.sh: no quarryd at $quarryd: build it first (cargo build --release --bin quarryd) or set QUARRYD" >&2
  exit 1
fi
quarryd="$(cd "$(dirname "$quarryd")" && pwd)/$(basename "$quarryd")"

command -v python3 >/dev/null || { echo "python.sh: python3 is required" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
  echo "python.sh: python3 >= 3.9 is required (found $(python3 --version))" >&2; exit 1; }
# Debian's python3 makes venvs only with python3-venv (ensurepip).
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    ver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv || \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv"
  else
    echo "python.sh: python3 cannot make a venv: install python3-venv" >&2; exit 1
  fi
fi

venv="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/quarry-py-venv"
want_py=$(python3 -c 'import sys; print(sys.version)')
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.python-version" 2>/dev/null)" = "$want_py" ] \
   && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  echo "python.sh: reusing $venv"
else
  echo "python.sh: creating $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  echo "$want_py" > "$venv/.python-version"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# The client as a user gets it (a wheel built from clients/python), and the
# pinned tools. --force-reinstall --no-deps on the client so the venv never
# tests an older copy of it.
"${pip[@]}" install -r "$py_dir/requirements-dev.txt" "./$py_dir"
"${pip[@]}" install --force-reinstall --no-deps "./$py_dir"
rm -rf "$py_dir/build" "$py_dir"/*.egg-info

echo "== python: generated stubs are current"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PYTHON="$venv/bin/python" bash "$py_dir/gen.sh" "$tmp/_proto"
if ! diff -r -x __init__.py -x __pycache__ "$py_dir/quarry/_proto" "$tmp/_proto"; then
  echo "python.sh: clients/python/quarry/_proto is stale: run clients/python/gen.sh (with grpcio-tools from requirements-dev.txt) and commit" >&2
  exit 1
fi

echo "== python: mypy --strict"
(cd "$py_dir" && "$venv/bin/mypy")

echo "== python: pytest against $quarryd"
# Run from the repository root with the venv's pytest (not `python -m`, which
# would put clients/python on sys.path): the tests import the installed
# package, so a file missing from the wheel fails here.
"$venv/bin/python" -c 'import quarry, sys; f = quarry.__file__; sys.exit(0 if "site-packages" in f else f"quarry imported from {f}, not the venv")'
QUARRYD="$quarryd" "$venv/bin/pytest" -q -p no:cacheprovider "$py_dir/tests" "$@"
