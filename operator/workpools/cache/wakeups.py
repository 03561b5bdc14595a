"""Per-pool serial reconciliation: any event for a pool wakes its reconciler; runs never overlap.

A pool has a task only while there is work for it: `wake()` starts one, or marks the running one
dirty so it goes round once more. So the number of tasks is bounded by the pools with pending
changes, and every pool's decisions are serialised (one admitter per pool).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from workpools.api.meta import ObjectKey

logger = logging.getLogger(__name__)

Reconcile = Callable[[ObjectKey], Awaitable[None]]


class Wakeups:
    def __init__(
        self,
        reconcile: Reconcile,
        *,
        between: Callable[[ObjectKey], None] | None = None,
        first_retry: float = 1.0,
        max_retry: float = 16.0,
    ):
        """`between`: called soon (on the loop, never during a pass's own synchronous step) for a
        wake that comes while the pool's pass is running: the grant pass that a freed slot must not
        wait a whole full pass for (controllers/pools.py)."""
        # At most 16 s between retries: after a fault heals, a pool is decided again within
        # seconds; a persistent error still costs one pass per 16 s, never a storm.
        self._reconcile = reconcile
        self._between = between
        self._between_due: set[ObjectKey] = set()
        self._retrying: set[ObjectKey] = set()
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._dirty: set[ObjectKey] = set()
        self._tasks: dict[ObjectKey, asyncio.Task[None]] = {}
        self.enabled = False
        """Off until the store has been primed with a full LIST of every kind."""

    def wake(self, *pools: ObjectKey) -> None:
        for pool in pools:
            self._dirty.add(pool)
            if not self.enabled:
                continue
            if pool not in self._tasks:
                self._tasks[pool] = asyncio.create_task(self._run(pool), name=f"reconcile {pool}")
            elif self._between is not None and pool not in self._between_due:
                self._between_due.add(pool)
                asyncio.get_running_loop().call_soon(self._run_between, pool)

    def enable(self) -> None:
        self.enabled = True
        self.wake(*self._dirty)

    async def _run(self, pool: ObjectKey) -> None:
        failures = 0
        try:
            while pool in self._dirty:
                self._dirty.discard(pool)
                try:
                    await self._reconcile(pool)
                    failures = 0
                except Exception:
                    # Level-based: the next round recomputes everything, so a failure loses nothing;
                    # the delay doubles so a persistent error never becomes a retry storm.
                    delay = min(self._max_retry, self._first_retry * 2**failures)
                    failures += 1
                    logger.exception("reconciling pool %s failed; retrying in %.0fs", pool, delay)
                    self._dirty.add(pool)
                    self._retrying.add(pool)  # nothing between: the failing pass decides first
                    try:
                        await asyncio.sleep(delay)
                    finally:
                        self._retrying.discard(pool)
        finally:
            self._tasks.pop(pool, None)

    def _run_between(self, pool: ObjectKey) -> None:
        self._between_due.discard(pool)
        if self._between is None or not self.enabled or pool not in self._tasks or pool in self._retrying:
            return  # the pass ended meanwhile (the round it goes once more decides), or failed, or we stop
        try:
            self._between(pool)
        except Exception:
            logger.exception("deciding pool %s between the steps of its pass failed", pool)

    async def stop(self) -> None:
        self.enabled = False  # what settles meanwhile starts no pass
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


FULL_PASS_SHARE = 0.1
"""While wake-ups come faster, a pool's full passes take about this share of the loop at most:
after a full pass that spent d seconds deciding, the next one waits d × (1 / share − 1); grant
passes run between. On two cores the operator's CPU is the API server's too: in a 10,000-run
fill, where each landed grant asks for the full pass that skipped it, a share of 0.25 cost 4.2 ms
of operator CPU per grant (three runs: 120–122 grants/s) and 0.1 cost 3.1–4.0 ms, mean 3.6 (four
runs: 118–152 grants/s, mean 130)."""

FULL_PASS_GAP_MAX = 5.0
"""Seconds a full pass waits at most after the last one: its bookkeeping (statuses, reasons, reclaims)
is that late at worst. The share holds up to a full pass of 0.55 s (about 5,000 runs in flight on
this project's benchmark machine); with a cap of 1 s, a 10,000-run fill spent over half of the
operator's time in full passes."""


class Pacing:
    """When each pool's next full pass may run; a wake-up before that runs a grant pass (where the
    heads of the lines suffice: controllers/pools.py), and the full pass follows when due (a timer
    wakes the pool then).

    A full pass decides everything (lifecycle, reasons, statuses, deadlines) over every run of the
    pool; a grant pass only fills open slots from the heads of the queues' lines. At 10,000 runs
    waiting, a full pass per freed slot kept freed slots waiting for seconds.
    """

    def __init__(self, wake: Callable[[ObjectKey], None]) -> None:
        self._wake = wake
        self._next_full: dict[ObjectKey, float] = {}
        self._timers: dict[ObjectKey, asyncio.TimerHandle] = {}

    def full_due(self, pool: ObjectKey) -> bool:
        """Whether this pass may be a full one."""
        due = self._next_full.get(pool)
        return due is None or asyncio.get_running_loop().time() >= due

    def defer(self, pool: ObjectKey) -> None:
        """A pass ran that was not the full one: wake the pool when its full pass is due."""
        loop = asyncio.get_running_loop()
        if pool not in self._timers:
            due = self._next_full.get(pool, loop.time())
            self._timers[pool] = loop.call_at(due, self._fire, pool)

    def full_done(self, pool: ObjectKey, seconds: float) -> None:
        """A full pass of `pool` spent `seconds` deciding (its awaits left out)."""
        gap = min(FULL_PASS_GAP_MAX, seconds * (1 / FULL_PASS_SHARE - 1))
        self._next_full[pool] = asyncio.get_running_loop().time() + gap

    def forget(self, pool: ObjectKey) -> None:
        """A pool that is gone: no timer, no entry (a pool of that name created again starts afresh)."""
        self._next_full.pop(pool, None)
        if (timer := self._timers.pop(pool, None)) is not None:
            timer.cancel()

    def _fire(self, pool: ObjectKey) -> None:
        self._timers.pop(pool, None)
        self._wake(pool)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
