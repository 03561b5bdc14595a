"""The late-run policy (core/late.py; pool and queue spec.latePolicy) and late counts per queue.

Aspects: `Run` (the default) cancels nothing; `Cancel` ends a run still waiting strictly more than
`afterSeconds` past its scheduled time (Cancelled, stateName LateCancelled, one Warning event),
and admission never grants it meanwhile (a new run already too late is stamped first); a queue's
policy replaces its pool's; only waiting runs are touched; the afterSeconds moment is a deadline;
`skipToLatest` keeps only the newest due waiting run of each FlowSchedule (label
workpools.dev/schedule) and cancels the older ones (SkippedToLatest); queues count their Late
runs; and, as a property, no run is cancelled by the policy unless it waits and the rule says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import at
from tests.unit.core.run_support import DEFAULT_QUEUE, flowrun, pool_state, settle, wkr, wp, wq
from workpools.api.flowrun import FlowRun
from workpools.api.meta import SCHEDULE_LABEL
from workpools.api.states import StateType
from workpools.core import late
from workpools.core.deadlines import TICK, next_deadline
from workpools.core.plan import plan_pool
from workpools.core.runs import admission_changes, lifecycle_changes
from workpools.core.snapshot import PoolState

S = StateType
PROPERTY = settings(deadline=None)
CANCEL_60 = {"action": "Cancel", "afterSeconds": 60}
SCHEDULED = at(minutes=-10)


def waiting(name: str = "r", *, scheduled: datetime = SCHEDULED, schedule: str | None = None, **kw: Any) -> FlowRun:
    run = flowrun(name, scheduled=scheduled, **kw)
    if schedule is not None:
        run.metadata.labels[SCHEDULE_LABEL] = schedule
    return run


def state(*runs: FlowRun, now: datetime, policy: dict[str, Any] | None = CANCEL_60, **kw: Any) -> PoolState:
    pool = wp(latePolicy=policy) if policy is not None else wp()
    return pool_state(runs=list(runs), pool=pool, workers=kw.pop("workers", []), now=now, **kw)


def cancelled(changes: list[Any]) -> dict[str, str]:
    return {c.run.metadata.name: c.patch["stateName"] for c in changes if c.patch.get("state") == "Cancelled"}


# --- Cancel after afterSeconds ------------------------------------------------------------------


def test_run_is_the_default_and_cancels_nothing() -> None:
    assert lifecycle_changes(state(waiting(), now=at(hours=5), policy=None)) == []
    assert lifecycle_changes(state(waiting(), now=at(hours=5), policy={"action": "Run"})) == []


def test_a_run_waiting_more_than_after_seconds_past_its_time_is_cancelled_with_one_event() -> None:
    due = SCHEDULED + timedelta(seconds=60)
    assert lifecycle_changes(state(waiting(), now=due)) == []  # strictly after
    (change,) = lifecycle_changes(state(waiting(), now=due + TICK))
    assert change.patch["state"] == "Cancelled"
    assert change.patch["stateName"] == "LateCancelled"
    assert change.patch["message"] == (
        "still waiting more than latePolicy.afterSeconds (60s) past its scheduled time 2026-01-01T11:50:00Z"
    )
    assert change.event is not None
    assert (change.event.type, change.event.reason) == ("Warning", "LateCancelled")
    assert change.event.message == f"FlowRun r {change.patch['message']}"


def test_a_run_the_policy_ends_is_never_granted_meanwhile() -> None:
    free = wkr("w", heartbeat=at(), interval=3600)
    too_late = state(waiting("late"), waiting("fine", scheduled=at(seconds=-5)), now=at(), workers=[free])
    assert {c.run.metadata.name for c in admission_changes(too_late) if c.granted_to} == {"fine"}


def test_a_new_run_already_too_late_is_stamped_then_cancelled() -> None:
    new = flowrun("r", state=None, spec_scheduled=SCHEDULED)
    first = state(new, now=at(), workers=[wkr("w", heartbeat=at(), interval=3600)])
    (stamp,) = lifecycle_changes(first)
    assert stamp.patch["state"] == "Scheduled"
    assert all(not c.granted_to for c in admission_changes(first))
    assert cancelled(lifecycle_changes(settle(first, [stamp]))) == {"r": "LateCancelled"}


@pytest.mark.parametrize("current", [S.PENDING, S.RUNNING, S.PAUSED])
def test_only_waiting_runs_are_touched(current: StateType) -> None:
    run = flowrun("r", state=current, scheduled=SCHEDULED, worker="w", acquired=SCHEDULED)
    assert cancelled(lifecycle_changes(state(run, now=at(hours=5)))) == {}


def test_a_queue_policy_replaces_the_pools() -> None:
    queues = [wq(latePolicy={"action": "Run"}), wq("strict", latePolicy=CANCEL_60)]
    runs = [waiting("in-default"), waiting("in-strict", queue="strict")]
    found = lifecycle_changes(state(*runs, now=at(), queues=queues))
    assert cancelled(found) == {"in-strict": "LateCancelled"}
    assert late.policy_of("unknown", state(now=at(), queues=queues)) == wp(latePolicy=CANCEL_60).spec.late_policy


def test_the_after_seconds_moment_is_a_deadline() -> None:
    run = waiting(scheduled=at(minutes=10))
    assert next_deadline(state(run, now=at(), workers=[])) == at(minutes=10) + TICK  # due first
    due = state(run, now=at(minutes=10, seconds=20), workers=[])
    assert next_deadline(due) == at(minutes=11) + TICK


# --- skipToLatest -------------------------------------------------------------------------------

SKIP = {"skipToLatest": True}


def test_skip_to_latest_keeps_the_newest_due_run_of_each_schedule() -> None:
    runs = [
        waiting("s1-a", scheduled=at(minutes=-3), schedule="s1"),
        waiting("s1-b", scheduled=at(minutes=-2), schedule="s1"),
        waiting("s1-c", scheduled=at(minutes=-1), schedule="s1"),
        waiting("s1-future", scheduled=at(minutes=5), schedule="s1"),  # not due: not "waiting to run"
        waiting("s2-a", scheduled=at(minutes=-3), schedule="s2"),
        waiting("plain", scheduled=at(minutes=-3)),
    ]
    found = lifecycle_changes(state(*runs, now=at(), policy=SKIP))
    assert cancelled(found) == {"s1-a": "SkippedToLatest", "s1-b": "SkippedToLatest"}
    change = next(c for c in found if c.run.metadata.name == "s1-a")
    assert "s1-c, a newer run of FlowSchedule s1, is due" in change.patch["message"]
    assert change.event is not None
    assert change.event.reason == "SkippedToLatest"


def test_skip_to_latest_counts_only_waiting_runs() -> None:
    running = flowrun("s1-new", state=S.RUNNING, scheduled=at(minutes=-1), worker="w", acquired=at(minutes=-1))
    running.metadata.labels[SCHEDULE_LABEL] = "s1"
    old = waiting("s1-old", scheduled=at(minutes=-3), schedule="s1")
    assert cancelled(lifecycle_changes(state(old, running, now=at(), policy=SKIP))) == {}


def test_without_skip_to_latest_schedule_runs_all_wait() -> None:
    runs = [waiting(f"s1-{n}", scheduled=at(minutes=-n), schedule="s1") for n in range(1, 4)]
    assert cancelled(lifecycle_changes(state(*runs, now=at(), policy={"action": "Run"}))) == {}


# --- late counts ----------------------------------------------------------------------------------


def test_queues_count_their_late_runs() -> None:
    runs = [
        waiting("late", scheduled=at(seconds=-16)),
        waiting("on-time", scheduled=at(seconds=-15)),
        waiting("retry", scheduled=at(minutes=-5), state_name="AwaitingRetry"),
        flowrun("running", state=S.RUNNING, scheduled=at(hours=-1), worker="w", acquired=at(hours=-1)),
    ]
    plan = plan_pool(state(*runs, now=at(), policy=None))
    assert plan.queue_statuses[DEFAULT_QUEUE].late_runs == 2
    assert plan.queue_statuses[DEFAULT_QUEUE].scheduled_runs == 3


# --- property -------------------------------------------------------------------------------------


@PROPERTY
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from([None, S.SCHEDULED, S.SCHEDULED, S.PENDING, S.RUNNING, S.PAUSED]),
            st.integers(min_value=-600, max_value=120),
            st.sampled_from([None, "s1", "s2"]),
            st.booleans(),
        ),
        max_size=8,
    ),
    policy=st.fixed_dictionaries(
        {"skipToLatest": st.booleans()},
        optional={"action": st.just("Cancel"), "afterSeconds": st.integers(min_value=1, max_value=300)},
    ).filter(lambda p: ("action" in p) == ("afterSeconds" in p)),
)
def test_the_policy_cancels_only_waiting_runs_and_only_as_its_rules_say(
    specs: list[tuple[StateType | None, int, str | None, bool]], policy: dict[str, Any]
) -> None:
    runs = []
    for n, (current, offset, schedule, cancel) in enumerate(specs):
        holding = current in (S.PENDING, S.RUNNING)
        run = waiting(
            f"r{n}",
            state=current,
            scheduled=at(seconds=offset),
            spec_scheduled=at(seconds=offset),
            schedule=schedule,
            cancel=cancel,
            worker="w" if holding else None,
            acquired=at(seconds=offset) if holding else None,
        )
        runs.append(run)
    now = at()
    pool = state(*runs, now=now, policy=policy)
    verdicts = late.verdicts(pool)
    by_name = {r.metadata.name: r for r in runs}
    for name, verdict in verdicts.items():
        run = by_name[name]
        assert run.status.state in (None, S.SCHEDULED)
        assert not run.spec.cancel
        when = at(seconds=specs[int(name[1:])][1])
        if verdict.reason == late.LATE_CANCELLED:
            assert now - when > timedelta(seconds=policy["afterSeconds"])
        else:
            assert policy["skipToLatest"]
            assert when <= now
    # skipToLatest leaves exactly one due waiting run per schedule (the rest are cancelled or late).
    if policy["skipToLatest"]:
        for schedule in ("s1", "s2"):
            kept = [
                r
                for r in runs
                if r.metadata.labels.get(SCHEDULE_LABEL) == schedule
                and r.status.state in (None, S.SCHEDULED)
                and not r.spec.cancel
                and at(seconds=specs[int(r.metadata.name[1:])][1]) <= now
                and r.metadata.name not in verdicts
            ]
            assert len(kept) <= 1
