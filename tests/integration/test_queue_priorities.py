"""Effective priorities on a real control plane (DESIGN §3's deliberate difference from Prefect).

Aspects: unique requests are kept whatever the apply order; a colliding request gives Prefect's
result and a `PriorityConflict` condition + one event naming the holder; when the pusher goes,
the pushed queues return; `kubectl get wq` shows the effective priority.
"""

from __future__ import annotations

from tests.support.kube import Kubectl
from tests.support.objects import condition, pool, queue
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for


def effective(kubectl: Kubectl, namespace: str) -> dict[str, int | None]:
    items = kubectl.json("get", "wq", "-n", namespace)["items"]
    return {q["metadata"]["name"]: q.get("status", {}).get("effectivePriority") for q in items}


def test_unique_requests_are_kept_whatever_the_order_of_applies(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1}, what="the default queue at 1")
    for name, priority in (("c", 9), ("a", 2), ("b", 4)):  # applied out of order, with gaps
        installed.apply(queue(name, "p", priority=priority), namespace=namespace)
    wait_for(
        lambda: effective(installed, namespace),
        equals={"p-default": 1, "a": 2, "b": 4, "c": 9},
        what="every queue at its requested priority, gaps kept",
    )


def test_a_colliding_request_pushes_like_prefect_and_the_pushed_return_when_it_goes(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1}, what="the default queue at 1")
    installed.apply(queue("q-mid", "p", priority=2), namespace=namespace)
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1, "q-mid": 2}, what="q-mid at 2")

    # Prefect: create q-high with priority 1 → q-high 1, default 2, q-mid 3 (the push cascades).
    installed.apply(queue("q-high", "p", priority=1), namespace=namespace)
    wait_for(
        lambda: effective(installed, namespace),
        equals={"q-high": 1, "p-default": 2, "q-mid": 3},
        what="Prefect's cascade",
    )
    conflict = condition(installed.get("wq", "q-mid", namespace), "PriorityConflict")
    assert conflict is not None
    assert conflict["status"] == "True"
    assert conflict["message"] == "priority 2 is held by queue p-default; effective priority 3"
    warnings = wait_for(
        lambda: [e for e in installed.events(namespace, "q-mid") if e["reason"] == "PriorityConflict"],
        what="a PriorityConflict event",
    )
    assert len(warnings) == 1
    assert "held by queue p-default" in warnings[0]["message"]

    table = installed("get", "wq", "q-mid", "-n", namespace).splitlines()
    assert table[0].split()[:3] == ["NAME", "POOL", "PRIORITY"]
    assert table[1].split()[:3] == ["q-mid", "p", "3"]

    # Deliberate difference: when the pusher leaves, the pushed queues return to their requests.
    installed("delete", "wq", "q-high", "-n", namespace)
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1, "q-mid": 2}, what="the pushed return")
    cleared = condition(installed.get("wq", "q-mid", namespace), "PriorityConflict")
    assert cleared is not None
    assert cleared["status"] == "False"


def test_a_queue_without_priority_takes_the_first_free_value_and_keeps_it(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), queue("low", "p", priority=10), namespace=namespace)
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1, "low": 10}, what="two queues")
    installed.apply(queue("mid", "p"), namespace=namespace)  # Prefect: the first gap, 2
    wait_for(
        lambda: effective(installed, namespace),
        equals={"p-default": 1, "low": 10, "mid": 2},
        what="mid auto-assigned 2",
    )
    status = installed.get("wq", "mid", namespace)["status"]
    assert status["requestedPriority"] == 2
    assert status["priorityRequestedAt"]


def test_asking_for_the_assigned_value_takes_it_back_as_in_prefect(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    # Issue 15 (a), found against Prefect 3.9: `create d` with priority 1 pushes the default queue
    # (assigned 1) to 2; setting the default queue's priority to 1 then gives default 1, d 2.
    installed.apply(pool("p"), namespace=namespace)
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1}, what="the default queue at 1")
    installed.apply(queue("d", "p", priority=1), namespace=namespace)
    wait_for(lambda: effective(installed, namespace), equals={"d": 1, "p-default": 2}, what="d pushes the default")
    assert installed.get("wq", "p-default", namespace)["status"]["priorityAssigned"] is True

    installed("patch", "wq", "p-default", "-n", namespace, "--type=merge", "-p", '{"spec":{"priority":1}}')
    wait_for(lambda: effective(installed, namespace), equals={"p-default": 1, "d": 2}, what="Prefect's result")
    conflict = condition(installed.get("wq", "d", namespace), "PriorityConflict")
    assert conflict is not None
    assert (conflict["status"], conflict["message"]) == (
        "True",
        "priority 1 is held by queue p-default; effective priority 2",
    )


def test_the_effective_priorities_survive_an_operator_restart(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), queue("a", "p", priority=1), namespace=namespace)
    installed.apply(queue("b", "p", priority=1), namespace=namespace)  # b asks last: b 1, a 2, default 3
    wait_for(lambda: effective(installed, namespace), equals={"b": 1, "a": 2, "p-default": 3}, what="b wins")
    before = {
        q["metadata"]["name"]: q["metadata"]["resourceVersion"]
        for q in installed.json("get", "wq", "-n", namespace)["items"]
    }

    operator.stop()
    operator.start()
    # A later change in the same pool proves a full pass ran after the restart.
    installed.apply(queue("c", "p", priority=20), namespace=namespace)
    wait_for(
        lambda: effective(installed, namespace),
        equals={"b": 1, "a": 2, "p-default": 3, "c": 20},
        what="the same answer after a restart",
    )
    after = {
        q["metadata"]["name"]: q["metadata"]["resourceVersion"]
        for q in installed.json("get", "wq", "-n", namespace)["items"]
        if q["metadata"]["name"] != "c"
    }
    assert after == before, "the restarted operator rewrote statuses that had not changed"
