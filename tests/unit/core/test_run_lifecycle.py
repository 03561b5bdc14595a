"""What the operator writes to FlowRuns (`core/runs.py`), decided on API models without a server.

DESIGN §4 "Who writes which transition", "Slots follow liveness", "Late runs"; issue 5 items 1,
3 and 5. Aspects: the views admission reads; start; cancel; recovery from lost, draining and
stuck workers; Late; terminal runs left alone; the grant and hold patches and when a hold is
rewritten; and properties: every move is one the operator may write (`api.states.ALLOWED`),
passes converge, a settled pool is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings

from tests.builders import T0, at
from tests.unit.core.run_support import (
    DEFAULT_QUEUE,
    bound_run,
    condition,
    flowrun,
    moves,
    pool_state,
    pool_states,
    settle,
    without_pool,
    wkr,
    wp,
    wq,
)
from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.states import ALLOWED, SLOT_HOLDING, TERMINAL, StateType, Writer
from workpools.api.worker import Worker
from workpools.core import liveness
from workpools.core.runs import (
    RunChange,
    admission_changes,
    lifecycle_changes,
    run_view,
    worker_view,
)
from workpools.core.selection import scheduled_time
from workpools.core.snapshot import PoolState, RunView, WorkerView

S = StateType
PROPERTY = settings(deadline=None)
"""No per-example deadline: a loaded CI machine must not turn slowness into failures."""
NOW = at(minutes=10)
"""The moment of every pass below, unless a case says otherwise."""


def ts(moment: datetime) -> str:
    return timestamp(moment)


def only(changes: Sequence[RunChange]) -> RunChange:
    assert len(changes) == 1, [(c.run.metadata.name, c.patch) for c in changes]
    return changes[0]


def event_of(change: RunChange) -> tuple[str, str] | None:
    return None if change.event is None else (change.event.type.value, change.event.reason)


# --- views: what admission reads from the models ----------------------------------------------


def test_queue_of_is_spec_work_queue_or_the_pools_default() -> None:
    assert queue_of(flowrun("r", queue="etl")) == "etl"
    assert queue_of(flowrun("r")) == "p-default"
    nightly = flowrun("r")
    nightly.spec.work_pool = "nightly"
    assert queue_of(nightly) == "nightly-default"


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        pytest.param(flowrun("r", state=None, created=at(seconds=-7)), at(seconds=-7), id="new-run-creation-time"),
        pytest.param(flowrun("r", state=None, spec_scheduled=at(hours=1)), at(hours=1), id="new-run-spec-time"),
        pytest.param(
            flowrun("r", scheduled=at(minutes=3), spec_scheduled=at(hours=1)), at(minutes=3), id="status-time-wins"
        ),
    ],
)
def test_scheduled_time_is_status_then_spec_then_creation(run: FlowRun, expected: datetime) -> None:
    assert scheduled_time(run) == expected


def test_run_view_carries_what_admission_reads() -> None:
    bound = flowrun("r", queue="etl", state=S.RUNNING, worker="w", acquired=at(seconds=-4), created=at(seconds=-9))
    assert run_view(bound, "p") == RunView(
        name="r",
        pool="p",
        queue="etl",
        state=S.RUNNING,
        scheduled_time=at(seconds=-9),
        created=at(seconds=-9),
        worker="w",
        slot_acquired_at=at(seconds=-4),
    )


def test_run_view_of_a_new_run_is_scheduled_in_the_default_queue() -> None:
    view = run_view(flowrun("r", state=None, spec_scheduled=at(hours=2)), "p")
    assert (view.state, view.queue, view.scheduled_time, view.worker, view.slot_acquired_at) == (
        S.SCHEDULED,
        "p-default",
        at(hours=2),
        None,
        None,
    )


def view_at(worker: Worker, now: datetime) -> WorkerView:
    """The worker as admission sees it at `now`, each heartbeat seen when it was written."""
    return worker_view(worker, liveness.judge(pool_state(workers=[worker], now=now)))


@pytest.mark.parametrize(
    ("worker", "online"),
    [
        pytest.param(wkr("w", heartbeat=T0), True, id="fresh"),
        pytest.param(wkr("w", heartbeat=T0 - timedelta(seconds=90)), True, id="exactly-3x30s-still-online"),
        pytest.param(wkr("w", heartbeat=T0 - timedelta(seconds=90, microseconds=1)), False, id="past-3x30s"),
        pytest.param(wkr("w", heartbeat=at(seconds=-15), interval=5), True, id="exactly-3x5s"),
        pytest.param(wkr("w", heartbeat=at(seconds=-16), interval=5), False, id="past-3x5s"),
        pytest.param(wkr("w", heartbeat=None), False, id="never-heartbeat"),
    ],
)
def test_worker_view_is_online_while_the_heartbeat_is_recent(worker: Any, online: bool) -> None:
    assert view_at(worker, T0).online is online


def test_worker_view_carries_draining_queues_and_limit() -> None:
    view = view_at(wkr("w", draining=True, queues=["a", "b"], limit=3), T0)
    assert view == WorkerView(name="w", online=True, draining=True, queues=frozenset({"a", "b"}), limit=3)
    assert view_at(wkr("w"), T0).queues == frozenset()
    assert view_at(wkr("w"), T0).limit is None


# --- start: a new run joins its queue -----------------------------------------------------------


def first_write(run: FlowRun, now: datetime = T0) -> RunChange:
    """The one change a new run gets in a pass where no worker is Online: Scheduled, and why it waits."""
    state = pool_state(runs=[run], now=now)
    assert lifecycle_changes(state) == [], "a new run is stamped by admission, with its grant or hold"
    return only(admission_changes(state))


def test_a_new_run_that_must_wait_starts_scheduled_at_its_creation_time_with_its_reason() -> None:
    change = first_write(flowrun("r", state=None, created=at(seconds=-3)))
    assert {k: v for k, v in change.patch.items() if k != "conditions"} == {
        "state": "Scheduled",
        "stateName": "Scheduled",
        "scheduledTime": ts(at(seconds=-3)),
        "attempt": 1,
        "observedGeneration": 1,
    }
    assert [(c["type"], c["status"], c["reason"]) for c in change.patch["conditions"]] == [
        ("Admitted", "False", "NoOnlineWorker")
    ]
    assert (change.event, change.granted_to) == (None, None)


def test_a_new_run_starts_at_its_spec_scheduled_time() -> None:
    change = first_write(flowrun("r", state=None, spec_scheduled=at(hours=1), generation=3))
    assert (change.patch["scheduledTime"], change.patch["observedGeneration"]) == (ts(at(hours=1)), 3)
    assert change.patch["conditions"][0]["reason"] == "NotYetScheduled"


@pytest.mark.parametrize(
    ("overdue", "name"),
    [
        pytest.param(timedelta(0), "Scheduled", id="on-time"),
        pytest.param(timedelta(seconds=15), "Scheduled", id="exactly-15s"),
        pytest.param(timedelta(seconds=15, microseconds=1), "Late", id="just-over-15s"),
        pytest.param(timedelta(minutes=5), "Late", id="5min"),
    ],
)
def test_a_new_overdue_run_starts_late(overdue: timedelta, name: str) -> None:
    change = first_write(flowrun("r", state=None, spec_scheduled=T0, created=T0), now=T0 + overdue)
    assert (change.patch["state"], change.patch["stateName"]) == ("Scheduled", name)


def test_a_new_run_is_late_by_its_spec_time_not_its_creation() -> None:
    run = flowrun("r", state=None, spec_scheduled=at(seconds=-20), created=T0)
    assert first_write(run).patch["stateName"] == "Late"


def test_a_new_run_that_can_be_admitted_goes_to_pending_in_one_write() -> None:
    state = pool_state(runs=[flowrun("r", state=None, created=at(seconds=-3))], workers=[wkr("w")], now=T0)
    assert lifecycle_changes(state) == []
    change = only(admission_changes(state))
    assert change.granted_to == "w"
    assert {k: change.patch[k] for k in ("state", "stateName", "scheduledTime", "observedGeneration", "worker")} == {
        "state": "Pending",
        "stateName": "Pending",
        "scheduledTime": ts(at(seconds=-3)),
        "observedGeneration": 1,
        "worker": "w",
    }
    assert moves([change]) == {"r": (None, S.PENDING)}


def test_a_new_run_with_cancel_is_started_first_then_cancelled() -> None:
    # None → Cancelled is not a transition: the run goes through Scheduled, one write each.
    state = pool_state(runs=[flowrun("r", state=None, cancel=True)], workers=[wkr("w")], now=T0)
    first = lifecycle_changes(state)
    assert moves(first) == {"r": (None, S.SCHEDULED)}
    assert admission_changes(state) == []  # never granted meanwhile
    assert moves(lifecycle_changes(settle(state, first))) == {"r": (S.SCHEDULED, S.CANCELLED)}


def test_a_new_run_of_a_missing_pool_still_starts() -> None:
    state = without_pool(pool_state(runs=[flowrun("r", state=None)], now=T0))
    assert lifecycle_changes(state) == []
    change = only(admission_changes(state))
    assert moves([change]) == {"r": (None, S.SCHEDULED)}
    assert change.patch["conditions"][0]["reason"] == "PoolNotFound"


def test_a_started_run_is_not_started_again() -> None:
    state = pool_state(runs=[flowrun("r", state=None)], now=T0)
    assert admission_changes(settle(state, admission_changes(state))) == []


# --- cancel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.SCHEDULED, S.PAUSED])
def test_cancel_before_anything_runs_is_cancelled_at_once(state: StateType) -> None:
    change = only(lifecycle_changes(pool_state(runs=[flowrun("r", state=state, cancel=True)], now=NOW)))
    assert change.patch == {
        "state": "Cancelled",
        "stateName": "Cancelled",
        "message": "cancelled by request (spec.cancel)",
        "endTime": ts(NOW),
        "slot": None,
    }
    assert event_of(change) == ("Normal", "Cancelled")
    assert change.event is not None
    assert "FlowRun r" in change.event.message


@pytest.mark.parametrize("state", [S.PENDING, S.RUNNING])
def test_cancel_of_an_active_run_asks_its_worker_to_stop(state: StateType) -> None:
    run = flowrun("r", state=state, worker="w", acquired=at(seconds=-5), cancel=True)
    change = only(lifecycle_changes(pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW)))
    # The slot stays held (no `slot`, no `worker` in the patch) until the worker reports Cancelled.
    assert change.patch == {
        "state": "Cancelling",
        "stateName": "Cancelling",
        "cancellingSince": ts(NOW),
        "message": "cancellation requested (spec.cancel)",
        "observedGeneration": 1,
    }
    assert change.event is not None
    assert (change.event.type, change.event.reason, change.event.message) == (
        "Normal",
        "Cancelling",
        "FlowRun r cancellation requested (spec.cancel); worker w stops it and reports Cancelled",
    )


def test_cancelling_with_a_live_worker_is_left_to_the_worker() -> None:
    run = flowrun("r", state=S.CANCELLING, worker="w", acquired=at(seconds=-5), cancel=True, cancelling_since=NOW)
    assert lifecycle_changes(pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW)) == []


@pytest.mark.parametrize("state", [S.SCHEDULED, S.PAUSED, S.PENDING, S.RUNNING, S.CANCELLING])
def test_without_cancel_nothing_is_cancelled(state: StateType) -> None:
    holding = state in SLOT_HOLDING
    run = flowrun("r", state=state, scheduled=NOW, worker="w" if holding else None, acquired=NOW if holding else None)
    assert lifecycle_changes(pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW)) == []


# --- recovery: no slot outlives its worker ------------------------------------------------------

LOST_WORKERS = {
    "offline": [wkr("w", heartbeat=NOW - timedelta(seconds=120))],
    "offline-short-interval": [wkr("w", heartbeat=NOW - timedelta(seconds=20), interval=5)],
    "never-heartbeat": [wkr("w", heartbeat=None)],
    "missing": [wkr("other", heartbeat=NOW)],
    "offline-and-draining": [wkr("w", heartbeat=NOW - timedelta(seconds=120), draining=True)],
}


def bound(
    state: StateType, name: str = "r", *, cancel: bool = False, acquired: datetime = NOW - timedelta(seconds=30)
) -> FlowRun:
    """A run of worker "w" that took its slot `acquired` (30 s before NOW), scheduled at that moment."""
    return bound_run(state, name, acquired=acquired, cancel=cancel)


@pytest.mark.parametrize("state", sorted(SLOT_HOLDING))
def test_a_worker_just_gone_offline_keeps_its_runs_one_interval_more(state: StateType) -> None:
    # Silent since 90 s, written Offline: a wave of silences is seen whole before anything is taken.
    silent = pool_state(runs=[bound(state)], workers=[wkr("w", heartbeat=NOW - timedelta(seconds=119))], now=NOW)
    assert lifecycle_changes(silent) == []
    assert lifecycle_changes(replace(silent, now=NOW + timedelta(seconds=1)))


@pytest.mark.parametrize("workers", list(LOST_WORKERS.values()), ids=list(LOST_WORKERS))
def test_a_pending_run_of_a_lost_worker_returns_to_scheduled(workers: list[Any]) -> None:
    state = pool_state(runs=[bound(S.PENDING)], workers=workers, now=NOW)
    change = only(lifecycle_changes(state))
    assert change.patch == {
        "state": "Scheduled",
        "stateName": "Late",  # overdue by now: requeued runs show Late at once
        "worker": None,
        "slot": None,
        "message": "worker w went offline before starting it",
    }
    assert event_of(change) == ("Warning", "WorkerLost")
    again = settle(state, [change]).runs[0].status
    assert (again.state, again.worker, again.slot) == (S.SCHEDULED, None, None)


@pytest.mark.parametrize("workers", list(LOST_WORKERS.values()), ids=list(LOST_WORKERS))
def test_a_running_run_of_a_lost_worker_crashes(workers: list[Any]) -> None:
    change = only(lifecycle_changes(pool_state(runs=[bound(S.RUNNING)], workers=workers, now=NOW)))
    assert change.patch == {
        "state": "Crashed",
        "stateName": "Crashed",
        "message": "worker w went offline while it was running",
        "endTime": ts(NOW),
        "slot": None,
    }
    assert event_of(change) == ("Warning", "WorkerLost")


@pytest.mark.parametrize("workers", list(LOST_WORKERS.values()), ids=list(LOST_WORKERS))
def test_a_cancelling_run_of_a_lost_worker_is_cancelled(workers: list[Any]) -> None:
    change = only(lifecycle_changes(pool_state(runs=[bound(S.CANCELLING)], workers=workers, now=NOW)))
    assert change.patch == {
        "state": "Cancelled",
        "stateName": "Cancelled",
        "message": "worker w went offline while cancelling it",
        "endTime": ts(NOW),
        "slot": None,
    }
    assert event_of(change) == ("Warning", "WorkerLost")


@pytest.mark.parametrize("state", [S.PENDING, S.RUNNING, S.CANCELLING])
@pytest.mark.parametrize(
    "heartbeat",
    [pytest.param(NOW, id="fresh"), pytest.param(NOW - timedelta(seconds=90), id="exactly-3x-interval")],
)
def test_runs_of_an_online_worker_are_left_alone(state: StateType, heartbeat: datetime) -> None:
    assert lifecycle_changes(pool_state(runs=[bound(state)], workers=[wkr("w", heartbeat=heartbeat)], now=NOW)) == []


def test_only_the_runs_own_worker_matters() -> None:
    runs = [bound(S.RUNNING)]
    workers = [wkr("w", heartbeat=NOW - timedelta(hours=1)), wkr("healthy", heartbeat=NOW)]
    assert moves(lifecycle_changes(pool_state(runs=runs, workers=workers, now=NOW))) == {"r": (S.RUNNING, S.CRASHED)}


def test_a_draining_worker_hands_back_runs_it_has_not_started() -> None:
    state = pool_state(runs=[bound(S.PENDING)], workers=[wkr("w", heartbeat=NOW, draining=True)], now=NOW)
    change = only(lifecycle_changes(state))
    assert change.patch == {
        "state": "Scheduled",
        "stateName": "Late",  # overdue by now: requeued runs show Late at once
        "worker": None,
        "slot": None,
        "message": "worker w is draining; handed back before it started",
    }
    assert event_of(change) == ("Normal", "HandedBack")


@pytest.mark.parametrize("state", [S.RUNNING, S.CANCELLING])
def test_a_draining_worker_finishes_what_it_started(state: StateType) -> None:
    workers = [wkr("w", heartbeat=NOW, draining=True)]
    assert lifecycle_changes(pool_state(runs=[bound(state)], workers=workers, now=NOW)) == []


@pytest.mark.parametrize(
    ("waited", "requeued"),
    [
        pytest.param(timedelta(seconds=59), False, id="59s"),
        pytest.param(timedelta(seconds=60), False, id="exactly-60s"),
        pytest.param(timedelta(seconds=60, microseconds=1), True, id="just-over-60s"),
        pytest.param(timedelta(hours=1), True, id="1h"),
    ],
)
def test_a_pending_run_not_started_in_time_returns_to_scheduled(waited: timedelta, requeued: bool) -> None:
    state = pool_state(
        runs=[bound(S.PENDING, acquired=NOW - waited)],
        workers=[wkr("w", heartbeat=NOW)],
        pool=wp(pendingTimeoutSeconds=60),
        now=NOW,
    )
    changes = lifecycle_changes(state)
    if not requeued:
        assert changes == []
        return
    change = only(changes)
    assert change.patch == {
        "state": "Scheduled",
        "stateName": "Late",  # overdue by now: requeued runs show Late at once
        "worker": None,
        "slot": None,
        "message": "worker w did not start it within pendingTimeoutSeconds (60s)",
    }
    assert event_of(change) == ("Warning", "PendingTimeout")


def test_without_a_pending_timeout_a_pending_run_waits_for_its_worker() -> None:
    state = pool_state(runs=[bound(S.PENDING, acquired=NOW - timedelta(days=1))], workers=[wkr("w", heartbeat=NOW)])
    assert lifecycle_changes(state) == []
    assert lifecycle_changes(without_pool(state)) == []


@pytest.mark.parametrize("state", [S.RUNNING, S.CANCELLING])
def test_the_pending_timeout_is_for_pending_runs_only(state: StateType) -> None:
    runs = [bound(state, acquired=NOW - timedelta(hours=1))]
    pool = wp(pendingTimeoutSeconds=60, cancellingTimeoutSeconds=86_400)
    state_ = pool_state(runs=runs, workers=[wkr("w", heartbeat=NOW)], pool=pool, now=NOW)
    assert lifecycle_changes(state_) == []


@pytest.mark.parametrize(
    ("state", "moved", "event"),
    [
        pytest.param(S.PENDING, S.SCHEDULED, ("Warning", "WorkerLost"), id="pending-requeued-not-cancelling"),
        pytest.param(S.RUNNING, S.CRASHED, ("Warning", "WorkerLost"), id="running-crashed-not-cancelling"),
        pytest.param(S.CANCELLING, S.CANCELLED, ("Warning", "WorkerLost"), id="cancelling-cancelled"),
    ],
)
def test_recovery_comes_before_cancellation(state: StateType, moved: StateType, event: tuple[str, str]) -> None:
    # A lost worker cannot finish a cancellation: its run is recovered first.
    lost = pool_state(runs=[bound(state, cancel=True)], workers=[], now=NOW)
    change = only(lifecycle_changes(lost))
    assert (StateType(change.patch["state"]), event_of(change)) == (moved, event)


def test_a_handed_back_run_with_cancel_is_then_cancelled() -> None:
    state = pool_state(runs=[bound(S.PENDING, cancel=True)], workers=[wkr("w", heartbeat=NOW, draining=True)], now=NOW)
    first = lifecycle_changes(state)
    assert moves(first) == {"r": (S.PENDING, S.SCHEDULED)}
    assert moves(lifecycle_changes(settle(state, first))) == {"r": (S.SCHEDULED, S.CANCELLED)}


@pytest.mark.parametrize("state", [S.PENDING, S.RUNNING, S.CANCELLING])
def test_runs_of_a_deleted_pool_keep_their_state(state: StateType) -> None:
    # Deleting a pool garbage-collects its Workers, but their processes may still be running these
    # runs: nothing is reclaimed (their workers are gone from the API, not known to be dead).
    gone = without_pool(pool_state(runs=[bound(state)], workers=[], now=NOW))
    assert lifecycle_changes(gone) == []
    cancelled = without_pool(pool_state(runs=[bound(S.RUNNING, cancel=True)], workers=[], now=NOW))
    assert moves(lifecycle_changes(cancelled)) == {"r": (S.RUNNING, S.CANCELLING)}  # a request still goes through


# --- Late -----------------------------------------------------------------------------------


def late_marks(state: PoolState) -> dict[str, str]:
    """Run → the stateName the pass writes; a Late mark goes with the run's hold reason."""
    assert not any("stateName" in c.patch for c in lifecycle_changes(state))
    return {c.run.metadata.name: c.patch["stateName"] for c in admission_changes(state) if "stateName" in c.patch}


