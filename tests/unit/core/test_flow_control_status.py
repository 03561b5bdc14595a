"""Flow control as the reconciler sees it: the effective limit in status, the LimitWindow
condition and its events, the deadlines of window changes and start tokens, and grants that
record `grantedAt` (core/plan.py, core/deadlines.py, core/runs.py; issue 14 items 1-3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from tests.builders import T0, at
from tests.unit.core.run_support import DEFAULT_QUEUE, bound_run, flowrun, pool_state, wkr, wp, wq
from tests.unit.core.test_pool_plan import events, plan, settle
from workpools.api.states import StateType
from workpools.core.deadlines import next_deadline
from workpools.core.plan import describe_changes
from workpools.core.runs import admission_changes

S = StateType
NIGHT: dict[str, Any] = {"name": "noon", "from": "12:00", "to": "13:00", "limit": 1}


def test_an_open_window_is_the_effective_limit_and_a_condition_with_one_event_each_way() -> None:
    pool = wp(concurrencyLimit=5, concurrencyLimitSchedule=[NIGHT])
    first = plan(pool, [])
    assert first.pool_status is not None
    assert first.pool_status.slots.limit == 1
    window = next(c for c in first.pool_status.conditions if c.type == "LimitWindow")
    assert (window.status, window.reason, window.message) == ("True", "WindowOpen", "window noon is open: limit 1")
    assert ("p", "Normal", "LimitWindowOpened") in events(first)
    pool, _ = settle(pool, [], first)
    assert "LimitWindowOpened" not in [e[2] for e in events(plan(pool, [], minutes=30))]
    closed = plan(pool, [], minutes=60)
    assert closed.pool_status is not None
    assert closed.pool_status.slots.limit == 5
    assert ("p", "Normal", "LimitWindowClosed") in events(closed)
    window = next(c for c in closed.pool_status.conditions if c.type == "LimitWindow")
    assert (window.status, window.message) == ("False", "no window is open: concurrencyLimit (5) applies")


def test_a_pool_without_a_schedule_has_no_window_condition() -> None:
    result = plan(wp(concurrencyLimit=5), [])
    assert result.pool_status is not None
    assert all(c.type != "LimitWindow" for c in result.pool_status.conditions)


def test_a_queue_window_sets_its_slots_limit_and_events() -> None:
    queue = wq(DEFAULT_QUEUE, concurrencyLimitSchedule=[{"from": "11:00", "to": "12:30", "limit": 0}])
    result = plan(wp(), [queue])
    status = result.queue_statuses[DEFAULT_QUEUE]
    assert status.slots.limit == 0
    assert (DEFAULT_QUEUE, "Normal", "LimitWindowOpened") in events(result)


def test_the_next_window_change_is_a_deadline() -> None:
    pool = wp(concurrencyLimitSchedule=[NIGHT])
    assert next_deadline(pool_state(pool=pool, now=T0)) == at(hours=1)
    queue = wq(concurrencyLimitSchedule=[{"cron": "*/10 * * * *", "durationSeconds": 60, "limit": 0}])
    assert next_deadline(pool_state(queues=[queue], now=at(seconds=30))) == at(minutes=1)


def test_the_next_start_token_is_a_deadline_while_due_runs_wait() -> None:
    pool = wp(startRate={"perMinute": 2, "burst": 1})
    granted = bound_run(S.RUNNING, "a", acquired=T0)
    waiting = flowrun("r", scheduled=at(seconds=-20))  # already Late: its only moment is the token
    state = pool_state(pool=pool, runs=[granted, waiting], workers=[wkr("w", heartbeat=T0, interval=3600)], now=T0)
    assert next_deadline(state) == at(seconds=30)
    nothing_waits = pool_state(pool=pool, runs=[granted], workers=[wkr("w", heartbeat=T0, interval=3600)], now=T0)
    assert next_deadline(nothing_waits) != at(seconds=30)


def test_a_grant_records_granted_at_and_finished_runs_count_against_the_rate() -> None:
    pool = wp(startRate={"perMinute": 1, "burst": 1})
    worker = wkr("w", heartbeat=T0, interval=3600)
    fresh = pool_state(pool=pool, runs=[flowrun("r", scheduled=T0)], workers=[worker], now=T0)
    (grant,) = admission_changes(fresh)
    assert grant.patch["grantedAt"] == "2026-01-01T12:00:00Z"
    done = flowrun("done", state=S.COMPLETED, ended=T0)
    done.status.granted_at = T0 - timedelta(seconds=10)
    limited = replace(
        pool_state(pool=pool, runs=[flowrun("r", scheduled=T0)], workers=[worker], now=T0), finished=[done]
    )
    (hold,) = admission_changes(limited)
    assert hold.patch["conditions"][0]["reason"] == "StartRateLimited"


def test_an_updated_event_shows_flow_control_as_written() -> None:
    old, new = (
        wp(),
        wp(startRate={"perMinute": 5}, concurrencyLimitSchedule=[{"from": "22:00", "to": "06:00", "limit": 1}]),
    )
    assert describe_changes(old.spec, new.spec) == (
        'concurrencyLimitSchedule: [] → [{"from":"22:00","to":"06:00","limit":1}]; '
        'startRate: unset → {"perMinute":5,"burst":1}'
    )


def test_a_window_the_schema_accepts_but_cannot_be_evaluated_never_opens_and_says_so_once() -> None:
    reversed_range = {"name": "odd", "cron": "5-1 * * * *", "durationSeconds": 60, "limit": 0}
    pool = wp(concurrencyLimitSchedule=[reversed_range])
    first = plan(pool, [])
    assert first.pool_status is not None
    assert first.pool_status.slots.limit is None
    window = next(c for c in first.pool_status.conditions if c.type == "LimitWindow")
    assert (window.status, window.reason) == ("False", "InvalidWindow")
    assert "window odd never opens: schedule '5-1 * * * *' cannot be evaluated" in window.message
    assert ("p", "Warning", "InvalidWindow") in events(first)
    pool, _ = settle(pool, [], first)
    assert events(plan(pool, [], minutes=5)) == []
