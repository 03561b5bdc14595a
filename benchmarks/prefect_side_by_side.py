"""Prefect side by side (issue 11, benchmark 5): our admission workloads against a real Prefect server.

    .venv/bin/python -m benchmarks.prefect_side_by_side --runs 1000
    .venv/bin/python -m benchmarks.prefect_side_by_side --runs 200 --poll 1 --workloads refill

Installs one pinned Prefect release into a virtualenv of its own (`tools/prefect/install.sh`,
under ~/.cache/workpools/, never the project's .venv), and for every workload × poll interval
starts a fresh `prefect server start` offline (SQLite in a temporary PREFECT_HOME, analytics and
UI off), then runs `benchmarks/prefect_driver.py` in Prefect's virtualenv: Prefect's own worker
loop through Prefect's own client (see that file), which logs every poll and every state
proposal with its answer. The figures come from that log:

- **drain**: N runs over `--pools` pools (limit 50) × 3 queues (limits 20, 10, none), created as
  fast as one client can (16 in flight), `--workers` workers per pool (limit 20 each),
  PENDING → RUNNING → COMPLETED at once — `benchmarks/admission.py`'s workload;
- **refill**: N runs queued behind one pool's limit of 50, each completed 2 s after it became
  PENDING; for every grant that had to wait for a slot, the time from the completion that freed
  the slot (the (k − 50)-th) to its PENDING.

The clock ("start") starts at the first create for drain, when the workers start for refill
(its runs are all queued first). Ground truth from the log: runs moved to PENDING or RUNNING
more than once (re-granted), and the most runs PENDING or RUNNING at once per pool and per
queue against its limit. A state is in force somewhere between the proposal's send and its
answer; "definite" counts a run from its PENDING answer to its COMPLETED send (certainly holding
the slot), "possible" from the PENDING send to the COMPLETED answer. A definite maximum above
the limit is a violation.

Figures go to `benchmarks/results/prefect-side-by-side-<N>.md` (and `.json` beside it) with the
command, the Prefect version, commit and machine, and, when `results/admission-<N>.json` (drain) and
`results/admission-refill-<N>.json` exist, our recorded figures for the same N beside Prefect's.
It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.admission import cell, percentiles
from benchmarks.harness import (
    RESULTS,
    ROOT,
    Sampler,
    git_commit,
    limits,
    log,
    machine,
    record_run,
    source_digest,
    utc_now,
    work_directory,
)

PREFECT_VERSION = "3.9.1"
INSTALL = ROOT / "tools" / "prefect" / "install.sh"
CREATES_IN_FLIGHT = 16
HEARTBEAT_SECONDS = 30
"""`PREFECT_WORKER_HEARTBEAT_SECONDS`' default."""
PREFETCH_SECONDS = 10
"""`PREFECT_WORKER_PREFETCH_SECONDS`' default."""
SERVER_START_TIMEOUT = 180.0
WORKLOADS = ("drain", "refill")


@dataclass(frozen=True)
class Settings:
    runs: int
    polls: tuple[float, ...]
    workloads: tuple[str, ...]
    pools: int
    queue_limits: tuple[int | None, ...]
    pool_limit: int
    workers: int
    worker_limit: int
    hold: float
    deadline: float
    prefect_version: str
    output: Path
    ours: Path
    ours_refill: Path
    keep: bool
    command: str


@dataclass(frozen=True)
class Case:
    workload: str
    poll: float

    @property
    def label(self) -> str:
        return f"{self.workload}, poll {self.poll:g} s"


# -- Prefect: its virtualenv and its server ------------------------------------------------------


