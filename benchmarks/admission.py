"""Admission throughput and latency (issue 5, point 7): N FlowRuns through a real API server.

    .venv/bin/python -m benchmarks.admission --runs 1000
    .venv/bin/python -m benchmarks.admission --runs 10000
    .venv/bin/python -m benchmarks.admission --runs 1000 --profile   # a diagnostic run under cProfile

Starts a local control plane (unless KUBECONFIG is set), installs manifests/ and runs the operator
as its ServiceAccount, scoped to the benchmark's namespace. Then:

1. **Ceiling** (before the operator starts, in a namespace of its own): one Python client (the
   product's `Transport`, the operator's credentials) PATCHes the status of existing FlowRuns in
   a tight loop, each write a merge patch with a resourceVersion precondition and a condition,
   like a grant; one write in flight, then 16 (the operator's `RUN_WRITES_IN_FLIGHT`). That is
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

Figures go to `benchmarks/results/admission-<N>.md` (and `.json` beside it) with the command,
commit, machine and date. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    RESULTS,
    Cluster,
    Sampler,
    WriteKey,
    api_writes,
    git_commit,
    machine,
    source_digest,
    utc_now,
)
from tests.support.fleet import AsyncWorker, WorkerSpec, running
from tests.support.objects import pool, queue, run
from tests.support.operator import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, OperatorProcess, service_account_kubeconfig
from tests.support.waiting import wait_for
from tests.support.watches import ResourceWatch
from tests.support.worker_rbac import worker_kubeconfig
from workpools.client import errors
from workpools.client.resources import FLOWRUNS
from workpools.client.transport import Transport

CREATES_IN_FLIGHT = 16
CEILING_IN_FLIGHT = (1, 16)
CEILING_RUNS = 200
GROUP_SUFFIX = ".workpools.dev"


@dataclass(frozen=True)
class Settings:
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
    output: Path
    keep: bool
    command: str

    def queue_names(self, pool_name: str) -> list[str]:
        return [f"{pool_name}-q{i + 1}" for i in range(self.queues)]

    def queue_limit(self, index: int) -> int | None:
        return self.queue_limits[index] if index < len(self.queue_limits) else None


# -- the operator (optionally under cProfile) -----------------------------------------------------


PROFILER = """\
# Written by benchmarks/admission.py --profile: profiles the process that imports it (the operator),
# dumping the stats at a normal exit (SIGTERM makes kopf return).
import atexit, cProfile, os

_path = os.environ.get("WORKPOOLS_BENCH_PROFILE")
if _path:
    _profile = cProfile.Profile()
    _profile.enable()

    def _dump() -> None:
        _profile.disable()
        _profile.dump_stats(_path)

    atexit.register(_dump)
"""


def profile_operator(workdir: Path) -> Path:
    """Make the next `python -m workpools` started from here run under cProfile (a `sitecustomize`
    on PYTHONPATH), so the operator starts exactly as the tests start it; returns the dump's path."""
    directory = workdir / "profiler"
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(PROFILER)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    os.environ["WORKPOOLS_BENCH_PROFILE"] = str(workdir / "operator.prof")
    return workdir / "operator.prof"


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
                f"{n} in flight": await patch_loop(client, namespace, versions, in_flight=n, seconds=seconds)
                for n in CEILING_IN_FLIGHT
            }
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


