"""Pools and queues through the Kubernetes API, with the calls and the semantics of Prefect's models.

    async with await WorkpoolsClient.connect(namespace="team-a") as client:
        pools = await client.read_work_pools(types=["process"], limit=10)
        queues = await client.read_work_queues("etl")

Every call works in one namespace and returns the `workpools.api` models. Listing is paginated
with continue tokens and filtered by the API server where it can be (a single pool name, a
queue's pool); the rest of Prefect's filters, its ordering and offset/limit are applied here.
Failures are `workpools.client.errors`: a missing object is `NotFound` and a queue call naming
a missing pool is `PoolNotFound`, both carrying the kind and name they are about.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.client import errors
from workpools.client.resources import WORKPOOLS, WORKQUEUES
from workpools.client.transport import Transport
from workpools.core.priorities import bulk_update

__all__ = ["DEFAULT_PAGE_SIZE", "FIELD_MANAGER", "PriorityPlan", "WorkpoolsClient", "plan_priorities", "queue_order"]

FIELD_MANAGER = "workpools-cli"
"""Field manager of the spec writes a user asks for, so managedFields tell them from GitOps applies."""

DEFAULT_PAGE_SIZE = 500
"""Objects per LIST page: keeps every response small however many objects a namespace holds."""

T = TypeVar("T")


class WorkpoolsClient:
    """Prefect's read calls for pools and queues, and its bulk priority update, in one namespace.

    Owns its transport: `close()` (or leaving `async with`) closes it.
    """

    def __init__(self, transport: Transport, namespace: str | None = None, *, page_size: int = DEFAULT_PAGE_SIZE):
        self._transport = transport
        self.namespace = namespace or transport.namespace
        self.page_size = page_size

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

    async def read_work_pools(
        self,
        names: Collection[str] | None = None,
        types: Collection[str] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[WorkPool]:
        """Pools ordered by name, filtered like Prefect: None matches all, an empty collection none."""
        return _window(await self._pools(names, types), offset, limit)

    async def count_work_pools(self, names: Collection[str] | None = None, types: Collection[str] | None = None) -> int:
        return len(await self._pools(names, types))

    # -- queues --------------------------------------------------------------------------------

    async def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        """Queue `name` of `pool`: `PoolNotFound` without the pool, `NotFound` if the queue is not in it."""
        await self._require_pool(pool)
        queue = WorkQueue.model_validate(await self._transport.get(WORKQUEUES, self.namespace, name))
        if queue.spec.work_pool != pool:
            raise errors.NotFound(
                f"WorkQueue {name!r} not found in WorkPool {pool!r}",
                kind=WORKQUEUES.kind,
                namespace=self.namespace,
                name=name,
                status=404,
            )
        return queue

    async def read_work_queues(
        self, pool: str, name_prefix: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[WorkQueue]:
        """The pool's queues in admission order (`queue_order`); the prefix matches case-insensitively."""
        queues = await self._queues(pool)
        if name_prefix is not None:
            prefix = name_prefix.lower()
            queues = [q for q in queues if q.metadata.name.lower().startswith(prefix)]
        return _window(queues, offset, limit)

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
            raise errors.PoolNotFound(
                error.message, kind=error.kind, namespace=error.namespace, name=error.name, status=error.status
            ) from error


def queue_order(queue: WorkQueue) -> tuple[bool, int, str]:
    """Prefect's queue order: effective priority (lower first), then name; queues not resolved yet last."""
    effective = queue.status.effective_priority
    return (effective is None, effective or 0, queue.metadata.name)


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


def _window(items: Sequence[T], offset: int, limit: int | None) -> list[T]:
    """Prefect's offset and limit (limit None: no limit)."""
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError(f"offset and limit must not be negative (offset={offset}, limit={limit})")
    return list(items[offset : None if limit is None else offset + limit])
