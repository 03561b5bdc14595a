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
    """Apply one raw watch event to the store and wake the pools it concerns."""
    body = dict(event["object"])
    pools = rt.store.remove(body) if event.get("type") == "DELETED" else rt.store.put(body)
    rt.wakeups.wake(*pools)


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
