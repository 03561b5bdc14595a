"""Exactness under stress (issue 5, point 6; DESIGN §4): limits are never exceeded, not even
briefly, every run finishes exactly once, and no run is ever bound to two workers — with a dozen
workers racing, and again with the operator killed (SIGKILL) and restarted twice mid-run.

The recorder is a separate admin watch on every FlowRun of the namespace. A watch delivers every
version of every object in the API server's (etcd's) order, so the recorder's running state after
each event is the cluster's state at that revision: the invariants are checked at every such
observed moment, not sampled.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import AsyncWorker, WorkerSpec, running
from tests.support.kube import Kubectl
from tests.support.objects import pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.watches import ResourceWatch
from workpools.client.resources import FLOWRUNS
from workpools.client.transport import Transport

SLOT_HOLDING = frozenset({"Pending", "Running", "Cancelling"})
TERMINAL = frozenset({"Completed", "Failed", "Cancelled", "Crashed"})
EXPECTED_PATHS = (["Pending", "Running", "Completed"], ["Scheduled", "Pending", "Running", "Completed"])
"""With no worker lost and nothing cancelled, the only legal lives of a run: granted when first
seen (one write), or Scheduled first to wait for a slot."""

POOL_LIMITS: dict[str, int | None] = {"alpha": 8, "beta": 6}
QUEUE_LIMITS: dict[tuple[str, str], int | None] = {
    ("alpha", "alpha-q1"): 3,
    ("alpha", "alpha-q2"): 2,
    ("alpha", "alpha-q3"): None,
    ("beta", "beta-q1"): 2,
    ("beta", "beta-q2"): None,
    ("beta", "beta-q3"): None,
}
WORKERS = [
    WorkerSpec("alpha-w1", "alpha", limit=2),
    WorkerSpec("alpha-w2", "alpha", limit=3),
    WorkerSpec("alpha-w3", "alpha", limit=1, queues=("alpha-q1",)),
    WorkerSpec("alpha-w4", "alpha", limit=2, queues=("alpha-q2", "alpha-q3")),
    WorkerSpec("alpha-w5", "alpha", limit=2),
    WorkerSpec("alpha-w6", "alpha", limit=1, queues=("alpha-q3",)),
    WorkerSpec("beta-w1", "beta", limit=1),
    WorkerSpec("beta-w2", "beta", limit=2),
    WorkerSpec("beta-w3", "beta", limit=1, queues=("beta-q1",)),
    WorkerSpec("beta-w4", "beta", limit=2, queues=("beta-q2", "beta-q3")),
    WorkerSpec("beta-w5", "beta", limit=1),
    WorkerSpec("beta-w6", "beta", limit=None),
]
WORKER_LIMITS = {w.name: w.limit for w in WORKERS}
RUNS = 324
HEARTBEAT_SECONDS = 5
STEP_DELAY = (0.0, 0.3)
"""Seconds a worker waits before each of its moves (Pending → Running → Completed), uniformly."""
SCENARIO_DEADLINE = 240.0
"""Every run must be Completed within this many seconds of the first creation."""


@dataclass
class RunRecord:
    pool: str
    queue: str
    path: list[str] = field(default_factory=list)
    """Distinct successive states as observed (no status yet: nothing recorded)."""
    workers: list[str] = field(default_factory=list)
    """Distinct successive values of status.worker (empty included once it was set)."""
    resource_version: str = ""

    @property
    def waiting(self) -> bool:
        """Not granted yet: new (a run whose turn is near is not even stamped Scheduled) or Scheduled."""
        return not self.path or self.path[-1] == "Scheduled"


@dataclass
class Recorder:
    """Every FlowRun change of the namespace, and the invariants at every observed moment."""

    total: int
    runs: dict[str, RunRecord] = field(default_factory=dict)
    holders: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """Slot holders now: run → (pool, queue, worker)."""
    peaks: Counter[str] = field(default_factory=Counter)
    """Highest number of slot holders seen, per `pool`, `pool/queue` and `worker:<name>`."""
    violations: list[str] = field(default_factory=list)
    breach_moments: int = 0
    """Observed moments at which some limit was exceeded (a breach is reported once, when it starts)."""
    _over: set[str] = field(default_factory=set)
    events: int = 0
    completed: int = 0
    started: float = field(default_factory=time.monotonic)
    grants: list[float] = field(default_factory=list)
    """time.monotonic() of every grant (→ Pending) seen."""
    idle: list[tuple[str, float, float]] = field(default_factory=list)
    """Stretches (pool, from, to) in which a pool had runs waiting but no slot holder at all."""
    _idle_since: dict[str, float] = field(default_factory=dict)
    _waiters: list[tuple[int, asyncio.Event]] = field(default_factory=list)
    _grant_waiters: list[asyncio.Event] = field(default_factory=list)

    def observe(self, kind: str, obj: dict[str, Any]) -> None:
        self.events += 1
        meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
        name, rv = meta["name"], meta["resourceVersion"]
        if kind == "DELETED":
            self._violate(f"{name} was deleted at {rv}")
            self.holders.pop(name, None)
            return
        record = self.runs.setdefault(name, RunRecord(spec["workPool"], spec["workQueue"]))
        record.resource_version = rv
        state, worker = status.get("state"), status.get("worker") or ""
        if state is not None and (not record.path or record.path[-1] != state):
            self._moved(name, record, state, rv)
        if (record.workers and record.workers[-1] != worker) or (not record.workers and worker):
            if record.workers:  # no worker loss here: once bound, a run keeps its worker for good
                self._violate(f"{name} moved from worker {record.workers[-1]!r} to {worker!r} at {rv}")
            record.workers.append(worker)
        if state in SLOT_HOLDING:
            if not worker:
                self._violate(f"{name} holds a slot ({state}) without a worker at {rv}")
            elif not _serves(worker, record.pool, record.queue):
                self._violate(f"{name} ({record.pool}/{record.queue}) bound to {worker}, which does not serve it")
            self.holders[name] = (record.pool, record.queue, worker)
        else:
            self.holders.pop(name, None)
        self._check(rv)
        for threshold, event in self._waiters:
            if self.completed >= threshold:
                event.set()

    def _moved(self, name: str, record: RunRecord, state: str, rv: str) -> None:
        if record.path and record.path[-1] in TERMINAL:
            self._violate(f"{name} left terminal state {record.path[-1]} for {state} at {rv}")
        record.path.append(state)
        if state == "Pending":
            self.grants.append(time.monotonic())
            for waiter in self._grant_waiters:
                waiter.set()
            self._grant_waiters.clear()
        elif state == "Completed":
            self.completed += 1

    def _check(self, rv: str) -> None:
        pools = Counter(p for p, _, _ in self.holders.values())
        queues = Counter((p, q) for p, q, _ in self.holders.values())
        workers = Counter(w for _, _, w in self.holders.values())
        counts: list[tuple[str, int, int | None]] = [
            *((p, n, POOL_LIMITS[p]) for p, n in pools.items()),
            *((f"{p}/{q}", n, QUEUE_LIMITS[p, q]) for (p, q), n in queues.items()),
            *((f"worker:{w}", n, WORKER_LIMITS.get(w)) for w, n in workers.items()),
        ]
        for what, count, limit in counts:
            self.peaks[what] = max(self.peaks[what], count)
            if limit is not None and count > limit:
                self.breach_moments += 1
                if what not in self._over:
                    self._over.add(what)
                    held = sorted(
                        n for n, h in self.holders.items() if what in (h[0], f"{h[0]}/{h[1]}", f"worker:{h[2]}")
                    )
                    self._violate(f"{what} has {count} slot holders > limit {limit} at {rv}: {held}")
            else:
                self._over.discard(what)
        waiting = Counter(r.pool for r in self.runs.values() if r.waiting)
        now = time.monotonic()
        for name in POOL_LIMITS:
            if waiting[name] and not pools[name]:
                self._idle_since.setdefault(name, now)
            elif (since := self._idle_since.pop(name, None)) is not None:
                self.idle.append((name, since, now))

    def _violate(self, message: str) -> None:
        self.violations.append(f"[event {self.events}, {time.monotonic() - self.started:.2f}s] {message}")

    async def completions(self, count: int, *, deadline: float) -> None:
        """Wait until `count` runs were seen Completed, at the latest by `deadline` (time.monotonic())."""
        event = asyncio.Event()
        self._waiters.append((count, event))
        if self.completed >= count:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            states = Counter(r.path[-1] if r.path else "(none)" for r in self.runs.values())
            raise AssertionError(
                f"only {self.completed}/{count} runs Completed by the deadline; states: {dict(states)}"
            ) from None

    async def next_grant(self, *, deadline: float) -> None:
        """Wait for the next grant (→ Pending), at the latest by `deadline` (time.monotonic())."""
        event = asyncio.Event()
        self._grant_waiters.append(event)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise AssertionError("no grant by the deadline") from None

    async def record(self, watch: ResourceWatch) -> None:
        async for event in watch.events():
            self.observe(event.type, event.object)


def _serves(worker: str, pool: str, queue: str) -> bool:
    spec = next((w for w in WORKERS if w.name == worker), None)
    return spec is not None and spec.serves(pool, queue)


@dataclass
class Outcome:
    recorder: Recorder
    workers: list[AsyncWorker]
    kills: list[dict[str, Any]]
    seconds: float


def manifests() -> list[dict[str, Any]]:
    made = [pool(name, concurrencyLimit=limit) for name, limit in POOL_LIMITS.items()]
    for index, ((pool_name, name), limit) in enumerate(QUEUE_LIMITS.items()):
        made.append(queue(name, pool_name, priority=10 * (index % 3 + 1), concurrencyLimit=limit))
    return made


def run_manifests(namespace: str, rng: random.Random) -> list[dict[str, Any]]:
    queues = list(QUEUE_LIMITS)
    placed = [queues[i % len(queues)] for i in range(RUNS)]
    rng.shuffle(placed)
    made = []
    for i, (pool_name, queue_name) in enumerate(placed):
        body = run(f"run-{i:04d}", pool_name, workQueue=queue_name)
        body["metadata"]["namespace"] = namespace
        made.append(body)
    return made


async def scenario(
    kubectl: Kubectl,
    operator: OperatorProcess,
    namespace: str,
    worker_kubeconfig: Path,
    *,
    kills: int,
    seed: int,
) -> Outcome:
    """Pools, queues and workers up; then every run created at once and driven to Completed, the
    operator killed and restarted `kills` times on the way (evenly spaced by completions)."""
    rng = random.Random(seed)
    kubectl.apply(*manifests(), namespace=namespace)
    recorder = Recorder(total=RUNS)
    fleet = [
        AsyncWorker(
            spec,
            worker_kubeconfig,
            namespace,
            interval=HEARTBEAT_SECONDS,
            delays=STEP_DELAY,
            rng=random.Random(f"{seed}-{spec.name}"),
        )
        for spec in WORKERS
    ]
    kill_log: list[dict[str, Any]] = []
    async with (
        ResourceWatch(kubectl.kubeconfig, FLOWRUNS, namespace) as watch,
        await Transport.connect(kubectl.kubeconfig) as admin,
        running(fleet),
    ):
        assert await watch.list() == [], "the recorder must see every run from its creation"
        recording = asyncio.create_task(recorder.record(watch), name="recorder")
        try:
            started = time.monotonic()
            deadline = started + SCENARIO_DEADLINE
            gate = asyncio.Semaphore(8)

            async def create(body: dict[str, Any]) -> None:
                async with gate:
                    await admin.create(FLOWRUNS, namespace, body)

            creating = asyncio.gather(*(create(body) for body in run_manifests(namespace, rng)))
            for k in range(1, kills + 1):
                await _race(recorder.completions(RUNS * k // (kills + 1), deadline=deadline), recording)
                # Kill the moment a grant lands: the rest of its batch is most likely still in flight.
                await _race(recorder.next_grant(deadline=deadline), recording)
                waiting = sum(1 for r in recorder.runs.values() if r.waiting)
                holding, completed = len(recorder.holders), recorder.completed
                operator.stop(signal.SIGKILL)
                killed_at = time.monotonic()
                # start() waits for the health endpoint: off the loop, so workers keep working meanwhile.
                await asyncio.to_thread(operator.start)
                kill_log.append(
                    {
                        "after_completed": completed,
                        "scheduled_at_kill": waiting,
                        "holders_at_kill": holding,
                        "down_seconds": round(time.monotonic() - killed_at, 2),
                        "window": (killed_at, time.monotonic()),
                    }
                )
            await creating
            await _race(recorder.completions(RUNS, deadline=deadline), recording)
            seconds = time.monotonic() - started
            # Nothing lost: the API's current state is what the recorder ended with.
            final = {item["metadata"]["name"]: item async for item in admin.list_all(FLOWRUNS, namespace)}
            for name, item in final.items():
                assert item["status"]["state"] == "Completed", f"{name}: {item['status']}"
                seen = recorder.runs[name].resource_version
                assert item["metadata"]["resourceVersion"] == seen, f"{name} was written after it Completed"
        finally:
            recording.cancel()
            await asyncio.gather(recording, return_exceptions=True)
    assert sorted(final) == sorted(recorder.runs)
    return Outcome(recorder, fleet, kill_log, seconds)


async def _race(waiting: Any, recording: asyncio.Task[None]) -> None:
    """Await `waiting`, but fail at once if the recorder dies (its failure is the story)."""
    task = asyncio.ensure_future(waiting)
    done, _ = await asyncio.wait({task, recording}, return_when=asyncio.FIRST_COMPLETED)
    if recording in done:
        task.cancel()
        recording.result()
        raise AssertionError("the recorder's watch ended")
    task.result()


def check(outcome: Outcome) -> None:
    recorder = outcome.recorder
    worker_errors = [e for w in outcome.workers for e in w.log.errors]
    assert worker_errors == [], worker_errors
    assert recorder.violations == [], (
        f"{len(recorder.violations)} violations, {recorder.breach_moments} observed moments over a limit:\n"
        + "\n".join(recorder.violations[:20])
    )
    assert len(recorder.runs) == RUNS
    wrong = {n: r.path for n, r in recorder.runs.items() if r.path not in EXPECTED_PATHS}
    assert wrong == {}, f"{len(wrong)} runs did not live [Scheduled →] Pending → Running → Completed exactly once"
    rebound = {n: r.workers for n, r in recorder.runs.items() if len(r.workers) != 1}
    assert rebound == {}, "each run is bound to exactly one worker, once"
    # Every run was started by the worker it was bound to, and by no other.
    received = Counter(name for w in outcome.workers for name in w.log.received)
    assert set(received) == set(recorder.runs)
    assert max(received.values()) == 1
    for worker in outcome.workers:
        assert all(recorder.runs[name].workers == [worker.spec.name] for name in worker.log.received)
    # The limits were really under pressure (else the test proves nothing).
    for name, limit in POOL_LIMITS.items():
        assert recorder.peaks[name] == limit, f"pool {name} never filled: peak {recorder.peaks[name]}"
    for (pool_name, name), limit in QUEUE_LIMITS.items():
        if limit is not None:
            peak = recorder.peaks[f"{pool_name}/{name}"]
            assert peak == limit, f"queue {name} never filled: peak {peak}"
    full = [w for w, limit in WORKER_LIMITS.items() if limit is not None and recorder.peaks[f"worker:{w}"] == limit]
    assert full, "no worker ever reached its own limit"


def statuses_settle(kubectl: Kubectl, namespace: str) -> None:
    """Pool and queue status stays exact: once everything finished, nothing holds or waits."""

    def settled() -> bool:
        pools = kubectl.json("get", "wp", "-n", namespace)["items"]
        queues = kubectl.json("get", "wq", "-n", namespace)["items"]
        return all(p["status"]["slots"]["active"] == 0 for p in pools) and all(
            q["status"]["slots"]["active"] == 0 and q["status"].get("scheduledRuns", 0) == 0 for q in queues
        )

    wait_for(settled, timeout=30, what="pool and queue slots back to zero")


def summary(label: str, outcome: Outcome) -> str:
    """One line for the log: what was checked, the peaks, and how responsive admission was."""
    r = outcome.recorder
    peaks = {k: v for k, v in sorted(r.peaks.items()) if not k.startswith("worker:")}
    workers_full = sum(1 for w, lim in WORKER_LIMITS.items() if lim is not None and r.peaks[f"worker:{w}"] == lim)
    windows = [k["window"] for k in outcome.kills]
    up = [end - start for _, start, end in r.idle if not any(start <= b and end >= a for a, b in windows)]
    after = [min((t - healthy for t in r.grants if t >= healthy), default=float("nan")) for _, healthy in windows]
    kills = [{k: v for k, v in kill.items() if k != "window"} for kill in outcome.kills]
    return (
        f"{label}: {RUNS} runs Completed in {outcome.seconds:.1f}s, {r.events} watch events checked, "
        f"{len(r.violations)} violations; peaks {peaks}; {workers_full} workers reached their limit; "
        f"longest stretch with runs waiting and a pool empty, operator up: {max(up, default=0.0):.2f}s; "
        f"first grant after each restart was healthy: {[round(a, 2) for a in after]}s; kills {kills}"
    )


@pytest.mark.timeout(420)
def test_limits_hold_and_every_run_completes_once_under_a_dozen_racing_workers(
    installed: Kubectl, operator: OperatorProcess, namespace: str, worker_kubeconfig: Path
) -> None:
    outcome = asyncio.run(scenario(installed, operator, namespace, worker_kubeconfig, kills=0, seed=1))
    print(summary("no kills", outcome))
    check(outcome)
    statuses_settle(installed, namespace)


@pytest.mark.timeout(420)
def test_limits_hold_and_nothing_is_lost_when_the_operator_is_killed_twice(
    installed: Kubectl, operator: OperatorProcess, namespace: str, worker_kubeconfig: Path
) -> None:
    try:
        outcome = asyncio.run(scenario(installed, operator, namespace, worker_kubeconfig, kills=2, seed=2))
    finally:
        if operator.process is None:  # killed and not restarted (a failure mid-way): later tests need it
            operator.start()
    print(summary("two SIGKILLs", outcome))
    assert len(outcome.kills) == 2
    assert all(k["scheduled_at_kill"] > 0 for k in outcome.kills), "each kill must land while runs wait"
    check(outcome)
    statuses_settle(installed, namespace)
