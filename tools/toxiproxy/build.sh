#!/usr/bin/env bash
# Build toxiproxy-server (the fault injector of tests/chaos) from the Go module proxy at one pinned
# release, into the same cache outside the clone as tools/controlplane/build.sh. Prints the bin dir;
# a second run is a no-op.
set -euo pipefail

# v2.5.0 is the newest v2 release the Go module proxy serves (`go list -m -versions`).
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.5.0}

cache_root=${WORKPOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workpools}
bin_dir="$cache_root/toxiproxy/$TOXIPROXY_VERSION/bin"

if [[ -x "$bin_dir/toxiproxy-server" ]]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "toxiproxy/build.sh: the Go toolchain is required (go not on PATH)" >&2; exit 1; }

echo "toxiproxy/build.sh: building Toxiproxy $TOXIPROXY_VERSION into $bin_dir" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/workpools-toxiproxy-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# `go install pkg@version` builds the module with its own go.mod, outside any module of ours.
GOBIN="$work" GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 \
  go install -trimpath -ldflags "-s -w" "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
mkdir -p "$bin_dir"
# Rename into place last: a build killed half-way never leaves a binary that looks complete.
mv "$work/server" "$bin_dir/toxiproxy-server.partial" && mv "$bin_dir/toxiproxy-server.partial" "$bin_dir/toxiproxy-server"
echo "$bin_dir"