@pytest.mark.parametrize(
    ("overdue", "late"),
    [
        pytest.param(timedelta(seconds=-30), False, id="in-the-future"),
        pytest.param(timedelta(0), False, id="due-now"),
        pytest.param(timedelta(seconds=15), False, id="exactly-15s"),
        pytest.param(timedelta(seconds=15, microseconds=1), True, id="just-over-15s"),
        pytest.param(timedelta(hours=3), True, id="3h"),
    ],
)
def test_a_scheduled_run_more_than_15s_overdue_is_late(overdue: timedelta, late: bool) -> None:
    state = pool_state(runs=[flowrun("r", scheduled=NOW - overdue)], now=NOW)
    assert late_marks(state) == ({"r": "Late"} if late else {})
    assert all(c.event is None for c in admission_changes(state))


def test_a_late_mark_and_an_unchanged_reason_make_a_patch_of_the_name_alone() -> None:
    waiting = pool_state(runs=[flowrun("r", scheduled=NOW)], now=NOW)
    held = settle(waiting, admission_changes(waiting))  # its reason (NoOnlineWorker) written
    later = replace(held, now=NOW + timedelta(seconds=16))
    assert [c.patch for c in admission_changes(later)] == [{"stateName": "Late"}]


def test_a_late_run_is_not_marked_again() -> None:
    run = flowrun("r", scheduled=NOW - timedelta(hours=1), state_name="Late")
    assert late_marks(pool_state(runs=[run], now=NOW)) == {}


