"""Tiny builders for the core's views, so a test spells out only what its case is about.

    pool("p", limit=2)
    queue("q", pool="p", priority=1)
    run("r1", queue="q", state=StateType.RUNNING, scheduled=at(hours=-1))
    worker("w1", queues={"q"}, limit=2)

Defaults: pool "p", queue "q", priority 1, unlimited, unpaused, Scheduled at `T0`, created at
`T0`; workers Online, not draining, serving every queue, without a limit. Times are aware UTC,
relative to the fixed instant `T0` (no clock reads in unit tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from workpools.api.states import StateType
from workpools.core.snapshot import FlowControl, PoolView, QueueView, RunView, WorkerView

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(*, hours: float = 0, minutes: float = 0, seconds: float = 0, microseconds: float = 0) -> datetime:
    """`T0` shifted by the given offset."""
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=microseconds)


def pool(
    name: str = "p", *, limit: int | None = None, paused: bool = False, flow: FlowControl | None = None
) -> PoolView:
    return PoolView(name=name, paused=paused, concurrency_limit=limit, flow=flow or FlowControl())


def queue(
    name: str = "q",
    *,
    pool: str = "p",
    priority: int = 1,
    limit: int | None = None,
    paused: bool = False,
    flow: FlowControl | None = None,
) -> QueueView:
    return QueueView(
        name=name,
        pool=pool,
        paused=paused,
        concurrency_limit=limit,
        effective_priority=priority,
        flow=flow or FlowControl(),
    )


def run(
    name: str,
    *,
    pool: str = "p",
    queue: str = "q",
    state: StateType = StateType.SCHEDULED,
    scheduled: datetime = T0,
    created: datetime = T0,
    worker: str | None = None,
    acquired: datetime | None = None,
    granted: datetime | None = None,
    labels: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> RunView:
    return RunView(
        name=name,
        pool=pool,
        queue=queue,
        state=state,
        scheduled_time=scheduled,
        created=created,
        worker=worker,
        slot_acquired_at=acquired,
        granted_at=granted,
        labels=labels or {},
        parameters=parameters or {},
    )


def worker(
    name: str,
    *,
    online: bool = True,
    draining: bool = False,
    queues: Iterable[str] = (),
    limit: int | None = None,
) -> WorkerView:
    return WorkerView(name=name, online=online, draining=draining, queues=frozenset(queues), limit=limit)
