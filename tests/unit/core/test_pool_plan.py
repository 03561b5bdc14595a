"""`plan_pool`: statuses and events of a pool and its queues, decided without any server.

Aspects: first sight (Created, then the first phase, default queue); events only on real transitions; a settled pool
plans no events and the same statuses (idempotence, also as a property); Updated messages;
the Invalid condition; PoolNotFound; Deleted events.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.builders import T0
from tests.unit.core.run_support import wkr
from workpools.api.phases import WorkerPhase
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.core.plan import PoolPlan, SpecChange, plan_pool
from workpools.core.snapshot import PoolState, Sighting


def wp(name: str = "p", generation: int = 1, **spec: Any) -> WorkPool:
    return WorkPool.model_validate(
        {"kind": "WorkPool", "metadata": {"name": name, "namespace": "ns", "generation": generation}, "spec": spec}
    )


def wq(name: str, pool: str = "p", generation: int = 1, **spec: Any) -> WorkQueue:
    return WorkQueue.model_validate(
        {
            "kind": "WorkQueue",
            "metadata": {"name": name, "namespace": "ns", "generation": generation, "creationTimestamp": T0},
            "spec": {"workPool": pool, **spec},
        }
    )


def plan(pool: WorkPool | None, queues: list[WorkQueue], minutes: int = 0, **kw: Any) -> PoolPlan:
    state = PoolState(name="p", pool=pool, queues=queues, workers=[], runs=[], now=T0 + timedelta(minutes=minutes))
    return plan_pool(state, **kw)


def settle(pool: WorkPool | None, queues: list[WorkQueue], result: PoolPlan) -> tuple[Any, list[WorkQueue]]:
    """The objects as they are after the controller wrote the plan's statuses."""
    if pool is not None and result.pool_status is not None:
        pool = pool.model_copy(update={"status": result.pool_status})
    return pool, [q.model_copy(update={"status": result.queue_statuses[q.metadata.name]}) for q in queues]


def events(result: PoolPlan) -> list[tuple[str, str, str]]:
    return [(obj.metadata.name, e.type.value, e.reason) for obj, e in result.events]


def test_a_new_pool_is_created_not_ready_and_asks_for_its_default_queue() -> None:
    result = plan(wp(), [])
    assert result.create_default_queue
    assert result.pool_status is not None
    assert result.pool_status.phase == "NotReady"
    assert result.pool_status.default_queue == "p-default"
    assert events(result) == [("p", "Normal", "Created"), ("p", "Normal", "NotReady")]


def test_a_pool_created_paused_says_so_once_after_created() -> None:
    # Issue 15: Prefect emits the created event, then the status event; we did only the first.
    first = plan(wp(paused=True), [])
    assert [(e.reason, e.message) for _, e in first.events] == [
        ("Created", "WorkPool p created; default queue p-default"),
        ("Paused", "WorkPool p is now Paused: the pool is paused"),
    ]
    pool, _ = settle(wp(paused=True), [], first)
    assert events(plan(pool, [], minutes=1)) == []


def test_a_new_queue_gets_created_then_its_phase() -> None:
    pool, _ = settle(wp(), [], plan(wp(), []))
    result = plan(pool, [wq("p-default"), wq("q", priority=3, paused=True)], minutes=1)
    assert [(obj.metadata.name, e.reason, e.message) for obj, e in result.events] == [
        ("p-default", "Created", "WorkQueue p-default created in pool p with priority 1"),
        ("p-default", "NotReady", "WorkQueue p-default is now NotReady: no online worker serves this queue"),
        ("q", "Created", "WorkQueue q created in pool p with priority 3"),
        ("q", "Paused", "WorkQueue q is now Paused: the queue is paused"),
    ]


def test_a_queue_first_seen_without_its_pool_warns_at_once() -> None:
    result = plan(None, [wq("q", priority=2)])
    assert [(e.reason, e.message) for _, e in result.events] == [
        ("Created", "WorkQueue q created in pool p with priority 2"),
        ("NotReady", "WorkQueue q is now NotReady: WorkPool p not found"),
        ("PoolNotFound", "WorkPool p does not exist"),
    ]


