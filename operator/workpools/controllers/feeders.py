"""Watch handlers: every event of our kinds updates the store and wakes the affected pools.

Pools, queues and schedules come through kopf's low-level `on.event` handlers, so kopf keeps no
state on user objects (no finalizers, no annotations): the operator stays invisible to GitOps
diffs. Workers and runs are watched directly (`watch_directly`): they are the kinds that change
at the rate of the work (5,000 workers heartbeating every 30 s is 167 events/s; every grant and
every state a worker writes is an event of a run), and kopf's machinery per event (a queue and a
task per object, handler invocation) cost several times what the store does with one: 2–3 ms of
CPU per run event in a profiled 10,000-run fill, the largest single share of the operator's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from workpools.api.meta import GROUP, VERSION
from workpools.cache.store import key_of
from workpools.client import errors
from workpools.client.resources import FLOWRUNS, WORKERS
from workpools.client.transport import ResourceType
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


@kopf.on.event(GROUP, VERSION, "flowschedules")
async def flowschedule_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    feed(memo.runtime, event)


DIRECTLY_WATCHED = (WORKERS, FLOWRUNS)
"""The kinds `watch_directly` feeds, kopf's machinery left out."""


async def watch_directly(
    rt: Runtime, resource: ResourceType, namespace: str | None, listed: asyncio.Event | None = None
) -> None:
    """Feed every event of `resource` in `namespace` (None: all) into the store, for as long as the operator runs.

    Its first LIST primes the store with the kind (`listed` is set once it has been taken in).
    After a LIST taken again (the watch could not resume: "410 Gone"), what the store holds of the
    kind beyond it is deleted as if its DELETED event had come: a run deleted meanwhile would
    otherwise hold its slot in the store until the operator restarts (a limit under-used).

    The transport resumes a broken watch itself; a refusal is logged and the watch tried again
    later, and an event the store cannot take is logged and skipped, as kopf does for the other
    kinds: a dead task here would leave the operator blind to heartbeats (every worker would look
    silent) or to runs (a freed slot never refilled).
    """
    scope = namespace or "all namespaces"

    def on_listed(present: frozenset[tuple[str, str]]) -> None:
        for gone in rt.store.unlisted(resource.kind, namespace, present):
            logger.info("%s %s was deleted while the watch was broken", resource.kind, key_of(gone))
            feed_body(rt, gone, deleted=True)
        if listed is not None:
            listed.set()

    while True:
        try:
            async for kind, body in rt.transport.watch(resource, namespace, on_listed=on_listed):
                try:
                    feed_body(rt, body, deleted=kind == "DELETED")
                except Exception:
                    name = body.get("metadata", {}).get("name")
                    logger.exception("could not take in a %s event of %s %s in %s", kind, resource.kind, name, scope)
        except errors.WorkpoolsError as error:
            logger.error("watching %s in %s was refused: %s", resource.plural, scope, error)
            await asyncio.sleep(REFUSED_WATCH_PAUSE)
