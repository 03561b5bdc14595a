"""Pool lifecycle on a real control plane: default queue, phases, events, deletion.

Aspects: the default queue (created, owned, re-created, adopted); phases and their events
(exactly one per real transition, none on a no-op apply); `Updated` events listing changes;
deletion (`Deleted`, the default queue garbage-collected, other queues `PoolNotFound`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tests.support.kube import Kubectl
from tests.support.objects import condition, pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for


def reasons(kubectl: Kubectl, namespace: str, name: str, kind: str = "WorkPool") -> Counter[str]:
    """How many events of each reason the object has (listing order is not chronological)."""
    return Counter(e["reason"] for e in kubectl.events(namespace, name) if e["involvedObject"]["kind"] == kind)


def described_events(kubectl: Kubectl, resource: str, name: str, namespace: str) -> list[tuple[str, str]]:
    """(reason, message) of each event in the Events table of `kubectl describe`, as a person reads it."""
    text = kubectl("describe", resource, name, "-n", namespace)
    table = text.split("\nEvents:", 1)[1].splitlines()[3:]  # after the heading and the dashes
    rows = []
    for line in table:
        if not line.strip():
            break
        _type, reason, rest = line.split(maxsplit=2)
        rows.append((reason, rest.split("workpools-operator", 1)[1].strip()))
    return rows


def wide_table(text: str) -> dict[str, dict[str, str]]:
    """`kubectl get -o wide` as {name: {column: cell}}; columns start where the header's names do."""
    header, *lines = text.splitlines()
    columns = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]  # names may hold one space
    bounds = [start for _, start in columns[1:]] + [None]
    table = {}
    for line in lines:
        cells = {name: line[start:end].strip() for (name, start), end in zip(columns, bounds, strict=True)}
        table[cells["NAME"]] = cells
    return table


def phase_of(kubectl: Kubectl, resource: str, name: str, namespace: str) -> str | None:
    obj = kubectl.try_get(resource, name, namespace)
    return (obj or {}).get("status", {}).get("phase")


def wait_phase(kubectl: Kubectl, resource: str, name: str, namespace: str, phase: str) -> dict[str, Any]:
    return wait_for(
        lambda: phase_of(kubectl, resource, name, namespace) == phase and kubectl.get(resource, name, namespace),
        what=f"{resource}/{name} phase {phase}",
    )


