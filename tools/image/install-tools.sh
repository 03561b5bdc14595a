#!/usr/bin/env bash
# Install what tools/image/build.sh and podman.sh need (Debian packages), if missing.
# tools/test.sh runs this in CI (CI=true), so the image is built and run there too.
set -euo pipefail
needed=(buildah podman runc debootstrap)
missing=()
for tool in "${needed[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[[ ${#missing[@]} == 0 ]] && exit 0
if [[ $(id -u) != 0 ]]; then
  echo "install-tools.sh: need root to apt-get install ${missing[*]}; the image tests will be skipped" >&2
  exit 0
fi
echo "install-tools.sh: installing ${missing[*]}" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
