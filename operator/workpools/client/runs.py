"""FlowRuns through the Kubernetes API: create, read, cancel, slot holders and the admission preview.

    async with await Transport.connect() as transport:
        runs = RunsClient(transport, "team-a")
        run = await runs.create_flow_run("etl", queue="high", parameters={"day": "mon"})
        holders = await runs.get_work_pool_slot_holders("etl", per_queue_limit=10)
        upcoming = await runs.preview("etl", hours=1)
        why = await runs.why_waiting("etl-x7k2p")

The calls carry Prefect's names (`read_flow_runs`, `get_work_pool_slot_holders`,
`count_work_pool_active_slots_bulk`, ...) and return `workpools.api` models. Slot accounting and
the preview are the core's pure functions (`core.slots`, `core.selection`) over what one or two
LISTs return, so the client, the operator and the CLI count and order runs the same way.

`why_waiting` reads one pool whole (the pool, its queues, workers and runs) and asks the admitter's
own rules about one run (`core.waiting`): every rule that holds it, its position, an estimate.

Slot counts here are counted from the runs themselves (the source of truth, one LIST), not read
from `status.slots`, which the operator keeps exact but may be a reconcile behind.

LISTs are narrowed by the API server through the FlowRun's selectable fields (`spec.workPool`,
`spec.workQueue`, `status.state`): slot-holder queries exclude every state that holds no slot, so
they stay small however many finished runs a namespace keeps.
"""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from workpools.api.base import timestamp
from workpools.api.flowcontrol import limit_in_force
from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.meta import API_VERSION, DEFAULT_QUEUE_SUFFIX
from workpools.api.states import SLOT_HOLDING, TERMINAL, StateType, is_slot_holding
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import PRIORITY_MAX, WorkQueue
from workpools.client import errors
from workpools.client.resources import FLOWRUNS, WORKERS, WORKQUEUES
from workpools.client.transport import ResourceType, Transport
from workpools.client.workpools import (
    DEFAULT_PAGE_SIZE,
    FIELD_MANAGER,
    WorkpoolsClient,
    paged,
    queue_order,
    timezone_aware,
)
from workpools.clock import utc_now
from workpools.core import liveness, waiting
from workpools.core.runs import in_flight, run_view
from workpools.core.selection import scheduled_runs
from workpools.core.slots import active_slots_by_pool, active_slots_by_queue, slot_holders
from workpools.core.snapshot import PoolState, PoolView, QueueView, RunView

__all__ = [
    "HOLDER_SELECTOR",
    "PoolSlots",
    "QueueSlots",
    "RunsClient",
    "concurrency_status",
    "run_order",
]

HOLDER_SELECTOR = ",".join(f"status.state!={state.value}" for state in StateType if state not in SLOT_HOLDING)
"""Field selector that leaves only slot holders (and runs the operator has not started yet)."""

M = TypeVar("M", FlowRun, WorkQueue, Worker)

_UNFINISHED_SELECTOR = ",".join(f"status.state!={state.value}" for state in sorted(TERMINAL))
"""Field selector that leaves the runs a preview needs: waiting ones and slot holders."""


