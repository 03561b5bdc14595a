"""A worker's credentials: the shipped `workpools-worker` ClusterRole bound in one namespace only."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.kube import Kubectl
from tests.support.operator import service_account_kubeconfig

WORKER_ACCOUNT = "worker"


def worker_rbac(account: str = WORKER_ACCOUNT) -> str:
    """A ServiceAccount `account` and a RoleBinding of the workpools-worker ClusterRole to it."""
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {account}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: workpools-worker-{account}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: workpools-worker}}
subjects: [{{kind: ServiceAccount, name: {account}}}]
"""


def worker_kubeconfig(kubectl: Kubectl, namespace: str, path: Path, account: str = WORKER_ACCOUNT) -> Path:
    """A kubeconfig for a worker in `namespace`, authorised exactly as manifests/ authorises workers."""
    kubectl.apply(worker_rbac(account), namespace=namespace)
    return service_account_kubeconfig(kubectl, namespace, account, path)


def pod_worker_kubeconfig(
    kubectl: Kubectl, namespace: str, pod: str, path: Path, account: str = WORKER_ACCOUNT
) -> Path:
    """A worker in pod `pod`: a token bound to that Pod object, as the kubelet mounts one.

    Its user info carries the pod's name (authentication.kubernetes.io/pod-name). The Pod is only
    an API object: no kubelet runs it, and the token stops working when it is deleted.
    """
    kubectl.apply(worker_rbac(account), namespace=namespace)
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod},
        "spec": {"serviceAccountName": account, "containers": [{"name": "worker", "image": "workpools-operator"}]},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    token = kubectl(
        "create", "token", account, "-n", namespace, "--bound-object-kind=Pod", f"--bound-object-name={pod}",
        "--duration=1h",
    ).strip()  # fmt: skip
    return service_account_kubeconfig(kubectl, namespace, account, path, token=token)