def test_lateness_counts_from_the_status_time() -> None:
    # status.scheduledTime is what the run waits for (a retry writes a new one there).
    run = flowrun("r", scheduled=NOW - timedelta(seconds=5), spec_scheduled=NOW - timedelta(hours=1))
    assert late_marks(pool_state(runs=[run], now=NOW)) == {}


@pytest.mark.parametrize("state", [S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED])
def test_only_scheduled_runs_are_late(state: StateType) -> None:
    holding = state in SLOT_HOLDING
    run = flowrun(
        "r",
        state=state,
        scheduled=NOW - timedelta(hours=1),
        worker="w" if holding else None,
        acquired=NOW if holding else None,
    )
    state_ = pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW)
    assert lifecycle_changes(state_) == []
    assert late_marks(state_) == {}


def test_a_requeued_overdue_run_is_late_at_once() -> None:
    run = bound(S.PENDING, acquired=NOW - timedelta(minutes=5))  # scheduled 5 min ago
    change = only(lifecycle_changes(pool_state(runs=[run], workers=[], now=NOW)))
    assert change.patch["stateName"] == "Late"


# --- terminal runs --------------------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_runs_are_never_touched(state: StateType) -> None:
    runs = [
        flowrun("cancelled-late-lost", state=state, scheduled=NOW - timedelta(hours=1), worker="w", cancel=True),
        flowrun("plain", state=state, scheduled=NOW - timedelta(hours=1)),
    ]
    state_ = pool_state(runs=runs, workers=[], pool=wp(pendingTimeoutSeconds=1), now=NOW)
    assert lifecycle_changes(state_) == []
    assert admission_changes(state_) == []


