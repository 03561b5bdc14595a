"""The one clock-driven wake-up (controllers/timers.py), with a recording stand-in for `Wakeups`.

Aspects: a tick wakes exactly the pools whose recorded moment has come (a moment equal to now
included) and forgets them, keeping the others; the loop sleeps until the earliest moment, and at
most `CHECK_PERIOD` (one second), so a pool is woken at its moment (Offline, Late, a Pending
timeout), or within a second when the moment was recorded in the meantime; a tick that fails does
not stop the loop.
"""

from __future__ import annotations

import datetime
from collections.abc import Coroutine
from typing import Any

import pytest

from tests.builders import T0, at
from workpools.api.meta import ObjectKey
from workpools.cache.store import Store
from workpools.controllers import timers
from workpools.controllers.runtime import Runtime
from workpools.core.liveness import CHECK_PERIOD

A, B, C = ObjectKey("ns", "a"), ObjectKey("ns", "b"), ObjectKey("ns", "c")


class Woken:
    """Stands in for `Wakeups`: records each `wake` call's pools, or fails the first `fail` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[set[ObjectKey]] = []
        self.fail = fail

    def wake(self, *pools: ObjectKey) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("wake failed")
        self.calls.append(set(pools))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


def runtime(deadlines: dict[ObjectKey, datetime.datetime], woken: Woken, clock: Clock) -> Runtime:
    # The timer touches only the clock, the deadlines and the wake-ups.
    return Runtime(transport=None, store=Store(), wakeups=woken, clock=clock, deadlines=dict(deadlines))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("deadlines", "woken", "kept"),
    [
        pytest.param({}, set(), {}, id="nothing-recorded"),
        pytest.param({A: at(seconds=-1)}, {A}, {}, id="passed"),
        pytest.param({A: T0}, {A}, {}, id="exactly-now"),
        pytest.param({A: at(microseconds=1)}, set(), {A: at(microseconds=1)}, id="a-microsecond-ahead"),
        pytest.param({A: at(minutes=-5), B: T0, C: at(seconds=1)}, {A, B}, {C: at(seconds=1)}, id="only-those-due"),
    ],
)
def test_a_tick_wakes_exactly_the_pools_whose_moment_has_come(
    deadlines: dict[ObjectKey, datetime.datetime], woken: set[ObjectKey], kept: dict[ObjectKey, datetime.datetime]
) -> None:
    recorder = Woken()
    rt = runtime(deadlines, recorder, Clock())
    timers.wake_due_pools(rt)
    assert recorder.calls == [woken]
    # Forgotten once woken: the pool's next pass records its next moment.
    assert rt.deadlines == kept


class Stop(Exception):
    """Ends the timer loop from inside the stand-in for asyncio.sleep."""


def ticks(rt: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch, count: int) -> list[float]:
    """Runs the timer loop for `count` sleeps, the clock moving by each; returns the delays slept."""
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        if len(slept) == count:
            raise Stop
        slept.append(delay)
        clock.now += datetime.timedelta(seconds=delay)

    monkeypatch.setattr(timers.asyncio, "sleep", sleep)
    loop: Coroutine[Any, Any, None] = timers.run_timers(rt)
    with pytest.raises(Stop):
        loop.send(None)  # the stand-in never suspends, so one send runs the loop to Stop
    return slept


def test_the_timer_sleeps_until_the_earliest_moment_and_a_second_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, recorder = Clock(), Woken()
    rt = runtime({A: at(seconds=0.5), B: at(seconds=0.75), C: at(seconds=2.5)}, recorder, clock)
    assert ticks(rt, clock, monkeypatch, count=4) == [0.5, 0.25, 1.0, 0.75]
    assert recorder.calls == [{A}, {B}, set(), {C}]
    assert datetime.timedelta(seconds=1) == CHECK_PERIOD


def test_a_moment_a_pass_records_between_two_looks_is_the_next_one_slept_until(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, recorder = Clock(), Woken()
    rt = runtime({}, recorder, clock)
    original = timers.wake_due_pools

    def record_then_wake(rt: Runtime) -> None:
        original(rt)
        if not rt.deadlines and not recorder.calls[1:]:
            rt.deadlines[A] = clock.now + datetime.timedelta(seconds=0.2)  # a pass records one meanwhile

    monkeypatch.setattr(timers, "wake_due_pools", record_then_wake)
    slept = ticks(rt, clock, monkeypatch, count=2)
    assert slept == [1.0, 0.2]
    assert recorder.calls[-1] == {A}


def test_a_failing_tick_does_not_stop_the_timer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock, recorder = Clock(), Woken(fail=1)
    rt = runtime({A: at(seconds=0.5), B: at(seconds=1.5)}, recorder, clock)
    assert len(ticks(rt, clock, monkeypatch, count=2)) == 2
    assert "timer tick failed" in caplog.text
    (after_failure,) = recorder.calls  # the tick after the failed one still wakes pools
    assert B in after_failure
