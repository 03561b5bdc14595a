"""The admissible backlog (DESIGN §8): per queue, the Scheduled runs that would be granted now if
workers had room enough, the signal an autoscaler scales workers on.

It is admission itself (core/admission.py) over the admitter's own inputs (`runs.admission_inputs`),
with the pool's workers replaced by one Online worker that serves every queue and has no limit.
So a run held by a pool, queue or per-key limit, a start rate, a pause or a later scheduled time
is not counted (more workers would not start it), and a run that waits only for a worker is.
No limit rule is restated here: whatever admission decides, the backlog follows.
"""

from __future__ import annotations

from collections import Counter

from workpools.core import admission, runs
from workpools.core.snapshot import PoolState, WorkerView

__all__ = ["ANY_WORKER", "admissible_backlog"]

ANY_WORKER = WorkerView(name="(any worker)", online=True, draining=False, queues=frozenset(), limit=None)
"""The worker that always has room. Not a valid object name, so it is no real worker's."""


def admissible_backlog(state: PoolState) -> dict[str, int]:
    """Runs per queue of the pool that only lack a worker with room; every queue is named (0
    when none). A pool that is gone has no queues to count for: empty."""
    inputs = runs.admission_inputs(state)
    if inputs.pool is None:
        return {}
    decided = admission.admit(
        state.name, inputs.pool, inputs.queues, inputs.runs, [ANY_WORKER], now=state.now, history=inputs.history
    )
    granted = Counter(grant.run.queue for grant in decided.grants)
    return {queue.name: granted[queue.name] for queue in inputs.queues}
