"""manifests/ installs cleanly, and the operator runs under exactly its RBAC."""

from __future__ import annotations

from pathlib import Path

from tests.support.kube import Kubectl
from tests.support.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "system:serviceaccount:workpools-system:workpools-operator"


def test_operator_authenticates_as_its_service_account(installed: Kubectl, operator: OperatorProcess) -> None:
    as_operator = Kubectl(operator.kubeconfig, binary=installed.binary)
    assert OPERATOR in as_operator("auth", "whoami")


def test_operator_may_write_status_but_never_a_users_spec(installed: Kubectl) -> None:
    def can(verb: str, resource: str, *extra: str) -> bool:
        answer = installed("auth", "can-i", verb, resource, *extra, f"--as={OPERATOR}", "-A", check=False)
        return answer.strip() == "yes"

    assert can("patch", "workpools.workpools.dev", "--subresource=status")
    assert can("watch", "flowruns.workpools.dev")
    assert not can("patch", "workpools.workpools.dev")
    assert not can("update", "workqueues.workpools.dev")
    assert not can("delete", "workpools.workpools.dev")
    assert not can("get", "secrets")
