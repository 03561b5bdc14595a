"""The per-pool reconciler: one pass makes the pool's children and statuses what `core/` says.

It runs serialised per pool (`cache.wakeups`), reads only the store, and writes only differences:
a pass over an unchanged pool makes no API call at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from workpools.api.base import Resource, to_json
from workpools.api.flowrun import FlowRun
from workpools.api.meta import API_VERSION, ObjectKey, default_queue_name
from workpools.api.phases import WorkerPhase
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.client import errors
from workpools.client.events import post_event
from workpools.client.patches import merge_patch
from workpools.client.resources import FLOWRUNS, WORKERS, WORKPOOLS, WORKQUEUES
from workpools.client.transport import ResourceType
from workpools.controllers import metrics
from workpools.controllers.runtime import FIELD_MANAGER, Runtime
from workpools.core import liveness, runs, selection, ttl
from workpools.core.deadlines import next_deadline
from workpools.core.plan import PoolPlan, plan_pool
from workpools.core.snapshot import PoolState
from workpools.core.statuses import Event, EventType

logger = logging.getLogger(__name__)


async def reconcile_pool(rt: Runtime, key: ObjectKey) -> None:
    """One pass for one pool, in three decide-then-write steps, each deciding on the store as the
    previous step's writes left it: (1) run lifecycle (recover, cancel), (2) admission (grants, and
    Scheduled, Late and reasons for the runs that wait), (3) statuses of the pool, its queues and
    workers, and their events. Before them: the outcome of earlier writes that is still unknown is
    read back, and silent workers are read directly.

    A failed run write does not stop the steps after it; the pass raises it at the end (and is
    retried). That is safe because a lifecycle write that did not land leaves the store as it was,
    and that view is the cautious one for admission: the run still holds its slot, or is not yet
    Scheduled, or has its cancellation requested. So grants never wait for bookkeeping to land.
    """
    await _read_back_unsure_runs(rt, key)
    silent = await _read_silent_workers(rt, key)
    failed = await _apply_run_changes(rt, key, runs.lifecycle_changes(_state(rt, key, silent)))
    failed = await _apply_run_changes(rt, key, runs.admission_changes(_state(rt, key, silent))) or failed

    state = _state(rt, key, silent)
    pool = state.pool
    changes, deletions = rt.store.take_news(key)
    plan = plan_pool(state, changes=changes, deletions=deletions)
    metrics.record_statuses(key, state, plan.pool_status, plan.queue_statuses)
    if pool is not None and plan.create_default_queue:
        await _create_default_queue(rt, pool, recreated=pool.status.default_queue is not None)
    for worker in state.workers:
        if worker.metadata.name in plan.delete_workers:
            await _delete_worker(rt, worker)
    stale = await _write_worker_statuses(rt, state, plan)
    # The pool's workers.online counts phases that landed: after a refused Worker write it waits
    # for the pass that the Worker's newer version wakes, rather than count what did not happen.
    if pool is not None and plan.pool_status is not None and not stale:
        await _write_status(rt, WORKPOOLS, pool, to_json(plan.pool_status))
    for queue in state.queues:  # the versions the plan was decided on, not newer ones
        if (wanted := plan.queue_statuses.get(queue.metadata.name)) is not None:
            await _write_status(rt, WORKQUEUES, queue, to_json(wanted))
    for obj, event in plan.events:
        if (obj.KIND, obj.metadata.name) not in stale:  # its status will be re-decided, events with it
            await _post(rt, obj, event)

    await _delete_finished_runs(rt, key, silent)

    # Decided on the pool as this pass leaves it (runs deleted, the deletion budget spent).
    if (deadline := next_deadline(_state(rt, key, silent))) is not None:
        rt.deadlines[key] = deadline
    else:
        rt.deadlines.pop(key, None)
    if failed is not None:
        raise failed


async def _write_worker_statuses(rt: Runtime, state: PoolState, plan: PoolPlan) -> set[tuple[str, str]]:
    """Write the workers' statuses; returns those that changed meanwhile (their events wait)."""
    stale = set()
    for worker in state.workers:
        wanted = plan.worker_statuses.get(worker.metadata.name)
        if wanted is None:
            continue
        # Offline lands only on the version a direct read showed silent (the store holds it); a
        # newer heartbeat makes it fail. Online needs no precondition: no heartbeat can make it wrong.
        going_offline = wanted.phase is WorkerPhase.OFFLINE and worker.status.phase is not WorkerPhase.OFFLINE
        if not await _write_status(rt, WORKERS, worker, to_json(wanted), precondition=going_offline):
            stale.add((worker.KIND, worker.metadata.name))
    return stale


