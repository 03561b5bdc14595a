"""FlowRuns on a real control plane: start, admission within limits, binding, reasons to wait,
recovery when workers are lost, cancellation, lateness, and the state machine the API enforces.
Workers are simulated with the worker Role's credentials (tests/support/workers.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import condition, pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker
from workpools.api.base import timestamp
from workpools.client import errors

Workers = Callable[..., SimulatedWorker]


def states(kubectl: Kubectl, namespace: str) -> dict[str, str | None]:
    return {
        r["metadata"]["name"]: r.get("status", {}).get("state")
        for r in kubectl.json("get", "fr", "-n", namespace)["items"]
    }


def held(by_worker: dict[str, list[str]]) -> list[str]:
    return [name for names in by_worker.values() for name in names]


def admitted_reason(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    found = condition(kubectl.get("fr", name, namespace), "Admitted")
    return found["reason"] if found else None


def test_a_new_run_is_scheduled_and_waits_for_a_worker_then_is_bound(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("r1", "p"), namespace=namespace)
    wait_for(lambda: admitted_reason(installed, namespace, "r1"), equals="NoOnlineWorker", what="NoOnlineWorker")
    status = installed.get("fr", "r1", namespace)["status"]
    assert status["state"] == "Scheduled"
    assert status["scheduledTime"] == installed.get("fr", "r1", namespace)["metadata"]["creationTimestamp"]

    workers("p", "w1").beat()
    bound = wait_for(
        lambda: (s := installed.get("fr", "r1", namespace)["status"])["state"] == "Pending" and s, what="the run bound"
    )
    assert bound["worker"] == "w1"
    assert bound["slot"]["queue"] == "p-default"
    assert condition({"status": bound}, "Admitted")["status"] == "True"
    table = installed("get", "fr", "--field-selector", "status.state=Pending", "-n", namespace, "-o", "name")
    assert table.split() == ["flowrun.workpools.dev/r1"]


def test_pool_queue_and_worker_limits_hold_and_free_slots_are_refilled(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p", concurrencyLimit=3), queue("q", "p", priority=1, concurrencyLimit=2), namespace=namespace)
    installed.apply(
        *[run(f"r{i}", "p", workQueue="q") for i in range(4)],
        *[run(f"d{i}", "p") for i in range(3)],
        namespace=namespace,
    )
    w1, w2 = workers("p", "w1", limit=1), workers("p", "w2", limit=5)
    w1.beat()
    w2.beat()

    def holders() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for item in installed.json("get", "fr", "-n", namespace)["items"]:
            if item.get("status", {}).get("state") in ("Pending", "Running", "Cancelling"):
                found.setdefault(item["status"]["worker"], []).append(item["metadata"]["name"])
        return found

    # q (priority 1, limit 2) goes first: r0 and r1; the pool's third slot goes to the default queue.
    wait_for(lambda: sorted(held(holders())), equals=["d0", "r0", "r1"], what="three grants")
    assert len(holders().get("w1", [])) == 1, "w1's own limit is 1"
    # Why runs wait is bookkeeping, written after the grants (controllers/writers.py): waited for.
    wait_for(lambda: admitted_reason(installed, namespace, "r2"), equals="QueueLimitReached", what="queue full")
    wait_for(lambda: admitted_reason(installed, namespace, "d1"), equals="PoolLimitReached", what="pool full")
    wait_for(
        lambda: installed.get("wp", "p", namespace)["status"]["slots"],
        equals={"active": 3, "limit": 3, "open": 0, "summary": "3/3"},
        what="the pool's slots",
    )
    wait_for(lambda: installed.get("wq", "q", namespace)["status"]["scheduledRuns"], equals=2, what="2 waiting")

    owner = "w1" if "r0" in holders().get("w1", []) else "w2"
    worker = w1 if owner == "w1" else w2
    worker.move("r0", "Running")
    worker.move("r0", "Completed")
    wait_for(lambda: "r2" in held(holders()), what="r2 takes the freed queue slot")
    assert len(held(holders())) == 3


def test_paused_queue_future_runs_and_missing_queue_wait_with_their_reason(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    soon = timestamp(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=4))
    installed.apply(pool("p"), queue("held", "p", priority=1, paused=True), namespace=namespace)
    installed.apply(
        run("paused", "p", workQueue="held"),
        run("later", "p", scheduledTime=soon),
        run("lost", "p", workQueue="nowhere"),
        namespace=namespace,
    )
    workers("p", "w1").beat()
    wait_for(lambda: admitted_reason(installed, namespace, "paused"), equals="QueuePaused", what="QueuePaused")
    wait_for(lambda: admitted_reason(installed, namespace, "lost"), equals="QueueNotFound", what="QueueNotFound")
    wait_for(lambda: admitted_reason(installed, namespace, "later"), equals="NotYetScheduled", what="NotYetScheduled")
    wait_for(
        lambda: states(installed, namespace)["later"],
        equals="Pending",
        timeout=15,
        what="the future run admitted once due",
    )


def test_illegal_state_changes_are_refused_by_the_api_server(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("r", "p"), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    wait_for(lambda: states(installed, namespace)["r"], equals="Pending", what="a grant")
    worker.move("r", "Running")
    worker.move("r", "Completed")
    with pytest.raises(errors.Invalid) as refused:
        worker.move("r", "Running")
    assert "a FlowRun cannot move from Completed to Running" in refused.value.message
    with pytest.raises(KubectlError, match="a FlowRun cannot move from Completed to Pending"):
        installed(
            "patch",
            "fr",
            "r",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"state": "Pending"}}',
        )


def test_a_lost_worker_gives_back_its_pending_runs_and_crashes_its_running_ones(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("started", "p"), run("waiting", "p"), namespace=namespace)
    worker = workers("p", "w1", interval=1)
    worker.beat()
    wait_for(lambda: set(states(installed, namespace).values()), equals={"Pending"}, what="both granted")
    worker.move("started", "Running")
    # No more heartbeats: Offline after 3 s, then the slots come back.
    wait_for(
        lambda: states(installed, namespace),
        equals={"started": "Crashed", "waiting": "Scheduled"},
        timeout=15,
        what="recovery",
    )
    crashed = installed.get("fr", "started", namespace)["status"]
    assert crashed["message"] == "worker w1 went offline while it was running"
    assert "slot" not in crashed
    back = installed.get("fr", "waiting", namespace)["status"]
    assert "worker" not in back
    assert "slot" not in back
    reasons = sorted(e["reason"] for e in installed.events(namespace) if e["involvedObject"]["kind"] == "FlowRun")
    assert reasons == ["WorkerLost", "WorkerLost"]
    wait_for(lambda: admitted_reason(installed, namespace, "waiting"), equals="NoOnlineWorker", what="waits again")


def test_a_pending_run_not_started_in_time_returns_to_scheduled(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p", pendingTimeoutSeconds=2), run("r", "p"), namespace=namespace)
    worker = workers("p", "w1", interval=60)
    worker.beat()
    wait_for(lambda: states(installed, namespace)["r"], equals="Pending", what="a grant")
    first = installed.get("fr", "r", namespace)["status"]["slot"]["acquiredAt"]
    # The worker never starts it: after 2 s it is reclaimed, then granted again (a new slot stretch).
    wait_for(
        lambda: [e["reason"] for e in installed.events(namespace, "r")],
        equals=["PendingTimeout"],
        timeout=10,
        what="one PendingTimeout event",
    )
    again = wait_for(
        lambda: (
            (s := installed.get("fr", "r", namespace)["status"]).get("slot") and s["slot"]["acquiredAt"] != first and s
        ),
        what="a new grant",
    )
    assert again["state"] == "Pending"


def test_cancel_stops_scheduled_runs_at_once_and_asks_workers_to_stop_active_ones(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p", concurrencyLimit=1), run("active", "p"), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    wait_for(lambda: states(installed, namespace)["active"], equals="Pending", what="a grant")
    worker.move("active", "Running")
    installed.apply(run("queued", "p"), namespace=namespace)
    wait_for(lambda: admitted_reason(installed, namespace, "queued"), equals="PoolLimitReached", what="queued")

    installed.apply(run("queued", "p", cancel=True), run("active", "p", cancel=True), namespace=namespace)
    wait_for(
        lambda: states(installed, namespace),
        equals={"active": "Cancelling", "queued": "Cancelled"},
        what="cancellation",
    )
    # each run's events say when cancellation was asked for and what happens next
    for name, expected in (
        ("queued", ("Cancelled", "FlowRun queued cancelled by request")),
        (
            "active",
            (
                "Cancelling",
                "FlowRun active cancellation requested (spec.cancel); worker w1 stops it and reports Cancelled",
            ),
        ),
    ):
        wait_for(
            lambda name=name: [(e["reason"], e["message"]) for e in installed.events(namespace, name)],
            equals=[expected],
            what=f"one event on {name}",
        )
    worker.move("active", "Cancelled")
    wait_for(
        lambda: installed.get("wp", "p", namespace)["status"]["slots"]["active"], equals=0, what="the slot released"
    )


def test_overdue_scheduled_runs_are_late(installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    past = timestamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=20))
    soon_late = timestamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=13))
    installed.apply(
        pool("p"),
        run("overdue", "p", scheduledTime=past),
        run("turning", "p", scheduledTime=soon_late),
        namespace=namespace,
    )

    def names() -> dict[str, Any]:
        return {
            r["metadata"]["name"]: r.get("status", {}).get("stateName")
            for r in installed.json("get", "fr", "-n", namespace)["items"]
        }

    wait_for(lambda: names()["overdue"], equals="Late", what="Late at once")
    wait_for(lambda: names()["turning"], equals="Late", timeout=10, what="Late once 15 s overdue")
    assert states(installed, namespace) == {"overdue": "Scheduled", "turning": "Scheduled"}
