"""FlowSchedules on the real control plane: bad input refused by the API server, runs created owned
and labelled, and an operator killed in the middle of a catch-up (no duplicates, no gap beyond the cap).

An outage is made by setting status.lastScheduleTime back (as an admin, through the status
subresource) while no operator runs: the schedule then looks exactly as after hours of downtime.
"""

from __future__ import annotations

import datetime
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import pool
from tests.support.operator import OperatorProcess
from tests.support.toxiproxy import Toxiproxy, via_proxy
from tests.support.waiting import wait_for
from workpools.api.flowschedule import SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION

UTC = datetime.UTC


def schedule(name: str, cron: str = "* * * * *", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "FlowSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": cron, "template": {"workPool": "p"}, **spec},
    }


AT_LEAST = "should be greater than or equal to"
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("six fields", schedule("s", "* * * * * *"), "invalid cron expression * * * * * *: want five fields"),
    ("minute 60", schedule("s", "60 * * * *"), "invalid cron expression 60 * * * *"),
    ("words", schedule("s", "every day"), "invalid cron expression every day"),
    (
        "unknown time zone",
        schedule("s", timeZone="Mars/Olympus"),
        "unknown time zone Mars/Olympus; use an IANA name such as Europe/Berlin or UTC",
    ),
    ("negative deadline", schedule("s", startingDeadlineSeconds=-1), f"startingDeadlineSeconds in body {AT_LEAST} 0"),
    ("zero catch-up", schedule("s", maxCatchUpRuns=0), f"spec.maxCatchUpRuns in body {AT_LEAST} 1"),
    ("negative history", schedule("s", failedRunsHistoryLimit=-1), f"spec.failedRunsHistoryLimit in body {AT_LEAST} 0"),
    ("unknown policy", schedule("s", concurrencyPolicy="Maybe"), 'concurrencyPolicy: Unsupported value: "Maybe"'),
    ("no template", {**schedule("s"), "spec": {"schedule": "* * * * *"}}, "spec.template: Required value"),
    ("long name", schedule("s" * 53), "a FlowSchedule name must be at most 52 characters"),
]  # fmt: skip


@pytest.mark.parametrize(("manifest", "message"), [(m, msg) for _, m, msg in REFUSED], ids=[c for c, _, _ in REFUSED])
def test_the_api_server_refuses_a_bad_schedule_with_a_clear_message(
    installed: Kubectl, namespace: str, manifest: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError) as refused:
        installed.apply(manifest, namespace=namespace)
    assert message in refused.value.stderr