async def _read_back_unsure_runs(rt: Runtime, pool: ObjectKey) -> None:
    """Learn the outcome of writes that failed ambiguously; until then this pool is not decided."""
    gate = asyncio.Semaphore(RUN_WRITES_IN_FLIGHT)

    async def read_back(name: str) -> None:
        async with gate:
            try:
                body = await rt.transport.get(FLOWRUNS, pool.namespace, name)
            except errors.NotFound:
                rt.store.remove({"kind": "FlowRun", "metadata": {"namespace": pool.namespace, "name": name}})
            else:
                rt.store.put(body)
        rt.store.unsure[pool].discard(name)

    names = sorted(rt.store.unsure.get(pool, ()))
    outcomes = await asyncio.gather(*(read_back(name) for name in names), return_exceptions=True)
    if not rt.store.unsure.get(pool, True):
        rt.store.unsure.pop(pool, None)
    for outcome in outcomes:  # a read that failed leaves its run unsure: no decision on this pool yet
        if isinstance(outcome, BaseException):
            raise outcome


async def _read_silent_workers(rt: Runtime, pool: ObjectKey) -> frozenset[str]:
    """Read each worker that looks silent from the API server itself, not the watch cache.

    Returns those the read confirms (no new heartbeat, or gone). A read that shows a new
    heartbeat updates the store, and with it the worker's sighting: it is alive after all.
    """
    confirmed = set()
    for name in sorted(liveness.judge(_state(rt, pool)).suspects):
        try:
            body = await rt.transport.get(WORKERS, pool.namespace, name)
        except errors.NotFound:
            confirmed.add(name)
            continue
        rt.store.put(body)
        if not liveness.alive(rt.store.sightings[pool].get(name), rt.clock()):
            confirmed.add(name)
    return frozenset(confirmed)


def _state(rt: Runtime, key: ObjectKey, confirmed_silent: frozenset[str] = frozenset()) -> PoolState:
    store = rt.store
    # Finished runs decide nothing but their own deletion (no slot, no status count): kept apart,
    # every other rule walks only the runs in flight, not the pool's history.
    in_flight: list[FlowRun] = []
    finished: list[FlowRun] = []
    for run in store.runs.of(key):
        (in_flight if runs.in_flight(run) else finished).append(run)
    return PoolState(
        name=key.name,
        pool=store.pools.get(key),
        queues=store.queues.of(key),
        workers=store.workers.of(key),
        runs=in_flight,
        now=rt.clock(),
        sightings=store.sightings_for(key, {r.status.worker for r in in_flight if r.status.worker}),
        confirmed_silent=confirmed_silent,
        finished=finished,
        deletion_budget=rt.deletion_budget,
    )


RUN_WRITES_IN_FLIGHT = 16
"""Run writes of one pass go out concurrently (they touch distinct objects), this many at a time."""