def test_new_pool_gets_an_owned_default_queue_and_one_created_event(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("etl"), namespace=namespace)
    status = wait_phase(installed, "wp", "etl", namespace, "NotReady")["status"]
    assert status["defaultQueue"] == "etl-default"
    assert condition({"status": status}, "Ready")["status"] == "False"
    assert condition({"status": status}, "Paused")["status"] == "False"

    default = wait_for(lambda: installed.try_get("wq", "etl-default", namespace), what="the default queue")
    pool_uid = installed.get("wp", "etl", namespace)["metadata"]["uid"]
    (owner,) = default["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("WorkPool", "etl", pool_uid, True)
    wait_for(
        lambda: installed.get("wq", "etl-default", namespace).get("status", {}).get("effectivePriority") == 1,
        what="default queue priority 1",
    )
    wait_for(
        lambda: reasons(installed, namespace, "etl"),
        equals={"Created": 1, "NotReady": 1},
        what="Created, then the first phase",
    )


def test_paused_pool_starts_paused_and_each_transition_emits_one_event(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p", paused=True), namespace=namespace)
    wait_phase(installed, "wp", "p", namespace, "Paused")
    # Created, then the phase it starts in, as Prefect emits them (issue 15), in that order.
    wait_for(lambda: reasons(installed, namespace, "p"), equals={"Created": 1, "Paused": 1}, what="Created, Paused")
    assert described_events(installed, "wp", "p", namespace) == [
        ("Created", "WorkPool p created; default queue p-default"),
        ("Paused", "WorkPool p is now Paused: the pool is paused"),
    ]
    wait_for(
        lambda: described_events(installed, "wq", "p-default", namespace),
        equals=[
            ("Created", "WorkQueue p-default created in pool p with priority 1"),
            ("NotReady", "WorkQueue p-default is now NotReady: no online worker serves this queue"),
        ],
        what="the default queue's Created, then NotReady",
    )

    installed.apply(pool("p", paused=False), namespace=namespace)
    wait_phase(installed, "wp", "p", namespace, "NotReady")
    installed.apply(pool("p", paused=False), namespace=namespace)  # a no-op apply: no event
    installed.apply(pool("p", paused=True), namespace=namespace)
    wait_phase(installed, "wp", "p", namespace, "Paused")
    wait_for(
        lambda: reasons(installed, namespace, "p"),
        equals={"Created": 1, "Paused": 2, "NotReady": 1},
        what="one event per real transition after that",
    )
    assert [reason for reason, _ in described_events(installed, "wp", "p", namespace)] == [
        "Created",
        "Paused",
        "NotReady",
        "Paused",
    ]
    paused = condition(installed.get("wp", "p", namespace), "Paused")
    assert paused is not None
    assert paused["status"] == "True"
    installed("wait", "--for=condition=Paused", "wp/p", "-n", namespace, "--timeout=10s")


def test_spec_change_emits_one_updated_event_listing_each_field(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p", concurrencyLimit=3, description="nightly"), namespace=namespace)
    wait_phase(installed, "wp", "p", namespace, "NotReady")
    installed.apply(pool("p", concurrencyLimit=5, description="hourly"), namespace=namespace)

    updated = wait_for(
        lambda: [e for e in installed.events(namespace, "p") if e["reason"] == "Updated"], what="an Updated event"
    )
    (event,) = updated
    assert "concurrencyLimit: 3 → 5" in event["message"]
    assert "description: 'nightly' → 'hourly'" in event["message"]
    assert "\n" not in event["message"]
    assert len(event["message"]) <= 1024
    status = wait_for(
        lambda: (
            installed.get("wp", "p", namespace)["status"]["observedGeneration"] == 2
            and installed.get("wp", "p", namespace)["status"]
        ),
        what="generation 2 observed",
    )
    assert status["slots"]["summary"] == "0/5"


def test_deleted_default_queue_is_recreated_with_a_warning(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    first = wait_for(lambda: installed.try_get("wq", "p-default", namespace), what="the default queue")
    installed("delete", "wq", "p-default", "-n", namespace)
    again = wait_for(
        lambda: (
            (q := installed.try_get("wq", "p-default", namespace))
            and q["metadata"]["uid"] != first["metadata"]["uid"]
            and q
        ),
        what="a re-created default queue",
    )
    assert again["metadata"]["ownerReferences"][0]["name"] == "p"
    warnings = wait_for(
        lambda: [e for e in installed.events(namespace, "p") if e["type"] == "Warning"], what="a Warning event"
    )
    assert [e["reason"] for e in warnings] == ["DefaultQueueRecreated"]


def test_user_created_default_queue_is_adopted_not_fought(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(queue("p-default", "p", priority=7, description="mine"), namespace=namespace)
    installed.apply(pool("p"), namespace=namespace)
    wait_phase(installed, "wp", "p", namespace, "NotReady")
    mine = wait_for(
        lambda: (
            installed.get("wq", "p-default", namespace).get("status", {}).get("effectivePriority")
            and installed.get("wq", "p-default", namespace)
        ),
        what="the queue's status",
    )
    assert mine["spec"] == {"workPool": "p", "priority": 7, "description": "mine"}
    assert "ownerReferences" not in mine["metadata"]
    assert mine["status"]["effectivePriority"] == 7


def test_deleting_a_pool_leaves_its_other_queues_reporting_pool_not_found(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("p"), queue("q", "p", priority=5), run("r", "p", workQueue="q"), namespace=namespace)
    wait_phase(installed, "wq", "q", namespace, "NotReady")
    wait_for(lambda: installed.try_get("wq", "p-default", namespace), what="the default queue")

    installed("delete", "wp", "p", "-n", namespace)
    wait_for(lambda: installed.try_get("wq", "p-default", namespace) is None, what="the default queue to go with it")
    wait_for(lambda: "Deleted" in reasons(installed, namespace, "p"), what="a Deleted event")
    gone = wait_for(
        lambda: (c := condition(installed.get("wq", "q", namespace), "PoolNotFound")) and c["status"] == "True" and c,
        what="PoolNotFound on the queue",
    )
    assert gone["message"] == "WorkPool p does not exist"
    assert installed.get("wq", "q", namespace)["spec"] == {"workPool": "p", "priority": 5}
    wait_for(
        lambda: reasons(installed, namespace, "q", kind="WorkQueue")["PoolNotFound"],
        equals=1,
        what="one PoolNotFound warning",
    )

    orphan = wait_for(
        lambda: condition(installed.get("fr", "r", namespace), "PoolNotFound"), what="the run's condition"
    )
    assert (orphan["status"], orphan["message"]) == ("True", "WorkPool p not found")
    assert installed.get("fr", "r", namespace)["status"]["state"] == "Scheduled"  # kept, not deleted

    # The operator keeps serving everything else.
    installed.apply(pool("other"), namespace=namespace)
    wait_phase(installed, "wp", "other", namespace, "NotReady")


def test_kubectl_get_wide_says_why_and_shows_a_future_scheduled_time(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(
        pool("p", paused=True),
        queue("q", "p", priority=3),
        run("soon", "p", workQueue="q"),
        run("later", "p", workQueue="q", scheduledTime="2030-01-01T00:00:00Z"),
        namespace=namespace,
    )
    wait_phase(installed, "wp", "p", namespace, "Paused")
    wait_for(lambda: condition(installed.get("fr", "soon", namespace), "Admitted"), what="the runs' Admitted condition")

    def rows(resource: str) -> dict[str, dict[str, str]]:
        return wide_table(installed("get", resource, "-n", namespace, "-o", "wide"))

    assert rows("wp")["p"]["MESSAGE"] == "the pool is paused"
    # A change of counts alone is written up to 5 s after the queue's last status write.
    queue_row = wait_for(lambda: (r := rows("wq")["q"])["SCHEDULED"] == "2" and r, what="the queue's scheduled count")
    assert queue_row | {"AGE": "", "LATE": ""} == {  # "soon" turns Late if this test is slow
        "NAME": "q",
        "POOL": "p",
        "PRIORITY": "3",
        "STATUS": "NotReady",
        "SLOTS": "0/∞",
        "SCHEDULED": "2",
        "AGE": "",
        "LATE": "",
        "REQUESTED": "3",
        "MESSAGE": "no online worker serves this queue",
    }
    runs = wait_for(lambda: (r := rows("fr"))["later"]["SCHEDULED"] and r, what="the runs' scheduled times")
    assert runs["later"]["SCHEDULED"] == "2030-01-01T00:00:00Z"  # a date column printed <invalid>
    assert (runs["later"]["STATE"], runs["later"]["ADMISSION"]) == ("Scheduled", "PoolPaused")
    assert runs["soon"]["STATE NAME"] in {"Scheduled", "Late"}
