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
# (default: containers-storage's own choice, overlay where the kernel has it, as for build.sh; podman
# then refuses a different explicit driver: "database storage graph driver "" does not match").
set -euo pipefail

command -v podman >/dev/null || { echo "podman.sh: podman is not on PATH (Debian: apt-get install podman)" >&2; exit 2; }

global=()
runtime=${WORKPOOLS_PODMAN_RUNTIME:-}
if [[ -z $runtime ]] && command -v runc >/dev/null; then runtime=runc; fi
[[ -n $runtime ]] && global+=(--runtime "$runtime")
[[ -n ${WORKPOOLS_IMAGE_STORAGE:-} ]] && global+=(--storage-driver "$WORKPOOLS_IMAGE_STORAGE")
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
