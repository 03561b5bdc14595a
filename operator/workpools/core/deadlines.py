"""When time alone will change something in a pool: the next moment its reconciler must run.

Every time-based rule gives its moments here: liveness, a worker's TTL, a run coming due or
Late, a Pending timeout, a Cancelling timeout, a late policy's afterSeconds, a finished run's
TTL (and the deletion budget refilling).

Every pass records this moment; one global timer wakes the pools whose moment has passed. So
no object has a timer of its own, and a pool with nothing time-bound is never woken by the clock.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from workpools.api.states import StateType
from workpools.core import late, liveness, ttl
from workpools.core.runs import cancelling_deadline
from workpools.core.selection import LATE_AFTER, scheduled_time
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
    for worker in state.workers:
        if worker_ttl is not None and (since := liveness.offline_since(worker)) is not None:
            yield since + datetime.timedelta(seconds=worker_ttl)  # Offline long enough to delete
    timeout = pool.spec.pending_timeout_seconds if pool is not None else None
    for run in state.runs:
        if pool is not None and (cancelling := cancelling_deadline(run, pool.spec.cancelling_timeout_seconds)):
            yield cancelling + TICK  # → Cancelled, if its worker is alive and was told
        if run.status.state not in (StateType.SCHEDULED, StateType.PENDING):
            continue
        when = scheduled_time(run)
        yield when + LATE_AFTER + TICK  # → Late (a Pending run requeued after this is Late at once)
        if run.status.state is StateType.SCHEDULED:
            yield when + TICK  # NotYetScheduled → admissible
        elif timeout is not None and run.status.slot is not None:
            yield run.status.slot.acquired_at + datetime.timedelta(seconds=timeout) + TICK
