#!/usr/bin/env bash
# Side-by-side benchmark: Quarry vs diskannpy 0.7.0, hnswlib 0.8.0, faiss-cpu.
#
#   benches/side_by_side/run.sh --data DIR --name NAME [--R 64 --L 100 \
#       --pq-bytes 32 --cache-nodes 0 --disk-vector f32 --threads 2 \
#       --systems quarry,diskannpy,hnswlib,faiss --quick]
#
# DIR holds base.fbin, queries.fbin, gt.ibin (big-ann formats). All options:
#   benches/side_by_side/run.sh --help
#
# Prepares (once) a Python 3.11 virtualenv at ~/.cache/quarry-bench-venv
# (override: QUARRY_BENCH_VENV) with the reference systems, installs fio
# through apt-get when it is missing, then runs bench.py. Builds are cached
# under ~/.cache/quarry-bench/<system>/; results go to
# ~/.cache/quarry-bench/results/<name>-<timestamp>.{md,json,-qps.png,-latency.png}.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${QUARRY_BENCH_VENV:-$HOME/.cache/quarry-bench-venv}"
PIP_PKGS=(diskannpy==0.7.0 hnswlib==0.8.0 faiss-cpu matplotlib numpy)

find_python311() {
    for c in python3.11 "$HOME/.pyenv/versions/3.11"*/bin/python3.11 /usr/bin/python3.11; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python311)" || { echo "run.sh: python3.11 not found (diskannpy 0.7.0 wheels need 3.11)" >&2; exit 1; }
    echo "run.sh: creating $VENV with $PY" >&2
    "$PY" -m venv "$VENV"
fi

# Install only when an import fails, so a warm venv costs nothing.
if ! "$VENV/bin/python" - <<'EOF' 2>/dev/null
import os
os.environ.setdefault("FAISS_OPT_LEVEL", "AVX512")  # see worker.import_faiss
import diskannpy, hnswlib, faiss, matplotlib, numpy
EOF
then
    echo "run.sh: installing ${PIP_PKGS[*]} into $VENV" >&2
    "$VENV/bin/pip" install --quiet "${PIP_PKGS[@]}"
fi

if ! command -v fio >/dev/null 2>&1; then
    echo "run.sh: installing fio" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y fio >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y fio >/dev/null; } \
            || echo "run.sh: could not install fio; the device measurement will be skipped" >&2
    else
        echo "run.sh: not root; install fio yourself or the device measurement is skipped" >&2
    fi
fi

exec "$VENV/bin/python" "$HERE/bench.py" "$@"
