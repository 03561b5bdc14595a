"""Worker liveness: when a worker is Online, when it turns Offline, and when it may be removed.

Prefect's foreman rule (prefect-semantics §5): a worker is Offline once its last heartbeat is
*strictly* older than 3 × its heartbeat interval (30 s when it declares none). The operator
checks often (`CHECK_PERIOD`), so Offline is seen within a few seconds of that moment rather
than within Prefect's 15 s loop.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from workpools.api.worker import HEARTBEAT_INTERVAL_DEFAULT, Worker, WorkerPhase

OFFLINE_AFTER_INTERVALS = 3
"""Missed heartbeat intervals after which a worker is Offline (Prefect's inactivity multiple)."""

CHECK_PERIOD = datetime.timedelta(seconds=1)
"""How often the one global timer looks for pool deadlines that passed (core/deadlines.py)."""

LAST_POLLED_EVERY = datetime.timedelta(seconds=30)
"""A queue's status.lastPolled follows its workers' heartbeats, written at most this often."""


def heartbeat_interval(worker: Worker) -> datetime.timedelta:
    return datetime.timedelta(seconds=worker.spec.heartbeat_interval_seconds or HEARTBEAT_INTERVAL_DEFAULT)


def offline_at(worker: Worker) -> datetime.datetime | None:
    """The moment after which the worker counts as Offline (None: it never heartbeat)."""
    last = worker.status.last_heartbeat_time
    return None if last is None else last + OFFLINE_AFTER_INTERVALS * heartbeat_interval(worker)


def phase(worker: Worker, now: datetime.datetime) -> WorkerPhase:
    deadline = offline_at(worker)
    return WorkerPhase.ONLINE if deadline is not None and now <= deadline else WorkerPhase.OFFLINE


def offline_since(worker: Worker) -> datetime.datetime | None:
    """When the worker's Ready condition last turned False (it went Offline), if it is Offline."""
    ready = next((c for c in worker.status.conditions if c.type == "Ready"), None)
    return ready.last_transition_time if ready is not None and ready.status == "False" else None


def expired(worker: Worker, ttl_seconds: int | None, now: datetime.datetime) -> bool:
    """Whether an Offline worker has stayed Offline for the pool's workerTTLAfterOfflineSeconds.

    Its heartbeat decides, not only the stored condition: a worker that heartbeat again since the
    condition was written is alive, whatever the condition still says.
    """
    since = offline_since(worker)
    return (
        ttl_seconds is not None
        and since is not None
        and phase(worker, now) is WorkerPhase.OFFLINE
        and now - since >= datetime.timedelta(seconds=ttl_seconds)
    )


def latest_heartbeat(workers: Iterable[Worker]) -> datetime.datetime | None:
    beats = [w.status.last_heartbeat_time for w in workers if w.status.last_heartbeat_time is not None]
    return max(beats, default=None)


def last_polled(current: datetime.datetime | None, heartbeat: datetime.datetime | None) -> datetime.datetime | None:
    """A queue's lastPolled: the newest heartbeat of its workers, moved on at most every 30 s."""
    if heartbeat is None:
        return current
    if current is None or heartbeat - current >= LAST_POLLED_EVERY:
        return heartbeat
    return current
