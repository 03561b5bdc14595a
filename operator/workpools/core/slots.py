"""Slot accounting: who holds a pool's and a queue's slots, and how many are left.

One rule everywhere (DESIGN §3): a run holds a slot while it is Pending, Running or Cancelling,
in its pool and in its queue, whether or not that queue is paused or still exists; a run still
executing must keep counting, or a limit could be exceeded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from workpools.api.states import StateType, is_slot_holding
from workpools.core.snapshot import PoolView, QueueView, RunView

__all__ = [
    "Slots",
    "active_slots_by_pool",
    "active_slots_by_queue",
    "pool_slots",
    "queue_slots",
    "slot_acquired_at",
    "slot_holders",
]


@dataclass(frozen=True, slots=True)
class Slots:
    """Occupancy of one pool or queue, as shown in `status.slots`; `open` is derived."""

    active: int
    limit: int | None  # None: unlimited
    open: int | None = field(init=False)  # None: unlimited; never negative

    def __post_init__(self) -> None:
        # A limit lowered below the active count leaves 0 open, not a negative number.
        left = None if self.limit is None else max(0, self.limit - self.active)
        object.__setattr__(self, "open", left)


def pool_slots(pool: PoolView, runs: Iterable[RunView]) -> Slots:
    """The pool's slots, counted over all its queues (paused ones too, as Prefect does)."""
    active = sum(1 for run in runs if run.pool == pool.name and is_slot_holding(run.state))
    return Slots(active, pool.concurrency_limit)


def queue_slots(queue: QueueView, runs: Iterable[RunView]) -> Slots:
    """The queue's slots; a run counts in the queue it names, wherever it was admitted from."""
    active = sum(1 for run in runs if run.queue == queue.name and is_slot_holding(run.state))
    return Slots(active, queue.concurrency_limit)


def active_slots_by_pool(runs: Iterable[RunView]) -> dict[str, int]:
    """Slot holders per pool name, from one pass; pools without any are absent."""
    return dict(Counter(run.pool for run in runs if is_slot_holding(run.state)))


def active_slots_by_queue(runs: Iterable[RunView]) -> dict[str, int]:
    """Slot holders per queue name, from one pass; queues without any are absent."""
    return dict(Counter(run.queue for run in runs if is_slot_holding(run.state)))


def slot_holders(
    runs: Iterable[RunView],
    queues: Collection[str] | None = None,
    per_queue_limit: int | None = None,
) -> list[RunView]:
    """Runs holding a slot, longest-held first, at most `per_queue_limit` from each queue.

    Prefect's `get_work_pool_slot_holders`: pass a pool's runs for its holders. `queues`
    restricts to those queue names (None or empty: every queue). Runs without
    `slot_acquired_at` come last; names break ties, so the order is stable.
    """
    if per_queue_limit is not None and per_queue_limit < 0:
        raise ValueError(f"per_queue_limit must be >= 0, got {per_queue_limit}")
    holders = sorted(
        (run for run in runs if is_slot_holding(run.state) and (not queues or run.queue in queues)),
        key=_longest_held_first,
    )
    if per_queue_limit is None:
        return holders
    taken: Counter[str] = Counter()
    capped = []
    for run in holders:
        if taken[run.queue] < per_queue_limit:
            taken[run.queue] += 1
            capped.append(run)
    return capped


def slot_acquired_at(
    old: StateType | None,
    new: StateType,
    *,
    previous: datetime | None,
    now: datetime,
) -> datetime | None:
    """The `status.slot.acquiredAt` to write with the move `old` → `new`.

    A slot-holding stretch starts when a run enters a slot-holding state from any other state
    and keeps its start while the run moves between slot-holding states; leaving ends it. This
    is Prefect's `slot_acquired_at` rule applied one transition at a time, so a retry
    (… → Failed → Pending) starts a new stretch.
    """
    if not is_slot_holding(new):
        return None
    if is_slot_holding(old) and previous is not None:
        return previous
    return now


def _longest_held_first(run: RunView) -> tuple[bool, datetime, str]:
    # The placeholder is only ever compared with other placeholders: the flag sorts first.
    acquired = run.slot_acquired_at
    return (acquired is None, acquired or datetime.min, run.name)
