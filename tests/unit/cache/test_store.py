"""The store (cache/store.py): what it keeps of the watch streams and of the operator's own writes.

Aspects: a deleted object never comes back (a late write response after the DELETED event),
within a bounded memory of deletions; an older resourceVersion never replaces a newer one; the
heartbeat sightings it keeps per pool for liveness (on the operator's clock); which Worker events
wake their pool (a steady heartbeat does not); the reconciler's inbox of spec changes (a newer
generation) and deletions, for `Updated` and `Deleted` events; an object that changes pool leaves
the old one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.builders import T0, at
from workpools.api.base import timestamp
from workpools.api.meta import ObjectKey
from workpools.api.workpool import WorkPoolSpec
from workpools.api.workqueue import WorkQueueSpec
from workpools.cache import store as store_module
from workpools.cache.store import Store
from workpools.core.plan import SpecChange
from workpools.core.snapshot import Sighting

POOL, OTHER = ObjectKey("ns", "p"), ObjectKey("ns", "other")


def run_body(name: str, version: int, uid: str = "uid-r", *, pool: str = "p", state: str = "Pending") -> dict[str, Any]:
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(version)},
        "spec": {"workPool": pool},
        "status": {"state": state, "worker": "w"},
    }


def pool_body(version: int, *, generation: int = 1, limit: int | None = None, uid: str = "uid-p") -> dict[str, Any]:
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": str(version),
            "generation": generation,
        },
        "spec": {"type": "process", "concurrencyLimit": limit},
        "status": {},
    }


def worker_body(
    heartbeat: datetime | None, version: int, phase: str | None = None, *, queues: tuple[str, ...] = ()
) -> dict[str, Any]:
    status: dict[str, Any] = {} if heartbeat is None else {"lastHeartbeatTime": timestamp(heartbeat)}
    if phase is not None:
        status["phase"] = phase
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "Worker",
        "metadata": {"name": "w", "namespace": "ns", "uid": "uid-w", "resourceVersion": str(version)},
        "spec": {"workPool": "p", "heartbeatIntervalSeconds": 10, **({"workQueues": list(queues)} if queues else {})},
        "status": status,
    }


def queue_body(
    name: str,
    last_polled: datetime | None = None,
    *,
    version: int = 1,
    generation: int = 1,
    pool: str = "p",
    priority: int | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "WorkQueue",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": str(version),
            "generation": generation,
        },
        "spec": {"workPool": pool, **({"priority": priority} if priority is not None else {})},
        "status": {} if last_polled is None else {"lastPolled": timestamp(last_polled)},
    }


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_a_write_response_after_the_deletion_does_not_bring_the_run_back() -> None:
    store = Store()
    store.put(run_body("r", 5))
    store.remove(run_body("r", 6))  # the watch's DELETED event
    assert store.put(run_body("r", 6)) == set()  # our write's response, arriving late
    assert store.runs.of(POOL) == []


def test_an_object_recreated_under_the_same_name_is_a_new_one() -> None:
    store = Store()
    store.put(run_body("r", 5))
    store.remove(run_body("r", 6))
    assert store.put(run_body("r", 9, uid="uid-r2")) == {POOL}
    assert [r.metadata.uid for r in store.runs.of(POOL)] == ["uid-r2"]


def test_a_worker_is_sighted_when_its_heartbeat_changes_on_the_operator_clock() -> None:
    clock = Clock()
    store = Store(clock=clock)
    skewed = at(hours=-3)  # the worker's clock is three hours behind: only change matters
    store.put(worker_body(skewed, 1))
    assert store.sightings[POOL]["w"].seen_at == T0
    clock.now = at(seconds=10)
    store.put(worker_body(skewed, 2, phase="Online"))  # our own status write: no new heartbeat
    assert store.sightings[POOL]["w"].seen_at == T0
    clock.now = at(seconds=12)
    store.put(worker_body(at(hours=-3, seconds=10), 3, phase="Online"))
    assert store.sightings[POOL]["w"] == Sighting(at(hours=-3, seconds=10), at(seconds=12), at(seconds=10) - T0)


def test_an_older_worker_version_changes_no_sighting() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(worker_body(at(seconds=5), 7))
    clock.now = at(seconds=20)
    store.put(worker_body(T0, 6))  # a late watch event of an older version
    assert store.sightings[POOL]["w"] == Sighting(at(seconds=5), T0, at(seconds=10) - T0)


def test_sightings_are_kept_for_bound_workers_and_pruned_for_the_rest() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(worker_body(T0, 1))
    store.remove(worker_body(T0, 2))  # deleted while a run is still bound to it
    assert set(store.sightings_for(POOL, {"w"})) == {"w"}
    assert store.sightings_for(POOL, set()) == {}
    clock.now = at(minutes=1)
    # A bound worker never seen (gone before the operator started) is taken as seen now.
    assert store.sightings_for(POOL, {"old"}) == {"old": Sighting(None, at(minutes=1))}


def test_a_deleted_pool_forgets_its_sightings_so_its_workers_get_time_when_it_is_back() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(worker_body(T0, 1))
    store.remove({"kind": "WorkPool", "metadata": {"namespace": "ns", "name": "p", "uid": "uid-p"}})
    store.remove(worker_body(T0, 2))  # garbage-collected with its pool
    clock.now = at(minutes=10)  # the pool is back ten minutes later; its worker has not registered yet
    assert store.sightings_for(POOL, {"w"}) == {"w": Sighting(None, at(minutes=10))}


def beating(store: Store, clock: Clock, *, beats: int = 5, queues: tuple[str, ...] = ()) -> list[set[ObjectKey]]:
    """Heartbeats of an Online worker every 10 s; what each put asked to wake."""
    woken = []
    for i in range(1, beats + 1):
        clock.now = at(seconds=10 * i)
        woken.append(store.put(worker_body(at(seconds=10 * i), 2 + i, phase="Online", queues=queues)))
    return woken


def test_a_steady_heartbeat_wakes_no_pool_but_refreshes_the_sighting() -> None:
    clock = Clock()
    store = Store(clock=clock)
    assert store.put(worker_body(T0, 1)) == {POOL}  # new: the pool must judge it (and write Online)
    assert store.put(worker_body(T0, 2, phase="Online")) == {POOL}  # our write: assignedRuns, conditions may follow
    assert beating(store, clock) == [set()] * 5
    assert store.sightings[POOL]["w"].seen_at == at(seconds=50)
    assert store.workers.of(POOL)[0].status.last_heartbeat_time == at(seconds=50)


def test_the_echo_of_the_operators_own_write_wakes_nothing() -> None:
    store = Store(clock=Clock())
    store.put(worker_body(T0, 1))
    store.put(worker_body(T0, 2, phase="Online"))  # the write's response
    assert store.put(worker_body(T0, 2, phase="Online")) == set()  # the same version on the watch


def test_a_heartbeat_after_a_silence_wakes_the_pool() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(worker_body(T0, 1, phase="Online"))
    clock.now = at(seconds=31)  # 3 x 10 s without a new heartbeat: silent
    assert store.put(worker_body(at(seconds=31), 2, phase="Online")) == {POOL}


def test_a_spec_or_operator_status_change_wakes_the_pool() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(worker_body(T0, 1, phase="Online"))
    clock.now = at(seconds=1)
    assert store.put(worker_body(T0, 2, phase="Online", queues=("q",))) == {POOL}
    assert store.put(worker_body(T0, 3, phase="Offline", queues=("q",))) == {POOL}


def test_a_heartbeat_that_moves_a_served_queues_last_polled_wakes_the_pool() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(queue_body("q", T0))
    store.put(queue_body("other", None))
    store.put(worker_body(T0, 1, phase="Online", queues=("q",)))
    woken = beating(store, clock, beats=3, queues=("q",))  # 10, 20, 30 s: lastPolled moves every 30 s at most
    assert woken == [set(), set(), {POOL}]


def test_beats_that_move_last_polled_before_its_write_lands_wake_the_pool_once() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(queue_body("q", T0))
    store.put(worker_body(T0, 1, phase="Online", queues=("q",)))
    woken = []
    for second in range(30, 35):  # one beat a second (a fleet's worth) from the 30 s boundary on
        clock.now = at(seconds=second)
        woken.append(store.put(worker_body(at(seconds=second), second, phase="Online", queues=("q",))))
    assert woken == [{POOL}] + [set()] * 4  # one pass writes it; the others would decide the same
    store.put(queue_body("q", at(seconds=30), version=2))  # the write landed
    clock.now = at(seconds=60)
    assert store.put(worker_body(at(seconds=60), 60, phase="Online", queues=("q",))) == {POOL}  # the next move


def test_a_last_polled_write_that_never_lands_is_decided_again_a_few_seconds_later() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.put(queue_body("q", T0))
    store.put(worker_body(T0, 1, phase="Online", queues=("q",)))
    woken = []
    for second in (30, 34, 35, 36):
        clock.now = at(seconds=second)
        woken.append(store.put(worker_body(at(seconds=second), second, phase="Online", queues=("q",))))
    assert woken == [{POOL}, set(), {POOL}, set()]  # POLL_REWAKE (5 s) after the first


# --- versions and deletions -----------------------------------------------------------------------


def test_an_older_run_version_is_ignored() -> None:
    store = Store()
    store.put(run_body("r", 5, state="Running"))
    assert store.put(run_body("r", 4, state="Pending")) == set()  # a late watch event behind our write
    assert [(r.metadata.resource_version, r.status.state) for r in store.runs.of(POOL)] == [("5", "Running")]


def test_a_version_not_newer_is_not_even_parsed() -> None:
    # Every write of ours comes back on the watch: its echo must cost a lookup, not a model.
    store = Store()
    store.put(run_body("r", 5, state="Running"))
    echo = run_body("r", 5)
    echo["spec"] = "not a spec at all"  # parsing it would raise
    assert store.put(echo) == set()
    assert store.runs.of(POOL)[0].status.state == "Running"


def test_an_older_pool_version_is_ignored_and_is_no_spec_change() -> None:
    store = Store()
    store.put(pool_body(5, generation=2, limit=3))
    assert store.put(pool_body(4, generation=1, limit=1)) == set()
    assert store.pools[POOL].spec.concurrency_limit == 3
    assert store.take_news(POOL) == ([], [])


def test_a_write_response_after_the_deletion_does_not_bring_the_pool_back() -> None:
    store = Store()
    store.put(pool_body(5))
    assert store.remove(pool_body(6)) == {POOL}
    assert store.put(pool_body(6)) == set()
    assert POOL not in store.pools
    assert store.put(pool_body(9, uid="uid-p2")) == {POOL}  # created again: a new object
    assert store.pools[POOL].metadata.uid == "uid-p2"


def test_deletions_are_remembered_up_to_a_bound_oldest_forgotten_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "TOMBSTONES_MAX", 2)
    store = Store()
    for n in (1, 2, 3):
        store.put(run_body(f"r{n}", n, uid=f"uid-{n}"))
        store.remove(run_body(f"r{n}", 10 + n, uid=f"uid-{n}"))
    assert list(store.tombstones) == ["uid-2", "uid-3"]
    assert store.put(run_body("r3", 13, uid="uid-3")) == set()
    assert store.put(run_body("r1", 11, uid="uid-1")) == {POOL}  # past the bound: only a resourceVersion guards it


# --- the reconciler's inbox: spec changes and deletions -------------------------------------------------


def test_a_newer_pool_generation_is_recorded_as_a_spec_change_once() -> None:
    store = Store()
    store.put(pool_body(1, generation=1, limit=1))
    assert store.take_news(POOL) == ([], [])  # first seen: Created, not Updated
    store.put(pool_body(2, generation=2, limit=3))
    changes, deletions = store.take_news(POOL)
    old, new = WorkPoolSpec(type="process", concurrency_limit=1), WorkPoolSpec(type="process", concurrency_limit=3)
    assert changes == [SpecChange("WorkPool", "p", old, new)]
    assert deletions == []
    assert store.take_news(POOL) == ([], [])  # taken: the next pass does not report it again


def test_a_status_write_of_the_same_generation_is_no_spec_change() -> None:
    store = Store()
    store.put(pool_body(1, generation=1, limit=1))
    assert store.put(pool_body(2, generation=1, limit=1)) == {POOL}  # e.g. our own status write
    assert store.take_news(POOL) == ([], [])


def test_a_queue_spec_change_is_filed_under_its_pool() -> None:
    store = Store()
    store.put(queue_body("q", priority=1))
    store.put(queue_body("q", version=2, generation=2, priority=5))
    changes, _ = store.take_news(POOL)
    old, new = WorkQueueSpec(work_pool="p", priority=1), WorkQueueSpec(work_pool="p", priority=5)
    assert changes == [SpecChange("WorkQueue", "q", old, new)]
    assert store.take_news(OTHER) == ([], [])


def test_deleted_pools_and_queues_are_recorded_for_their_pool_but_runs_are_not() -> None:
    store = Store()
    store.put(pool_body(1))
    store.put(queue_body("q"))
    store.put(run_body("r", 3))
    pool, queue = store.pools[POOL], store.queues.of(POOL)[0]
    store.remove(run_body("r", 4))
    store.remove(queue_body("q", version=5))
    store.remove(pool_body(6))
    assert store.take_news(POOL) == ([], [queue, pool])
    assert store.take_news(POOL) == ([], [])


# --- membership ---------------------------------------------------------------------------------


def test_a_member_that_changes_pool_leaves_the_old_one_and_both_are_woken() -> None:
    store = Store()
    store.put(run_body("r", 1))
    assert store.put(run_body("r", 2, pool="other")) == {POOL, OTHER}
    assert store.runs.of(POOL) == []
    assert [r.metadata.name for r in store.runs.of(OTHER)] == ["r"]
    assert POOL not in store.runs.by_pool  # an emptied pool leaves no entry behind


def test_removing_a_member_wakes_only_its_pool_and_an_unknown_one_wakes_none() -> None:
    store = Store()
    store.put(run_body("r", 1))
    store.put(run_body("s", 1, uid="uid-s", pool="other"))
    assert store.remove(run_body("r", 2)) == {POOL}
    assert store.remove(run_body("never-seen", 3, uid="uid-x")) == set()
    assert [r.metadata.name for r in store.runs.of(OTHER)] == ["s"]
