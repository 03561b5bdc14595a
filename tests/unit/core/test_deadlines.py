"""`next_deadline`: the next moment time alone changes something in a pool (core/deadlines.py).

DESIGN §5 "no per-FlowRun timers": one global timer wakes a pool at this moment. Aspects: each
kind of moment (Offline, worker TTL, a run coming due, Late, pending timeout) and that the rule
it waits for has really flipped by then; None when nothing is time-bound; never in the past;
and, as a property, nothing observable changes before the deadline.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings

from tests.builders import T0, at
from tests.unit.core.run_support import bound_run, flowrun, pool_state, pool_states, without_pool, wkr, wp
from workpools.api.states import TERMINAL, StateType
from workpools.api.worker import Worker
from workpools.core import liveness
from workpools.core.deadlines import TICK, next_deadline
from workpools.core.runs import admission_changes, lifecycle_changes
from workpools.core.snapshot import PoolState

S = StateType
PROPERTY = settings(deadline=None)
"""No per-example deadline: a loaded CI machine must not turn slowness into failures."""
FRESH = wkr("w", heartbeat=T0, interval=3600)
"""A worker that stays Online for hours: its only moment is far after those of a case."""
FRESH_OFFLINE = at(hours=3) + TICK


def moment(**kw: Any) -> datetime | None:
    return next_deadline(pool_state(now=T0, **kw))


def online(worker: Worker, now: datetime) -> bool:
    return worker.metadata.name in liveness.judge(pool_state(workers=[worker], now=now)).online


def expired(worker: Worker, ttl: int, now: datetime) -> bool:
    state = pool_state(workers=[worker], now=now)
    return liveness.expired(state.workers[0], liveness.judge(state), ttl, now)


# --- nothing time-bound -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(pool_state(), id="empty-pool"),
        pytest.param(without_pool(pool_state()), id="missing-pool"),
        pytest.param(pool_state(runs=[bound_run(S.RUNNING, worker="w")]), id="running-run"),
        pytest.param(
            pool_state(runs=[bound_run(S.PENDING, worker="w", acquired=at(minutes=-5))]), id="pending-without-timeout"
        ),
        pytest.param(pool_state(runs=[flowrun(s.value, state=s) for s in sorted(TERMINAL)]), id="terminal-runs"),
        pytest.param(pool_state(runs=[flowrun("p", state=S.PAUSED, scheduled=at(seconds=5))]), id="paused-run"),
        pytest.param(pool_state(workers=[wkr("w", heartbeat=None)]), id="worker-that-never-heartbeat"),
        pytest.param(
            pool_state(workers=[wkr("w", heartbeat=at(minutes=-5), offline_since=at(minutes=-3))]),
            id="offline-worker-without-ttl",
        ),
        pytest.param(pool_state(runs=[flowrun("r", scheduled=at(minutes=-5), state_name="Late")]), id="already-late"),
    ],
)
def test_nothing_time_bound_means_no_deadline(state: PoolState) -> None:
    # The FRESH worker of other cases would add its own Offline moment; these cases have none.
    assert next_deadline(state) is None


# --- each kind of moment --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "offline_after"),
    [pytest.param(None, 90, id="default-30s"), pytest.param(5, 15, id="5s"), pytest.param(3600, 10800, id="1h")],
)
def test_an_online_worker_is_due_just_after_three_intervals(interval: int | None, offline_after: int) -> None:
    worker = wkr("w", heartbeat=at(seconds=-2), interval=interval)
    deadline = moment(workers=[worker])
    boundary = at(seconds=offline_after - 2)
    assert deadline == boundary + TICK
    assert deadline > boundary  # strictly after 3 × interval
    assert online(worker, boundary)
    assert not online(worker, deadline)


def test_an_offline_worker_is_due_when_its_ttl_ends() -> None:
    worker = wkr("w", heartbeat=at(minutes=-10), offline_since=at(minutes=-8))
    deadline = moment(workers=[worker], pool=wp(workerTTLAfterOfflineSeconds=600))
    assert deadline == at(minutes=2)
    assert not expired(worker, 600, deadline - TICK)
    assert expired(worker, 600, deadline)


def test_a_worker_ttl_without_a_ready_false_condition_has_no_moment() -> None:
    # Offline is only counted from the operator's Ready=False condition.
    worker = wkr("w", heartbeat=at(minutes=-10))
    assert moment(workers=[worker], pool=wp(workerTTLAfterOfflineSeconds=600)) is None


def test_a_worker_ttl_already_passed_is_not_a_future_moment() -> None:
    worker = wkr("w", heartbeat=at(hours=-2), offline_since=at(hours=-2))
    assert moment(workers=[worker], pool=wp(workerTTLAfterOfflineSeconds=60)) is None


def test_a_future_run_is_due_at_its_scheduled_time() -> None:
    run = flowrun("r", scheduled=at(minutes=1))
    state = pool_state(runs=[run], workers=[FRESH], now=T0)
    deadline = next_deadline(state)
    assert deadline is not None
    assert at(minutes=1) < deadline <= at(minutes=1) + TICK
    held = admission_changes(state)
    assert held[0].patch["conditions"][0]["reason"] == "NotYetScheduled"
    assert admission_changes(replace(state, now=deadline))[0].patch["state"] == "Pending"


def test_a_due_run_is_due_to_turn_late() -> None:
    state = pool_state(runs=[flowrun("r", scheduled=at(seconds=-5))], now=T0)
    deadline = next_deadline(state)
    assert deadline == at(seconds=10) + TICK
    before = [c.patch.get("stateName") for c in admission_changes(replace(state, now=at(seconds=10)))]
    after = [c.patch.get("stateName") for c in admission_changes(replace(state, now=deadline))]
    assert (before, after) == ([None], ["Late"])


def test_a_future_run_is_due_twice_first_to_come_due() -> None:
    state = pool_state(runs=[flowrun("r", scheduled=at(seconds=30))])
    assert next_deadline(state) == at(seconds=30) + TICK
    assert next_deadline(replace(state, now=at(seconds=30) + TICK)) == at(seconds=45) + TICK


def test_a_pending_run_is_due_when_its_timeout_ends() -> None:
    # Scheduled long ago, so its Late moment is past and only the timeout is ahead.
    run = flowrun("r", state=S.PENDING, worker="w", acquired=at(seconds=-10), scheduled=at(minutes=-5))
    state = pool_state(runs=[run], workers=[FRESH], pool=wp(pendingTimeoutSeconds=30))
    deadline = next_deadline(state)
    assert deadline == at(seconds=20) + TICK
    assert lifecycle_changes(replace(state, now=at(seconds=20))) == []
    (requeued,) = lifecycle_changes(replace(state, now=deadline))
    assert requeued.event is not None
    assert requeued.event.reason == "PendingTimeout"


@pytest.mark.parametrize("state", [S.RUNNING, S.CANCELLING])
def test_the_pending_timeout_does_not_apply_to_started_runs(state: StateType) -> None:
    run = bound_run(state, worker="w", acquired=at(seconds=-10))
    pool = wp(pendingTimeoutSeconds=30, cancellingTimeoutSeconds=86_400)  # a day: after FRESH goes Offline
    assert moment(runs=[run], workers=[FRESH], pool=pool) == FRESH_OFFLINE


@pytest.mark.parametrize(("timeout", "expected"), [(None, at(seconds=290)), (60, at(seconds=50))])
def test_a_cancelling_run_times_out_its_timeout_after_it_went_cancelling(
    timeout: int | None, expected: datetime
) -> None:
    run = flowrun("c", state=S.CANCELLING, worker="w", acquired=at(minutes=-5), cancelling_since=at(seconds=-10))
    pool = wp() if timeout is None else wp(cancellingTimeoutSeconds=timeout)  # default 300 s
    assert moment(runs=[run], workers=[FRESH], pool=pool) == expected + TICK


def test_the_earliest_moment_wins() -> None:
    runs = [
        flowrun("late-soon", scheduled=at(seconds=-14)),  # Late at +1 s
        flowrun("due-later", scheduled=at(minutes=5)),
        bound_run(S.PENDING, "stuck", worker="w", acquired=at(seconds=-50)),  # timeout at +10 s
    ]
    assert moment(runs=runs, workers=[FRESH], pool=wp(pendingTimeoutSeconds=60)) == at(seconds=1) + TICK
    assert moment(runs=runs[1:], workers=[FRESH], pool=wp(pendingTimeoutSeconds=60)) == at(seconds=10) + TICK
    assert moment(runs=runs[1:2], workers=[FRESH]) == at(minutes=5) + TICK
    assert moment(runs=[], workers=[FRESH]) == FRESH_OFFLINE


def test_moments_in_the_past_are_skipped_for_the_next_future_one() -> None:
    # Due long ago (already admissible, not yet marked Late): only future moments count.
    stale = flowrun("r", scheduled=at(minutes=-5))
    assert moment(runs=[stale]) is None
    assert moment(runs=[stale], workers=[FRESH]) == FRESH_OFFLINE


def test_a_boundary_exactly_now_is_not_a_future_moment() -> None:
    # Rules are strict: at T0 + TICK the run turns Late; asked at that instant, that moment is not in the future.
    state = pool_state(runs=[flowrun("r", scheduled=at(seconds=-15))], now=T0 + TICK)
    assert next_deadline(state) is None


# --- properties -----------------------------------------------------------------------------


@PROPERTY
@given(pool_states())
def test_a_deadline_is_never_in_the_past(state: PoolState) -> None:
    deadline = next_deadline(state)
    assert deadline is None or deadline > state.now


def observed(state: PoolState) -> Any:
    """Everything the operator would decide at `state.now`, minus the timestamps it would write."""
    ttl = state.pool.spec.worker_ttl_after_offline_seconds if state.pool is not None else None
    judgement = liveness.judge(state)
    workers = [
        (w.metadata.name, w.metadata.name in judgement.online, liveness.expired(w, judgement, ttl, state.now))
        for w in state.workers
    ]
    lifecycle = [
        (c.run.metadata.name, c.patch.get("state"), c.patch.get("stateName"), c.event and c.event.reason)
        for c in lifecycle_changes(state)
    ]
    admission = [
        (
            c.run.metadata.name,
            c.patch.get("state"),
            c.patch.get("stateName"),
            c.patch.get("worker"),
            [x["reason"] for x in c.patch.get("conditions") or []],
        )
        for c in admission_changes(state)
        if c.patch.get("conditions") or "stateName" in c.patch
    ]
    return workers, lifecycle, admission


@PROPERTY
@given(pool_states(new_runs=False))
def test_nothing_changes_by_time_alone_before_the_deadline(state: PoolState) -> None:
    # The reconciler records the deadline after it started new runs, hence `new_runs=False`.
    # A moment may trail its boundary by one TICK (the wake is that much late, never early).
    deadline = next_deadline(state)
    until = state.now + timedelta(days=1) if deadline is None else deadline - TICK - timedelta(microseconds=1)
    if until > state.now:
        assert observed(replace(state, now=until)) == observed(state)
