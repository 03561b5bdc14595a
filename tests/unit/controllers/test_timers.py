"""The one clock-driven wake-up (controllers/timers.py), with a recording stand-in for `Wakeups`.

Aspects: a tick wakes exactly the pools whose recorded moment has come (a moment equal to now
included) and forgets them, keeping the others; the loop looks every `CHECK_PERIOD`, one second,
so a pool is woken at most a second after its moment (Offline, Late, a Pending timeout); a tick
that fails does not stop the loop.
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


def test_the_timer_looks_every_second_so_a_pool_is_woken_within_a_second_of_its_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, recorder = Clock(), Woken()
    rt = runtime({A: at(seconds=0.5), B: at(seconds=1.5), C: at(seconds=2.5)}, recorder, clock)
    assert ticks(rt, clock, monkeypatch, count=3) == [1.0, 1.0, 1.0]
    assert recorder.calls == [{A}, {B}, {C}]
    assert datetime.timedelta(seconds=1) == CHECK_PERIOD


def test_a_failing_tick_does_not_stop_the_timer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock, recorder = Clock(), Woken(fail=1)
    rt = runtime({A: at(seconds=0.5), B: at(seconds=1.5)}, recorder, clock)
    assert len(ticks(rt, clock, monkeypatch, count=2)) == 2
    assert "timer tick failed" in caplog.text
    (after_failure,) = recorder.calls  # the tick after the failed one still wakes pools
    assert B in after_failure
