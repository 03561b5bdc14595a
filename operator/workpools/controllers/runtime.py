"""What the handlers share for the operator's lifetime, built once at startup."""

from __future__ import annotations

import datetime
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from workpools.api.meta import ObjectKey
from workpools.cache.schedules import ScheduleStore
from workpools.cache.store import Store
from workpools.cache.wakeups import Pacing, Wakeups
from workpools.client.transport import Transport
from workpools.clock import utc_now
from workpools.controllers.events import EventPoster
from workpools.controllers.writers import RunWriter, StatusLane
from workpools.core.snapshot import DELETIONS_BURST, DELETIONS_PER_SECOND
from workpools.core.tokens import TokenBucket

DELETIONS_ENV = "WORKPOOLS_RUN_DELETIONS_PER_SECOND"
"""Finished runs deleted per second at most, for all pools together (core/ttl.py)."""


def deletion_budget(environ: Mapping[str, str]) -> TokenBucket:
    """The shared bucket of run deletions: the configured rate, and bursts of two seconds' worth."""
    text = environ.get(DELETIONS_ENV, "")
    if not text:
        return TokenBucket(DELETIONS_PER_SECOND, DELETIONS_BURST)
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not (0 < rate <= 10_000):  # also refuses nan and inf
        raise ValueError(f"{DELETIONS_ENV} must be a number of deletions per second in (0, 10000], not {text!r}")
    return TokenBucket(rate, max(1, math.ceil(2 * rate)))


@dataclass
class Runtime:
    transport: Transport
    store: Store
    wakeups: Wakeups
    clock: Callable[[], datetime.datetime] = utc_now
    deadlines: dict[ObjectKey, datetime.datetime] = field(default_factory=dict)
    """Per pool, the next moment time alone changes it (set by each pass, read by the timer)."""
    deletion_budget: TokenBucket = field(default_factory=lambda: TokenBucket(DELETIONS_PER_SECOND, DELETIONS_BURST))
    """The one token bucket every pool's finished-run deletions draw from (core/ttl.py)."""
    schedules: ScheduleStore = field(default_factory=ScheduleStore)
    schedule_wakeups: Wakeups | None = None
    """Per-schedule serial reconciliation (controllers/schedules.py); set at startup."""
    schedule_deadlines: dict[ObjectKey, datetime.datetime] = field(default_factory=dict)
    """Per schedule, its next scheduled time (read by the timer)."""
    instance: str = field(default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname())
    run_writer: RunWriter = field(init=False)
    """Run writes in flight and the grants assumed meanwhile (controllers/writers.py)."""
    lane: StatusLane = field(init=False)
    """The coalescing writer of status-only bookkeeping (controllers/writers.py)."""
    events: EventPoster = field(init=False)
    """Posts the events passes decide, without making them wait (controllers/events.py)."""
    pacing: Pacing = field(init=False)
    """When each pool's next full pass may run; grant passes in between (controllers/pools.py)."""

    def __post_init__(self) -> None:
        self.run_writer = RunWriter(self)
        self.lane = StatusLane(self)
        self.events = EventPoster(self)
        self.pacing = Pacing(self.wakeups.wake)

    async def stop_writers(self) -> None:
        await self.run_writer.stop()
        await self.lane.stop()
        await self.events.stop()
