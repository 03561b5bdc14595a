"""The cost of heartbeats (issue 4, point 5): N simulated workers heartbeating against a real API server.

    .venv/bin/python -m benchmarks.heartbeats --workers 100 --interval 10 --duration 180

Starts a local control plane (unless KUBECONFIG is set), installs manifests/ and runs the
operator as its ServiceAccount (scoped to the benchmark's namespace). Then:

1. Baseline, before the operator runs, in a namespace of its own: how fast one Python client
   (the same `Heartbeat` class, the worker's credentials) can PATCH a Worker's status, back to
   back and with a few beats in flight: the ceiling to hold "heartbeats/s needed" against.
2. One WorkPool with `--queues` queues (plus its default queue), and N workers in this process
   (asyncio, one shared Transport, the worker's RBAC), each heartbeating every `--interval`
   seconds with its first beat spread evenly over the first interval, for `--duration` seconds.
3. After `--warmup` seconds (registration, the first Online transitions), and once the pool counts
   every worker Online plus one interval (at most half-way through), a steady window until
   the end, measured from the outside: the API server's `apiserver_request_total` (writes by
   resource, subresource and verb; the operator's share is the total minus what the simulated
   workers sent, which the harness counts itself), watches on the pool and its queues (writes per
   object and which fields changed), `/proc` of the operator, the control-plane processes, this
   harness and the whole machine (CPU seconds, RSS), heartbeat latency and how late beats left.

The figures go to `benchmarks/results/heartbeats-<N>.md` (and `.json` beside it), with the
command, commit, machine and date. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    RESULTS,
    Change,
    Cluster,
    Sample,
    Sampler,
    Watch,
    WriteKey,
    api_writes,
    changed_fields,
    git_commit,
    log,
    machine,
    profile_operator,
    profile_summary,
    record,
    source_digest,
    utc_now,
)
from tests.support.objects import pool, queue
from tests.support.operator import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, OperatorProcess, service_account_kubeconfig
from tests.support.worker_rbac import worker_kubeconfig
from workpools.api.meta import GROUP
from workpools.client import Heartbeat, errors
from workpools.client.heartbeats import FIELD_MANAGER as HEARTBEAT_MANAGER
from workpools.client.resources import WORKERS
from workpools.client.transport import Body, ResourceType, Transport

POOL = "bench"
QUEUE_WRITE_GOAL = 30.0
"""Seconds: a queue should be written at most once per this (its lastPolled)."""
BASELINE_CONCURRENCY = 10
OTHER_LOAD_WARNING = 25.0
"""% of one core used by processes outside the benchmark above which the report says so first."""


# -- counting what the simulated workers send ----------------------------------------------------


class CountingTransport(Transport):
    """The real transport, counting the writes it completes, keyed like the API server's counter."""

    writes: Counter[WriteKey]

    def _count(self, rt: ResourceType, subresource: str, verb: str, ok: bool) -> None:
        resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
        self.writes[WriteKey(resource, subresource, verb, ok)] += 1

    async def create(self, rt: ResourceType, namespace: str, body: Body, **options: Any) -> Body:
        try:
            created = await super().create(rt, namespace, body, **options)
        except errors.WorkpoolsError:
            self._count(rt, "", "CREATE", ok=False)
            raise
        self._count(rt, "", "CREATE", ok=True)
        return created

    async def patch(self, rt: ResourceType, namespace: str, name: str, patch: Any, **options: Any) -> Body:
        subresource = "status" if options.get("status") else ""
        try:
            patched = await super().patch(rt, namespace, name, patch, **options)
        except errors.WorkpoolsError:
            self._count(rt, subresource, "PATCH", ok=False)
            raise
        self._count(rt, subresource, "PATCH", ok=True)
        return patched


async def connect(kubeconfig: Path) -> CountingTransport:
    transport = await CountingTransport.connect(kubeconfig)
    assert isinstance(transport, CountingTransport)
    transport.writes = Counter()
    return transport


# -- the simulated workers -----------------------------------------------------------------------


