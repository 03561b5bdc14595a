"""The late-run policy: which waiting runs are cancelled for being late, or skipped for a newer one.

A pool's `latePolicy` applies to its runs unless their queue has one of its own (which replaces
it whole). `action: Run` (the default, as Prefect) only labels a run Late; `action: Cancel`
cancels a run still waiting `afterSeconds` past its scheduled time (strictly). `skipToLatest`
concerns the runs of one FlowSchedule (label `workpools.dev/schedule`): of those that are due and
still waiting, only the newest (latest scheduled time) is kept, the older ones are cancelled, as a
schedule that fell behind catches up with its latest run only.

"Waiting" means not admitted yet: new or Scheduled, its cancellation not requested. The rule is
decided here once; the lifecycle step cancels what it says (core/runs.py) and admission never
grants such a run meanwhile.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from workpools.api.base import LateAction, LatePolicy, timestamp
from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.meta import SCHEDULE_LABEL
from workpools.core.liveness import TICK
from workpools.core.selection import in_line, scheduled_time
from workpools.core.snapshot import PoolState

__all__ = ["LATE_CANCELLED", "SKIPPED_TO_LATEST", "Verdict", "moments", "policy_of", "too_late", "verdicts"]

LATE_CANCELLED = "LateCancelled"
SKIPPED_TO_LATEST = "SkippedToLatest"


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str
    """LateCancelled or SkippedToLatest: the event's reason and the run's stateName."""
    message: str


def _waiting(run: FlowRun) -> bool:
    return in_line(run) and not run.spec.cancel


def policy_of(queue: str, state: PoolState) -> LatePolicy | None:
    """The policy a queue's runs follow: its own, else its pool's."""
    for candidate in state.queues:
        if candidate.metadata.name == queue and candidate.spec.late_policy is not None:
            return candidate.spec.late_policy
    return state.pool.spec.late_policy if state.pool is not None else None


def _in_force(state: PoolState) -> bool:
    """Whether the pool exists and it or one of its queues has a late policy (else no run is looked at)."""
    pool = state.pool
    return pool is not None and (
        pool.spec.late_policy is not None or any(q.spec.late_policy is not None for q in state.queues)
    )


def _policies(state: PoolState) -> dict[str, LatePolicy | None]:
    """Per run name, its policy (worked out once per queue)."""
    by_queue: dict[str, LatePolicy | None] = {}
    found = {}
    for run in state.runs:
        queue = queue_of(run)
        if queue not in by_queue:
            by_queue[queue] = policy_of(queue, state)
        found[run.metadata.name] = by_queue[queue]
    return found


def verdicts(state: PoolState) -> dict[str, Verdict]:
    """Per run name, why a waiting run is to be cancelled now (runs of a deleted pool: none)."""
    if not _in_force(state):
        return {}
    known, now = _policies(state), state.now
    found: dict[str, Verdict] = {}
    newest: dict[str, FlowRun] = {}
    due_of_schedule: dict[str, list[FlowRun]] = defaultdict(list)
    for run in state.runs:
        policy = known[run.metadata.name]
        if policy is None or not _waiting(run):
            continue
        if (verdict := too_late(run, policy, now)) is not None:
            found[run.metadata.name] = verdict
            continue
        when = scheduled_time(run)
        schedule = run.metadata.labels.get(SCHEDULE_LABEL)
        if policy.skip_to_latest and schedule and when <= now:
            due_of_schedule[schedule].append(run)
            best = newest.get(schedule)
            if best is None or _recency(run) > _recency(best):
                newest[schedule] = run
    for schedule, runs in due_of_schedule.items():
        keep = newest[schedule]
        for run in runs:
            if run is not keep:
                found[run.metadata.name] = Verdict(
                    SKIPPED_TO_LATEST,
                    f"skipped: {keep.metadata.name}, a newer run of FlowSchedule {schedule}, is due "
                    "(latePolicy.skipToLatest)",
                )
    return found


def too_late(run: FlowRun, policy: LatePolicy | None, now: datetime.datetime) -> Verdict | None:
    """Whether `policy` cancels this waiting run for waiting past its afterSeconds (the run's own
    rule: skipToLatest, which compares runs, is `verdicts`')."""
    after = policy.after_seconds if policy is not None and policy.action is LateAction.CANCEL else None
    when = scheduled_time(run)
    if after is None or now - when <= datetime.timedelta(seconds=after):
        return None
    return Verdict(
        LATE_CANCELLED,
        f"still waiting more than latePolicy.afterSeconds ({after}s) past its scheduled time {timestamp(when)}",
    )


def _recency(run: FlowRun) -> tuple[datetime.datetime, datetime.datetime, str]:
    created = run.metadata.creation_timestamp or scheduled_time(run)
    return (scheduled_time(run), created, run.metadata.name)


def moments(state: PoolState) -> Iterator[datetime.datetime]:
    """When a waiting run passes its afterSeconds (a newer schedule run coming due is a moment of
    its own already: core/deadlines.py wakes the pool when a run becomes due)."""
    if not _in_force(state):
        return
    known = _policies(state)
    for run in state.runs:
        policy = known[run.metadata.name]
        after = policy.after_seconds if policy is not None and policy.action is LateAction.CANCEL else None
        if after is not None and _waiting(run):
            yield scheduled_time(run) + datetime.timedelta(seconds=after) + TICK