async def _apply_run_changes(rt: Runtime, pool: ObjectKey, changes: Sequence[runs.RunChange]) -> Exception | None:
    """Write each run's status patch on the exact version it was decided on; post its event if it landed.

    Returns only when every write has ended: a write still in flight when the pass moved on would
    be a grant the next pass does not count. A write with an unknown outcome is marked unsure (read
    back before the pool is decided again); the first such error is returned, for the pass to raise.
    """
    gate = asyncio.Semaphore(RUN_WRITES_IN_FLIGHT)

    async def apply(change: runs.RunChange) -> None:
        async with gate:
            meta = change.run.metadata
            try:
                updated = await rt.transport.patch(
                    FLOWRUNS,
                    meta.namespace or "",
                    meta.name,
                    {"status": change.patch},
                    status=True,
                    field_manager=FIELD_MANAGER,
                    resource_version=meta.resource_version,
                )
            except (errors.Conflict, errors.NotFound):
                return  # it moved on (its new version's watch event wakes the pool) or it is gone
            except Exception:
                rt.store.unsure[pool].add(meta.name)  # it may have landed: read it back before deciding again
                raise
            rt.store.put(updated)
        if change.granted_to is not None:
            admissible = max(selection.scheduled_time(change.run), change.run.metadata.creation_timestamp or rt.clock())
            metrics.record_grant(pool, runs.queue_of(change.run, pool.name), admissible, rt.clock())
        if change.reclaim is not None:
            metrics.record_reclaim(pool, change.reclaim)
        if change.event is not None:
            await _post(rt, change.run, change.event)

    outcomes = await asyncio.gather(*(apply(change) for change in changes), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # cancellation: the pass ends now
            return outcome
    return None


async def _delete_finished_runs(rt: Runtime, pool: ObjectKey, silent: frozenset[str]) -> None:
    """Delete the runs whose finished-run TTL passed, as many as the shared bucket pays for now.

    Taken from the bucket before the first await, so passes of other pools see it spent. Each
    delete lands only on the version judged: a run changed since is judged again next time.
    """
    decided = ttl.deletions(_state(rt, pool, silent))
    rt.deletion_budget = decided.budget
    gate = asyncio.Semaphore(RUN_WRITES_IN_FLIGHT)

    async def delete(run: FlowRun) -> bool:
        meta = run.metadata
        async with gate:
            try:
                await rt.transport.delete(
                    FLOWRUNS, meta.namespace or "", meta.name, resource_version=meta.resource_version
                )
            except errors.Conflict:
                return False  # changed since it was judged: its watch event wakes the pool to judge it again
            except errors.NotFound:
                pass
        gone = {"kind": "FlowRun", "metadata": {"namespace": meta.namespace, "name": meta.name, "uid": meta.uid}}
        rt.store.remove(gone)
        metrics.record_run_deleted(pool)
        return True

    outcomes = await asyncio.gather(*(delete(run) for run in decided.runs), return_exceptions=True)
    if deleted := sum(outcome is True for outcome in outcomes):
        logger.info("pool %s: deleted %d finished runs past finishedRunTTLSeconds", pool, deleted)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def default_queue_manifest(pool: WorkPool) -> dict[str, Any]:
    """The default queue of `pool`: owned by it, so it is deleted with it."""
    meta = pool.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkQueue",
        "metadata": {
            "name": default_queue_name(meta.name),
            "namespace": meta.namespace,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "WorkPool",
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"workPool": meta.name, "description": f"Default queue of work pool {meta.name}"},
    }


async def _create_default_queue(rt: Runtime, pool: WorkPool, *, recreated: bool) -> None:
    manifest = default_queue_manifest(pool)
    try:
        created = await rt.transport.create(
            WORKQUEUES, pool.metadata.namespace or "", manifest, field_manager=FIELD_MANAGER
        )
    except errors.AlreadyExists:
        return  # a queue of that name exists (maybe the user's own): adopt it, never fight over it
    rt.wakeups.wake(*rt.store.put(created))
    if recreated:
        await _post(
            rt,
            pool,
            Event(
                EventType.WARNING,
                "DefaultQueueRecreated",
                f"default queue {manifest['metadata']['name']} was deleted; re-created it",
            ),
        )


async def _write_status(
    rt: Runtime, resource: ResourceType, obj: Resource, desired: dict[str, Any], *, precondition: bool = False
) -> bool:
    """Patch status to `desired` if it differs; the response goes into the store at once.

    With `precondition`, the write lands only on the version the decision was made from; False
    means it changed meanwhile: the watch event that brings the new version wakes the pool again.
    """
    current = to_json(obj.status, as_read=True)  # type: ignore[attr-defined]
    patch = merge_patch(current, desired)
    if not patch:
        return True
    meta = obj.metadata
    try:
        updated = await rt.transport.patch(
            resource,
            meta.namespace or "",
            meta.name,
            {"status": patch},
            status=True,
            field_manager=FIELD_MANAGER,
            resource_version=meta.resource_version if precondition else None,
        )
    except (errors.Conflict, errors.NotFound):
        return False
    rt.store.put(updated)
    return True


async def _delete_worker(rt: Runtime, worker: Worker) -> None:
    """Delete the version judged expired only: one that heartbeat since must stay (Conflict)."""
    meta = worker.metadata
    with contextlib.suppress(errors.NotFound, errors.Conflict):  # gone already, or alive again
        await rt.transport.delete(WORKERS, meta.namespace or "", meta.name, resource_version=meta.resource_version)


async def _post(rt: Runtime, obj: Resource, event: Event) -> None:
    meta = obj.metadata
    try:
        await post_event(
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
            now=rt.clock(),
        )
    except errors.WorkpoolsError as error:
        # An event is information, not state: losing one must never block reconciliation.
        logger.warning("could not post event %s on %s/%s: %s", event.reason, meta.namespace, meta.name, error)
