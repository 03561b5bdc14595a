"""Admission: which Scheduled runs get a slot now, on which worker; and why the others wait.

One decision per pool, over a snapshot, serialised by the caller. Runs are walked in admission
order (queue effective priority, then scheduled time) and each grant is charged at once to the
pool's and queue's open slots and to the worker's room, so the second grant of a pass sees the
first: a limit can never be exceeded by one pass. A run that cannot be bound (no worker serves
its queue) does not block the runs behind it: its slot stays free for them (best effort).

A waiting run's reason names what would have to change for it to be admitted first: the queue
limit, then a worker with room, then the pool limit. `PoolLimitReached` therefore means a worker
would take the run, so no run behind it in admission order was granted.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from workpools.api.states import SLOT_HOLDING, StateType
from workpools.core.selection import admission_order
from workpools.core.slots import Slots
from workpools.core.snapshot import PoolView, QueueView, RunView, WorkerView


class HoldReason(StrEnum):
    """Why a Scheduled run is not admitted: the `Admitted=False` condition's reason."""

    POOL_NOT_FOUND = "PoolNotFound"
    POOL_PAUSED = "PoolPaused"
    QUEUE_NOT_FOUND = "QueueNotFound"
    QUEUE_PAUSED = "QueuePaused"
    NOT_YET_SCHEDULED = "NotYetScheduled"
    POOL_LIMIT_REACHED = "PoolLimitReached"
    QUEUE_LIMIT_REACHED = "QueueLimitReached"
    NO_ONLINE_WORKER = "NoOnlineWorker"


@dataclass(frozen=True, slots=True)
class Grant:
    run: RunView
    worker: str


@dataclass(frozen=True, slots=True)
class Hold:
    run: RunView
    reason: HoldReason
    message: str  # stable for a given reason and spec, so the condition is rewritten only on real change


@dataclass(frozen=True, slots=True)
class Admission:
    grants: list[Grant]
    holds: list[Hold]


def admit(
    pool_name: str,
    pool: PoolView | None,
    queues: Sequence[QueueView],
    runs: Sequence[RunView],
    workers: Sequence[WorkerView],
    *,
    now: datetime.datetime,
) -> Admission:
    scheduled = [r for r in runs if r.state is StateType.SCHEDULED]
    if pool is None:
        return Admission([], [Hold(r, HoldReason.POOL_NOT_FOUND, f"WorkPool {pool_name} not found") for r in scheduled])
    if pool.paused:
        return Admission([], [Hold(r, HoldReason.POOL_PAUSED, f"WorkPool {pool_name} is paused") for r in scheduled])

    by_name = {q.name: q for q in queues}
    holds: list[Hold] = []
    ready: list[RunView] = []
    for run in scheduled:
        held = _gate(run, by_name.get(run.queue), pool_name, now)
        if held is None:
            ready.append(run)
        else:
            holds.append(held)

    holding = [r for r in runs if r.state in SLOT_HOLDING]
    pool_open = Slots(len(holding), pool.concurrency_limit).open
    active = Counter(r.queue for r in holding)
    queue_open = {q.name: Slots(active[q.name], q.concurrency_limit).open for q in queues}
    assigned = Counter(r.worker for r in holding if r.worker)
    grants: list[Grant] = []
    waiting: list[RunView] = []
    for run in sorted(ready, key=lambda r: admission_order(r, by_name[r.queue])):
        worker = None
        if queue_open[run.queue] != 0 and pool_open != 0:
            worker = pick_worker(workers, run.queue, assigned)
        if worker is None:
            waiting.append(run)
            continue
        grants.append(Grant(run, worker.name))
        assigned[worker.name] += 1
        if pool_open is not None:
            pool_open -= 1
        if (left := queue_open[run.queue]) is not None:
            queue_open[run.queue] = left - 1
    # Reasons are judged against the slots as the pass leaves them, so the next pass over an
    # unchanged pool gives the same reasons (and writes nothing).
    holds += [
        _why_waiting(
            run,
            by_name[run.queue],
            pool_name,
            pool,
            queue_open=queue_open[run.queue],
            workers=workers,
            assigned=assigned,
        )
        for run in waiting
    ]
    return Admission(grants, holds)


def _why_waiting(
    run: RunView,
    queue: QueueView,
    pool_name: str,
    pool: PoolView,
    *,
    queue_open: int | None,
    workers: Sequence[WorkerView],
    assigned: Counter[str],
) -> Hold:
    """A ready run that got nothing: the queue first (the narrower limit), then workers, then the pool.

    Workers before the pool: a run nobody can take lets lower runs have the pool's slots (best
    effort), and a bigger pool would not admit it, so the pool limit would not be the true reason.
    """
    if queue_open == 0:
        return Hold(
            run, HoldReason.QUEUE_LIMIT_REACHED, f"queue {run.queue} has no open slot (limit {queue.concurrency_limit})"
        )
    if pick_worker(workers, run.queue, assigned) is None:
        return Hold(run, HoldReason.NO_ONLINE_WORKER, f"no online worker with room serves queue {run.queue}")
    # Queue open and a worker with room after the pass: both were so when this run's turn came
    # (they only shrink during a pass), so the pool was full then and is now.
    return Hold(
        run, HoldReason.POOL_LIMIT_REACHED, f"pool {pool_name} has no open slot (limit {pool.concurrency_limit})"
    )


def _gate(run: RunView, queue: QueueView | None, pool_name: str, now: datetime.datetime) -> Hold | None:
    """Why a Scheduled run cannot be considered at all yet (slots and workers aside)."""
    if queue is None:
        return Hold(run, HoldReason.QUEUE_NOT_FOUND, f"WorkQueue {run.queue} not found in pool {pool_name}")
    if queue.paused:
        return Hold(run, HoldReason.QUEUE_PAUSED, f"WorkQueue {run.queue} is paused")
    if run.scheduled_time > now:
        return Hold(run, HoldReason.NOT_YET_SCHEDULED, "scheduled for later")
    return None


def pick_worker(workers: Sequence[WorkerView], queue: str, assigned: Counter[str]) -> WorkerView | None:
    """Like the scheduler picking a node: an Online, non-draining worker serving the queue with
    room under its own limit; the least loaded first (then by name, for determinism)."""
    fits = [
        w
        for w in workers
        if w.online and not w.draining and w.serves(queue) and (w.limit is None or assigned[w.name] < w.limit)
    ]
    return min(fits, key=lambda w: (assigned[w.name], w.name), default=None)
