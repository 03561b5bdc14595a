"""Frozen views of the objects that admission and slot decisions read.

Decisions take these views instead of Kubernetes bodies, so they can be tested with plain data
and never see a field they do not depend on. Names are unique within a namespace, so a queue or
run is identified by its name alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from workpools.api.flowcontrol import KeyLimit, LimitWindow, StartRate
from workpools.api.flowrun import FlowRun
from workpools.api.meta import HEARTBEAT_INTERVAL_DEFAULT
from workpools.api.states import SLOT_HOLDING, StateType
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.core.tokens import TokenBucket

DELETIONS_PER_SECOND = 10.0
"""Default rate of run deletions, for all pools together (WORKPOOLS_RUN_DELETIONS_PER_SECOND)."""
DELETIONS_BURST = 20
"""Deletions at most at once (two seconds' worth): what a restart after a long downtime starts with."""

__all__ = [
    "DELETIONS_BURST",
    "DELETIONS_PER_SECOND",
    "FlowControl",
    "PoolState",
    "PoolView",
    "QueueView",
    "RunView",
    "Sighting",
    "WorkerView",
]


@dataclass(frozen=True, slots=True)
class FlowControl:
    """A pool's or queue's flow-control rules beyond its concurrency limit (core/flowcontrol.py)."""

    limit_schedule: Sequence[LimitWindow] = field(default=(), hash=False)
    per_key: Sequence[KeyLimit] = field(default=(), hash=False)
    start_rate: StartRate | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class PoolView:
    """A WorkPool as far as admission cares: can it hand out slots, and how many."""

    name: str
    paused: bool
    concurrency_limit: int | None  # None: unlimited
    flow: FlowControl = field(default_factory=FlowControl)


@dataclass(frozen=True, slots=True)
class QueueView:
    """A WorkQueue: its pool, gate, limit and the priority it is actually served at."""

    name: str
    pool: str
    paused: bool
    concurrency_limit: int | None  # None: unlimited
    effective_priority: int  # status.effectivePriority; lower is served first
    flow: FlowControl = field(default_factory=FlowControl)


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
    granted_at: datetime | None = None  # status.grantedAt (else slot.acquiredAt): its latest grant
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)  # spec.parameters


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A Worker as binding sees it: may it take runs, from which queues, and how many more."""

    name: str
    online: bool
    draining: bool
    queues: frozenset[str]  # empty: every queue of the pool
    limit: int | None  # None: no per-worker limit

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the operator saw of one worker's heartbeat, on the operator's clock (core/liveness.py)."""

    heartbeat: datetime | None
    """status.lastHeartbeatTime as last seen: compared for change only, never against a clock."""
    seen_at: datetime | None
    """When the operator first saw that value; None: not seen beating since the operator started."""
    interval: timedelta = timedelta(seconds=HEARTBEAT_INTERVAL_DEFAULT)


@dataclass(frozen=True)
class PoolState:
    """What the store holds for one pool (which may be gone while its members remain), at `now`."""

    name: str
    pool: WorkPool | None
    queues: Sequence[WorkQueue]
    workers: Sequence[Worker]
    runs: Sequence[FlowRun]
    now: datetime
    sightings: Mapping[str, Sighting] = field(default_factory=dict)
    """Per worker name (also of workers gone from the API), what the operator saw of its heartbeat."""
    confirmed_silent: frozenset[str] = frozenset()
    """Workers that a direct read just showed without a new heartbeat (or gone): see core/liveness.py."""
    finished: Sequence[FlowRun] = ()
    """Runs that will not run again (not in `runs`): what the finished-run TTL deletes (core/ttl.py)."""
    deletion_budget: TokenBucket = field(default_factory=lambda: TokenBucket(DELETIONS_PER_SECOND, DELETIONS_BURST))
    """The token bucket every pool's run deletions draw from, as it is now (core/ttl.py)."""
    busy: frozenset[str] = frozenset()
    """Runs with a write of ours in flight (or of unknown outcome): nothing is decided about them
    until it settles. A grant among them is in `runs` as its write makes it (assumed)."""

    @cached_property
    def holders(self) -> list[FlowRun]:
        """Runs holding a slot of this pool."""
        return [r for r in self.runs if r.status.state in SLOT_HOLDING]
