"""Scale-out by namespace: operator instances with disjoint WORKPOOLS_NAMESPACES share a cluster,
and each reconciles its own namespaces only (README, "Scaling out by namespace").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue
from tests.support.operator import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, OperatorProcess, service_account_kubeconfig
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_namespaces(installed: Kubectl, namespace: str) -> Iterator[tuple[str, str]]:
    other = f"scoping-b-{uuid.uuid4().hex[:5]}"
    installed("create", "namespace", other)
    yield namespace, other
    installed("delete", "namespace", other, "--wait=false")


def status_of(kubectl: Kubectl, resource: str, name: str, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = (kubectl.try_get(resource, name, namespace) or {}).get("status") or {}
    return status


def reconciled(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    """The pool's status once an operator has reconciled it (phase decided, default queue made)."""

    def done() -> dict[str, Any] | None:
        status = status_of(kubectl, "wp", name, namespace)
        queued = kubectl.try_get("wq", f"{name}-default", namespace) is not None
        return status if status.get("phase") == "NotReady" and queued else None

    return wait_for(done, what=f"pool {namespace}/{name} reconciled")


def reporters(kubectl: Kubectl, namespace: str) -> set[str]:
    """Which operator instances posted the namespace's Events (`reportingInstance` is $POD_NAME)."""
    return {e.get("reportingInstance", "") for e in kubectl.events(namespace)}


def test_two_instances_on_disjoint_namespaces_each_reconcile_only_their_own(
    installed: Kubectl,
    operator: OperatorProcess,
    two_namespaces: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns_a, ns_b = two_namespaces
    kubeconfig = service_account_kubeconfig(installed, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, tmp_path / "kubeconfig")
    a = OperatorProcess(kubeconfig, tmp_path / "operator-a.log", namespaces=(ns_a,))
    b = OperatorProcess(kubeconfig, tmp_path / "operator-b.log", namespaces=(ns_b,))

    def start(instance: OperatorProcess, name: str) -> None:
        monkeypatch.setenv("POD_NAME", name)  # the instance's name in the Events it posts
        instance.start()

    operator.stop()  # the session's cluster-wide instance would serve both namespaces
    try:
        start(a, "scoped-a")
        monkeypatch.setenv("WORKPOOLS_LOG_FORMAT", "json")  # B logs JSON lines: the real process, parsed below
        start(b, "scoped-b")

        # Both serve: each pool is reconciled, and only by the instance of its namespace.
        installed.apply(pool("etl"), namespace=ns_a)
        installed.apply(pool("etl"), namespace=ns_b)
        assert reconciled(installed, "etl", ns_a)["defaultQueue"] == "etl-default"
        assert reconciled(installed, "etl", ns_b)["defaultQueue"] == "etl-default"
        wait_for(lambda: reporters(installed, ns_a), equals={"scoped-a"}, what=f"Events in {ns_a} from scoped-a")
        wait_for(lambda: reporters(installed, ns_b), equals={"scoped-b"}, what=f"Events in {ns_b} from scoped-b")

        # A stops: its namespace is not served by anyone, B's namespace still is.
        a.stop()
        installed.apply(pool("late"), namespace=ns_a)
        installed.apply(pool("late"), namespace=ns_b)  # created after ns_a's, reconciled by B
        reconciled(installed, "late", ns_b)
        installed.apply(queue("extra", "late"), namespace=ns_b)  # and a second round trip through B
        wait_for(lambda: status_of(installed, "wp", "late", ns_b).get("queues"), equals=2, what="B counts the queue")
        assert status_of(installed, "wp", "late", ns_a) == {}, "an instance served a namespace that is not its own"
        assert installed.try_get("wq", "late-default", ns_a) is None
        assert reporters(installed, ns_a) == {"scoped-a"}
        assert "scoped-a" not in reporters(installed, ns_b)

        # A comes back: it catches up from the API server alone (level-based), still only in ns_a.
        start(a, "scoped-a")
        assert reconciled(installed, "late", ns_a)["defaultQueue"] == "late-default"
        assert reporters(installed, ns_a) == {"scoped-a"}
        assert reporters(installed, ns_b) == {"scoped-b"}
        assert b.healthy()
        b.stop()
        entries = [json.loads(line) for line in b.log_path.read_text().splitlines()]
        assert entries, "B logged nothing"
        assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    finally:
        a.stop()
        b.stop()
        monkeypatch.undo()  # POD_NAME as it was, for the session's instance
        operator.start()


def rendered(kubectl: Kubectl, path: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(ROOT / path))) if doc]


def selector(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj["spec"]
    labels: dict[str, str] = spec["selector"] if obj["kind"] == "Service" else spec["selector"]["matchLabels"]
    return labels


def test_the_shard_example_is_an_instance_of_its_own_for_its_namespaces_only(installed: Kubectl) -> None:
    shard, base = rendered(installed, "examples/shard-team-a"), rendered(installed, "manifests")
    (deployment,) = [o for o in shard if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["WORKPOOLS_NAMESPACES"] == "team-a,team-a-ci"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == OPERATOR_ACCOUNT  # the shared RBAC
    assert {o["kind"] for o in shard} == {"Deployment", "Service", "PodDisruptionBudget"}
    base_names = {(o["kind"], o["metadata"]["name"]) for o in base}
    assert not base_names & {(o["kind"], o["metadata"]["name"]) for o in shard}, "the shard would replace the base"

    # No selector of one instance matches the other's pod: each Service and budget covers its own.
    def pod_labels(objects: list[dict[str, Any]]) -> dict[str, str]:
        (found,) = [o for o in objects if o["kind"] == "Deployment"]
        labels: dict[str, str] = found["spec"]["template"]["metadata"]["labels"]
        return labels

    selecting = ("Deployment", "Service", "PodDisruptionBudget")
    for own, other in ((shard, base), (base, shard)):
        for obj in (o for o in own if o["kind"] in selecting):
            assert selector(obj).items() <= pod_labels(own).items(), f"{obj['kind']} misses its own pod"
            assert not selector(obj).items() <= pod_labels(other).items(), f"{obj['kind']} selects the other's pod"

    out = installed("apply", "--server-side", "--dry-run=server", "-k", str(ROOT / "examples/shard-team-a"))
    assert "deployment.apps/workpools-operator-team-a serverside-applied (server dry run)" in out
