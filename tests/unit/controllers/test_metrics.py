"""The series controllers/metrics.py exports for a pool pass: counters that start at 0 (so the
first grant, reclaim or failure shows in `increase()`), the oldest waiting run per queue, and
every series of a pool or queue gone with it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from tests.builders import T0, at
from tests.unit.core.run_support import DEFAULT_QUEUE, flowrun, pool_state, wp, wq
from workpools.api.meta import ObjectKey
from workpools.api.states import StateType
from workpools.api.workpool import WorkPoolStatus
from workpools.api.workqueue import WorkQueueStatus
from workpools.controllers import metrics
from workpools.core.snapshot import PoolState

S = StateType
KEY = ObjectKey("metrics-ns", "p")
POOL_STATUS = WorkPoolStatus.model_validate(
    {"defaultQueue": DEFAULT_QUEUE, "slots": {"active": 1, "limit": 2, "open": 1}, "workers": {"online": 1, "total": 1}}
)
QUEUE_STATUS = WorkQueueStatus.model_validate({"slots": {"active": 1}, "scheduledRuns": 3})


def series() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of KEY's namespace, keyed by (name, sorted labels without namespace)."""
    found = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.labels.get("namespace") == KEY.namespace and not sample.name.endswith("_created"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "namespace"))
                found[sample.name, labels] = sample.value
    return found


@pytest.fixture(autouse=True)
def forget_the_pool() -> Iterator[None]:
    yield
    metrics.record_statuses(KEY, pool_state(pool=None), None, {})


P = (("pool", "p"),)
Q = (("pool", "p"), ("queue", DEFAULT_QUEUE))


def test_counters_start_at_zero_for_every_pool_queue_and_reclaim_reason() -> None:
    metrics.record_statuses(KEY, pool_state(), POOL_STATUS, {DEFAULT_QUEUE: QUEUE_STATUS})
    got = series()
    assert got["workpools_reconcile_errors_total", P] == 0
    assert got["workpools_admissions_total", Q] == 0
    assert got["workpools_admission_latency_seconds_count", P] == 0
    for reason in ("WorkerLost", "PendingTimeout", "HandedBack", "CancellingTimeout"):
        assert got["workpools_reclaims_total", (*P, ("reason", reason))] == 0

    metrics.record_reclaim(KEY, "WorkerLost")
    metrics.record_error(KEY)
    got = series()
    assert got["workpools_reclaims_total", (*P, ("reason", "WorkerLost"))] == 1
    assert got["workpools_reconcile_errors_total", P] == 1


def test_the_oldest_waiting_run_is_the_earliest_due_scheduled_run_of_its_queue() -> None:
    runs = [
        flowrun("late", state_name="Late", scheduled=at(seconds=-90)),
        flowrun("due", scheduled=at(seconds=-10)),
        flowrun("future", scheduled=at(seconds=600)),  # not due: not waiting
        flowrun("running", state=S.RUNNING, scheduled=at(seconds=-900), worker="w", acquired=at(seconds=-5)),
    ]
    state = pool_state(runs=runs, now=T0)
    metrics.record_statuses(KEY, state, POOL_STATUS, {DEFAULT_QUEUE: QUEUE_STATUS})
    got = series()
    assert got["workpools_queue_oldest_scheduled_timestamp_seconds", Q] == at(seconds=-90).timestamp()

    state = pool_state(runs=[flowrun("future", scheduled=at(seconds=600))], now=T0)
    metrics.record_statuses(KEY, state, POOL_STATUS, {DEFAULT_QUEUE: QUEUE_STATUS})
    assert ("workpools_queue_oldest_scheduled_timestamp_seconds", Q) not in series(), "nothing waits: no series"


def test_a_gone_pool_or_queue_takes_all_its_series_with_it() -> None:
    metrics.record_statuses(KEY, pool_state(), POOL_STATUS, {DEFAULT_QUEUE: QUEUE_STATUS, "q2": QUEUE_STATUS})
    metrics.record_statuses(KEY, pool_state(), POOL_STATUS, {DEFAULT_QUEUE: QUEUE_STATUS})
    assert not [name for name, labels in series() if ("queue", "q2") in labels]

    metrics.record_statuses(KEY, pool_state(pool=None), None, {})
    assert series() == {}


def test_late_runs_are_the_queue_status_count() -> None:
    late = QUEUE_STATUS.model_copy(update={"late_runs": 2})
    metrics.record_statuses(KEY, pool_state(), POOL_STATUS, {DEFAULT_QUEUE: late})
    assert series()["workpools_late_runs", Q] == 2


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as the operator's runs beside the HTTP server's."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    metrics.backlog.detach()
    running.call_soon_threadsafe(running.stop)
    thread.join(timeout=5)
    running.close()


def test_the_admissible_backlog_is_computed_on_a_snapshot_the_loop_takes_when_scraped(
    loop: asyncio.AbstractEventLoop,
) -> None:
    assert ("workpools_admissible_backlog", Q) not in series(), "nothing attached: no series"
    taken_on: list[threading.Thread] = []
    queues = [wq(priority=1), wq("q2", priority=2)]
    state = pool_state(pool=wp(concurrencyLimit=3), queues=queues, runs=[flowrun(f"r{i}") for i in range(5)])

    def snapshots() -> list[tuple[ObjectKey, PoolState]]:
        taken_on.append(threading.current_thread())
        return [(KEY, state)]

    metrics.backlog.attach(loop, snapshots)
    got = series()
    assert got["workpools_admissible_backlog", Q] == 3, "no worker online: limited by the pool alone"
    assert got["workpools_admissible_backlog", (("pool", "p"), ("queue", "q2"))] == 0, "every queue has a series"
    assert taken_on != [threading.current_thread()], "the store is read on the loop, not in the scrape's thread"
    metrics.backlog.detach()
    assert ("workpools_admissible_backlog", Q) not in series()


def test_a_scrape_never_waits_long_for_a_busy_loop_nor_fails_on_a_broken_snapshot(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "SCRAPE_WAIT", 0.1)
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait, 5)  # the loop is busy with something else
    metrics.backlog.attach(loop, lambda: [(KEY, pool_state(runs=[flowrun("r")]))])
    try:
        assert ("workpools_admissible_backlog", Q) not in series(), "none computed yet: none served"
    finally:
        release.set()
    # The late computation is served by a later scrape (by then it may have been started anew).
    wait_until = time.monotonic() + 5
    while ("workpools_admissible_backlog", Q) not in (got := series()) and time.monotonic() < wait_until:
        time.sleep(0.05)
    assert got["workpools_admissible_backlog", Q] == 1

    def broken() -> list[tuple[ObjectKey, PoolState]]:
        raise RuntimeError("a bug")

    metrics.record_statuses(KEY, pool_state(), POOL_STATUS, {DEFAULT_QUEUE: QUEUE_STATUS})
    metrics.backlog.attach(loop, broken)
    got = series()
    assert ("workpools_admissible_backlog", Q) not in got
    assert got["workpools_scheduled_runs", Q] == 3, "the rest of the scrape is served (it is the liveness probe)"
