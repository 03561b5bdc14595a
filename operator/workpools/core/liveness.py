"""Worker liveness: when a worker is Online, when it is lost, and when it may be removed.

Prefect's foreman rule (prefect-semantics §5) says a worker is Offline once its last heartbeat is
*strictly* older than 3 × its heartbeat interval (30 s when it declares none). Here "older" is
measured on the operator's own clock from the moment the operator *saw* the heartbeat change (a
`Sighting`), never from the timestamp the worker wrote: a worker whose clock is minutes off is
judged correctly, and a watch that lags cannot make a live worker look dead by itself.

Taking a slot back is destructive, so a silent worker goes through steps (DESIGN §4): silent
(no change seen for 3 × interval) → confirmed by a direct read that still shows no new heartbeat
(`PoolState.confirmed_silent`) → written Offline, preconditioned on that read → one interval
later, still silent, `lost`: its runs may be reclaimed. The extra interval lets a wave of
silences be seen whole: when many workers of a pool fall silent together the observer (the
operator, its network) is suspected instead and nothing is reclaimed, as Kubernetes' node
lifecycle controller does for a zone.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from workpools.api.meta import HEARTBEAT_INTERVAL_DEFAULT
from workpools.api.phases import WorkerPhase
from workpools.api.worker import Worker
from workpools.api.workqueue import WorkQueue
from workpools.core.snapshot import PoolState, Sighting

OFFLINE_AFTER_INTERVALS = 3
"""Missed heartbeat intervals after which a worker is Offline (Prefect's inactivity multiple)."""

CHECK_PERIOD = datetime.timedelta(seconds=1)
"""The longest the one global timer sleeps between looks for pool deadlines (core/deadlines.py);
it wakes at the earliest one when that is sooner."""

LAST_POLLED_EVERY = datetime.timedelta(seconds=30)
"""A queue's status.lastPolled follows its workers' heartbeats, written at most this often."""

DEFAULT_INTERVAL = datetime.timedelta(seconds=HEARTBEAT_INTERVAL_DEFAULT)

TICK = datetime.timedelta(milliseconds=1)
"""Rules are strict (`>`): a deadline is the first moment after the boundary."""


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


def is_news(before: Worker | None, seen_before: Sighting | None, after: Worker, now: datetime.datetime) -> bool:
    """Whether a Worker event can change a decision of its pool, so the pool must be woken.

    A heartbeat of a worker that was alive, changing nothing else, cannot: it only refreshes the
    worker's sighting (the store keeps it), and a refreshed sighting only moves the worker's
    liveness deadlines later (an early timer wake-up finds nothing to do and sets the next one).
    So at 1,000 workers a steady heartbeat costs a store update, not a pass over the pool. It is
    news when the worker is new, its spec or the operator-written part of its status changed, or
    it was silent. A heartbeat that moves a queue's `lastPolled` is the other reason to wake
    (`moved_last_polled`), which the store takes once per move.
    """
    if before is None or before.spec != after.spec or not alive(seen_before, now):
        return True
    return _without_heartbeat(before) != _without_heartbeat(after)


def moved_last_polled(before: Worker | None, after: Worker, queues: Iterable[WorkQueue]) -> list[WorkQueue]:
    """The queues `after` serves whose `lastPolled` its new heartbeat moves on (every 30 s at most)."""
    beat = after.status.last_heartbeat_time
    if before is not None and beat == before.status.last_heartbeat_time:
        return []
    return [
        q
        for q in queues
        if (not after.spec.work_queues or q.metadata.name in after.spec.work_queues)
        and last_polled(q.status.last_polled, beat) != q.status.last_polled
    ]


def _without_heartbeat(worker: Worker) -> object:
    return worker.status.model_copy(update={"last_heartbeat_time": None})


def offline_at(sighting: Sighting | None) -> datetime.datetime | None:
    """The moment after which the worker counts as silent (None: already silent, or never seen)."""
    if sighting is None or sighting.seen_at is None:
        return None
    return sighting.seen_at + OFFLINE_AFTER_INTERVALS * sighting.interval


def stamped_sightings(workers: Iterable[Worker], now: datetime.datetime) -> dict[str, Sighting]:
    """Sightings for a reader that has watched nothing (`workpools run why`): each heartbeat counts
    as seen at the time it carries (no later than `now`), so a worker is alive while its last
    heartbeat is at most 3 × interval old on the reader's clock: Prefect's rule. The operator
    judges on its own sightings instead and may differ by a clock skew, for about a second."""
    return {
        w.metadata.name: Sighting(beat, min(beat, now) if beat is not None else None, heartbeat_interval(w))
        for w in workers
        for beat in (w.status.last_heartbeat_time,)
    }


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
    """Their slots may be taken back: written Offline (or gone from the API), still silent, silent
    for one more interval (so a wave of silences is seen whole), and the observer not suspected."""
    suspects: frozenset[str]
    """Silent but not confirmed yet: a direct read must come first."""
    observer_suspected: str = ""
    """Why nothing is reclaimed now (too many silent at once), or empty."""


def judge(state: PoolState) -> Judgement:
    now, confirmed = state.now, state.confirmed_silent
    online: set[str] = set()
    offline: set[str] = set()
    settled: set[str] = set()  # silent an interval past its silence, and written Offline or gone
    suspects: set[str] = set()
    silences = _silences(state)
    for worker in state.workers:
        name, written = worker.metadata.name, worker.status.phase
        if name not in silences:
            online.add(name)
        elif written is WorkerPhase.OFFLINE:
            offline.add(name)
            if now >= silences[name].reclaim_at:
                settled.add(name)
        elif written is None or name in confirmed:  # never Online (nothing bound), or confirmed now
            offline.add(name)
        else:
            suspects.add(name)
    present = {w.metadata.name for w in state.workers}
    for name in set(silences) - present:  # bound, but gone from the API
        if name not in confirmed:
            suspects.add(name)
        elif now >= silences[name].reclaim_at:
            settled.add(name)
    suspicion = _observer_suspected(state, silences)
    lost = frozenset() if suspicion else frozenset(settled)
    return Judgement(frozenset(online), frozenset(offline), lost, frozenset(suspects), suspicion)


def moments(state: PoolState) -> Iterator[datetime.datetime]:
    """When time alone changes the judgement (core/deadlines.py keeps the future ones)."""
    for sighting in state.sightings.values():
        if (silent := offline_at(sighting)) is not None:
            yield silent + TICK  # alive → silent: read it directly
    judgement = judge(state)
    for silence in _silences(state).values():
        yield silence.reclaim_at  # its slots may be taken back
    for name in judgement.suspects:  # not confirmed yet (a read failed): read again an interval later
        seen = state.sightings.get(name)
        yield state.now + (seen.interval if seen is not None else DEFAULT_INTERVAL)


@dataclass(frozen=True, slots=True)
class _Silence:
    began: datetime.datetime | None
    """When the worker fell silent (3 × interval after its last seen heartbeat, or as written);
    None: before the operator started, at a moment it cannot know (it joins no wave)."""
    reclaim_at: datetime.datetime
    """One interval later: the wave it belongs to has been seen whole by then."""


def _silences(state: PoolState) -> dict[str, _Silence]:
    """The pool's silent workers, and those its runs are bound to that are gone from the API."""
    now, silences = state.now, {}
    bound = {r.status.worker for r in state.holders if r.status.worker}
    workers = {w.metadata.name: w for w in state.workers}
    for name in set(workers) | bound:
        seen = state.sightings.get(name)
        if alive(seen, now):
            continue
        worker = workers.get(name)
        began = offline_at(seen) or (offline_since(worker) if worker is not None else None)
        if began is None:  # silent since before the operator started: long enough, reclaimable now
            silences[name] = _Silence(None, now)
            continue
        silences[name] = _Silence(began, began + (seen.interval if seen is not None else DEFAULT_INTERVAL))
    return silences


def _wave_window(state: PoolState) -> datetime.timedelta:
    # Workers that die at once fell silent up to an interval apart (each beat at its own moment).
    return 2 * max((heartbeat_interval(w) for w in state.workers), default=DEFAULT_INTERVAL)


def _observer_suspected(state: PoolState, silences: dict[str, _Silence]) -> str:
    """More than half of the pool's workers fell silent together: our own view is more likely broken.

    It lasts while they stay silent: a heartbeat of one of them, or deleting their Workers, ends it.
    """
    present = {w.metadata.name for w in state.workers}
    wave = [s.began for name, s in silences.items() if name in present and s.began is not None]
    if len(wave) < 2 or 2 * len(wave) <= len(state.workers) or max(wave) - min(wave) > _wave_window(state):
        return ""
    return (
        f"{len(wave)} of {len(state.workers)} workers fell silent together: not reclaiming their runs "
        "(the operator or its network may be the one cut off; delete the Workers to release them)"
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