def test_a_settled_pool_plans_no_events_and_the_same_statuses() -> None:
    pool, queues = wp(), [wq("p-default"), wq("q", priority=3)]
    first = plan(pool, queues)
    pool, queues = settle(pool, queues, first)
    second = plan(pool, queues, minutes=5)
    assert events(second) == []
    assert second.pool_status == pool.status
    assert second.queue_statuses == {q.metadata.name: q.status for q in queues}


def test_a_settled_worker_keeps_its_stored_status_object_so_nothing_is_serialised_or_written() -> None:
    # Issue 12: a pass over 5,000 workers must not build and diff 5,000 statuses that did not change.
    pool, queues = settle(wp(), [wq("p-default")], plan(wp(), [wq("p-default")]))
    workers = [wkr("w1"), wkr("w2", heartbeat=T0 + timedelta(seconds=5))]
    sightings = {w.metadata.name: Sighting(w.status.last_heartbeat_time, T0) for w in workers}

    def plan_workers(pool: WorkPool, queues: list[WorkQueue], workers: list[Any], seconds: int) -> PoolPlan:
        now = T0 + timedelta(seconds=seconds)
        state = PoolState(name="p", pool=pool, queues=queues, workers=workers, runs=[], now=now, sightings=sightings)
        return plan_pool(state)

    first = plan_workers(pool, queues, workers, 6)
    assert all(first.worker_statuses[w.metadata.name] is not w.status for w in workers)  # Online: to write
    settled = [w.model_copy(update={"status": first.worker_statuses[w.metadata.name]}) for w in workers]
    pool, queues = settle(pool, queues, first)
    again = plan_workers(pool, queues, settled, 8)
    assert all(again.worker_statuses[w.metadata.name] is w.status for w in settled)
    assert events(again) == []


def test_pausing_emits_one_paused_event_and_resuming_one_not_ready() -> None:
    pool, queues = settle(wp(), [wq("p-default")], plan(wp(), [wq("p-default")]))
    paused = plan(wp(generation=2, paused=True).model_copy(update={"status": pool.status}), queues, minutes=1)
    assert [(e.reason, e.message) for _, e in paused.events] == [
        ("Paused", "WorkPool p is now Paused: the pool is paused")
    ]
    pool, queues = settle(wp(generation=2, paused=True), queues, paused)
    resumed = plan(wp(generation=3).model_copy(update={"status": pool.status}), queues, minutes=2)
    assert [(e.reason, e.message) for _, e in resumed.events] == [
        ("NotReady", "WorkPool p is now NotReady: no worker is online")
    ]


def test_a_spec_change_becomes_one_updated_event_listing_each_field() -> None:
    pool, queues = settle(wp(), [], plan(wp(), []))
    old = wp(concurrencyLimit=3, description="nightly").spec
    new = wp(concurrencyLimit=5, description="hourly", paused=True).spec
    result = plan(pool, queues, changes=[SpecChange("WorkPool", "p", old, new)])
    (updated,) = [e for _, e in result.events if e.reason == "Updated"]
    assert updated.message == "WorkPool p updated: description: 'nightly' → 'hourly'; concurrencyLimit: 3 → 5"


def test_a_changed_template_is_summarised_not_dumped() -> None:
    pool, _ = settle(wp(), [], plan(wp(), []))
    template = {"job_configuration": {"command": "x" * 5000}, "variables": {"properties": {"a": {}, "b": {}}}}
    new = wp(baseJobTemplate=template).spec
    result = plan(pool, [], changes=[SpecChange("WorkPool", "p", wp().spec, new)])
    (updated,) = [e for _, e in result.events if e.reason == "Updated"]
    assert updated.message == "WorkPool p updated: baseJobTemplate: none → 2 variables (a, b)"


def test_an_undeclared_variable_is_invalid_with_one_warning() -> None:
    template = {"job_configuration": {"command": "run {{ flow }}"}, "variables": {}}
    first = plan(wp(baseJobTemplate=template), [])
    assert ("p", "Warning", "TemplateInvalid") in events(first)
    assert first.pool_status is not None
    invalid = next(c for c in first.pool_status.conditions if c.type == "Invalid")
    assert (invalid.status, invalid.message) == (
        "True",
        "baseJobTemplate uses {{ flow }} but variables.properties does not declare it",
    )
    pool, _ = settle(wp(baseJobTemplate=template), [], first)
    assert events(plan(pool, [], minutes=1)) == []


