#!/usr/bin/env bash
# Install one pinned Prefect release (server and client) into a virtualenv of its own, in the
# same cache outside the clone as the other tools, never in the project's .venv: Prefect pins
# its own pydantic, httpx, SQLAlchemy and friends. benchmarks/prefect_side_by_side.py runs its
# server and its simulated workers from there. Prints the virtualenv's directory; a second run
# is a no-op.
set -euo pipefail

# 3.9.1 is the newest 3.9 release on PyPI (`pip index versions prefect`), the one
# ../shared/reference/prefect-semantics.md was checked against.
PREFECT_VERSION=${PREFECT_VERSION:-3.9.1}
python=${PYTHON:-python3}

cache_root=${WORKPOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workpools}
venv="$cache_root/prefect-$PREFECT_VERSION"
stamp="$venv/.installed"

if [[ -e "$stamp" ]]; then
  echo "$venv"
  exit 0
fi

echo "prefect/install.sh: installing prefect==$PREFECT_VERSION into $venv" >&2
start=$(date +%s)
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "prefect==$PREFECT_VERSION"
# The stamp goes last: an install killed half-way is redone, never taken for a complete one.
touch "$stamp"
echo "prefect/install.sh: installed in $(( $(date +%s) - start ))s" >&2
echo "$venv"
