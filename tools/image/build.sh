#!/usr/bin/env bash
# Build the operator image without any container registry: a Debian bookworm + python3.11 base is
# made locally with debootstrap (Debian's mirror is the one network source it needs), imported into
# buildah's store, and passed to the repo's Dockerfile as BASE. pip inside the build reaches PyPI.
#
#   sudo tools/image/build.sh            # prints the image reference on stdout, progress on stderr
#   tools/image/build.sh --print-tag     # the reference it would build, nothing else
#
# Needs root (rootful buildah; debootstrap and chroot), buildah, and debootstrap on a cold cache.
# The base rootfs tarball is cached in ${WORKPOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/workpools}/image/,
# keyed by a hash of its recipe; a second run reuses it, the imported base and buildah's layer cache.
# The image itself is FROM scratch (Dockerfile, tools/image/rootfs.py): no shell, apt or pip in it.
# A code change rebuilds only the operator's own layers (a few MB); a dependency change rebuilds the
# runtime stage too and leaves the previous one behind as untagged images (about 300 MB, the layer
# cache); `buildah rmi --prune` reclaims them, at the cost of re-downloading the dependencies.
#
# Environment:
#   WORKPOOLS_IMAGE            image reference to build (default localhost/workpool-operator:<version>)
#   WORKPOOLS_DEBIAN_MIRROR    Debian mirror for debootstrap (default: the first deb.debian.org-style
#                              URI in /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   WORKPOOLS_IMAGE_STORAGE    storage driver for buildah and podman (default: containers-storage's
#                              own choice, i.e. overlay where the kernel has it, else vfs)
#   WORKPOOLS_IMAGE_CA_BUNDLE  a CA bundle bind-mounted (read-only, never into a layer) over the build's
#                              /etc/ssl/certs/ca-certificates.crt during RUN steps, for networks whose
#                              HTTPS goes through an intercepting proxy (default: the host's bundle,
#                              /etc/ssl/certs/ca-certificates.crt, when it exists; empty: none)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

