"""The per-pool reconciler: one pass makes the pool's children and statuses what `core/` says.

It runs serialised per pool (`cache.wakeups`), reads only the store, and writes only differences:
a pass over an unchanged pool makes no API call at all.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from workpools.api.base import Resource, to_json
from workpools.api.meta import API_VERSION, ObjectKey, default_queue_name
from workpools.api.workpool import WorkPool
from workpools.client import errors
from workpools.client.events import post_event
from workpools.client.patches import merge_patch
from workpools.client.resources import WORKERS, WORKPOOLS, WORKQUEUES
from workpools.client.transport import ResourceType
from workpools.controllers.runtime import FIELD_MANAGER, Runtime
from workpools.core.plan import PoolState, plan_pool
from workpools.core.statuses import Event, EventType

logger = logging.getLogger(__name__)


async def reconcile_pool(rt: Runtime, key: ObjectKey) -> None:
    """One pass for one pool: decide with `core.plan`, then apply the plan."""
    store = rt.store
    pool = store.pools.get(key)
    changes, deletions = store.take_news(key)
    state = PoolState(
        name=key.name,
        pool=pool,
        queues=store.queues.of(key),
        workers=store.workers.of(key),
        runs=store.runs.of(key),
        now=rt.clock(),
    )
    plan = plan_pool(state, changes=changes, deletions=deletions)
    if pool is not None and plan.create_default_queue:
        await _create_default_queue(rt, pool, recreated=pool.status.default_queue is not None)
    stale: set[tuple[str, str]] = set()
    for name in plan.delete_workers:
        await _delete_worker(rt, key.namespace, name)
    if pool is not None and plan.pool_status is not None:
        await _write_status(rt, WORKPOOLS, pool, to_json(plan.pool_status))
    for queue in state.queues:  # the versions the plan was decided on, not newer ones
        if (wanted := plan.queue_statuses.get(queue.metadata.name)) is not None:
            await _write_status(rt, WORKQUEUES, queue, to_json(wanted))
    for worker in state.workers:
        wanted_worker = plan.worker_statuses.get(worker.metadata.name)
        # The worker writes its heartbeat into the same status: decide on the exact version we read.
        if wanted_worker is not None and not await _write_status(
            rt, WORKERS, worker, to_json(wanted_worker), precondition=True
        ):
            stale.add((worker.KIND, worker.metadata.name))
    for obj, event in plan.events:
        if (obj.KIND, obj.metadata.name) not in stale:  # its status will be re-decided, events with it
            await _post(rt, obj, event)


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


async def _delete_worker(rt: Runtime, namespace: str, name: str) -> None:
    with contextlib.suppress(errors.NotFound):  # already gone: what we wanted
        await rt.transport.delete(WORKERS, namespace, name)


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