# --- admission: grants and holds as status patches ----------------------------------------------


def admitted(run: FlowRun) -> tuple[str, str, str, datetime] | None:
    found = next((c for c in run.status.conditions if c.type == "Admitted"), None)
    return None if found is None else (found.status.value, found.reason, found.message, found.last_transition_time)


def test_a_grant_binds_the_run_takes_a_slot_and_says_so() -> None:
    state = pool_state(runs=[flowrun("r", scheduled=T0)], workers=[wkr("w", heartbeat=NOW)], now=NOW)
    change = only(admission_changes(state))
    assert change.patch == {
        "state": "Pending",
        "stateName": "Pending",
        "worker": "w",
        "workerIdentity": None,
        "slot": {"acquiredAt": ts(NOW), "queue": DEFAULT_QUEUE},
        "grantedAt": ts(NOW),
        "message": None,
        "conditions": [
            {
                "type": "Admitted",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": ts(NOW),
                "reason": "Admitted",
                "message": "bound to worker w",
            }
        ],
    }
    assert change.event is None


def test_a_grant_copies_the_workers_identity_onto_the_run() -> None:
    """The worker-restriction policy lets only this identity move the run: it must land with the grant."""
    identity = {"username": "system:serviceaccount:ns:worker", "podName": "worker-0"}
    state = pool_state(runs=[flowrun("r", scheduled=T0)], workers=[wkr("w", heartbeat=NOW, identity=identity)], now=NOW)
    assert only(admission_changes(state)).patch["workerIdentity"] == identity


