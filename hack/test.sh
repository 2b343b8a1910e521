#!/usr/bin/env bash
# Sets everything up from the project's own files and runs the whole test suite:
# a virtualenv with the pinned Python dependencies, the Go-built Kubernetes and Crossplane
# tools (cached outside the clone), lint, types, generated-code freshness, then pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

hack/setup.sh
. .venv/bin/activate

echo "== lint (ruff)"
ruff check .
ruff format --check .
echo "== types (mypy --strict)"
mypy
echo "== generated protobuf code is current"
hack/gen-proto.sh --check
echo "== tests"
# Two test files at a time (pytest-xdist; each file on one worker, each worker with its own
# session clusters): the suite mostly waits on API servers and Crossplane, so this nearly
# halves its time on two cores. PYTEST_WORKERS=0 runs everything in one process.
exec pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
