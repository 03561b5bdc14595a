"""Per-pool serial reconciliation (cache/wakeups.py), with a scripted stand-in for the reconciler.

Aspects: nothing runs before `enable()`, and what was woken before runs then; one pass at a time
per pool while different pools run side by side; wakes during a pass coalesce into exactly one
more round, and a wake during a pass also calls `between` soon, once per burst; a failing pass
is retried with a delay that doubles up to the cap and starts over after a success; `stop()`
cancels running passes and pending retries. Pacing: a deferred full pass wakes its pool when
due, and a pool that is gone is forgotten.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable

import pytest

from workpools.api.meta import ObjectKey
from workpools.cache.wakeups import Pacing, Wakeups

A, B = ObjectKey("ns", "a"), ObjectKey("ns", "b")
real_sleep = asyncio.sleep  # the retry test replaces asyncio.sleep; the tests' own yielding must not count


async def settle() -> None:
    """Let every ready task run until it waits (a pass that is held, a retry's sleep)."""
    for _ in range(20):
        await real_sleep(0)


class Reconciler:
    """Stands in for the pool reconciler: records passes, can hold them until released, and
    follows a script of outcomes ("ok", "fail", or a callable run during the pass)."""

    def __init__(self, script: Iterable[str | Callable[[], None]] = (), *, hold: bool = False) -> None:
        self.passes: list[ObjectKey] = []
        self.running: Counter[ObjectKey] = Counter()
        self.most_at_once: Counter[ObjectKey] = Counter()
        self.most_pools_at_once = 0
        self.cancelled: list[ObjectKey] = []
        self.script = list(script)
        self.released = asyncio.Event()
        if not hold:
            self.released.set()

    async def __call__(self, pool: ObjectKey) -> None:
        self.passes.append(pool)
        self.running[pool] += 1
        self.most_at_once[pool] = max(self.most_at_once[pool], self.running[pool])
        self.most_pools_at_once = max(self.most_pools_at_once, sum(1 for n in self.running.values() if n))
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.cancelled.append(pool)
            raise
        finally:
            self.running[pool] -= 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "fail":
            raise RuntimeError("the API server said no")
        if callable(step):
            step()


def run(scenario: Callable[[], Coroutine[None, None, None]]) -> None:
    asyncio.run(scenario())


def test_nothing_runs_before_enable_and_what_was_woken_runs_then() -> None:
    async def scenario() -> None:
        reconcile = Reconciler()
        wakeups = Wakeups(reconcile)
        wakeups.wake(A, B)
        wakeups.wake(A)
        await settle()
        assert reconcile.passes == []  # the store is not primed yet: a decision now would be on half the world
        wakeups.enable()
        await settle()
        assert sorted(reconcile.passes) == [A, B]  # one pass each, however often woken before

    run(scenario)


def test_one_pass_at_a_time_per_pool_while_pools_run_side_by_side() -> None:
    async def scenario() -> None:
        reconcile = Reconciler(hold=True)
        wakeups = Wakeups(reconcile)
        wakeups.enable()
        wakeups.wake(A)
        wakeups.wake(B)
        await settle()
        wakeups.wake(A, B)  # while both are in their pass
        await settle()
        assert reconcile.most_at_once == {A: 1, B: 1}
        assert reconcile.most_pools_at_once == 2
        reconcile.released.set()
        await settle()
        assert Counter(reconcile.passes) == {A: 2, B: 2}
        assert reconcile.most_at_once == {A: 1, B: 1}

    run(scenario)


def test_a_wake_during_a_pass_calls_between_soon_once_per_burst_and_never_outside_a_pass() -> None:
    async def scenario() -> None:
        reconcile, between = Reconciler(hold=True), []
        wakeups = Wakeups(reconcile, between=between.append)
        wakeups.enable()
        wakeups.wake(A)  # starts a pass: nothing runs between
        await settle()
        assert between == []
        for _ in range(3):
            wakeups.wake(A)  # A is in its pass
        assert between == []  # made on the loop, after the wakes
        await settle()
        assert between == [A]  # the burst is one call
        wakeups.wake(A)
        await settle()
        assert between == [A, A]
        reconcile.released.set()
        await settle()
        wakeups.wake(B)  # outside any pass of B: a pass, nothing between
        await settle()
        assert between == [A, A]

    run(scenario)


def test_wakes_during_a_pass_coalesce_into_exactly_one_more_round() -> None:
    async def scenario() -> None:
        reconcile = Reconciler(hold=True)
        wakeups = Wakeups(reconcile)
        wakeups.enable()
        wakeups.wake(A)
        await settle()
        for _ in range(5):  # a burst of events for the pool during its pass
            wakeups.wake(A)
        reconcile.released.set()
        await settle()
        assert reconcile.passes == [A, A]  # the second pass sees all five changes at once
        wakeups.wake(A)  # idle again: a later event starts a new pass
        await settle()
        assert reconcile.passes == [A, A, A]

    run(scenario)


def test_a_pass_that_is_not_woken_again_is_the_last() -> None:
    async def scenario() -> None:
        reconcile = Reconciler()
        wakeups = Wakeups(reconcile)
        wakeups.enable()
        wakeups.wake(A)
        await settle()
        await settle()
        assert reconcile.passes == [A]

    run(scenario)


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry delays asked for, in order; the sleeps themselves only yield."""
    asked: list[float] = []

    async def sleep(delay: float) -> None:
        asked.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return asked


def test_a_failing_pass_is_retried_with_a_doubling_delay_up_to_the_cap(delays: list[float]) -> None:
    async def scenario() -> None:
        reconcile = Reconciler(["fail"] * 6)
        wakeups = Wakeups(reconcile, first_retry=1.0, max_retry=8.0)
        wakeups.enable()
        wakeups.wake(A)
        await settle()
        assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        assert reconcile.passes == [A] * 7  # six failures, then the pass that succeeds; no more

    run(scenario)


def test_the_retry_delay_starts_over_after_a_pass_succeeds(delays: list[float]) -> None:
    async def scenario() -> None:
        wakeups: Wakeups
        # Two failures, a success during which the pool is woken again, then a failure.
        reconcile = Reconciler(["fail", "fail", lambda: wakeups.wake(A), "fail"])
        wakeups = Wakeups(reconcile, first_retry=1.0, max_retry=8.0)
        wakeups.enable()
        wakeups.wake(A)
        await settle()
        assert delays == [1.0, 2.0, 1.0]
        assert reconcile.passes == [A] * 5

    run(scenario)


def test_one_pools_failures_do_not_hold_up_another_pool() -> None:
    async def scenario() -> None:
        reconcile = Reconciler(["fail"])
        wakeups = Wakeups(reconcile, first_retry=60.0)
        wakeups.enable()
        wakeups.wake(A)  # fails, then waits a minute to retry
        await settle()
        wakeups.wake(B)
        await settle()
        assert reconcile.passes == [A, B]
        await wakeups.stop()

    run(scenario)


def test_stop_cancels_running_passes_and_pending_retries() -> None:
    async def scenario() -> None:
        reconcile = Reconciler(["fail"])
        wakeups = Wakeups(reconcile, first_retry=60.0)
        wakeups.enable()
        wakeups.wake(A)  # fails, then sleeps a minute before its retry
        await settle()
        reconcile.released.clear()
        wakeups.wake(B)  # held in its pass
        await settle()
        assert reconcile.passes == [A, B]
        await wakeups.stop()
        assert reconcile.cancelled == [B]
        assert asyncio.all_tasks() == {asyncio.current_task()}  # A's retry is gone too
        await settle()
        assert reconcile.passes == [A, B]

    run(scenario)


def test_pacing_defers_a_full_pass_to_its_due_time_and_forgets_a_pool_that_is_gone() -> None:
    woken: list[ObjectKey] = []
    pacing = Pacing(woken.append)

    async def scenario() -> None:
        pacing.full_done(A, 0.01)  # 10 ms deciding: the next full pass 90 ms later (a share of 0.1)
        pacing.full_done(B, 0.01)
        assert not pacing.full_due(A)
        pacing.defer(A)
        pacing.defer(B)
        pacing.forget(B)  # gone: its timer cancelled, its entry dropped
        assert pacing.full_due(B)
        await real_sleep(0.15)
        assert pacing.full_due(A)

    asyncio.run(scenario())
    assert woken == [A]