die() { echo "build.sh: $*" >&2; exit 2; }
say() { echo "build.sh: $*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -1)
image=${WORKPOOLS_IMAGE:-localhost/workpool-operator:$version}
if [[ ${1:-} == --print-tag ]]; then echo "$image"; exit 0; fi

# --- The base image recipe. Any change here changes the cache key, so a new base is made. ----------
suite=bookworm
packages=(python3 python3-pip python-is-python3 ca-certificates)
recipe_version=2
recipe_key=$(printf '%s\n' "$recipe_version" "$suite" "${packages[@]}" "$(sed -n '/^make_base_rootfs()/,/^}/p' "$0")" \
  | sha256sum | cut -c1-12)
base_image=localhost/workpools-base:$suite-python3-$recipe_key

cache_dir=${WORKPOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workpools}/image
base_tar=$cache_dir/$suite-python3-$recipe_key.tar

# --- Tools. ------------------------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "must run as root (rootful buildah, debootstrap and chroot); try: sudo $0"
command -v buildah >/dev/null || die "buildah is required and not on PATH (Debian: apt-get install buildah)"
if [[ ! -f $base_tar ]]; then
  command -v debootstrap >/dev/null \
    || die "debootstrap is required to make the base image (Debian: apt-get install debootstrap)"
fi
for tool in tar chroot mount umount sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is required and not on PATH"
done

# buildah: rootful, chroot isolation (no container runtime or network namespace needed; RUN steps
# share the host's network, which is how pip reaches PyPI here).
export BUILDAH_ISOLATION=chroot
storage=${WORKPOOLS_IMAGE_STORAGE:-}
bah() { buildah ${storage:+--storage-driver "$storage"} "$@"; }

mirror=${WORKPOOLS_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$({ grep -hsoE '^(URIs:|deb) +\S+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources || true; } | awk '{print $2}' | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
mirror=${mirror%/}

make_base_rootfs() {
  # $1: an empty directory. Debian minbase + python3.11 with pip, trimmed like python:*-slim.
  local rootfs=$1
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.debootstrap.log" 2>&1 \
    || { tail -20 "$rootfs.debootstrap.log" >&2; die "debootstrap $suite from $mirror failed (log above)"; }
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror}-security $suite-security main
EOF
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  local status=0
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C sh -c "
      set -e
      apt-get update
      apt-get -y upgrade
      apt-get install -y --no-install-recommends ${packages[*]}
      apt-get clean
  " >"$rootfs.apt.log" 2>&1 || status=$?
  umount "$rootfs/proc"
  if [[ $status != 0 ]]; then
    tail -20 "$rootfs.apt.log" >&2
    die "apt-get inside the base rootfs failed (log above; mirror $mirror)"
  fi
  # The image is its own Python environment, as in python:*-slim: pip installs without PEP 668's guard.
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  # Trim what a slim image leaves out; keep the copyright files.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/doc-base "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* \
    "$rootfs"/root/.cache
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  : >"$rootfs/etc/resolv.conf"
  echo workpools >"$rootfs/etc/hostname"
}

# --- 1. The base rootfs tarball (cached). --------------------------------------------------------
t0=$(date +%s)
if [[ -f $base_tar ]]; then
  say "base rootfs: cached $base_tar"
else
  say "base rootfs: debootstrap $suite from $mirror, with ${packages[*]} (first run: about a minute)"
  mkdir -p "$cache_dir"
  work=$(mktemp -d "$cache_dir/.rootfs.XXXXXX")
  cleanup() { mountpoint -q "$work/rootfs/proc" 2>/dev/null && umount "$work/rootfs/proc"; rm -rf --one-file-system "$work"; }
  trap cleanup EXIT
  mkdir "$work/rootfs"
  make_base_rootfs "$work/rootfs"
  tar --numeric-owner --xattrs --sort=name -C "$work/rootfs" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$base_tar"
  find "$cache_dir" -maxdepth 1 -name "$suite-python3-*.tar" ! -name "${base_tar##*/}" -delete  # older recipes
  cleanup
  trap - EXIT
  say "base rootfs: $(du -h "$base_tar" | cut -f1) in $base_tar ($(($(date +%s) - t0))s)"
fi

# --- 2. The base image in buildah's store (imported once per recipe). -------------------------------
if bah inspect --type image "$base_image" >/dev/null 2>&1; then
  say "base image: $base_image (already imported)"
else
  say "base image: importing $base_tar as $base_image"
  ctr=$(bah from --quiet scratch)
  trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  bah add --quiet "$ctr" "$base_tar" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --label org.opencontainers.image.description="Debian $suite minbase + python3 (workpools)" \
    "$ctr"
  bah commit --quiet --rm "$ctr" "$base_image" >/dev/null
  trap - EXIT
  # Bases of older recipes: remove them (best effort: buildah keeps an image that others build on).
  for old in $(bah images --noheading --format '{{.Name}}:{{.Tag}}' --filter reference=localhost/workpools-base); do
    [[ $old == "$base_image" ]] || bah rmi "$old" >/dev/null 2>&1 || true
  done
fi

# --- 3. The operator image, from the repo's Dockerfile. ---------------------------------------------
ca_bundle=${WORKPOOLS_IMAGE_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
volumes=()
if [[ -n $ca_bundle ]]; then
  [[ -f $ca_bundle ]] || die "WORKPOOLS_IMAGE_CA_BUNDLE=$ca_bundle: no such file"
  volumes=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
fi
say "image: building $image (BASE=$base_image, storage ${storage:-default}, isolation chroot${ca_bundle:+, CA bundle $ca_bundle})"
t1=$(date +%s)
bah build --layers --isolation chroot "${volumes[@]}" --build-arg "BASE=$base_image" -t "$image" \
  -f "$root/Dockerfile" "$root" >&2 \
  || die "buildah build failed (output above)"
size=$(bah images --noheading --format '{{.Size}}' "$image" 2>/dev/null | head -1 || true)
say "image: $image built in $(($(date +%s) - t1))s${size:+, $size uncompressed}"

# --- 4. Smoke check: the operator imports, as uid 10001 on a read-only root, with no network. -------
if command -v podman >/dev/null && [[ ${WORKPOOLS_IMAGE_SMOKE:-1} != 0 ]]; then
  "$here/podman.sh" run --rm --read-only --network none --entrypoint python "$image" \
    -c 'import os, kopf, workpools.controllers; assert os.getuid() == 10001, os.getuid()' >&2 \
    || die "smoke check failed: the image's python cannot import the operator (output above)"
  say "image: smoke check passed (imports as uid 10001, read-only root)"
fi
echo "$image"
