"""The per-pool reconciler: one pass makes the pool's children and statuses what `core/` says.

It runs serialised per pool (`cache.wakeups`), reads only the store, and writes only differences:
a pass over an unchanged pool makes no API call at all.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.meta import API_VERSION, ObjectKey, default_queue_name
from workpools.api.phases import WorkerPhase
from workpools.api.worker import Worker, WorkerStatus
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.client import errors
from workpools.client.resources import FLOWRUNS, WORKERS, WORKPOOLS, WORKQUEUES
from workpools.controllers import metrics
from workpools.controllers.events import FIELD_MANAGER, post_event
from workpools.controllers.runtime import Runtime
from workpools.controllers.writers import hold_delay, write_status
from workpools.core import liveness, runs, ttl
from workpools.core.deadlines import next_deadline
from workpools.core.plan import PoolPlan, plan_pool
from workpools.core.selection import Place, place, scheduled_time
from workpools.core.snapshot import PoolState
from workpools.core.statuses import Event, EventType

logger = logging.getLogger(__name__)


async def reconcile_pool(rt: Runtime, key: ObjectKey) -> None:
    """One pass for one pool: decide on the store as it is, send the writes, and return.

    First, the outcome of earlier writes that is still unknown is read back. Then either a grant
    pass (open slots filled from the heads of the queues' lines, `_grant_line_heads`), when the
    pool's next full pass is not due yet (cache/wakeups.Pacing), or a full pass: silent workers
    are read directly, then four steps, each deciding on the store with the previous step's
    writes in flight (controllers/writers.py): (1) run lifecycle (recover, cancel, retry),
    (2) admission: grants go out at once, counted as made while on the wire, and the reasons runs
    wait go to the bookkeeping lane, (3) statuses of the pool, its queues and workers, and their
    events, (4) deletion of finished runs past their TTL. A pass never waits for a run write: the
    next one decides with it in flight, and its outcome wakes the pool again when it changes
    anything.
    """
    await rt.run_writer.read_back(key)
    if not rt.pacing.full_due(key) and _grant_line_heads(rt, key):
        rt.pacing.defer(key)
        return
    deciding = _Stopwatch()
    silent = await _read_silent_workers(rt, key)
    # Between the steps the loop breathes: a freed slot is refilled then (`grant_between`), not
    # after the whole pass; each step decides on the state as it finds it.
    with deciding.step("lifecycle"):
        for change in runs.lifecycle_changes(_state(rt, key, silent)):
            rt.run_writer.launch(key, change)
    await _breathe()
    with deciding.step("admission"):
        state = _state(rt, key, silent)
        lines = _lines(rt, key, state)
        for change in runs.admission_changes(state, lines):
            if change.granted_to is not None:
                rt.run_writer.launch(key, change)
            else:
                rt.lane.submit_hold(change.run, key, change.patch, _hold_delay(rt, key, lines, change.run))
    await _breathe()
    with deciding.step("statuses"):
        state = _state(rt, key, silent)
        plan = _plan_statuses(rt, key, state)
    await _write_statuses(rt, key, state, plan)
    await _breathe()
    await _delete_finished_runs(rt, key, silent)
    with deciding.step("deadline"):  # on the pool as this pass leaves it (runs deleted, the deletion budget spent)
        if (deadline := next_deadline(_state(rt, key, silent))) is not None:
            rt.deadlines[key] = deadline
        else:
            rt.deadlines.pop(key, None)
    if rt.store.pools.get(key) is None and not rt.store.runs.of(key):
        rt.pacing.forget(key)  # gone with its runs: nothing left to pace
    else:
        rt.pacing.full_done(key, deciding.seconds)


class _Stopwatch:
    """Seconds spent inside its steps: what a pass spends deciding, its awaits left out."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        with metrics.pass_step(name) as timed:
            yield
        self.seconds += timed.seconds


def _grant_line_heads(rt: Runtime, key: ObjectKey) -> bool:
    """A grant pass: fill the pool's open slots from the heads of its queues' lines, and nothing
    else (the full pass that follows decides the rest). False when heads do not suffice to grant
    (`runs.heads_suffice`): then the pass must be a full one."""
    with metrics.pass_step("grant"):
        holders = _state(rt, key, holders_only=True)
        if not runs.heads_suffice(holders):
            return False
        stored = rt.store.runs.by_key
        for grant in runs.grants_at_heads(
            holders, _lines(rt, key, holders), lambda n: stored.get(ObjectKey(key.namespace, n))
        ):
            rt.run_writer.launch(key, grant)
        return True


def _lines(rt: Runtime, key: ObjectKey, state: PoolState) -> dict[str, list[Place]]:
    """The pool's queue lines (cache/lines.py), by queue name."""
    return {queue.metadata.name: rt.store.lines.line(key, queue.metadata.name) for queue in state.queues}


def _hold_delay(rt: Runtime, key: ObjectKey, lines: dict[str, list[Place]], run: FlowRun) -> float:
    """How long the waiting run's hold write waits (`writers.hold_delay`): by its place in its
    queue's line and that queue's recent grant rate."""
    queue = queue_of(run)
    ahead = bisect.bisect_left(lines.get(queue, []), place(run))
    until_scheduled = (scheduled_time(run) - rt.clock()).total_seconds()
    return hold_delay(ahead, rt.run_writer.grant_rate(key, queue), until_scheduled)


def grant_between(rt: Runtime, key: ObjectKey) -> None:
    """A grant pass while the pool's pass waits (on the API server, or breathing between steps),
    if a slot was freed or a run joined a line meanwhile: any other change waits for the next pass
    (a thousand grants landing during a pass are a thousand wake-ups, and grant nothing)."""
    if rt.store.lines.opened(key) and not rt.run_writer.unknown(key):  # an unknown outcome is read back first
        _grant_line_heads(rt, key)


async def _breathe() -> None:
    await asyncio.sleep(BREATHER_SECONDS)


def _plan_statuses(rt: Runtime, key: ObjectKey, state: PoolState) -> PoolPlan:
    """The pool's, queues' and workers' statuses and their events (core/plan.py), with what changed since the last."""
    changes, deletions = rt.store.take_news(key)
    plan = plan_pool(state, changes=changes, deletions=deletions)
    metrics.record_statuses(key, state, plan.pool_status, plan.queue_statuses)
    return plan


async def _write_statuses(rt: Runtime, key: ObjectKey, state: PoolState, plan: PoolPlan) -> None:
    """Make the pool's, queues' and workers' statuses what `plan` says, and post its events."""
    pool = state.pool
    if pool is not None and plan.create_default_queue:
        await _create_default_queue(rt, pool, recreated=pool.status.default_queue is not None)
    for worker in state.workers:
        if worker.metadata.name in plan.delete_workers:
            await _delete_worker(rt, worker)
    stale = await _write_worker_statuses(rt, key, state, plan)
    if stale:
        # A refused phase write is decided again, but not by the watch when the Worker changed by our
        # own bookkeeping write (its answer is in the store already: its event wakes nothing), and a
        # silence whose reclaim moment has passed sets no deadline: without this, an Offline write
        # refused that way left its runs bound until the Worker changed again (seen in CI).
        asyncio.get_running_loop().call_later(STALE_RETRY_SECONDS, rt.wakeups.wake, key)
    # The pool's workers.online counts phases that landed: after a refused Worker write it waits
    # for the pass that the Worker's newer version wakes, rather than count what did not happen.
    if pool is not None and plan.pool_status is not None and not stale and plan.pool_status != pool.status:
        rt.lane.submit_status(WORKPOOLS, pool, key, plan.pool_status)
    for queue in state.queues:
        if (wanted := plan.queue_statuses.get(queue.metadata.name)) is not None and wanted != queue.status:
            rt.lane.submit_status(WORKQUEUES, queue, key, wanted)
    for obj, event in plan.events:
        if (obj.KIND, obj.metadata.name) not in stale:  # its status will be re-decided, events with it
            rt.events.submit(obj, event)


async def _write_worker_statuses(
    rt: Runtime, pool: ObjectKey, state: PoolState, plan: PoolPlan
) -> set[tuple[str, str]]:
    """Write the workers' phases now, several at once; the rest of their statuses (assigned runs)
    goes to the bookkeeping lane. Returns the workers that changed meanwhile (their events wait).

    Concurrently: with a thousand workers registering, one write after the other at the API
    server's latency under load kept the last ones (and every other decision of the pool) waiting
    for minutes.
    """
    gate = asyncio.Semaphore(WORKER_WRITES_IN_FLIGHT)

    async def write(worker: Worker, wanted: WorkerStatus) -> tuple[str, str] | None:
        # Offline lands only on the version a direct read showed silent (the store holds it); a
        # newer heartbeat makes it fail. Online needs no precondition: no heartbeat can make it wrong.
        going_offline = wanted.phase is WorkerPhase.OFFLINE and worker.status.phase is not WorkerPhase.OFFLINE
        async with gate:
            version = worker.metadata.resource_version if going_offline else None
            landed = await write_status(rt, WORKERS, worker, wanted, version)
        return None if landed else (worker.KIND, worker.metadata.name)

    writes = []
    for worker in state.workers:
        wanted = plan.worker_statuses.get(worker.metadata.name)
        # The plan keeps a worker's status object when nothing changed: nothing to write.
        if wanted is None or wanted is worker.status:
            continue
        if wanted.phase is worker.status.phase:
            rt.lane.submit_status(WORKERS, worker, pool, wanted)
        else:
            writes.append(write(worker, wanted))
    outcomes = await asyncio.gather(*writes, return_exceptions=True)  # a pass never ends with its writes in flight
    _raise_first(outcomes)
    return {stale for stale in outcomes if isinstance(stale, tuple)}


async def _read_silent_workers(rt: Runtime, pool: ObjectKey) -> frozenset[str]:
    """Read each worker that looks silent from the API server itself, not the watch cache.

    Returns those the read confirms (no new heartbeat, or gone). A read that shows a new
    heartbeat updates the store, and with it the worker's sighting: it is alive after all.
    """
    gate = asyncio.Semaphore(READS_IN_FLIGHT)

    async def silent(name: str) -> bool:
        async with gate:
            try:
                body = await rt.transport.get(WORKERS, pool.namespace, name)
            except errors.NotFound:
                return True
        rt.store.put(body)
        return not liveness.alive(rt.store.sightings[pool].get(name), rt.clock())

    suspects = sorted(liveness.judge(_state(rt, pool)).suspects)
    answers = await asyncio.gather(*(silent(name) for name in suspects), return_exceptions=True)
    _raise_first(answers)
    return frozenset(name for name, confirmed in zip(suspects, answers, strict=True) if confirmed is True)


def _raise_first(outcomes: Sequence[object]) -> None:
    """Raise the first exception among `outcomes` of a gather that waited for every one of them."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _state(
    rt: Runtime, key: ObjectKey, confirmed_silent: frozenset[str] = frozenset(), *, holders_only: bool = False
) -> PoolState:
    """The pool as decisions see it: the store, with our writes in flight counted as made.

    `holders_only`: its runs are only those holding a slot (for a grant pass, which adds the heads
    of the lines), read from the store's index instead of a walk over every run.
    """
    store, lane = rt.store, rt.lane
    # A full pass is woken when a busy run it skipped settles; a grant pass needs no such wake-up
    # (the full pass that follows it decides the run): a thousand grants landing woke a thousand.
    busy = frozenset(rt.run_writer.busy(key)) if holders_only else rt.run_writer.skip(key)
    in_flight, finished = _holders(rt, key) if holders_only else _runs(rt, key, busy)
    pool = store.pools.get(key)
    planned_workers = lane.planned_in(WORKERS, key.namespace)
    return PoolState(
        name=key.name,
        pool=None if pool is None else _as_planned(lane.planned(WORKPOOLS, pool), pool),
        queues=_queues(rt, key),
        workers=[_as_planned(planned_workers.get(w.metadata.name), w) for w in store.workers.of(key)],
        runs=in_flight,
        now=rt.clock(),
        sightings=store.sightings_for(key, {r.status.worker for r in in_flight if r.status.worker}),
        confirmed_silent=confirmed_silent,
        finished=finished,
        deletion_budget=rt.deletion_budget,
        busy=busy,
    )


def _runs(rt: Runtime, key: ObjectKey, busy: frozenset[str]) -> tuple[list[FlowRun], list[FlowRun]]:
    """The pool's runs in flight (grants on the wire counted as made), and the finished ones."""
    # Finished runs decide nothing but their own deletion (no slot, no status count): kept apart,
    # every other rule walks only the runs in flight, not the pool's history.
    in_flight: list[FlowRun] = []
    finished: list[FlowRun] = []
    for run in rt.run_writer.as_assumed(key, rt.store.runs.of(key)):
        if runs.in_flight(run):
            in_flight.append(run)
        elif run.metadata.name not in busy:
            finished.append(run)
    return in_flight, finished


def _holders(rt: Runtime, key: ObjectKey) -> tuple[list[FlowRun], list[FlowRun]]:
    """The pool's slot holders (grants in flight counted as made), and no finished run."""
    assumed = rt.run_writer.assumed(key)
    stored = rt.store.runs.by_key
    holding = rt.store.lines.holding(key)
    holders = [assumed.get(name) or stored[ObjectKey(key.namespace, name)] for name in holding]
    holders += [run for name, run in assumed.items() if name not in holding]
    return holders, []


def _queues(rt: Runtime, key: ObjectKey) -> list[WorkQueue]:
    return [_as_planned(rt.lane.planned(WORKQUEUES, q), q) for q in rt.store.queues.of(key)]


def backlog_snapshots(rt: Runtime) -> list[tuple[ObjectKey, PoolState]]:
    """Every pool as admission would see it now, for the admissible backlog (controllers/metrics.py).

    Unlike a pass's `_state`, it changes nothing: no busy run is marked skipped (that would wake
    the pool when it settles) and no worker sighting is pruned or added. Workers are left out
    (the backlog puts a worker of its own in their place), and no run is busy: a grant on the
    wire is in the runs as made, and a run with another write on the wire waits as stored.
    Synchronous on purpose: called on the loop, it is one consistent moment of the store.
    """
    now = rt.clock()
    snapshots = []
    for key, pool in rt.store.pools.items():
        in_flight, finished = _runs(rt, key, frozenset())
        state = PoolState(
            name=key.name,
            pool=_as_planned(rt.lane.planned(WORKPOOLS, pool), pool),
            queues=_queues(rt, key),
            workers=[],
            runs=in_flight,
            now=now,
            finished=finished,
        )
        snapshots.append((key, state))
    return snapshots


R = TypeVar("R", WorkPool, WorkQueue, Worker)


def _as_planned(status: Any, obj: R) -> R:
    """`obj` with the status the bookkeeping lane is about to write (decided already), if any."""
    return obj if status is None else obj.model_copy(update={"status": status})


BREATHER_SECONDS = 0.001
"""How long a full pass lets the loop run between its steps: watch events are taken in, and a freed
slot refilled, within one of its steps rather than after all of them."""

READS_IN_FLIGHT = 16
"""Direct reads and deletions of one pass on the wire at once."""

WORKER_WRITES_IN_FLIGHT = 16
"""Worker phase writes of one pass on the wire at once."""

STALE_RETRY_SECONDS = 1.0
"""A pass whose Worker phase write was refused (changed meanwhile, or gone) is followed by another
this much later: soon, but never a tight loop while the watch has not brought the change yet."""


async def _delete_finished_runs(rt: Runtime, pool: ObjectKey, silent: frozenset[str]) -> None:
    """Delete the runs whose finished-run TTL passed, as many as the shared bucket pays for now.

    Taken from the bucket before the first await, so passes of other pools see it spent. Each
    delete lands only on the version judged: a run changed since is judged again next time.
    """
    with metrics.pass_step("deletions"):
        decided = ttl.deletions(_state(rt, pool, silent))
    rt.deletion_budget = decided.budget
    gate = asyncio.Semaphore(READS_IN_FLIGHT)

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
    _raise_first(outcomes)


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
        await post_event(
            rt,
            pool,
            Event(
                EventType.WARNING,
                "DefaultQueueRecreated",
                f"default queue {manifest['metadata']['name']} was deleted; re-created it",
            ),
        )


async def _delete_worker(rt: Runtime, worker: Worker) -> None:
    """Delete the version judged expired only: one that heartbeat since must stay (Conflict)."""
    meta = worker.metadata
    with contextlib.suppress(errors.NotFound, errors.Conflict):  # gone already, or alive again
        await rt.transport.delete(WORKERS, meta.namespace or "", meta.name, resource_version=meta.resource_version)
