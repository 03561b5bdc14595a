"""Prometheus metrics, per pool and queue (bounded labels: never per run or per worker).

Gauges are set from the statuses each reconcile pass computes, so they say what `kubectl get`
says; counters count what the operator did (grants, reclaims, failed passes). Counters start at 0
for every pool and queue the operator knows (and every reclaim reason), so that the first grant,
reclaim or failure shows in `increase()` (a series born at 1 looks like no increase). A pool that
is gone takes its series with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase

from workpools.api.flowrun import queue_of
from workpools.api.flowschedule import FlowScheduleStatus
from workpools.api.meta import ObjectKey
from workpools.api.states import StateType
from workpools.api.workpool import WorkPoolStatus
from workpools.api.workqueue import WorkQueueStatus
from workpools.core.backlog import admissible_backlog
from workpools.core.selection import scheduled_time
from workpools.core.snapshot import PoolState

logger = logging.getLogger(__name__)

PORT_ENV = "WORKPOOLS_METRICS_PORT"
"""Port of the Prometheus endpoint (/metrics); 0 turns it off. Default 9090."""

REGISTRY = CollectorRegistry()
POOL = ["namespace", "pool"]
QUEUE = ["namespace", "pool", "queue"]

pool_slots_limit = Gauge(
    "workpools_pool_slots_limit", "Pool concurrency limit (absent: unlimited)", POOL, registry=REGISTRY
)
pool_slots_active = Gauge("workpools_pool_slots_active", "Runs holding a pool slot", POOL, registry=REGISTRY)
pool_slots_open = Gauge("workpools_pool_slots_open", "Open pool slots (absent: unlimited)", POOL, registry=REGISTRY)
workers_online = Gauge("workpools_workers_online", "Online workers of the pool", POOL, registry=REGISTRY)
queue_slots_limit = Gauge(
    "workpools_queue_slots_limit", "Queue concurrency limit (absent: unlimited)", QUEUE, registry=REGISTRY
)
queue_slots_active = Gauge("workpools_queue_slots_active", "Runs holding a queue slot", QUEUE, registry=REGISTRY)
queue_slots_open = Gauge("workpools_queue_slots_open", "Open queue slots (absent: unlimited)", QUEUE, registry=REGISTRY)
scheduled_runs = Gauge("workpools_scheduled_runs", "Runs waiting in Scheduled (queue depth)", QUEUE, registry=REGISTRY)
late_runs = Gauge(
    "workpools_late_runs", "Scheduled runs more than 15 s past their scheduled time", QUEUE, registry=REGISTRY
)
oldest_scheduled = Gauge(
    "workpools_queue_oldest_scheduled_timestamp_seconds",
    "Scheduled time (Unix seconds) of the longest-waiting due Scheduled run (absent: none waiting)",
    QUEUE,
    registry=REGISTRY,
)
admissions = Counter("workpools_admissions", "Runs granted a slot and bound to a worker", QUEUE, registry=REGISTRY)
admission_latency = Histogram(
    "workpools_admission_latency_seconds",
    "From when a run could first be admitted to its grant",
    POOL,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)
reclaims = Counter(
    "workpools_reclaims",
    "Slots taken back from runs (lost worker, pending timeout, drain, cancelling timeout)",
    [*POOL, "reason"],
    registry=REGISTRY,
)
runs_deleted = Counter(
    "workpools_finished_runs_deleted",
    "Finished runs deleted after the pool's finishedRunTTLSeconds",
    POOL,
    registry=REGISTRY,
)
reconcile_errors = Counter(
    "workpools_reconcile_errors", "Reconcile passes that failed (retried)", POOL, registry=REGISTRY
)
pass_steps = Histogram(
    "workpools_pass_step_seconds",
    "Synchronous steps of the pools' passes (controllers/pools.py), every pool together: while one "
    "runs, the operator does nothing else (no watch event is taken in, no freed slot refilled)",
    ["step"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)

RECLAIM_REASONS = ("WorkerLost", "PendingTimeout", "HandedBack", "CancellingTimeout")
"""The reasons core/runs.py gives a reclaim (RunChange.reclaim); each starts at 0 per pool."""
POOL_METRICS = (
    pool_slots_limit,
    pool_slots_active,
    pool_slots_open,
    workers_online,
    reconcile_errors,
    admission_latency,
)
QUEUE_METRICS = (
    queue_slots_limit,
    queue_slots_active,
    queue_slots_open,
    scheduled_runs,
    late_runs,
    oldest_scheduled,
    admissions,
)
SCHEDULE = ["namespace", "schedule"]
schedule_active_runs = Gauge(
    "workpools_schedule_active_runs", "Runs of the FlowSchedule not finished yet", SCHEDULE, registry=REGISTRY
)
schedule_next_time = Gauge(
    "workpools_schedule_next_time_seconds",
    "The FlowSchedule's next scheduled time, Unix seconds (absent: suspended or invalid)",
    SCHEDULE,
    registry=REGISTRY,
)
schedule_runs_created = Counter(
    "workpools_schedule_runs_created", "FlowRuns created by the FlowSchedule", SCHEDULE, registry=REGISTRY
)
schedule_missed = Counter(
    "workpools_schedule_missed",
    "Scheduled times skipped (maxCatchUpRuns, startingDeadlineSeconds, Replace)",
    SCHEDULE,
    registry=REGISTRY,
)
schedule_errors = Counter(
    "workpools_schedule_reconcile_errors", "FlowSchedule passes that failed (retried)", SCHEDULE, registry=REGISTRY
)

_queues_seen: dict[ObjectKey, set[str]] = {}

Snapshots = Callable[[], list[tuple[ObjectKey, PoolState]]]
"""Every pool as admission would see it now (controllers/pools.py `backlog_snapshots`)."""
Backlogs = list[tuple[ObjectKey, dict[str, int]]]

SCRAPE_WAIT = 0.5
"""Seconds a scrape waits for a fresh backlog before it serves the previous one: /metrics is the
operator's liveness probe too (kubelet's default timeout: 1 s), so it never waits on the loop long."""
SNAPSHOT_TIMEOUT = 60.0
"""Seconds a computation waits for the loop to take its snapshot before it gives up (a loop that
stopped): the next scrape starts another."""


class BacklogCollector:
    """`workpools_admissible_backlog{namespace,pool,queue}`, computed when scraped (core/backlog.py).

    At scrape time, not in every admission pass: it costs an admission pass per pool, which the
    hot path should not pay for each grant when a scrape every 30 s or so needs it.

    Thread safety: scrapes run in the HTTP server's threads, while the store belongs to the event
    loop, which mutates it. So the snapshot is taken on the loop (`run_coroutine_threadsafe`, one
    synchronous step, so one consistent moment), and only the pure computation runs off the loop:
    the snapshot holds fresh lists of the store's objects, and the store never changes an object
    in place (it replaces it), so nothing the computation reads changes under it.

    One computation at a time, in a thread of its own; concurrent scrapes share it. A scrape
    waits SCRAPE_WAIT for it, then serves the previous result (the late one is kept for the next
    scrape): a busy loop or a large store delays the signal by a scrape, never the endpoint.
    """

    NAME = "workpools_admissible_backlog"
    HELP = (
        "Scheduled runs that would be admitted now if a worker had room "
        "(not held by a limit, start rate, pause or later scheduled time): the autoscaling signal"
    )

    def __init__(self) -> None:
        self._source: tuple[asyncio.AbstractEventLoop, Snapshots] | None = None
        self._lock = threading.Lock()
        self._computing: concurrent.futures.Future[Backlogs] | None = None
        self._last: Backlogs = []

    def attach(self, loop: asyncio.AbstractEventLoop, snapshots: Snapshots) -> None:
        """Serve the backlog of the store behind `snapshots`, taken on `loop` (at operator startup)."""
        with self._lock:  # a computation on the source before is no scrape's any more
            self._source, self._last, self._computing = (loop, snapshots), [], None

    def detach(self) -> None:
        with self._lock:
            self._source, self._last, self._computing = None, [], None

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]  # the registry checks names with this, not with a scrape

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for key, counts in self._backlogs():
            for queue, count in counts.items():
                family.add_metric([key.namespace, key.name, queue], count)
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.NAME, self.HELP, labels=QUEUE)

    def _backlogs(self) -> Backlogs:
        with self._lock:
            if self._source is None:
                return []
            if self._computing is None:
                self._computing = concurrent.futures.Future()
                thread = threading.Thread(
                    target=self._compute, args=(self._computing, *self._source), name="admissible-backlog", daemon=True
                )
                thread.start()
            computing = self._computing
        try:
            return computing.result(timeout=SCRAPE_WAIT)
        except TimeoutError:
            logger.info("admissible backlog not computed within %.1fs: the previous one served", SCRAPE_WAIT)
            return self._last
        except Exception:
            # Never the whole endpoint: it is the operator's liveness probe too.
            logger.exception("admissible backlog left out of a scrape")
            return []

    def _compute(
        self, result: concurrent.futures.Future[Backlogs], loop: asyncio.AbstractEventLoop, snapshots: Snapshots
    ) -> None:
        async def take() -> list[tuple[ObjectKey, PoolState]]:
            return snapshots()

        try:
            snapshot = asyncio.run_coroutine_threadsafe(take(), loop)
            try:
                taken = snapshot.result(timeout=SNAPSHOT_TIMEOUT)
            finally:
                snapshot.cancel()  # not taken yet: never, now (taken: nothing to cancel)
            backlogs = [(key, admissible_backlog(state)) for key, state in taken]
        except Exception as error:  # the loop closed or stopped, or a bug: reported by the scrapes waiting
            self._done(result, None)
            result.set_exception(error)
            return
        self._done(result, backlogs)
        result.set_result(backlogs)

    def _done(self, result: concurrent.futures.Future[Backlogs], backlogs: Backlogs | None) -> None:
        """Clear the way for the next computation, and keep its backlogs for the scrapes that
        could not wait; unless it was dropped meanwhile (attach, detach)."""
        with self._lock:
            if self._computing is result:
                self._computing = None
                if backlogs is not None:
                    self._last = backlogs


backlog = BacklogCollector()
REGISTRY.register(backlog)


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


def _set_optional(gauge: Gauge, labels: Iterable[str], value: float | None) -> None:
    if value is None:
        _forget(gauge, tuple(labels))
    else:
        gauge.labels(*labels).set(value)


def _forget(metric: MetricWrapperBase, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set: nothing to remove
        metric.remove(*labels)


def record_statuses(
    key: ObjectKey,
    state: PoolState,
    pool: WorkPoolStatus | None,
    queues: dict[str, WorkQueueStatus],
) -> None:
    """Gauges of one pool and its queues after a pass; series of vanished queues or pools are removed."""
    ns, name = key.namespace, key.name
    if pool is None:
        for metric in POOL_METRICS:
            _forget(metric, (ns, name))
        for reason in RECLAIM_REASONS:
            _forget(reclaims, (ns, name, reason))
    else:
        _set_optional(pool_slots_limit, (ns, name), pool.slots.limit)
        pool_slots_active.labels(ns, name).set(pool.slots.active)
        _set_optional(pool_slots_open, (ns, name), pool.slots.open)
        workers_online.labels(ns, name).set(pool.workers.online)
        reconcile_errors.labels(ns, name)  # 0 until the first failure
        admission_latency.labels(ns, name)
        for reason in RECLAIM_REASONS:
            reclaims.labels(ns, name, reason)
    oldest: dict[str, datetime.datetime] = {}
    for run in state.runs:
        if run.status.state is not StateType.SCHEDULED:
            continue
        queue = queue_of(run)
        due = scheduled_time(run)
        if queue in queues and due <= state.now and (queue not in oldest or due < oldest[queue]):
            oldest[queue] = due
    for queue, status in queues.items():
        labels = (ns, name, queue)
        _set_optional(queue_slots_limit, labels, status.slots.limit)
        queue_slots_active.labels(*labels).set(status.slots.active)
        _set_optional(queue_slots_open, labels, status.slots.open)
        scheduled_runs.labels(*labels).set(status.scheduled_runs)
        late_runs.labels(*labels).set(status.late_runs)
        _set_optional(oldest_scheduled, labels, oldest[queue].timestamp() if queue in oldest else None)
        admissions.labels(*labels)  # 0 until the first grant
    for gone in _queues_seen.get(key, set()) - set(queues):
        for metric in QUEUE_METRICS:
            _forget(metric, (ns, name, gone))
    _queues_seen[key] = set(queues)


def record_grant(key: ObjectKey, queue: str, admissible_since: datetime.datetime, now: datetime.datetime) -> None:
    admissions.labels(key.namespace, key.name, queue).inc()
    admission_latency.labels(key.namespace, key.name).observe(max(0.0, (now - admissible_since).total_seconds()))


class StepTimer:
    """Wall-clock seconds of one synchronous step (`pass_step`), for its caller too."""

    def __init__(self) -> None:
        self.seconds = 0.0


@contextlib.contextmanager
def pass_step(step: str) -> Iterator[StepTimer]:
    """Time a step of a pool's pass into `workpools_pass_step_seconds{step}` (also when it raises)."""
    timer, started = StepTimer(), time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - started
        pass_steps.labels(step=step).observe(timer.seconds)


