"""Run lifecycle policies on a real control plane (issue 13): finished-run TTL, the Cancelling
timeout, retries, the late-run policy. Workers are simulated with the worker Role's credentials.

Aspects: finished runs are deleted once their TTL has passed, never before and never while in
flight; a run Cancelling past the pool's timeout, its worker alive but silent about it, is
Cancelled and its slot granted again; a Failed or Crashed run with retries left comes back as
its next attempt after its delay, until none is left, and a worker cannot retry it itself; bad
the late policy cancels runs waiting too long (a queue's policy replacing the pool's) and skips a
schedule's older due runs for its newest, and queues count their Late runs; bad values are
refused by the API server with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker
from workpools.api.base import timestamp
from workpools.api.meta import SCHEDULE_LABEL
from workpools.client import errors

Workers = Callable[..., SimulatedWorker]


def status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return (kubectl.try_get("fr", name, namespace) or {}).get("status") or {}


def names(kubectl: Kubectl, namespace: str) -> set[str]:
    return {r["metadata"]["name"] for r in kubectl.json("get", "fr", "-n", namespace)["items"]}


def bound(kubectl: Kubectl, namespace: str, name: str) -> None:
    wait_for(lambda: status(kubectl, namespace, name).get("state"), equals="Pending", what=f"{name} bound")


def completed(kubectl: Kubectl, namespace: str, worker: SimulatedWorker, name: str) -> None:
    """Wait for `name` to be bound to `worker`, then run it to Completed as the worker."""
    bound(kubectl, namespace, name)
    worker.move(name, "Running")
    worker.move(name, "Completed")


def test_finished_runs_are_deleted_after_the_pool_ttl_and_runs_in_flight_are_kept(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p", finishedRunTTLSeconds=3), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    installed.apply(*(run(name, "p") for name in ("done", "failed", "running")), namespace=namespace)
    for name in ("done", "failed", "running"):
        bound(installed, namespace, name)
        worker.move(name, "Running")
    worker.move("done", "Completed")
    worker.move("failed", "Failed", message="exit code 1")
    assert names(installed, namespace) == {"done", "failed", "running"}  # not before its time
    wait_for(lambda: names(installed, namespace), equals={"running"}, timeout=3 + 0.3 + 10, what="finished runs gone")
    ended = status(installed, namespace, "running")
    assert ended["state"] == "Running"


def test_a_pool_without_ttl_keeps_its_finished_runs(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("done", "p"), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    completed(installed, namespace, worker, "done")
    # A pool with a TTL in the same namespace deletes its own runs only.
    installed.apply(pool("q", finishedRunTTLSeconds=1), run("other", "q"), namespace=namespace)
    other = workers("q", "w2")
    other.beat()
    completed(installed, namespace, other, "other")
    wait_for(lambda: names(installed, namespace), equals={"done"}, timeout=15, what="only the TTL pool's run gone")


def test_a_run_cancelling_past_the_timeout_with_its_worker_alive_is_cancelled_and_frees_its_slot(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p", concurrencyLimit=1, cancellingTimeoutSeconds=15), run("stuck", "p"), namespace=namespace)
    worker = workers("p", "w1", interval=1)
    worker.beat()
    bound(installed, namespace, "stuck")
    worker.move("stuck", "Running")
    installed.apply(run("next", "p"), namespace=namespace)
    installed("patch", "fr", "stuck", "-n", namespace, "--type=merge", "-p", '{"spec": {"cancel": true}}')
    since = wait_for(lambda: status(installed, namespace, "stuck").get("cancellingSince"), what="Cancelling, stamped")

    def beating(name: str) -> str | None:  # the worker stays alive, but never reports the run stopped
        worker.beat()
        return status(installed, namespace, name).get("state")

    wait_for(lambda: beating("stuck"), equals="Cancelled", timeout=15 + 10, interval=1, what="cancelled by the timeout")
    ended = status(installed, namespace, "stuck")
    assert "cancellingTimeoutSeconds (15s)" in ended["message"]
    assert "slot" not in ended
    waited = datetime.fromisoformat(ended["endTime"]) - datetime.fromisoformat(since)
    assert waited > timedelta(seconds=15)
    assert [e["reason"] for e in installed.events(namespace, "stuck")].count("CancellingTimeout") == 1
    wait_for(lambda: beating("next"), equals="Pending", interval=1, what="the freed slot granted")


def test_a_failed_run_is_retried_as_new_attempts_after_its_delay_until_none_is_left(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("r", "p", retries=2, retryDelaySeconds=2), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    for attempt, ending in ((1, "Failed"), (2, "Crashed")):
        bound(installed, namespace, "r")
        assert status(installed, namespace, "r")["attempt"] == attempt
        worker.move("r", "Running")
        failed_at = datetime.now(UTC)
        worker.move("r", ending, message=f"attempt {attempt} went wrong")
        retried = wait_for(
            lambda: (s := status(installed, namespace, "r")).get("stateName") == "AwaitingRetry" and s,
            what=f"attempt {attempt + 1} awaiting retry",
        )
        assert retried["attempt"] == attempt + 1
        assert retried["lastFailure"]["attempt"] == attempt
        assert retried["lastFailure"]["state"] == ending
        assert retried["lastFailure"]["message"] == f"attempt {attempt} went wrong"
        assert "worker" not in retried
        assert datetime.fromisoformat(retried["scheduledTime"]) >= failed_at + timedelta(seconds=2) - timedelta(
            seconds=1
        )
        wait_for(lambda: status(installed, namespace, "r").get("state"), equals="Pending", what="granted again")
        granted = status(installed, namespace, "r")
        assert datetime.fromisoformat(granted["slot"]["acquiredAt"]) >= datetime.fromisoformat(retried["scheduledTime"])
    worker.move("r", "Running")
    worker.move("r", "Failed", message="the last attempt went wrong")
    with pytest.raises(AssertionError, match="timed out"):  # no attempt is left: it stays Failed
        wait_for(lambda: status(installed, namespace, "r").get("state") != "Failed", timeout=3, what="a fourth attempt")
    header, row = installed("get", "fr", "r", "-n", namespace).splitlines()
    assert header.split() == ["NAME", "POOL", "QUEUE", "STATE", "WORKER", "ATTEMPT", "SCHEDULED", "AGE"]
    assert row.split()[:5] == ["r", "p", "Failed", "w1", "3"]  # QUEUE is empty: the default queue
    assert [e["reason"] for e in installed.events(namespace, "r")].count("AwaitingRetry") == 2


def test_a_run_crashed_by_a_lost_worker_is_retried_on_another_worker(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("r", "p", retries=1), namespace=namespace)
    lost = workers("p", "lost", interval=1)
    lost.beat()
    bound(installed, namespace, "r")
    lost.move("r", "Running")
    other = workers("p", "other", interval=1)

    def attempt_two() -> dict[str, Any] | None:  # "lost" stays silent; "other" keeps beating
        other.beat()
        found = status(installed, namespace, "r")
        return found if found.get("attempt") == 2 and found.get("state") == "Pending" else None

    granted = wait_for(attempt_two, timeout=30, interval=0.5, what="attempt 2 granted to the other worker")
    assert granted["worker"] == "other"
    assert granted["lastFailure"]["state"] == "Crashed"
    assert "went offline while it was running" in granted["lastFailure"]["message"]


def test_a_worker_cannot_retry_a_run_itself(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), run("r", "p"), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    bound(installed, namespace, "r")
    worker.move("r", "Running")
    worker.move("r", "Failed")
    with pytest.raises(errors.Forbidden, match="a worker cannot move a FlowRun from Failed to Scheduled"):
        worker.move("r", "Scheduled")


def test_late_runs_are_cancelled_by_the_pool_policy_unless_their_queue_says_run(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    hour_ago = timestamp(datetime.now(UTC) - timedelta(hours=1))
    installed.apply(
        pool("p", latePolicy={"action": "Cancel", "afterSeconds": 60}),
        queue("keep", "p", latePolicy={"action": "Run"}),
        run("doomed", "p", scheduledTime=hour_ago),
        run("kept", "p", workQueue="keep", scheduledTime=hour_ago),
        namespace=namespace,
    )
    ended = wait_for(
        lambda: (s := status(installed, namespace, "doomed")).get("state") == "Cancelled" and s, what="late-cancelled"
    )
    assert ended["stateName"] == "LateCancelled"
    assert "latePolicy.afterSeconds (60s)" in ended["message"]
    assert [e["reason"] for e in installed.events(namespace, "doomed")].count("LateCancelled") == 1
    wait_for(lambda: status(installed, namespace, "kept").get("stateName"), equals="Late", what="kept, Late")
    wait_for(lambda: installed.get("wq", "keep", namespace)["status"].get("lateRuns"), equals=1, what="late count")
    header = installed("get", "wq", "keep", "-n", namespace, "-o", "wide").splitlines()[0]
    assert "LATE" in header.split()


def test_skip_to_latest_keeps_only_the_newest_due_run_of_a_schedule(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    now = datetime.now(UTC)
    runs = []
    for minutes in (3, 2, 1):
        body = run(f"nightly-{minutes}", "p", scheduledTime=timestamp(now - timedelta(minutes=minutes)))
        body["metadata"]["labels"] = {SCHEDULE_LABEL: "nightly"}
        runs.append(body)
    installed.apply(pool("p", latePolicy={"skipToLatest": True}), *runs, namespace=namespace)
    wait_for(
        lambda: {n: status(installed, namespace, n).get("stateName") for n in ("nightly-3", "nightly-2")},
        equals={"nightly-3": "SkippedToLatest", "nightly-2": "SkippedToLatest"},
        what="the older runs skipped",
    )
    wait_for(lambda: status(installed, namespace, "nightly-1").get("state"), equals="Scheduled", what="waiting")
    assert (
        "nightly-1, a newer run of FlowSchedule nightly, is due" in status(installed, namespace, "nightly-3")["message"]
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"action": "Cancel"}, "latePolicy.afterSeconds is required with action Cancel"),
        ({"action": "Run", "afterSeconds": 30}, "latePolicy.afterSeconds is required with action Cancel"),
        ({"action": "Cancel", "afterSeconds": -1}, r"afterSeconds: .* greater than or equal to 1"),
        ({"action": "Later"}, r"Unsupported value: \"Later\""),
    ],
)
def test_bad_late_policies_are_refused(
    installed: Kubectl, namespace: str, policy: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError, match=message):
        installed.apply(pool("p", latePolicy=policy), namespace=namespace)
    with pytest.raises(KubectlError, match=message):
        installed.apply(queue("q", "p", latePolicy=policy), namespace=namespace)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"retries": -1}, r"spec.retries: .* greater than or equal to 0"),
        ({"retryDelaySeconds": -5}, r"spec.retryDelaySeconds: .* greater than or equal to 0"),
        ({"retries": 1001}, r"spec.retries: .* less than or equal to 1000"),
    ],
)
def test_bad_retry_values_are_refused(installed: Kubectl, namespace: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError, match=message):
        installed.apply(run("r", "p", **spec), namespace=namespace)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"finishedRunTTLSeconds": -1},
            r"spec.finishedRunTTLSeconds: Invalid value: -1: .* should be greater than or equal to 1",
        ),
        ({"finishedRunTTLSeconds": 0}, "should be greater than or equal to 1"),
        ({"cancellingTimeoutSeconds": -1}, r"spec.cancellingTimeoutSeconds: .* greater than or equal to 15"),
        ({"cancellingTimeoutSeconds": 5}, r"spec.cancellingTimeoutSeconds: .* greater than or equal to 15"),
    ],
)
def test_bad_policy_values_are_refused(installed: Kubectl, namespace: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError, match=message):
        installed.apply(pool("p", **spec), namespace=namespace)
