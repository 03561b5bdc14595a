#!/usr/bin/env bash
# `podman` with the settings this kind of machine needs (rootful, no systemd, hybrid cgroups, a
# sandbox that forbids raising hard rlimits); on an ordinary host they are harmless.
#
#   tools/image/podman.sh run --rm --read-only --tmpfs /tmp localhost/workpool-operator:0.1.0
#   tools/image/podman.sh logs NAME
#
# What each setting works around, as seen here with Debian bookworm's podman 4.3.1:
#   --runtime runc        crun 1.8.1 refuses: "cgroups in hybrid mode not supported, drop all
#                         controllers from cgroupv2" (/sys/fs/cgroup/unified has hugetlb enabled).
#   --cgroup-manager cgroupfs, --events-backend file
#                         no systemd (PID 1 is not systemd, no D-Bus).
#   --ulimit nofile/nproc podman asks for nofile=1048576 and nproc above the hard limits, and
#                         raising a hard limit is refused here even to root: "crun: setrlimit
#                         `RLIMIT_NOFILE`: Operation not permitted" / runc "error setting rlimit
#                         type 6". The container gets the caller's hard limits instead.
# WORKPOOLS_PODMAN_RUNTIME overrides the runtime choice; WORKPOOLS_IMAGE_STORAGE the storage driver
# (default as in build.sh: overlay when the kernel has it, else vfs; the two must agree).
set -euo pipefail

command -v podman >/dev/null || { echo "podman.sh: podman is not on PATH (Debian: apt-get install podman)" >&2; exit 2; }

global=()
runtime=${WORKPOOLS_PODMAN_RUNTIME:-}
if [[ -z $runtime ]] && command -v runc >/dev/null; then runtime=runc; fi
[[ -n $runtime ]] && global+=(--runtime "$runtime")
storage=${WORKPOOLS_IMAGE_STORAGE:-}
if [[ -z $storage ]]; then
  if grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null; then storage=overlay; else storage=vfs; fi
fi
global+=(--storage-driver "$storage")
if [[ ! -d /run/systemd/system ]]; then global+=(--cgroup-manager cgroupfs --events-backend file); fi

sub=${1:?usage: podman.sh SUBCOMMAND [ARGS...]}
shift
extra=()
if [[ $sub == run || $sub == create ]]; then
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
  [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
  extra=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
fi
exec podman "${global[@]}" "$sub" "${extra[@]}" "$@"
