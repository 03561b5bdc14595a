"""The store: every object the operator watches, parsed into models and grouped by pool."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from workpools.api.base import to_json
from workpools.api.flowrun import FlowRun
from workpools.api.meta import API_VERSION, ObjectKey
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.cache.lines import Lines
from workpools.clock import utc_now
from workpools.core import liveness
from workpools.core.plan import SpecChange
from workpools.core.snapshot import Sighting

Member = WorkQueue | Worker | FlowRun
M = TypeVar("M", WorkQueue, Worker, FlowRun)

POLL_REWAKE = datetime.timedelta(seconds=5)
"""How long a heartbeat that moves a queue's lastPolled wakes nothing after one that did (the write
of the pass it woke should have landed by then)."""

TOMBSTONES_MAX = 100_000
"""Deleted objects remembered (by uid, ~100 bytes each), so a late write response cannot revive one."""


def key_of(body: dict[str, Any]) -> ObjectKey:
    meta = body["metadata"]
    return ObjectKey(meta.get("namespace", ""), meta["name"])


def _version(resource_version: str | None) -> int:
    # resourceVersions are opaque to clients, but every API server we support serves etcd revisions.
    try:
        return int(resource_version or 0)
    except ValueError:
        return 0


def not_newer(new: str | None, stored: str | None) -> bool:
    """True when `new` is not newer than `stored`: a late watch event must not undo our own write,
    and the watch event of a write whose response the store already took changes nothing."""
    return _version(new) <= _version(stored) and stored is not None


@dataclass
class Members(Generic[M]):
    """Objects of one kind that belong to pools (by spec.workPool), indexed both ways."""

    by_key: dict[ObjectKey, M] = field(default_factory=dict)
    by_pool: dict[ObjectKey, dict[ObjectKey, M]] = field(default_factory=lambda: defaultdict(dict))

    def put(self, obj: M) -> set[ObjectKey]:
        """Store `obj` (newer than the stored version: `Store.put` checks); returns the pools it touches."""
        key = ObjectKey(obj.metadata.namespace or "", obj.metadata.name)
        pool = ObjectKey(key.namespace, obj.spec.work_pool)
        touched = {pool}
        old = self.by_key.get(key)
        if old is not None and old.spec.work_pool != obj.spec.work_pool:
            touched |= self.remove(key)
        self.by_key[key] = obj
        self.by_pool[pool][key] = obj
        return touched

    def remove(self, key: ObjectKey) -> set[ObjectKey]:
        old = self.by_key.pop(key, None)
        if old is None:
            return set()
        pool = ObjectKey(key.namespace, old.spec.work_pool)
        members = self.by_pool.get(pool, {})
        members.pop(key, None)
        if not members:
            self.by_pool.pop(pool, None)
        return {pool}

    def of(self, pool: ObjectKey) -> list[M]:
        """Members of `pool`. No particular order: every decision orders what it needs itself."""
        return list(self.by_pool.get(pool, {}).values())


@dataclass
class Store:
    """Everything the operator knows, as last seen on the watch streams.

    Besides the current objects it keeps, per pool, what happened since the pool's reconciler
    last ran (specs replaced by a newer generation, objects deleted), because a level-based pass
    cannot see those in the current state and they are what `Updated` and `Deleted` events say.
    """

    pools: dict[ObjectKey, WorkPool] = field(default_factory=dict)
    queues: Members[WorkQueue] = field(default_factory=Members)
    workers: Members[Worker] = field(default_factory=Members)
    runs: Members[FlowRun] = field(default_factory=Members)
    changes: defaultdict[ObjectKey, list[SpecChange]] = field(default_factory=lambda: defaultdict(list))
    deletions: defaultdict[ObjectKey, list[WorkPool | WorkQueue]] = field(default_factory=lambda: defaultdict(list))
    sightings: defaultdict[ObjectKey, dict[str, Sighting]] = field(default_factory=lambda: defaultdict(dict))
    """Per pool and worker name, what we saw of its heartbeat and when (core/liveness.py). Kept
    after a Worker is deleted while runs are still bound to it."""
    clock: Callable[[], datetime.datetime] = utc_now
    poll_wakes: dict[ObjectKey, tuple[datetime.datetime | None, datetime.datetime]] = field(default_factory=dict)
    """Per queue: the lastPolled stored when a heartbeat moving it last woke the pool, and when."""
    tombstones: dict[str, None] = field(default_factory=dict)
    """uids of deleted objects, oldest first (bounded by TOMBSTONES_MAX)."""
    lines: Lines = field(default_factory=Lines)
    """The runs waiting in each queue's line, in admission order, and the slot holders, per pool."""

    def put(self, body: dict[str, Any]) -> set[ObjectKey]:
        """Record an added or modified object; returns the pools to reconcile.

        A body of an object already deleted (e.g. the response of a write that raced with the
        deletion) is ignored: a deleted object never comes back, not even for a moment.
        """
        kind, key, meta = body["kind"], key_of(body), body["metadata"]
        if meta.get("uid") in self.tombstones:
            return set()
        stored: dict[ObjectKey, Any] = self.pools if kind == "WorkPool" else self._members(kind).by_key
        previous = stored.get(key)
        if previous is not None and not_newer(meta.get("resourceVersion"), previous.metadata.resource_version):
            return set()  # checked before parsing: every write of ours comes back once more on the watch
        if kind == "WorkPool":
            pool = WorkPool.model_validate(body)
            self.pools[key] = pool
            self._note_change(key, previous, pool)
            return {key}
        members: Members[Any] = self._members(kind)
        obj = _MODELS[kind].model_validate(body)
        touched = members.put(obj)
        if isinstance(obj, FlowRun) and touched:
            self.lines.update(previous, obj)
        if isinstance(obj, WorkQueue) and touched:
            self._note_change(ObjectKey(key.namespace, obj.spec.work_pool), previous, obj)
        if isinstance(obj, Worker) and touched:
            pool_key, now = ObjectKey(key.namespace, obj.spec.work_pool), self.clock()
            seen = self.sightings[pool_key]
            seen_before = seen.get(key.name)
            seen[key.name] = liveness.sight(seen_before, obj, now)
            if liveness.is_news(previous, seen_before, obj, now):
                return touched
            moved = liveness.moved_last_polled(previous, obj, self.queues.of(pool_key))
            if not [q for q in moved if self._first_wake_for_poll(q, now)]:
                return set()  # a heartbeat that proves a live worker alive: nothing to decide
        return touched

    def _first_wake_for_poll(self, queue: WorkQueue, now: datetime.datetime) -> bool:
        """Whether a heartbeat that moves `queue`'s lastPolled should wake its pool: once per move.

        At 100 beats/s every beat moves it until the write of the pass woken for it lands; waking
        for each of them ran a pass per beat meanwhile. A write that has not landed POLL_REWAKE
        later (refused, lost) is decided again on the next beat.
        """
        key = ObjectKey(queue.metadata.namespace or "", queue.metadata.name)
        stored = queue.status.last_polled
        earlier = self.poll_wakes.get(key)
        if earlier is not None and earlier[0] == stored and now - earlier[1] < POLL_REWAKE:
            return False
        self.poll_wakes[key] = (stored, now)
        return True

    def sightings_for(self, pool: ObjectKey, bound: Iterable[str]) -> dict[str, Sighting]:
        """The pool's sightings, pruned to its workers and the workers its runs are bound to.

        A bound worker we never saw (deleted before we started) is taken as seen now: a live
        process re-registers within an interval, so its runs are not reclaimed before 3 intervals.
        """
        seen = self.sightings[pool]
        keep = {w.metadata.name for w in self.workers.of(pool)} | set(bound)
        for name in set(seen) - keep:
            del seen[name]
        for name in keep - set(seen):
            seen[name] = Sighting(None, self.clock())
        return dict(seen)

    def remove(self, body: dict[str, Any]) -> set[ObjectKey]:
        """Forget a deleted object; returns the pools to reconcile."""
        kind, key = body["kind"], key_of(body)
        if (uid := body["metadata"].get("uid")) is not None:
            self.tombstones[uid] = None
            if len(self.tombstones) > TOMBSTONES_MAX:
                del self.tombstones[next(iter(self.tombstones))]
        if kind == "WorkPool":
            gone = self.pools.pop(key, None)
            if gone is not None:
                self.deletions[key].append(gone)
            # A pool's absence is no silence of its workers (they cannot register): if it comes
            # back, they are taken as seen then, and have their 3 intervals to register again.
            self.sightings.pop(key, None)
            return {key}
        members: Members[Any] = self._members(kind)
        obj = members.by_key.get(key)
        touched = members.remove(key)
        if isinstance(obj, FlowRun):
            self.lines.update(obj, None)
        if isinstance(obj, WorkQueue):
            self.deletions[ObjectKey(key.namespace, obj.spec.work_pool)].append(obj)
            self.poll_wakes.pop(key, None)
        return touched

    def unlisted(self, kind: str, namespace: str | None, listed: Collection[tuple[str, str]]) -> list[dict[str, Any]]:
        """The stored pool members of `kind` in `namespace` (None: every one) that a whole LIST of
        them did not contain (`listed`: (namespace, name) pairs), as bodies to remove: they are gone."""
        return [
            {"apiVersion": API_VERSION, "kind": kind, **to_json(obj, as_read=True)}
            for key, obj in self._members(kind).by_key.items()
            if (namespace is None or key.namespace == namespace) and key not in listed
        ]

    def take_news(self, pool: ObjectKey) -> tuple[list[SpecChange], list[WorkPool | WorkQueue]]:
        """What changed and what was deleted in `pool` since the last call (the reconciler's inbox)."""
        return self.changes.pop(pool, []), self.deletions.pop(pool, [])

    def _note_change(self, pool: ObjectKey, old: WorkPool | WorkQueue | None, new: WorkPool | WorkQueue) -> None:
        if old is not None and (new.metadata.generation or 0) > (old.metadata.generation or 0):
            self.changes[pool].append(SpecChange(new.KIND, new.metadata.name, old.spec, new.spec))

    def _members(self, kind: str) -> Members[Any]:
        members: dict[str, Members[Any]] = {"WorkQueue": self.queues, "Worker": self.workers, "FlowRun": self.runs}
        return members[kind]


_MODELS: dict[str, type[Member]] = {"WorkQueue": WorkQueue, "Worker": Worker, "FlowRun": FlowRun}
