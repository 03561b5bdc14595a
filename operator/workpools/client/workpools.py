"""Pools, queues and workers through the Kubernetes API, with the calls and the semantics of Prefect's models.

    async with await WorkpoolsClient.connect(namespace="team-a") as client:
        pools = await client.read_work_pools(types=["process"], limit=10)
        queues = await client.read_work_queues("etl")
        online = await client.read_workers("etl", phase="Online")
        await client.heartbeat("etl", "worker-1", interval=10)

Every call works in one namespace and returns the `workpools.api` models. Listing is paginated
with continue tokens and filtered by the API server where it can be (a single pool name, the
pool of queues and workers); the rest of Prefect's filters, its ordering and offset/limit are
applied here. Failures are `workpools.client.errors`: a missing object is `NotFound` and a queue
or worker call naming a missing pool is `PoolNotFound`, both carrying the kind and name they are
about.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from workpools.api.phases import WorkerPhase
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.client import errors
from workpools.client.heartbeats import Heartbeat
from workpools.client.resources import WORKERS, WORKPOOLS, WORKQUEUES
from workpools.client.transport import ResourceType, Transport
from workpools.core.priorities import bulk_update

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FIELD_MANAGER",
    "PriorityPlan",
    "WorkpoolsClient",
    "plan_priorities",
    "queue_order",
    "worker_order",
]

FIELD_MANAGER = "workpools-cli"
"""Field manager of the spec writes a user asks for, so managedFields tell them from GitOps applies."""

DEFAULT_PAGE_SIZE = 500
"""Objects per LIST page: keeps every response small however many objects a namespace holds."""

T = TypeVar("T")


class WorkpoolsClient:
    """Prefect's calls for pools, queues and workers, and its bulk priority update, in one namespace.

    Owns its transport: `close()` (or leaving `async with`) closes it.
    """

    def __init__(self, transport: Transport, namespace: str | None = None, *, page_size: int = DEFAULT_PAGE_SIZE):
        self._transport = transport
        self.namespace = namespace or transport.namespace
        self.page_size = page_size
        self._heartbeats: dict[str, Heartbeat] = {}
        """One `Heartbeat` per worker name: after the first call, each heartbeat is a single write."""

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        namespace: str | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> WorkpoolsClient:
        """Connect like kubectl (see `Transport.connect`); `namespace` defaults to the context's."""
        return cls(await Transport.connect(kubeconfig, context), namespace, page_size=page_size)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> WorkpoolsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- pools ---------------------------------------------------------------------------------

    async def read_work_pool(self, name: str) -> WorkPool:
        """The pool called `name`; `NotFound` if there is none."""
        return WorkPool.model_validate(await self._transport.get(WORKPOOLS, self.namespace, name))

    async def read_work_pool_by_name(self, name: str) -> WorkPool:
        """Prefect's `read_work_pool_by_name`: `read_work_pool` (objects here are named, not numbered)."""
        return await self.read_work_pool(name)

    async def read_work_pools(
        self,
        names: Collection[str] | None = None,
        types: Collection[str] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[WorkPool]:
        """Pools ordered by name, filtered like Prefect: None matches all, an empty collection none."""
        return paged(await self._pools(names, types), offset, limit)

    async def count_work_pools(self, names: Collection[str] | None = None, types: Collection[str] | None = None) -> int:
        return len(await self._pools(names, types))

    # -- queues --------------------------------------------------------------------------------

    async def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        """Queue `name` of `pool`: `PoolNotFound` without the pool, `NotFound` if the queue is not in it."""
        await self._require_pool(pool)
        queue = WorkQueue.model_validate(await self._transport.get(WORKQUEUES, self.namespace, name))
        if queue.spec.work_pool != pool:
            raise self._not_in_pool(WORKQUEUES, name, pool)
        return queue

    async def read_work_queue_by_name(self, pool: str, name: str) -> WorkQueue:
        """Prefect's `read_work_queue_by_name(work_pool_name, work_queue_name)`: `read_work_queue`."""
        return await self.read_work_queue(pool, name)

    async def read_work_queues(
        self, pool: str, name_prefix: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[WorkQueue]:
        """The pool's queues in admission order (`queue_order`); the prefix matches case-insensitively."""
        queues = await self._queues(pool)
        if name_prefix is not None:
            prefix = name_prefix.lower()
            queues = [q for q in queues if q.metadata.name.lower().startswith(prefix)]
        return paged(queues, offset, limit)

    async def count_work_queues(self, pool: str) -> int:
        return len(await self._queues(pool))

    async def bulk_update_work_queue_priorities(self, pool: str, priorities: Mapping[str, int]) -> dict[str, int]:
        """Prefect's priority rebalance as a user action: rewrites `spec.priority` of the queues it moves.

        Every target holds and colliding queues are pushed down (`core.priorities.bulk_update`);
        targets naming no queue of the pool are ignored. Duplicate target values raise
        `DuplicatePriorityError`, and values below 1 `ValueError`, before anything is written.
        Returns the pool's new priorities. The writes are merge patches under `FIELD_MANAGER`, one
        queue at a time: a failure part-way leaves the earlier ones applied, and a GitOps tool
        that owns these specs will report the drift (that is the point of an explicit action).
        """
        plan = plan_priorities(await self._queues(pool), priorities)
        for name, priority in plan.writes:
            await self._transport.patch(
                WORKQUEUES, self.namespace, name, {"spec": {"priority": priority}}, field_manager=FIELD_MANAGER
            )
        return plan.priorities

    # -- workers -------------------------------------------------------------------------------

    async def read_workers(
        self,
        pool: str,
        *,
        phase: WorkerPhase | str | None = None,
        heartbeat_after: datetime.datetime | None = None,
        heartbeat_before: datetime.datetime | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Worker]:
        """The pool's workers, newest heartbeat first (`worker_order`); `PoolNotFound` without the pool.

        Filters as Prefect's `WorkerFilter`, on what is stored: `phase` matches `status.phase` as
        the operator last wrote it ("Online"/"Offline"; a worker it has not seen yet has none and
        matches neither), and the heartbeat bounds are inclusive and exclude workers that never
        heartbeat. The bounds must be timezone-aware.
        """
        wanted = None if phase is None else WorkerPhase(phase)
        after = timezone_aware(heartbeat_after, "heartbeat_after")
        before = timezone_aware(heartbeat_before, "heartbeat_before")
        await self._require_pool(pool)
        workers = [
            worker
            async for body in self._transport.list_all(
                WORKERS, self.namespace, field_selector=f"spec.workPool={pool}", page_size=self.page_size
            )
            if _matches(worker := Worker.model_validate(body), wanted, after, before)
        ]
        return paged(sorted(workers, key=worker_order), offset, limit)

    async def read_worker_by_name(self, pool: str, name: str) -> Worker:
        """Worker `name` of `pool`: `PoolNotFound` without the pool, `NotFound` if the worker is not in it."""
        await self._require_pool(pool)
        worker = Worker.model_validate(await self._transport.get(WORKERS, self.namespace, name))
        if worker.spec.work_pool != pool:
            raise self._not_in_pool(WORKERS, name, pool)
        return worker

    async def delete_worker(self, pool: str, name: str) -> None:
        """Delete worker `name` of `pool` (errors as `read_worker_by_name`).

        Only the worker that was read is deleted: one re-created meanwhile raises `Conflict`.
        A process still heartbeating under that name registers it again with its next beat.
        """
        worker = await self.read_worker_by_name(pool, name)
        await self._transport.delete(WORKERS, self.namespace, name, uid=worker.metadata.uid)
        self._heartbeats.pop(name, None)

    async def heartbeat(
        self,
        pool: str,
        worker_name: str,
        interval: int | None = None,
        queues: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> Worker:
        """Prefect's `worker_heartbeat`: record that `worker_name` of `pool` is alive now.

        The first call for a name registers the Worker (created owned by its pool, spec brought
        to these settings: `interval` seconds between beats, the `queues` it serves (None or
        empty: all), its run `limit`; None leaves a setting unset); every later call with the same
        settings is one PATCH of `status.lastHeartbeatTime`, and never writes the pool or its
        queues. Different settings register again. `PoolNotFound` when the pool does not exist;
        a bad interval or limit is refused by the API server (`Invalid`).
        """
        wanted = Heartbeat(
            self._transport,
            namespace=self.namespace,
            pool=pool,
            name=worker_name,
            interval=interval,
            queues=queues or (),
            limit=limit,
        )
        current = self._heartbeats.get(worker_name)
        if current is None or current.spec != wanted.spec:
            self._heartbeats[worker_name] = current = wanted
        return await current.beat()

    async def worker_heartbeat(self, pool: str, worker_name: str, interval: int | None = None) -> Worker:
        """Prefect's `worker_heartbeat(work_pool, worker_name, heartbeat_interval_seconds)`: `heartbeat`."""
        return await self.heartbeat(pool, worker_name, interval)

    # -- helpers -------------------------------------------------------------------------------

    async def _pools(self, names: Collection[str] | None, types: Collection[str] | None) -> list[WorkPool]:
        wanted = None if names is None else set(names)
        # Field selectors match one value, so the server filters only a single name.
        selector = f"metadata.name={next(iter(wanted))}" if wanted is not None and len(wanted) == 1 else None
        pools = [
            WorkPool.model_validate(body)
            async for body in self._transport.list_all(
                WORKPOOLS, self.namespace, field_selector=selector, page_size=self.page_size
            )
        ]
        return sorted(
            (
                p
                for p in pools
                if (wanted is None or p.metadata.name in wanted) and (types is None or p.spec.type in types)
            ),
            key=lambda p: p.metadata.name,
        )

    async def _queues(self, pool: str) -> list[WorkQueue]:
        """All queues of `pool`, in `queue_order`; the API server selects them by `spec.workPool`."""
        await self._require_pool(pool)
        queues = [
            WorkQueue.model_validate(body)
            async for body in self._transport.list_all(
                WORKQUEUES, self.namespace, field_selector=f"spec.workPool={pool}", page_size=self.page_size
            )
        ]
        return sorted(queues, key=queue_order)

    async def _require_pool(self, pool: str) -> None:
        try:
            await self._transport.get(WORKPOOLS, self.namespace, pool)
        except errors.NotFound as error:
            raise errors.PoolNotFound.from_not_found(error) from error

    def _not_in_pool(self, resource: ResourceType, name: str, pool: str) -> errors.NotFound:
        return errors.NotFound(
            f"{resource.kind} {name!r} not found in WorkPool {pool!r}",
            kind=resource.kind,
            namespace=self.namespace,
            name=name,
            status=404,
        )


def queue_order(queue: WorkQueue) -> tuple[bool, int, str]:
    """Prefect's queue order: effective priority (lower first), then name; queues not resolved yet last."""
    effective = queue.status.effective_priority
    return (effective is None, effective or 0, queue.metadata.name)


def worker_order(worker: Worker) -> tuple[bool, float, str]:
    """Prefect's worker order: newest heartbeat first; workers that never heartbeat last; then by name."""
    last = worker.status.last_heartbeat_time
    return (last is None, -last.timestamp() if last is not None else 0.0, worker.metadata.name)


def timezone_aware(moment: datetime.datetime | None, argument: str) -> datetime.datetime | None:
    """`moment` itself; a naive one is refused, since comparing it with stored UTC times would raise later."""
    if moment is not None and moment.utcoffset() is None:
        raise ValueError(f"{argument} must be timezone-aware (e.g. datetime.now(UTC)), got {moment!r}")
    return moment


def _matches(
    worker: Worker,
    phase: WorkerPhase | None,
    after: datetime.datetime | None,
    before: datetime.datetime | None,
) -> bool:
    """Prefect's `WorkerFilter` on one worker: stored phase, inclusive heartbeat bounds."""
    if phase is not None and worker.status.phase is not phase:
        return False
    if after is None and before is None:
        return True
    last = worker.status.last_heartbeat_time
    return last is not None and (after is None or last >= after) and (before is None or last <= before)


@dataclass(frozen=True)
class PriorityPlan:
    """A bulk priority update worked out before anything is written."""

    priorities: dict[str, int]
    """Every placed queue's priority once the writes are done."""
    writes: list[tuple[str, int]]
    """The `spec.priority` writes that get there, in the order to make them."""


def plan_priorities(queues: Iterable[WorkQueue], targets: Mapping[str, int]) -> PriorityPlan:
    """Prefect's bulk update over the priorities the queues hold now, and the spec writes it takes.

    A queue holds its effective priority, or its spec until the operator has resolved it; a
    queue with neither (just created without a priority) joins only as a target. A queue is
    written when its new value differs from what it requests (its spec, else the value the
    operator assigned it), so untouched queues keep their specs. Afterwards the requests are
    unique, so the operator's effective priorities equal them (DESIGN §3), except after
    Prefect's latent multi-target defect, kept faithfully (see `bulk_update`): then the operator
    resolves the duplicate as for any two queues asking for one value.

    Writes go from the highest value down: queues pushed down free their old values before the
    queues that take those values ask for them, so the operator sees few passing collisions.
    """
    current: dict[str, int] = {}
    requests: dict[str, int | None] = {}
    for queue in queues:  # priorities are at least 1, so `or` passes over None only
        name = queue.metadata.name
        held = queue.status.effective_priority or queue.spec.priority or targets.get(name)
        if held is not None:
            current[name] = held
            requests[name] = queue.spec.priority or queue.status.requested_priority or queue.status.effective_priority
    priorities = bulk_update(current, targets)
    changed = [(name, value) for name, value in priorities.items() if value != requests[name]]
    return PriorityPlan(priorities, sorted(changed, key=lambda write: (-write[1], write[0])))


def paged(items: Sequence[T], offset: int, limit: int | None) -> list[T]:
    """Prefect's offset and limit (limit None: no limit)."""
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError(f"offset and limit must not be negative (offset={offset}, limit={limit})")
    return list(items[offset : None if limit is None else offset + limit])
