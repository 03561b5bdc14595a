"""Why a run waits and when it may start (`core/waiting.py`, issue 14 item 4 "Why and when").

Aspects: one example per rule that can hold a run, several at once (every rule listed, not only
the first); runs that do not wait; positions in admission order; the estimate (its arithmetic,
its floor, and when there is none); the Gamma percentiles against the exact Poisson sum; and
properties over random pools: every reason listed is true, the list is complete (no reason ⇔
admission grants the run), its first reason is the `Admitted` condition's, and positions agree
with admission's order, over views with flow control and over whole pool states with
cancellations and the late policy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import T0, at, pool, queue, run, worker
from tests.unit.core import test_admission as plain
from tests.unit.core import test_flow_control as flowing
from tests.unit.core.run_support import DEFAULT_QUEUE, flowrun, pool_state, pool_states, wkr, wp, wq
from workpools.api.flowcontrol import KeyLimit, StartRate
from workpools.api.states import SLOT_HOLDING, StateType
from workpools.core import flowcontrol, runs
from workpools.core.admission import Admission, HoldReason, pick_worker
from workpools.core.selection import admission_order
from workpools.core.snapshot import FlowControl, PoolView, QueueView, RunView, WorkerView
from workpools.core.waiting import (
    CANCELLATION_REQUESTED,
    Estimate,
    Waiting,
    explain,
    gamma_quantile,
    why_waiting,
)

S = StateType
H = HoldReason
PROPERTY = settings(deadline=None)
PLAIN, QUEUE, WORKER = pool(), queue("q"), worker("w")
GATES = {H.POOL_NOT_FOUND, H.POOL_PAUSED, H.QUEUE_NOT_FOUND, H.QUEUE_PAUSED, H.NOT_YET_SCHEDULED}


def holding(name: str, *, queue: str = "q", worker: str = "w", labels: dict[str, str] | None = None) -> RunView:
    return run(name, queue=queue, state=S.RUNNING, worker=worker, acquired=at(minutes=-1), labels=labels)


def why(
    target: str,
    runs_: Sequence[RunView],
    *,
    pool_: PoolView | None = PLAIN,
    queues: Sequence[QueueView] = (QUEUE,),
    workers: Sequence[WorkerView] = (WORKER,),
    now: datetime = T0,
) -> Waiting:
    the_run = next(r for r in runs_ if r.name == target)
    return explain(the_run, "p", pool_, queues, runs_, workers, now=now)


def reasons(waiting: Waiting) -> list[str]:
    return [h.reason for h in waiting.holds]


# -- one rule at a time, then several --------------------------------------------------------------


def test_nothing_holds_a_run_the_next_pass_grants_and_it_starts_now() -> None:
    waiting = why("r", [run("r")])
    assert waiting.waiting
    assert waiting.holds == []
    assert waiting.estimate == Estimate(timedelta(minutes=10), 0, 0, T0, T0, T0)


KEYED = FlowControl(per_key=(KeyLimit(label="team", limit=1),))


@pytest.mark.parametrize(
    ("runs_", "options", "expected"),
    [
        pytest.param([run("r")], {"pool_": None}, [("PoolNotFound", "WorkPool p not found")], id="pool-missing"),
        pytest.param(
            [run("r")], {"pool_": pool(paused=True)}, [("PoolPaused", "WorkPool p is paused")], id="pool-paused"
        ),
        pytest.param(
            [run("r", queue="gone")], {}, [("QueueNotFound", "WorkQueue gone not found in pool p")], id="queue-missing"
        ),
        pytest.param(
            [run("r")], {"queues": [queue(paused=True)]}, [("QueuePaused", "WorkQueue q is paused")], id="queue-paused"
        ),
        pytest.param(
            [run("r", scheduled=at(minutes=5))],
            {},
            [("NotYetScheduled", "scheduled for 2026-01-01T12:05:00+00:00")],
            id="not-yet-due",
        ),
        pytest.param(
            [holding("a"), run("r")],
            {"pool_": pool(limit=1)},
            [("PoolLimitReached", "pool p has no open slot (limit 1)")],
            id="pool-limit",
        ),
        pytest.param(
            [holding("a"), run("r")],
            {"queues": [queue(limit=1)]},
            [("QueueLimitReached", "queue q has no open slot (limit 1)")],
            id="queue-limit",
        ),
        pytest.param(
            [holding("a", labels={"team": "x"}), run("r", labels={"team": "x"})],
            {"pool_": pool(flow=KEYED)},
            [("KeyLimitReached", "pool p runs at most 1 at once per label team; team=x has no room")],
            id="pool-key-limit",
        ),
        pytest.param(
            [holding("a", labels={"team": "x"}), run("r", labels={"team": "x"})],
            {"queues": [queue(flow=KEYED)]},
            [("KeyLimitReached", "queue q runs at most 1 at once per label team; team=x has no room")],
            id="queue-key-limit",
        ),
        pytest.param(
            [run("r")],
            {"workers": [worker("w", online=False), worker("d", draining=True)]},
            [("NoOnlineWorker", "no online worker with room serves queue q: none serving it is online")],
            id="no-worker-online",
        ),
        pytest.param(
            [holding("a", worker="w1"), run("r")],
            {"workers": [worker("w1", limit=1), worker("w2", queues={"other"})]},
            [("NoOnlineWorker", "no online worker with room serves queue q: all at their limit (w1 1/1)")],
            id="workers-full",
        ),
    ],
)
def test_each_rule_alone(runs_: list[RunView], options: dict[str, object], expected: list[tuple[str, str]]) -> None:
    waiting = why("r", runs_, **options)  # type: ignore[arg-type]
    assert [(h.reason, h.message) for h in waiting.holds] == expected


def test_a_start_rate_says_when_the_next_start_is_allowed() -> None:
    rate = FlowControl(start_rate=StartRate(per_minute=2, burst=1))
    done = run("done", state=S.COMPLETED, granted=at(seconds=-10))
    waiting = why("r", [done, run("r")], pool_=pool(flow=rate))
    [hold] = waiting.holds
    assert (hold.reason, hold.lifted_by_time, hold.until) == ("StartRateLimited", True, at(seconds=20))
    assert waiting.estimate is not None
    assert waiting.estimate.earliest is not None
    assert waiting.estimate.earliest >= at(seconds=20)  # no start before the token comes


def test_every_rule_is_listed_queue_first_then_workers_then_the_pool() -> None:
    keyed = FlowControl(per_key=(KeyLimit(label="team", limit=1),))
    runs_ = [holding("a", labels={"team": "x"}), run("r", labels={"team": "x"}, scheduled=at(seconds=30))]
    waiting = why(
        "r",
        runs_,
        pool_=pool(limit=1, flow=keyed, paused=True),
        queues=[queue(limit=1, paused=True)],
        workers=[worker("w", limit=1)],
    )
    assert reasons(waiting) == [
        "PoolPaused",
        "QueuePaused",
        "NotYetScheduled",
        "QueueLimitReached",
        "NoOnlineWorker",
        "KeyLimitReached",
        "PoolLimitReached",
    ]
    assert waiting.estimate is not None
    assert waiting.estimate.start is None
    assert waiting.estimate.unknown == "WorkPool p is paused: time alone does not lift that"


def test_a_limit_of_zero_outside_a_window_is_not_lifted_by_time() -> None:
    waiting = why("r", [run("r")], queues=[queue(limit=0)])
    assert [(h.reason, h.lifted_by_time) for h in waiting.holds] == [("QueueLimitReached", False)]


@pytest.mark.parametrize(
    ("state", "note"),
    [
        (S.PENDING, "admitted: bound to worker w, which has not started it yet"),
        (S.RUNNING, "running on worker w"),
        (S.CANCELLING, "being cancelled by worker w"),
        (S.COMPLETED, "Completed: it does not wait for a slot"),
    ],
)
def test_a_run_that_does_not_wait_says_where_it_is(state: StateType, note: str) -> None:
    waiting = why("r", [run("r", state=state, worker="w")])
    assert (waiting.waiting, waiting.note, waiting.holds, waiting.estimate) == (False, note, [], None)


# -- positions ---------------------------------------------------------------------------------------


def test_positions_count_the_admissible_runs_in_admission_order() -> None:
    queues = [queue("hi", priority=1, limit=0), queue("lo", priority=2)]
    runs_ = [
        run("hi-1", queue="hi", scheduled=at(seconds=-9)),
        run("hi-2", queue="hi", scheduled=at(seconds=-8)),
        run("lo-1", queue="lo", scheduled=at(seconds=-20)),
        run("lo-2", queue="lo", scheduled=at(seconds=-10)),
        run("lo-later", queue="lo", scheduled=at(minutes=5)),  # not admissible yet
        run("done", queue="lo", state=S.COMPLETED),
    ]
    waiting = why("lo-2", runs_, pool_=pool(limit=0), queues=queues)
    assert waiting.pool_position is not None
    assert waiting.queue_position is not None
    assert (waiting.pool_position.ahead, waiting.pool_position.admissible, waiting.pool_position.counted) == (
        3,
        4,
        True,
    )
    assert (waiting.queue_position.ahead, waiting.queue_position.admissible) == (1, 2)
    later = why("lo-later", runs_, pool_=pool(limit=0), queues=queues)
    assert later.pool_position is not None
    assert (later.pool_position.ahead, later.pool_position.admissible, later.pool_position.counted) == (4, 4, False)


# -- the estimate ------------------------------------------------------------------------------------


def test_the_estimate_is_the_mean_time_to_its_turn_at_the_window_rate_with_gamma_percentiles() -> None:
    # 10 grants in 10 minutes: one a minute. Two runs ahead: its turn is the third grant from now.
    granted = [run(f"g{i}", state=S.COMPLETED, granted=at(minutes=-i - 0.5)) for i in range(9)]  # + a's
    old = run("old", state=S.COMPLETED, granted=at(minutes=-11))  # outside the window
    waiting = why(
        "r", [*granted, old, holding("a"), run("x"), run("y"), run("r", created=at(seconds=1))], pool_=pool(limit=1)
    )
    estimate = waiting.estimate
    assert estimate is not None
    assert (estimate.grants, estimate.needed) == (10, 3)
    assert estimate.start == at(minutes=3)
    assert estimate.earliest == at(minutes=gamma_quantile(3, 0.1))
    assert estimate.latest == at(minutes=gamma_quantile(3, 0.9))
    assert estimate.earliest < estimate.start < estimate.latest


def test_no_estimate_without_a_grant_in_the_window() -> None:
    long_ago = run("a", state=S.RUNNING, worker="w", acquired=at(minutes=-20))
    waiting = why("r", [long_ago, run("r")], pool_=pool(limit=1))
    assert waiting.estimate is not None
    assert waiting.estimate.unknown == "no run of the pool was granted in the last 10m: no rate to go by"


def test_a_run_not_yet_due_is_not_estimated_before_its_time() -> None:
    granted = [run(f"g{i}", state=S.COMPLETED, granted=at(seconds=-i)) for i in range(60)]
    waiting = why("r", [*granted, run("r", scheduled=at(hours=1))])
    assert waiting.estimate is not None
    assert waiting.estimate.earliest == waiting.estimate.start == at(hours=1)


def _exact_gamma_cdf(k: int, t: float) -> float:
    """P(the k-th event of a rate-1 Poisson process comes by t) = P(Poisson(t) >= k)."""
    return 1 - sum(math.exp(-t) * t**i / math.factorial(i) for i in range(k))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10, 30, 100])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_gamma_quantiles_are_within_half_a_percent_of_the_exact_ones(k: int, p: float) -> None:
    t = gamma_quantile(k, p)
    low, high = t * 0.995, t * 1.005
    assert _exact_gamma_cdf(k, low) <= p <= _exact_gamma_cdf(k, high)


def test_gamma_quantile_refuses_what_has_no_quantile() -> None:
    with pytest.raises(ValueError, match="need k >= 1"):
        gamma_quantile(0, 0.5)
    with pytest.raises(ValueError, match="need k >= 1"):
        gamma_quantile(1, 1.0)


# -- from a pool state: what the lifecycle does instead ------------------------------------------------


def test_a_run_whose_cancellation_is_requested_waits_for_nothing() -> None:
    state = pool_state(runs=[flowrun("r", cancel=True)], workers=[wkr("w")])
    waiting = why_waiting(state, "r")
    assert reasons(waiting) == [CANCELLATION_REQUESTED]
    assert waiting.pool_position is not None
    assert not waiting.pool_position.counted
    assert waiting.estimate is not None
    assert waiting.estimate.unknown is not None


def test_a_run_the_late_policy_cancels_says_so() -> None:
    late = wp(latePolicy={"action": "Cancel", "afterSeconds": 30})
    state = pool_state(runs=[flowrun("r", scheduled=at(minutes=-1))], pool=late, workers=[wkr("w")])
    [hold] = why_waiting(state, "r").holds
    assert hold.reason == "LateCancelled"
    assert hold.message.startswith("the late policy cancels it: still waiting more than latePolicy.afterSeconds (30s)")


def test_a_finished_run_and_a_missing_one() -> None:
    state = replace(pool_state(), finished=[flowrun("done", state=S.COMPLETED)])
    waiting = why_waiting(state, "done")
    assert (waiting.waiting, waiting.state) == (False, S.COMPLETED)
    with pytest.raises(KeyError):
        why_waiting(state, "nope")


def test_a_new_run_is_new_and_judged_as_admission_would() -> None:
    state = pool_state(runs=[flowrun("r", state=None)], workers=[wkr("w")], queues=[wq(concurrencyLimit=0)])
    waiting = why_waiting(state, "r")
    assert (waiting.state, reasons(waiting)) == (None, ["QueueLimitReached"])


# -- properties over views: test_admission's worlds (gates, workers) and test_flow_control's --------

World = plain.World | flowing.World
WORLDS = plain.worlds() | flowing.worlds()


def _now(world: World) -> datetime:
    return world.now if isinstance(world, flowing.World) else T0


def _why(world: World, name: str) -> Waiting:
    """`explain` over the inputs `world.admit()` gives admission."""
    live = [r for r in world.runs if r.state in (*SLOT_HOLDING, S.SCHEDULED)]
    done = [r for r in world.runs if r not in live]
    target = next(r for r in world.runs if r.name == name)
    return explain(target, "p", world.pool, world.queues, live, world.workers, now=_now(world), history=done)


def _landed(world: World, result: Admission) -> list[RunView]:
    granted = {g.run.name: g.worker for g in result.grants}
    now = _now(world)
    return [
        replace(r, state=S.PENDING, worker=granted[r.name], slot_acquired_at=now, granted_at=now)
        if r.name in granted
        else r
        for r in world.runs
    ]


def _assert_true(world: World, target: RunView, reason: str, message: str, after: list[RunView]) -> None:
    """`reason` really holds `target` once this pass's grants have landed."""
    queues = {q.name: q for q in world.queues}
    q = queues.get(target.queue)
    gate = {
        H.POOL_NOT_FOUND: world.pool is None,
        H.POOL_PAUSED: world.pool is not None and world.pool.paused,
        H.QUEUE_NOT_FOUND: q is None,
        H.QUEUE_PAUSED: q is not None and q.paused,
        H.NOT_YET_SCHEDULED: target.scheduled_time > _now(world),
    }
    if reason in gate:
        assert gate[H(reason)]
        return
    # Slots, keys, rates and workers are judged only where there is a pool and a queue to count in.
    assert world.pool is not None
    assert q is not None
    is_pool = message.startswith("pool p ")
    base, flow = (world.pool.concurrency_limit, world.pool.flow) if is_pool else (q.concurrency_limit, q.flow)
    mine = [r for r in after if is_pool or r.queue == q.name]
    holders = [r for r in mine if r.state in SLOT_HOLDING]
    if reason in (H.POOL_LIMIT_REACHED, H.QUEUE_LIMIT_REACHED):
        assert is_pool == (reason == H.POOL_LIMIT_REACHED)
        limit = flowcontrol.effective_limit(base, flow.limit_schedule, _now(world)).limit
        assert limit is not None
        assert len(holders) >= limit
    elif reason == H.KEY_LIMIT_REACHED:
        assert any(
            (value := flowcontrol.key_value(rule, target.labels, target.parameters)) is not None
            and sum(flowcontrol.key_value(rule, r.labels, r.parameters) == value for r in holders) >= rule.limit
            for rule in flow.per_key
        )
    elif reason == H.START_RATE_LIMITED:
        assert flow.start_rate is not None
        times = [t for r in mine if (t := r.granted_at) is not None]
        assert flowcontrol.starts_available(times, flow.start_rate, _now(world)) == 0
    else:
        assert reason == H.NO_ONLINE_WORKER
        assigned = Counter(r.worker for r in after if r.state in SLOT_HOLDING and r.worker)
        assert pick_worker(world.workers, q.name, assigned) is None


