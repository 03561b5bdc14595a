"""Admission throughput and latency (issue 5, point 7; issue 11): N FlowRuns through a real API server.

    .venv/bin/python -m benchmarks.admission --runs 1000
    .venv/bin/python -m benchmarks.admission --runs 10000
    .venv/bin/python -m benchmarks.admission --runs 1000 --profile   # a diagnostic run under cProfile
    .venv/bin/python -m benchmarks.admission --shape fill --runs 10000 --tracemalloc   # where memory goes
    .venv/bin/python -m benchmarks.admission --shape fill --runs 10000 --profile-apiserver 30   # the API server's CPU
    .venv/bin/python -m benchmarks.admission --shape fill --runs 10000
    .venv/bin/python -m benchmarks.admission --shape refill --runs 2000 --isolation --burst 10000
    .venv/bin/python -m benchmarks.admission --shape fill --runs 10000 --restart

Starts a local control plane (unless KUBECONFIG is set), installs manifests/ and runs the operator
as its ServiceAccount, scoped to the benchmark's namespace. Then:

1. **Ceiling** (before the operator starts, in a namespace of its own): one Python client (the
   product's `Transport`, the operator's credentials) PATCHes the status of existing FlowRuns in
   a tight loop, each write a merge patch with a resourceVersion precondition and a condition,
   like a grant; one write in flight, then as many as the operator's `RUN_WRITES_IN_FLIGHT` (32). That is
   the practical ceiling for FlowRun status writes from one Python process on this API server.
2. **Workload**: `--pools` WorkPools × `--queues` WorkQueues with pool and queue limits (one
   queue per pool unlimited), `--workers` simulated workers per pool (`tests/support/fleet.py`:
   own connection with the worker's credentials, heartbeat, a watch on the runs bound to them,
   Pending → Running → Completed at once). N runs are created (16 creates in flight, spread over
   the queues; `--rate` paces them), each one's client-side creation time recorded when its
   POST returns (creationTimestamp has 1 s resolution). A separate watch on every FlowRun stamps
   when each run is first seen Pending and Running.
3. The API server's `apiserver_request_total` is read before the first create and after every
   run Completed and the pool statuses settled; the workers count their own writes, the rest is
   the operator's. `/proc` of the operator (CPU seconds, RSS, peak RSS), the control plane and
   this harness is sampled every second.

`--shape` picks the workload of step 2 (`drain` above is the default):

* **fill**: one pool without limits, workers that hold every run they get (never Running); the N
  runs are created while the pool is paused and the clock starts when every one is Late and the
  harness resumes the pool: resume → every run Pending is the grant rate of one pass's burst.
* **refill**: one pool limited to 50, the same paused start, workers that move each run to Running
  1 s after they see it Pending and to Completed 1 s later; each grant after the first 50 is paired
  with the earliest unpaired completion before it (FIFO), both as the watch delivered them: the
  latency from a freed slot to its refill. `--isolation` adds a second pool without workers that
  receives `--burst` runs at the resume, and still times the first pool's refills only.

`--restart` (fill, refill): once every run is Late, the operator is stopped (SIGTERM), the pool
resumed while it is down, and the operator started again: the clock starts when its process does,
so "first Pending" is a restart's time to its first grant with N runs to read and decide, and the
memory figures are of a process that read N runs at start-up.

Figures go to `benchmarks/results/admission-<N>.md` (drain) or `admission-<shape>-<N>.md` (and
`.json` beside it) with the command, commit, machine and date. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import (
    RESULTS,
    ApiServerProfile,
    Cluster,
    Sampler,
    WriteKey,
    api_writes,
    cpu_seconds,
    git_commit,
    limits,
    log,
    machine,
    memory_summary,
    profile_operator,
    profile_summary,
    record_run,
    source_digest,
    trace_operator_memory,
    utc_now,
    work_directory,
)
from tests.support.fleet import AsyncWorker, WorkerSpec, running
from tests.support.objects import pool, queue, run
from tests.support.operator import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, OperatorProcess, service_account_kubeconfig
from tests.support.waiting import wait_for
from tests.support.watches import ResourceWatch
from tests.support.worker_rbac import worker_kubeconfig
from workpools.client import errors
from workpools.client.resources import FLOWRUNS, WORKPOOLS
from workpools.client.transport import Transport
from workpools.controllers.writers import RUN_WRITES_IN_FLIGHT

CREATES_IN_FLIGHT = 16
CEILING_IN_FLIGHT = (1, RUN_WRITES_IN_FLIGHT)
CEILING_RUNS = 200
GROUP_SUFFIX = ".workpools.dev"
MEASURED_POOL = "pool-1"
"""The pool fill and refill measure (drain measures all its pools)."""
BURST_POOL = "burst"
"""--isolation: the pool without workers that receives the burst."""
HOLD = 1e9
"""Seconds a fill worker waits before moving a run to Running: it holds every run it gets."""
REFILL_HOLD = 2.0
"""Seconds from a refill worker seeing a run Pending to moving it to Completed (half of it to Running)."""
REFILL_GOAL_MS = {"p50": 50.0, "p99": 250.0}


@dataclass(frozen=True)
class Shape:
    """What a `--shape` changes in the workload."""

    workers: str
    """The simulated workers, as the report describes them."""
    delays: tuple[float, float]
    """A worker's wait before moving a run it got to Running, then before moving it to Completed."""
    goal: str
    """The state every run reaches when the measurement ends."""
    paused_start: bool
    """The runs are created in the paused pool before the clock starts, which resumes the pool."""

    @property
    def clock(self) -> str:
        """What starts the clock."""
        return "resume" if self.paused_start else "first create"


