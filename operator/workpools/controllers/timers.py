"""The one clock-driven wake-up: pools whose state changes with time alone (a heartbeat that got
too old, an Offline worker past its TTL) are woken; everything else is driven by watch events.

One global loop, never a timer per object; each tick is a cheap scan of deadlines in the store.
"""

from __future__ import annotations

import asyncio
import logging

from workpools.api.meta import ObjectKey
from workpools.controllers.runtime import Runtime
from workpools.core import liveness

logger = logging.getLogger(__name__)


def due_pools(rt: Runtime) -> list[ObjectKey]:
    now = rt.clock()
    due = []
    for pool_key, members in rt.store.workers.by_pool.items():
        pool = rt.store.pools.get(pool_key)
        ttl = pool.spec.worker_ttl_after_offline_seconds if pool is not None else None
        if liveness.due(members.values(), ttl, now):
            due.append(pool_key)
    return due


async def run_timers(rt: Runtime) -> None:
    period = liveness.CHECK_PERIOD.total_seconds()
    while True:
        await asyncio.sleep(period)
        try:
            rt.wakeups.wake(*due_pools(rt))
        except Exception:  # a bug here must not stop liveness for good
            logger.exception("timer tick failed")
