"""GitOps safety: the operator never takes a user's spec, owns only status, and is quiet at rest."""

from __future__ import annotations

from typing import Any

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for

GITOPS = "argocd-controller"
OPERATOR = "workpools-operator"


def managers(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(manager, operation, subresource) of every managedFields entry."""
    return {(m["manager"], m["operation"], m.get("subresource", "")) for m in obj["metadata"]["managedFields"]}


def test_reapplied_specs_stay_the_users_and_the_operator_owns_only_status(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    manifests = [pool("p", concurrencyLimit=2, description="etl"), queue("q", "p", priority=3)]
    installed.apply(*manifests, namespace=namespace, field_manager=GITOPS)
    wait_for(
        lambda: installed.get("wq", "q", namespace).get("status", {}).get("effectivePriority"),
        equals=3,
        what="the queue reconciled",
    )
    wait_for(
        lambda: installed.get("wp", "p", namespace).get("status", {}).get("queues"),
        equals=2,
        what="the pool reconciled",
    )

    out = installed.apply(*manifests, namespace=namespace, field_manager=GITOPS)  # no conflict, no change
    assert "serverside-applied" in out
    got_pool, got_queue = installed.get("wp", "p", namespace), installed.get("wq", "q", namespace)
    assert got_pool["spec"] == {"concurrencyLimit": 2, "description": "etl"}
    assert got_queue["spec"] == {"workPool": "p", "priority": 3}
    for obj in (got_pool, got_queue):
        owners = installed.json(
            "get", obj["kind"].lower(), obj["metadata"]["name"], "-n", namespace, "--show-managed-fields"
        )
        assert managers(owners) == {(GITOPS, "Apply", ""), (OPERATOR, "Update", "status")}
    default = installed.json("get", "wq", "p-default", "-n", namespace, "--show-managed-fields")
    assert managers(default) == {(OPERATOR, "Update", ""), (OPERATOR, "Update", "status")}  # it created this one


def test_a_pass_over_an_unchanged_pool_writes_nothing(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), queue("a", "p", priority=3), queue("b", "p", priority=4), namespace=namespace)
    wait_for(
        lambda: installed.get("wq", "b", namespace).get("status", {}).get("effectivePriority"),
        equals=4,
        what="the pool reconciled",
    )
    wait_for(
        lambda: installed.get("wp", "p", namespace).get("status", {}).get("queues"),
        equals=3,
        what="the pool status settled",
    )
    # A metadata-only change wakes the pool's reconciler without changing anything it decides.
    installed("label", "wp", "p", "team=data", "-n", namespace)
    before = {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in installed.json("get", "wp,wq", "-n", namespace)["items"]
    }
    # Then a change it must act on: its event proves a later pass over the same pool has finished.
    installed.apply(queue("b", "p", priority=4, description="marker"), namespace=namespace)
    wait_for(
        lambda: [e for e in installed.events(namespace, "b") if e["reason"] == "Updated"],
        what="the marker's Updated event",
    )
    after = {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in installed.json("get", "wp,wq", "-n", namespace)["items"]
    }
    assert after["b"] != before["b"], "the marker change itself"
    assert {k: v for k, v in after.items() if k != "b"} == {k: v for k, v in before.items() if k != "b"}