@PROPERTY
@given(WORLDS, st.data())
def test_every_reason_is_true_and_the_list_is_complete(world: World, data: st.DataObject) -> None:
    scheduled = [r for r in world.runs if r.state is S.SCHEDULED]
    if not scheduled:
        return
    target = data.draw(st.sampled_from(scheduled))
    result = world.admit()
    waiting = _why(world, target.name)
    after = _landed(world, result)
    for hold in waiting.holds:
        _assert_true(world, target, hold.reason, hold.message, after)
    granted = any(g.run.name == target.name for g in result.grants)
    assert (waiting.holds == []) == granted
    if not granted:  # the first reason is the one the Admitted condition names
        [held] = [h for h in result.holds if h.run.name == target.name]
        first = waiting.holds[0]
        assert first.reason == held.reason
        if held.reason is not H.NOT_YET_SCHEDULED:  # its message names the time here, not in the condition
            assert first.message.startswith(held.message)


@PROPERTY
@given(WORLDS, st.data())
def test_positions_agree_with_admission_order(world: World, data: st.DataObject) -> None:
    scheduled = [r for r in world.runs if r.state is S.SCHEDULED]
    if not scheduled or world.pool is None:
        return
    target = data.draw(st.sampled_from(scheduled))
    queues = {q.name: q for q in world.queues}
    if target.queue not in queues:
        return
    result = world.admit()
    # The admissible runs: those admission grants or holds for anything but a gate.
    ready = [g.run for g in result.grants] + [h.run for h in result.holds if h.reason not in GATES]
    ordered = sorted(ready, key=lambda r: admission_order(r, queues[r.queue]))
    waiting = _why(world, target.name)
    assert waiting.pool_position is not None
    assert waiting.queue_position is not None
    position = waiting.pool_position
    assert (position.admissible, position.counted) == (len(ordered), target in ordered)
    key = admission_order(target, queues[target.queue])
    ahead = [r for r in ordered if admission_order(r, queues[r.queue]) < key]
    assert position.ahead == len(ahead)
    assert waiting.queue_position.ahead == sum(r.queue == target.queue for r in ahead)
    assert waiting.queue_position.admissible == sum(r.queue == target.queue for r in ordered)
    # Grants come in admission order: nothing ahead of a granted run waits for the pool's limit.
    if target in ordered and waiting.holds == []:
        held_by_pool = {h.run.name for h in result.holds if h.reason is H.POOL_LIMIT_REACHED}
        assert not any(r.name in held_by_pool for r in ahead)


