#!/usr/bin/env bash
# Builds the pinned Go tools the project runs for real from the wrapper modules beside this
# script, and caches the binaries outside the clone so that a warm run takes a second.
#
#   tools/build.sh [TOOL ...]     # default: every tool; prints "TOOL PATH" per tool on stdout
#
# Tools: etcd, kube-apiserver, kube-controller-manager, kubectl (the local clusters and their
# CLI), crossplane (the Crossplane CLI: render, xpkg), crossplane-core (Crossplane itself),
# registry (an in-memory OCI registry for local packages), helm, provider-kubernetes (the
# Crossplane provider the crd-puller's Composition delivers CRDs with; its package folder is
# copied beside the binary).
#
# Progress goes to stderr, one line per tool: "kube-apiserver v1.34.4: cached" or
# "built kube-controller-manager v1.34.4 in 1m32s". Tools that share most of their packages
# (kube-apiserver, kube-controller-manager and kubectl; crossplane and crossplane-core) are
# built one after the other, so the second reuses the first's compiled packages from Go's
# build cache; independent groups are built side by side, API_CONNECTOR_BUILD_JOBS (default
# 2) at a time.
#
# Cache: ${API_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/api-connector}/bin/
#        <tool>-<version>-<hash of go.mod+go.sum+*.go>/<binary>
# KUBEBUILDER_ASSETS (the envtest convention): kube-apiserver, etcd and
# kube-controller-manager found there are used instead of building them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${API_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/api-connector}
bin_root="$cache_root/bin"
all_tools=(etcd kube-apiserver kube-controller-manager kubectl crossplane crossplane-core registry helm provider-kubernetes)

die() {
  echo "tools/build.sh: $*" >&2
  exit 1
}

# tool -> "module dir|binary name|package|version|ldflags|group"
# Tools of one group share a module's dependencies and are built one after the other.
spec() {
  local kv=v1.34.4 ev=3.6.16 cv=v2.2.1 hv=v3.19.0 rv=v0.20.7 pkv=v0.17.1
  local kb="-X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  local cb="-X github.com/crossplane/crossplane/v2/internal/version.version=$cv"
  case "$1" in
    kube-apiserver)
      echo "kube-apiserver|kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|$kv|$kb|kubernetes" ;;
    kube-controller-manager)
      # The same module as kube-apiserver: the same Kubernetes release, one go.sum.
      echo "kube-apiserver|kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|$kv|$kb|kubernetes" ;;
    kubectl)
      echo "kubectl|kubectl|k8s.io/kubernetes/cmd/kubectl|$kv|$kb|kubernetes" ;;
    etcd)
      echo "etcd|etcd|.|v$ev||etcd" ;;
    crossplane)
      echo "crossplane|crossplane|github.com/crossplane/crossplane/v2/cmd/crank|$cv|$cb|crossplane" ;;
    crossplane-core)
      # The same module as the CLI: Crossplane's own binary ("crossplane core start").
      echo "crossplane|crossplane|github.com/crossplane/crossplane/v2/cmd/crossplane|$cv|$cb|crossplane" ;;
    registry)
      echo "registry|registry|.|$rv||registry" ;;
    helm)
      echo "helm|helm|helm.sh/helm/v3/cmd/helm|$hv|-X helm.sh/helm/v3/internal/version.version=$hv -X helm.sh/helm/v3/internal/version.gitTreeState=clean|helm" ;;
    provider-kubernetes)
      echo "provider-kubernetes|provider-kubernetes|github.com/crossplane-contrib/provider-kubernetes/cmd/provider|$pkv||provider-kubernetes" ;;
    *) die "unknown tool '$1' (known: ${all_tools[*]})" ;;
  esac
}

duration() {
  local s=$1
  if ((s >= 60)); then echo "$((s / 60))m$((s % 60))s"; else echo "${s}s"; fi
}

# Where TOOL's binary is or will be: KUBEBUILDER_ASSETS, else the cache path for its sources.
location() {
  local tool=$1 dir bin pkg version ldflags group
  IFS='|' read -r dir bin pkg version ldflags group <<<"$(spec "$tool")"
  case $tool in
    kube-apiserver | etcd | kube-controller-manager)
      if [[ -n ${KUBEBUILDER_ASSETS:-} && -x ${KUBEBUILDER_ASSETS}/$bin ]]; then
        echo "${KUBEBUILDER_ASSETS}/$bin"
        return
      fi ;;
  esac
  local hash
  # Key the cache on everything that decides the binary: the module files, any source, and
  # the files added to the built package (overlay/, see build_one).
  hash=$({
    find "$here/$dir" -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0
    [[ ! -d $here/$dir/overlay ]] || find "$here/$dir/overlay" -type f -name '*.go' -print0
  } | sort -z | xargs -0 cat | sha256sum | cut -c1-12)
  echo "$bin_root/$tool-$version-$hash/$bin"
}