def test_a_grant_takes_the_slot_in_the_runs_own_queue() -> None:
    state = pool_state(
        runs=[flowrun("r", queue="etl")],
        queues=[wq(priority=1), wq("etl", priority=2)],
        workers=[wkr("w", heartbeat=NOW)],
        now=NOW,
    )
    assert only(admission_changes(state)).patch["slot"] == {"acquiredAt": ts(NOW), "queue": "etl"}


def test_a_grant_keeps_the_other_conditions_and_flips_admitted() -> None:
    held_since = at(minutes=1)
    other = condition("Ready", False, "NotReady", "not finished", at(seconds=1))
    run = flowrun("r", conditions=[other, condition("Admitted", False, "NoOnlineWorker", "none", held_since)])
    changed = settle(
        state := pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW), admission_changes(state)
    ).runs[0]
    assert admitted(changed) == ("True", "Admitted", "bound to worker w", NOW)
    assert [c.type for c in changed.status.conditions] == ["Ready", "Admitted"]
    assert changed.status.conditions[0] == run.status.conditions[0]


HOLDS: dict[str, tuple[PoolState, str, str]] = {
    "pool-not-found": (
        without_pool(pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW)], now=NOW)),
        "PoolNotFound",
        "WorkPool p not found",
    ),
    "pool-paused": (
        pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW)], pool=wp(paused=True), now=NOW),
        "PoolPaused",
        "WorkPool p is paused",
    ),
    "queue-not-found": (
        pool_state(runs=[flowrun("r", queue="gone")], workers=[wkr("w", heartbeat=NOW)], now=NOW),
        "QueueNotFound",
        "WorkQueue gone not found in pool p",
    ),
    "queue-paused": (
        pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW)], queues=[wq(paused=True)], now=NOW),
        "QueuePaused",
        "WorkQueue p-default is paused",
    ),
    "not-yet-scheduled": (
        pool_state(
            runs=[flowrun("r", scheduled=NOW + timedelta(seconds=1))], workers=[wkr("w", heartbeat=NOW)], now=NOW
        ),
        "NotYetScheduled",
        "scheduled for later",
    ),
    "pool-limit-reached": (
        pool_state(
            runs=[flowrun("r"), bound(S.RUNNING, "x")],
            workers=[wkr("w", heartbeat=NOW)],
            pool=wp(concurrencyLimit=1),
            now=NOW,
        ),
        "PoolLimitReached",
        "pool p has no open slot (limit 1)",
    ),
    "queue-limit-reached": (
        pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW)], queues=[wq(concurrencyLimit=0)], now=NOW),
        "QueueLimitReached",
        "queue p-default has no open slot (limit 0)",
    ),
    "no-worker": (
        pool_state(runs=[flowrun("r")], now=NOW),
        "NoOnlineWorker",
        "no online worker with room serves queue p-default",
    ),
    "worker-offline-by-heartbeat": (
        pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW - timedelta(minutes=2))], now=NOW),
        "NoOnlineWorker",
        "no online worker with room serves queue p-default",
    ),
    "worker-draining": (
        pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW, draining=True)], now=NOW),
        "NoOnlineWorker",
        "no online worker with room serves queue p-default",
    ),
    "worker-serves-other-queues": (
        pool_state(runs=[flowrun("r")], workers=[wkr("w", heartbeat=NOW, queues=["etl"])], now=NOW),
        "NoOnlineWorker",
        "no online worker with room serves queue p-default",
    ),
    "worker-at-its-limit": (
        pool_state(
            runs=[flowrun("r"), bound(S.PENDING, "x")],
            workers=[wkr("w", heartbeat=NOW, limit=1)],
            now=NOW,
        ),
        "NoOnlineWorker",
        "no online worker with room serves queue p-default",
    ),
}


