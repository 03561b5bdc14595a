"""Frozen views of the objects that admission and slot decisions read.

Decisions take these views instead of Kubernetes bodies, so they can be tested with plain data
and never see a field they do not depend on. Names are unique within a namespace, so a queue or
run is identified by its name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from workpools.api.states import StateType

__all__ = ["PoolView", "QueueView", "RunView"]


@dataclass(frozen=True, slots=True)
class PoolView:
    """A WorkPool as far as admission cares: can it hand out slots, and how many."""

    name: str
    paused: bool
    concurrency_limit: int | None  # None: unlimited


@dataclass(frozen=True, slots=True)
class QueueView:
    """A WorkQueue: its pool, gate, limit and the priority it is actually served at."""

    name: str
    pool: str
    paused: bool
    concurrency_limit: int | None  # None: unlimited
    effective_priority: int  # status.effectivePriority; lower is served first


@dataclass(frozen=True, slots=True)
class RunView:
    """A FlowRun: where it waits, in which state, and since when it holds a slot."""

    name: str
    pool: str
    queue: str  # spec.workQueue, or the pool's default queue when unset
    state: StateType
    scheduled_time: datetime
    created: datetime
    worker: str | None = None
    slot_acquired_at: datetime | None = None  # status.slot.acquiredAt
