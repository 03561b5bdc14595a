"""Which Scheduled runs a pool would hand out next: Prefect's `get_scheduled_flow_runs`.

The admitter grants from this list and the client shows it as a preview, so both read the same
order (DESIGN §3). Deterministic on purpose: ties that Prefect leaves to the database are broken
by creation time, then name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from workpools.api.flowrun import FlowRun
from workpools.api.states import StateType
from workpools.core.slots import Slots, active_slots_by_queue, pool_slots
from workpools.core.snapshot import PoolView, QueueView, RunView

__all__ = [
    "LATE_AFTER",
    "Place",
    "admission_order",
    "in_line",
    "late",
    "overdue",
    "place",
    "scheduled_runs",
    "scheduled_time",
]

LATE_AFTER = timedelta(seconds=15)
"""How far past `scheduledTime` a Scheduled run shows `stateName: Late` (Prefect's default)."""


def scheduled_runs(
    pool: PoolView,
    queues: Sequence[QueueView],
    runs: Sequence[RunView],
    *,
    queue_names: Collection[str] | None = None,
    scheduled_after: datetime | None = None,
    scheduled_before: datetime | None = None,
    limit: int | None = None,
) -> list[RunView]:
    """The pool's Scheduled runs in the order they would be admitted, within its open slots.

    Recipe, as Prefect's query: (1) a paused pool yields nothing; (2) candidates are Scheduled
    runs of the pool's unpaused queues (restricted to `queue_names`; None or empty means all,
    unknown names match nothing) with `scheduled_after <= scheduledTime <= scheduled_before`;
    (3) each queue keeps its earliest candidates up to its open slots; (4) all are ordered by
    queue priority, then time, and cut to the pool's open slots, which count holders in every
    queue of the pool, named or not; (5) then cut to `limit`.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if pool.paused:
        return []
    eligible = {
        queue.name: queue
        for queue in queues
        if queue.pool == pool.name and not queue.paused and (not queue_names or queue.name in queue_names)
    }
    waiting = [
        run
        for run in runs
        if run.state is StateType.SCHEDULED
        and run.pool == pool.name
        and run.queue in eligible
        and (scheduled_after is None or scheduled_after <= run.scheduled_time)
        and (scheduled_before is None or run.scheduled_time <= scheduled_before)
    ]
    active = active_slots_by_queue(runs)
    taken: defaultdict[str, int] = defaultdict(int)
    picked: list[RunView] = []
    for run in sorted(waiting, key=_by_time):  # each queue keeps its earliest, up to its open slots
        queue_open = Slots(active.get(run.queue, 0), eligible[run.queue].concurrency_limit).open
        if queue_open is None or taken[run.queue] < queue_open:
            taken[run.queue] += 1
            picked.append(run)
    picked.sort(key=lambda run: admission_order(run, eligible[run.queue]))
    return picked[: pool_slots(pool, runs).open][:limit]


def admission_order(run: RunView, queue: QueueView) -> tuple[int, datetime, datetime, str]:
    """The order runs are handed out in: queue effective priority, then scheduled time (strict)."""
    return (queue.effective_priority, *_by_time(run))


def late(run: RunView, now: datetime, after: timedelta = LATE_AFTER) -> bool:
    """Whether a run shows `stateName: Late`: still Scheduled, more than `after` overdue."""
    return run.state is StateType.SCHEDULED and overdue(run.scheduled_time, now, after)


def scheduled_time(run: FlowRun) -> datetime:
    """When a run may start: status.scheduledTime (a retry's), else spec.scheduledTime, else its creation."""
    given = run.status.scheduled_time or run.spec.scheduled_time or run.metadata.creation_timestamp
    assert given is not None, "the API server sets creationTimestamp on every object"
    return given


def in_line(run: FlowRun) -> bool:
    """New or Scheduled: in its queue's line, not admitted yet (whether it may be is admission's to say)."""
    return run.status.state in (None, StateType.SCHEDULED)


Place = tuple[datetime, datetime, str]
"""A waiting run's place in its queue's line: scheduled time, creation, name (the order within a queue)."""


def place(run: FlowRun) -> Place:
    created = run.metadata.creation_timestamp
    assert created is not None, "the API server sets creationTimestamp on every object"
    return (scheduled_time(run), created, run.metadata.name)


def overdue(scheduled_time: datetime, now: datetime, after: timedelta = LATE_AFTER) -> bool:
    """Prefect's Late rule: strictly more than `after` (15 s) past the scheduled time."""
    return now - scheduled_time > after


def _by_time(run: RunView) -> tuple[datetime, datetime, str]:
    return (run.scheduled_time, run.created, run.name)