SHAPES = {
    "drain": Shape("instant-completing workers", (0.0, 0.0), "Completed", paused_start=False),
    "fill": Shape("workers that hold every run they get (never Running)", (HOLD, HOLD), "Pending", paused_start=True),
    "refill": Shape(
        f"workers that move each run to Running {REFILL_HOLD / 2:g} s after they see it Pending and to Completed "
        f"{REFILL_HOLD / 2:g} s later",
        (REFILL_HOLD / 2, REFILL_HOLD / 2),
        "Completed",
        paused_start=True,
    ),
}


@dataclass(frozen=True)
class Settings:
    shape: str
    runs: int
    pools: int
    queues: int
    workers: int
    pool_limit: int | None
    queue_limits: tuple[int | None, ...]
    worker_limit: int | None
    rate: float | None
    ceiling_seconds: float
    deadline: float
    profile: bool
    tracemalloc: bool
    profile_apiserver: int | None
    output: Path
    keep: bool
    command: str
    isolation: bool = False
    burst: int = 0
    restart: bool = False

    @property
    def kind(self) -> Shape:
        return SHAPES[self.shape]

    @property
    def clock(self) -> str:
        """What starts the clock."""
        return "operator restart" if self.restart else self.kind.clock

    def queue_names(self, pool_name: str) -> list[str]:
        return [f"{pool_name}-q{i + 1}" for i in range(self.queues)]

    def queue_limit(self, index: int) -> int | None:
        return self.queue_limits[index] if index < len(self.queue_limits) else None


# -- 1. the ceiling -------------------------------------------------------------------------------


async def ceiling(cluster: Cluster, operator_kubeconfig: Path, seconds: float) -> dict[str, Any]:
    """How fast one Python client PATCHes FlowRun status here: grant-like writes, back to back."""
    kubectl = cluster.kubectl
    namespace = f"bench-ceiling-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    try:
        async with await Transport.connect(kubectl.kubeconfig) as admin:
            gate = asyncio.Semaphore(CREATES_IN_FLIGHT)

            async def create(i: int) -> tuple[str, str]:
                body = run(f"ceiling-{i:04d}", "nowhere")
                async with gate:
                    made = await admin.create(FLOWRUNS, namespace, body)
                return made["metadata"]["name"], made["metadata"]["resourceVersion"]

            versions = dict(await asyncio.gather(*(create(i) for i in range(CEILING_RUNS))))
        async with await Transport.connect(operator_kubeconfig) as client:
            return {
                f"{n} in flight": await patch_loop(
                    client, namespace, versions, in_flight=n, seconds=seconds, pids=cluster.control_plane_pids()
                )
                for n in CEILING_IN_FLIGHT
            }
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