def runs_of(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = kubectl.json(
        "get", "fr", "-n", namespace, "-l", f"{SCHEDULE_LABEL}={name}", "-o", "json"
    )["items"]
    return found


def scheduled_minutes(runs: list[dict[str, Any]]) -> list[datetime.datetime]:
    return sorted(datetime.datetime.fromisoformat(r["metadata"]["annotations"][SCHEDULED_AT_ANNOTATION]) for r in runs)


def set_back(kubectl: Kubectl, namespace: str, name: str, moment: datetime.datetime) -> None:
    """As after an outage since `moment`: lastScheduleTime set back through the status subresource."""
    patch = f'{{"status": {{"lastScheduleTime": "{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}"}}}}'
    kubectl("patch", "fs", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def minute(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(second=0, microsecond=0)


def test_a_schedule_catches_up_its_missed_runs_owned_labelled_and_reported(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    installed.apply(
        schedule("s", maxCatchUpRuns=3, template={"workPool": "p", "parameters": {"day": "mon"}}), namespace=namespace
    )
    uid = wait_for(
        lambda: (
            installed.get("fs", "s", namespace).get("status", {}).get("nextScheduleTime")
            and installed.get("fs", "s", namespace)["metadata"]["uid"]
        ),
        what="the schedule's first status",
    )
    set_back(installed, namespace, "s", minute(datetime.datetime.now(UTC)) - datetime.timedelta(minutes=30))
    runs = wait_for(lambda: (found := runs_of(installed, namespace, "s")) and len(found) >= 3 and found, what="3 runs")
    times = scheduled_minutes(runs)
    assert times == [times[0] + datetime.timedelta(minutes=i) for i in range(len(times))]  # contiguous
    first = runs[0]
    assert first["metadata"]["ownerReferences"][0]["uid"] == uid
    assert first["metadata"]["ownerReferences"][0]["controller"] is True
    assert first["spec"]["workPool"] == "p"
    assert first["spec"]["parameters"] == {"day": "mon"}
    assert first["spec"]["scheduledTime"] == first["metadata"]["annotations"][SCHEDULED_AT_ANNOTATION].replace(
        "+00:00", "Z"
    )
    status = wait_for(
        lambda: (s := installed.get("fs", "s", namespace)["status"]).get("activeCount", 0) >= 3 and s,
        what="the active runs in the status",
    )
    assert status["lastScheduleTime"] >= max(times).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = installed.events(namespace, "s")
    reasons = [e["reason"] for e in events]
    assert "MissedSchedule" in reasons
    assert reasons.count("SuccessfulCreate") == len(runs_of(installed, namespace, "s"))
    exposition = operator.metrics()
    labels = f'namespace="{namespace}",schedule="s"'
    assert f"workpools_schedule_runs_created_total{{{labels}}}" in exposition
    assert f"workpools_schedule_missed_total{{{labels}}}" in exposition
    assert f"workpools_schedule_active_runs{{{labels}}}" in exposition
    columns = installed("get", "fs", "s", "-n", namespace)
    assert columns.split("\n")[0].split() == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"]
    # Deleting the schedule takes its runs with it (garbage collection of owned objects).
    installed("delete", "fs", "s", "-n", namespace)
    wait_for(lambda: runs_of(installed, namespace, "s") == [], timeout=60, what="the runs garbage-collected")


def test_an_invalid_schedule_gets_a_condition_and_one_warning(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(schedule("feb30", "0 0 30 2 *"), namespace=namespace)

    def invalid() -> dict[str, Any] | None:
        conditions = installed.get("fs", "feb30", namespace).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Invalid" and c["status"] == "True"), None)

    found = wait_for(invalid, what="the Invalid condition")
    assert found["message"] == "schedule '0 0 30 2 *' cannot be evaluated: Bad day-of-month"
    warnings = wait_for(
        lambda: [e for e in installed.events(namespace, "feb30") if e["reason"] == "InvalidSchedule"],
        what="the warning",
    )
    assert [w["type"] for w in warnings] == ["Warning"]


@pytest.fixture
def operators(operator: OperatorProcess, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Operators of the test's own instead of the session's (restored after)."""
    operator.stop()
    made: list[OperatorProcess] = []

    def make(kubeconfig: Path | None = None) -> OperatorProcess:
        made.append(OperatorProcess(kubeconfig or operator.kubeconfig, tmp_path / f"operator-{len(made)}.log"))
        return made[-1]

    try:
        yield make
    finally:
        for process in made:
            process.stop(signal.SIGKILL)
        operator.start()


CAP = 12


def test_an_operator_killed_in_the_middle_of_a_catch_up_leaves_no_duplicate_and_no_gap(
    installed: Kubectl, operators: Callable[..., OperatorProcess], namespace: str, tmp_path: Path
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    installed.apply(schedule("s", maxCatchUpRuns=CAP), namespace=namespace)
    set_back(installed, namespace, "s", minute(datetime.datetime.now(UTC)) - datetime.timedelta(hours=3))

    # The first operator talks to the API server through 200 ms of latency, so its catch-up takes
    # seconds: it is SIGKILLed once some of the runs exist and before all of them do.
    kubeconfig = operators().kubeconfig
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with Toxiproxy.start(tmp_path) as toxiproxy:
        proxy = toxiproxy.proxy("operator", int(server.rsplit(":", 1)[1]))
        proxy.add("lag", "latency", latency=200)
        first = operators(via_proxy(kubeconfig, proxy, tmp_path / "proxied.kubeconfig"))
        first.start()
        partial = wait_for(
            lambda: (r := runs_of(installed, namespace, "s")) and len(r) >= 2 and r,
            timeout=60,
            interval=0.05,
            what="the catch-up under way",
        )
        first.stop(signal.SIGKILL)
    partial = runs_of(installed, namespace, "s")
    assert 0 < len(partial) < CAP, f"the kill came too late to be in the middle ({len(partial)} runs)"

    second = operators()
    second.start()

    def settled() -> list[dict[str, Any]] | None:
        # The catch-up is done when the status names the newest run as the last scheduled and counts
        # every run active. Runs and status are read together: a minute boundary passing during the
        # catch-up adds one more run, and a snapshot of the runs taken before it would wait for a
        # time the status has passed.
        runs = runs_of(installed, namespace, "s")
        status = installed.get("fs", "s", namespace).get("status", {})
        newest = max(scheduled_minutes(runs)).strftime("%Y-%m-%dT%H:%M:%SZ") if runs else None
        done = len(runs) >= CAP and status.get("lastScheduleTime") == newest
        return runs if done and status.get("activeCount") == len(runs) else None

    runs = wait_for(settled, timeout=60, what="the catch-up finished and counted in the status")
    times = scheduled_minutes(runs)
    names = [r["metadata"]["name"] for r in runs]
    assert len(names) == len(set(names))
    assert times == [times[0] + datetime.timedelta(minutes=i) for i in range(len(times))], "a gap in the caught-up runs"
    assert set(scheduled_minutes(partial)) <= set(times)  # what the killed operator made is kept, not made again
    # The cap holds: the oldest run is no older than CAP minutes before the kill (a minute boundary
    # passing during the test may add the new minute's run, never an older one).
    assert len(runs) <= CAP + 2
    creates = [e for e in installed.events(namespace, "s") if e["reason"] == "SuccessfulCreate"]
    assert len(creates) <= len(runs)  # one per run at most (a create whose event was lost with the kill: none)


def test_replace_cancels_the_active_run_when_the_next_time_comes(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), namespace=namespace)  # no worker: a run stays Scheduled, i.e. active
    installed.apply(schedule("r", concurrencyPolicy="Replace"), namespace=namespace)
    wait_for(lambda: installed.get("fs", "r", namespace).get("status", {}).get("nextScheduleTime"), what="a status")
    set_back(installed, namespace, "r", minute(datetime.datetime.now(UTC)) - datetime.timedelta(minutes=5))
    (first,) = wait_for(lambda: runs_of(installed, namespace, "r"), what="the first run")
    # The next minute's run replaces it: spec.cancel on the first (the operator's own child), which
    # the run lifecycle then moves Scheduled → Cancelled.
    runs = wait_for(
        lambda: (r := runs_of(installed, namespace, "r")) and len(r) >= 2 and r, timeout=75, what="the next run"
    )
    assert first["metadata"]["name"] in [r["metadata"]["name"] for r in runs]
    wait_for(
        lambda: installed.get("fr", first["metadata"]["name"], namespace).get("status", {}).get("state"),
        equals="Cancelled",
        what="the replaced run cancelled",
    )
    assert installed.get("fr", first["metadata"]["name"], namespace)["spec"]["cancel"] is True
    newest = max(runs, key=lambda r: r["metadata"]["name"])["metadata"]["name"]
    assert installed.get("fr", newest, namespace)["spec"].get("cancel", False) is False
    assert "Replaced" in [e["reason"] for e in installed.events(namespace, "r")]