@dataclass
class Beats:
    """What the simulated workers did: every completed beat, every failure, every slot skipped."""

    done: list[tuple[float, float, float]] = field(default_factory=list)
    """(started at, latency, lag behind its slot) per successful beat, seconds (time.monotonic())."""
    failures: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    """Slots a worker missed entirely because its previous beat was still running an interval later."""
    last: dict[str, datetime.datetime | None] = field(default_factory=dict)
    """Each worker's last recorded heartbeat, as the API server returned it."""

    def between(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [b for b in self.done if start <= b[0] <= end]


async def heartbeat_on_schedule(
    beat: Heartbeat, first: float, interval: float, stops: dict[str, float], beats: Beats
) -> None:
    """Beat at first, first + interval, … until `stops[name]` (which may move); a slot passed by a whole
    interval is skipped."""
    slot = 0
    while (due := first + slot * interval) < stops[beat.name]:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if time.monotonic() >= stops[beat.name]:
            return
        started = time.monotonic()
        try:
            worker = await beat.beat()
        except Exception as error:  # a failed beat is a figure, never the worker's end
            beats.failures[type(error).__name__] += 1
        else:
            beats.done.append((started, time.monotonic() - started, started - due))
            beats.last[beat.name] = worker.status.last_heartbeat_time
        slot += 1
        late = time.monotonic() - (first + slot * interval)
        if late >= interval:
            missed = int(late // interval)
            beats.skipped += missed
            slot += missed


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


# -- baseline: the ceiling of one Python client --------------------------------------------------


async def baseline(cluster: Cluster, workdir: Path, seconds: float) -> dict[str, Any]:
    """Back-to-back heartbeats of one client, alone on the API server (no operator running)."""
    kubectl = cluster.kubectl
    namespace = f"bench-baseline-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    try:
        kubectl.apply(pool(POOL), namespace=namespace)
        transport = await connect(worker_kubeconfig(kubectl, namespace, workdir / "baseline-worker.kubeconfig"))
        apiserver = cluster.control_plane_pids().get("kube-apiserver")
        sampler = Sampler({"harness": os.getpid(), **({"kube-apiserver": apiserver} if apiserver else {})})
        try:
            beaters = [
                Heartbeat(transport, namespace=namespace, pool=POOL, name=f"solo-{i}", interval=10)
                for i in range(BASELINE_CONCURRENCY)
            ]
            for beater in beaters:
                await beater.beat()  # registered: from here on each beat is one status PATCH
            results = {}
            for label, team in (("sequential", beaters[:1]), (f"{BASELINE_CONCURRENCY} in flight", beaters)):
                latencies: list[float] = []
                before = sampler.sample()
                end = time.monotonic() + seconds

                async def loop(beater: Heartbeat, end: float = end, latencies: list[float] = latencies) -> None:
                    while time.monotonic() < end:
                        started = time.monotonic()
                        await beater.beat()
                        latencies.append(time.monotonic() - started)

                await asyncio.gather(*(loop(b) for b in team))
                after = sampler.sample()
                elapsed = after.at - before.at
                used = {name: after.cpu[name] - before.cpu[name] for name in after.cpu}
                results[label] = {
                    "beats": len(latencies),
                    "per second": round(len(latencies) / elapsed, 1),
                    "latency ms": percentiles(latencies),
                    "cpu ms per beat": {name: round(1000 * t / max(1, len(latencies)), 2) for name, t in used.items()},
                    "cpu % of one core": {name: round(100 * t / elapsed) for name, t in used.items()},
                }
            return results
        finally:
            await transport.close()
    finally:
        kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=60s", check=False)


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    workers: int
    interval: int
    duration: float
    warmup: float
    queues: int
    silence: int
    newcomers: int
    baseline_seconds: float
    output: Path
    keep: bool
    profile: bool
    argv: tuple[str, ...]


@dataclass
class Snapshot:
    at: float
    wall: str
    server: Counter[WriteKey]
    client: Counter[WriteKey]
    sample: Sample


async def snapshot(cluster: Cluster, transport: CountingTransport, sampler: Sampler) -> Snapshot:
    """The API server's counters and ours at (nearly) the same moment, and a /proc sample."""
    client = Counter(transport.writes)
    at, wall = time.monotonic(), utc_now().isoformat(timespec="seconds")
    server = await asyncio.to_thread(api_writes, cluster.kubectl)
    # Our counter moved while the scrape ran; the API server's reflects a moment inside that span.
    after = transport.writes
    mid = Counter({key: (client[key] + after[key]) // 2 for key in client.keys() | after.keys()})
    return Snapshot(at, wall, server, mid, sampler.sample())


async def run(settings: Settings) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-heartbeats-"))
    print(f"workdir {workdir}", file=sys.stderr)
    cluster = Cluster(workdir)
    cluster.start()
    profile = profile_operator(workdir) if settings.profile else None
    try:
        figures = await measure(cluster, workdir, settings)
        if profile is not None and profile.exists():
            figures["operator profile"] = profile_summary(profile)
        return figures
    finally:
        cluster.stop()
        if not settings.keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def measure(cluster: Cluster, workdir: Path, settings: Settings) -> dict[str, Any]:
    kubectl = cluster.kubectl
    cluster.install()
    figures: dict[str, Any] = {
        "command": "python -m benchmarks.heartbeats " + " ".join(settings.argv),
        "kubeconfig": os.environ.get("KUBECONFIG") or "none (local control plane started by the benchmark)",
        "date": utc_now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "source digest": source_digest(),
        "machine": {**machine(), "kubernetes (API server)": cluster.server_version()},
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("output", "argv", "keep", "profile")},
    }
    log(f"baseline: {settings.baseline_seconds:.0f}s sequential, {settings.baseline_seconds:.0f}s concurrent")
    figures["baseline"] = await baseline(cluster, workdir, settings.baseline_seconds)

    namespace = f"bench-heartbeats-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    figures["namespace"] = namespace
    operator_config = service_account_kubeconfig(
        kubectl, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, workdir / "operator.kubeconfig"
    )
    operator = OperatorProcess(operator_config, workdir / "operator.log", namespaces=(namespace,))
    await asyncio.to_thread(operator.start)
    try:
        assert operator.process is not None
        queue_names = [f"q{i}" for i in range(1, settings.queues + 1)]
        kubectl.apply(
            pool(POOL),
            *(queue(name, POOL, priority=10 * (i + 1)) for i, name in enumerate(queue_names)),
            namespace=namespace,
        )
        kubectl("wait", "--for=jsonpath={.status.defaultQueue}", f"wp/{POOL}", "-n", namespace, "--timeout=60s")
        watches = {
            label: Watch(kubectl, f"{plural}.{GROUP}", namespace, workdir / f"watch-{plural}.log")
            for label, plural in (("pool", "workpools"), ("queues", "workqueues"))
        }
        for watch in watches.values():
            await watch.start()
        pids = {"operator": operator.process.pid, **cluster.control_plane_pids(), "harness": os.getpid()}
        sampler = Sampler(pids)
        sampling = asyncio.create_task(sampler.run(), name="sampler")
        transport = await connect(worker_kubeconfig(kubectl, namespace, workdir / "worker.kubeconfig"))
        try:
            figures |= await simulate(
                cluster, settings=settings, namespace=namespace, transport=transport, sampler=sampler, watches=watches
            )
            events = Counter(e["reason"] for e in kubectl.json("get", "events", "-n", namespace)["items"])
            figures["events by reason (whole run)"] = dict(sorted(events.items()))
        finally:
            sampling.cancel()
            await transport.close()
            for watch in watches.values():
                await watch.stop()
    finally:
        await asyncio.to_thread(operator.stop)
    figures["operator log"] = log_summary(workdir / "operator.log")
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return figures


async def simulate(
    cluster: Cluster,
    *,
    settings: Settings,
    namespace: str,
    transport: CountingTransport,
    sampler: Sampler,
    watches: dict[str, Watch],
) -> dict[str, Any]:
    n, interval = settings.workers, settings.interval
    beats = Beats()
    workers = [
        Heartbeat(transport, namespace=namespace, pool=POOL, name=f"w-{i:05d}", interval=interval) for i in range(n)
    ]
    start = time.monotonic() + 1.0
    stop = start + settings.duration
    # With a silence or newcomer check, everyone beats on after the window while those are timed.
    after_window = settings.silence or settings.newcomers
    stops = {w.name: stop + (silence_allowance(interval) if after_window else 0.0) for w in workers}
    log(f"{n} workers every {interval}s for {settings.duration:.0f}s (warm-up {settings.warmup:.0f}s)")
    tasks = {
        w.name: asyncio.create_task(heartbeat_on_schedule(w, start + i * interval / n, interval, stops, beats))
        for i, w in enumerate(workers)
    }
    await sleep_until(start + settings.warmup)
    await settle(watches["pool"], n, start=start, interval=interval, latest=(start + settings.warmup + stop) / 2)
    first = await snapshot(cluster, transport, sampler)
    log("steady window started")
    await sleep_until(stop)
    last = await snapshot(cluster, transport, sampler)
    stored = await asyncio.to_thread(worker_statuses, cluster, namespace)
    liveness = joined = None
    if after_window:
        log(f"steady window ended; {settings.silence} workers fall silent, {settings.newcomers} join, the rest beat on")
        chosen = [workers[i * n // settings.silence].name for i in range(settings.silence)]
        liveness, joined = await asyncio.gather(
            silence(
                transport,
                namespace,
                chosen,
                stops=stops,
                tasks=tasks,
                beats=beats,
                interval=interval,
                n=n,
                watch=watches["pool"],
            ),
            join(transport, namespace, settings.newcomers, interval=interval, stops=stops, tasks=tasks, beats=beats),
        )
    log("stopping the workers")
    for name in stops:
        stops[name] = 0.0
    await asyncio.gather(*tasks.values())
    return {
        "run": {
            "started": first.wall,
            "steady window began after (s)": round(first.at - start, 1),
            "steady window (s)": round(last.at - first.at, 1),
            "all workers Online after (s)": all_online_after(watches["pool"].changes, n, start),
        },
        "workers as stored at the end of the window": stored,
        "silence check": liveness,
        "newcomers": joined,
        **steady_figures(settings, first=first, last=last, beats=beats, sampler=sampler, watches=watches),
    }


async def settle(watch: Watch, n: int, *, start: float, interval: int, latest: float) -> None:
    """Past the warm-up, wait until the pool counts all `n` workers Online, then one interval more
    (each has beaten since), so that registrations do not spill into the steady window; at most
    until `latest` (half the planned window), for fleets the machine cannot bring Online."""
    while time.monotonic() < latest:
        if (online := all_online_after(watch.changes, n, start)) is not None:
            await sleep_until(min(start + online + interval, latest))
            return
        await asyncio.sleep(0.5)


ONLINE_POLL = 0.05
"""Seconds between a newcomer's reads of its own Worker while it waits to be Online."""
ONLINE_ALLOWANCE = 30.0
"""Seconds a newcomer waits to be Online before it counts as never Online."""


async def join(
    transport: Transport,
    namespace: str,
    count: int,
    *,
    interval: int,
    stops: dict[str, float],
    tasks: dict[str, asyncio.Task[None]],
    beats: Beats,
) -> dict[str, Any] | None:
    """`count` new workers register under full load, one after the other over an interval; each
    times how long after its first heartbeat was accepted it is first read as Online (the goal:
    1 s at p99). One at a time, so the reads (every ONLINE_POLL s) add little load."""
    if not count:
        return None
    delays: list[float] = []
    never = 0
    end = max(stops.values())
    for i in range(count):
        await asyncio.sleep(interval / count)
        beat = Heartbeat(transport, namespace=namespace, pool=POOL, name=f"new-{i:04d}", interval=interval)
        while True:  # registration: the first heartbeat, accepted when beat() returns; retried as a worker does
            try:
                await beat.beat()
                break
            except errors.WorkpoolsError as error:
                beats.failures[type(error).__name__] += 1
        accepted = time.monotonic()
        stops[beat.name] = end
        tasks[beat.name] = asyncio.create_task(heartbeat_on_schedule(beat, accepted + interval, interval, stops, beats))
        while time.monotonic() < accepted + ONLINE_ALLOWANCE:
            body = await transport.get(WORKERS, namespace, beat.name)
            if (body.get("status") or {}).get("phase") == "Online":
                delays.append(time.monotonic() - accepted)
                break
            await asyncio.sleep(ONLINE_POLL)
        else:
            never += 1
    return {
        "joined": count,
        "goal (s, p99)": 1.0,
        "Online after first heartbeat (ms)": percentiles(delays),
        f"not Online within {ONLINE_ALLOWANCE:.0f} s": never,
        "read every (s)": ONLINE_POLL,
    }


OFFLINE_SLACK = 2.0
"""Seconds past 3 intervals of silence by which a silenced worker should be Offline (issue 12)."""


def silence_allowance(interval: int) -> float:
    """How long the silence check waits for Offline: the rule's 3 intervals, plus generous slack."""
    return 3 * interval + 30.0


async def silence(
    transport: Transport,
    namespace: str,
    chosen: list[str],
    *,
    stops: dict[str, float],
    tasks: dict[str, asyncio.Task[None]],
    beats: Beats,
    interval: int,
    n: int,
    watch: Watch,
) -> dict[str, Any]:
    """Silence `chosen` workers under full load; time how long until each is stored Offline.

    The goal (issue 12; issue 4 allowed 5 s): Offline within 3 × interval + OFFLINE_SLACK of the last
    heartbeat. Measured from the heartbeat the API server recorded to (a) the Ready condition's
    lastTransitionTime the operator wrote (1 s resolution) and (b) the moment a poll (every 0.5 s)
    first saw phase Offline.
    """
    began = time.monotonic()
    for name in chosen:
        stops[name] = began
    await asyncio.gather(*(tasks[name] for name in chosen))
    deadline = began + silence_allowance(interval)
    decided: dict[str, float] = {}
    seen: dict[str, float] = {}
    while len(seen) < len(chosen) and time.monotonic() < deadline:
        for name in [c for c in chosen if c not in seen]:
            body = await transport.get(WORKERS, namespace, name)
            status = body.get("status") or {}
            last = beats.last.get(name)
            if status.get("phase") == "Offline" and last is not None:
                seen[name] = (utc_now() - last).total_seconds()
                conditions: list[dict[str, Any]] = status.get("conditions", [])
                ready = next((c for c in conditions if c.get("type") == "Ready"), {})
                if ready.get("lastTransitionTime"):
                    flipped = datetime.datetime.fromisoformat(ready["lastTransitionTime"])
                    decided[name] = (flipped - last).total_seconds()
        await asyncio.sleep(0.5)
    dropped = next(
        (
            round(c.at - began, 1)
            for c in watch.changes
            if c.at >= began and ((c.object.get("status") or {}).get("workers") or {}).get("online") == n - len(chosen)
        ),
        None,
    )

    def spread(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {
            "min": round(min(values), 1),
            "median": round(statistics.median(values), 1),
            "max": round(max(values), 1),
        }

    return {
        "silenced": len(chosen),
        "goal (s)": 3 * interval + OFFLINE_SLACK,
        "Offline decided after s of silence (Ready lastTransitionTime)": spread(list(decided.values())),
        "Offline seen after s of silence (poll)": spread(list(seen.values())),
        "not Offline within the allowance": len(chosen) - len(seen),
        "allowance (s)": silence_allowance(interval),
        "pool status.workers.online dropped to N - silenced after (s)": dropped,
    }


def worker_statuses(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """What the Workers say at the end of the window: stored phase, and how long ago the operator last
    wrote each one's status (from managedFields; the workers' own heartbeats are another manager)."""
    items = cluster.kubectl.json("get", "workers.workpools.dev", "-n", namespace, "--show-managed-fields")["items"]
    now = utc_now()
    phases: Counter[str] = Counter()
    ages: list[float] = []
    for item in items:
        phases[(item.get("status") or {}).get("phase") or "(none)"] += 1
        written = [
            datetime.datetime.fromisoformat(m["time"])
            for m in item["metadata"].get("managedFields", [])
            if m.get("subresource") == "status" and m.get("manager") != HEARTBEAT_MANAGER and m.get("time")
        ]
        if written:
            ages.append((now - max(written)).total_seconds())
    return {
        "phases": dict(sorted(phases.items())),
        "status never written by the operator": len(items) - len(ages),
        "seconds since the operator last wrote the worker status": {
            k: round(v / 1000, 1) for k, v in percentiles(ages).items()
        },
    }


def all_online_after(pool_changes: list[Change], n: int, start: float) -> float | None:
    for change in pool_changes:
        workers = (change.object.get("status") or {}).get("workers") or {}
        if workers.get("online") == n:
            return round(change.at - start, 1)
    return None


# -- figures -------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(1000 * ordered[-1], 1)}


def steady_figures(
    settings: Settings,
    *,
    first: Snapshot,
    last: Snapshot,
    beats: Beats,
    sampler: Sampler,
    watches: dict[str, Watch],
) -> dict[str, Any]:
    window = last.at - first.at
    client = last.client - first.client
    heartbeats = client[WriteKey(f"workers.{GROUP}", "status", "PATCH", True)]
    in_window = beats.between(first.at, last.at)
    pool_now = next((c.object for c in reversed(watches["pool"].changes) if c.at <= last.at), {})
    total_writes = sum((last.server - first.server).values())
    settled = next(
        (
            c.at
            for c in watches["pool"].changes
            if ((c.object.get("status") or {}).get("workers") or {}).get("online") == settings.workers
        ),
        None,
    )
    pool_changes = [c for c in watches["pool"].changes if c.type == "MODIFIED" and first.at <= c.at <= last.at]
    pool_writes = [c.at for c in pool_changes]
    return {
        "heartbeats": {
            "needed per second": round(settings.workers / settings.interval, 2),
            "sent per second (steady)": round(heartbeats / window, 2),
            "sent in the steady window": heartbeats,
            "latency ms (steady)": percentiles([b[1] for b in in_window]),
            "late vs schedule ms (steady)": percentiles([b[2] for b in in_window]),
            "slots skipped (whole run)": beats.skipped,
            "failed beats (whole run)": dict(beats.failures),
        },
        "writes": write_rows(first, last, heartbeats),
        "writes per heartbeat (all)": round(total_writes / heartbeats, 3) if heartbeats else None,
        "objects": {label: object_writes(watch, first.at, last.at) for label, watch in watches.items()},
        "watches that ended early": {label: w.ended_early for label, w in watches.items() if w.ended_early},
        "pool writes (s into the window, first 20)": [
            f"{c.at - first.at:.1f} s: online {((c.object.get('status') or {}).get('workers') or {}).get('online')}"
            f", {(c.object.get('status') or {}).get('phase')}"
            for c in pool_changes[:20]
        ],
        "all workers Online (s into the window)": None if settled is None else round(settled - first.at, 1),
        "pool writes after all workers were Online": None
        if settled is None
        else sum(1 for t in pool_writes if t > settled),
        "pool status at the end": (pool_now.get("status") or {}).get("workers"),
        "processes": process_figures(sampler, first, last, heartbeats),
        "timeline": timeline(sampler, beats, first.at, last.at),
    }


def write_rows(first: Snapshot, last: Snapshot, heartbeats: int) -> list[dict[str, Any]]:
    """Writes in the window by kind: all of them (API server), the workers' (our count), the rest."""
    server, client = last.server - first.server, last.client - first.client
    rows = []
    for key in sorted(server.keys() | client.keys()):
        total, ours = server[key], client[key]
        rows.append(
            {
                "write": f"{key.verb} {key.target}" + ("" if key.ok else " (refused)"),
                "total": total,
                "by the workers": ours,
                "by the operator and others": max(0, total - ours),
                "per heartbeat": round(total / heartbeats, 3) if heartbeats else None,
            }
        )
    return rows


def per_30_s(times: Sequence[float], window: float) -> float:
    """Writes per 30 s: the mean rate between an object's first and last write, so that writes
    exactly 30 s apart read 1.0 whatever the window's length (a count over the window overstates
    short windows: 3 writes 30 s apart in 70 s read 1.29); over the window for a single write."""
    if len(times) < 2:
        return round(len(times) * QUEUE_WRITE_GOAL / window, 2)
    return round((len(times) - 1) * QUEUE_WRITE_GOAL / (times[-1] - times[0]), 2)


def object_writes(watch: Watch, start: float, end: float) -> dict[str, dict[str, Any]]:
    """Per object seen by `watch`: its writes in [start, end], per 30 s, and the status fields they changed."""
    writes: Counter[str] = Counter()
    times: dict[str, list[float]] = {}
    polls: dict[str, list[datetime.datetime]] = {}
    fields: dict[str, Counter[str]] = {}
    previous: dict[str, dict[str, Any]] = {}
    for change in (c for c in watch.changes if c.at <= end):
        if change.type == "MODIFIED" and change.at >= start:
            writes[change.name] += 1
            times.setdefault(change.name, []).append(change.at)
            if polled := (change.object.get("status") or {}).get("lastPolled"):
                polls.setdefault(change.name, []).append(datetime.datetime.fromisoformat(polled))
            before = (previous.get(change.name) or {}).get("status") or {}
            for path in changed_fields(before, change.object.get("status") or {}):
                fields.setdefault(change.name, Counter())[f"status.{path}"] += 1
        previous[change.name] = change.object
    return {
        name: {
            "writes": writes[name],
            "per 30 s": per_30_s(times.get(name, []), end - start),
            "shortest gap (s)": min((round(b - a, 1) for a, b in pairwise(times.get(name, []))), default=None),
            "shortest gap between lastPolled values (s)": min(
                (round((b - a).total_seconds(), 1) for a, b in pairwise(sorted(set(polls.get(name, []))))),
                default=None,
            ),
            "fields changed": dict(fields.get(name, {})),
        }
        for name in sorted(previous)
    }


def process_figures(sampler: Sampler, first: Snapshot, last: Snapshot, heartbeats: int) -> dict[str, Any]:
    """CPU and memory of each sampled process in the window; what the rest of the machine used."""
    window = last.at - first.at
    samples = sampler.between(first.at, last.at)
    processes: dict[str, Any] = {}
    for name in first.sample.cpu.keys() & last.sample.cpu.keys():
        used = last.sample.cpu[name] - first.sample.cpu[name]
        figures: dict[str, Any] = {
            "cpu seconds": round(used, 2),
            "cpu % of one core (mean)": round(100 * used / window, 1),
            "cpu % of one core (peak 10 s)": peak_utilisation(samples, name, 10.0),
            "cpu ms per heartbeat": round(1000 * used / heartbeats, 3) if heartbeats else None,
        }
        if name in first.sample.waited and name in last.sample.waited:
            waited = last.sample.waited[name] - first.sample.waited[name]
            figures["waiting for a CPU (s per CPU second)"] = round(waited / used, 2) if used else None
        if name in first.sample.rss and name in last.sample.rss:
            figures |= {
                "rss MiB (window start)": mib(first.sample.rss[name]),
                "rss MiB (peak in window)": mib(max(s.rss.get(name, 0) for s in samples)),
                "rss MiB (end)": mib(last.sample.rss[name]),
                "rss MiB (peak since start, VmHWM)": mib(last.sample.peak_rss[name]),
            }
        processes[name] = figures
    ours = sum(p["cpu seconds"] for name, p in processes.items() if name != "machine")
    other = processes["machine"]["cpu seconds"] - ours
    processes["other processes on the machine"] = {
        "cpu seconds": round(other, 2),
        "cpu % of one core (mean)": round(100 * other / window, 1),
    }
    order = ["operator", "kube-apiserver", "etcd", "kube-controller-manager", "harness", "machine"]
    return dict(sorted(processes.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99))


def peak_utilisation(samples: list[Sample], name: str, span: float) -> float | None:
    best = None
    for i, early in enumerate(samples):
        late = next((s for s in samples[i:] if s.at - early.at >= span), None)
        if late is None or name not in early.cpu or name not in late.cpu:
            break
        value = 100 * (late.cpu[name] - early.cpu[name]) / (late.at - early.at)
        best = value if best is None else max(best, value)
    return None if best is None else round(best, 1)


def timeline(sampler: Sampler, beats: Beats, start: float, end: float) -> list[dict[str, Any]]:
    """CPU %, operator RSS, beats/s and latency per bucket of the steady window."""
    samples = sampler.between(start, end)
    bucket = max(10.0, (end - start) / 15)
    rows = []
    t = start
    while t + bucket / 2 < end:
        inside = [s for s in samples if t <= s.at <= t + bucket]
        if len(inside) >= 2:
            a, b = inside[0], inside[-1]
            spent = b.at - a.at
            done = beats.between(t, t + bucket)
            row: dict[str, Any] = {"t (s)": round(t - start)}
            for name in ("operator", "kube-apiserver", "etcd", "harness", "machine"):
                if name in a.cpu and name in b.cpu:
                    row[f"{name} cpu %"] = round(100 * (b.cpu[name] - a.cpu[name]) / spent)
            row["operator rss MiB"] = mib(b.rss.get("operator", 0))
            row["beats/s"] = round(len(done) / bucket, 1)
            row["latency p99 ms"] = percentiles([d[1] for d in done]).get("p99")
            rows.append(row)
        t += bucket
    return rows


def mib(n: int) -> float:
    return round(n / 2**20, 1)


def log_summary(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    levels = Counter(m[1] for line in lines if (m := re.match(r"\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", line)))
    problems = Counter(
        re.sub(r"\d+", "N", line.split(" ", 3)[-1])[:160]
        for line in lines
        if re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", line)
    )
    return {"lines": len(lines), "by level": dict(levels), "warnings and errors (top 5)": dict(problems.most_common(5))}


# -- the report ----------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "–"
    return str(value)


def report(figures: dict[str, Any], settings: Settings) -> str:
    n, interval = settings.workers, settings.interval
    beats, processes, base = figures["heartbeats"], figures["processes"], figures["baseline"]
    operator = processes.get("operator", {})
    pool_objects = figures["objects"]["pool"]
    queue_objects = figures["objects"]["queues"]
    pool_writes = sum(o["writes"] for o in pool_objects.values())
    worst_queue = max((o["per 30 s"] for o in queue_objects.values()), default=0.0)
    sequential = base["sequential"]["per second"]
    concurrent = base[f"{BASELINE_CONCURRENCY} in flight"]["per second"]
    counted = {row["write"]: row["total"] for row in figures["writes"]}
    pool_counted = sum(v for k, v in counted.items() if k.split()[1].startswith("workpools."))
    queue_counted = sum(v for k, v in counted.items() if k.split()[1].startswith("workqueues."))
    broken = figures["watches that ended early"]
    stored = figures["workers as stored at the end of the window"]
    gaps = [o["shortest gap (s)"] for o in queue_objects.values() if o["shortest gap (s)"] is not None]
    shortest_gap = min(gaps, default="–")
    polled = [o["shortest gap between lastPolled values (s)"] for o in queue_objects.values()]
    shortest_polled = min((g for g in polled if g is not None), default="–")
    out = [
        f"# Heartbeat cost: {n} workers, every {interval} s",
        "",
        f"Measured by `benchmarks/heartbeats.py` (see `benchmarks/README.md`) on {figures['date']}.",
        "",
        "```",
        f"{figures['command']}",
        "```",
        "",
        f"* commit `{figures['commit']}`, source digest `{figures['source digest']}` (operator/ and benchmarks/ "
        "sources as run; differs from the commit's when the tree had uncommitted changes)",
        f"* cluster: {figures['kubeconfig']}",
        *(f"* {k}: {v}" for k, v in figures["machine"].items()),
        f"* {figures['settings']['queues']} queues + the default queue; warm-up {settings.warmup:.0f} s (or until all "
        f"workers are Online, plus an interval); all {n} workers Online "
        f"{figures['run']['all workers Online after (s)']} s after the first beat; steady window from "
        f"{figures['run']['steady window began after (s)']} s, {figures['run']['steady window (s)']} s long",
        "",
        *contention_note(processes),
        "## Summary",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| heartbeats/s needed ({n} / {interval} s) | {beats['needed per second']} | |",
        f"| heartbeats/s sent in the steady window | {beats['sent per second (steady)']} | = needed |",
        f"| ceiling: one client, back to back (baseline) | {sequential:.0f}/s | |",
        f"| ceiling: one client, {BASELINE_CONCURRENCY} in flight (baseline) | {concurrent:.0f}/s | |",
        f"| API writes per heartbeat (all kinds) | {figures['writes per heartbeat (all)']} | 1 |",
        f"| writes to the WorkPool in the steady window (watch / API server counter) | {pool_writes} / "
        f"{pool_counted} | 0 |",
        f"| … of which after all {n} workers were Online (pool `status.workers.online` = {n} at "
        f"{figures['all workers Online (s into the window)']} s into the window; writes at "
        f"{cell(figures['pool writes (s into the window, first 20)'])}) | "
        f"{figures['pool writes after all workers were Online']} | 0 |",
        f"| most writes to one WorkQueue per 30 s (watch) | {worst_queue} | ≤ 1 |",
        f"| shortest gap between two writes of one WorkQueue (watch) | {shortest_gap} s | ≥ 30 s |",
        f"| shortest gap between two `lastPolled` values of one WorkQueue (watch) | {shortest_polled} s | ≥ 30 s |",
        f"| writes to all {len(queue_objects)} WorkQueues in the window (API server counter) | {queue_counted} | "
        f"≤ {len(queue_objects) * math.ceil(figures['run']['steady window (s)'] / QUEUE_WRITE_GOAL)} |",
        f"| operator CPU per heartbeat | {operator.get('cpu ms per heartbeat')} ms | |",
        f"| operator CPU (mean / peak 10 s, % of one core) | {operator.get('cpu % of one core (mean)')} / "
        f"{operator.get('cpu % of one core (peak 10 s)')} | < 100 |",
        f"| operator RSS (window start / peak / end) | {operator.get('rss MiB (window start)')} / "
        f"{operator.get('rss MiB (peak in window)')} / {operator.get('rss MiB (end)')} MiB | |",
        f"| heartbeat latency p50 / p99 / max | {cell(beats['latency ms (steady)'])} ms | |",
        f"| beats late vs schedule p99 / max | {beats['late vs schedule ms (steady)'].get('p99')} / "
        f"{beats['late vs schedule ms (steady)'].get('max')} ms | |",
        f"| beats failed / slots skipped (whole run) | {cell(beats['failed beats (whole run)'])} / "
        f"{beats['slots skipped (whole run)']} | 0 / 0 |",
        f"| pool `status.workers` at the end of the window | {cell(figures['pool status at the end'])} | online {n} |",
        f"| Worker `status.phase` as stored at the end of the window | {cell(stored['phases'])} | Online {n} |",
        f"| Workers whose status the operator never wrote | {stored['status never written by the operator']} | 0 |",
        "| seconds since the operator last wrote a Worker's status (p50 / p99 / max over workers) | "
        f"{cell(stored['seconds since the operator last wrote the worker status'])} | |",
        "",
        "## API writes in the steady window",
        "",
        "From `apiserver_request_total` (cluster-wide) before and after the window; `by the workers` is "
        "counted by the simulated workers' transport, the rest is the operator's (and, for events and "
        "leases, anything else in the cluster).",
        "",
        *table(figures["writes"]),
        "",
        "## Writes per object (watch events in the steady window)",
        "",
        *(f"**The {label} watch ended early, its figures are incomplete:** {why}" for label, why in broken.items()),
        "",
        *table([{"object": f"WorkPool {k}", **v} for k, v in pool_objects.items()]),
        "",
        *table([{"object": f"WorkQueue {k}", **v} for k, v in queue_objects.items()]),
        "",
        "## Processes in the steady window",
        "",
        *table([{"process": k, **v} for k, v in processes.items()]),
        "",
        "## Timeline of the steady window",
        "",
        *table(figures["timeline"]),
        "",
        "## Baseline: one Python client PATCHing Worker status (no operator running)",
        "",
        *table([{"mode": k, **v} for k, v in base.items()]),
        "",
        "## Liveness under load: workers that fall silent after the window",
        "",
        "After the steady window the other workers keep beating while these stop; the goal is Offline "
        f"within 3 × interval + {OFFLINE_SLACK:.0f} s of the last heartbeat.",
        "",
        *(table([figures["silence check"]]) if figures.get("silence check") else ["(skipped: --silence 0)"]),
        "",
        "## Newcomers under load: workers that register after the window",
        "",
        "While the others beat on (and the silenced fall silent), new workers register one after the "
        "other; each reads its own Worker until it is Online. The goal is Online within 1 s of the first "
        "heartbeat, at p99.",
        "",
        *(table([figures["newcomers"]]) if figures.get("newcomers") else ["(skipped: --newcomers 0)"]),
        "",
        "## Events and operator log",
        "",
        f"* events by reason (whole run): {cell(figures['events by reason (whole run)'])}",
        f"* operator log: {cell(figures['operator log'])}",
        "",
    ]
    if figures.get("operator profile"):
        out += [
            "## Operator profile (cProfile; the figures above include its overhead)",
            "",
            figures["operator profile"],
        ]
    return "\n".join(out)


def contention_note(processes: dict[str, Any]) -> list[str]:
    """A warning when other work on the machine took CPU the measured processes were waiting for."""
    other = processes.get("other processes on the machine", {}).get("cpu % of one core (mean)", 0.0)
    waits = {
        name: p["waiting for a CPU (s per CPU second)"]
        for name, p in processes.items()
        if p.get("waiting for a CPU (s per CPU second)") is not None
    }
    if other < OTHER_LOAD_WARNING:
        return []
    return [
        f"**Not an idle machine:** other processes used {other} % of one core on average during the steady "
        "window, and the measured processes spent this long runnable but without a CPU, per CPU second they "
        f"used: {cell(waits)}. Latency, lateness and throughput figures are pessimistic; CPU seconds and write "
        "counts are much less affected.",
        "",
    ]


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100, help="simulated workers (default 100)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between a worker's beats (default 10)")
    parser.add_argument("--duration", type=float, default=180, help="seconds of heartbeating in all (default 180)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds left out of the steady window (default max(30, 3 × interval))",
    )
    parser.add_argument("--queues", type=int, default=3, help="queues besides the default queue (default 3)")
    parser.add_argument(
        "--silence",
        type=int,
        default=10,
        help="after the window, workers that stop beating while the rest go on, timed to Offline (default 10; 0: skip)",
    )
    parser.add_argument(
        "--newcomers",
        type=int,
        default=20,
        help="after the window, workers that register one by one, timed to Online (default 20; 0: skip)",
    )
    parser.add_argument("--profile", action="store_true", help="run the operator under cProfile (a diagnostic run)")
    parser.add_argument("--baseline-seconds", type=float, default=10, help="length of each baseline loop (default 10)")
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/results/heartbeats-<N>.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, control plane state)")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(30.0, 3.0 * args.interval)
    if args.workers < 1 or args.interval < 1 or args.duration <= warmup + 10:
        parser.error("need --workers ≥ 1, --interval ≥ 1 and --duration at least 10 s longer than the warm-up")
    output = args.output or RESULTS / f"heartbeats-{args.workers}{'-profiled' if args.profile else ''}.md"
    return Settings(
        args.workers,
        args.interval,
        args.duration,
        warmup,
        args.queues,
        min(args.silence, args.workers),
        args.newcomers,
        args.baseline_seconds,
        output,
        args.keep,
        args.profile,
        tuple(argv),
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    figures = asyncio.run(run(settings))
    record(settings.output, report(figures, settings), figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