@pytest.mark.parametrize(("state", "reason", "message"), list(HOLDS.values()), ids=list(HOLDS))
def test_a_hold_writes_its_reason_as_the_admitted_condition(state: PoolState, reason: str, message: str) -> None:
    change = only(admission_changes(state))
    assert change.run.metadata.name == "r"
    admitted = {
        "type": "Admitted",
        "status": "False",
        "observedGeneration": 1,
        "lastTransitionTime": ts(NOW),
        "reason": reason,
        "message": message,
    }
    # A missing pool also gets a PoolNotFound condition of its own (as queues and workers do).
    pool_gone = [{**admitted, "type": "PoolNotFound", "status": "True"}] if reason == "PoolNotFound" else []
    # These runs are overdue (scheduled at T0), but for the future one, and not yet marked Late:
    # the mark goes in the same write.
    late = {} if reason == "NotYetScheduled" else {"stateName": "Late"}
    assert change.patch == {**late, "conditions": [admitted, *pool_gone]}
    assert change.event is None


@pytest.mark.parametrize(("state", "reason", "message"), list(HOLDS.values()), ids=list(HOLDS))
def test_a_hold_already_written_is_not_written_again(state: PoolState, reason: str, message: str) -> None:
    settled = settle(state, admission_changes(state))
    assert admission_changes(settled) == []
    assert admission_changes(replace(settled, now=NOW + timedelta(milliseconds=500))) == []


