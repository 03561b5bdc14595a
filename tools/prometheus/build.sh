#!/usr/bin/env bash
# Build promtool and prometheus (the rule checker and the server that tests/ evaluate the
# dashboard and alert expressions with) from the Go module proxy at one pinned release, into the
# same cache outside the clone as tools/controlplane/build.sh. Prints the bin dir; a second run is
# a no-op.
#
# github.com/prometheus/prometheus tags its Go module v0.3MM.P for release 3.MM.P; its go.mod has
# no replace directives, so `go install pkg@version` builds it with its own go.mod. The server is
# built without the `builtinassets` tag: no web UI is embedded (the tests use its HTTP API only).
# PROMETHEUS_BINARIES="promtool" builds the checker alone.
set -euo pipefail

# v0.316.0 (Prometheus 3.16.0) is the newest the Go module proxy serves (`go list -m -versions`);
# its go.mod asks for go 1.26.7, which the Go 1.26 here satisfies.
PROMETHEUS_MODULE_VERSION=${PROMETHEUS_MODULE_VERSION:-v0.316.0}
read -r -a binaries <<<"${PROMETHEUS_BINARIES:-promtool prometheus}"

cache_root=${WORKPOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workpools}
bin_dir="$cache_root/prometheus/$PROMETHEUS_MODULE_VERSION/bin"

complete=1
for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || complete=0; done
if [[ $complete == 1 ]]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "prometheus/build.sh: the Go toolchain is required (go not on PATH)" >&2; exit 1; }

# v0.316.0 → 3.16.0, for `promtool --version` and the server's build info.
minor_patch=${PROMETHEUS_MODULE_VERSION#v0.3}
release="3.$((10#${minor_patch%%.*})).${minor_patch#*.}"
echo "prometheus/build.sh: building ${binaries[*]} of Prometheus $release ($PROMETHEUS_MODULE_VERSION) into $bin_dir" >&2
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/workpools-prometheus-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin_dir"
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE_VERSION"
for b in "${binaries[@]}"; do
  [[ -x "$bin_dir/$b" ]] && continue
  # -p 2: the machines this runs on have 2 cores; more parallel links only thrash memory.
  GOBIN="$work" GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 \
    go install -p 2 -trimpath -ldflags "$ldflags" "github.com/prometheus/prometheus/cmd/$b@$PROMETHEUS_MODULE_VERSION"
  # Rename into place last: a build killed half-way never leaves a binary that looks complete.
  mv "$work/$b" "$bin_dir/$b.partial" && mv "$bin_dir/$b.partial" "$bin_dir/$b"
done
echo "prometheus/build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin_dir"
