"""The one clock-driven wake-up. Each reconcile pass records when time alone will next change its
pool (`core.deadlines`: a heartbeat getting too old, a run becoming due or Late, a Pending
timeout); this loop wakes the pools whose moment has passed. Never a timer per object.
"""

from __future__ import annotations

import asyncio
import logging

from workpools.controllers.runtime import Runtime
from workpools.core import liveness

logger = logging.getLogger(__name__)


def wake_due_pools(rt: Runtime) -> None:
    now = rt.clock()
    due = [pool for pool, moment in rt.deadlines.items() if moment <= now]
    for pool in due:
        del rt.deadlines[pool]
    rt.wakeups.wake(*due)
    if rt.schedule_wakeups is not None:
        due = [schedule for schedule, moment in rt.schedule_deadlines.items() if moment <= now]
        for schedule in due:
            del rt.schedule_deadlines[schedule]
        rt.schedule_wakeups.wake(*due)


async def run_timers(rt: Runtime) -> None:
    period = liveness.CHECK_PERIOD.total_seconds()
    while True:
        await asyncio.sleep(period)
        try:
            wake_due_pools(rt)
        except Exception:  # a bug here must not stop liveness for good
            logger.exception("timer tick failed")
