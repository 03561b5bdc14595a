"""The admissible backlog (core/backlog.py; issue 14 item 5): per queue, the runs that only lack a
worker with room. Limits, start rates, pauses and later scheduled times hold runs out of it; no
worker (or a full one) does not. With a worker that has room for everything, the admitter grants
exactly the backlog."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.builders import T0, at
from tests.unit.core.run_support import DEFAULT_QUEUE, bound_run, flowrun, judged, pool_state, wkr, wp, wq
from workpools.api.flowrun import FlowRun
from workpools.api.states import StateType
from workpools.core import flowcontrol
from workpools.core.backlog import admissible_backlog
from workpools.core.runs import admission_changes, flow_control
from workpools.core.snapshot import PoolState

S = StateType
TENANT = "example.com/tenant"


def labelled(run: FlowRun, **labels: str) -> FlowRun:
    """`run` with these labels (`tenant="a"` sets TENANT)."""
    named = {TENANT if key == "tenant" else key: value for key, value in labels.items()}
    return run.model_copy(update={"metadata": run.metadata.model_copy(update={"labels": named})})


def due(count: int, *, queue: str | None = None, prefix: str = "r") -> list[FlowRun]:
    """`count` Scheduled runs due since a minute before `T0`, one second apart (admission order)."""
    return [flowrun(f"{prefix}{i}", queue=queue, scheduled=at(seconds=-60 + i)) for i in range(count)]


def backlog(**state: Any) -> dict[str, int]:
    return admissible_backlog(pool_state(**state))


def test_runs_that_only_lack_a_worker_are_counted_up_to_the_pool_limit() -> None:
    assert backlog(pool=wp(concurrencyLimit=3), runs=due(5)) == {DEFAULT_QUEUE: 3}
    assert backlog(runs=due(5)) == {DEFAULT_QUEUE: 5}, "unlimited"


def test_a_full_pool_has_no_backlog() -> None:
    holders = [bound_run(S.RUNNING, f"h{i}") for i in range(2)]
    assert backlog(pool=wp(concurrencyLimit=2), runs=[*holders, *due(3)]) == {DEFAULT_QUEUE: 0}
    assert backlog(pool=wp(concurrencyLimit=3), runs=[*holders, *due(3)]) == {DEFAULT_QUEUE: 1}


def test_a_paused_queue_or_pool_has_no_backlog_and_a_run_not_due_yet_is_not_counted() -> None:
    queues = [wq(priority=1), wq("q", priority=2, paused=True)]
    runs = [*due(2), *due(2, queue="q", prefix="s")]
    assert backlog(queues=queues, runs=runs) == {DEFAULT_QUEUE: 2, "q": 0}
    assert backlog(pool=wp(paused=True), runs=due(2)) == {DEFAULT_QUEUE: 0}
    assert backlog(runs=[flowrun("later", scheduled=at(seconds=1)), *due(1)]) == {DEFAULT_QUEUE: 1}


def test_a_queue_limit_holds_its_runs_and_lets_the_other_queues_have_the_pool() -> None:
    queues = [wq(priority=1, concurrencyLimit=1), wq("q", priority=2)]
    runs = [*due(3), *due(3, queue="q", prefix="s")]
    assert backlog(pool=wp(concurrencyLimit=3), queues=queues, runs=runs) == {DEFAULT_QUEUE: 1, "q": 2}


def test_workers_do_not_matter_whether_none_is_online_or_all_are_full() -> None:
    full = wkr("w", heartbeat=T0, limit=1)
    runs = [bound_run(S.RUNNING, "h", worker="w"), *due(3)]
    assert backlog(pool=wp(concurrencyLimit=3), runs=runs, workers=[full]) == {DEFAULT_QUEUE: 2}
    assert backlog(pool=wp(concurrencyLimit=3), runs=runs) == {DEFAULT_QUEUE: 2}, "w is gone: its run still holds"
    silent = wkr("w", heartbeat=at(minutes=-10))
    assert backlog(runs=due(2), workers=[silent]) == {DEFAULT_QUEUE: 2}


def test_a_per_key_limit_counts_only_the_runs_within_each_values_cap() -> None:
    pool = wp(concurrencyLimitPerKey=[{"label": TENANT, "limit": 2}])
    holder = labelled(bound_run(S.RUNNING, "h"), tenant="a")
    a = [labelled(r, tenant="a") for r in due(3, prefix="a")]
    b = [labelled(r, tenant="b") for r in due(3, prefix="b")]
    unkeyed = due(1, prefix="n")
    assert backlog(pool=pool, runs=[holder, *a, *b, *unkeyed]) == {DEFAULT_QUEUE: 1 + 2 + 1}


def test_a_start_rate_counts_only_what_its_bucket_allows_now() -> None:
    pool = wp(startRate={"perMinute": 2, "burst": 3})
    assert backlog(pool=pool, runs=due(5)) == {DEFAULT_QUEUE: 3}
    one_granted_now = bound_run(S.RUNNING, "h", acquired=T0)
    assert backlog(pool=pool, runs=[one_granted_now, *due(5)]) == {DEFAULT_QUEUE: 2}
    queue = wq(startRate={"perMinute": 1, "burst": 1})
    assert backlog(queues=[queue], runs=due(5)) == {DEFAULT_QUEUE: 1}


def test_runs_to_be_cancelled_are_not_counted_and_a_deleted_pool_has_no_backlog() -> None:
    cancelled = flowrun("c", scheduled=at(seconds=-5), cancel=True)
    assert backlog(runs=[cancelled, *due(1)]) == {DEFAULT_QUEUE: 1}
    too_late = wp(latePolicy={"action": "Cancel", "afterSeconds": 30})
    assert backlog(pool=too_late, runs=[flowrun("old", scheduled=at(minutes=-5))]) == {DEFAULT_QUEUE: 0}
    assert admissible_backlog(replace(pool_state(runs=due(2)), pool=None)) == {}


def test_new_runs_the_operator_has_not_stamped_yet_are_counted() -> None:
    assert backlog(runs=[flowrun("new", state=None, created=at(seconds=-1))]) == {DEFAULT_QUEUE: 1}


# --- properties ---------------------------------------------------------------------------------

LIMITS = st.sampled_from([None, None, None, 0, 2, 3, 5])
KEY_LIMITS = st.sampled_from([[], [], [{"label": TENANT, "limit": 1}], [{"label": TENANT, "limit": 2}]])
RATES = st.sampled_from([None, None, {"perMinute": 1, "burst": 1}, {"perMinute": 6, "burst": 3}])


@st.composite
def flow_controlled(draw: st.DrawFn) -> PoolState:
    """A pool at `T0` with two queues (one maybe paused), limits, per-key limits and start rates
    drawn at both scopes, up to 10 runs (waiting, due or not, or holding a slot; tenant a, b or
    none) and random workers."""

    def scope() -> dict[str, Any]:
        return {
            "concurrencyLimit": draw(LIMITS),
            "concurrencyLimitPerKey": draw(KEY_LIMITS),
            "startRate": draw(RATES),
        }

    pool = wp(paused=draw(st.sampled_from([False] * 9 + [True])), **scope())
    queues = [
        wq(priority=1, **scope()),
        wq("other", priority=2, paused=draw(st.sampled_from([False, False, True])), **scope()),
    ]
    runs = []
    for index in range(draw(st.integers(min_value=0, max_value=10))):
        queue = draw(st.sampled_from([DEFAULT_QUEUE, "other"]))
        seconds = draw(st.integers(min_value=-120, max_value=10))
        if draw(st.integers(min_value=0, max_value=2)):  # two in three wait
            run = flowrun(f"r{index}", queue=queue, scheduled=at(seconds=seconds))
        else:
            state = draw(st.sampled_from([S.PENDING, S.RUNNING, S.CANCELLING]))
            run = flowrun(f"r{index}", queue=queue, state=state, worker="w", acquired=at(seconds=min(0, seconds)))
        if (tenant := draw(st.sampled_from([None, "a", "b"]))) is not None:
            run = labelled(run, tenant=tenant)
        runs.append(run)
    workers = [wkr("w", heartbeat=draw(st.sampled_from([T0, at(minutes=-10)])), limit=draw(st.none() | st.just(1)))]
    return PoolState(name="p", pool=pool, queues=queues, runs=runs, now=T0, **judged(workers, runs, T0))


def with_a_roomy_worker(state: PoolState) -> PoolState:
    """The same pool with one Online worker that serves every queue and has no limit (its only one)."""
    return replace(state, **judged([wkr("roomy", heartbeat=T0)], state.runs, T0))


@given(flow_controlled())
def test_a_worker_with_room_for_everything_is_granted_exactly_the_backlog(state: PoolState) -> None:
    granted = Counter(c.run.spec.work_queue for c in admission_changes(with_a_roomy_worker(state)) if c.granted_to)
    found = admissible_backlog(state)
    assert {q: n for q, n in found.items() if n} == dict(granted)
    assert set(found) == {DEFAULT_QUEUE, "other"}


@given(flow_controlled())
def test_the_backlog_never_exceeds_the_free_room_of_any_limit(state: PoolState) -> None:
    assert state.pool is not None
    found = admissible_backlog(state)
    grants = [c.run for c in admission_changes(with_a_roomy_worker(state)) if c.granted_to]
    assert len(grants) == sum(found.values())
    holders = [r for r in state.runs if r.status.state in (S.PENDING, S.RUNNING, S.CANCELLING)]
    scopes = [(state.pool.spec, None), *((q.spec, q.metadata.name) for q in state.queues)]
    for spec, queue in scopes:
        mine = [r for r in holders if queue is None or r.spec.work_queue == queue]
        taken = [r for r in grants if queue is None or r.spec.work_queue == queue]
        flow = flow_control(spec)
        if spec.concurrency_limit is not None:
            assert len(taken) <= max(0, spec.concurrency_limit - len(mine))
        if flow.start_rate is not None:
            granted_at = [r.status.slot.acquired_at for r in mine if r.status.slot is not None]
            assert len(taken) <= flowcontrol.starts_available(granted_at, flow.start_rate, state.now)
        for rule in flow.per_key:
            for value in ("a", "b"):
                room = rule.limit - sum(r.metadata.labels.get(TENANT) == value for r in mine)
                assert sum(r.metadata.labels.get(TENANT) == value for r in taken) <= max(0, room)
