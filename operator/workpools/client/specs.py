"""Users' spec writes to pools and queues: Prefect's create, update and delete calls.

    specs = SpecsClient(transport, "team-a")
    await specs.create_work_pool("etl", concurrency_limit=8)
    await specs.update_work_pool("etl", paused=True)          # patches spec.paused only
    await specs.update_work_queue("etl", "high", concurrency_limit=None)  # removes the limit

Each update is a JSON merge patch of exactly the fields passed, under the field manager
`workpools-cli`, so it sits alongside a GitOps tool that applies the rest of the spec (which
will report the changed field as drift, as it should). A field passed as None is removed
(unlimited, no description); a field not passed is not touched. Objects are created with the
same field manager. Refusals by the schema come back as `errors.Invalid` with the API server's
message.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from workpools.api.meta import API_VERSION
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.client import errors
from workpools.client.resources import WORKPOOLS, WORKQUEUES
from workpools.client.transport import ResourceType, Transport
from workpools.client.workpools import FIELD_MANAGER, WorkpoolsClient

__all__ = ["UNSET", "SpecsClient", "Unset"]


class Unset(enum.Enum):
    """Marks an argument that was not passed (None means "remove the field")."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET


class SpecsClient:
    """Create, update and delete WorkPools and WorkQueues in one namespace (shares `transport`)."""

    def __init__(self, transport: Transport, namespace: str | None = None):
        self._transport = transport
        self.namespace = namespace or transport.namespace
        self._pools = WorkpoolsClient(transport, self.namespace)

    # -- pools ---------------------------------------------------------------------------------

    async def create_work_pool(
        self,
        name: str,
        *,
        type: str = "process",
        description: str | None = None,
        concurrency_limit: int | None = None,
        paused: bool = False,
    ) -> WorkPool:
        """Create a pool; the operator then creates its default queue. `AlreadyExists` if taken."""
        spec = _given(type=type, description=description, concurrencyLimit=concurrency_limit)
        if paused:
            spec["paused"] = True
        return WorkPool.model_validate(await self._create(WORKPOOLS, name, spec))

    async def update_work_pool(
        self,
        name: str,
        *,
        description: str | Unset | None = UNSET,
        paused: bool | Unset = UNSET,
        concurrency_limit: int | Unset | None = UNSET,
    ) -> WorkPool:
        """Patch the given spec fields of pool `name` (None removes one); `NotFound` without it."""
        change = _changes(description=description, paused=paused, concurrencyLimit=concurrency_limit)
        return WorkPool.model_validate(await self._patch(WORKPOOLS, name, change))

    async def delete_work_pool(self, name: str) -> None:
        """Delete the pool (its default queue goes with it; other queues and runs stay and report it)."""
        await self._transport.delete(WORKPOOLS, self.namespace, name)

    # -- queues --------------------------------------------------------------------------------

    async def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int | None = None,
        concurrency_limit: int | None = None,
        description: str | None = None,
        paused: bool = False,
    ) -> WorkQueue:
        """Create queue `name` in `pool`; without `priority` it takes the first free value.

        `PoolNotFound` without the pool, `AlreadyExists` if the name is taken in the namespace.
        """
        try:
            await self._pools.read_work_pool(pool)
        except errors.NotFound as missing:
            raise errors.PoolNotFound.from_not_found(missing) from missing
        spec = _given(workPool=pool, priority=priority, concurrencyLimit=concurrency_limit, description=description)
        if paused:
            spec["paused"] = True
        return WorkQueue.model_validate(await self._create(WORKQUEUES, name, spec))

    async def update_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int | Unset | None = UNSET,
        concurrency_limit: int | Unset | None = UNSET,
        description: str | Unset | None = UNSET,
        paused: bool | Unset = UNSET,
    ) -> WorkQueue:
        """Patch the given spec fields of queue `name` of `pool` (None removes one).

        `PoolNotFound` without the pool, `NotFound` if the queue is not in it. Setting
        `priority` patches this queue alone: the operator resolves collisions in
        `status.effectivePriority`; `bulk_update_work_queue_priorities` rewrites the others' specs.
        """
        await self._pools.read_work_queue(pool, name)
        change = _changes(priority=priority, concurrencyLimit=concurrency_limit, description=description, paused=paused)
        return WorkQueue.model_validate(await self._patch(WORKQUEUES, name, change))

    async def delete_work_queue(self, pool: str, name: str) -> None:
        """Delete queue `name` of `pool` (errors as `update_work_queue`); its runs stay and report it.

        The operator re-creates a pool's default queue deleted while the pool exists.
        """
        queue = await self._pools.read_work_queue(pool, name)
        await self._transport.delete(WORKQUEUES, self.namespace, name, uid=queue.metadata.uid)

    # -- helpers -------------------------------------------------------------------------------

    async def _create(self, resource: ResourceType, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": API_VERSION,
            "kind": resource.kind,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        return await self._transport.create(resource, self.namespace, body, field_manager=FIELD_MANAGER)

    async def _patch(self, resource: ResourceType, name: str, change: dict[str, Any]) -> dict[str, Any]:
        if not change:
            raise ValueError("nothing to change: pass at least one field")
        return await self._transport.patch(
            resource, self.namespace, name, {"spec": change}, field_manager=FIELD_MANAGER
        )


def _given(**fields: Any) -> dict[str, Any]:
    """The spec fields that have a value (None: leave out, the schema's default applies)."""
    return {key: value for key, value in fields.items() if value is not None}


def _changes(**fields: Any) -> dict[str, Any]:
    """The merge-patch body of the fields passed (None stays: it removes the field)."""
    return {key: value for key, value in fields.items() if value is not UNSET}