def test_a_hold_is_rewritten_when_its_reason_changes_keeping_its_transition_time() -> None:
    run = flowrun("r", conditions=[condition("Admitted", False, "NoOnlineWorker", "old", at(minutes=1))])
    state = pool_state(runs=[run], queues=[wq(paused=True)], now=NOW)
    changed = settle(state, admission_changes(state)).runs[0]
    assert admitted(changed) == ("False", "QueuePaused", "WorkQueue p-default is paused", at(minutes=1))


def test_a_hold_is_rewritten_when_only_its_message_changes() -> None:
    # Same reason, new limit in the message: the condition must say the current limit.
    said = "queue p-default has no open slot (limit 1)"
    run = flowrun("r", conditions=[condition("Admitted", False, "QueueLimitReached", said, at(minutes=1))])
    state = pool_state(runs=[run], queues=[wq(concurrencyLimit=0)], workers=[wkr("w", heartbeat=NOW)], now=NOW)
    change = only(admission_changes(state))
    assert change.patch["conditions"][0]["message"] == "queue p-default has no open slot (limit 0)"


@pytest.mark.parametrize("state", [S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED])
def test_admission_leaves_runs_that_are_not_scheduled_alone(state: StateType) -> None:
    holding = state in SLOT_HOLDING
    run = flowrun("r", state=state, worker="w" if holding else None, acquired=NOW if holding else None)
    assert admission_changes(pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW)) == []


def test_grants_follow_effective_priority_from_the_queue_specs() -> None:
    state = pool_state(
        runs=[flowrun("in-a", queue="a", scheduled=at(hours=-1)), flowrun("in-b", queue="b")],
        queues=[wq("a", priority=2), wq("b", priority=1)],
        workers=[wkr("w", heartbeat=NOW)],
        pool=wp(concurrencyLimit=1),
        now=NOW,
    )
    changes = {c.run.metadata.name: c.patch for c in admission_changes(state)}
    assert changes["in-b"]["state"] == "Pending"
    assert changes["in-a"]["conditions"][0]["reason"] == "PoolLimitReached"


def test_a_settled_pass_grants_nothing_more_and_changes_nothing() -> None:
    runs = [flowrun(f"r{i}", scheduled=at(seconds=i)) for i in range(4)]
    state = pool_state(
        runs=runs,
        workers=[wkr("a", heartbeat=NOW, limit=1), wkr("b", heartbeat=NOW)],
        pool=wp(concurrencyLimit=3),
        now=NOW,
    )
    first = admission_changes(state)
    assert {c.run.metadata.name: c.patch.get("worker") for c in first if "state" in c.patch} == {
        "r0": "a",
        "r1": "b",
        "r2": "b",
    }
    assert admission_changes(settle(state, first)) == []


def test_a_settled_pass_changes_nothing_when_a_lower_queue_filled_the_pool() -> None:
    state = pool_state(
        runs=[flowrun("high", queue="a"), flowrun("low", queue="b")],
        queues=[wq("a", priority=1), wq("b", priority=2)],
        workers=[wkr("wb", heartbeat=NOW, queues=["b"])],
        pool=wp(concurrencyLimit=1),
        now=NOW,
    )
    first = admission_changes(state)
    assert moves(first) == {"low": (S.SCHEDULED, S.PENDING)}
    assert admission_changes(settle(state, first)) == []


def test_a_run_granted_again_to_the_same_worker_keeps_its_admitted_condition() -> None:
    # pendingTimeoutSeconds requeued the run (the requeue leaves conditions alone); its worker is
    # still the least loaded, so the same pass grants it to that worker again.
    stale = condition("Admitted", True, "Admitted", "bound to worker w", at(minutes=1))
    run = flowrun("r", conditions=[stale])
    state = pool_state(runs=[run], workers=[wkr("w", heartbeat=NOW)], now=NOW)
    change = only(admission_changes(state))
    assert change.patch.get("conditions", "unchanged") is not None  # never a null that would wipe them
    assert admitted(settle(state, [change]).runs[0]) == ("True", "Admitted", "bound to worker w", at(minutes=1))


def test_a_run_with_cancel_requested_is_not_admitted() -> None:
    state = pool_state(runs=[flowrun("r", state=None, cancel=True)], workers=[wkr("w", heartbeat=NOW)], now=NOW)
    started = settle(state, lifecycle_changes(state))  # the reconciler's step 1: now Scheduled
    assert "state" not in {key for c in admission_changes(started) for key in c.patch}


