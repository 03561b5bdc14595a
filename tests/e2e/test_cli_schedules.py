"""`workpools schedule ls | inspect | suspend | resume | trigger` against the real control plane."""

from __future__ import annotations

import json

from tests.e2e.test_cli import Cli, cli, spec_of
from tests.support.kube import Kubectl
from tests.support.objects import pool
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from workpools.api.flowschedule import MANUAL_ANNOTATION, SCHEDULE_LABEL

__all__ = ["cli"]  # the fixture, shared with test_cli.py


def test_schedule_verbs_list_suspend_resume_and_trigger(
    installed: Kubectl, operator: OperatorProcess, namespace: str, cli: Cli
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    installed.apply(
        {
            "apiVersion": "workpools.dev/v1alpha1",
            "kind": "FlowSchedule",
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "30 2 * * *", "timeZone": "Europe/Berlin", "template": {"workPool": "p"}},
        },
        namespace=namespace,
    )
    # NEXT is a UTC time once the operator has written the status.
    wait_for(lambda: "Z " in cli("schedule", "ls"), what="the next time in `schedule ls`")
    header, row = cli("schedule", "ls").strip().split("\n")
    assert header.split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "POOL"]
    assert "Europe/Berlin" in row

    assert "suspended" in cli("schedule", "suspend", "nightly")
    assert spec_of(installed, "fs", "nightly", namespace)["suspend"] is True
    assert "resumed" in cli("schedule", "resume", "nightly")
    assert spec_of(installed, "fs", "nightly", namespace)["suspend"] is False

    out = cli("schedule", "trigger", "nightly", "-o", "json")
    made = json.loads(out)
    assert made["metadata"]["name"].startswith("nightly-manual-")
    assert made["metadata"]["labels"] == {SCHEDULE_LABEL: "nightly"}
    assert MANUAL_ANNOTATION in made["metadata"]["annotations"]
    assert made["metadata"]["ownerReferences"][0]["kind"] == "FlowSchedule"
    detail = wait_for(
        lambda: (d := cli("schedule", "inspect", "nightly")) and made["metadata"]["name"] in d and d,
        what="the active run",
    )
    assert "Europe/Berlin" in detail

    assert cli.fails("schedule", "suspend", "missing").startswith("error: ")
