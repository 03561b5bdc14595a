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
    def __init__(self, reconcile: Reconcile, *, first_retry: float = 1.0, max_retry: float = 16.0):
        # At most 16 s between retries: after a fault heals, a pool is decided again within
        # seconds; a persistent error still costs one pass per 16 s, never a storm.
        self._reconcile = reconcile
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._dirty: set[ObjectKey] = set()
        self._tasks: dict[ObjectKey, asyncio.Task[None]] = {}
        self.enabled = False
        """Off until the store has been primed with a full LIST of every kind."""

    def wake(self, *pools: ObjectKey) -> None:
        for pool in pools:
            self._dirty.add(pool)
            if self.enabled and pool not in self._tasks:
                self._tasks[pool] = asyncio.create_task(self._run(pool), name=f"reconcile {pool}")

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
                    await asyncio.sleep(delay)
        finally:
            self._tasks.pop(pool, None)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
