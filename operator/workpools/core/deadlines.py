"""When time alone will change something in a pool: the next moment its reconciler must run.

Every time-based rule gives its moments here: liveness, a worker's TTL, a run coming due or
Late, a Pending timeout, a Cancelling timeout, a late policy's afterSeconds, a finished run's
TTL (and the deletion budget refilling), a limit window opening or closing, a start-rate token.

Every pass records this moment; one global timer wakes the pools whose moment has passed. So
no object has a timer of its own, and a pool with nothing time-bound is never woken by the clock.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.states import StateType
from workpools.api.workpool import WorkPoolSpec
from workpools.api.workqueue import WorkQueueSpec
from workpools.core import flowcontrol, late, liveness, runs, ttl
from workpools.core.runs import cancelling_deadline
from workpools.core.selection import LATE_AFTER, in_line, scheduled_time
from workpools.core.snapshot import PoolState

TICK = liveness.TICK


def next_deadline(state: PoolState) -> datetime.datetime | None:
    """The earliest future moment at which a worker or run of the pool changes by time alone."""
    return min((t for t in _moments(state) if t > state.now), default=None)


def _moments(state: PoolState) -> Iterator[datetime.datetime]:
    pool = state.pool
    worker_ttl = pool.spec.worker_ttl_after_offline_seconds if pool is not None else None
    yield from liveness.moments(state)
    yield from ttl.moments(state)
    yield from late.moments(state)
    yield from _flow_control_moments(state)
    for worker in state.workers:
        if worker_ttl is not None and (since := liveness.offline_since(worker)) is not None:
            yield since + datetime.timedelta(seconds=worker_ttl)  # Offline long enough to delete
    timeout = pool.spec.pending_timeout_seconds if pool is not None else None
    for run in state.runs:
        if pool is not None and (cancelling := cancelling_deadline(run, pool.spec.cancelling_timeout_seconds)):
            yield cancelling + TICK  # → Cancelled, if its worker is alive and was told
        # A new run too: its first write may still wait in the bookkeeping lane (controllers/writers.py).
        if run.status.state not in (None, StateType.SCHEDULED, StateType.PENDING):
            continue
        when = scheduled_time(run)
        yield when + LATE_AFTER + TICK  # → Late (a Pending run requeued after this is Late at once)
        if in_line(run):
            yield when + TICK  # NotYetScheduled → admissible
        elif timeout is not None and run.status.slot is not None:
            yield run.status.slot.acquired_at + datetime.timedelta(seconds=timeout) + TICK


def _flow_control_moments(state: PoolState) -> Iterator[datetime.datetime]:
    """Each window change of the pool and its queues (the limit in status changes, waiting runs
    may go); and, while due runs wait, the next start-rate token of the pool and of their queues."""
    pool, now = state.pool, state.now
    specs: list[WorkPoolSpec | WorkQueueSpec] = [q.spec for q in state.queues]
    if pool is not None:
        specs.append(pool.spec)
    for spec in specs:
        if (change := flowcontrol.next_window_change(spec.concurrency_limit_schedule, now)) is not None:
            yield change
    if pool is None or not (pool.spec.start_rate or any(q.spec.start_rate for q in state.queues)):
        return
    waiting = {queue_of(r) for r in state.runs if _due(r, now)}
    if not waiting:
        return
    granted = [(queue_of(r), t) for r in (*state.runs, *state.finished) if (t := runs.granted_at(r)) is not None]
    if (rate := pool.spec.start_rate) is not None:
        yield flowcontrol.next_start([t for _, t in granted], rate, now)
    for queue in state.queues:
        if (rate := queue.spec.start_rate) is not None and queue.metadata.name in waiting:
            yield flowcontrol.next_start([t for q, t in granted if q == queue.metadata.name], rate, now)


def _due(run: FlowRun, now: datetime.datetime) -> bool:
    return in_line(run) and scheduled_time(run) <= now
