"""Watch handlers: every event of our kinds updates the store and wakes the affected pools.

Pools, queues, runs and schedules come through kopf's low-level `on.event` handlers, so kopf
keeps no state on user objects (no finalizers, no annotations): the operator stays invisible to
GitOps diffs. Workers are watched directly (`watch_workers`): their heartbeats arrive at fleet
rate (5,000 workers every 30 s is 167 events/s), and kopf's machinery per event (a queue and
task per object, handler invocation) cost several times what the store does with one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from workpools.api.meta import GROUP, VERSION
from workpools.client import errors
from workpools.client.resources import WORKERS
from workpools.controllers.runtime import Runtime

logger = logging.getLogger(__name__)

REFUSED_WATCH_PAUSE = 10.0
"""Seconds before a Worker watch the API server refused (RBAC, CRD missing) is tried again."""


def feed(rt: Runtime, event: kopf.RawEvent) -> None:
    """Apply one raw watch event to the stores and wake the pools and schedules it concerns."""
    feed_body(rt, dict(event["object"]), deleted=event.get("type") == "DELETED")


def feed_body(rt: Runtime, body: dict[str, Any], *, deleted: bool = False) -> None:
    if body.get("kind") == "FlowSchedule":
        touched = rt.schedules.remove(body) if deleted else rt.schedules.put(body)
    else:
        pools = rt.store.remove(body) if deleted else rt.store.put(body)
        if body.get("kind") != "FlowRun":
            rt.wakeups.wake(*pools)
            return
        if deleted or not rt.run_writer.writing(body):  # else the write's outcome wakes the pool
            rt.wakeups.wake(*pools)
        touched = rt.schedules.remove(body) if deleted else rt.schedules.put(body)
    if rt.schedule_wakeups is not None:
        rt.schedule_wakeups.wake(*touched)


@kopf.on.event(GROUP, VERSION, "workpools")
async def workpool_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "workqueues")
async def workqueue_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "flowruns")
async def flowrun_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


@kopf.on.event(GROUP, VERSION, "flowschedules")
async def flowschedule_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


async def watch_workers(rt: Runtime, namespace: str | None) -> None:
    """Feed every Worker event of `namespace` (None: all) into the store, for as long as the operator runs.

    The transport resumes a broken watch itself; a refusal is logged and the watch tried again
    later, and an event the store cannot take is logged and skipped, as kopf does for the other
    kinds: a dead task here would leave the operator blind to heartbeats, and every worker would
    look silent.
    """
    scope = namespace or "all namespaces"
    while True:
        try:
            async for kind, body in rt.transport.watch(WORKERS, namespace):
                try:
                    feed_body(rt, body, deleted=kind == "DELETED")
                except Exception:
                    name = body.get("metadata", {}).get("name")
                    logger.exception("could not take in a %s event of Worker %s in %s", kind, name, scope)
        except errors.WorkpoolsError as error:
            logger.error("watching workers in %s was refused: %s", scope, error)
            await asyncio.sleep(REFUSED_WATCH_PAUSE)
