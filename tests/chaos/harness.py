"""One chaos scenario's world, and its verdict.

`Chaos.up()` starts a fresh local control plane (restarts must not disturb other tests), installs
manifests/, starts Toxiproxy with one proxy per client, the operator(s) as their ServiceAccount and
six real worker processes (`python -m workpools.worker`), each through its own proxy, and a watch of
every FlowRun change in etcd itself. `burst()` creates the runs
at once; their command is `truth.py`, which records when each process really executed (and
`SilentEnds` when one was killed before it could say so).

`finish()` waits for every run to be terminal within `DONE_BOUND` seconds of the heal, for every
pool and queue slot to be free, stops everything and returns a `Verdict`: the ground-truth sweep
(processes executing at once per pool, queue and worker; runs executed more than once), the
etcd's invariants (slot holders per limit at every observed moment, no run bound to two workers,
one terminal state per run), and the figures of the table the suite prints.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue, run
from tests.support.operator import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    install,
    service_account_kubeconfig,
)
from tests.support.recorder import TERMINAL, RunInvariants
from tests.support.toxiproxy import Proxy, Toxiproxy, via_proxy
from tests.support.waiting import wait_for
from tests.support.worker_rbac import worker_kubeconfig
from tools.controlplane.cluster import ControlPlane, _die_with_parent

TRUTH_SCRIPT = Path(__file__).resolve().parent / "truth.py"
NAMESPACE = "chaos"
HEARTBEAT_SECONDS = 2
"""Every worker's heartbeat interval: Offline after 3 × 2 s without a heartbeat."""
DONE_BOUND = 120.0
"""The stated bound: once the faults are healed, every run is terminal within this many seconds."""
STALL_SECONDS = 45.0
"""Waiting for the bound ends early when no FlowRun changed for this long (the scenario failed anyway)."""
SLOTS_BOUND = 30.0
"""…and then every pool and queue shows `status.slots.active == 0` within this many seconds."""
SETUP_BOUND = 120.0
"""Seconds the operator and the workers may take to start (7 Python processes importing at once)."""
RUN_SECONDS = (0.2, 1.0)
"""How long each run's process executes, uniformly (seeded per scenario)."""

POOL_LIMITS: dict[str, int] = {"alpha": 4, "beta": 3}
QUEUE_LIMITS: dict[tuple[str, str], int | None] = {
    ("alpha", "alpha-q1"): 2,
    ("alpha", "alpha-q2"): 1,
    ("alpha", "alpha-q3"): None,
    ("beta", "beta-q1"): 1,
    ("beta", "beta-q2"): 2,
    ("beta", "beta-q3"): None,
}
WORKER_LIMITS: dict[str, tuple[str, int]] = {
    # name: (pool, limit). Without any one of its workers, a pool's others still offer its whole
    # limit: a reclaimed slot is re-granted at once, so a worker that kept executing would show.
    "alpha-w1": ("alpha", 2),
    "alpha-w2": ("alpha", 2),
    "alpha-w3": ("alpha", 2),
    "beta-w1": ("beta", 2),
    "beta-w2": ("beta", 1),
    "beta-w3": ("beta", 2),
}
RUNS_PER_QUEUE = 34  # 6 queues: 204 runs
RUN_NAME = re.compile(r"[a-z]+-q[0-9]-[0-9]{3}")


# Flow control (issue 14), in the scenarios that ask for it (`Chaos(flow_control=True)`):
TEAM_LABEL = "chaos.workpools.dev/team"
TEAMS = ("red", "blue", "green")
KEY_LIMITED_POOL, KEY_LIMIT = "alpha", 2
"""Pool alpha admits at most 2 runs per team at once: with 3 teams up to 6, above its limit of 4,
so the key limits and the pool limit both bind."""
WINDOWED_POOL = "beta"
WINDOW = {"name": "chaos-window", "cron": "* * * * *", "durationSeconds": 40, "limit": 2}
"""Pool beta's limit is 2, not 3, from second 0 to 40 of every minute: it changes twice a minute."""
WINDOW_GRACE = 10.0
"""A lower limit holds from this long after its window opens: runs granted before keep executing
(a limit is never enforced by stopping runs), and a grant written just before the window opened may
land seconds later through a slow connection; each run executes for at most a second."""


