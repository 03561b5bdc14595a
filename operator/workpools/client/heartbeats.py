"""Worker heartbeats: register the Worker once, then one small status write per beat.

Prefect's `worker_heartbeat` upserts the worker row on every beat. Here registration (create the
Worker, owned by its pool so it goes with the pool; bring its spec up to date) happens once per
`Heartbeat` object, and every beat after that is a single PATCH of `status.lastHeartbeatTime`
through the status subresource. It never writes a WorkPool or WorkQueue.

Registration records in `spec.identity` who the API server takes this process's credentials for
(a SelfSubjectReview, asked once per connection): the worker-restriction policy in
manifests/policy/ lets only that identity change the Worker, beat its heartbeat and move the runs
bound to it.
"""

from __future__ import annotations

import datetime
import weakref
from collections.abc import Sequence
from typing import Any

from workpools.api.base import to_json
from workpools.api.meta import API_VERSION
from workpools.api.worker import POD_NAME_EXTRA, Worker, WorkerIdentity
from workpools.client import errors
from workpools.client.patches import merge_patch
from workpools.client.resources import WORKERS, WORKPOOLS
from workpools.client.transport import Transport
from workpools.clock import utc_now

FIELD_MANAGER = "workpools-worker"


_identities: weakref.WeakKeyDictionary[Transport, WorkerIdentity] = weakref.WeakKeyDictionary()
"""A connection's credentials do not change who they are: one SelfSubjectReview per Transport."""


async def identity(transport: Transport) -> WorkerIdentity:
    """Who the API server takes `transport`'s credentials for, as a Worker records it in spec.identity.

    With a pod-bound ServiceAccount token that includes the pod's name, so workers sharing one
    ServiceAccount (replicas of a Deployment) are still told apart.
    """
    if (known := _identities.get(transport)) is None:
        user = await transport.who_am_i()
        pods = (user.get("extra") or {}).get(POD_NAME_EXTRA) or []
        known = _identities[transport] = WorkerIdentity(username=user["username"], pod_name=pods[0] if pods else None)
    return known


def _describe(who: WorkerIdentity) -> str:
    return who.username + (f" (pod {who.pod_name})" if who.pod_name else "")


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
        stamp = (now or utc_now()).isoformat().replace("+00:00", "Z")
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
        """Create the Worker if it is missing and make its spec match this heartbeat's.

        Raises `Forbidden` when the Worker was registered by another identity: only that one may
        use it (delete the Worker, or choose another name).
        """
        me = await identity(self._transport)
        try:
            current = await self._transport.get(WORKERS, self.namespace, self.name)
        except errors.NotFound:
            current = await self._create(me)
        recorded = current.get("spec", {}).get("identity")
        if recorded is not None and recorded != to_json(me):
            raise errors.Forbidden(
                f"Worker {self.name} was registered by {_describe(WorkerIdentity.model_validate(recorded))}, "
                f"and this process is {_describe(me)}: only the identity that registered a Worker may use it; "
                "choose another worker name, or delete the Worker",
                kind="Worker",
                namespace=self.namespace,
                name=self.name,
            )
        # A heartbeat without an interval keeps the one recorded (Prefect sets it only when given);
        # an omitted limit or queue list means "none" and is written as such.
        managed = {k for k, v in self.spec.items() if v is not None or k != "heartbeatIntervalSeconds"}
        wanted = {k: v for k, v in self.spec.items() if k in managed and v is not None}
        have = {k: v for k, v in current.get("spec", {}).items() if k in managed}
        if recorded is None:  # a Worker from before identities: claim it (the policy lets only admins do that)
            wanted["identity"], have["identity"] = to_json(me), None
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

    async def _create(self, me: WorkerIdentity) -> dict[str, Any]:
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
            "spec": {**{k: v for k, v in self.spec.items() if v is not None}, "identity": to_json(me)},
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
