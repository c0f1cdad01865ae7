#!/usr/bin/env bash
# Regenerate the protobuf/gRPC stubs in quarry/_proto/ from
# proto/quarry/v1/quarry.proto with grpcio-tools.
#
#   clients/python/gen.sh            # write into quarry/_proto/
#   clients/python/gen.sh OUT_DIR    # write into OUT_DIR (CI diffs it)
#
# Needs a Python with the grpcio-tools version pinned in
# requirements-dev.txt (the generated code records that version, so
# another one makes a different file): PYTHON=/path/to/venv/bin/python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/quarry/_proto}"
py="${PYTHON:-python3}"

want="$(sed -n 's/^grpcio-tools==//p' "$here/requirements-dev.txt")"
have="$("$py" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  echo "gen.sh: need grpcio-tools==$want in $py (found '${have:-none}'); pip install -r $here/requirements-dev.txt" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m grpc_tools.protoc -I "$repo/proto" \
  --python_out="$tmp" --grpc_python_out="$tmp" --pyi_out="$tmp" \
  "$repo/proto/quarry/v1/quarry.proto"

mkdir -p "$out"
for f in quarry_pb2.py quarry_pb2.pyi quarry_pb2_grpc.py; do
  cp "$tmp/quarry/v1/$f" "$out/$f"
done
# The generated service module imports its messages as `quarry.v1`, which
# is not a module of this package: make the import package-relative.
sed -i 's/^from quarry\.v1 import quarry_pb2 as /from . import quarry_pb2 as /' "$out/quarry_pb2_grpc.py"
grep -q '^from \. import quarry_pb2 as ' "$out/quarry_pb2_grpc.py" || {
  echo "gen.sh: the import line in quarry_pb2_grpc.py was not where expected" >&2
  exit 1
}
