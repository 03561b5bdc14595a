"""The store: every object the operator watches, parsed into models and grouped by pool."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from workpools.api.flowrun import FlowRun
from workpools.api.meta import ObjectKey
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue

Member = WorkQueue | Worker | FlowRun
M = TypeVar("M", WorkQueue, Worker, FlowRun)


def key_of(body: dict[str, Any]) -> ObjectKey:
    meta = body["metadata"]
    return ObjectKey(meta.get("namespace", ""), meta["name"])


def _version(resource_version: str | None) -> int:
    # resourceVersions are opaque to clients, but every API server we support serves etcd revisions.
    try:
        return int(resource_version or 0)
    except ValueError:
        return 0


def is_older(new: str | None, stored: str | None) -> bool:
    """True when `new` is an older version than `stored`: a late watch event must not undo our own write."""
    return _version(new) < _version(stored)


@dataclass
class Members(Generic[M]):
    """Objects of one kind that belong to pools (by spec.workPool), indexed both ways."""

    by_key: dict[ObjectKey, M] = field(default_factory=dict)
    by_pool: dict[ObjectKey, dict[ObjectKey, M]] = field(default_factory=lambda: defaultdict(dict))

    def put(self, obj: M) -> set[ObjectKey]:
        """Store `obj`; returns the pools whose membership or content changed."""
        key = ObjectKey(obj.metadata.namespace or "", obj.metadata.name)
        pool = ObjectKey(key.namespace, obj.spec.work_pool)
        touched = {pool}
        old = self.by_key.get(key)
        if old is not None and is_older(obj.metadata.resource_version, old.metadata.resource_version):
            return set()
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
        """Members of `pool`, ordered by name (stable for decisions and for tests)."""
        return [m for _, m in sorted(self.by_pool.get(pool, {}).items())]


@dataclass
class Store:
    """Everything the operator knows, as last seen on the watch streams."""

    pools: dict[ObjectKey, WorkPool] = field(default_factory=dict)
    deleted_pools: dict[ObjectKey, WorkPool] = field(default_factory=dict)
    """Pools deleted since their reconciler last ran (it posts their `Deleted` event)."""
    queues: Members[WorkQueue] = field(default_factory=Members)
    workers: Members[Worker] = field(default_factory=Members)
    runs: Members[FlowRun] = field(default_factory=Members)

    def put(self, body: dict[str, Any]) -> set[ObjectKey]:
        """Record an added or modified object; returns the pools to reconcile."""
        kind = body["kind"]
        if kind == "WorkPool":
            pool, key = WorkPool.model_validate(body), key_of(body)
            old = self.pools.get(key)
            if old is None or not is_older(pool.metadata.resource_version, old.metadata.resource_version):
                self.pools[key] = pool
            return {key}
        members: Members[Any] = self._members(kind)
        return members.put(_MODELS[kind].model_validate(body))

    def remove(self, body: dict[str, Any]) -> set[ObjectKey]:
        """Forget a deleted object; returns the pools to reconcile."""
        kind, key = body["kind"], key_of(body)
        if kind == "WorkPool":
            gone = self.pools.pop(key, None)
            if gone is not None:
                self.deleted_pools[key] = gone
            return {key}
        return self._members(kind).remove(key)

    def pool_keys(self) -> Iterator[ObjectKey]:
        """Every pool that exists or is referenced by something."""
        seen = set(self.pools)
        for members in (self.queues, self.workers, self.runs):
            seen.update(members.by_pool)
        return iter(sorted(seen))

    def _members(self, kind: str) -> Members[Any]:
        members: dict[str, Members[Any]] = {"WorkQueue": self.queues, "Worker": self.workers, "FlowRun": self.runs}
        return members[kind]


_MODELS: dict[str, type[Member]] = {"WorkQueue": WorkQueue, "Worker": Worker, "FlowRun": FlowRun}