def test_queues_of_a_missing_pool_report_pool_not_found_once() -> None:
    first = plan(None, [wq("q", priority=2)])
    assert first.pool_status is None
    assert not first.create_default_queue
    status = first.queue_statuses["q"]
    assert status.phase == "NotReady"
    assert next(c for c in status.conditions if c.type == "PoolNotFound").status == "True"
    _, queues = settle(None, [wq("q", priority=2)], first)
    assert events(plan(None, queues, minutes=1)) == []


def test_deletions_become_deleted_events() -> None:
    result = plan(None, [], deletions=[wp(), wq("q")])
    assert events(result) == [("p", "Normal", "Deleted"), ("q", "Normal", "Deleted")]


@given(st.lists(st.integers(min_value=1, max_value=6) | st.none(), min_size=1, max_size=6))
def test_planning_is_idempotent_for_any_queues(requests: list[int | None]) -> None:
    queues = [wq(f"q{i}", **({} if p is None else {"priority": p})) for i, p in enumerate(requests)]
    pool, settled = settle(wp(), queues, plan(wp(), queues))
    again = plan(pool, settled, minutes=10)
    assert events(again) == []
    assert again.queue_statuses == {q.metadata.name: q.status for q in settled}
    values = [s.effective_priority for s in again.queue_statuses.values()]
    assert len(set(values)) == len(values)


def test_asking_for_the_value_a_queue_was_assigned_is_a_new_request() -> None:
    # Issue 15 (a), replayed against Prefect 3.9: the default queue is assigned 1; `create d` with
    # priority 1 pushes it to 2; then the default queue's priority is set to 1: Prefect gives
    # default=1, d=2. Setting spec.priority is an update even when it equals the assigned value.
    pool, queues = settle(wp(), [wq("p-default")], plan(wp(), [wq("p-default")]))
    assert queues[0].status.priority_assigned is True
    pool, queues = settle(pool, [*queues, wq("d", priority=1)], plan(pool, [*queues, wq("d", priority=1)], minutes=1))
    assert {q.metadata.name: q.status.effective_priority for q in queues} == {"p-default": 2, "d": 1}

    asked = wq("p-default", generation=2, priority=1).model_copy(update={"status": queues[0].status})
    result = plan(pool, [asked, queues[1]], minutes=2)
    effective = {name: status.effective_priority for name, status in result.queue_statuses.items()}
    assert effective == {"p-default": 1, "d": 2}
    assert result.queue_statuses["p-default"].priority_assigned is False
    assert [(obj.metadata.name, e.reason, e.message) for obj, e in result.events] == [
        ("d", "PriorityConflict", "priority 1 is held by queue p-default; effective priority 2"),
    ]
    pool, queues = settle(pool, [asked, queues[1]], result)
    assert events(plan(pool, queues, minutes=3)) == []


def test_a_worker_confirmed_silent_goes_offline_saying_since_when_and_the_pool_says_so() -> None:
    worker = wkr("w", heartbeat=T0).model_copy(deep=True)
    worker.status.phase = WorkerPhase.ONLINE
    state = PoolState(
        name="p",
        pool=wp(),
        queues=[],
        workers=[worker],
        runs=[],
        now=T0 + timedelta(minutes=2),
        sightings={"w": Sighting(T0, T0, timedelta(seconds=30))},
        confirmed_silent=frozenset({"w"}),
    )
    result = plan_pool(state)
    assert [(obj.metadata.name, e.type.value, e.reason, e.message) for obj, e in result.events] == [
        ("w", "Warning", "WorkerOffline", "no heartbeat since 2026-01-01T12:00:00Z (more than 3 x 30s)"),
        ("p", "Normal", "Created", "WorkPool p created; default queue p-default"),
        ("p", "Normal", "NotReady", "WorkPool p is now NotReady: no worker is online (1 registered, all offline)"),
    ]