def limits(*, flow_control: bool = False) -> dict[tuple[str, str], int]:
    """Every finite limit, keyed as `RunInvariants` keys them (a time window's is checked apart)."""
    found: dict[tuple[str, str], int] = {("pool", name): limit for name, limit in POOL_LIMITS.items()}
    found |= {("queue", name): limit for (_, name), limit in QUEUE_LIMITS.items() if limit is not None}
    found |= {("worker", name): limit for name, (_, limit) in WORKER_LIMITS.items()}
    if flow_control:
        found |= {("key", f"{KEY_LIMITED_POOL}/{team}"): KEY_LIMIT for team in TEAMS}
    return found


def window_open(wall: float) -> bool:
    """Whether WINDOW is open at this wall-clock time (it opens every minute, in any time zone)."""
    return wall % 60 < WINDOW["durationSeconds"]


@dataclass(frozen=True)
class PlannedRun:
    name: str
    pool: str
    queue: str
    seconds: float
    team: str | None = None
    """Its TEAM_LABEL value, in the key-limited pool of a flow-control scenario."""

    @property
    def key(self) -> str | None:
        return None if self.team is None else f"{self.pool}/{self.team}"


# -- ground truth ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """One process of one run, as its own lines tell it."""

    run: str
    pool: str
    queue: str
    key: str | None
    worker: str
    start: float
    end: float | None
    """None: no end line (still executing at the check): counted as executing until the check."""
    killed: bool
    """Stopped before its end: SIGTERM (its own `killed` line) or gone without a line (`vanished`)."""


@dataclass
class GroundTruth:
    executions: list[Execution]
    peak: Counter[tuple[str, str]]
    violations: list[str]
    window_peak: int | None = None
    """Flow control: the most processes of WINDOWED_POOL executing at once while its window's limit held."""

    @classmethod
    def read(cls, directory: Path, planned: dict[str, PlannedRun], now: float, *, flow_control: bool) -> GroundTruth:
        """Every run's file; then the sweep, with `now` as the end of what has no end line."""
        executions, violations = [], []
        for path in sorted(directory.iterdir()):
            lines = path.read_text().splitlines()
            mine = _executions(planned[path.name], lines)
            if len(mine) > 1:
                violations.append(f"{path.name} executed {len(mine)} times: {lines}")
            executions += mine
        peak, breaches = _sweep(executions, now, limits(flow_control=flow_control))
        if not flow_control:
            return cls(executions, peak, violations + breaches)
        window_peak, window_breaches = _sweep_window(executions, now, time.time() - time.monotonic())
        return cls(executions, peak, violations + breaches + window_breaches, window_peak)


def _executions(plan: PlannedRun, lines: list[str]) -> list[Execution]:
    """Each `start` line with the `end` line that follows it, if any."""
    found: list[Execution] = []
    opened: list[str] | None = None  # the words of a start line not yet ended
    for words in (line.split() for line in lines if line.strip()):
        if words[0] == "start":
            if opened is not None:
                found.append(_execution(plan, opened, None))
            opened = words
        elif words[0] == "end" and opened is not None:
            found.append(_execution(plan, opened, words))
            opened = None
    if opened is not None:
        found.append(_execution(plan, opened, None))
    return found


def _sweep(
    executions: list[Execution], now: float, bounds: dict[tuple[str, str], int]
) -> tuple[Counter[tuple[str, str]], list[str]]:
    """Processes executing at once per pool, queue, key and worker, over every start and end instant
    (ends first at equal instants): the peaks, and each breach of a limit when it begins."""
    instants = [(e.start, 1, e) for e in executions] + [(now if e.end is None else e.end, 0, e) for e in executions]
    executing: dict[tuple[str, str], set[Execution]] = {}
    peak: Counter[tuple[str, str]] = Counter()
    over: set[tuple[str, str]] = set()
    violations: list[str] = []
    for at, starting, e in sorted(instants, key=lambda i: (i[0], i[1])):
        for key in (("pool", e.pool), ("queue", e.queue), ("worker", e.worker), *([("key", e.key)] if e.key else [])):
            members = executing.setdefault(key, set())
            (members.add if starting else members.discard)(e)
            peak[key] = max(peak[key], len(members))
            if key in bounds and len(members) > bounds[key]:
                if key not in over:
                    who = sorted(f"{m.run}@{m.worker}" for m in members)
                    violations.append(
                        f"{key[0]} {key[1]}: {len(members)} processes executing > limit {bounds[key]} "
                        f"at monotonic {at:.3f}: {who}"
                    )
                over.add(key)
            else:
                over.discard(key)
    return peak, violations


