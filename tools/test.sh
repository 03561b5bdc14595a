#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one: installs what is missing (Python deps,
# the Go-built control plane, cached outside the clone), then lint, types, CRD drift and pytest.
# Extra arguments go to pytest, e.g. `tools/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/python-env.sh
bin_dir=$(bash tools/controlplane/build.sh)
export PATH="$bin_dir:$PATH"
# The fault injector of tests/chaos (`tools/test.sh -m chaos`, and the worker e2e tests), cached beside the control plane.
bash tools/toxiproxy/build.sh >/dev/null
# promtool checks and evaluates the alerts and dashboard of manifests/monitoring/ (tests/unit/monitoring,
# tests/integration/test_monitoring.py); the tests need it alone, not the Prometheus server.
PROMETHEUS_BINARIES=promtool bash tools/prometheus/build.sh >/dev/null
# CI builds the operator image and runs it against the local control plane (tests/integration/test_image.py).
if [[ ${CI:-} == true ]]; then bash tools/image/install-tools.sh; fi

echo "== ruff" && ruff check operator tools tests examples benchmarks && ruff format --check operator tools tests examples benchmarks
echo "== mypy" && mypy
echo "== import layers" && lint-imports --no-cache >/dev/null && echo "layers kept"
echo "== pytest"
status=0
python -m pytest "$@" || status=$?
if [[ $status == 5 ]]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
