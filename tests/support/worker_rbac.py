"""A worker's credentials: the shipped `workpools-worker` ClusterRole bound in one namespace only."""

from __future__ import annotations

from pathlib import Path

from tests.support.kube import Kubectl
from tests.support.operator import service_account_kubeconfig

WORKER_ACCOUNT = "worker"

WORKER_RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {WORKER_ACCOUNT}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: workpools-worker}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: workpools-worker}}
subjects: [{{kind: ServiceAccount, name: {WORKER_ACCOUNT}}}]
"""


def worker_kubeconfig(kubectl: Kubectl, namespace: str, path: Path) -> Path:
    """A kubeconfig for a worker in `namespace`, authorised exactly as manifests/ authorises workers."""
    kubectl.apply(WORKER_RBAC, namespace=namespace)
    return service_account_kubeconfig(kubectl, namespace, WORKER_ACCOUNT, path)
