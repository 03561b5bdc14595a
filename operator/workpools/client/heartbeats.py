"""Worker heartbeats: register the Worker once, then one small status write per beat.

Prefect's `worker_heartbeat` upserts the worker row on every beat. Here registration (create the
Worker, owned by its pool so it goes with the pool; bring its spec up to date) happens once per
`Heartbeat` object, and every beat after that is a single PATCH of `status.lastHeartbeatTime`
through the status subresource. It never writes a WorkPool or WorkQueue.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from workpools.api.meta import API_VERSION
from workpools.api.worker import Worker
from workpools.client import errors
from workpools.client.patches import merge_patch
from workpools.client.resources import WORKERS, WORKPOOLS
from workpools.client.transport import Transport

FIELD_MANAGER = "workpools-worker"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Heartbeat:
    """The heartbeat of one worker: `await beat()` every `interval` seconds."""

    def __init__(
        self,
        transport: Transport,
        *,
        namespace: str,
        pool: str,
        name: str,
        interval: int | None = None,
        queues: Sequence[str] = (),
        limit: int | None = None,
        worker_type: str = "process",
    ):
        self._transport = transport
        self.namespace, self.pool, self.name = namespace, pool, name
        self.spec: dict[str, Any] = {
            "workPool": pool,
            "workQueues": list(queues),
            "limit": limit,
            "heartbeatIntervalSeconds": interval,
            "type": worker_type,
        }
        self._registered = False

    async def beat(self, now: datetime.datetime | None = None) -> Worker:
        """Record a heartbeat now. Raises `PoolNotFound` when the pool does not exist."""
        if not self._registered:
            await self.register()
        stamp = (now or _utc_now()).isoformat().replace("+00:00", "Z")
        try:
            body = await self._transport.patch(
                WORKERS,
                self.namespace,
                self.name,
                {"status": {"lastHeartbeatTime": stamp}},
                status=True,
                field_manager=FIELD_MANAGER,
            )
        except errors.NotFound:
            # Deleted meanwhile (by a user, or the pool's workerTTLAfterOfflineSeconds): register anew.
            self._registered = False
            return await self.beat(now)
        return Worker.model_validate(body)

    async def register(self) -> Worker:
        """Create the Worker if it is missing and make its spec match this heartbeat's."""
        try:
            current = await self._transport.get(WORKERS, self.namespace, self.name)
        except errors.NotFound:
            current = await self._create()
        # A heartbeat without an interval keeps the one recorded (Prefect sets it only when given);
        # an omitted limit or queue list means "none" and is written as such.
        managed = {k for k, v in self.spec.items() if v is not None or k != "heartbeatIntervalSeconds"}
        wanted = {k: v for k, v in self.spec.items() if k in managed and v is not None}
        have = {k: v for k, v in current.get("spec", {}).items() if k in managed}
        if have != wanted:
            change = merge_patch(have, wanted)
            current = await self._transport.patch(
                WORKERS, self.namespace, self.name, {"spec": change}, field_manager=FIELD_MANAGER
            )
        self._registered = True
        return Worker.model_validate(current)

    async def drain(self) -> Worker:
        """Mark the worker as draining: the operator binds no new runs to it."""
        body = await self._transport.patch(
            WORKERS, self.namespace, self.name, {"spec": {"draining": True}}, field_manager=FIELD_MANAGER
        )
        return Worker.model_validate(body)

    async def _create(self) -> dict[str, Any]:
        try:
            pool = await self._transport.get(WORKPOOLS, self.namespace, self.pool)
        except errors.NotFound as missing:
            raise errors.PoolNotFound.from_not_found(missing) from missing
        body = {
            "apiVersion": API_VERSION,
            "kind": "Worker",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                # Owned by the pool, so deleting the pool deletes its workers (no orphans).
                "ownerReferences": [
                    {"apiVersion": API_VERSION, "kind": "WorkPool", "name": self.pool, "uid": pool["metadata"]["uid"]}
                ],
            },
            "spec": {k: v for k, v in self.spec.items() if v is not None},
        }
        try:
            return await self._transport.create(WORKERS, self.namespace, body, field_manager=FIELD_MANAGER)
        except errors.AlreadyExists:  # another process with this name got there first
            return await self._transport.get(WORKERS, self.namespace, self.name)


async def heartbeat(
    transport: Transport,
    namespace: str,
    pool: str,
    worker_name: str,
    *,
    interval: int | None = None,
    queues: Sequence[str] = (),
    limit: int | None = None,
) -> Worker:
    """One heartbeat, Prefect-style (`worker_heartbeat`): upsert the Worker, then record the beat."""
    beat = Heartbeat(
        transport, namespace=namespace, pool=pool, name=worker_name, interval=interval, queues=queues, limit=limit
    )
    return await beat.beat()
