"""How long the `workpools` CLI takes to answer: `--help`, `pool --help` and `pool ls` (issue 15, item 2).

    .venv/bin/python -m benchmarks.cli            # starts a local control plane unless KUBECONFIG is set
    .venv/bin/python -m benchmarks.cli --no-cluster   # the two --help commands only

Each command runs once unmeasured (bytecode and page caches warm, as for a user's second call),
then `--runs` times one after another; the figure is the median wall time from spawn to exit, as
a person at a terminal waits for it, beside the median CPU time (user + system) of the process,
which load from other processes inflates less. Two references put the figures in proportion:
the bare interpreter (`python -c pass`, the floor of any Python CLI) and `kubectl get` of the
same pools. `pool ls` lists `--pools` WorkPools in a namespace of their own, read with the
cluster's admin kubeconfig; the operator does not run (no statuses to render: the cost measured
is the CLI's own).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, Cluster, git_commit, machine, record, source_digest

NAMESPACE = "bench-cli"
GOALS = {"--help": 0.15, "pool --help": 0.15, "pool ls": 0.5}
"""Issue 15: seconds, median of 10 runs on an idle machine."""


@dataclass(frozen=True)
class Timing:
    label: str
    command: list[str]
    wall: list[float]
    cpu: list[float]

    def figures(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "command": " ".join(self.command),
            "runs": len(self.wall),
            "median s": round(statistics.median(self.wall), 4),
            "min s": round(min(self.wall), 4),
            "max s": round(max(self.wall), 4),
            "median cpu s": round(statistics.median(self.cpu), 4),
            "goal s": GOALS.get(self.label),
        }


def time_command(label: str, command: list[str], runs: int, env: dict[str, str]) -> Timing:
    """One unmeasured run, then `runs` measured ones; each must exit 0."""
    wall, cpu = [], []
    for index in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
        if index:
            wall.append(elapsed)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return Timing(label, command, wall, cpu)


def workpools_binary(given: str | None) -> str:
    """`given`, else the `workpools` of the virtualenv running this benchmark, else the one on PATH."""
    beside = Path(sys.executable).parent / "workpools"
    found = given or (str(beside) if beside.is_file() else shutil.which("workpools"))
    if found is None:
        raise SystemExit("no `workpools` command: install the project (pip install -e .)")
    return found


def measured_tree(workpools: str) -> dict[str, str]:
    """Which sources the `workpools` command runs (another checkout's, with `--workpools`), and their commit."""
    interpreter = Path(workpools).resolve().parent / "python"
    where = subprocess.run(
        [str(interpreter), "-c", "import pathlib, workpools; print(pathlib.Path(workpools.__file__).parent)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", where or ".", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {"workpools command": workpools, "workpools package": where or "unknown", "its commit": commit or "unknown"}


def create_pools(cluster: Cluster, count: int) -> None:
    kubectl = cluster.kubectl
    kubectl("create", "namespace", NAMESPACE, check=False)
    documents = [
        {
            "apiVersion": "workpools.dev/v1alpha1",
            "kind": "WorkPool",
            "metadata": {"name": f"pool-{i}", "namespace": NAMESPACE},
            "spec": {"type": "process", "concurrencyLimit": 4},
        }
        for i in range(count)
    ]
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents))


def measure(settings: argparse.Namespace) -> dict[str, Any]:
    workpools = workpools_binary(settings.workpools)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    figures: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "source digest": source_digest(),
        "measured": measured_tree(workpools),
        "machine": machine(),
        "cluster": os.environ.get("KUBECONFIG") or ("none" if settings.no_cluster else "local control plane"),
    }
    timings = [
        time_command("python -c pass", [sys.executable, "-c", "pass"], settings.runs, env),
        time_command("--help", [workpools, "--help"], settings.runs, env),
        time_command("pool --help", [workpools, "pool", "--help"], settings.runs, env),
    ]
    if not settings.no_cluster:
        workdir = Path(tempfile.mkdtemp(prefix="bench-cli-"))
        cluster = Cluster(workdir)
        try:
            cluster.start()
            cluster.install()
            create_pools(cluster, settings.pools)
            figures["machine"]["kubernetes (API server)"] = cluster.server_version()
            env = {**env, "KUBECONFIG": str(cluster.kubectl.kubeconfig)}
            kubectl = [cluster.kubectl.binary, "get", "workpools.workpools.dev", "-n", NAMESPACE]
            timings += [
                time_command("pool ls", [workpools, "pool", "ls", "-n", NAMESPACE], settings.runs, env),
                time_command("kubectl get", kubectl, settings.runs, env),
            ]
        finally:
            cluster.stop()
            if not settings.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    figures["timings"] = [t.figures() for t in timings]
    figures["load average after the run"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return figures


def report(figures: dict[str, Any], argv: Sequence[str]) -> str:
    lines = [
        "# CLI start-up and `pool ls`",
        "",
        f"Measured by `benchmarks/cli.py` on {figures['date']}:",
        "",
        "```",
        " ".join(["python -m benchmarks.cli", *argv]),
        "```",
        "",
        f"* commit `{figures['commit']}`, source digest `{figures['source digest']}`",
        f"* cluster: {figures['cluster']}",
        *(f"* {key}: {value}" for key, value in figures["measured"].items()),
        *(f"* {key}: {value}" for key, value in figures["machine"].items()),
        f"* load average after the run: {figures['load average after the run']}",
        "",
        "| command | runs | median | min | max | median CPU | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in figures["timings"]:
        goal = f"≤ {t['goal s']} s" if t["goal s"] is not None else "reference"
        lines.append(
            f"| `{t['command'].replace(str(Path.home()), '~')}` | {t['runs']} | {t['median s']:.3f} s | "
            f"{t['min s']:.3f} s | {t['max s']:.3f} s | {t['median cpu s']:.3f} s | {goal} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per command (default 10)")
    parser.add_argument("--pools", type=int, default=5, help="WorkPools that `pool ls` lists (default 5)")
    parser.add_argument("--no-cluster", action="store_true", help="only the --help commands: no control plane")
    parser.add_argument("--output", type=Path, default=RESULTS / "cli.md", help="default: benchmarks/results/cli.md")
    parser.add_argument("--workpools", metavar="PATH", help="the command to time (default: this virtualenv's)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (control plane state, logs)")
    settings = parser.parse_args(args)
    figures = measure(settings)
    text = report(figures, args)
    record(settings.output, text, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
