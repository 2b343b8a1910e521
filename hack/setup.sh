#!/usr/bin/env bash
# Installs what the project needs, from its own files: the Python virtualenv (.venv) and the
# pinned Go tools (tools/build.sh; cached outside the clone, built once).
#
#   hack/setup.sh [TOOL ...]     # only these Go tools (default: all); see tools/build.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "hack/setup.sh: Python >= 3.11 is required (found: $("$python" --version 2>&1))" >&2
  exit 1
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-12)
if [[ ! -f $stamp ]]; then
  echo "== python environment (.venv)"
  [[ -x .venv/bin/python ]] || "$python" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
echo "== go tools (${*:-all})"
tools/build.sh "$@" >/dev/null
