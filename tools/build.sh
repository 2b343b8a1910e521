#!/usr/bin/env bash
# Builds the pinned Go tools the project runs for real (kube-apiserver, kubectl, etcd, the
# Crossplane CLI, helm) from the wrapper modules beside this script, and caches the binaries outside
# the clone so that a warm run takes seconds.
#
#   tools/build.sh [TOOL ...]     # default: every tool; prints "TOOL PATH" per tool
#
# Cache: ${API_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/api-connector}/bin/
#        <tool>-<version>-<hash of go.mod+go.sum>/<binary>
# KUBEBUILDER_ASSETS (the envtest convention): if it holds kube-apiserver and etcd, those
# are used instead of building them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${API_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/api-connector}
bin_root="$cache_root/bin"

die() {
  echo "tools/build.sh: $*" >&2
  exit 1
}

# tool -> "module dir|binary name|package|version|ldflags"
spec() {
  local kv=v1.34.4 ev=3.6.16 cv=v2.2.1 hv=v3.19.0
  case "$1" in
    kube-apiserver)
      local cb=k8s.io/component-base/version
      echo "kube-apiserver|kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|$kv|-X $cb.gitVersion=$kv -X $cb.gitMajor=1 -X $cb.gitMinor=34 -X $cb.gitTreeState=clean -X $cb.buildDate=1970-01-01T00:00:00Z" ;;
    kubectl)
      local cb=k8s.io/component-base/version
      echo "kubectl|kubectl|k8s.io/kubernetes/cmd/kubectl|$kv|-X $cb.gitVersion=$kv -X $cb.gitMajor=1 -X $cb.gitMinor=34 -X $cb.gitTreeState=clean -X $cb.buildDate=1970-01-01T00:00:00Z" ;;
    etcd)
      echo "etcd|etcd|.|v$ev|" ;;
    crossplane)
      echo "crossplane|crossplane|github.com/crossplane/crossplane/v2/cmd/crank|$cv|-X github.com/crossplane/crossplane/v2/internal/version.version=$cv" ;;
    helm)
      echo "helm|helm|helm.sh/helm/v3/cmd/helm|$hv|-X helm.sh/helm/v3/internal/version.version=$hv -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    *) die "unknown tool '$1' (known: kube-apiserver kubectl etcd crossplane helm)" ;;
  esac
}

build_one() {
  local tool=$1 dir bin pkg version ldflags
  IFS='|' read -r dir bin pkg version ldflags <<<"$(spec "$tool")"

  if [[ ( $tool == kube-apiserver || $tool == etcd ) && -n ${KUBEBUILDER_ASSETS:-} && -x ${KUBEBUILDER_ASSETS}/$bin ]]; then
    echo "$tool ${KUBEBUILDER_ASSETS}/$bin"
    return
  fi

  local hash
  # Key the cache on everything that decides the binary: the module files and any source.
  hash=$(find "$here/$dir" -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 \
    | sort -z | xargs -0 cat | sha256sum | cut -c1-12)
  local out="$bin_root/$tool-$version-$hash"
  if [[ -x $out/$bin ]]; then
    echo "$tool $out/$bin"
    return
  fi

  command -v go >/dev/null 2>&1 || die "step 'build $tool': no Go toolchain on PATH; install Go >= 1.24 (https://go.dev/doc/install) or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd"
  mkdir -p "$bin_root"
  local log="$bin_root/$tool-$version-$hash.log" tmp="$out.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo "building $tool $version (first run only; cached in $out) ..." >&2
  if ! (cd "$here/$dir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/$bin" "$pkg") >"$log" 2>&1; then
    rm -rf "$tmp"
    echo "tools/build.sh: step 'build $tool $version' failed; last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  rm -rf "$out"
  mv "$tmp" "$out"
  echo "$tool $out/$bin"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(etcd kube-apiserver kubectl crossplane helm)
for t in "${tools[@]}"; do
  build_one "$t"
done
