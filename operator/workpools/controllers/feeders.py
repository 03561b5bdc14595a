"""Watch handlers: every event of the four kinds updates the store and wakes the affected pools.

These are kopf's low-level `on.event` handlers, so kopf keeps no state on user objects
(no finalizers, no annotations): the operator stays invisible to GitOps diffs.
"""

from __future__ import annotations

from typing import Any

import kopf

from workpools.api.meta import GROUP, VERSION
from workpools.controllers.runtime import Runtime


def feed(rt: Runtime, event: kopf.RawEvent) -> None:
    """Apply one raw watch event to the stores and wake the pools and schedules it concerns."""
    feed_body(rt, dict(event["object"]), deleted=event.get("type") == "DELETED")


def feed_body(rt: Runtime, body: dict[str, Any], *, deleted: bool = False) -> None:
    if body.get("kind") == "FlowSchedule":
        touched = rt.schedules.remove(body) if deleted else rt.schedules.put(body)
    else:
        rt.wakeups.wake(*(rt.store.remove(body) if deleted else rt.store.put(body)))
        if body.get("kind") != "FlowRun":
            return
        touched = rt.schedules.remove(body) if deleted else rt.schedules.put(body)
    if rt.schedule_wakeups is not None:
        rt.schedule_wakeups.wake(*touched)


@kopf.on.event(GROUP, VERSION, "workpools")
async def workpool_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "workqueues")
async def workqueue_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "workers")
async def worker_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "flowruns")
async def flowrun_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "flowschedules")
async def flowschedule_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)
