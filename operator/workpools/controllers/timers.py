"""The one clock-driven wake-up. Each reconcile pass records when time alone will next change its
pool (`core.deadlines`: a heartbeat getting too old, a run becoming due or Late, a Pending
timeout); this loop sleeps until the earliest of them (a second at most) and wakes the pools whose
moment has come. Never a timer per object.
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


def seconds_to_next(rt: Runtime) -> float:
    """How long the timer sleeps: until the earliest recorded moment, at most CHECK_PERIOD (a moment
    recorded meanwhile, earlier than all others, is then at most that late)."""
    period = liveness.CHECK_PERIOD.total_seconds()
    moments = [*rt.deadlines.values(), *rt.schedule_deadlines.values()]
    if not moments:
        return period
    return min(period, max(0.0, (min(moments) - rt.clock()).total_seconds()))


async def run_timers(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(seconds_to_next(rt))
        try:
            wake_due_pools(rt)
        except Exception:  # a bug here must not stop liveness for good
            logger.exception("timer tick failed")
