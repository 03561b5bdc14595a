"""The per-pool reconciler: one pass makes the pool's children and statuses what `core/` says.

It runs serialised per pool (`cache.wakeups`), reads only the store, and writes only differences:
a pass over an unchanged pool makes no API call at all.
"""

from __future__ import annotations

import logging
from typing import Any

from workpools.api.base import Resource, to_json
from workpools.api.meta import API_VERSION, ObjectKey, default_queue_name
from workpools.api.workpool import WorkPool
from workpools.client import errors
from workpools.client.events import post_event
from workpools.client.patches import merge_patch
from workpools.client.resources import WORKPOOLS, WORKQUEUES
from workpools.client.transport import ResourceType
from workpools.controllers.runtime import FIELD_MANAGER, Runtime
from workpools.core.plan import plan_pool
from workpools.core.statuses import Event, EventType

logger = logging.getLogger(__name__)


async def reconcile_pool(rt: Runtime, key: ObjectKey) -> None:
    """One pass for one pool: decide with `core.plan`, then apply the plan."""
    store = rt.store
    pool = store.pools.get(key)
    changes, deletions = store.take_news(key)
    plan = plan_pool(
        pool_name=key.name,
        pool=pool,
        queues=store.queues.of(key),
        workers=store.workers.of(key),
        runs=store.runs.of(key),
        changes=changes,
        deletions=deletions,
        now=rt.clock(),
    )
    if pool is not None and plan.create_default_queue:
        await _create_default_queue(rt, pool, recreated=pool.status.default_queue is not None)
    if pool is not None and plan.pool_status is not None:
        await _write_status(rt, WORKPOOLS, pool, to_json(plan.pool_status))
    for queue in store.queues.of(key):
        wanted = plan.queue_statuses.get(queue.metadata.name)
        if wanted is not None:
            await _write_status(rt, WORKQUEUES, queue, to_json(wanted))
    for obj, event in plan.events:
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


async def _write_status(rt: Runtime, resource: ResourceType, obj: Resource, desired: dict[str, Any]) -> None:
    """Patch status to `desired` if it differs; the response goes into the store at once."""
    current = to_json(obj.status, as_read=True)  # type: ignore[attr-defined]
    patch = merge_patch(current, desired)
    if not patch:
        return
    meta = obj.metadata
    updated = await rt.transport.patch(
        resource, meta.namespace or "", meta.name, {"status": patch}, status=True, field_manager=FIELD_MANAGER
    )
    rt.store.put(updated)


async def _post(rt: Runtime, obj: Resource, event: Event) -> None:
    meta = obj.metadata
    try:
        await post_event(
            rt.transport,
            api_version=API_VERSION,
            kind=obj.kind,
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
