"""The store (cache/store.py): what it keeps of the watch streams and of the operator's own writes.

Aspects: a deleted object never comes back (a late write response after the DELETED event);
the heartbeat sightings it keeps per pool for liveness (on the operator's clock); which Worker
events wake their pool (a steady heartbeat does not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.builders import T0, at
from workpools.api.base import timestamp
from workpools.api.meta import ObjectKey
from workpools.cache.store import Store
from workpools.core.snapshot import Sighting

POOL = ObjectKey("ns", "p")


def run_body(name: str, version: int, uid: str = "uid-r") -> dict[str, Any]:
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(version)},
        "spec": {"workPool": "p"},
        "status": {"state": "Pending", "worker": "w"},
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


def queue_body(name: str, last_polled: datetime | None) -> dict[str, Any]:
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "WorkQueue",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "1", "generation": 1},
        "spec": {"workPool": "p"},
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