def record_reclaim(key: ObjectKey, reason: str) -> None:
    reclaims.labels(key.namespace, key.name, reason).inc()


def record_run_deleted(key: ObjectKey) -> None:
    runs_deleted.labels(key.namespace, key.name).inc()


def record_error(key: ObjectKey) -> None:
    reconcile_errors.labels(key.namespace, key.name).inc()


def record_schedule(key: ObjectKey, status: FlowScheduleStatus, skipped: int) -> None:
    """Gauges of one schedule after a pass, and the times it skipped for good."""
    labels = (key.namespace, key.name)
    schedule_active_runs.labels(*labels).set(status.active_count)
    moment = status.next_schedule_time
    _set_optional(schedule_next_time, labels, None if moment is None else int(moment.timestamp()))
    if skipped:
        schedule_missed.labels(*labels).inc(skipped)


def record_schedule_run_created(key: ObjectKey) -> None:
    schedule_runs_created.labels(key.namespace, key.name).inc()


def record_schedule_error(key: ObjectKey) -> None:
    schedule_errors.labels(key.namespace, key.name).inc()


def forget_schedule(key: ObjectKey) -> None:
    """A deleted schedule takes its series with it."""
    for metric in (schedule_active_runs, schedule_next_time, schedule_runs_created, schedule_missed, schedule_errors):
        _forget(metric, (key.namespace, key.name))
