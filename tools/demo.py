"""The demo behind `tools/demo.sh`: the whole system moving, on a local control plane or $KUBECONFIG's.

    up     control plane (unless KUBECONFIG), CRDs + RBAC, the operator (as its ServiceAccount),
           examples/ (a pool with three queues), two workers with per-worker limits, ~30 short runs
           over the next minute, and a live view until they are all done; then a summary.
    down   stop what `up` started (workers, operator, and the local control plane).

State (logs, pids, kubeconfigs) lives in .devcluster/ ($WORKPOOLS_DEVCLUSTER_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tools.controlplane.cluster import ControlPlane, binaries
from workpools.api.meta import CATEGORY
from workpools.client.resources import FLOWRUNS
from workpools.client.transport import Transport

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "workpools-demo"
POOL = "demo"
QUEUES = {"demo-critical": 1, "demo-standard": 5, "demo-batch": 10}  # as in examples/
WORKERS = {"worker-a": 2, "worker-b": 3}  # name → per-worker limit
RUNS = 30
BURST = 8
"""Runs due at once at the start: twice the pool's limit, so the limits are reached (and shown
holding) however fast the machine is; the rest are spread over SPREAD_SECONDS."""
SPREAD_SECONDS = 60
TERMINAL = {"Completed", "Failed", "Crashed", "Cancelled"}
HOLDING = {"Pending", "Running", "Cancelling"}


def state_dir() -> Path:
    return Path(os.environ.get("WORKPOOLS_DEVCLUSTER_DIR", ROOT / ".devcluster")).resolve()


class Cluster:
    def __init__(self, kubeconfig: Path, kubectl: Path):
        self.kubeconfig, self.kubectl = kubeconfig, kubectl

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.kubectl), *args], input=stdin, capture_output=True, text=True, env=self.env(), check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"error: kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def token_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig that logs in as a ServiceAccount (token from the TokenRequest API)."""
        token = self("create", "token", account, "-n", namespace, "--duration=24h").strip()
        config = json.loads(self("config", "view", "--raw", "--minify", "--flatten", "-o", "json"))
        config["users"] = [{"name": account, "user": {"token": token}}]
        config["contexts"][0]["context"]["user"] = account
        config["contexts"][0]["context"]["namespace"] = namespace
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path