async def patch_loop(
    client: Transport, namespace: str, versions: dict[str, str], *, in_flight: int, seconds: float
) -> dict[str, Any]:
    """Grant-like status PATCHes round-robin over the runs, `in_flight` at a time, for `seconds`."""
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

    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    elapsed = time.monotonic() - began
    return {
        "patches": len(latencies),
        "per second": round(len(latencies) / elapsed, 1),
        "latency ms": percentiles(latencies),
        "failures": dict(failures),
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
    """A watch on every FlowRun of the namespace: when each run was first seen in each state."""

    runs: dict[str, RunTimes] = field(default_factory=dict)
    completed: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    total: int = 0
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
            self.completed += 1
            if self.completed >= self.total:
                self.done.set()

    async def record(self, watch: ResourceWatch) -> None:
        async for event in watch.events():
            self.observe(event.type, event.object)


def workload_manifests(settings: Settings) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    made: list[dict[str, Any]] = []
    queues: list[tuple[str, str]] = []
    for p in range(settings.pools):
        pool_name = f"pool-{p + 1}"
        made.append(pool(pool_name, concurrencyLimit=settings.pool_limit))
        for index, name in enumerate(settings.queue_names(pool_name)):
            made.append(queue(name, pool_name, priority=10 * (index + 1), concurrencyLimit=settings.queue_limit(index)))
            queues.append((pool_name, name))
    return made, queues


async def workload(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    *,
    workers_kubeconfig: Path,
    settings: Settings,
    sampler: Sampler,
) -> dict[str, Any]:
    kubectl = cluster.kubectl
    manifests, queues = workload_manifests(settings)
    kubectl.apply(*manifests, namespace=namespace)
    specs = [
        WorkerSpec(f"{pool_name}-w{i + 1}", pool_name, limit=settings.worker_limit)
        for pool_name in sorted({p for p, _ in queues})
        for i in range(settings.workers)
    ]
    fleet = [AsyncWorker(spec, workers_kubeconfig, namespace, interval=10, delays=(0.0, 0.0)) for spec in specs]
    recorder = Recorder(total=settings.runs)
    async with (
        ResourceWatch(kubectl.kubeconfig, FLOWRUNS, namespace) as watch,
        await Transport.connect(kubectl.kubeconfig) as admin,
        running(fleet),
    ):
        await watch.list()
        recording = asyncio.create_task(recorder.record(watch), name="recorder")
        # Every worker Online in the operator's eyes before the clock starts.
        await asyncio.to_thread(
            wait_for, lambda: _all_online(kubectl, namespace, len(specs)), timeout=60, what="every worker Online"
        )
        first = await asyncio.to_thread(snapshot, cluster, sampler)
        beats_before = sum(w.log.beats for w in fleet)
        gate = asyncio.Semaphore(CREATES_IN_FLIGHT)
        started = time.monotonic()

        async def create(i: int) -> None:
            pool_name, queue_name = queues[i % len(queues)]
            body = run(f"run-{i:05d}", pool_name, workQueue=queue_name)
            if settings.rate:
                await asyncio.sleep(max(0.0, started + i / settings.rate - time.monotonic()))
            async with gate:
                await admin.create(FLOWRUNS, namespace, body)
            recorder.runs.setdefault(body["metadata"]["name"], RunTimes()).created = time.monotonic()

        await asyncio.gather(*(create(i) for i in range(settings.runs)))
        created = time.monotonic()
        log(f"created {settings.runs} runs in {created - started:.1f}s; waiting for them to complete")
        waiting = asyncio.create_task(recorder.done.wait())
        done, _ = await asyncio.wait(
            {waiting, recording}, timeout=settings.deadline, return_when=asyncio.FIRST_COMPLETED
        )
        if waiting not in done:
            waiting.cancel()
            recording.cancel()
            raise AssertionError(f"only {recorder.completed}/{settings.runs} runs completed by the deadline")
        finished = time.monotonic()
        log(f"all {settings.runs} runs Completed {finished - started:.1f}s after the first create")
        await asyncio.to_thread(
            wait_for, lambda: _settled(kubectl, namespace), timeout=120, what="pool and queue statuses settled"
        )
        last = await asyncio.to_thread(snapshot, cluster, sampler)
        recording.cancel()
        await asyncio.gather(recording, return_exceptions=True)
    worker_moves = Counter[str]()
    for worker in fleet:
        worker_moves.update(worker.log.writes)
    return {
        "recorder": recorder,
        "started": started,
        "created": created,
        "finished": finished,
        "first": first,
        "last": last,
        "worker writes": dict(worker_moves),
        "heartbeats": sum(w.log.beats for w in fleet) - beats_before,
        "worker errors": [e for w in fleet for e in w.log.errors],
        "operator log": operator.log_path,
    }


def _all_online(kubectl: Any, namespace: str, count: int) -> bool:
    items = kubectl.json("get", "wkr", "-n", namespace)["items"]
    return len(items) == count and all(w.get("status", {}).get("phase") == "Online" for w in items)


def _settled(kubectl: Any, namespace: str) -> bool:
    pools = kubectl.json("get", "wp", "-n", namespace)["items"]
    queues = kubectl.json("get", "wq", "-n", namespace)["items"]
    return all(p.get("status", {}).get("slots", {}).get("active") == 0 for p in pools) and all(
        q.get("status", {}).get("slots", {}).get("active") == 0 and q["status"].get("scheduledRuns", 0) == 0
        for q in queues
    )


@dataclass
class Snapshot:
    at: float
    writes: Counter[WriteKey]
    cpu: dict[str, float]
    rss: dict[str, int]
    peak_rss: dict[str, int]


def snapshot(cluster: Cluster, sampler: Sampler) -> Snapshot:
    writes = api_writes(cluster.kubectl)
    sample = sampler.sample()
    return Snapshot(sample.at, writes, sample.cpu, sample.rss, sample.peak_rss)


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
    started, finished = result["started"], result["finished"]
    pendings = sorted(t.pending for t in times if t.pending is not None)
    to_pending = [t.pending - t.created for t in times if t.pending is not None and t.created is not None]
    to_running = [t.running - t.created for t in times if t.running is not None and t.created is not None]
    pending_to_running = [t.running - t.pending for t in times if t.running is not None and t.pending is not None]
    n = len(pendings)
    span = pendings[-1] - started
    lo, hi = pendings[n // 10], pendings[(9 * n) // 10]
    steady = (0.8 * n) / (hi - lo) if hi > lo else float("nan")

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
    ceiling_rate = ceiling_figures[f"{CEILING_IN_FLIGHT[-1]} in flight"]["per second"]
    ceiling_rate_1 = ceiling_figures[f"{CEILING_IN_FLIGHT[0]} in flight"]["per second"]
    grants_per_second = n / span
    return {
        "runs": settings.runs,
        "granted": n,
        "completed": recorder.completed,
        "creation seconds": round(result["created"] - started, 1),
        "creation per second": round(settings.runs / (result["created"] - started), 1),
        "first create → last Completed seconds": round(finished - started, 1),
        "first create → last Pending seconds": round(span, 1),
        "grants per second (all runs / first create → last grant)": round(grants_per_second, 1),
        "grants per second (steady: 10th → 90th percentile grant)": round(steady, 1),
        "raw status PATCH per second, 1 client, 16 in flight": ceiling_rate,
        "raw status PATCH per second, 1 client, 1 in flight": ceiling_rate_1,
        "ratio grants/s ÷ raw PATCH/s (16 in flight)": round(grants_per_second / ceiling_rate, 3),
        "ratio steady grants/s ÷ raw PATCH/s (16 in flight)": round(steady / ceiling_rate, 3),
        "latency creation → Pending ms": percentiles(to_pending),
        "latency creation → Running ms": percentiles(to_running),
        "latency Pending → Running ms (worker reaction)": percentiles(pending_to_running),
        "grant timeline (seconds after the first create at which 10%, 20%, … of runs were Pending)": [
            round(pendings[min(n - 1, (k * n) // 10)] - started, 1) for k in range(1, 11)
        ],
        "api writes": {label: value for label, value in rows},
        "operator writes per admitted run": round(operator_total / n, 2),
        "operator flowruns/status writes per admitted run": round(operator_fr / n, 2),
        "watch versions per run": percentiles([t.versions for t in times], scale=1.0),
        "status-only versions per run (conditions, Late)": percentiles([t.status_only for t in times], scale=1.0),
        "runs that turned Late": sum(1 for t in times if t.late),
        "window seconds": round(window, 1),
        "cpu seconds in the window": cpu,
        "operator cpu % of one core (window mean)": round(100 * cpu.get("operator", 0.0) / window, 1),
        "rss MiB at the end": {k: mib(v) for k, v in last.rss.items()},
        "peak rss MiB": {k: mib(v) for k, v in last.peak_rss.items()},
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


def profile_summary(path: Path, top: int = 30) -> str:
    """The operator's hottest functions from a cProfile dump: by own time, then by cumulative time."""
    out: list[str] = []
    for order in ("tottime", "cumulative"):
        stream = _Stream()
        stats = pstats.Stats(str(path), stream=stream)  # type: ignore[arg-type]
        stats.strip_dirs().sort_stats(order).print_stats(top)
        out.append(f"### by {order}\n\n```\n{stream.text()}\n```")
    return "\n\n".join(out)


class _Stream:
    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def text(self) -> str:
        lines = "".join(self._parts).splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        head = [line for line in lines[:start] if "function calls" in line]
        return "\n".join([*head, *lines[start:]]).rstrip()


# -- report ---------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "—"
    return str(value)


def report(figures_: dict[str, Any], context: dict[str, Any], settings: Settings, profile: str | None) -> str:
    lines = [
        f"# Admission benchmark: {settings.runs:,} runs" + (" (diagnostic run under cProfile)" if profile else ""),
        "",
        f"Command: `{settings.command}`  ",
        f"Date: {context['date']}  ",
        f"Commit: `{context['commit']}` (operator/ + benchmarks/ source digest `{context['digest']}`)  ",
        f"Kubernetes: {context['kubernetes']} (kube-apiserver + etcd, {context['where']})",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in context["machine"].items()),
        "",
        "Workload: "
        + f"{settings.pools} pools (limit {settings.pool_limit}) × {settings.queues} queues "
        + f"(limits {', '.join(str(settings.queue_limit(i)) for i in range(settings.queues))}), "
        + f"{settings.workers} instant-completing workers per pool (limit {settings.worker_limit} each), "
        + f"{settings.runs:,} runs spread round-robin over the queues, created "
        + (f"at {settings.rate}/s" if settings.rate else f"as fast as one client can ({CREATES_IN_FLIGHT} in flight)")
        + ".",
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
        "| mode | patches | per second | latency ms | failures |",
        "|---|---|---|---|---|",
    ]
    for mode, row in context["ceiling"].items():
        latency, failures = cell(row["latency ms"]), cell(row["failures"])
        lines.append(f"| {mode} | {row['patches']:,} | {row['per second']} | {latency} | {failures} |")
    lines += ["", f"Operator log: {cell(figures_['operator log'])} (warnings and errors)"]
    if profile:
        lines += ["", "## Operator profile (cProfile; figures above include its overhead)", "", profile]
    return "\n".join(lines) + "\n"


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- main -----------------------------------------------------------------------------------------


async def measure(settings: Settings, workdir: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    cluster = Cluster(workdir)
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
                )
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
        finally:
            operator.stop(signal.SIGTERM)
        profile = profile_summary(profile_path) if profile_path and profile_path.exists() else None
        return figures(result, settings, context["ceiling"]), context, profile
    finally:
        cluster.stop()


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admission", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=2)
    parser.add_argument("--queues", type=int, default=3, help="queues per pool (besides the default queue)")
    parser.add_argument("--workers", type=int, default=5, help="simulated workers per pool")
    parser.add_argument("--pool-limit", type=int, default=50)
    parser.add_argument(
        "--queue-limits",
        default="20,10,none",
        help="per queue, comma-separated; 'none' is unlimited (default 20,10,none)",
    )
    parser.add_argument("--worker-limit", type=int, default=20)
    parser.add_argument(
        "--rate", type=float, default=None, help="runs created per second (default: as fast as possible)"
    )
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=None, help="seconds for every run to complete")
    parser.add_argument("--profile", action="store_true", help="run the operator under cProfile (a diagnostic run)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profile)")
    args = parser.parse_args(argv)
    limits = tuple(None if v.strip().lower() == "none" else int(v) for v in args.queue_limits.split(","))
    suffix = "-profiled" if args.profile else ""
    return Settings(
        runs=args.runs,
        pools=args.pools,
        queues=args.queues,
        workers=args.workers,
        pool_limit=args.pool_limit,
        queue_limits=limits,
        worker_limit=args.worker_limit,
        rate=args.rate,
        ceiling_seconds=args.ceiling_seconds,
        deadline=args.deadline or 300 + 0.5 * args.runs,
        profile=args.profile,
        output=args.output or RESULTS / f"admission-{args.runs}{suffix}.md",
        keep=args.keep,
        command=" ".join([".venv/bin/python -m benchmarks.admission", *argv]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    try:
        figures_, context, profile = asyncio.run(measure(settings, workdir))
    finally:
        if settings.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(report(figures_, context, settings, profile))
    record = {"settings": {k: str(v) for k, v in asdict(settings).items()}, "context": context, "figures": figures_}
    settings.output.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    log(f"wrote {settings.output}")
    print(settings.output.read_text())
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
