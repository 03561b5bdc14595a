"""Retries (core/retries.py, FlowRun spec.retries and spec.retryDelaySeconds).

Aspects: a Failed or Crashed run with attempts left becomes its next attempt (Scheduled,
AwaitingRetry, attempt + 1, scheduled `retryDelaySeconds` after the failure was seen, bound to no
worker, the failure kept in lastFailure, one Warning event); Completed and Cancelled runs, runs
out of attempts and runs whose cancellation is requested are not retried (and are finished, for
the TTL); the next attempt is admitted no earlier than its time, and keeps its name rather than
turning Late; the retry time is a deadline; and, as a property over any sequence of failures and
clocks, a run never gets more than `retries + 1` attempts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import at
from tests.unit.core.run_support import flowrun, pool_state, settle, wkr
from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.states import StateType
from workpools.core import retries
from workpools.core.deadlines import TICK, next_deadline
from workpools.core.runs import admission_changes, in_flight, lifecycle_changes

S = StateType
PROPERTY = settings(deadline=None)
NOW = at(minutes=10)
ENDED = at(minutes=9)


def ended(
    state: StateType = S.FAILED, *, retries_: int = 2, delay: int = 30, attempt: int | None = None, cancel: bool = False
) -> FlowRun:
    run = flowrun("r", state=state, worker="w", ended=ENDED, cancel=cancel)
    run.spec.retries, run.spec.retry_delay_seconds = retries_, delay
    run.status.attempt, run.status.message = attempt, "exit code 1"
    return run


def test_a_failed_run_with_attempts_left_becomes_its_next_attempt() -> None:
    (change,) = lifecycle_changes(pool_state(runs=[ended()], now=NOW))
    assert change.patch == {
        "state": "Scheduled",
        "stateName": "AwaitingRetry",
        "attempt": 2,
        "scheduledTime": timestamp(NOW + timedelta(seconds=30)),
        "lastFailure": {"attempt": 1, "state": "Failed", "message": "exit code 1", "endTime": timestamp(ENDED)},
        "message": f"attempt 1 of 3 Failed; attempt 2 at {timestamp(NOW + timedelta(seconds=30))}",
        "worker": None,
        "workerIdentity": None,
        "slot": None,
        "startTime": None,
        "endTime": None,
    }
    assert change.event is not None
    assert (change.event.type, change.event.reason) == ("Warning", "AwaitingRetry")
    assert change.event.message == f"FlowRun r: {change.patch['message']}"


def test_a_crashed_run_is_retried_too_and_without_delay_at_once() -> None:
    (change,) = lifecycle_changes(pool_state(runs=[ended(S.CRASHED, delay=0)], now=NOW))
    assert change.patch["scheduledTime"] == timestamp(NOW)
    assert change.patch["lastFailure"]["state"] == "Crashed"


@pytest.mark.parametrize(
    ("run", "why"),
    [
        pytest.param(ended(S.COMPLETED), "completed", id="completed"),
        pytest.param(ended(S.CANCELLED), "cancelled", id="cancelled"),
        pytest.param(ended(retries_=0), "no retries", id="no-retries"),
        pytest.param(ended(retries_=2, attempt=3), "attempts used up", id="last-attempt"),
        pytest.param(ended(cancel=True), "cancellation requested", id="cancel-requested"),
    ],
)
def test_runs_that_are_not_retried_are_finished(run: FlowRun, why: str) -> None:
    assert not retries.retrying(run), why
    assert not in_flight(run)  # the TTL's now
    assert lifecycle_changes(pool_state(runs=[run], now=NOW)) == []


def test_a_retrying_run_is_in_flight() -> None:
    assert in_flight(ended(attempt=2))


def test_the_next_attempt_is_admitted_no_earlier_than_its_time_and_stays_awaiting_retry() -> None:
    worker = wkr("w", heartbeat=NOW, interval=3600)
    state = pool_state(runs=[ended()], workers=[worker], now=NOW)
    state = settle(state, lifecycle_changes(state))
    (hold,) = admission_changes(state)
    assert hold.granted_to is None
    assert [c["reason"] for c in hold.patch["conditions"]] == ["NotYetScheduled"]
    state = settle(state, [hold])
    due = NOW + timedelta(seconds=30)
    assert next_deadline(state) == due + TICK
    assert admission_changes(replace(state, now=due - TICK)) == [], "not before its time"
    (grant,) = admission_changes(replace(state, now=due))
    assert grant.granted_to == "w"
    assert grant.patch["state"] == "Pending"


def test_an_overdue_retry_keeps_its_name() -> None:
    run = flowrun("r", state=S.SCHEDULED, state_name="AwaitingRetry", scheduled=at(minutes=-5))
    changes = admission_changes(pool_state(runs=[run], now=NOW))
    assert all("stateName" not in c.patch for c in changes)


@PROPERTY
@given(
    allowed=st.integers(min_value=0, max_value=4),
    delay=st.integers(min_value=0, max_value=120),
    outcomes=st.lists(st.sampled_from([S.FAILED, S.CRASHED, S.COMPLETED]), min_size=1, max_size=8),
    gaps=st.lists(st.integers(min_value=0, max_value=300), min_size=8, max_size=8),
)
def test_a_run_never_gets_more_attempts_than_its_retries_allow(
    allowed: int, delay: int, outcomes: list[StateType], gaps: list[int]
) -> None:
    run = flowrun("r", state=None)
    run.spec.retries, run.spec.retry_delay_seconds = allowed, delay
    worker = wkr("w", heartbeat=at(hours=10), interval=3600)
    now: datetime = at()
    state = pool_state(runs=[run], workers=[worker], now=now)
    started = 0
    for outcome, gap in zip(outcomes, gaps, strict=False):
        # Passes until the run is granted (a retry waits for its time), then it ends as `outcome`.
        for _ in range(4):
            state = settle(state, lifecycle_changes(state))
            state = settle(state, admission_changes(state))
            if state.runs[0].status.state is S.PENDING:
                break
            now += timedelta(seconds=delay + 1)
            state = replace(state, now=now)
        current = state.runs[0]
        if current.status.state is not S.PENDING:
            break  # finished: not retried any more
        started += 1
        assert retries.attempt(current) == started
        assert started <= allowed + 1
        body = current.model_copy(deep=True)
        body.status.state, body.status.end_time, body.status.slot = outcome, now, None
        now += timedelta(seconds=gap)
        state = replace(state, runs=[body], now=now)
    assert started <= allowed + 1