def install_prefect(version: str) -> Path:
    """Prefect's own virtualenv (installed on first use by tools/prefect/install.sh)."""
    env = {**os.environ, "PREFECT_VERSION": version}
    done = subprocess.run([str(INSTALL)], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{INSTALL} failed ({done.returncode}): {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prefect_env(home: Path, api: str | None = None) -> dict[str, str]:
    """Offline: SQLite and settings in `home`, no analytics, no UI; the client talks to `api`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }
    if api:
        env["PREFECT_API_URL"] = api
    return env


class PrefectServer:
    """`prefect server start` on a free loopback port, in a session of its own (stopped by `stop()`)."""

    def __init__(self, venv: Path, home: Path):
        self.venv, self.home = venv, home
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.log_path = home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it and wait until /api/health answers; returns the seconds that took."""
        self.home.mkdir(parents=True, exist_ok=True)
        command = [str(self.venv / "bin" / "prefect"), "server", "start", "--host", "127.0.0.1"]
        began = time.monotonic()
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=prefect_env(self.home),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - began < SERVER_START_TIMEOUT:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.api}/health", timeout=2) as answer:
                if answer.read().strip() == b"true":
                    return time.monotonic() - began
            time.sleep(0.5)
        raise RuntimeError(f"prefect server not healthy after {SERVER_START_TIMEOUT:.0f}s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's own process group (only what we started), SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def errors(self) -> dict[str, int]:
        """ERROR/WARNING lines of the server log, and how many said SQLite was locked."""
        text = self.log_path.read_text(errors="replace")
        counts = Counter(level for line in text.splitlines() for level in ("ERROR", "WARNING") if f"| {level} " in line)
        counts["sqlite 'database is locked'"] = text.count("sqlite3.OperationalError) database is locked")
        return dict(counts)


# -- one case: the driver in Prefect's virtualenv -------------------------------------------------


def driver_config(settings: Settings, case: Case, deadline: float) -> dict[str, Any]:
    if case.workload == "drain":
        pools = [
            {
                "name": f"pool-{p + 1}",
                "limit": settings.pool_limit,
                # Our queues' priorities (admission.py): 10, 20, 30; Prefect's default queue is 1, empty.
                "queues": [
                    {"name": f"pool-{p + 1}-q{i + 1}", "priority": 10 * (i + 1), "limit": limit}
                    for i, limit in enumerate(settings.queue_limits)
                ],
            }
            for p in range(settings.pools)
        ]
        hold = 0.0
    else:
        pools = [
            {
                "name": "pool-1",
                "limit": settings.pool_limit,
                "queues": [{"name": "pool-1-q1", "priority": 10, "limit": None}],
            }
        ]
        hold = settings.hold
    return {
        "runs": settings.runs,
        "poll": case.poll,
        "prefetch": PREFETCH_SECONDS,
        "heartbeat": HEARTBEAT_SECONDS,
        "hold": hold,
        "queue_first": case.workload == "refill",
        "workers_per_pool": settings.workers,
        "worker_limit": settings.worker_limit,
        "creates_in_flight": CREATES_IN_FLIGHT,
        "deadline": deadline,
        "pools": pools,
    }


async def run_driver(venv: Path, server: PrefectServer, config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The driver as a child process, with the server's and its own CPU sampled every second."""
    config_path, events_path = workdir / "config.json", workdir / "events.json"
    config_path.write_text(json.dumps(config))
    env = prefect_env(workdir / "client-home", server.api)
    process = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "python"), "-m", "benchmarks.prefect_driver", str(config_path), str(events_path),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert server.process is not None
    sampler = Sampler({"prefect server": server.process.pid, "driver": process.pid})
    first = sampler.sample()
    sampling = asyncio.create_task(sampler.run())
    try:
        code = await process.wait()
    finally:
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
    if code != 0:
        raise RuntimeError(f"the Prefect driver exited with {code}")
    events: dict[str, Any] = json.loads(events_path.read_text())
    last = sampler.samples[-1]
    events["cpu seconds"] = {name: round(last.cpu[name] - first.cpu.get(name, 0.0), 1) for name in last.cpu}
    events["peak rss MiB"] = {name: round(v / 2**20, 1) for name, v in last.peak_rss.items()}
    return events


async def run_case(settings: Settings, case: Case, venv: Path, workdir: Path) -> dict[str, Any]:
    server = PrefectServer(venv, workdir / "prefect-home")
    log(f"{case.label}: starting prefect server {settings.prefect_version}")
    startup = await asyncio.to_thread(server.start)
    try:
        log(f"{case.label}: server healthy after {startup:.1f}s; driving {settings.runs} runs")
        events = await run_driver(venv, server, driver_config(settings, case, settings.deadline), workdir)
    finally:
        await asyncio.to_thread(server.stop)
    result = figures(events, case, settings)
    result["server start seconds"] = round(startup, 1)
    result["server log"] = server.errors()
    log(f"{case.label}: {result['grants per second (all runs / start → last first PENDING)']} grants/s")
    return result


# -- figures from the event log -------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    sent: float
    answered: float
    run: str
    worker: str
    proposed: str
    status: str
    after: str | None

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPT"


@dataclass(frozen=True)
class Execution:
    """One PENDING accepted for a run by a worker, up to that worker's COMPLETED of it."""

    run: str
    pending: Proposal
    completed: Proposal | None

    def definite(self, end: float) -> tuple[float, float]:
        """When the run certainly held its slots: PENDING answered → COMPLETED sent."""
        return self.pending.answered, self.completed.sent if self.completed else end

    def possible(self, end: float) -> tuple[float, float]:
        """When it may have held them: PENDING sent → COMPLETED answered."""
        return self.pending.sent, self.completed.answered if self.completed else end


def executions(proposals: Sequence[Proposal]) -> list[Execution]:
    made: list[Execution] = []
    open_: dict[tuple[str, str], Proposal] = {}
    for p in sorted(proposals, key=lambda p: p.sent):
        if not p.accepted:
            continue
        key = (p.run, p.worker)
        if p.proposed == "PENDING":
            open_[key] = p
        elif p.proposed == "COMPLETED" and key in open_:
            made.append(Execution(p.run, open_.pop(key), p))
    made += [Execution(run, pending, None) for (run, _), pending in open_.items()]
    return made


def max_concurrent(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at the same instant as a start comes first)."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def occupancy(
    runs: dict[str, dict[str, Any]], done: Sequence[Execution], limits: dict[str, int | None], end: float
) -> dict[str, dict[str, Any]]:
    """Per pool and per queue: its limit, the most runs PENDING or RUNNING at once (definite, possible)."""
    by_scope: dict[str, list[Execution]] = defaultdict(list)
    for execution in done:
        run = runs.get(execution.run)
        if run is not None:
            by_scope[run["pool"]].append(execution)
            by_scope[run["queue"]].append(execution)
    table = {}
    for scope, limit in limits.items():
        held = by_scope.get(scope, [])
        definite = max_concurrent([e.definite(end) for e in held])
        table[scope] = {
            "limit": limit,
            "max definite": definite,
            "max possible": max_concurrent([e.possible(end) for e in held]),
            "violated": limit is not None and definite > limit,
        }
    return table


def refill_latencies(done: Sequence[Execution], limit: int) -> tuple[list[float], int]:
    """Grant k (k ≥ limit, in time order) waited for release k − limit: (latencies, grants before it)."""
    grants = sorted(e.pending.answered for e in done)
    releases = sorted(e.completed.answered for e in done if e.completed is not None)
    latencies = [grants[k] - releases[k - limit] for k in range(limit, len(grants)) if k - limit < len(releases)]
    return [x for x in latencies if x >= 0], sum(1 for x in latencies if x < 0)


def grant_figures(runs: dict[str, dict[str, Any]], proposals: Sequence[Proposal], started: float) -> dict[str, Any]:
    """Throughput and latency of the first PENDING of each run, and how often a state was accepted again."""
    first_pending: dict[str, float] = {}
    accepted: Counter[tuple[str, str]] = Counter()
    for p in sorted(proposals, key=lambda p: p.answered):
        if p.accepted:
            accepted[(p.run, p.proposed)] += 1
            if p.proposed == "PENDING":
                first_pending.setdefault(p.run, p.answered)
    pendings = sorted(first_pending.values())
    n = len(pendings)
    lo, hi = (pendings[n // 10], pendings[(9 * n) // 10]) if n else (0.0, 0.0)

    def again(state: str) -> int:
        return sum(1 for (_, proposed), times in accepted.items() if proposed == state and times > 1)

    return {
        "runs granted (PENDING accepted)": n,
        "start → last first PENDING seconds": round(pendings[-1] - started, 1) if n else None,
        "grants per second (all runs / start → last first PENDING)": round(n / (pendings[-1] - started), 1) if n else 0,
        "grants per second (steady: 10th → 90th percentile grant)": round(0.8 * n / (hi - lo), 1) if hi > lo else None,
        "latency creation → PENDING ms": percentiles(
            [first_pending[r] - run["created"] for r, run in runs.items() if r in first_pending]
        ),
        "re-granted runs (PENDING accepted more than once)": again("PENDING"),
        "re-run runs (RUNNING accepted more than once)": again("RUNNING"),
        "runs COMPLETED more than once": again("COMPLETED"),
    }


def poll_figures(polls: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {
        "polls": len(polls),
        "poll latency ms": percentiles([answered - sent for sent, answered, _, _ in polls]),
        "runs returned per poll (mean)": round(sum(row[3] for row in polls) / len(polls), 1) if polls else 0.0,
    }


def figures(events: dict[str, Any], case: Case, settings: Settings) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = events["runs"]
    proposals = [Proposal(*row) for row in events["proposals"]]
    done = executions(proposals)
    limits: dict[str, int | None] = {}
    for pool in driver_config(settings, case, settings.deadline)["pools"]:
        limits[pool["name"]] = pool["limit"]
        limits |= {q["name"]: q["limit"] for q in pool["queues"]}
    occupied = occupancy(runs, done, limits, events["finished"])
    answers = Counter((p.proposed, p.status) for p in proposals)
    result: dict[str, Any] = {
        "runs created": len(runs),
        "failed creates": events["failed creates"],
        "creation seconds": round(events["created"] - events["creating"], 1),
        "runs completed": events["completed"],
        **grant_figures(runs, proposals, events["started"]),
        "limit violations (definite max over the limit)": sum(1 for row in occupied.values() if row["violated"]),
        "max PENDING+RUNNING per pool and queue": occupied,
        "proposals by answer": {f"{proposed} {status}": k for (proposed, status), k in sorted(answers.items())},
        **poll_figures(events["polls"]),
        "worker heartbeats": events["heartbeats"],
        "cpu seconds (the driver's whole run: setup, creates, drain)": events["cpu seconds"],
        "peak rss MiB": events["peak rss MiB"],
        "client errors": [error[:160] for error in events["errors"][:5]],
        "client errors (count)": len(events["errors"]),
    }
    if case.workload == "refill":
        # The pairing with the (k − limit)-th completion means "waited for a slot" only if the pool was full.
        result["refill pool limit reached (max definite = limit)"] = (
            occupied["pool-1"]["max definite"] >= settings.pool_limit
        )
        latencies, early = refill_latencies(done, settings.pool_limit)
        result["refill latency: completion that freed the slot → next PENDING ms"] = percentiles(latencies)
        result["refill grants before the completion that freed their slot"] = early
    return result


# -- report ---------------------------------------------------------------------------------------

SUMMARY = (
    "grants per second (all runs / start → last first PENDING)",
    "grants per second (steady: 10th → 90th percentile grant)",
    "latency creation → PENDING ms",
    "refill latency: completion that freed the slot → next PENDING ms",
    "refill pool limit reached (max definite = limit)",
    "limit violations (definite max over the limit)",
    "re-granted runs (PENDING accepted more than once)",
    "re-run runs (RUNNING accepted more than once)",
)


def ours(drain: Path, refill: Path) -> dict[str, Any] | None:
    """Our recorded admission runs for the same N (benchmarks.admission drain and refill), if any."""
    figures: dict[str, Any] = {}
    sources = []
    for path in (drain, refill):
        if not path.exists():
            continue
        recorded = json.loads(path.read_text())
        fig = recorded["figures"]
        shown = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        sources.append(f"`{shown}` (commit `{recorded['context']['commit'][:7]}`, {recorded['context']['date']})")
        if path == drain:
            figures |= {
                "grants per second (all runs / start → last first PENDING)": fig[
                    "grants per second (all runs / first create → last grant)"
                ],
                "grants per second (steady: 10th → 90th percentile grant)": fig[
                    "grants per second (steady: 10th → 90th percentile grant)"
                ],
                "latency creation → PENDING ms": fig["latency creation → Pending ms"],
            }
        else:
            figures["refill latency: completion that freed the slot → next PENDING ms"] = fig[
                "freed slot → refill latency ms (Completed event → Pending event, FIFO)"
            ]
    return {"sources": sources, **figures} if sources else None


def report(results: dict[str, dict[str, Any]], context: dict[str, Any], settings: Settings) -> str:
    labels = list(results)
    lines = [
        f"# Prefect {settings.prefect_version} side by side: {settings.runs:,} runs",
        "",
        f"Command: `{settings.command}`  ",
        f"Date: {context['date']}  ",
        f"Commit: `{context['commit']}` (operator/ + benchmarks/ source digest `{context['digest']}`)  ",
        f"Prefect: {settings.prefect_version} (`prefect server start`, SQLite, offline; its own virtualenv)",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in context["machine"].items()),
        "",
        "Workloads: **drain**: "
        + f"{settings.pools} pools (limit {settings.pool_limit}) × {len(settings.queue_limits)} queues "
        + f"(limits {', '.join(str(limit or 'none') for limit in settings.queue_limits)}), "
        + f"{settings.runs:,} runs round-robin over the queues, created as fast as one client can "
        + f"({CREATES_IN_FLIGHT} in flight), completed at once; **refill**: {settings.runs:,} runs behind one "
        + f"pool's limit of {settings.pool_limit}, each completed {settings.hold:g} s after its PENDING. "
        + f"{settings.workers} simulated Prefect workers per pool (limit {settings.worker_limit} each), "
        + "Prefect's worker loop through Prefect's client (`benchmarks/prefect_driver.py`). "
        + "A fresh server and database per case.",
        "",
        "## Summary",
        "",
        "| figure | " + " | ".join(labels) + (" | workpool-operator |" if context["ours"] else " |"),
        "|---|" + "---|" * (len(labels) + (1 if context["ours"] else 0)),
    ]
    for key in SUMMARY:
        row = [cell(results[label].get(key, "—")) for label in labels]
        if context["ours"]:
            row.append(cell(context["ours"].get(key, "—")))
        lines.append(f"| {key} | " + " | ".join(row) + " |")
    if context["ours"]:
        lines += ["", "workpool-operator: " + "; ".join(context["ours"]["sources"]) + "."]
    for label, figures_ in results.items():
        lines += ["", f"## {label}", "", "| figure | value |", "|---|---|"]
        for key, value in figures_.items():
            if key == "max PENDING+RUNNING per pool and queue":
                continue
            lines.append(f"| {key} | {cell(value)} |")
        lines += [
            "",
            "| pool or queue | limit | max PENDING+RUNNING definite | possible | violated |",
            "|---|---|---|---|---|",
        ]
        for scope, row in figures_["max PENDING+RUNNING per pool and queue"].items():
            lines.append(
                f"| {scope} | {row['limit']} | {row['max definite']} | {row['max possible']} | {row['violated']} |"
            )
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------------


async def measure(settings: Settings, workdir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    venv = await asyncio.to_thread(install_prefect, settings.prefect_version)
    context: dict[str, Any] = {
        "date": utc_now().strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "digest": source_digest(),
        "prefect": settings.prefect_version,
        "prefect virtualenv": str(venv),
        "machine": machine(),
        "ours": ours(settings.ours, settings.ours_refill),
    }
    results = {}
    for workload in settings.workloads:
        for poll in settings.polls:
            case = Case(workload, poll)
            case_dir = workdir / f"{workload}-poll-{poll:g}"
            case_dir.mkdir()
            results[case.label] = await run_case(settings, case, venv, case_dir)
    return results, context


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prefect_side_by_side", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument(
        "--poll", type=float, nargs="+", default=[10.0, 1.0], help="worker poll intervals, one case each (10 1)"
    )
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--pools", type=int, default=2, help="drain: pools")
    parser.add_argument("--queue-limits", default="20,10,none", help="drain: per queue, 'none' is unlimited")
    parser.add_argument("--pool-limit", type=int, default=50)
    parser.add_argument("--workers", type=int, default=5, help="simulated workers per pool")
    parser.add_argument("--worker-limit", type=int, default=20)
    parser.add_argument("--hold", type=float, default=2.0, help="refill: seconds from PENDING to COMPLETED")
    parser.add_argument(
        "--deadline", type=float, default=None, help="seconds for every run to complete, from the last create"
    )
    parser.add_argument("--prefect-version", default=PREFECT_VERSION)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--ours", type=Path, default=None, help="our drain JSON (results/admission-<N>.json)")
    parser.add_argument(
        "--ours-refill", type=Path, default=None, help="our refill JSON (results/admission-refill-<N>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs, event logs)")
    args = parser.parse_args(argv)
    return Settings(
        runs=args.runs,
        polls=tuple(args.poll),
        workloads=tuple(args.workloads),
        pools=args.pools,
        queue_limits=limits(args.queue_limits),
        pool_limit=args.pool_limit,
        workers=args.workers,
        worker_limit=args.worker_limit,
        hold=args.hold,
        deadline=args.deadline or 300 + 0.5 * args.runs,
        prefect_version=args.prefect_version,
        output=args.output or RESULTS / f"prefect-side-by-side-{args.runs}.md",
        ours=args.ours or RESULTS / f"admission-{args.runs}.json",
        ours_refill=args.ours_refill or RESULTS / f"admission-refill-{args.runs}.json",
        keep=args.keep,
        command=" ".join([".venv/bin/python -m benchmarks.prefect_side_by_side", *argv]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    with work_directory("bench-prefect-", settings.keep) as workdir:
        results, context = asyncio.run(measure(settings, workdir))
    record_run(settings.output, report(results, context, settings), settings, context, results)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