class RunsClient:
    """Prefect's flow-run, slot-holder and preview calls for one namespace.

    Shares `transport` with its caller and does not close it (a `WorkpoolsClient` on the same
    transport does).
    """

    def __init__(self, transport: Transport, namespace: str | None = None, *, page_size: int = DEFAULT_PAGE_SIZE):
        self._transport = transport
        self.namespace = namespace or transport.namespace
        self.page_size = page_size
        self._pools = WorkpoolsClient(transport, self.namespace, page_size=page_size)
        """Pool and queue reads (and their errors) come from the pools client, never duplicated here."""

    # -- runs ----------------------------------------------------------------------------------

    async def create_flow_run(
        self,
        pool: str,
        queue: str | None = None,
        *,
        name: str | None = None,
        generate_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        command: str | None = None,
        scheduled_time: datetime.datetime | None = None,
        retries: int = 0,
        retry_delay_seconds: int = 0,
    ) -> FlowRun:
        """Create a FlowRun in `pool` (and `queue`; None: the pool's default queue).

        `name`, else `generate_name`, else a generated `<pool>-xxxxx`. `scheduled_time` (aware)
        defaults to now on the server's clock; `retries` more attempts follow a failed one,
        `retry_delay_seconds` apart. `PoolNotFound` without the pool, `NotFound` when
        `queue` is not a queue of it: the operator would hold such a run forever. Runs are not
        owned by their pool, so deleting a pool never deletes the work it holds.
        """
        if scheduled_time is not None and scheduled_time.utcoffset() is None:
            raise ValueError(f"scheduled_time must be timezone-aware, got {scheduled_time!r}")
        if queue is None:
            await self._read_pool(pool)
        else:
            await self._pools.read_work_queue(pool, queue)
        metadata: dict[str, Any] = {"namespace": self.namespace}
        if name is not None:
            metadata["name"] = name
        else:
            metadata["generateName"] = generate_name or f"{pool}-"
        spec: dict[str, Any] = {"workPool": pool}
        if queue is not None:
            spec["workQueue"] = queue
        if parameters:
            spec["parameters"] = dict(parameters)
        if command is not None:
            spec["command"] = command
        if scheduled_time is not None:
            spec["scheduledTime"] = timestamp(scheduled_time)
        if retries:
            spec["retries"] = retries
        if retry_delay_seconds:
            spec["retryDelaySeconds"] = retry_delay_seconds
        body = {"apiVersion": API_VERSION, "kind": FlowRun.KIND, "metadata": metadata, "spec": spec}
        created = await self._transport.create(FLOWRUNS, self.namespace, body, field_manager=FIELD_MANAGER)
        return FlowRun.model_validate(created)

    async def read_flow_run(self, name: str) -> FlowRun:
        """The run called `name`; `NotFound` if there is none."""
        return FlowRun.model_validate(await self._transport.get(FLOWRUNS, self.namespace, name))

    async def read_flow_runs(
        self,
        pool: str | None = None,
        queue: str | None = None,
        state: StateType | str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[FlowRun]:
        """Runs filtered by pool, queue and state type, newest scheduled time first (`run_order`).

        `queue` matches the queue a run waits in, so a pool's default queue also matches the runs
        that name no queue. Filters are applied by the API server (selectable fields) wherever
        that gives the same answer. An unknown `state` raises `ValueError`.
        """
        wanted = None if state is None else StateType(state)
        selectors = []
        if pool is not None:
            selectors.append(f"spec.workPool={pool}")
        if queue is not None and not queue.endswith(DEFAULT_QUEUE_SUFFIX):
            selectors.append(f"spec.workQueue={queue}")  # a default queue also holds runs naming none
        if wanted is not None:
            selectors.append(f"status.state={wanted.value}")
        runs = [run for run in await self._list(",".join(selectors) or None) if queue is None or queue_of(run) == queue]
        return paged(sorted(runs, key=run_order), offset, limit)

    async def cancel_flow_run(self, name: str) -> FlowRun:
        """Ask for the run to be cancelled: sets `spec.cancel` (and only that field).

        The operator then cancels a Scheduled run at once, or moves an active one to Cancelling
        for its worker to stop. Cancelling a finished run changes nothing. `NotFound` without it.
        """
        body = await self._transport.patch(
            FLOWRUNS, self.namespace, name, {"spec": {"cancel": True}}, field_manager=FIELD_MANAGER
        )
        return FlowRun.model_validate(body)

    # -- slot holders --------------------------------------------------------------------------

    async def get_work_pool_slot_holders(
        self, pool: str, queues: Collection[str] | None = None, per_queue_limit: int | None = None
    ) -> list[FlowRun]:
        """Runs holding a slot of `pool` (Pending, Running, Cancelling), longest held first.

        `queues` restricts to those queue names (None or empty: all); at most `per_queue_limit`
        per queue. `PoolNotFound` without the pool.
        """
        await self._read_pool(pool)
        runs = await self._holders(pool)
        views = slot_holders((run_view(run, pool) for run in runs), queues, per_queue_limit)
        by_name = {run.metadata.name: run for run in runs}
        return [by_name[view.name] for view in views]

    async def count_work_pool_slot_holders(self, pool: str) -> int:
        """How many runs hold a slot of `pool`; `PoolNotFound` without the pool."""
        return sum((await self.count_work_pool_slot_holders_by_queue(pool)).values())

    async def count_work_pool_slot_holders_by_queue(self, pool: str) -> dict[str, int]:
        """Slot holders of `pool` per queue name; queues without holders are absent."""
        await self._read_pool(pool)
        return active_slots_by_queue(run_view(run, pool) for run in await self._holders(pool))

    async def count_work_queue_slot_holders(self, pool: str, queue: str) -> int:
        """How many runs hold a slot of `queue` in `pool`; `PoolNotFound` without the pool.

        The same slot-holding states as every other count here (Pending, Running, Cancelling);
        Prefect's legacy helper of this name is the one place where it counts Cancelling too.
        """
        return (await self.count_work_pool_slot_holders_by_queue(pool)).get(queue, 0)

    async def get_work_queue_slot_holders(self, pool: str, queue: str) -> list[FlowRun]:
        """Runs holding a slot of `queue` in `pool`, longest held first; `PoolNotFound` without the pool.

        A queue that was deleted while its runs still hold slots still has holders: they count
        until they finish.
        """
        return await self.get_work_pool_slot_holders(pool, [queue])

    async def count_work_pool_active_slots(self, pool: str) -> int:
        """Active slots of `pool`: its slot holders, counted now (see the module notes)."""
        return await self.count_work_pool_slot_holders(pool)

    async def count_work_queue_active_slots(self, pool: str, queue: str) -> int:
        """Active slots of `queue` in `pool`."""
        return (await self.count_work_pool_slot_holders_by_queue(pool)).get(queue, 0)

    async def count_work_pool_active_slots_bulk(self, pools: Collection[str] | None = None) -> dict[str, int]:
        """Active slots per pool from one LIST of the namespace's slot holders.

        Every pool in `pools` has an entry (0 when idle, also when it does not exist); None: the
        pools that have holders.
        """
        views = [run_view(run, run.spec.work_pool) for run in await self._list(HOLDER_SELECTOR)]
        counts = active_slots_by_pool(views)
        if pools is None:
            return counts
        return {pool: counts.get(pool, 0) for pool in pools}

    async def count_work_queue_active_slots_bulk(
        self, pool: str, queues: Collection[str] | None = None
    ) -> dict[str, int]:
        """Active slots per queue of `pool` from one LIST of its slot holders (no pool check).

        Every queue in `queues` has an entry (0 when idle); None: the queues that have holders.
        """
        counts = active_slots_by_queue(run_view(run, pool) for run in await self._holders(pool))
        if queues is None:
            return counts
        return {queue: counts.get(queue, 0) for queue in queues}

    async def concurrency_status(self, pool: str, per_queue_limit: int | None = None) -> PoolSlots:
        """Prefect's `/concurrency_status` of one pool: slots per pool and queue, and their holders.

        One GET (the pool), one LIST of its queues, one LIST of its slot holders.
        """
        the_pool = await self._read_pool(pool)
        queues = await self._pools.read_work_queues(pool)
        return concurrency_status(the_pool, queues, await self._holders(pool), per_queue_limit)[0]

    async def concurrency_statuses(self, per_queue_limit: int | None = None) -> list[PoolSlots]:
        """`concurrency_status` of every pool in the namespace, from three LISTs, pools by name."""
        pools = await self._pools.read_work_pools()
        queues = [
            WorkQueue.model_validate(body)
            async for body in self._transport.list_all(WORKQUEUES, self.namespace, page_size=self.page_size)
        ]
        return concurrency_status(pools, queues, await self._list(HOLDER_SELECTOR), per_queue_limit)

    # -- preview -------------------------------------------------------------------------------

    async def get_scheduled_flow_runs(
        self,
        pool: str,
        queues: Collection[str] | None = None,
        *,
        scheduled_before: datetime.datetime | None = None,
        scheduled_after: datetime.datetime | None = None,
        limit: int | None = None,
    ) -> list[RunView]:
        """Prefect's `get_scheduled_flow_runs` for one pool: the runs it would hand out next, in order.

        `core.selection.scheduled_runs` (the admitter's own rule) over the pool's queues (at their
        effective priorities; a queue the operator has not resolved yet at its spec, else last)
        and its unfinished runs: Scheduled runs of unpaused queues (only `queues` when given) of
        an unpaused pool, with `scheduled_after <= scheduledTime <= scheduled_before` (inclusive,
        timezone-aware; None: unbounded), by queue priority then time, capped by the queues' and
        the pool's open slots (at the limits in force: an open window's, as status.slots.limit
        shows) and by `limit`; per-key limits and start rates are not previewed. It reads; nothing
        is admitted. `PoolNotFound` without the pool.
        """
        after = timezone_aware(scheduled_after, "scheduled_after")
        before = timezone_aware(scheduled_before, "scheduled_before")
        the_pool = await self._read_pool(pool)
        pool_queues = await self._pools.read_work_queues(pool)
        runs = await self._list(f"spec.workPool={pool},{_UNFINISHED_SELECTOR}")
        return scheduled_runs(
            PoolView(pool, the_pool.spec.paused, limit_in_force(the_pool.spec, the_pool.status.slots)),
            [queue_view(queue) for queue in pool_queues],
            [run_view(run, pool) for run in runs],
            queue_names=queues,
            scheduled_after=after,
            scheduled_before=before,
            limit=limit,
        )

    async def preview(
        self,
        pool: str,
        hours: float = 1,
        limit: int | None = None,
        *,
        now: datetime.datetime | None = None,
    ) -> list[RunView]:
        """The runs `pool` would hand out next, up to `hours` from now (Late runs included): Prefect's preview.

        `get_scheduled_flow_runs` with `scheduled_before = now + hours`.
        """
        moment = now or utc_now()
        return await self.get_scheduled_flow_runs(
            pool, scheduled_before=moment + datetime.timedelta(hours=hours), limit=limit
        )

    # -- why a run waits -----------------------------------------------------------------------

    async def why_waiting(
        self,
        name: str,
        *,
        window: datetime.timedelta = waiting.DEFAULT_WINDOW,
        now: datetime.datetime | None = None,
    ) -> waiting.Waiting:
        """Why run `name` waits, and when it may start: `core.waiting.why_waiting` over its pool as
        the admitter sees it. Computed on read; nothing is written. `NotFound` without the run.

        One GET (the run), then at once: its pool (gone: the run says PoolNotFound), and LISTs of
        the pool's queues, Workers and runs, finished ones included (their grant times make the
        rate, and count against start rates as they do for the operator). A worker counts as
        Online while its last heartbeat is at most 3 × its interval old on this machine's clock
        (`liveness.stamped_sightings`); the operator judges on its own sightings, so the two may
        differ for about a second around that moment.
        """
        if window <= datetime.timedelta(0):
            raise ValueError(f"window must be positive, got {window}")
        run = await self.read_flow_run(name)
        pool = run.spec.work_pool
        selector = f"spec.workPool={pool}"
        the_pool, queues, workers, runs = await asyncio.gather(
            self._pool_if_any(pool),
            self._all(WORKQUEUES, WorkQueue, selector),
            self._all(WORKERS, Worker, selector),
            self._list(selector),
        )
        if all(r.metadata.name != name for r in runs):  # deleted in between: as first read
            runs.append(run)
        moment = now or utc_now()
        state = PoolState(
            name=pool,
            pool=the_pool,
            queues=queues,
            workers=workers,
            runs=[r for r in runs if in_flight(r)],
            now=moment,
            sightings=liveness.stamped_sightings(workers, moment),
            finished=[r for r in runs if not in_flight(r)],
        )
        return waiting.why_waiting(state, name, window=window)

    # -- helpers -------------------------------------------------------------------------------

    async def _pool_if_any(self, pool: str) -> WorkPool | None:
        try:
            return await self._pools.read_work_pool(pool)
        except errors.NotFound:
            return None

    async def _all(self, resource: ResourceType, model: type[M], field_selector: str | None) -> list[M]:
        return [
            model.model_validate(body)
            async for body in self._transport.list_all(
                resource, self.namespace, field_selector=field_selector, page_size=self.page_size
            )
        ]

    async def _list(self, field_selector: str | None) -> list[FlowRun]:
        return await self._all(FLOWRUNS, FlowRun, field_selector)

    async def _holders(self, pool: str) -> list[FlowRun]:
        """The pool's slot holders (the server drops the other states; runs not started yet are dropped here)."""
        runs = await self._list(f"spec.workPool={pool},{HOLDER_SELECTOR}")
        return [run for run in runs if is_slot_holding(run.status.state)]

    async def _read_pool(self, pool: str) -> WorkPool:
        try:
            return await self._pools.read_work_pool(pool)
        except errors.NotFound as missing:
            raise errors.PoolNotFound.from_not_found(missing) from missing


# -- views -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSlots:
    """One queue's slots and the runs holding them."""

    name: str
    priority: int | None
    """Effective priority; None for a queue that no longer exists (its runs still hold slots)."""
    active: int
    limit: int | None
    paused: bool
    holders: list[FlowRun]
    """Longest held first, at most the `per_queue_limit` asked for; `active` counts them all."""
    exists: bool = True


@dataclass(frozen=True)
class PoolSlots:
    """A pool's slots, its queues' slots (in admission order) and their holders."""

    pool: WorkPool
    active: int
    limit: int | None
    queues: list[QueueSlots]

    @property
    def name(self) -> str:
        return self.pool.metadata.name


def concurrency_status(
    pools: WorkPool | Iterable[WorkPool],
    queues: Iterable[WorkQueue],
    holders: Iterable[FlowRun],
    per_queue_limit: int | None = None,
) -> list[PoolSlots]:
    """Group queues and slot-holding runs under their pools (pure; `holders` may hold other runs).

    Queues come in admission order; queues that are gone but still have holders come last.
    """
    pool_list = [pools] if isinstance(pools, WorkPool) else list(pools)
    runs_by_pool: dict[str, list[FlowRun]] = {}
    for run in holders:
        if is_slot_holding(run.status.state):
            runs_by_pool.setdefault(run.spec.work_pool, []).append(run)
    queues_by_pool: dict[str, list[WorkQueue]] = {}
    for queue in queues:
        queues_by_pool.setdefault(queue.spec.work_pool, []).append(queue)
    result = []
    for pool in pool_list:
        name = pool.metadata.name
        runs = runs_by_pool.get(name, [])
        by_name = {run.metadata.name: run for run in runs}
        views = [run_view(run, name) for run in runs]
        counts = Counter(view.queue for view in views)
        shown = slot_holders(views, None, per_queue_limit)
        held: dict[str, list[FlowRun]] = {}
        for view in shown:
            held.setdefault(view.queue, []).append(by_name[view.name])
        rows = [
            QueueSlots(
                name=queue.metadata.name,
                priority=queue.status.effective_priority,
                active=counts.get(queue.metadata.name, 0),
                limit=limit_in_force(queue.spec, queue.status.slots),
                paused=queue.spec.paused,
                holders=held.get(queue.metadata.name, []),
            )
            for queue in sorted(queues_by_pool.get(name, []), key=queue_order)
        ]
        known = {row.name for row in rows}
        rows += [
            QueueSlots(
                name=gone,
                priority=None,
                active=counts[gone],
                limit=None,
                paused=False,
                holders=held.get(gone, []),
                exists=False,
            )
            for gone in sorted(counts.keys() - known)
        ]
        result.append(PoolSlots(pool, len(views), limit_in_force(pool.spec, pool.status.slots), rows))
    return result


def queue_view(queue: WorkQueue) -> QueueView:
    """A queue as the preview sees it: at its effective priority, else its spec, else last."""
    priority = queue.status.effective_priority or queue.spec.priority or PRIORITY_MAX + 1
    return QueueView(
        queue.metadata.name,
        queue.spec.work_pool,
        queue.spec.paused,
        limit_in_force(queue.spec, queue.status.slots),
        priority,
    )


def run_order(run: FlowRun) -> tuple[float, str]:
    """Newest expected start first (like `prefect flow-run ls`), then by name."""
    when = run.status.scheduled_time or run.spec.scheduled_time or run.metadata.creation_timestamp
    return (-when.timestamp() if when is not None else 0.0, run.metadata.name)