# --- properties -----------------------------------------------------------------------------


def assert_operator_may_write(changes: Sequence[RunChange]) -> None:
    seen = [c.run.metadata.name for c in changes]
    assert len(seen) == len(set(seen)), "one change per run and pass"
    for change in changes:
        old = change.run.status.state
        assert old not in TERMINAL, "terminal runs are never touched"
        if "state" in change.patch:
            new = StateType(change.patch["state"])
            writer = ALLOWED.get((old, new))
            assert writer is not None, f"{old} → {new} is not a transition"
            assert Writer.OPERATOR in writer, f"{old} → {new} is not the operator's to write"
            if old in SLOT_HOLDING and new not in SLOT_HOLDING:
                assert change.patch.get("slot", "kept") is None, f"{old} → {new} must release the slot"


SITUATIONS = {
    "online": [wkr("w", heartbeat=NOW)],
    "offline": [wkr("w", heartbeat=NOW - timedelta(hours=1))],
    "draining": [wkr("w", heartbeat=NOW, draining=True)],
    "missing": [],
}


def single_run_pools() -> Iterator[tuple[str, PoolState]]:
    """Every situation of one run: state × cancel × its worker × pending timeout passed × overdue."""
    for state, cancel, (situation, workers), stuck, overdue in product(
        [None, *StateType], [False, True], SITUATIONS.items(), [False, True], [False, True]
    ):
        holding = state in SLOT_HOLDING
        when = NOW - (timedelta(hours=1) if overdue else timedelta(0))
        run = flowrun(
            "r",
            state=state,
            cancel=cancel,
            spec_scheduled=when,
            worker="w" if holding else None,
            acquired=NOW - (timedelta(minutes=2) if stuck else timedelta(seconds=1)) if holding else None,
        )
        label = f"{state}/cancel={cancel}/{situation}/stuck={stuck}/overdue={overdue}"
        yield label, pool_state(runs=[run], workers=workers, pool=wp(pendingTimeoutSeconds=60), now=NOW)


def test_every_move_in_every_single_run_situation_is_the_operators() -> None:
    # Exhaustive where the random pools below are sampled: three reconciler passes (lifecycle,
    # then admission, each on what the previous step wrote) from each of the 320 situations.
    for label, start in single_run_pools():
        state = start
        for _ in range(3):
            for step in (lifecycle_changes, admission_changes):
                changes = step(state)
                try:
                    assert_operator_may_write(changes)
                except AssertionError as failure:
                    raise AssertionError(f"{label}: {step.__name__}: {failure}") from None
                state = settle(state, changes)


@PROPERTY
@given(pool_states())
def test_every_move_the_operator_writes_is_allowed(state: PoolState) -> None:
    lifecycle = lifecycle_changes(state)
    assert_operator_may_write(lifecycle)
    assert_operator_may_write(admission_changes(state))
    settled = settle(state, lifecycle)  # as the reconciler runs them: lifecycle, then admission
    assert_operator_may_write(admission_changes(settled))
    assert_operator_may_write(lifecycle_changes(settled))


@PROPERTY
@given(pool_states())
def test_lifecycle_passes_reach_a_fixed_point_in_three(state: PoolState) -> None:
    # Longest chains: new → Scheduled → Cancelled; Pending (lost, cancel requested) → Scheduled → Cancelled.
    for _ in range(2):
        state = settle(state, lifecycle_changes(state))
    assert lifecycle_changes(state) == []


@PROPERTY
@given(pool_states())
def test_a_second_admission_pass_changes_nothing(state: PoolState) -> None:
    state = settle(state, lifecycle_changes(state))
    once = settle(state, admission_changes(state))
    second = admission_changes(once)
    assert second == [], "the first pass was maximal, and the reasons it left stand"


@PROPERTY
@given(pool_states())
def test_grants_keep_pool_queue_and_worker_limits(state: PoolState) -> None:
    state = settle(state, lifecycle_changes(state))
    granted = moves(admission_changes(state))
    after = settle(state, admission_changes(state))

    def holders(runs: Sequence[FlowRun], key: Any) -> dict[Any, int]:
        counts: dict[Any, int] = {}
        for run in runs:
            if run.status.state in SLOT_HOLDING:
                counts[key(run)] = counts.get(key(run), 0) + 1
        return counts

    new = {name for name, (_, to) in granted.items() if to is S.PENDING}
    news = [r for r in after.runs if r.metadata.name in new]
    if state.pool is not None and (limit := state.pool.spec.concurrency_limit) is not None:
        assert sum(holders(after.runs, lambda r: 0).values()) <= limit or not news
    for queue in state.queues:
        if (limit := queue.spec.concurrency_limit) is not None:
            in_queue = holders(after.runs, queue_of).get(queue.metadata.name, 0)
            assert in_queue <= limit or not [r for r in news if queue_of(r) == queue.metadata.name]
    for worker in state.workers:
        if (limit := worker.spec.limit) is not None:
            on_worker = holders(after.runs, lambda r: r.status.worker).get(worker.metadata.name, 0)
            assert on_worker <= limit or not [r for r in news if r.status.worker == worker.metadata.name]
