"""Events the operator posts on the objects it reconciles (pools, queues, runs, schedules)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import TYPE_CHECKING

from workpools.api.base import Resource
from workpools.api.meta import API_VERSION
from workpools.client import errors, events
from workpools.core.statuses import Event

if TYPE_CHECKING:
    from workpools.controllers.runtime import Runtime

FIELD_MANAGER = "workpools-operator"
"""Field manager of every write the operator makes; managedFields show exactly what it owns."""

logger = logging.getLogger(__name__)

EVENTS_IN_FLIGHT = 8
"""Events of passes posted at once."""

EVENTS_QUEUED_MAX = 10_000
"""Events waiting to be posted; past this (the API server refusing them for long) new ones are dropped."""


async def post_event(rt: Runtime, obj: Resource, event: Event, *, now: datetime.datetime | None = None) -> None:
    """Post `event` on `obj` as this operator instance, decided at `now` (default: now); a failure
    is logged, never raised."""
    meta = obj.metadata
    try:
        await events.post_event(
            rt.transport,
            api_version=API_VERSION,
            kind=obj.KIND,
            namespace=meta.namespace or "",
            name=meta.name,
            uid=meta.uid,
            type=event.type.value,
            reason=event.reason,
            message=event.message,
            component=FIELD_MANAGER,
            instance=rt.instance,
            now=now or rt.clock(),
        )
    except errors.WorkpoolsError as error:
        # An event is information, not state: losing one must never block reconciliation.
        logger.warning("could not post event %s on %s/%s: %s", event.reason, meta.namespace, meta.name, error)


class EventPoster:
    """Posts the events passes decide in the background, taken in the order given, EVENTS_IN_FLIGHT at once.

    A pass never waits for one: when 1,000 workers registered, posting their WorkerOnline events one
    after the other inside the pass held the pool for minutes (newcomers, grants and statuses waited
    behind them). Each event carries the time it was submitted (its name and timestamps), so the
    events of an object still list, and `kubectl describe` tells them, in the order decided.
    """

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._queue: asyncio.Queue[tuple[Resource, Event, datetime.datetime]] = asyncio.Queue(EVENTS_QUEUED_MAX)
        self._posters: list[asyncio.Task[None]] = []
        self.dropped = 0

    def submit(self, obj: Resource, event: Event) -> None:
        if not self._posters:
            self._posters = [
                asyncio.create_task(self._post_queued(), name=f"event poster {i}") for i in range(EVENTS_IN_FLIGHT)
            ]
        try:
            self._queue.put_nowait((obj, event, self._rt.clock()))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("%d events dropped: %d are waiting to be posted", self.dropped, EVENTS_QUEUED_MAX)

    async def stop(self) -> None:
        for task in self._posters:
            task.cancel()
        await asyncio.gather(*self._posters, return_exceptions=True)
        self._posters = []

    async def _post_queued(self) -> None:
        while True:
            obj, event, decided = await self._queue.get()
            try:
                await post_event(self._rt, obj, event, now=decided)
            except Exception:  # a bug must not stop this poster for good
                logger.exception("posting event %s on %s failed", event.reason, obj.metadata.name)
