"""Kubernetes-shaped objects for the run lifecycle, admission and deadline tests.

The functions under test read API models, so these builders make them from the dicts the API
server would send (camelCase, as `kubectl get -o json` shows them), with only the fields a case
is about. `settle` applies a pass's status patches the way the API server applies a merge patch.

    flowrun("r", state=S.PENDING, worker="w", acquired=at(seconds=-5))
    wkr("w", heartbeat=at(seconds=-10), draining=True)
    pool_state(runs=[...], workers=[...], pool=wp(pendingTimeoutSeconds=60), now=at(minutes=1))

Defaults: pool "p" whose only queue is its default queue "p-default", created at `T0`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from tests.builders import T0, at
from workpools.api.base import timestamp, to_json
from workpools.api.flowrun import FlowRun
from workpools.api.phases import WorkerPhase
from workpools.api.states import StateType
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.core.liveness import alive, heartbeat_interval
from workpools.core.runs import RunChange
from workpools.core.snapshot import PoolState, Sighting

S = StateType
DEFAULT_QUEUE = "p-default"


def wp(name: str = "p", **spec: Any) -> WorkPool:
    return WorkPool.model_validate(
        {"kind": "WorkPool", "metadata": {"name": name, "namespace": "ns", "generation": 1}, "spec": spec}
    )


def wq(name: str = DEFAULT_QUEUE, *, pool: str = "p", **spec: Any) -> WorkQueue:
    return WorkQueue.model_validate(
        {
            "kind": "WorkQueue",
            "metadata": {"name": name, "namespace": "ns", "generation": 1, "creationTimestamp": timestamp(T0)},
            "spec": {"workPool": pool, **spec},
        }
    )


def wkr(
    name: str,
    *,
    heartbeat: datetime | None = T0,
    interval: int | None = None,
    draining: bool = False,
    queues: Iterable[str] = (),
    limit: int | None = None,
    offline_since: datetime | None = None,
    identity: dict[str, str] | None = None,
) -> Worker:
    """A Worker; `offline_since` writes the Ready=False condition the operator sets when it goes Offline."""
    spec: dict[str, Any] = {"workPool": "p", "workQueues": list(queues), "draining": draining}
    if interval is not None:
        spec["heartbeatIntervalSeconds"] = interval
    if limit is not None:
        spec["limit"] = limit
    if identity is not None:
        spec["identity"] = identity
    status: dict[str, Any] = {}
    if heartbeat is not None:
        status["lastHeartbeatTime"] = timestamp(heartbeat)
    if offline_since is not None:
        status["conditions"] = [condition("Ready", False, "HeartbeatMissed", "", offline_since)]
    return Worker.model_validate(
        {
            "kind": "Worker",
            "metadata": {"name": name, "namespace": "ns", "generation": 1},
            "spec": spec,
            "status": status,
        }
    )


def condition(type_: str, status: bool, reason: str, message: str, since: datetime) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(since),
    }


def flowrun(
    name: str,
    *,
    queue: str | None = None,
    state: StateType | None = S.SCHEDULED,
    state_name: str | None = None,
    scheduled: datetime | None = None,
    spec_scheduled: datetime | None = None,
    created: datetime = T0,
    worker: str | None = None,
    acquired: datetime | None = None,
    cancel: bool = False,
    conditions: Sequence[dict[str, Any]] = (),
    generation: int = 1,
    ended: datetime | None = None,
    cancelling_since: datetime | None = None,
    labels: dict[str, str] | None = None,
) -> FlowRun:
    """A FlowRun. `scheduled` is status.scheduledTime (defaulted to `created` once started, as the
    operator writes it); `spec_scheduled` is spec.scheduledTime; `state=None` is a new run;
    `ended` is status.endTime, `cancelling_since` status.cancellingSince of a Cancelling run
    (defaulted to `acquired`, else `created`)."""
    spec: dict[str, Any] = {"workPool": "p", "cancel": cancel}
    if queue is not None:
        spec["workQueue"] = queue
    if spec_scheduled is not None:
        spec["scheduledTime"] = timestamp(spec_scheduled)
    status: dict[str, Any] = {"conditions": list(conditions)}
    if state is not None:
        status["state"] = state.value
        status["stateName"] = state_name or state.value
        status["scheduledTime"] = timestamp(scheduled or spec_scheduled or created)
    if worker is not None:
        status["worker"] = worker
    if acquired is not None:
        status["slot"] = {"acquiredAt": timestamp(acquired), "queue": queue or DEFAULT_QUEUE}
    if ended is not None:
        status["endTime"] = timestamp(ended)
    if state is S.CANCELLING:  # stamped by the operator's Cancelling write
        status["cancellingSince"] = timestamp(cancelling_since or acquired or created)
    return FlowRun.model_validate(
        {
            "kind": "FlowRun",
            "metadata": {
                "name": name,
                "namespace": "ns",
                "generation": generation,
                "resourceVersion": "1",
                "creationTimestamp": timestamp(created),
                "labels": labels or {},
            },
            "spec": spec,
            "status": status,
        }
    )


def bound_run(
    state: StateType, name: str = "r", *, worker: str = "w", acquired: datetime = T0, cancel: bool = False
) -> FlowRun:
    """A slot-holding run bound to `worker`, its slot taken at `acquired` (also its scheduled time)."""
    return flowrun(name, state=state, worker=worker, acquired=acquired, cancel=cancel, scheduled=acquired)


def pool_state(
    *,
    runs: Sequence[FlowRun] = (),
    workers: Sequence[Worker] = (),
    pool: WorkPool | None = None,
    queues: Sequence[WorkQueue] | None = None,
    now: datetime = T0,
) -> PoolState:
    """Pool "p" (a plain one unless given; `without_pool` removes it) with its default queue.

    Workers are as earlier passes left them (see `judged`).
    """
    return PoolState(
        name="p",
        pool=wp() if pool is None else pool,
        queues=[wq()] if queues is None else queues,
        runs=runs,
        now=now,
        **judged(workers, runs, now),
    )


def judged(workers: Sequence[Worker], runs: Sequence[FlowRun], now: datetime) -> dict[str, Any]:
    """PoolState's worker fields as if the operator had seen every heartbeat the moment it was
    written, had already written each worker's phase at `now` (a silent one confirmed Offline; a
    phase a case sets itself is kept), and had read every bound worker that is gone."""
    sightings = {
        w.metadata.name: Sighting(w.status.last_heartbeat_time, w.status.last_heartbeat_time, heartbeat_interval(w))
        for w in workers
    }
    settled = []
    for worker in workers:
        phase = worker.status.phase
        if phase is None:
            phase = WorkerPhase.ONLINE if alive(sightings[worker.metadata.name], now) else WorkerPhase.OFFLINE
        settled.append(worker.model_copy(update={"status": worker.status.model_copy(update={"phase": phase})}))
    gone = {r.status.worker for r in runs if r.status.worker} - set(sightings)
    return {"workers": settled, "sightings": sightings, "confirmed_silent": frozenset(gone)}


def without_pool(state: PoolState) -> PoolState:
    return replace(state, pool=None)


def merge(document: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value)
    return merged


def apply(change: RunChange) -> FlowRun:
    """The run as the API server stores it after the change's status merge patch."""
    body = to_json(change.run)
    body["status"] = merge(body.get("status", {}), change.patch)
    return FlowRun.model_validate(body)


