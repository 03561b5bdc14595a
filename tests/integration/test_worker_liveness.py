"""Workers and heartbeats on a real control plane, the heartbeats sent with the worker's own RBAC.

Aspects: first heartbeat → Online and pool Ready (one event each); silence → Offline and pool
NotReady within 3 × interval + 5 s; resume → Online again; a new worker is Online within a second
of its first heartbeat; a paused pool stays Paused; steady heartbeats leave the pool untouched and
write a queue at most once per 30 s; TTL deletion; the
worker Role allows heartbeats and nothing more; bad input.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import condition, pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from workpools.client import errors


def reasons(kubectl: Kubectl, namespace: str, name: str) -> Counter[str]:
    return Counter(e["reason"] for e in kubectl.events(namespace, name))


def phase(kubectl: Kubectl, resource: str, name: str, namespace: str) -> str | None:
    return ((kubectl.try_get(resource, name, namespace) or {}).get("status") or {}).get("phase")


def test_heartbeats_drive_worker_and_pool_phases_with_one_event_per_transition(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    wait_for(lambda: phase(installed, "wp", "p", namespace), equals="NotReady", what="a NotReady pool")
    worker = workers("p", "w1", interval=1)

    worker.beat()
    wait_for(lambda: phase(installed, "wkr", "w1", namespace), equals="Online", what="the worker Online")
    wait_for(lambda: phase(installed, "wp", "p", namespace), equals="Ready", what="the pool Ready")
    installed("wait", "--for=condition=Ready", "wp/p", "wq/p-default", "-n", namespace, "--timeout=10s")
    status = installed.get("wp", "p", namespace)["status"]
    assert status["workers"] == {"online": 1, "total": 1}

    silent_at = time.monotonic()  # no more beats: Offline after 3 × 1 s, seen within 5 s more
    wait_for(
        lambda: phase(installed, "wkr", "w1", namespace), equals="Offline", timeout=3 + 5 + 2, what="the worker Offline"
    )
    assert time.monotonic() - silent_at <= 3 + 5
    wait_for(lambda: phase(installed, "wp", "p", namespace), equals="NotReady", what="the pool NotReady")

    worker.beat()
    wait_for(lambda: phase(installed, "wp", "p", namespace), equals="Ready", what="the pool Ready again")
    wait_for(
        lambda: reasons(installed, namespace, "w1"),
        equals={"WorkerOnline": 2, "WorkerOffline": 1},
        what="one event per worker transition",
    )
    wait_for(
        lambda: reasons(installed, namespace, "p"),
        equals={"Created": 1, "NotReady": 2, "Ready": 2},  # NotReady: first sight, then the lost heartbeat
        what="one event per pool transition",
    )


@pytest.mark.parametrize("skew_minutes", [-10, 10])
def test_a_worker_whose_clock_is_minutes_off_is_judged_by_when_its_heartbeats_arrive(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any, skew_minutes: int
) -> None:
    # Liveness runs on the operator's clock from the moment a heartbeat is seen: the worker's own
    # timestamps are compared only for change, so skew neither kills a live worker nor keeps a dead one.
    installed.apply(pool("p"), namespace=namespace)
    worker, skew = workers("p", "w1", interval=1), timedelta(minutes=skew_minutes)
    worker.beat(skew)
    wait_for(lambda: phase(installed, "wkr", "w1", namespace), equals="Online", what="the worker Online")
    beating_until = time.monotonic() + 5  # five intervals of steady beats: Online throughout
    while True:
        worker.beat(skew)
        silent_at = time.monotonic()
        assert phase(installed, "wkr", "w1", namespace) == "Online"
        if silent_at > beating_until:
            break
        time.sleep(0.5)
    wait_for(lambda: phase(installed, "wkr", "w1", namespace), equals="Offline", timeout=10, what="the worker Offline")
    assert 2.8 <= time.monotonic() - silent_at <= 3 + 5  # 3 s from when the operator saw the beat
    assert reasons(installed, namespace, "w1") == {"WorkerOnline": 1, "WorkerOffline": 1}


def test_a_new_worker_is_online_within_a_second_of_its_first_heartbeat(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    wait_for(lambda: phase(installed, "wp", "p", namespace), equals="NotReady", what="a NotReady pool")
    worker = workers("p", "w1", interval=10)
    worker.beat()  # registers the Worker and stamps its first heartbeat
    beat_at = time.monotonic()
    while True:
        probe_started = time.monotonic()
        if phase(installed, "wkr", "w1", namespace) == "Online":
            break
        # Online must have landed before the probe that first sees it started, or within a second.
        assert probe_started - beat_at <= 1.0, "the worker was not Online within a second"
        time.sleep(0.05)


def test_a_paused_pool_stays_paused_while_workers_come_and_go(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any
) -> None:
    installed.apply(pool("p", paused=True), namespace=namespace)
    wait_for(lambda: phase(installed, "wp", "p", namespace), equals="Paused", what="a Paused pool")
    workers("p", "w1", interval=1).beat()
    wait_for(lambda: phase(installed, "wkr", "w1", namespace), equals="Online", what="the worker Online")
    wait_for(lambda: phase(installed, "wkr", "w1", namespace), equals="Offline", timeout=10, what="Offline")
    assert phase(installed, "wp", "p", namespace) == "Paused"
    assert reasons(installed, namespace, "p") == {"Created": 1, "Paused": 1}


def test_steady_heartbeats_leave_the_pool_alone_and_write_a_queue_at_most_every_30s(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any
) -> None:
    installed.apply(pool("p"), queue("q", "p", priority=2), namespace=namespace)
    worker = workers("p", "w1", interval=1)
    worker.beat()
    wait_for(lambda: phase(installed, "wq", "q", namespace), equals="Ready", what="the queue Ready")
    wait_for(lambda: installed.get("wq", "q", namespace)["status"].get("lastPolled"), what="lastPolled")

    def counted() -> bool:  # a change of counts alone is written up to 5 s after the pool's last write
        status = installed.get("wp", "p", namespace).get("status", {})
        return status.get("queues") == 2 and status.get("workers") == {"online": 1, "total": 1}

    wait_for(counted, what="the pool counting both queues and the worker")
    pool_version = installed.get("wp", "p", namespace)["metadata"]["resourceVersion"]
    queue_versions = {installed.get("wq", "q", namespace)["metadata"]["resourceVersion"]}
    for _ in range(8):  # 8 heartbeats, 1 s apart, as the worker would send them
        time.sleep(1)
        worker.beat()
        queue_versions.add(installed.get("wq", "q", namespace)["metadata"]["resourceVersion"])
    assert installed.get("wp", "p", namespace)["metadata"]["resourceVersion"] == pool_version
    assert len(queue_versions) == 1, "lastPolled moved within 30 s"
    assert phase(installed, "wkr", "w1", namespace) == "Online"


def test_workers_silent_all_at_once_are_not_reclaimed_en_masse(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any
) -> None:
    # Three workers, each running a run, fall silent together: more likely the operator (or its
    # network) is cut off than all three dead. Nothing is reclaimed; the pool says why, once.
    installed.apply(pool("p"), *(run(f"r{i}", "p") for i in range(3)), namespace=namespace)
    fleet = [workers("p", f"w{i}", interval=1, limit=1) for i in range(3)]
    for worker in fleet:
        worker.beat()
    bound = wait_for(
        lambda: (
            len(found := {r: s.get("worker") for r in ("r0", "r1", "r2") if (s := run_status(installed, namespace, r))})
            == 3
            and all(found.values())
            and found
        ),
        what="three runs bound",
    )
    for name, worker_name in bound.items():
        fleet[int(worker_name[1:])].move(name, "Running")
    # The three beat a moment apart, so the pool may first say "2 of 3" and then "3 of 3".
    suspended = wait_for(
        lambda: (
            (c := condition(installed.get("wp", "p", namespace), "ReclaimSuspended"))
            and c["message"].startswith("3 of 3 workers fell silent together")
            and c
        ),
        timeout=15,
        what="ReclaimSuspended for all three",
    )
    assert suspended["status"] == "True"
    time.sleep(3)  # three more intervals: still nothing reclaimed
    assert {r: run_status(installed, namespace, r)["state"] for r in bound} == dict.fromkeys(bound, "Running")
    assert {phase(installed, "wkr", w, namespace) for w in bound.values()} == {"Offline"}  # as the operator sees it
    assert reasons(installed, namespace, "p")["ReclaimSuspended"] == 1

    fleet[0].beat()  # one comes back, and keeps beating below
    for name in ("w1", "w2"):  # an administrator who knows better releases them by deleting their Workers
        installed("delete", "wkr", name, "-n", namespace)
    released = {r for r, w in bound.items() if w != "w0"}

    def states() -> dict[str, str]:
        fleet[0].beat()
        return {r: run_status(installed, namespace, r)["state"] for r in bound}

    wait_for(
        states,
        equals={r: "Crashed" if r in released else "Running" for r in bound},
        timeout=15,
        what="the released workers' runs reclaimed, the other left alone",
    )


def run_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.get("fr", name, namespace).get("status", {})
    return found


def test_offline_workers_are_deleted_after_the_pool_ttl(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any
) -> None:
    installed.apply(pool("p", workerTTLAfterOfflineSeconds=2), namespace=namespace)
    workers("p", "w1", interval=1).beat()
    wait_for(lambda: phase(installed, "wkr", "w1", namespace), equals="Offline", timeout=10, what="Offline")
    wait_for(lambda: installed.try_get("wkr", "w1", namespace) is None, timeout=10, what="the worker deleted")
    deleted = [e for e in installed.events(namespace, "p") if e["reason"] == "WorkerDeleted"]
    assert [e["message"] for e in deleted] == ["deleted Worker w1: Offline for more than 2s"]
    wait_for(
        lambda: installed.get("wp", "p", namespace)["status"]["workers"],
        equals={"online": 0, "total": 0},
        what="the pool's worker count",
    )


def test_the_worker_role_allows_heartbeats_and_nothing_more(
    installed: Kubectl, operator: OperatorProcess, namespace: str, worker_kubeconfig: Path, workers: Any
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    workers("p", "w1").beat()
    as_worker = Kubectl(worker_kubeconfig, binary=installed.binary)
    with pytest.raises(KubectlError, match="forbidden"):
        as_worker("patch", "wp", "p", "-n", namespace, "--type=merge", "-p", '{"spec": {"paused": true}}')
    with pytest.raises(KubectlError, match="forbidden"):
        as_worker(
            "patch",
            "wp",
            "p",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"phase": "Paused"}}',
        )
    installed("create", "namespace", f"{namespace}-x")
    try:
        installed.apply(pool("p"), namespace=f"{namespace}-x")
        with pytest.raises(KubectlError, match="forbidden"):
            as_worker("get", "wkr", "-n", f"{namespace}-x")
    finally:
        installed("delete", "namespace", f"{namespace}-x", "--wait=false")


def test_bad_worker_input(installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Any) -> None:
    with pytest.raises(errors.PoolNotFound) as missing:
        workers("nope", "w0").beat()
    assert (missing.value.kind, missing.value.name) == ("WorkPool", "nope")

    installed.apply(pool("p"), namespace=namespace)
    with pytest.raises(errors.Invalid, match="heartbeatIntervalSeconds"):
        workers("p", "w-zero", interval=0).beat()
    with pytest.raises(errors.Invalid, match="heartbeatIntervalSeconds"):
        workers("p", "w-huge", interval=86_400).beat()

    workers("p", "w1", queues=["p-default", "ghost"]).beat()
    unknown = wait_for(
        lambda: (
            (c := condition(installed.get("wkr", "w1", namespace), "QueueNotFound")) and c["status"] == "True" and c
        ),
        what="QueueNotFound on the worker",
    )
    assert unknown["message"] == "not queues of pool p: ghost"
    assert phase(installed, "wkr", "w1", namespace) == "Online"

    installed("delete", "wp", "p", "-n", namespace)  # its workers go with it (ownerReference)
    wait_for(lambda: installed.try_get("wkr", "w1", namespace) is None, what="the worker garbage-collected")
