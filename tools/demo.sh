#!/usr/bin/env bash
# The demo: `tools/demo.sh` (start) and `tools/demo.sh down` (stop everything it started).
#
# Without KUBECONFIG it starts the local control plane (tools/controlplane) in .devcluster/;
# with KUBECONFIG it uses that cluster. Either way it installs the CRDs and RBAC from manifests/,
# runs the operator as a local process logged in as its ServiceAccount, applies examples/ and
# shows what the operator made of them.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${WORKPOOLS_DEVCLUSTER_DIR:-$PWD/.devcluster}

if [[ ${1:-up} == down ]]; then
  [[ -f "$state/operator.pid" ]] && kill "$(cat "$state/operator.pid")" 2>/dev/null || true
  rm -f "$state/operator.pid"
  if [[ -z ${KUBECONFIG:-} || ${KUBECONFIG:-} == "$state/kubeconfig" ]]; then
    python3 -m tools.controlplane down --dir "$state"
  fi
  exit 0
fi

source tools/python-env.sh
bin_dir=$(bash tools/controlplane/build.sh)
export PATH="$bin_dir:$PATH"

if [[ -z ${KUBECONFIG:-} ]]; then
  eval "$(python -m tools.controlplane up --dir "$state")"
else
  mkdir -p "$state"
fi
echo "== cluster: $(kubectl version -o json | python -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') (KUBECONFIG=$KUBECONFIG)"

echo "== installing CRDs and RBAC (manifests/, operator run locally)"
kubectl apply --server-side --force-conflicts -k tools/local-install >/dev/null
kubectl wait --for=condition=Established crd -l app.kubernetes.io/part-of=workpool-operator --timeout=60s >/dev/null

echo "== starting the operator as system:serviceaccount:workpools-system:workpools-operator"
[[ -f "$state/operator.pid" ]] && kill "$(cat "$state/operator.pid")" 2>/dev/null || true
token=$(kubectl create token workpools-operator -n workpools-system --duration=24h)
kubectl config view --raw --minify --flatten >"$state/operator.kubeconfig"
KUBECONFIG="$state/operator.kubeconfig" kubectl config set-credentials operator --token="$token" >/dev/null
KUBECONFIG="$state/operator.kubeconfig" kubectl config set-context --current --user=operator >/dev/null
KUBECONFIG="$state/operator.kubeconfig" WORKPOOLS_HEALTH_ENDPOINT=http://127.0.0.1:8089/healthz \
  nohup python -m workpools >"$state/operator.log" 2>&1 &
echo $! >"$state/operator.pid"
for _ in $(seq 60); do curl -sf http://127.0.0.1:8089/healthz >/dev/null && break; sleep 0.5; done

echo "== applying examples/"
kubectl apply --server-side -k examples/
kubectl wait --for=jsonpath='{.status.phase}'=NotReady workpool/demo -n workpools-demo --timeout=60s >/dev/null

echo "== kubectl get workpools -n workpools-demo   (one category lists all four kinds)"
kubectl get workpools -n workpools-demo
echo
kubectl describe workpool demo -n workpools-demo | sed -n '/^Events:/,$p'
cat <<MSG

The control plane and the operator keep running. Look around:
  export KUBECONFIG=$KUBECONFIG PATH=$bin_dir:\$PATH
  kubectl get workpools -A
Operator log: $state/operator.log.  Stop everything: tools/demo.sh down
MSG
