#!/usr/bin/env bash
# Generates the Python code (messages, .pyi stubs, gRPC stubs) for proto/ into
# functions/proto/gen/, with the grpcio-tools pinned in pyproject.toml (the venv's).
#
#   hack/gen-proto.sh          # regenerate in place
#   hack/gen-proto.sh --check  # fail if the committed code differs from a fresh generation
#
# protoc writes absolute imports named after the proto package (`from apiconnector.stages...`);
# they are rewritten to `functions.proto.gen.apiconnector...` so that the generated modules
# import as part of this project without touching sys.path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-.venv/bin/python}
out=functions/proto/gen
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: hack/gen-proto.sh [--check]" >&2; exit 2 ;;
esac

generate() {
  local dest=$1
  mkdir -p "$dest"
  mapfile -t protos < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
  (( ${#protos[@]} )) || { echo "hack/gen-proto.sh: no .proto files under proto/" >&2; exit 1; }
  "$python" -m grpc_tools.protoc -I proto \
    --python_out="$dest" --pyi_out="$dest" --grpc_python_out="$dest" "${protos[@]}"
  # Every directory is a package; rewrite the generated absolute imports.
  find "$dest" -type d -exec sh -c 'for d; do [ -f "$d/__init__.py" ] || : >"$d/__init__.py"; done' sh {} +
  local top
  for top in $(cd proto && find . -mindepth 1 -maxdepth 1 -type d | sed 's|^\./||'); do
    find "$dest" -name '*.py' -o -name '*.pyi' | xargs sed -i -E \
      "s/^from ${top}(\.[A-Za-z0-9_.]+)? import /from functions.proto.gen.${top}\1 import /"
  done
}

if ! $check; then
  rm -rf "$out"
  generate "$out"
  echo "generated $out"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
generate "$tmp/gen"
if ! diff -r -x __pycache__ "$tmp/gen" "$out" >"$tmp/diff" 2>&1; then
  echo "hack/gen-proto.sh --check: $out is out of date with proto/; run hack/gen-proto.sh and commit:" >&2
  head -40 "$tmp/diff" >&2
  exit 1
fi
echo "generated protobuf code is current"