def worker_account(name: str) -> str:
    """A ServiceAccount for one worker, with the workpools-worker ClusterRole in the demo namespace."""
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: workpools-worker-{name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: workpools-worker}}
subjects: [{{kind: ServiceAccount, name: {name}}}]
"""


def spawn(name: str, argv: list[str], env: dict[str, str], state: Path) -> int:
    """Start a background process that outlives this script; its pid goes to <state>/<name>.pid."""
    with (state / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (state / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def stop_processes(state: Path) -> None:
    for pid_file in sorted(state.glob("*.pid")):
        with contextlib.suppress(ValueError, ProcessLookupError):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 40  # workers drain: let them finish or hand back
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
        pid_file.unlink()


def up(args: argparse.Namespace) -> int:
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    stop_processes(state)
    bin_dir = binaries()
    given = os.environ.get("KUBECONFIG")
    if given:
        kubeconfig = Path(given.split(os.pathsep)[0])
    else:
        subprocess.run(
            [sys.executable, "-m", "tools.controlplane", "down", "--dir", str(state / "cluster")],
            check=True,
            capture_output=True,
        )
        plane = ControlPlane(state / "cluster", detach=True, bin_dir=bin_dir)
        plane.start()
        kubeconfig = plane.kubeconfig
    cluster = Cluster(kubeconfig, bin_dir / "kubectl")
    version = json.loads(cluster("version", "-o", "json"))["serverVersion"]["gitVersion"]
    print(f"== cluster: kube-apiserver {version}  (KUBECONFIG={kubeconfig})")

    print("== installing CRDs and RBAC from manifests/ (the operator runs as a local process)")
    cluster("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "tools/local-install"))
    cluster(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=workpool-operator",
        "--timeout=60s",
    )

    print("== starting the operator as system:serviceaccount:workpools-system:workpools-operator")
    operator_config = cluster.token_kubeconfig("workpools-system", "workpools-operator", state / "operator.kubeconfig")
    health = f"http://127.0.0.1:{free_port()}/healthz"
    spawn(
        "operator",
        [sys.executable, "-m", "workpools"],
        # Free ports for probes and metrics: another operator on this machine may hold the defaults.
        {
            **cluster.env(operator_config),
            "WORKPOOLS_HEALTH_ENDPOINT": health,
            "WORKPOOLS_METRICS_PORT": str(free_port()),
        },
        state,
    )
    wait_healthy(health)

    print(
        f"== applying examples/: pool {POOL} (limit 4) with queues "
        + ", ".join(f"{q} (priority {p})" for q, p in QUEUES.items())
    )
    cluster("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "examples"))
    cluster("wait", "--for=jsonpath={.status.queues}=4", f"workpool/{POOL}", "-n", NAMESPACE, "--timeout=60s")
    cluster("delete", "flowruns,workers", "--all", "-n", NAMESPACE, "--wait=true")  # a rerun starts afresh

    print(
        "== starting two workers, each as a ServiceAccount of its own (bound to the workpools-worker role): "
        + ", ".join(f"{w} (limit {n})" for w, n in WORKERS.items())
    )
    for name, limit in WORKERS.items():
        # Its own identity, so the worker-restriction policy keeps each worker to its own runs.
        cluster("apply", "-n", NAMESPACE, "-f", "-", stdin=worker_account(name))
        worker_config = cluster.token_kubeconfig(NAMESPACE, name, state / f"{name}.kubeconfig")
        spawn(
            name,
            [
                sys.executable,
                "-m",
                "workpools.worker",
                "-n",
                NAMESPACE,
                "--pool",
                POOL,
                "--name",
                name,
                "--limit",
                str(limit),
                "--heartbeat-interval",
                "5",
                "--grace",
                "10",
            ],
            cluster.env(worker_config),
            state,
        )

    print(f"== creating {RUNS} runs: {BURST} due now, the rest scheduled over the next {SPREAD_SECONDS}s")
    cluster("create", "-f", "-", stdin=json.dumps(run_manifests(args.seed)))

    summary = asyncio.run(live_view(cluster, quiet=args.quiet, wait_seconds=args.timeout))
    print(summary.report())
    if args.stop:
        down(args)
    else:
        print(
            f"\nStill running: the operator, the workers{'' if given else ' and the control plane'}. Look around:\n"
            f"  export KUBECONFIG={kubeconfig} PATH={bin_dir}:$PATH\n"
            f"  kubectl get {CATEGORY} -n {NAMESPACE}     # pools, queues, workers and runs\n"
            f"Logs in {state}.  Stop everything: tools/demo.sh down"
        )
    return 0 if summary.ok() else 1


def down(_: argparse.Namespace) -> int:
    state = state_dir()
    stop_processes(state)
    if not os.environ.get("KUBECONFIG"):
        subprocess.run(
            [sys.executable, "-m", "tools.controlplane", "down", "--dir", str(state / "cluster")], check=True
        )
    print("demo stopped")
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.3)
    raise SystemExit(f"error: the operator did not become healthy; see {state_dir() / 'operator.log'}")


def run_manifests(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    now = datetime.datetime.now(datetime.UTC)
    items = []
    for i in range(RUNS):
        queue = rng.choice(list(QUEUES))
        at = now + datetime.timedelta(seconds=SPREAD_SECONDS * max(0, i + 1 - BURST) / (RUNS - BURST))
        items.append(
            {
                "apiVersion": "workpools.dev/v1alpha1",
                "kind": "FlowRun",
                "metadata": {"name": f"run-{i:02d}", "namespace": NAMESPACE},
                "spec": {
                    "workPool": POOL,
                    "workQueue": queue,
                    "scheduledTime": at.isoformat().replace("+00:00", "Z"),
                    "parameters": {"seconds": rng.randint(2, 6)},
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


class Summary:
    """What the live view observed, from every FlowRun change on a watch."""

    def __init__(self, limits: dict[str, int | None]):
        self.limits = limits
        self.states: dict[str, str] = {}
        self.holders: dict[str, tuple[str, str]] = {}  # run → (queue, worker) while it holds a slot
        self.peak: Counter[str] = Counter()
        self.admitted: list[tuple[str, str]] = []  # (queue, run) in admission order

    def observe(self, body: dict[str, Any]) -> None:
        name, status = body["metadata"]["name"], body.get("status") or {}
        state = status.get("state") or "New"
        if state == "Pending" and self.states.get(name) != "Pending":
            self.admitted.append((body["spec"]["workQueue"], name))
        self.states[name] = state
        if state in HOLDING:
            self.holders[name] = (body["spec"]["workQueue"], status.get("worker", "?"))
        else:
            self.holders.pop(name, None)
        usage = Counter({POOL: len(self.holders)})
        for queue, worker in self.holders.values():
            usage[queue] += 1
            usage[worker] += 1
        for key, used in usage.items():
            self.peak[key] = max(self.peak[key], used)

    def done(self) -> bool:
        return len(self.states) == RUNS and all(s in TERMINAL for s in self.states.values())

    def ok(self) -> bool:
        within = all(self.peak[k] <= limit for k, limit in self.limits.items() if limit is not None)
        return self.done() and within and Counter(self.states.values())["Completed"] == RUNS

    def report(self) -> str:
        counts = Counter(self.states.values())
        lines = [
            f"\n== summary: {counts['Completed']}/{RUNS} runs completed"
            + (f" ({', '.join(f'{n} {s}' for s, n in counts.items() if s != 'Completed')})" if len(counts) > 1 else ""),
            "   max concurrency observed vs limit:",
        ]
        for key, limit in self.limits.items():
            verdict = "ok" if limit is None or self.peak[key] <= limit else "EXCEEDED"
            lines.append(f"     {key:<15} {self.peak[key]:>2} / {'∞' if limit is None else limit:<3} {verdict}")
        return "\n".join(lines)


async def live_view(cluster: Cluster, *, quiet: bool, wait_seconds: float) -> Summary:
    limits: dict[str, int | None] = {POOL: 4, "demo-critical": 2, "demo-standard": None, "demo-batch": 1, **WORKERS}
    summary = Summary(limits)
    transport = await Transport.connect(cluster.kubeconfig)
    view = LiveView(sys.stdout)

    async def record() -> None:
        async for _, body in transport.watch(FLOWRUNS, NAMESPACE):
            summary.observe(body)

    recorder = asyncio.create_task(record())
    deadline = time.monotonic() + wait_seconds
    try:
        while not summary.done() and time.monotonic() < deadline:
            await asyncio.sleep(2)
            if not quiet:
                view.show(frame(cluster, summary, stable=not view.tty))
    finally:
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder
        await transport.close()
    return summary


TICKING = {"AGE", "LAST HEARTBEAT"}
"""kubectl columns that change with the clock alone, left out where only changes are printed."""


def frame(cluster: Cluster, summary: Summary, *, stable: bool) -> list[str]:
    """One frame: kubectl's own view of pool, queues and workers, then the runs by state.

    `stable`: without the columns that tick with the clock and the recent admissions, so that two
    frames differ only when something happened.
    """
    table = cluster("get", "wp,wq,wkr", "-n", NAMESPACE).rstrip()
    counts = Counter(summary.states.values())
    order = ["New", "Scheduled", "Pending", "Running", "Completed", "Failed", "Crashed", "Cancelled"]
    states = "  ".join(f"{s} {counts[s]}" for s in order if counts[s])
    if stable:
        return [*without_columns(table, TICKING), "", f"FLOWRUNS  {states}"]
    admitted = " ".join(r.removeprefix("run-") + f"({q.removeprefix('demo-')[0]})" for q, r in summary.admitted[-12:])
    return [
        *table.splitlines(),
        "",
        f"FLOWRUNS  {states}",
        f"last admitted (queue c=critical s=standard b=batch): {admitted}",
    ]


_COLUMN = re.compile(r"\S+(?: \S+)*")
"""A column heading in kubectl's table: words separated by single spaces (`LAST HEARTBEAT`)."""


