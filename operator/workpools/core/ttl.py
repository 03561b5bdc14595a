"""Finished-run TTL: which finished runs the operator deletes now, spread out and rate-limited.

A run is *finished* when it is terminal and will not run again (`PoolState.finished`); it expires
`finishedRunTTLSeconds` after its `status.endTime`, plus a jitter of its own (up to a tenth of
the TTL, at most a minute, fixed by its uid), so runs that finished together are not deleted
together. A run without `endTime` has no known end and is never deleted (as Kubernetes' TTL
controller leaves a Job without a finish time).

Deletions draw from one token bucket shared by every pool (`PoolState.deletion_budget`): after a
week of downtime a restarted operator finds every expired run at once and deletes them at the
bucket's rate, never all in one second. Each deletion is preconditioned on the version judged,
so a run that changed meanwhile (e.g. retried) is judged again, not deleted.
"""

from __future__ import annotations

import datetime
import heapq
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from workpools.api.flowrun import FlowRun
from workpools.core.liveness import TICK
from workpools.core.snapshot import PoolState
from workpools.core.tokens import TokenBucket

__all__ = ["Deletions", "deletions", "expires_at", "moments"]

SPREAD_MAX = datetime.timedelta(minutes=1)
SPREAD_SHARE = 10
"""A run's jitter is below TTL / SPREAD_SHARE, and below SPREAD_MAX."""
_MICROSECOND = datetime.timedelta(microseconds=1)


def expires_at(run: FlowRun, ttl_seconds: int) -> datetime.datetime | None:
    """After this moment a finished run may be deleted; None when its end is unknown."""
    return next((when for when, _ in _expiries([run], ttl_seconds)), None)


def _expiries(runs: Iterable[FlowRun], ttl_seconds: int) -> Iterator[tuple[datetime.datetime, FlowRun]]:
    """(expiry, run) of each run whose end is known. One pass, the TTL's arithmetic done once:
    it runs over every finished run of a pool."""
    ttl = datetime.timedelta(seconds=ttl_seconds)
    spread = int(min(ttl / SPREAD_SHARE, SPREAD_MAX) / _MICROSECOND)
    for run in runs:
        if (end := run.status.end_time) is not None:
            key = (run.metadata.uid or run.metadata.name).encode()
            yield end + ttl + datetime.timedelta(microseconds=spread * zlib.crc32(key) >> 32), run


@dataclass(frozen=True, slots=True)
class Deletions:
    runs: list[FlowRun]
    """To delete now, the longest expired first."""
    budget: TokenBucket
    """The shared bucket once these deletions are paid for."""


def _ttl(state: PoolState) -> int | None:
    return state.pool.spec.finished_run_ttl_seconds if state.pool is not None else None


def deletions(state: PoolState) -> Deletions:
    """The expired runs of the pool that the shared bucket pays for now.

    Runs of a deleted pool are kept: its TTL went with it.
    """
    ttl = _ttl(state)
    if ttl is None:
        return Deletions([], state.deletion_budget)
    expired = [(when, run.metadata.name, run) for when, run in _expiries(state.finished, ttl) if state.now > when]
    granted, budget = state.deletion_budget.take(len(expired), state.now)
    first = heapq.nsmallest(granted, expired, key=lambda item: item[:2])
    return Deletions([run for _, _, run in first], budget)


def moments(state: PoolState) -> Iterator[datetime.datetime]:
    """When time alone lets more runs go: each run's expiry, and for expired runs still left
    (the bucket ran dry), when the bucket holds enough for them (at most a burst)."""
    ttl = _ttl(state)
    if ttl is None:
        return
    waiting = 0
    for when, _ in _expiries(state.finished, ttl):
        if state.now > when:
            waiting += 1
        else:
            yield when + TICK  # deadlines.py keeps the earliest
    if waiting:
        yield max(state.deletion_budget.ready_at(waiting, state.now), state.now + TICK)