# Build TOOL into the cache; prints the progress line, or the log's tail on failure.
build_one() {
  local tool=$1 dir bin pkg version ldflags group path out
  IFS='|' read -r dir bin pkg version ldflags group <<<"$(spec "$tool")"
  path=$(location "$tool")
  out=${path%/*}
  # $$ is this script's pid in every worker: with the tool's name, unique per invocation.
  local log="$out.log" tmp="$out.tmp.$$" started=$SECONDS
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Files in the wrapper module's overlay/ are added to the built package. Go refuses
  # -overlay for files in its module cache, so the package's module is copied next to a copy
  # of the wrapper module, which replaces it with the copy (the same sources, plus these
  # files, built with the tag apiconnector_overlay so that nothing else compiles them).
  local src="$here/$dir" tags=()
  if [[ -d $here/$dir/overlay ]]; then
    local info mod_path mod_dir pkg_dir
    if ! info=$(cd "$here/$dir" && GOFLAGS=-mod=readonly go list -f '{{.Module.Path}}|{{.Module.Dir}}|{{.Dir}}' "$pkg" 2>"$log") \
      || ! IFS='|' read -r mod_path mod_dir pkg_dir <<<"$info" \
      || ! mkdir -p "$tmp/src" || ! cp "$here/$dir/go.mod" "$here/$dir/go.sum" "$tmp/src/" \
      || ! cp -R "$mod_dir" "$tmp/src/patched" || ! chmod -R u+w "$tmp/src/patched" \
      || ! cp "$here/$dir"/overlay/*.go "$tmp/src/patched/${pkg_dir#"$mod_dir"/}/" \
      || ! (cd "$tmp/src" && go mod edit -replace "$mod_path=./patched") 2>>"$log"; then
      rm -rf "$tmp"
      echo "tools/build.sh: step 'add overlay/ to $pkg for $tool $version' failed:" >&2
      tail -n 25 "$log" >&2
      return 1
    fi
    src="$tmp/src"
    tags=(-tags apiconnector_overlay)
  fi
  if ! (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath "${tags[@]}" -ldflags "-s -w $ldflags" -o "$tmp/$bin" "$pkg") >"$log" 2>&1; then
    rm -rf "$tmp"
    {
      echo "tools/build.sh: step 'build $tool $version' failed after $(duration $((SECONDS - started))); last lines of $log:"
      tail -n 25 "$log"
    } >&2
    return 1
  fi
  if [[ $tool == crossplane-core ]]; then
    # Crossplane's CRDs ship in its module, not in the binary; "crossplane core init"
    # installs them from a folder. Copied (writable) so the module cache is not needed later.
    local crds
    if ! crds=$(cd "$here/$dir" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/crossplane/crossplane/v2)/cluster/crds \
      || ! cp -R "$crds" "$tmp/crds" || ! chmod -R u+w "$tmp/crds"; then
      rm -rf "$tmp"
      echo "tools/build.sh: step 'copy the CRDs of $tool $version' failed" >&2
      return 1
    fi
  fi
  if [[ $tool == provider-kubernetes ]]; then
    # The provider's Crossplane package (crossplane.yaml and its CRDs) ships in its module;
    # the local clusters build it with 'crossplane xpkg build'. Copied, like the CRDs above.
    local package
    if ! package=$(cd "$here/$dir" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/crossplane-contrib/provider-kubernetes)/package \
      || ! cp -R "$package" "$tmp/package" || ! chmod -R u+w "$tmp/package"; then
      rm -rf "$tmp"
      echo "tools/build.sh: step 'copy the package of $tool $version' failed" >&2
      return 1
    fi
  fi
  rm -rf "$tmp/src"
  rm -rf "$out"
  mv "$tmp" "$out"
  echo "built $tool $version in $(duration $((SECONDS - started)))" >&2
}

# One build worker: claims groups in order (mkdir is atomic) and builds each group's tools
# one after the other; a failed tool stops its group, not the others.
worker() {
  local i tool
  for i in "${!group_tools[@]}"; do
    mkdir "$work/claim.$i" 2>/dev/null || continue
    for tool in ${group_tools[$i]}; do
      build_one "$tool" || { : >"$work/failed"; break; }
    done
  done
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=("${all_tools[@]}")
for t in "${tools[@]}"; do
  spec "$t" >/dev/null # an unknown name fails here, before anything is built
done

# The tools to build, grouped; biggest groups first so that they start first.
group_tools=()
missing=()
for group in kubernetes crossplane provider-kubernetes helm etcd registry; do
  members=""
  for t in "${all_tools[@]}"; do
    IFS='|' read -r _ _ _ version _ g <<<"$(spec "$t")"
    [[ $g == "$group" ]] || continue
    wanted=""
    for w in "${tools[@]}"; do [[ $w != "$t" ]] || wanted=1; done
    [[ -n $wanted ]] || continue
    if [[ -x $(location "$t") ]]; then
      echo "$t $version: cached" >&2
    else
      members+=" $t"
      missing+=("$t")
    fi
  done
  [[ -z $members ]] || group_tools+=("${members# }")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  command -v go >/dev/null 2>&1 || die "step 'build ${missing[0]}': no Go toolchain on PATH; install Go >= 1.24 (https://go.dev/doc/install), or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver, etcd and kube-controller-manager"
  jobs=${API_CONNECTOR_BUILD_JOBS:-2}
  [[ $jobs =~ ^[1-9][0-9]*$ ]] || die "API_CONNECTOR_BUILD_JOBS must be a positive number, not '$jobs'"
  ((jobs <= ${#group_tools[@]})) || jobs=${#group_tools[@]}
  mkdir -p "$bin_root"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "building ${missing[*]} (first run only; $jobs at a time; binaries and logs in $bin_root) ..." >&2
  pids=()
  for ((j = 0; j < jobs; j++)); do
    worker &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid"
  done
  [[ ! -e $work/failed ]] || exit 1
fi

for t in "${tools[@]}"; do
  echo "$t $(location "$t")"
done
