#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy
# at one pinned release, into a cache outside the clone. A second run is a no-op.
#
# Why a wrapper module: k8s.io/kubernetes' go.mod replaces its staging modules (k8s.io/api, ...)
# with local paths, so `go install k8s.io/kubernetes/cmd/...@v` refuses it. Our own tiny module
# requires k8s.io/kubernetes and replaces each staging module with its published v0.N.M tag.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${WORKPOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workpools}
bin_dir="$cache_root/controlplane/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION/bin"
binaries=(kube-apiserver kube-controller-manager kubectl etcd)

complete=1
for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || complete=0; done
if [[ $complete == 1 ]]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain is required (go not on PATH)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/workpools-cp-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0

echo "build.sh: building Kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION into $bin_dir" >&2
start=$(date +%s)

go mod init workpools.dev/controlplane >/dev/null 2>&1
# The staging modules are the v0.0.0 requirements of the release's own go.mod.
k8s_mod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
staging_version="v0.${KUBERNETES_VERSION#v1.}"
mapfile -t staging < <(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$k8s_mod")
{
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  for m in "${staging[@]}"; do echo "replace $m => $m $staging_version"; done
} >>go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
go mod tidy -e >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }

mkdir -p "$bin_dir.partial"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
# -p 2: the machines this runs on have 2 cores; more parallel links only thrash memory.
go build -p 2 -trimpath -ldflags "$ldflags" -o "$bin_dir.partial/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl
go build -p 2 -trimpath -ldflags "-s -w" -o "$bin_dir.partial/etcd" go.etcd.io/etcd/server/v3

rm -rf "$bin_dir" && mv "$bin_dir.partial" "$bin_dir"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin_dir"
