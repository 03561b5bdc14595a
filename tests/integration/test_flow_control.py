"""Flow control on a real control plane (issue 14 items 1-3): limits by time window, per-key
limits, start rates. Workers are simulated with the worker Role's credentials; the operator runs
under the shipped RBAC.

Aspects: a window lowers the effective limit when it opens (status.slots.limit, the LimitWindow
condition, one event each way) without stopping a running run, new grants wait with the window
named, and go once it closes; a per-key cap holds the second run of a team while other teams and
runs without the label go; a start rate spaces grants, also across an operator restart (the
bucket is derived from the runs' grantedAt); malformed windows, time zones, keys and rates are
refused by the API server with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker

Workers = Callable[..., SimulatedWorker]


def status(kubectl: Kubectl, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return (kubectl.try_get(kind, name, namespace) or {}).get("status") or {}


def condition(kubectl: Kubectl, kind: str, namespace: str, name: str, type_: str) -> dict[str, Any]:
    found = (c for c in status(kubectl, kind, namespace, name).get("conditions", []) if c["type"] == type_)
    return next(found, {})


def state(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    return status(kubectl, "fr", namespace, name).get("state")


def held(kubectl: Kubectl, namespace: str, name: str) -> tuple[str, str] | None:
    admitted = condition(kubectl, "fr", namespace, name, "Admitted")
    return (admitted["reason"], admitted["message"]) if admitted.get("status") == "False" else None


def granted_at(kubectl: Kubectl, namespace: str, name: str) -> datetime:
    return datetime.fromisoformat(status(kubectl, "fr", namespace, name)["grantedAt"])


def test_a_window_lowers_the_limit_while_open_without_stopping_running_runs(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    # Open for the first 20 s of every minute, with limit 0: nothing new starts then.
    window = {"name": "busy", "cron": "* * * * *", "durationSeconds": 20, "limit": 0}
    installed.apply(pool("p", concurrencyLimit=5, concurrencyLimitSchedule=[window]), namespace=namespace)
    worker = workers("p", "w1", interval=60)
    worker.beat()
    installed.apply(run("a", "p"), namespace=namespace)
    wait_for(lambda: state(installed, namespace, "a"), equals="Pending", timeout=60, what="a granted (window closed)")
    assert granted_at(installed, namespace, "a").second >= 20
    worker.move("a", "Running")

    opened = wait_for(
        lambda: condition(installed, "wp", namespace, "p", "LimitWindow").get("status") == "True",
        timeout=70,
        what="the window open",
    )
    assert opened
    pool_status = status(installed, "wp", namespace, "p")
    assert pool_status["slots"]["limit"] == 0
    assert condition(installed, "wp", namespace, "p", "LimitWindow")["message"] == "window busy is open: limit 0"
    installed.apply(run("b", "p"), namespace=namespace)
    reason = wait_for(lambda: held(installed, namespace, "b"), what="b held by the window")
    if state(installed, namespace, "b") == "Scheduled":  # not admitted in the few seconds the window may have left
        assert reason == ("PoolLimitReached", "pool p has no open slot (limit 0 in window busy)")
    assert state(installed, namespace, "a") == "Running"  # lowering a limit never stops a run

    wait_for(lambda: state(installed, namespace, "b"), equals="Pending", timeout=30, what="b granted once it closed")
    assert granted_at(installed, namespace, "b").second >= 20
    assert status(installed, "wp", namespace, "p")["slots"]["limit"] == 5
    reasons = [e["reason"] for e in installed.events(namespace, "p")]
    assert "LimitWindowOpened" in reasons
    assert "LimitWindowClosed" in reasons


def test_a_per_key_limit_caps_runs_per_label_value(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(
        pool("p", concurrencyLimitPerKey=[{"label": "team", "limit": 1}]),
        queue("q", "p", priority=1, concurrencyLimitPerKey=[{"parameter": "dataset", "limit": 1}]),
        namespace=namespace,
    )
    worker = workers("p", "w1")
    worker.beat()

    def labelled(name: str, team: str | None, **spec: Any) -> dict[str, Any]:
        body = run(name, "p", **spec)
        if team is not None:
            body["metadata"]["labels"] = {"team": team}
        return body

    installed.apply(labelled("a1", "a"), namespace=namespace)
    wait_for(lambda: state(installed, namespace, "a1"), equals="Pending", what="a1 granted")
    installed.apply(
        labelled("a2", "a"),
        labelled("b1", "b"),
        labelled("n1", None),
        labelled("s1", None, workQueue="q", parameters={"dataset": "sales"}),
        labelled("s2", None, workQueue="q", parameters={"dataset": "sales"}),
        namespace=namespace,
    )
    for name in ("b1", "n1"):
        wait_for(lambda name=name: state(installed, namespace, name), equals="Pending", what=f"{name} granted")
    assert wait_for(lambda: held(installed, namespace, "a2"), what="a2 held") == (
        "KeyLimitReached",
        "pool p runs at most 1 at once per label team; team=a has no room",
    )
    granted = wait_for(
        lambda: {n for n in ("s1", "s2") if state(installed, namespace, n) == "Pending"}, what="one dataset run"
    )
    assert len(granted) == 1
    other = ({"s1", "s2"} - granted).pop()
    assert wait_for(lambda: held(installed, namespace, other), what=f"{other} held") == (
        "KeyLimitReached",
        'queue q runs at most 1 at once per parameter dataset; dataset="sales" has no room',
    )
    worker.move("a1", "Running")
    worker.move("a1", "Completed")
    wait_for(lambda: state(installed, namespace, "a2"), equals="Pending", what="a2 granted once a1 ended")


def test_a_start_rate_spaces_grants_across_an_operator_restart(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    # Two at once, then one every 20 s: room for a slow restart before the next token.
    installed.apply(pool("p", startRate={"perMinute": 3, "burst": 2}), namespace=namespace)
    worker = workers("p", "w1")
    worker.beat()
    installed.apply(run("r1", "p"), run("r2", "p"), namespace=namespace)
    for name in ("r1", "r2"):
        wait_for(lambda name=name: state(installed, namespace, name), equals="Pending", what=f"{name} granted")
    first = min(granted_at(installed, namespace, n) for n in ("r1", "r2"))
    for name in ("r1", "r2"):  # finished runs keep grantedAt: the rate remembers them
        worker.move(name, "Running")
        worker.move(name, "Completed")
    operator.stop()
    installed.apply(run("r3", "p"), run("r4", "p"), namespace=namespace)
    operator.start()
    wait_for(lambda: held(installed, namespace, "r3"), what="r3 held by the rate")
    assert held(installed, namespace, "r3") == (
        "StartRateLimited",
        "pool p starts at most 3 runs a minute (burst 2): none available now",
    )
    for name in ("r3", "r4"):
        wait_for(lambda name=name: state(installed, namespace, name), equals="Pending", timeout=60, what=name)
    times = sorted(granted_at(installed, namespace, n) for n in ("r3", "r4"))
    assert times[0] - first >= timedelta(seconds=20)
    assert times[1] - first >= timedelta(seconds=40)
    assert times[1] - first < timedelta(seconds=40 + 10)  # the token's deadline wakes the pool: no polling delay


WINDOW = {"from": "22:00", "to": "06:00", "limit": 1}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"concurrencyLimitSchedule": [{**WINDOW, "cron": "0 * * * *"}]}, "a window is either cron with"),
        ({"concurrencyLimitSchedule": [{"cron": "0 * * * *", "limit": 1}]}, "a window is either cron with"),
        ({"concurrencyLimitSchedule": [{**WINDOW, "to": "22:00"}]}, "from and to must differ"),
        ({"concurrencyLimitSchedule": [{**WINDOW, "to": "24:00"}]}, r"spec.concurrencyLimitSchedule\[0\].to"),
        (
            {"concurrencyLimitSchedule": [{"cron": "61 * * * *", "durationSeconds": 60, "limit": 1}]},
            "invalid cron expression 61",
        ),
        ({"concurrencyLimitSchedule": [{**WINDOW, "timeZone": "Mars/Base"}]}, "unknown time zone Mars/Base"),
        ({"concurrencyLimitSchedule": [{**WINDOW, "limit": -1}]}, "greater than or equal to 0"),
        ({"concurrencyLimitPerKey": [{"label": "team", "parameter": "x", "limit": 1}]}, "exactly one of label"),
        ({"concurrencyLimitPerKey": [{"limit": 1}]}, "exactly one of label"),
        ({"concurrencyLimitPerKey": [{"label": "no spaces", "limit": 1}]}, r"concurrencyLimitPerKey\[0\].label"),
        ({"startRate": {"perMinute": 0}}, r"spec.startRate.perMinute: .* greater than or equal to 1"),
        ({"startRate": {"perMinute": 5, "burst": 0}}, r"spec.startRate.burst: .* greater than or equal to 1"),
    ],
)
def test_bad_flow_control_is_refused(installed: Kubectl, namespace: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError, match=message):
        installed.apply(pool("p", **spec), namespace=namespace)
    with pytest.raises(KubectlError, match=message):
        installed.apply(queue("q", "p", **spec), namespace=namespace)
