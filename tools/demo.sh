#!/usr/bin/env bash
# The demo: `tools/demo.sh` to start it, `tools/demo.sh down` to stop what it started.
# Without KUBECONFIG it runs a local control plane (tools/controlplane); with it, that cluster.
# See tools/demo.py for what it does; `tools/demo.sh up --help` for options.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/python-env.sh
exec python -m tools.demo "$@"
