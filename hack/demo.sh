#!/usr/bin/env bash
# Sets everything up from the project's own files and runs the demo on two local clusters
# (a consumer and a provider on 127.0.0.1, the provider running real Crossplane with the
# example composition function). Extra arguments go to
# `api-connector demo` (e.g. --keep to leave the clusters and the connector running).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Only the tools the demo runs: the clusters (with their controller manager), kubectl for
# exploring them, and Crossplane with what it needs to serve the example function (the
# crossplane CLI builds its package, the registry serves it).
hack/setup.sh etcd kube-apiserver kube-controller-manager kubectl crossplane crossplane-core registry
exec .venv/bin/api-connector demo --dir _out/demo "$@"