def without_columns(table: str, names: set[str]) -> list[str]:
    """kubectl's table (blocks of a heading line and rows, one per kind) without the columns `names`.

    kubectl aligns every cell under the start of its heading, so each column is cut at the offsets
    its heading gives.
    """
    lines: list[str] = []
    spans: list[tuple[int, int | None, bool]] | None = None  # (start, end, keep) per column of the block
    for line in table.splitlines():
        if not line.strip():
            lines.append("")
            spans = None
            continue
        if spans is None:
            headings = list(_COLUMN.finditer(line))
            ends: list[int | None] = [h.start() for h in headings[1:]]
            spans = [(h.start(), end, h.group() not in names) for h, end in zip(headings, [*ends, None], strict=True)]
        lines.append("".join(line[start:end] for start, end, keep in spans if keep).rstrip())
    return lines


class LiveView:
    """Shows successive frames: redrawn in place on a terminal (as `watch` does), else only what changed.

    On a terminal the cursor goes back up over the previous frame and the new one is written over
    it, each line cut to the terminal's width and the frame to its height, so nothing scrolls and
    what came before stays on screen. Elsewhere (a pipe, a CI log) the first frame is printed
    whole, then only the lines that are new since the previous frame (each under its table's
    heading), under the time since the first one; nothing at all while nothing changes.
    """

    def __init__(self, out: TextIO, *, tty: bool | None = None, size: Callable[[], os.terminal_size] | None = None):
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.size = size or (lambda: shutil.get_terminal_size((120, 40)))
        self.rows = 0
        """Lines of the frame on screen (terminal)."""
        self.previous: list[str] | None = None
        self.started = time.monotonic()

    def show(self, lines: list[str]) -> None:
        if self.tty:
            self._redraw(lines)
        else:
            self._changes(lines)
        self.out.flush()

    def _redraw(self, lines: list[str]) -> None:
        width, height = self.size()
        shown = [line[:width] for line in lines[: max(1, height - 1)]]
        up = f"\x1b[{self.rows}F" if self.rows else ""  # to the start of the previous frame's first line
        self.out.write(up + "".join(f"{line}\x1b[K\n" for line in shown) + "\x1b[J")  # erase what is left over
        self.rows = len(shown)

    def _changes(self, lines: list[str]) -> None:
        if self.previous is None:
            self.out.write("\n".join(lines) + "\n")
        elif new := changed(self.previous, lines):
            self.out.write(f"-- +{time.monotonic() - self.started:.0f}s\n" + "\n".join(new) + "\n")
        self.previous = lines


def changed(before: list[str], after: list[str]) -> list[str]:
    """The lines of `after` that `before` does not have, each under the heading of its block.

    A block is a run of non-blank lines; its first line is the heading (kubectl's column names).
    """
    seen, new = set(before), []
    heading: str | None = None
    shown = False
    for line in after:
        if not line.strip():
            heading = None
        elif heading is None:
            heading, shown = line, line not in seen
            if shown:
                new.append(line)
        elif line not in seen:
            if not shown:
                new.append(heading)
                shown = True
            new.append(line)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/demo.sh", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    start = sub.add_parser("up", help="start the demo (the default)")
    start.add_argument("--quiet", action="store_true", help="no live view, only the summary")
    start.add_argument("--stop", action="store_true", help="stop everything after the summary")
    start.add_argument("--timeout", type=float, default=240, help="give up waiting for the runs after this")
    start.add_argument("--seed", type=int, default=7, help="seed for the runs' queues and durations")
    sub.add_parser("down", help="stop what the demo started")
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(given or ["up"])
    if args.command in (None, "up"):
        return up(args)
    return down(args)


if __name__ == "__main__":
    sys.exit(main())
