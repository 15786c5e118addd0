#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the `real_k8s` tests from the Go module proxy:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the KubeRay operator and kwok,
# plus the KubeRay CRDs and kwok's pod stages of the same versions. Once per set of versions,
# into a cache outside the checkout: $DAFT_K8S_CACHE (default ~/.cache/daft-tests)/k8s-<versions>/.
# Prints the cache directory on its last line. Idempotent: a complete cache is reused as is.
set -euo pipefail

K8S_VERSION=1.36.3        # k8s.io/kubernetes; its staging modules are v0.36.3
ETCD_VERSION=3.6.8        # the etcd client version kubernetes v1.36.3 requires
KUBERAY_VERSION=1.5.0     # github.com/ray-project/kuberay/ray-operator
KWOK_VERSION=0.8.0        # sigs.k8s.io/kwok (needs the 0.36 streaming modules)

cache_root=${DAFT_K8S_CACHE:-$HOME/.cache/daft-tests}
dir="$cache_root/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION-kuberay-v$KUBERAY_VERSION-kwok-v$KWOK_VERSION"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler ray-operator kwok)

complete() {
  [ -f "$dir/COMPLETE" ] || return 1
  for b in "${bins[@]}"; do [ -x "$dir/bin/$b" ] || return 1; done
  [ -d "$dir/crds" ] && [ -d "$dir/stages" ]
}
if complete; then
  echo "k8s: reusing $dir" >&2
  echo "$dir"
  exit 0
fi

command -v go >/dev/null || { echo "k8s: go is not installed (the real_k8s tests need Go 1.26+)" >&2; exit 1; }
start=$(date +%s)
mkdir -p "$dir/bin"
work=$(mktemp -d "${TMPDIR:-/tmp}/daft-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" GOBIN="$dir/bin"
step() { echo "k8s: $* ($(( $(date +%s) - start )) s)" >&2; }

# 1. Kubernetes' own binaries and etcd, from one module of ours. k8s.io/kubernetes points its
#    staging modules at ./staging/...; each is replaced by its published v0.Y.Z (the list read
#    from kubernetes' own go.mod, not copied by hand).
mod="$work/k8s"
mkdir -p "$mod"
cd "$mod"
cat > go.mod <<EOF
module daft.test/k8s

go 1.26
EOF
kmod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging_version="v0.${K8S_VERSION#1.}"
{
  echo "require ("
  echo "	k8s.io/kubernetes v$K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
  echo ")"
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$kmod" | sort -u |
    while read -r m; do echo "	$m => $m $staging_version"; done
  echo ")"
} >> go.mod
cat > tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
step "resolving k8s.io/kubernetes v$K8S_VERSION and etcd v$ETCD_VERSION"
go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
ver="k8s.io/component-base/version"
ldflags="-s -w -X $ver.gitVersion=v$K8S_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $ver.gitTreeState=clean"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  step "building $c"
  go build -pgo=off -ldflags "$ldflags" -o "$dir/bin/$c" "k8s.io/kubernetes/cmd/$c"
done
step "building etcd"
go build -pgo=off -ldflags "-s -w" -o "$dir/bin/etcd" go.etcd.io/etcd/server/v3

# 2. The KubeRay operator and kwok: plain modules without replace directives.
step "building the KubeRay operator v$KUBERAY_VERSION"
go install -ldflags "-s -w" "github.com/ray-project/kuberay/ray-operator@v$KUBERAY_VERSION"
step "building kwok v$KWOK_VERSION"
go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"

# 3. The operator's CRDs and kwok's pod and node stages, from the same module versions.
kr=$(go mod download -json "github.com/ray-project/kuberay/ray-operator@v$KUBERAY_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
kw=$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
rm -rf "$dir/crds" "$dir/stages"
mkdir -p "$dir/crds" "$dir/stages"
cp "$kr"/config/crd/bases/*.yaml "$dir/crds/"
cp -r "$kw"/kustomize/stage/. "$dir/stages/"
chmod -R u+w "$dir/crds" "$dir/stages"
date -u +%FT%TZ > "$dir/COMPLETE"
step "done: $dir"
echo "$dir"
