"""The Cancelling timeout (core/runs.py, pool spec.cancellingTimeoutSeconds, default 300 s).

Aspects: the Cancelling write records when (`cancellingSince`), and a run Cancelling from before
the rule is stamped; a run is marked Cancelled (reason CancellingTimeout, one Warning, its slot
freed) strictly after the timeout, and only when its worker is alive and was seen beating after
the run went Cancelling (it was told, and had the time to stop it); a silent worker's runs wait
for the reclaim protocol (WorkerLost); and, as a property over workers and clocks, the slot is
never freed by the timeout otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import at
from tests.unit.core.run_support import flowrun, pool_state, wkr, wp
from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.states import StateType
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.core import liveness
from workpools.core.deadlines import TICK
from workpools.core.runs import RunChange, lifecycle_changes

S = StateType
SINCE = at(minutes=-10)
"""When the run went Cancelling."""
PROPERTY = settings(deadline=None)


def cancelling(since: datetime | None = SINCE) -> FlowRun:
    run = flowrun("r", state=S.CANCELLING, worker="w", acquired=at(minutes=-20), cancel=True, cancelling_since=since)
    if since is None:
        run.status.cancelling_since = None
    return run


def changes(run: FlowRun, now: datetime, worker: Worker | None = None, pool: WorkPool | None = None) -> list[RunChange]:
    workers = [worker if worker is not None else wkr("w", heartbeat=now - timedelta(seconds=5))]
    return lifecycle_changes(pool_state(runs=[run], workers=workers, pool=pool or wp(), now=now))


def test_the_cancelling_write_records_when() -> None:
    run = flowrun("r", state=S.RUNNING, worker="w", acquired=at(minutes=-1), cancel=True)
    (change,) = changes(run, at())
    assert change.patch["state"] == "Cancelling"
    assert change.patch["cancellingSince"] == timestamp(at())


def test_a_run_cancelling_from_before_the_rule_is_stamped_now() -> None:
    (change,) = changes(cancelling(since=None), at())
    assert change.patch == {"cancellingSince": timestamp(at())}
    assert change.event is None
    assert change.reclaim is None


def test_after_the_default_300s_with_its_worker_alive_and_told_it_is_cancelled_and_frees_its_slot() -> None:
    assert changes(cancelling(), SINCE + timedelta(seconds=300)) == []  # strictly after
    (change,) = changes(cancelling(), SINCE + timedelta(seconds=300) + TICK)
    assert change.patch["state"] == "Cancelled"
    assert change.patch["slot"] is None
    assert change.patch["endTime"] == timestamp(SINCE + timedelta(seconds=300) + TICK)
    assert "cancellingTimeoutSeconds (300s)" in change.patch["message"]
    assert change.reclaim == "CancellingTimeout"
    assert change.event is not None
    assert (change.event.type, change.event.reason) == ("Warning", "CancellingTimeout")
    assert change.event.message.startswith("FlowRun r: worker w did not report it stopped")


def test_the_pools_timeout_counts() -> None:
    pool = wp(cancellingTimeoutSeconds=30)
    assert changes(cancelling(), SINCE + timedelta(seconds=30), pool=pool) == []
    (change,) = changes(cancelling(), SINCE + timedelta(seconds=30, milliseconds=1), pool=pool)
    assert change.patch["state"] == "Cancelled"


def test_a_worker_not_seen_beating_since_it_was_told_keeps_the_slot() -> None:
    # Alive (a 10-minute interval) but its last heartbeat came before the run went Cancelling:
    # its watch may have missed the cancellation.
    worker = wkr("w", heartbeat=SINCE - timedelta(seconds=1), interval=600)
    now = SINCE + timedelta(minutes=20)
    assert liveness.alive(
        pool_state(workers=[worker], now=now).sightings["w"], now
    )  # still Online: 3 × 10 min not over
    assert changes(cancelling(), now, worker=worker) == []


@pytest.mark.parametrize("heartbeat", [pytest.param(at(seconds=-95), id="silent"), pytest.param(None, id="never-beat")])
def test_a_silent_worker_is_left_to_the_reclaim_protocol(heartbeat: datetime | None) -> None:
    # Silent for more than 3 intervals, not yet lost (written Offline one interval ago at most):
    # nothing moves, whatever the timeout says.
    worker = wkr("w", heartbeat=heartbeat, offline_since=at(seconds=-5))
    assert changes(cancelling(), at(), worker=worker, pool=wp(cancellingTimeoutSeconds=15)) == []


def test_a_lost_worker_is_reclaimed_as_before_not_by_the_timeout() -> None:
    worker = wkr("w", heartbeat=at(minutes=-30))
    (change,) = changes(cancelling(), at(), worker=worker)
    assert change.reclaim == "WorkerLost"


@PROPERTY
@given(
    heartbeat=st.none() | st.integers(min_value=-1200, max_value=0).map(lambda s: at(seconds=s)),
    interval=st.sampled_from([None, 1, 10, 60, 600]),
    since=st.integers(min_value=-1200, max_value=0).map(lambda s: at(seconds=s)),
    timeout=st.integers(min_value=15, max_value=900),
)
def test_the_timeout_frees_a_slot_only_when_due_and_its_worker_is_alive_and_was_told(
    heartbeat: datetime | None, interval: int | None, since: datetime, timeout: int
) -> None:
    worker = wkr("w", heartbeat=heartbeat, interval=interval)
    now = at()
    state = pool_state(runs=[cancelling(since)], workers=[worker], pool=wp(cancellingTimeoutSeconds=timeout), now=now)
    for change in lifecycle_changes(state):
        if change.reclaim != "CancellingTimeout":
            continue
        sighting = state.sightings["w"]
        assert now > since + timedelta(seconds=timeout)
        assert liveness.alive(sighting, now)
        assert sighting.seen_at is not None
        assert sighting.seen_at > since
