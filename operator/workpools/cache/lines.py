"""Per pool: the runs waiting in each queue's line, in the order admission takes them, and the
runs holding a slot.

Kept up to date from the store's own updates, so a grant pass reads the heads of its queues and
the slot holders (tens of runs) instead of walking every run of the pool (thousands): a freed slot
is refilled at a cost that does not grow with the backlog (controllers/pools.py).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.meta import ObjectKey
from workpools.api.states import SLOT_HOLDING
from workpools.core.selection import Place, in_line, place


@dataclass
class PoolLines:
    queues: defaultdict[str, list[Place]] = field(default_factory=lambda: defaultdict(list))
    """Per queue name, its waiting runs' places, sorted."""
    holding: set[str] = field(default_factory=set)
    """Names of the runs holding a slot, as stored."""


class Lines:
    """The index, per pool (`ObjectKey` of the pool); `update` is told every stored change of a run."""

    def __init__(self) -> None:
        self._pools: dict[ObjectKey, PoolLines] = {}
        self._opened: set[ObjectKey] = set()

    def update(self, old: FlowRun | None, new: FlowRun | None) -> None:
        """`old` (as stored until now, or None) is replaced by `new` (or deleted: None)."""
        if old is not None:
            self._leave(old)
            if old.status.state in SLOT_HOLDING and (new is None or new.status.state not in SLOT_HOLDING):
                self._opened.add(_pool_of(old))  # a slot freed
        if new is not None:
            self._join(new)
            if in_line(new) and (old is None or not in_line(old)):
                self._opened.add(_pool_of(new))  # a run joined a line

    def opened(self, pool: ObjectKey) -> bool:
        """Whether a slot was freed or a run joined a line of `pool` since the last call: what can
        let a grant pass grant when nothing else changed (a grant landing, a run starting cannot)."""
        if pool in self._opened:
            self._opened.discard(pool)
            return True
        return False

    def line(self, pool: ObjectKey, queue: str) -> list[Place]:
        """The places of `queue`'s waiting runs, first first (do not modify)."""
        lines = self._pools.get(pool)
        return lines.queues.get(queue, []) if lines is not None else []

    def holding(self, pool: ObjectKey) -> set[str]:
        """Names of the pool's runs holding a slot, as stored (do not modify)."""
        lines = self._pools.get(pool)
        return lines.holding if lines is not None else set()

    def _join(self, run: FlowRun) -> None:
        key = _pool_of(run)
        if in_line(run):
            bisect.insort(self._pools.setdefault(key, PoolLines()).queues[queue_of(run)], place(run))
        elif run.status.state in SLOT_HOLDING:
            self._pools.setdefault(key, PoolLines()).holding.add(run.metadata.name)

    def _leave(self, run: FlowRun) -> None:
        key = _pool_of(run)
        lines = self._pools.get(key)
        if lines is None:
            return
        if in_line(run):
            queue = queue_of(run)
            line = lines.queues.get(queue)
            if line is not None:
                at = bisect.bisect_left(line, entry := place(run))
                if at < len(line) and line[at] == entry:
                    del line[at]
                if not line:
                    del lines.queues[queue]
        else:
            lines.holding.discard(run.metadata.name)
        if not lines.queues and not lines.holding:
            del self._pools[key]


def _pool_of(run: FlowRun) -> ObjectKey:
    return ObjectKey(run.metadata.namespace or "", run.spec.work_pool)
