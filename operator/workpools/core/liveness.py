"""Worker liveness: when a worker is Online, when it is lost, and when it may be removed.

Prefect's foreman rule (prefect-semantics §5) says a worker is Offline once its last heartbeat is
*strictly* older than 3 × its heartbeat interval (30 s when it declares none). Here "older" is
measured on the operator's own clock from the moment the operator *saw* the heartbeat change (a
`Sighting`), never from the timestamp the worker wrote: a worker whose clock is minutes off is
judged correctly, and a watch that lags cannot make a live worker look dead by itself.

Taking a slot back is destructive, so a silent worker goes through three steps (DESIGN §4):
silent (no change seen for 3 × interval) → confirmed by a direct read that still shows no new
heartbeat (`PoolState.confirmed_silent`) → written Offline, preconditioned on that read. Only a
worker *written* Offline and still silent is `lost`: its runs may be reclaimed. When many workers
of a pool go silent at once the observer (the operator, its network) is suspected instead, and
nothing is reclaimed, as Kubernetes' node lifecycle controller does for a zone.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from workpools.api.worker import HEARTBEAT_INTERVAL_DEFAULT, Worker, WorkerPhase
from workpools.core.snapshot import PoolState, Sighting

OFFLINE_AFTER_INTERVALS = 3
"""Missed heartbeat intervals after which a worker is Offline (Prefect's inactivity multiple)."""

CHECK_PERIOD = datetime.timedelta(seconds=1)
"""How often the one global timer looks for pool deadlines that passed (core/deadlines.py)."""

LAST_POLLED_EVERY = datetime.timedelta(seconds=30)
"""A queue's status.lastPolled follows its workers' heartbeats, written at most this often."""

DEFAULT_INTERVAL = datetime.timedelta(seconds=HEARTBEAT_INTERVAL_DEFAULT)


def heartbeat_interval(worker: Worker) -> datetime.timedelta:
    return datetime.timedelta(seconds=worker.spec.heartbeat_interval_seconds or HEARTBEAT_INTERVAL_DEFAULT)


def sight(previous: Sighting | None, worker: Worker, now: datetime.datetime) -> Sighting:
    """The sighting after the operator saw `worker` at `now` (on a watch event or a direct read)."""
    beat, interval = worker.status.last_heartbeat_time, heartbeat_interval(worker)
    if previous is None:
        # First sight (e.g. after an operator restart): a worker already judged Offline stays so
        # until it beats again; any other one gets a full 3 × interval from now.
        fresh = beat is not None and worker.status.phase is not WorkerPhase.OFFLINE
        return Sighting(beat, now if fresh else None, interval)
    if beat is not None and beat != previous.heartbeat:
        return Sighting(beat, now, interval)
    return Sighting(previous.heartbeat, previous.seen_at, interval)


def offline_at(sighting: Sighting | None) -> datetime.datetime | None:
    """The moment after which the worker counts as silent (None: already silent, or never seen)."""
    if sighting is None or sighting.seen_at is None:
        return None
    return sighting.seen_at + OFFLINE_AFTER_INTERVALS * sighting.interval


def alive(sighting: Sighting | None, now: datetime.datetime) -> bool:
    deadline = offline_at(sighting)
    return deadline is not None and now <= deadline


@dataclass(frozen=True)
class Judgement:
    """The liveness of a pool's workers at one moment (by worker name)."""

    online: frozenset[str]
    """Heartbeat seen within 3 × interval: may be bound runs."""
    offline: frozenset[str]
    """To be (or already) written Offline: confirmed silent by a direct read, or never Online."""
    lost: frozenset[str]
    """Written Offline and still silent, or gone from the API and silent: their slots may be taken back."""
    suspects: frozenset[str]
    """Silent but still Online as written: a direct read must confirm before anything is decided."""
    observer_suspected: str = ""
    """Why nothing is confirmed Offline now (too many silent at once), or empty."""


def judge(state: PoolState) -> Judgement:
    now, confirmed = state.now, state.confirmed_silent
    online: set[str] = set()
    offline: set[str] = set()
    lost: set[str] = set()
    suspects: set[str] = set()
    newly_silent: set[str] = set()
    for worker in state.workers:
        name, written = worker.metadata.name, worker.status.phase
        if alive(state.sightings.get(name), now):
            online.add(name)
        elif written is WorkerPhase.OFFLINE:
            offline.add(name)
            lost.add(name)
        elif written is None:  # never judged Online, so nothing can be bound to it
            offline.add(name)
        elif name in confirmed:
            newly_silent.add(name)
        else:
            suspects.add(name)
    present = {w.metadata.name for w in state.workers}
    for name in {r.status.worker for r in state.holders if r.status.worker} - present:
        if alive(state.sightings.get(name), now):
            continue  # deleted a moment ago: a live worker registers again within an interval
        (lost if name in confirmed else suspects).add(name)

    suspicion = _observer_suspected(state, newly_silent)
    if suspicion:
        suspects |= newly_silent
    else:
        offline |= newly_silent
    return Judgement(frozenset(online), frozenset(offline), frozenset(lost), frozenset(suspects), suspicion)


def _observer_suspected(state: PoolState, newly_silent: set[str]) -> str:
    """Too many workers of the pool silent within one interval: more likely our view is broken."""
    if not newly_silent:
        return ""
    window = max((heartbeat_interval(w) for w in state.workers), default=DEFAULT_INTERVAL)
    recent = {
        w.metadata.name
        for w in state.workers
        if (since := offline_since(w)) is not None and state.now - since <= window
    }
    wave = len(newly_silent | recent)
    if wave < 2 or 2 * wave <= len(state.workers):
        return ""
    return (
        f"{wave} of {len(state.workers)} workers went silent within {int(window.total_seconds())}s: "
        "not reclaiming their runs (the operator or its network may be the one cut off)"
    )


def offline_since(worker: Worker) -> datetime.datetime | None:
    """When the worker's Ready condition last turned False (it went Offline), if it is Offline."""
    ready = next((c for c in worker.status.conditions if c.type == "Ready"), None)
    return ready.last_transition_time if ready is not None and ready.status == "False" else None


def expired(worker: Worker, judgement: Judgement, ttl_seconds: int | None, now: datetime.datetime) -> bool:
    """Whether a lost worker has stayed Offline for the pool's workerTTLAfterOfflineSeconds."""
    since = offline_since(worker)
    return (
        ttl_seconds is not None
        and since is not None
        and worker.metadata.name in judgement.lost
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
