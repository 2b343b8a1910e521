#!/usr/bin/env bash
# Runs every benchmark on two local clusters and writes _out/bench/report.json.
# Pass --quick for the shortened variants, --only NAME... for some of them.
# Benchmarks report; they exit 0 whatever the figures (they do not gate CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec .venv/bin/python bench/run_all.py "$@"