def settle(state: PoolState, changes: Sequence[RunChange]) -> PoolState:
    """The pool once every change of a pass has landed (the reconciler's next read of the store)."""
    done = {c.run.metadata.name: apply(c) for c in changes}
    assert len(done) == len(changes), "at most one change per run and pass"
    return replace(state, runs=[done.get(r.metadata.name, r) for r in state.runs])


def moves(changes: Sequence[RunChange]) -> dict[str, tuple[StateType | None, StateType]]:
    """run → (old state, new state) for the changes that move a run."""
    return {
        c.run.metadata.name: (c.run.status.state, StateType(c.patch["state"])) for c in changes if "state" in c.patch
    }


# --- random pools -----------------------------------------------------------------------------

RUN_STATES = st.sampled_from([None, *StateType])
SECONDS = st.integers(min_value=-200, max_value=60)
HEARTBEATS = st.sampled_from([None, -300, -95, -31, -5, -1, 0, 0]).map(lambda s: None if s is None else at(seconds=s))
"""Mostly recent: with the default 30 s interval, -31 is still Online; with 10 s it is not."""


@st.composite
def pool_states(draw: st.DrawFn, *, new_runs: bool = True) -> PoolState:
    """A pool at `T0` with up to 3 workers (fresh, stale, silent, draining; some with a Ready=False
    condition), two queues and up to 10 runs in any state, bound to any worker or none.
    `new_runs=False` leaves out runs the operator has not started yet."""
    names = draw(st.lists(st.sampled_from(["w0", "w1", "w2"]), max_size=3, unique=True))
    workers = [
        wkr(
            name,
            heartbeat=draw(HEARTBEATS),
            interval=draw(st.sampled_from([None, 1, 10])),
            draining=draw(st.sampled_from([False, False, False, True])),
            queues=draw(st.sampled_from([(), (), (DEFAULT_QUEUE,), ("other",)])),
            limit=draw(st.none() | st.integers(min_value=1, max_value=2)),
            offline_since=draw(st.none() | SECONDS.map(lambda s: at(seconds=s))),
        )
        for name in names
    ]
    runs = []
    for index in range(draw(st.integers(min_value=0, max_value=10))):
        state = draw(RUN_STATES if new_runs else RUN_STATES.filter(lambda s: s is not None))
        holding = state in (S.PENDING, S.RUNNING, S.CANCELLING)
        runs.append(
            flowrun(
                f"r{index}",
                queue=draw(st.sampled_from([None, DEFAULT_QUEUE, "other", "gone"])),
                state=state,
                state_name=draw(st.sampled_from([None, "Late", "AwaitingRetry"])) if state is not None else None,
                spec_scheduled=draw(st.none() | SECONDS.map(lambda s: at(seconds=s))),
                created=at(seconds=draw(st.integers(min_value=-100, max_value=0))),
                worker=draw(st.sampled_from([*names, *names, *names, "lost"])) if holding else None,
                acquired=at(seconds=draw(SECONDS.filter(lambda s: s <= 0))) if holding else None,
                cancel=draw(st.booleans()),
            )
        )
    pool = None
    if draw(st.integers(min_value=0, max_value=7)):  # seldom gone
        pool = wp(
            paused=draw(st.sampled_from([False] * 5 + [True])),
            concurrencyLimit=draw(st.none() | st.integers(min_value=0, max_value=4)),
            pendingTimeoutSeconds=draw(st.none() | st.integers(min_value=1, max_value=120)),
            workerTTLAfterOfflineSeconds=draw(st.none() | st.integers(min_value=1, max_value=300)),
            latePolicy=draw(st.sampled_from([None, {"action": "Cancel", "afterSeconds": 30}])),
        )
    queues = [wq(priority=1), wq("other", priority=2, concurrencyLimit=draw(st.none() | st.integers(0, 2)))]
    return PoolState(name="p", pool=pool, queues=queues, runs=runs, now=T0, **judged(workers, runs, T0))
