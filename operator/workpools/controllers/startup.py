"""Operator startup and shutdown: kopf's settings, the shared runtime, the primed store."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import Any

import kopf

from workpools.api.meta import ObjectKey
from workpools.cache.store import Store
from workpools.cache.wakeups import Wakeups
from workpools.client import errors
from workpools.client.resources import FLOWSCHEDULES, WORKPOOLS, WORKQUEUES
from workpools.client.transport import Transport
from workpools.controllers import metrics
from workpools.controllers.events import FIELD_MANAGER
from workpools.controllers.feeders import DIRECTLY_WATCHED, feed_body, watch_directly
from workpools.controllers.pools import backlog_snapshots, grant_between, reconcile_pool
from workpools.controllers.runtime import Runtime, deletion_budget
from workpools.controllers.schedules import reconcile_schedule
from workpools.controllers.scope import Scope
from workpools.controllers.timers import run_timers

logger = logging.getLogger(__name__)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps no essence of our objects.

    kopf diffs each object against its last-handled essence for on.create/update/field handlers;
    this operator has only `on.event` handlers, so the diff is never read. Building it deep-copies
    the whole body (managedFields and status included) on every watch event: about a third of
    kopf's CPU per Worker heartbeat, as profiled by `benchmarks/heartbeats.py --profile`.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


PRIME_RETRIES = (0.5, 1, 2, 4, 8)
"""Pauses between attempts to LIST a kind at startup (a LIST is idempotent: the store takes it again)."""


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Only low-level handlers are used, so kopf never writes to our objects; its own events stay off.
    settings.posting.enabled = False
    settings.posting.reporting_component = FIELD_MANAGER
    # CRDs are installed by the user (kubectl apply -k / Argo CD), not discovered at runtime.
    settings.scanning.disabled = True
    settings.persistence.diffbase_storage = NoDiffBase()
    # Paginated initial LISTs keep memory flat with many runs; bookmarks keep watches alive.
    settings.watching.chunk_size = 500
    settings.watching.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60

    transport = await Transport.connect()
    transport.load_every_api()
    store = Store()
    runtime: Runtime

    async def reconcile(pool: ObjectKey) -> None:
        try:
            await reconcile_pool(runtime, pool)
        except Exception:
            metrics.record_error(pool)
            raise

    async def reconcile_flow_schedule(schedule: ObjectKey) -> None:
        try:
            await reconcile_schedule(runtime, schedule)
        except Exception:
            metrics.record_schedule_error(schedule)
            raise

    def grant(pool: ObjectKey) -> None:
        grant_between(runtime, pool)

    wakeups = Wakeups(reconcile, between=grant)
    runtime = Runtime(transport=transport, store=store, wakeups=wakeups, deletion_budget=deletion_budget(os.environ))
    runtime.schedule_wakeups = Wakeups(reconcile_flow_schedule)
    memo.runtime = runtime
    scope = Scope.from_environment()
    # The first LISTs make objects by the ten thousand and free almost none: the cyclic collector
    # stays off meanwhile (its full collections, each walking everything stored so far, came
    # again and again while 10,000 runs were listed), and what they stored, which lives as long
    # as its objects do, is then kept out of its sight: its full collections walk only what came
    # later (`gc.freeze`; objects are still freed when unreferenced). With 10,000 runs stored,
    # each full collection held the loop 0.2–0.6 s, one every 30–60 s while runs changed.
    gc.disable()
    try:
        memo.direct_watches = await prime(runtime, scope)
    finally:
        gc.freeze()
        gc.enable()
    # Only once primed: a store half listed (waiting runs seen, their pool's slot holders not yet) would overstate it.
    metrics.backlog.attach(asyncio.get_running_loop(), lambda: backlog_snapshots(runtime))
    runtime.wakeups.enable()
    runtime.schedule_wakeups.enable()
    memo.timers = asyncio.create_task(run_timers(runtime), name="timers")


async def prime(rt: Runtime, scope: Scope) -> list[asyncio.Task[None]]:
    """Fill the store with a full LIST of every kind before any pool is reconciled; returns the
    watches of the directly watched kinds, started here.

    Without it a pool could be reconciled before its queues were seen, and the operator would
    act on half a picture (e.g. re-create a default queue that exists). Workers and runs are
    listed by their own watch's first LIST, waited for here (an informer's "synced"): one LIST of
    10,000 runs at a restart, not a second one racing the first pass.
    """
    watches, listed = [], []
    for resource in DIRECTLY_WATCHED:
        for namespace in scope.list_namespaces():
            listed.append(done := asyncio.Event())
            name = f"{resource.plural} in {namespace or 'all namespaces'}"
            watches.append(asyncio.create_task(watch_directly(rt, resource, namespace, done), name=name))
    try:
        await _list_kopf_kinds(rt, scope)
        await asyncio.gather(*(done.wait() for done in listed))
    except BaseException:
        for watch in watches:
            watch.cancel()
        raise
    logger.info(
        "store primed: %d pools, %d queues, %d workers, %d runs, %d schedules",
        len(rt.store.pools),
        len(rt.store.queues.by_key),
        len(rt.store.workers.by_key),
        len(rt.store.runs.by_key),
        len(rt.schedules.schedules),
    )
    return watches


async def _list_kopf_kinds(rt: Runtime, scope: Scope) -> None:
    """A full LIST of each kind kopf watches, into the store."""
    for resource in (WORKPOOLS, WORKQUEUES, FLOWSCHEDULES):
        for namespace in scope.list_namespaces():
            for pause in PRIME_RETRIES:  # a broken connection must not cost kopf's 60 s startup retry
                try:
                    async for body in rt.transport.list_all(resource, namespace):
                        feed_body(rt, body)
                    break
                except errors.Unavailable as error:
                    logger.warning("listing %s failed (%s); again in %.0fs", resource.plural, error, pause)
                    await asyncio.sleep(pause)
            else:
                raise errors.Unavailable(f"could not list {resource.plural} to prime the store", kind=resource.kind)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    metrics.backlog.detach()
    timers: asyncio.Task[None] | None = getattr(memo, "timers", None)
    if timers is not None:
        timers.cancel()
    for watch in getattr(memo, "direct_watches", []):
        watch.cancel()
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        runtime.pacing.stop()
        await runtime.wakeups.stop()
        if runtime.schedule_wakeups is not None:
            await runtime.schedule_wakeups.stop()
        await runtime.stop_writers()
        await runtime.transport.close()


@kopf.on.probe(id="reconcilers")
async def reconcilers_probe(memo: kopf.Memo, **_: Any) -> str:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is None or not runtime.wakeups.enabled:
        raise kopf.TemporaryError("still priming the store")
    return "ok"
