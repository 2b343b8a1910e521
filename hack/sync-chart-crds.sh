#!/usr/bin/env bash
# Copies the connector's CRDs (package/crds/, the one source) into the Helm chart's crds/
# folder, which Helm requires to hold real files. tests/integration/test_helm_chart.py fails
# when the two differ, so run this after changing a CRD.
#
#   hack/sync-chart-crds.sh           # copy
#   hack/sync-chart-crds.sh --check   # exit 1 and list the differences instead
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

src=package/crds
dst=package/helm/api-connector/crds

if [[ ${1:-} == --check ]]; then
  if ! diff -r "$src" "$dst"; then
    echo "hack/sync-chart-crds.sh: $dst differs from $src; run hack/sync-chart-crds.sh" >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$dst"
# Remove first so that a CRD deleted from package/crds/ disappears from the chart too.
find "$dst" -maxdepth 1 -name '*.yaml' -delete
cp "$src"/*.yaml "$dst"/
echo "synced $(ls "$src"/*.yaml | wc -l) CRDs into $dst"