async def patch_loop(
    client: Transport,
    namespace: str,
    versions: dict[str, str],
    *,
    in_flight: int,
    seconds: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """Grant-like status PATCHes round-robin over the runs, `in_flight` at a time, for `seconds`;
    with the CPU each PATCH cost this client and the control plane's processes (`pids`)."""
    names = sorted(versions)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    end = time.monotonic() + seconds
    cursor = 0

    async def loop() -> None:
        nonlocal cursor
        while time.monotonic() < end:
            name = names[cursor % len(names)]
            cursor += 1
            now = utc_now().isoformat().replace("+00:00", "Z")
            condition = {
                "type": "Admitted",
                "status": "True",
                "reason": "Admitted",
                "message": f"ceiling write {cursor}",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
            started = time.monotonic()
            try:
                body = await client.patch(
                    FLOWRUNS,
                    namespace,
                    name,
                    {"status": {"message": f"ceiling {cursor}", "conditions": [condition]}},
                    status=True,
                    resource_version=versions[name],
                    field_manager="benchmark-ceiling",
                )
            except errors.WorkpoolsError as error:
                failures[type(error).__name__] += 1
                continue
            versions[name] = body["metadata"]["resourceVersion"]
            latencies.append(time.monotonic() - started)

    cpu_before = {"client": time.process_time(), **{name: cpu_seconds(pid) for name, pid in pids.items()}}
    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    elapsed = time.monotonic() - began
    cpu_after = {"client": time.process_time(), **{name: cpu_seconds(pid) for name, pid in pids.items()}}
    return {
        "patches": len(latencies),
        "per second": round(len(latencies) / elapsed, 1),
        "latency ms": percentiles(latencies),
        "failures": dict(failures),
        "cpu ms per patch": {
            name: round(1000 * (cpu_after[name] - cpu_before[name]) / max(len(latencies), 1), 2) for name in cpu_before
        },
    }


# -- 2. the workload ------------------------------------------------------------------------------


@dataclass
class RunTimes:
    created: float | None = None
    """time.monotonic() when the harness's POST returned."""
    pending: float | None = None
    running: float | None = None
    completed: float | None = None
    versions: int = 0
    """Watch events seen for the run (ADDED included)."""
    status_only: int = 0
    """MODIFIED events that did not change the state: conditions, stateName (Late), and so on."""
    late: bool = False


@dataclass
class Recorder:
    """A watch on the FlowRuns measured: when each run was first seen in each state."""

    goal: str = "Completed"
    """The state that ends the measurement once `total` runs reached it."""
    total: int = 0
    runs: dict[str, RunTimes] = field(default_factory=dict)
    reached: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _state: dict[str, str | None] = field(default_factory=dict)

    def observe(self, kind: str, obj: dict[str, Any]) -> None:
        at = time.monotonic()
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        times = self.runs.setdefault(name, RunTimes())
        times.versions += 1
        state = status.get("state")
        before = self._state.get(name)
        self._state[name] = state
        if kind == "MODIFIED" and state == before:
            times.status_only += 1
        if status.get("stateName") == "Late":
            times.late = True
        if state == "Pending" and times.pending is None:
            times.pending = at
        elif state == "Running" and times.running is None:
            times.running = at
        elif state == "Completed" and times.completed is None:
            times.completed = at
        else:
            return
        if state == self.goal:
            self.reached += 1
            if self.reached >= self.total:
                self.done.set()

    def late(self) -> int:
        return sum(1 for t in self.runs.values() if t.late)

    async def record(self, watch: ResourceWatch) -> None:
        async for event in watch.events():
            self.observe(event.type, event.object)


def workload_manifests(settings: Settings) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    made: list[dict[str, Any]] = []
    queues: list[tuple[str, str]] = []
    paused = {"paused": True} if settings.kind.paused_start else {}
    for p in range(settings.pools):
        pool_name = f"pool-{p + 1}"
        made.append(pool(pool_name, concurrencyLimit=settings.pool_limit, **paused))
        for index, name in enumerate(settings.queue_names(pool_name)):
            made.append(queue(name, pool_name, priority=10 * (index + 1), concurrencyLimit=settings.queue_limit(index)))
            queues.append((pool_name, name))
    if settings.isolation:
        made.append(pool(BURST_POOL))
    return made, queues


async def create_runs(
    admin: Transport, namespace: str, bodies: Sequence[dict[str, Any]], rate: float | None = None
) -> dict[str, float]:
    """POST the runs, CREATES_IN_FLIGHT at a time (`rate` paces them): when each POST returned."""
    gate = asyncio.Semaphore(CREATES_IN_FLIGHT)
    created: dict[str, float] = {}
    started = time.monotonic()

    async def create(i: int, body: dict[str, Any]) -> None:
        if rate:
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        async with gate:
            await admin.create(FLOWRUNS, namespace, body)
        created[body["metadata"]["name"]] = time.monotonic()

    await asyncio.gather(*(create(i, body) for i, body in enumerate(bodies)))
    return created


async def workload(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    *,
    workers_kubeconfig: Path,
    settings: Settings,
    sampler: Sampler,
    clock_started: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    kubectl = cluster.kubectl
    shape = settings.kind
    manifests, queues = workload_manifests(settings)
    kubectl.apply(*manifests, namespace=namespace)
    pools = sorted({p for p, _ in queues})
    specs = [
        WorkerSpec(f"{pool_name}-w{i + 1}", pool_name, limit=settings.worker_limit)
        for pool_name in pools
        for i in range(settings.workers)
    ]
    fleet = [AsyncWorker(spec, workers_kubeconfig, namespace, interval=10, delays=shape.delays) for spec in specs]
    recorder = Recorder(goal=shape.goal, total=settings.runs)
    placed = [queues[i % len(queues)] for i in range(settings.runs)]
    bodies = [run(f"run-{i:05d}", p, workQueue=q) for i, (p, q) in enumerate(placed)]
    # The burst pool's runs are not recorded: the measured pool's refills are.
    selector = f"spec.workPool={MEASURED_POOL}" if settings.isolation else None
    async with (
        ResourceWatch(kubectl.kubeconfig, FLOWRUNS, namespace, field_selector=selector) as watch,
        await Transport.connect(kubectl.kubeconfig) as admin,
        running(fleet),
    ):
        await watch.list()
        recording = asyncio.create_task(recorder.record(watch), name="recorder")
        # Every worker Online in the operator's eyes before the clock starts.
        await asyncio.to_thread(
            wait_for, lambda: _all_online(kubectl, namespace, len(specs)), timeout=60, what="every worker Online"
        )
        if shape.paused_start:
            created = await create_queued(
                admin, kubectl, namespace, bodies, settings=settings, recorder=recorder, pools=pools
            )
        restarted = await restart_with_pool_resumed(operator, admin, namespace, sampler) if settings.restart else None
        first = await asyncio.to_thread(snapshot, cluster, sampler, operator)
        beats_before = sum(w.log.beats for w in fleet)
        started = restarted or time.monotonic()
        clock_started()  # a profile of the window begins with it
        burst: asyncio.Task[dict[str, float]] | None = None
        if shape.paused_start:
            if restarted is None:
                await admin.patch(WORKPOOLS, namespace, MEASURED_POOL, {"spec": {"paused": False}})
            if settings.isolation:
                burst_bodies = [run(f"burst-{i:05d}", BURST_POOL) for i in range(settings.burst)]
                burst = asyncio.create_task(create_runs(admin, namespace, burst_bodies), name="burst")
        else:
            created = await create_runs(admin, namespace, bodies, settings.rate)
            log(f"created {settings.runs} runs in {time.monotonic() - started:.1f}s")
        for name, at in created.items():
            recorder.runs.setdefault(name, RunTimes()).created = at
        log(f"waiting for {settings.runs} runs to be {shape.goal}")
        waiting = asyncio.create_task(recorder.done.wait())
        done, _ = await asyncio.wait(
            {waiting, recording}, timeout=settings.deadline, return_when=asyncio.FIRST_COMPLETED
        )
        if waiting not in done:
            waiting.cancel()
            recording.cancel()
            raise AssertionError(f"only {recorder.reached}/{settings.runs} runs {shape.goal} by the deadline")
        finished = time.monotonic()
        log(f"all {settings.runs} runs {shape.goal} {finished - started:.1f}s after the clock started")
        burst_created = await burst if burst is not None else {}
        held = settings.runs if shape.goal == "Pending" else 0
        await asyncio.to_thread(
            wait_for,
            lambda: _status_totals(kubectl, namespace, pools),
            equals=Counter({"pool active": held, "queue active": held}),
            timeout=120,
            what="pool and queue statuses settled",
        )
        last = await asyncio.to_thread(snapshot, cluster, sampler, operator)
        recording.cancel()
        await asyncio.gather(recording, return_exceptions=True)
    worker_moves = Counter[str]()
    for worker in fleet:
        worker_moves.update(worker.log.writes)
    return {
        "recorder": recorder,
        "started": started,
        "created": max(created.values()),
        "burst created": max(burst_created.values(), default=None),
        "finished": finished,
        "first": first,
        "last": last,
        "worker writes": dict(worker_moves),
        "heartbeats": sum(w.log.beats for w in fleet) - beats_before,
        "worker errors": [e for w in fleet for e in w.log.errors],
        "operator log": operator.log_path,
    }


async def create_queued(
    admin: Transport,
    kubectl: Any,
    namespace: str,
    bodies: Sequence[dict[str, Any]],
    *,
    settings: Settings,
    recorder: Recorder,
    pools: Collection[str],
) -> dict[str, float]:
    """A paused start: the runs created in the paused pool, and every one Late before the clock starts."""
    created = await create_runs(admin, namespace, bodies, settings.rate)
    log(f"created {settings.runs} runs in the paused pool; waiting for every one to be Late")
    # Late comes 15 s after creation: waiting for it keeps those writes out of the window.
    queued = (settings.runs, Counter({"scheduled": settings.runs, "late": settings.runs}))
    await asyncio.to_thread(
        wait_for,
        lambda: (recorder.late(), _status_totals(kubectl, namespace, pools)),
        equals=queued,
        timeout=settings.deadline,
        what="every run Late in the paused pool",
    )
    return created


async def restart_with_pool_resumed(
    operator: OperatorProcess, admin: Transport, namespace: str, sampler: Sampler
) -> float:
    """`--restart`: stop the operator, resume the pool while it is down, start it again; when it started."""
    operator.stop(signal.SIGTERM)
    await admin.patch(WORKPOOLS, namespace, MEASURED_POOL, {"spec": {"paused": False}})
    started = time.monotonic()
    operator.start(wait=False)
    assert operator.process is not None
    sampler.pids["operator"] = operator.process.pid
    log("operator restarted with the pool resumed")
    return started


def _all_online(kubectl: Any, namespace: str, count: int) -> bool:
    items = kubectl.json("get", "wkr", "-n", namespace)["items"]
    return len(items) == count and all(w.get("status", {}).get("phase") == "Online" for w in items)


def _status_totals(kubectl: Any, namespace: str, pools: Collection[str]) -> Counter[str]:
    """Sums over `pools` and their queues as their statuses say: active slots, scheduled and late runs."""
    totals: Counter[str] = Counter()
    for kind, short in (("pool", "wp"), ("queue", "wq")):
        for item in kubectl.json("get", short, "-n", namespace)["items"]:
            if (item["metadata"]["name"] if kind == "pool" else item["spec"]["workPool"]) not in pools:
                continue
            status = item.get("status", {})
            active = status.get("slots", {}).get("active")
            if active is None:
                totals[f"{kind}s without a status"] += 1
            totals[f"{kind} active"] += active or 0
            if kind == "queue":
                totals["scheduled"] += status.get("scheduledRuns", 0)
                totals["late"] += status.get("lateRuns", 0)
    return totals


@dataclass
class Snapshot:
    at: float
    writes: Counter[WriteKey]
    cpu: dict[str, float]
    rss: dict[str, int]
    peak_rss: dict[str, int]
    steps: dict[tuple[str, str], float]
    """The operator's `workpools_pass_step_seconds`: (step, bucket bound or "sum") → cumulative value."""


def snapshot(cluster: Cluster, sampler: Sampler, operator: OperatorProcess) -> Snapshot:
    writes = api_writes(cluster.kubectl)
    sample = sampler.sample()
    try:
        steps = pass_steps(operator.metrics())
    except OSError:  # `--restart`: the process just started serves none yet, and counts from zero
        steps = {}
    return Snapshot(sample.at, writes, sample.cpu, sample.rss, sample.peak_rss, steps)


def pass_steps(exposition: str) -> dict[tuple[str, str], float]:
    """The step histogram's buckets and sums from the operator's /metrics text."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "workpools_pass_step_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found[sample.labels["step"], sample.labels["le"]] = sample.value
            elif sample.name.endswith("_sum"):
                found[sample.labels["step"], "sum"] = sample.value
    return found


def step_figures(first: Snapshot, last: Snapshot) -> dict[str, str]:
    """Per step of the pools' passes in the window: how many, their mean, the bucket bound their
    p99 falls under, and how many held the loop over 100 and 250 ms (a freed slot waits that long)."""
    delta = {key: value - first.steps.get(key, 0.0) for key, value in last.steps.items()}
    by_step = {}
    for step in sorted({step for step, _ in delta}):
        buckets = sorted(
            ((float(le), n) for (s, le), n in delta.items() if s == step and le != "sum"), key=lambda b: b[0]
        )
        count = buckets[-1][1] if buckets else 0
        if not count:
            continue
        p99 = next(le for le, n in buckets if n >= 0.99 * count)
        within = dict(buckets)
        by_step[step] = (
            f"{count:.0f} (mean {1000 * delta[step, 'sum'] / count:.0f} ms, p99 ≤ {1000 * p99:.0f} ms, "
            f"over 100 ms {count - within[0.1]:.0f}, over 250 ms {count - within[0.25]:.0f})"
        )
    return by_step


# -- figures --------------------------------------------------------------------------------------


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99/max of `values` (seconds), in milliseconds by default."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(scale * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(scale * ordered[-1], 1)}


def write_table(first: Snapshot, last: Snapshot) -> Counter[tuple[str, str, bool]]:
    """Writes in the window by (target, verb, ok): only our group's kinds and events."""
    delta: Counter[tuple[str, str, bool]] = Counter()
    for key in set(first.writes) | set(last.writes):
        n = last.writes[key] - first.writes[key]
        if n and (key.resource.endswith(GROUP_SUFFIX) or key.resource.startswith("events")):
            delta[(key.target.replace(GROUP_SUFFIX, ""), key.verb, key.ok)] += n
    return delta


def figures(result: dict[str, Any], settings: Settings, ceiling_figures: dict[str, Any]) -> dict[str, Any]:
    recorder: Recorder = result["recorder"]
    times = [t for t in recorder.runs.values() if t.created is not None]
    pendings = sorted(t.pending for t in times if t.pending is not None)
    shaped = {"drain": drain_figures, "fill": fill_figures, "refill": refill_figures}[settings.shape]
    return {
        "runs": settings.runs,
        "granted": len(pendings),
        **shaped(result, settings, times, pendings, ceiling_figures),
        f"grant timeline (seconds after the {settings.clock} at which 10%, 20%, … of runs were Pending)": [
            round(pendings[min(len(pendings) - 1, (k * len(pendings)) // 10)] - result["started"], 1)
            for k in range(1, 11)
        ],
        **costs(result, times, len(pendings)),
    }


def drain_figures(
    result: dict[str, Any], settings: Settings, times: list[RunTimes], pendings: list[float], ceiling: dict[str, Any]
) -> dict[str, Any]:
    started, finished = result["started"], result["finished"]
    to_pending = [t.pending - t.created for t in times if t.pending is not None and t.created is not None]
    to_running = [t.running - t.created for t in times if t.running is not None and t.created is not None]
    pending_to_running = [t.running - t.pending for t in times if t.running is not None and t.pending is not None]
    n = len(pendings)
    span = pendings[-1] - started
    lo, hi = pendings[n // 10], pendings[(9 * n) // 10]
    steady = (0.8 * n) / (hi - lo) if hi > lo else float("nan")
    return {
        "completed": sum(1 for t in times if t.completed is not None),
        "creation seconds": round(result["created"] - started, 1),
        "creation per second": round(settings.runs / (result["created"] - started), 1),
        "first create → last Completed seconds": round(finished - started, 1),
        "first create → last Pending seconds": round(span, 1),
        "grants per second (all runs / first create → last grant)": round(n / span, 1),
        "grants per second (steady: 10th → 90th percentile grant)": round(steady, 1),
        **against_ceiling(ceiling, {"grants/s": n / span, "steady grants/s": steady}),
        "latency creation → Pending ms": percentiles(to_pending),
        "latency creation → Running ms": percentiles(to_running),
        "latency Pending → Running ms (worker reaction)": percentiles(pending_to_running),
    }


def fill_figures(
    result: dict[str, Any], settings: Settings, times: list[RunTimes], pendings: list[float], ceiling: dict[str, Any]
) -> dict[str, Any]:
    span, clock = pendings[-1] - result["started"], settings.clock
    return {
        f"{clock} → first Pending seconds": round(pendings[0] - result["started"], 2),
        f"{clock} → last Pending seconds": round(span, 2),
        f"grants per second (all runs / {clock} → last grant)": round(len(pendings) / span, 1),
        **against_ceiling(ceiling, {"grants/s": len(pendings) / span}),
    }


def refill_figures(
    result: dict[str, Any], settings: Settings, times: list[RunTimes], pendings: list[float], ceiling: dict[str, Any]
) -> dict[str, Any]:
    first_grants = settings.pool_limit or 0
    freed = sorted(t.completed for t in times if t.completed is not None)
    refills = pendings[first_grants:]
    latencies, unpaired = fifo_latencies(freed, refills)
    measured = percentiles(latencies)
    held = [t.completed - t.pending for t in times if t.completed is not None and t.pending is not None]
    figures_ = {
        "completed": len(freed),
        f"{settings.clock} → last Completed seconds": round(result["finished"] - result["started"], 1),
        f"refill grants (after the first {first_grants})": len(refills),
        "refill grants with no earlier freed slot to pair with": unpaired,
        "freed slot → refill latency ms (Completed event → Pending event, FIFO)": measured,
        "refill latency p50 / p99 ms by tenth of the refills (the first tenth holds the resume)": by_tenth(latencies),
        "goal (issue 11)": ", ".join(
            f"{q} ≤ {goal:g} ms ({'met' if measured.get(q, float('inf')) <= goal else 'not met'})"
            for q, goal in REFILL_GOAL_MS.items()
        ),
        "refill grants per second (first → last refill grant)": round(
            (len(refills) - 1) / (refills[-1] - refills[0]) if len(refills) > 1 else 0.0, 1
        ),
        "Pending → Completed ms (the workers' hold, as the watch saw it)": percentiles(held),
    }
    if settings.isolation:
        figures_[f"burst: runs created in pool `{BURST_POOL}` at the resume"] = settings.burst
        figures_["burst: resume → last burst create seconds"] = round(result["burst created"] - result["started"], 1)
        figures_["burst: API writes below"] = (
            f"include the `{BURST_POOL}` pool's (per admitted run: ÷ {MEASURED_POOL}'s)"
        )
    return figures_


def by_tenth(latencies: Sequence[float]) -> list[str]:
    """ "p50 / p99" in ms of each tenth of `latencies`, in their order: where in the window they are slow."""
    size = len(latencies) / 10
    tenths = [latencies[round(i * size) : round((i + 1) * size)] for i in range(10)]
    return [f"{(q := percentiles(t))['p50']:g} / {q['p99']:g}" for t in tenths if t]


def fifo_latencies(freed: Sequence[float], grants: Sequence[float]) -> tuple[list[float], int]:
    """Each grant (ascending) paired with the earliest unpaired freeing event (ascending) before
    it: the latencies, and how many grants found none to pair with."""
    latencies: list[float] = []
    cursor = 0
    for grant in grants:
        if cursor < len(freed) and freed[cursor] <= grant:
            latencies.append(grant - freed[cursor])
            cursor += 1
    return latencies, len(grants) - len(latencies)


def against_ceiling(ceiling: dict[str, Any], rates: dict[str, float]) -> dict[str, float]:
    """The ceiling's raw PATCH rates, and each grant rate ÷ the one at the operator's concurrency."""
    top = CEILING_IN_FLIGHT[-1]
    figures_ = {
        f"raw status PATCH per second, 1 client, {n} in flight": ceiling[f"{n} in flight"]["per second"]
        for n in reversed(CEILING_IN_FLIGHT)
    }
    for name, rate in rates.items():
        figures_[f"ratio {name} ÷ raw PATCH/s ({top} in flight)"] = round(
            rate / ceiling[f"{top} in flight"]["per second"], 3
        )
    return figures_


def costs(result: dict[str, Any], times: list[RunTimes], n: int) -> dict[str, Any]:
    """API writes in the window by who made them, per admitted run; CPU and memory; the operator log."""
    writes = write_table(result["first"], result["last"])
    worker_writes: dict[str, int] = result["worker writes"]
    heartbeats = result["heartbeats"]

    def total(target: str, verb: str = "PATCH", ok: bool | None = None) -> int:
        return sum(v for (t, vb, k), v in writes.items() if t == target and vb == verb and (ok is None or k == ok))

    fr_status = total("flowruns/status")
    fr_status_failed = total("flowruns/status", ok=False)
    worker_fr = worker_writes.get("flowruns/status", 0) + worker_writes.get("flowruns/status failed", 0)
    operator_fr = fr_status - worker_fr
    worker_status = total("workers/status")
    operator_worker_status = worker_status - heartbeats
    events = total("events", "CREATE") + total("events", "PATCH")
    pool_status = total("workpools/status")
    queue_status = total("workqueues/status")
    operator_total = operator_fr + operator_worker_status + events + pool_status + queue_status
    rows = [
        ("flowruns/status PATCH by the operator", operator_fr),
        ("  of which refused (409 stale / 422)", fr_status_failed - worker_writes.get("flowruns/status failed", 0)),
        ("flowruns/status PATCH by the workers", worker_fr),
        ("events (POST/PATCH) by the operator", events),
        ("workpools/status PATCH", pool_status),
        ("workqueues/status PATCH", queue_status),
        ("workers/status PATCH by the operator", operator_worker_status),
        ("workers/status PATCH by the workers (heartbeats)", heartbeats),
        ("flowruns POST (the harness's creates)", total("flowruns", "CREATE")),
        ("all operator writes", operator_total),
    ]
    first, last = result["first"], result["last"]
    window = last.at - first.at
    cpu = {name: round(last.cpu.get(name, 0.0) - first.cpu.get(name, 0.0), 1) for name in last.cpu}
    return {
        "api writes": {label: value for label, value in rows},
        "operator writes per admitted run": round(operator_total / n, 2),
        "operator flowruns/status writes per admitted run": round(operator_fr / n, 2),
        "watch versions per run": percentiles([t.versions for t in times], scale=1.0),
        "status-only versions per run (conditions, Late)": percentiles([t.status_only for t in times], scale=1.0),
        "runs that turned Late": sum(1 for t in times if t.late),
        "window seconds": round(window, 1),
        "cpu seconds in the window": cpu,
        "cpu ms per admitted run": {name: round(1000 * seconds / n, 2) for name, seconds in cpu.items()},
        "operator cpu % of one core (window mean)": round(100 * cpu.get("operator", 0.0) / window, 1),
        "rss MiB at the window's start": {k: mib(v) for k, v in first.rss.items()},
        "rss MiB at the end": {k: mib(v) for k, v in last.rss.items()},
        "peak rss MiB": {k: mib(v) for k, v in last.peak_rss.items()},
        "operator pass steps in the window (synchronous: the loop waits meanwhile)": step_figures(first, last),
        "worker errors": result["worker errors"][:10],
        "operator log": log_summary(result["operator log"]),
    }


def mib(n: int) -> float:
    return round(n / 1024 / 1024, 1)


def log_summary(path: Path) -> dict[str, int]:
    levels: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) > 2 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
                levels[parts[2]] += 1
    return dict(levels)


# -- report ---------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "—"
    return str(value)


def report(figures_: dict[str, Any], context: dict[str, Any], settings: Settings, profile: str | None) -> str:
    shape = settings.shape + (" with isolation" if settings.isolation else "")
    lines = [
        f"# Admission benchmark, {shape}: {settings.runs:,} runs" + (" (diagnostic run, profiled)" if profile else ""),
        "",
        f"Command: `{settings.command}`  ",
        f"Date: {context['date']}  ",
        f"Commit: `{context['commit']}` (operator/ + benchmarks/ source digest `{context['digest']}`)  ",
        f"Kubernetes: {context['kubernetes']} (kube-apiserver + etcd, {context['where']})",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in context["machine"].items()),
        "",
        f"Workload: {describe(settings)}.",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, value in figures_.items():
        if key in ("api writes", "operator log"):
            continue
        lines.append(f"| {key} | {cell(value)} |")
    lines += ["", "## API writes in the window (API server `apiserver_request_total`)", "", "| writes | count |"]
    lines.append("|---|---|")
    for label, value in figures_["api writes"].items():
        lines.append(f"| {label} | {value:,} |")
    lines += [
        "",
        "The workers count their own writes; the operator's are the API server's count minus the workers'. ",
        "",
        "## Ceiling: one Python client PATCHing FlowRun status (before the operator started)",
        "",
        "| mode | patches | per second | latency ms | failures | cpu ms per PATCH |",
        "|---|---|---|---|---|---|",
    ]
    for mode, row in context["ceiling"].items():
        latency, failures, cpu = cell(row["latency ms"]), cell(row["failures"]), cell(row.get("cpu ms per patch", {}))
        lines.append(f"| {mode} | {row['patches']:,} | {row['per second']} | {latency} | {failures} | {cpu} |")
    lines += ["", f"Operator log: {cell(figures_['operator log'])} (warnings and errors)"]
    if profile:
        lines += ["", "(The figures above include the overhead of the profilers below.)", "", profile]
    return "\n".join(lines) + "\n"


def describe(settings: Settings) -> str:
    shape = settings.kind
    text = (
        f"{settings.pools} pool{'s' if settings.pools > 1 else ''} (limit {settings.pool_limit}) × {settings.queues} "
        + f"queues (limits {', '.join(str(settings.queue_limit(i)) for i in range(settings.queues))}), "
        + f"{settings.workers} {shape.workers} per pool (limit {settings.worker_limit} each), "
        + f"{settings.runs:,} runs spread round-robin over the queues, created "
        + (f"at {settings.rate}/s" if settings.rate else f"as fast as one client can ({CREATES_IN_FLIGHT} in flight)")
    )
    if shape.paused_start:
        text += " while the pool was paused (not measured); the clock starts when every run is Late (Scheduled, " + (
            "`PoolPaused`), the operator was stopped, the pool resumed, and the operator started again"
            if settings.restart
            else "`PoolPaused`) and the harness PATCHes `spec.paused: false`"
        )
    if settings.isolation:
        text += (
            f"; at that moment a second pool `{BURST_POOL}` without workers starts receiving {settings.burst:,} runs "
            + f"({CREATES_IN_FLIGHT} creates in flight), and only `{MEASURED_POOL}`'s runs are watched and timed"
        )
    return text


# -- main -----------------------------------------------------------------------------------------


async def measure(settings: Settings, workdir: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    cluster = Cluster(workdir, profiling=settings.profile_apiserver is not None)
    cluster.start()
    try:
        cluster.install()
        kubectl = cluster.kubectl
        operator_kubeconfig = service_account_kubeconfig(
            kubectl, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, workdir / "operator.kubeconfig"
        )
        context: dict[str, Any] = {
            "date": utc_now().strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git_commit(),
            "digest": source_digest(),
            "kubernetes": cluster.server_version(),
            "where": "KUBECONFIG" if os.environ.get("KUBECONFIG") else "local control plane started by the harness",
            "machine": machine(),
        }
        log(f"ceiling: {settings.ceiling_seconds:.0f}s per mode")
        context["ceiling"] = await ceiling(cluster, operator_kubeconfig, settings.ceiling_seconds)
        log(f"ceiling: {cell(context['ceiling'])}")
        namespace = f"bench-admission-{uuid.uuid4().hex[:5]}"
        kubectl("create", "namespace", namespace)
        workers_kubeconfig = worker_kubeconfig(kubectl, namespace, workdir / "worker.kubeconfig")
        profile_path = profile_operator(workdir) if settings.profile else None
        memory_path = trace_operator_memory(workdir) if settings.tracemalloc else None
        apiserver_profile = (
            ApiServerProfile(kubectl, workdir / "apiserver.pprof", settings.profile_apiserver)
            if settings.profile_apiserver is not None
            else None
        )
        operator = OperatorProcess(operator_kubeconfig, workdir / "operator.log", (namespace,))
        operator.start()
        try:
            assert operator.process is not None
            pids = {"operator": operator.process.pid, "harness": os.getpid(), **cluster.control_plane_pids()}
            sampler = Sampler(pids)
            sampling = asyncio.create_task(sampler.run(), name="sampler")
            try:
                result = await workload(
                    cluster,
                    operator,
                    namespace,
                    workers_kubeconfig=workers_kubeconfig,
                    settings=settings,
                    sampler=sampler,
                    clock_started=apiserver_profile.start if apiserver_profile is not None else lambda: None,
                )
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
        finally:
            operator.stop(signal.SIGTERM)
        diagnostics = []  # each figure above includes the profilers' overhead
        if profile_path and profile_path.exists():
            diagnostics.append(f"## Operator profile (cProfile)\n\n{profile_summary(profile_path)}")
        if memory_path and memory_path.exists():
            diagnostics.append(f"## Operator memory (tracemalloc)\n\n{memory_summary(memory_path)}")
        if apiserver_profile is not None:
            diagnostics.append(f"## kube-apiserver CPU profile (pprof)\n\n{await apiserver_profile.summary()}")
        return figures(result, settings, context["ceiling"]), context, "\n\n".join(diagnostics) or None
    finally:
        cluster.stop()


SHAPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "drain": {"pools": 2, "pool_limit": "50", "queue_limits": "20,10,none", "worker_limit": "20"},
    "fill": {"pools": 1, "pool_limit": "none", "queue_limits": "none", "worker_limit": "none"},
    "refill": {"pools": 1, "pool_limit": "50", "queue_limits": "none", "worker_limit": "none"},
}


def limit(value: str) -> int | None:
    """One limit as given on a command line ('none': unlimited)."""
    (only,) = limits(value)
    return only


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admission", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="drain", help="the workload (default drain)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--pools", type=int, help="drain only (default 2; fill and refill use one)")
    parser.add_argument("--queues", type=int, default=3, help="queues per pool (besides the default queue)")
    parser.add_argument("--workers", type=int, default=5, help="simulated workers per pool")
    parser.add_argument("--pool-limit", help="a number or 'none' (default 50; fill: none)")
    parser.add_argument(
        "--queue-limits",
        help="per queue, comma-separated; 'none' is unlimited (default 20,10,none; fill and refill: none)",
    )
    parser.add_argument("--worker-limit", help="a number or 'none' (default 20; fill and refill: none)")
    parser.add_argument(
        "--rate", type=float, default=None, help="runs created per second (default: as fast as possible)"
    )
    parser.add_argument("--isolation", action="store_true", help="refill: a second pool receives --burst runs")
    parser.add_argument("--burst", type=int, default=10_000, help="--isolation: runs in the second pool")
    parser.add_argument(
        "--restart", action="store_true", help="fill, refill: the clock starts at an operator restart (see above)"
    )
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=None, help="seconds for every run to complete")
    parser.add_argument("--profile", action="store_true", help="run the operator under cProfile (a diagnostic run)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace the operator's allocations; top 10 at its exit (diagnostic)"
    )
    parser.add_argument(
        "--profile-apiserver",
        type=int,
        metavar="SECONDS",
        help="take a CPU profile of kube-apiserver over the window's first SECONDS (a local control plane; diagnostic)",
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profile)")
    args = parser.parse_args(argv)
    for key, value in SHAPE_DEFAULTS[args.shape].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.shape != "drain" and args.pools != 1:
        parser.error(f"--shape {args.shape} measures one pool: --pools 1")
    if args.isolation and args.shape != "refill":
        parser.error("--isolation is a refill option")
    if args.restart and not SHAPES[args.shape].paused_start:
        parser.error("--restart needs a shape with a paused start (fill, refill)")
    if args.shape == "refill" and limit(args.pool_limit) is None:
        parser.error("--shape refill needs a --pool-limit to refill behind")
    name = "admission" if args.shape == "drain" else f"admission-{args.shape}"
    suffix = "".join(f"-{flag}" for flag in ("isolation", "restart", "profile", "tracemalloc") if getattr(args, flag))
    suffix = suffix.replace("-profile", "-profiled")
    if args.profile_apiserver is not None:
        suffix += "-apiserver-profiled"
    return Settings(
        shape=args.shape,
        runs=args.runs,
        pools=args.pools,
        queues=args.queues,
        workers=args.workers,
        pool_limit=limit(args.pool_limit),
        queue_limits=limits(args.queue_limits),
        worker_limit=limit(args.worker_limit),
        rate=args.rate,
        ceiling_seconds=args.ceiling_seconds,
        deadline=args.deadline or 300 + 0.5 * args.runs,
        profile=args.profile,
        tracemalloc=args.tracemalloc,
        profile_apiserver=args.profile_apiserver,
        output=args.output or RESULTS / f"{name}-{args.runs}{suffix}.md",
        keep=args.keep,
        command=" ".join([".venv/bin/python -m benchmarks.admission", *argv]),
        isolation=args.isolation,
        burst=args.burst if args.isolation else 0,
        restart=args.restart,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    with work_directory("bench-admission-", settings.keep) as workdir:
        figures_, context, profile = asyncio.run(measure(settings, workdir))
    record_run(settings.output, report(figures_, context, settings, profile), settings, context, figures_)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