@PROPERTY
@given(WORLDS, st.data())
def test_an_estimate_is_ordered_and_given_exactly_when_time_can_lift_every_rule(
    world: World, data: st.DataObject
) -> None:
    scheduled = [r for r in world.runs if r.state is S.SCHEDULED]
    if not scheduled:
        return
    waiting = _why(world, data.draw(st.sampled_from(scheduled)).name)
    estimate = waiting.estimate
    assert estimate is not None
    stuck = any(not h.lifted_by_time for h in waiting.holds)
    if waiting.holds and (stuck or estimate.grants == 0):
        assert estimate.start is None
        assert estimate.unknown
        return
    assert estimate.start is not None
    assert estimate.earliest is not None
    assert estimate.latest is not None
    assert _now(world) <= estimate.earliest <= estimate.start <= estimate.latest


# -- properties over whole pool states: cancellations, the late policy, liveness ----------------------


@PROPERTY
@given(st.data())
def test_from_a_pool_state_reasons_are_complete_against_the_admitter(data: st.DataObject) -> None:
    state = data.draw(pool_states())
    waiting_runs = [r for r in state.runs if r.status.state in (None, S.SCHEDULED)]
    if not waiting_runs:
        return
    target = data.draw(st.sampled_from(waiting_runs))
    granted = {c.run.metadata.name for c in runs.admission_changes(state) if c.granted_to is not None}
    waiting = why_waiting(state, target.metadata.name)
    assert waiting.waiting
    assert (waiting.holds == []) == (target.metadata.name in granted)
    ending = {CANCELLATION_REQUESTED, "LateCancelled", "SkippedToLatest"} & set(reasons(waiting))
    if target.spec.cancel:
        assert ending == {CANCELLATION_REQUESTED}
    elif ending:
        assert state.pool is not None
        assert state.pool.spec.late_policy is not None
    queue_name = target.spec.work_queue or DEFAULT_QUEUE
    assert waiting.queue == queue_name
    if "QueueNotFound" in reasons(waiting):
        assert queue_name not in {q.metadata.name for q in state.queues}