def _sweep_window(executions: list[Execution], now: float, wall_offset: float) -> tuple[int, list[str]]:
    """WINDOWED_POOL's processes executing at once, at every instant its window had been open for
    WINDOW_GRACE seconds or more: the peak, and each breach of the window's limit.

    The instants: every start, and every moment a window's grace ends (runs executing from before
    then count). `wall_offset` turns the processes' monotonic times into wall-clock ones.
    """
    mine = [e for e in executions if e.pool == WINDOWED_POOL]
    if not mine:
        return 0, []
    first, limit = min(e.start for e in mine), int(WINDOW["limit"])
    graces = [
        minute + WINDOW_GRACE - wall_offset
        for minute in range(int((first + wall_offset) // 60) * 60, int(now + wall_offset) + 60, 60)
    ]
    peak, breaches = 0, []
    for at in sorted({*(e.start for e in mine), *(g for g in graces if first <= g <= now)}):
        if not (window_open(at + wall_offset - WINDOW_GRACE) and window_open(at + wall_offset)):
            continue  # the window is closed, or opened less than WINDOW_GRACE ago (both ends in one opening)
        executing = sorted(f"{e.run}@{e.worker}" for e in mine if e.start <= at < (now if e.end is None else e.end))
        peak = max(peak, len(executing))
        if len(executing) > limit:
            breaches.append(
                f"pool {WINDOWED_POOL}: {len(executing)} processes executing > window limit {limit} "
                f"at monotonic {at:.3f} (window open for {WINDOW_GRACE:.0f}s or more): {executing}"
            )
    return peak, breaches


def _execution(plan: PlannedRun, start: list[str], end: list[str] | None) -> Execution:
    """From `start <monotonic> <pid> <worker>` and `end <monotonic> [killed]` (None: no end line)."""
    return Execution(
        plan.name,
        plan.pool,
        plan.queue,
        plan.key,
        start[3],
        float(start[1]),
        float(end[1]) if end else None,
        end is not None and ("killed" in end or "vanished" in end),
    )


class SilentEnds:
    """The end of every run process that died without writing it, in a thread.

    SIGKILL runs no handler, and a worker that stops a run sends it half a margin after SIGTERM (a
    process a busy machine did not schedule meanwhile never writes its end line). Without this the
    sweep would count such a process as executing until the check, breaching the limits the moment
    its slot is given to another run. Every POLL seconds, a run file that ends in a `start` line
    whose pid is no longer a `truth.py` process (gone, a zombie, or reused) gets `end <monotonic>
    vanished` appended. That end is later than the real one (by up to POLL, and this thread's
    scheduling), never earlier: the sweep can only see more processes executing at once, not fewer.
    """

    POLL = 0.1

    def __init__(self, directory: Path):
        self.directory = directory
        self._sizes: dict[str, int] = {}
        self._open: dict[str, int] = {}
        """Run file → pid of its last `start` line, while it has no end."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="silent ends", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, after one last look (safe to call twice)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.directory.is_dir():
            self.scan()

    def _follow(self) -> None:
        while not self._stop.wait(self.POLL):
            self.scan()

    def scan(self) -> None:
        for entry in os.scandir(self.directory):
            size = entry.stat().st_size
            if self._sizes.get(entry.name) != size:
                self._sizes[entry.name] = size
                self._remember(entry.name)
        for name, pid in list(self._open.items()):
            if not _is_truth_process(pid):
                self._remember(name)  # it may have written its end just before it went
                if name in self._open:
                    _append(self.directory / name, f"end {time.monotonic()} vanished")
                    self._open.pop(name)

    def _remember(self, name: str) -> None:
        lines = (self.directory / name).read_text().splitlines()
        words = lines[-1].split() if lines else []
        if len(words) == 4 and words[0] == "start":  # a line being written is looked at again: its size changes
            self._open[name] = int(words[2])
        else:
            self._open.pop(name, None)


def _is_truth_process(pid: int) -> bool:
    """Whether `pid` is a live `truth.py` (a zombie's cmdline is empty; a reused pid's is another's)."""
    try:
        return TRUTH_SCRIPT.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _append(path: Path, line: str) -> None:
    # As truth.py does: one write of one line with O_APPEND.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


# -- the record of etcd ------------------------------------------------------------------------


class FlowRunWatch:
    """Every FlowRun change of the namespace into `RunInvariants`, watched in etcd itself (its v3
    JSON gateway), in a thread.

    Why etcd and not kube-apiserver: a watch resumed after kube-apiserver restarts is refused with
    410 (its new watch cache starts at the current revision: "too old resource version: 1210
    (1214)"), and a relist would hide versions. etcd replays every revision after the last one seen,
    across restarts of either, and it is where "no limit exceeded in etcd" is decided. A compacted
    revision (never within a scenario) fails the scenario rather than skipping versions.
    """

    def __init__(self, etcd_url: str, namespace: str, *, flow_control: bool = False):
        self.etcd_url = etcd_url
        self.prefix = f"/registry/workpools.dev/flowruns/{namespace}/"
        self.invariants = RunInvariants(limits(flow_control=flow_control), key_label=TEAM_LABEL)
        self.resumes = 0
        self.grants: list[float] = []
        """time.monotonic() of every Scheduled → Pending seen."""
        self.deleted: list[str] = []
        self.messages: dict[str, str] = {}
        """Run → the last status.message seen (why a run ended otherwise than Completed)."""
        self.history: dict[str, list[str]] = {}
        """Run → each version: revision, when this watch saw it (monotonic, as the ground truth), state, worker."""
        self.failure: BaseException | None = None
        self.revision = 0
        """The next revision to see."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="flowrun watch", daemon=True)

    def start(self) -> None:
        """From the revision after now: call before any run exists."""
        header = self._post("/v3/kv/range", {"key": _b64(self.prefix), "range_end": self._end(), "count_only": True})
        assert int(header.get("count", 0)) == 0, "the watch must see every run from its creation"
        self.revision = int(header["header"]["revision"]) + 1
        self._thread.start()

    def stop(self) -> None:
        """Safe to call twice."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _end(self) -> str:
        return _b64(self.prefix[:-1] + chr(ord(self.prefix[-1]) + 1))

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def _follow(self) -> None:
        create = {"key": _b64(self.prefix), "range_end": self._end()}
        while not self._stop.is_set():
            body = {"create_request": {**create, "start_revision": self.revision}}
            request = urllib.request.Request(self.etcd_url + "/v3/watch", data=json.dumps(body).encode(), method="POST")
            try:
                # A short read timeout: an idle watch is re-created every second, so stop() is prompt.
                with urllib.request.urlopen(request, timeout=1) as response:
                    while line := response.readline():
                        self._consume(json.loads(line).get("result") or {})
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                self.resumes += 1  # etcd restarting, or idle: resume from the next revision
                self._stop.wait(0.1)
            except BaseException as error:
                self.failure = error
                return

    def _consume(self, result: dict[str, Any]) -> None:
        if int(result.get("compact_revision", 0)) >= self.revision:
            raise AssertionError(f"etcd compacted past revision {self.revision}: versions would be missed")
        for event in result.get("events", []):
            kv = event["kv"]
            revision = int(kv["mod_revision"])
            name = base64.b64decode(kv["key"]).decode().removeprefix(self.prefix)
            if event.get("type") == "DELETE":  # nothing here deletes runs
                self.deleted.append(name)
            else:
                body = json.loads(base64.b64decode(kv["value"]))
                body["metadata"]["resourceVersion"] = str(revision)  # what kube-apiserver would add
                previous = self.invariants.states.get(name)  # this thread is the only writer
                self.invariants.observe(body)
                status = body.get("status") or {}
                self.messages[name] = status.get("message") or ""
                self.history.setdefault(name, []).append(
                    f"rev {revision} seen {time.monotonic():.3f}: {status.get('state')} on {status.get('worker')}"
                    + (f" ({self.messages[name]})" if self.messages[name] else "")
                )
                if (body.get("status") or {}).get("state") == "Pending" and previous != "Pending":
                    self.grants.append(time.monotonic())
            self.revision = revision + 1


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- processes ---------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    name: str
    pool: str
    limit: int
    kubeconfig: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workpools.worker",
                    *("-n", NAMESPACE, "--kubeconfig", str(self.kubeconfig)),
                    *("--pool", self.pool, "--name", self.name, "--limit", str(self.limit)),
                    *("--heartbeat-interval", str(HEARTBEAT_SECONDS), "--grace", "10"),
                ],
                env={**os.environ, "CHAOS_WORKER": self.name, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (started before the watch thread)
            )

    def exit_code(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def stop(self) -> None:
        """SIGTERM (the worker drains), SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- the scenario ------------------------------------------------------------------------------


@dataclass
class Verdict:
    label: str
    planned: dict[str, PlannedRun]
    truth: GroundTruth
    watch: FlowRunWatch
    final_states: Counter[str]
    problems: list[str]
    """Everything else that went wrong: runs not terminal in time, slots not freed, dead workers…"""
    reclaims: Counter[str]
    faults: list[str]
    heal_seconds: float | None
    """From the heal to every run terminal and every slot free."""
    first_grant_after_heal: float | None

    def table(self) -> str:
        inv = self.watch.invariants
        rows = [
            f"== chaos {self.label}: {len(self.planned)} runs, final states {dict(sorted(self.final_states.items()))}",
            f"   faults: {'; '.join(self.faults)}",
            f"   {'limit':<18} {'limit':>5} {'processes':>9} {'etcd':>5}",
        ]
        for key, bound in inv.limits.items():
            executing, holding = self.truth.peak[key], inv.peak[key]
            flag = "" if executing <= bound and holding <= bound else "  EXCEEDED"
            rows.append(f"   {key[0] + ' ' + key[1]:<18} {bound:>5} {executing:>9} {holding:>5}{flag}")
        if self.truth.window_peak is not None:  # etcd is not checked against the window (grace: see WINDOW_GRACE)
            bound, executing = int(WINDOW["limit"]), self.truth.window_peak
            flag = "" if executing <= bound else "  EXCEEDED"
            rows.append(f"   {'window ' + WINDOWED_POOL:<18} {bound:>5} {executing:>9} {'-':>5}{flag}")
        executions = Counter(e.run for e in self.truth.executions)
        killed = sum(1 for e in self.truth.executions if e.killed)
        rows += [
            f"   executions: {sum(executions.values())} processes for {len(executions)} runs "
            f"({killed} stopped before their end, {sum(1 for e in self.truth.executions if e.end is None)} "
            "without an end)",
            f"   reclaims (Warning events): {dict(self.reclaims) or 0}",
            *(f"   {n} × {why}" for why, n in self._endings().most_common(5)),
            "   time to heal (faults off → every run terminal, slots free): "
            + (f"{self.heal_seconds:.1f}s" if self.heal_seconds is not None else "not healed")
            + f" (bound {DONE_BOUND:.0f}s); first grant after the heal: "
            + (f"{self.first_grant_after_heal:.1f}s" if self.first_grant_after_heal is not None else "none"),
            f"   violations: ground truth {len(self.truth.violations)}, etcd {len(inv.violations)}, "
            f"other {len(self.problems)}",
        ]
        return "\n".join(rows)

    def _endings(self) -> Counter[str]:
        """Why runs ended otherwise than Completed: state and message, with run names made generic."""
        states, messages = self.watch.invariants.snapshot(), self.watch.messages
        return Counter(
            f"{states.get(name) or '(none)'}: {RUN_NAME.sub('RUN', messages.get(name, ''))}"
            for name in self.planned
            if states.get(name) != "Completed"
        )

    def check(self, *, may_stop: Collection[str] = (), any_may_stop: bool = False) -> None:
        """Every invariant. A run must end Completed, unless it is in `may_stop` (a fault may
        legitimately stop it) or `any_may_stop` (e.g. every worker fences itself while the API
        server restarts); whatever its end, the invariants hold."""
        inv = self.watch.invariants
        failures = [f"ground truth: {v}" for v in self.truth.violations]
        for name in sorted({n for v in self.truth.violations[:2] for n in RUN_NAME.findall(v)}):
            lines = [e for e in self.truth.executions if e.run == name]
            failures.append(f"  {name}: processes {lines}; in etcd: " + "; ".join(self.watch.history.get(name, [])))
        failures += [f"etcd: {v}" for v in inv.violations]
        failures += [f"etcd: {name} was deleted" for name in self.watch.deleted]
        if self.watch.failure is not None:
            failures.append(f"the watch of etcd failed: {self.watch.failure!r}")
        failures += self.problems
        states = inv.snapshot()
        for name in self.planned:
            executions = [e for e in self.truth.executions if e.run == name]
            state = states.get(name, "")
            if state == "Completed" and not (len(executions) == 1 and executions[0].end and not executions[0].killed):
                failures.append(f"{name} is Completed but its process did not run to its end: {executions}")
            if state != "Completed" and not any_may_stop and name not in may_stop:
                failures.append(f"{name} ended {state or 'without a state'} although no fault may stop it")
        assert not failures, f"{len(failures)} failures in scenario {self.label}:\n" + "\n".join(failures[:40])


class Chaos:
    """The world of one scenario; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        label: str,
        *,
        seed: int,
        operators: tuple[str, ...] = ("",),
        flow_control: bool = False,
    ):
        self.workdir, self.label = workdir, label
        self.flow_control = flow_control
        """Pool alpha gets a key limit per team, pool beta a time window (see TEAM_LABEL, WINDOW)."""
        self.rng = random.Random(seed)
        self.seed = seed
        self.operator_names = operators
        """Leader-election identities, one per replica; ("",): one operator without leader election."""
        self.plane = ControlPlane(workdir / "controlplane")
        self.kubectl = Kubectl(self.plane.kubeconfig, binary=str(self.plane.bin_dir / "kubectl"))
        self.truth_dir = workdir / "truth"
        self.toxiproxy: Toxiproxy | None = None
        self.operators: dict[str, OperatorProcess] = {}
        self.workers: dict[str, WorkerProcess] = {}
        self.watch: FlowRunWatch | None = None
        self.silent_ends = SilentEnds(self.truth_dir)
        self.planned: dict[str, PlannedRun] = {}
        self.faults: list[str] = []
        self.healed_at: float | None = None
        self.expected_exits: set[str] = set()
        """Operators or workers a scenario stops on purpose (their exit is no failure)."""

    # -- setup ---------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def up(cls, workdir: Path, label: str, **options: Any) -> Iterator[Chaos]:
        chaos = cls(workdir, label, **options)
        try:
            chaos._start()
            yield chaos
        finally:
            chaos._teardown()

    def _start(self) -> None:
        self.truth_dir.mkdir(parents=True)
        self.plane.start()
        install(self.kubectl)
        self.kubectl("create", "namespace", NAMESPACE)
        self.toxiproxy = Toxiproxy.start(self.workdir, seed=self.seed)
        upstream = self.plane.ports["apiserver"]
        manifests: list[dict[str, Any]] = [
            pool(name, concurrencyLimit=limit, **self._flow_control(name)) for name, limit in POOL_LIMITS.items()
        ]
        for index, ((pool_name, name), limit) in enumerate(QUEUE_LIMITS.items()):
            manifests.append(queue(name, pool_name, priority=10 * (index % 3 + 1), concurrencyLimit=limit))
        self.kubectl.apply(*manifests, namespace=NAMESPACE)

        operator_config = service_account_kubeconfig(
            self.kubectl, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, self.workdir / "operator.kubeconfig"
        )
        for identity in self.operator_names:
            name = f"operator-{identity}" if identity else "operator"
            proxy = self.toxiproxy.proxy(name, upstream)
            config = via_proxy(operator_config, proxy, self.workdir / f"{name}.kubeconfig")
            self.operators[name] = OperatorProcess(config, self.workdir / f"{name}.log", leader_election=identity)
        first, *standbys = self.operators.values()
        first.start(wait=False)
        base = worker_kubeconfig(self.kubectl, NAMESPACE, self.workdir / "worker.kubeconfig")
        for name, (pool_name, limit) in WORKER_LIMITS.items():
            config = via_proxy(base, self.toxiproxy.proxy(name, upstream), self.workdir / f"{name}.kubeconfig")
            self.workers[name] = WorkerProcess(name, pool_name, limit, config, self.workdir / f"{name}.log")
            self.workers[name].start()  # meanwhile the operator starts: both import for seconds
        # After the workers (their preexec_fn must not run while another thread of ours exists), before the runs.
        self.watch = FlowRunWatch(
            f"http://127.0.0.1:{self.plane.ports['etcd-client']}", NAMESPACE, flow_control=self.flow_control
        )
        self.watch.start()
        self.silent_ends.start()
        wait_for(first.healthy, timeout=SETUP_BOUND, what="the operator's health endpoint")
        for standby in standbys:  # once the first leads: never healthy while it does
            standby.start(wait=False)

        def online() -> bool:
            pools = self.kubectl.json("get", "wp", "-n", NAMESPACE)["items"]
            counts = {p["metadata"]["name"]: (p.get("status") or {}).get("workers", {}).get("online") for p in pools}
            return counts == {"alpha": 3, "beta": 3}

        wait_for(online, timeout=SETUP_BOUND, what="six workers Online")

    def _flow_control(self, pool_name: str) -> dict[str, Any]:
        if not self.flow_control:
            return {}
        if pool_name == KEY_LIMITED_POOL:
            return {"concurrencyLimitPerKey": [{"label": TEAM_LABEL, "limit": KEY_LIMIT}]}
        if pool_name == WINDOWED_POOL:
            return {"concurrencyLimitSchedule": [WINDOW]}
        return {}

    def _teardown(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        for operator in self.operators.values():
            with contextlib.suppress(Exception):
                if operator.process is not None:
                    operator.process.send_signal(signal.SIGCONT)  # a frozen one must be able to exit
            operator.stop()
        if self.watch is not None:
            self.watch.stop()
        self.silent_ends.stop()
        if self.toxiproxy is not None:
            self.toxiproxy.stop()
        self.plane.stop()

    # -- the burst -----------------------------------------------------------------------------

    def plan(self, *, long_runs: float = 0.0) -> dict[str, PlannedRun]:
        """RUNS_PER_QUEUE runs per queue; with `long_runs` > 0, the first of each queue executes that
        many seconds (`burst` creates those first, so they are admitted first)."""
        planned: list[PlannedRun] = []
        for pool_name, queue_name in QUEUE_LIMITS:
            for i in range(RUNS_PER_QUEUE):
                seconds = long_runs if long_runs and i == 0 else round(self.rng.uniform(*RUN_SECONDS), 2)
                team = TEAMS[i % len(TEAMS)] if self.flow_control and pool_name == KEY_LIMITED_POOL else None
                planned.append(PlannedRun(f"{queue_name}-{i:03d}", pool_name, queue_name, seconds, team))
        self.planned = {p.name: p for p in planned}
        return self.planned

    def burst(self) -> None:
        """Create every planned run at once (one server-side apply): long ones first, then the rest shuffled."""
        if not self.planned:
            self.plan()
        longest = max(p.seconds for p in self.planned.values())
        first = [p for p in self.planned.values() if p.seconds == longest > RUN_SECONDS[1]]
        rest = [p for p in self.planned.values() if p not in first]
        self.rng.shuffle(rest)
        bodies = [
            run(
                p.name,
                p.pool,
                workQueue=p.queue,
                command=f"{sys.executable} -I -S {TRUTH_SCRIPT} {self.truth_dir} {p.seconds}",
            )
            for p in first + rest
        ]
        for body, p in zip(bodies, first + rest, strict=True):
            if p.team is not None:
                body["metadata"]["labels"] = {TEAM_LABEL: p.team}
        self.kubectl.apply(*bodies, namespace=NAMESPACE)

    # -- progress ------------------------------------------------------------------------------

    def proxy(self, name: str) -> Proxy:
        assert self.toxiproxy is not None
        return self.toxiproxy.proxies[name]

    def terminal(self) -> int:
        assert self.watch is not None
        return sum(1 for state in self.watch.invariants.snapshot().values() if state in TERMINAL)

    def fault(self, description: str) -> None:
        self.faults.append(description)

    def healed(self) -> None:
        """The faults are over: from now on, `DONE_BOUND` applies."""
        assert self.toxiproxy is not None
        self.toxiproxy.heal()
        self.healed_at = time.monotonic()
        self.faults.append(f"healed with {self.terminal()}/{len(self.planned)} runs terminal")

    # -- the verdict ---------------------------------------------------------------------------

    def finish(self) -> Verdict:
        assert self.watch is not None
        if self.healed_at is None:
            self.healed()
        assert self.healed_at is not None
        problems: list[str] = []
        states: dict[str, str] = {}

        def all_terminal() -> bool:
            nonlocal states
            states = self.watch.invariants.snapshot() if self.watch else {}
            return all(states.get(name) in TERMINAL for name in self.planned)

        deadline = self.healed_at + DONE_BOUND
        last_change, seen = time.monotonic(), -1
        while not all_terminal() and time.monotonic() < deadline and self.watch.failure is None:
            if self.watch.revision != seen:
                last_change, seen = time.monotonic(), self.watch.revision
            elif time.monotonic() - last_change > STALL_SECONDS:
                problems.append(f"no FlowRun changed for {STALL_SECONDS:.0f}s: gave up waiting early")
                break
            time.sleep(0.2)
        heal_seconds: float | None = None
        if not all_terminal():
            stuck = Counter(states.get(name, "(none)") for name in self.planned if states.get(name) not in TERMINAL)
            waited = time.monotonic() - self.healed_at
            problems.append(f"not every run terminal {waited:.0f}s after the heal (bound {DONE_BOUND:.0f}s): {stuck}")
        else:
            try:
                wait_for(self._slots_free, timeout=SLOTS_BOUND, what="every pool and queue slot free")
                heal_seconds = time.monotonic() - self.healed_at
            except AssertionError as error:
                problems.append(str(error))
        first_grant = self._first_grant_after_heal()
        for name, worker in self.workers.items():
            if worker.exit_code() is not None and name not in self.expected_exits:
                problems.append(f"worker {name} exited with {worker.exit_code()}:\n{worker.log_tail()}")
        for name, operator in self.operators.items():
            exited = operator.process is not None and operator.process.poll() is not None
            if exited and name not in self.expected_exits:
                problems.append(f"{name} exited:\n{operator.log_tail(15)}")
        reclaims = self._reclaims()
        self.watch.stop()
        self.silent_ends.stop()
        truth = GroundTruth.read(self.truth_dir, self.planned, time.monotonic(), flow_control=self.flow_control)
        return Verdict(
            self.label,
            self.planned,
            truth,
            self.watch,
            Counter(states.get(name, "(none)") for name in self.planned),
            problems,
            reclaims,
            self.faults,
            heal_seconds,
            first_grant,
        )

    def _slots_free(self) -> bool:
        pools = self.kubectl.json("get", "wp", "-n", NAMESPACE)["items"]
        queues = self.kubectl.json("get", "wq", "-n", NAMESPACE)["items"]
        return all(((o.get("status") or {}).get("slots") or {}).get("active", 0) == 0 for o in [*pools, *queues])

    def _reclaims(self) -> Counter[str]:
        events = self.kubectl.json("get", "events", "-n", NAMESPACE, "--field-selector", "type=Warning")["items"]
        return Counter(
            e["reason"] for e in events if e["involvedObject"]["kind"] == "FlowRun" for _ in range(e.get("count") or 1)
        )

    def _first_grant_after_heal(self) -> float | None:
        """Seconds from the heal to the first grant after it (None: nothing was left to grant)."""
        assert self.watch is not None
        assert self.healed_at is not None
        after = [t for t in self.watch.grants if t >= self.healed_at]
        return min(after) - self.healed_at if after else None
