"""What every benchmark here needs: a cluster with the manifests installed, the operator as a
process, the API server's request counters, CPU and memory of processes, watches, the machine.

A benchmark starts its own local control plane (`tools.controlplane`) unless KUBECONFIG is set,
runs the operator as its ServiceAccount exactly as the integration tests do, and measures from
the outside: the API server's `/metrics` and `/proc`. Nothing here imports the operator's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.kube import Kubectl
from tests.support.operator import install
from tools.controlplane.cluster import ControlPlane, binaries

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- the cluster ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """$KUBECONFIG's cluster, or a local control plane started in `workdir` (stopped by `stop()`)."""

    workdir: Path
    profiling: bool = False
    """A local control plane's kube-apiserver serves /debug/pprof (`ApiServerProfile`)."""
    kubectl: Kubectl = field(init=False)
    plane: ControlPlane | None = None

    def start(self) -> None:
        bin_dir = binaries()
        given = os.environ.get("KUBECONFIG")
        if given:
            kubeconfig = Path(given.split(os.pathsep)[0])
        else:
            self.plane = ControlPlane(self.workdir / "controlplane", bin_dir=bin_dir, profiling=self.profiling)
            self.plane.start()
            kubeconfig = self.plane.kubeconfig
        self.kubectl = Kubectl(kubeconfig, binary=str(bin_dir / "kubectl"))

    def stop(self) -> None:
        if self.plane is not None:
            self.plane.stop()

    def install(self) -> None:
        """manifests/ through tools/local-install (the operator Deployment at zero: we run it)."""
        install(self.kubectl)

    def server_version(self) -> str:
        return str(self.kubectl.json("version")["serverVersion"]["gitVersion"])

    def control_plane_pids(self) -> dict[str, int]:
        """etcd, kube-apiserver, kube-controller-manager when we started them (else nothing to measure)."""
        return {name: proc.pid for name, proc in self.plane.processes.items()} if self.plane else {}


# -- API server request counters ----------------------------------------------------------------

WRITE_VERBS = {"POST": "CREATE", "CREATE": "CREATE", "PUT": "UPDATE", "UPDATE": "UPDATE", "PATCH": "PATCH"}
WRITE_VERBS |= {"APPLY": "APPLY", "DELETE": "DELETE", "DELETECOLLECTION": "DELETECOLLECTION"}

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, order=True)
class WriteKey:
    """One kind of write: `resource` with its group, `subresource` ('' for the object), verb, success."""

    resource: str
    subresource: str
    verb: str
    ok: bool

    @property
    def target(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def api_writes(kubectl: Kubectl) -> Counter[WriteKey]:
    """The API server's cumulative write requests (`apiserver_request_total`), by resource and verb."""
    counts: Counter[WriteKey] = Counter()
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        verb = WRITE_VERBS.get(labels.get("verb", ""))
        if verb is None:
            continue
        resource = labels.get("resource", "")
        if labels.get("group"):
            resource = f"{resource}.{labels['group']}"
        ok = labels.get("code", "").startswith("2")
        counts[WriteKey(resource, labels.get("subresource", ""), verb, ok)] += round(float(match["value"]))
    return counts


# -- processes and the machine ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its own threads, not its children)."""
    # The command name (field 2) may hold spaces; everything after its closing parenthesis splits cleanly.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory(pid: int) -> tuple[int, int]:
    """(resident set size now, peak resident set size so far) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def runqueue_wait_seconds(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (contention), so far.

    From /proc/<pid>/task/*/schedstat (second field, ns); threads that already exited are not counted.
    """
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            waited += int(task.joinpath("schedstat").read_text().split()[1])
    return waited / 1e9


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over all CPUs."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


@dataclass
class Sample:
    at: float
    """time.monotonic() of the sample."""
    cpu: dict[str, float]
    """CPU seconds so far per process name, plus `machine` (busy seconds of all CPUs)."""
    rss: dict[str, int]
    peak_rss: dict[str, int]
    waited: dict[str, float] = field(default_factory=dict)
    """Run-queue wait seconds so far per process: time it was ready to run but had no CPU."""


class Sampler:
    """Samples CPU time and memory of named processes (and the machine) every `period` seconds."""

    def __init__(self, pids: dict[str, int], period: float = 1.0):
        self.pids = pids
        self.period = period
        self.samples: list[Sample] = []

    def sample(self) -> Sample:
        cpu, rss, peak, waited = {}, {}, {}, {}
        for name, pid in self.pids.items():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                cpu[name] = cpu_seconds(pid)
                rss[name], peak[name] = memory(pid)
                waited[name] = runqueue_wait_seconds(pid)
        cpu["machine"] = machine_busy_seconds()[0]
        taken = Sample(time.monotonic(), cpu, rss, peak, waited)
        self.samples.append(taken)
        return taken

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.period)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo)[1])  # type: ignore[index]
    return {
        "cpus": f"{len(os.sched_getaffinity(0))} (nproc)",
        "cpu model": model,
        "memory": f"{total_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "kopf": metadata.version("kopf"),
        "kubernetes (Python client)": metadata.version("kubernetes"),
        "load average before the run": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def source_digest() -> str:
    """sha256 over operator/ and benchmarks/ sources: tells runs apart when the tree has uncommitted changes."""
    digest = hashlib.sha256()
    for path in sorted([*(ROOT / "operator").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- watches -------------------------------------------------------------------------------------


@dataclass
class Change:
    at: float
    """time.monotonic() when the harness read the event."""
    type: str
    name: str
    resource_version: str
    object: dict[str, Any]


class Watch:
    """`kubectl get <resource> -w` in one namespace: every ADDED/MODIFIED/DELETED event, timestamped.

    Name the resource fully (`workpools.workpools.dev`), so that no category or other group's
    resource of the same name can ever be picked instead (kubectl cannot watch a category).
    """

    def __init__(self, kubectl: Kubectl, resource: str, namespace: str, stderr: Path):
        self.kubectl, self.resource, self.namespace, self.stderr = kubectl, resource, namespace, stderr
        self.changes: list[Change] = []
        self.ended_early: str | None = None
        """What kubectl said when it stopped watching before `stop()`."""
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.stderr.open("wb") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                self.kubectl.binary,
                "get",
                self.resource,
                "-n",
                self.namespace,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
                env=self.kubectl.env(),
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                stdin=asyncio.subprocess.DEVNULL,
            )
        self._reader = asyncio.create_task(self._read(), name=f"watch {self.resource}")

    async def _read(self) -> None:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        while chunk := await process.stdout.read(65536):
            buffer += chunk.decode()
            while True:
                buffer = buffer.lstrip()
                try:
                    event, end = decoder.raw_decode(buffer)
                except ValueError:
                    break  # an incomplete document: wait for more
                buffer = buffer[end:]
                obj = event.get("object", {})
                meta = obj.get("metadata", {})
                kind, name, version = event.get("type", ""), meta.get("name", ""), meta.get("resourceVersion", "")
                self.changes.append(Change(time.monotonic(), kind, name, version, obj))
        said = self.stderr.read_text(errors="replace").strip()
        self.ended_early = f"kubectl exited with {await process.wait()}: {said[-300:]}"

    async def stop(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()


def changed_fields(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the fields that differ between two versions of a JSON document."""
    paths = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            paths += changed_fields(old, new, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


# -- the operator under cProfile (a diagnostic run: `--profile`) ---------------------------------


PROFILER = """\
# Written by a benchmark run with --profile or --tracemalloc (benchmarks/harness.py): profiles the
# process that imports it (the operator): cProfile's stats at a normal exit (SIGTERM makes kopf
# return), tracemalloc's snapshot of the peak.
import atexit, cProfile, os, tracemalloc

_path = os.environ.get("WORKPOOLS_BENCH_PROFILE")
if _path:
    _profile = cProfile.Profile()
    _profile.enable()

    def _dump() -> None:
        _profile.disable()
        _profile.dump_stats(_path)

    atexit.register(_dump)

_memory_path = os.environ.get("WORKPOOLS_BENCH_TRACEMALLOC")
if _memory_path:
    import threading, time

    tracemalloc.start()

    def _snapshot_the_peak() -> None:
        # At exit the operator's state may be freed already: a snapshot is dumped instead whenever
        # the traced total has grown by 5 % (checked every 5 s), so the last one is of the peak.
        highest = 0
        while True:
            time.sleep(5)
            if (current := tracemalloc.get_traced_memory()[0]) > highest * 1.05:
                highest = current
                tracemalloc.take_snapshot().dump(_memory_path)

    threading.Thread(target=_snapshot_the_peak, name="tracemalloc", daemon=True).start()
"""


def _profiled(workdir: Path, variable: str, dump: str) -> Path:
    """Make the next `python -m workpools` started from here import the profiler above (a
    `sitecustomize` on PYTHONPATH), so the operator starts exactly as the tests start it, and
    have it dump to `workdir/dump`; returns the dump's path."""
    directory = workdir / "profiler"
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(PROFILER)
    if str(directory) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    os.environ[variable] = str(workdir / dump)
    return workdir / dump


def profile_operator(workdir: Path) -> Path:
    """The operator under cProfile; returns the stats dump's path."""
    return _profiled(workdir, "WORKPOOLS_BENCH_PROFILE", "operator.prof")


def trace_operator_memory(workdir: Path) -> Path:
    """The operator under tracemalloc (one frame per allocation); returns the path of the snapshot
    of its peak."""
    return _profiled(workdir, "WORKPOOLS_BENCH_TRACEMALLOC", "operator.tracemalloc")


def memory_summary(path: Path, top: int = 10) -> str:
    """Where the operator's memory was at its peak: traced total, then the top lines and files."""
    snapshot = tracemalloc.Snapshot.load(str(path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*")]
    )
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    out = [
        f"traced at the peak: {total / 1024 / 1024:.1f} MiB (Python allocations only; RSS adds the interpreter, "
        "C libraries and fragmentation)"
    ]
    for group in ("lineno", "filename"):
        out.append(f"\n### top {top} by {group}\n\n| MiB | blocks | where |\n|---|---|---|")
        for stat in snapshot.statistics(group)[:top]:
            frame = stat.traceback[0]
            where = f"{_short(frame.filename)}:{frame.lineno}" if group == "lineno" else _short(frame.filename)
            out.append(f"| {stat.size / 1024 / 1024:.1f} | {stat.count:,} | `{where}` |")
    return "\n".join(out)


def _short(filename: str) -> str:
    """A file as the reader knows it: from its package (site-packages, the repo or the stdlib) on."""
    for marker in ("site-packages/", f"{ROOT}/", f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def profile_summary(path: Path, top: int = 30) -> str:
    """The operator's hottest functions from a cProfile dump: by own time, then by cumulative time."""
    out: list[str] = []
    for order in ("tottime", "cumulative"):
        stream = _Stream()
        stats = pstats.Stats(str(path), stream=stream)  # type: ignore[arg-type]
        stats.strip_dirs().sort_stats(order).print_stats(top)
        out.append(f"### by {order}\n\n```\n{stream.text()}\n```")
    return "\n\n".join(out)


class ApiServerProfile:
    """A CPU profile of kube-apiserver over `seconds` from `start()` (its /debug/pprof/profile,
    read with the admin kubeconfig), summarised by `go tool pprof`: where the API server's share
    of the machine goes."""

    def __init__(self, kubectl: Kubectl, path: Path, seconds: int) -> None:
        self.kubectl, self.path, self.seconds = kubectl, path, seconds
        self._taking: asyncio.Task[str] | None = None

    def start(self) -> None:
        self._taking = asyncio.create_task(asyncio.to_thread(self._take), name="apiserver profile")

    def _take(self) -> str:
        url = f"/debug/pprof/profile?seconds={self.seconds}"
        command = [self.kubectl.binary, "--kubeconfig", str(self.kubectl.kubeconfig), "get", "--raw", url]
        done = subprocess.run(command, capture_output=True, check=False, timeout=self.seconds + 60)
        if done.returncode != 0:
            return f"(no profile: `kubectl get --raw {url}` said {done.stderr.decode(errors='replace').strip()})"
        self.path.write_bytes(done.stdout)
        return ""

    async def summary(self, top: int = 25) -> str:
        """The profile's hottest functions, own time then cumulative (the API server's own packages)."""
        if self._taking is None:
            return "(not started)"
        if failed := await self._taking:
            return failed
        return await asyncio.to_thread(self._read, top)

    def _read(self, top: int) -> str:
        go = shutil.which("go")
        if go is None:
            return f"(profile in {self.path}; no `go` on PATH to read it)"
        out = [f"Profile: {self.path.name}, the first {self.seconds} s of the window."]
        for title, options in (("own time", []), ("cumulative, k8s.io only", ["-cum", "-show=k8s\\.io"])):
            command = [go, "tool", "pprof", "-top", f"-nodecount={top}", *options, str(self.path)]
            text = subprocess.run(command, capture_output=True, text=True, check=False).stdout
            out.append(f"### by {title}\n\n```\n{text.strip()}\n```")
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


# -- recording a run ------------------------------------------------------------------------------


def log(message: str) -> None:
    """A progress line on stderr (the report itself goes to stdout and the results file)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def work_directory(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh temporary directory for a run's logs and state: removed afterwards unless `keep`."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        if keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def limits(text: str) -> tuple[int | None, ...]:
    """Comma-separated limits as given on a command line, 'none' for unlimited: '20,10,none'."""
    return tuple(None if v.strip().lower() == "none" else int(v) for v in text.split(","))


def record(output: Path, markdown: str, figures: Any) -> None:
    """Write a run's report (Markdown, for people) and its figures (JSON beside it), and print the report."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown)
    output.with_suffix(".json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    log(f"wrote {output}")
    print(markdown)


def record_run(output: Path, markdown: str, settings: Any, context: dict[str, Any], figures: Any) -> None:
    """`record()` a run with its settings (a dataclass, every field as text) and its context."""
    settings_ = {k: str(v) for k, v in dataclasses.asdict(settings).items()}
    record(output, markdown, {"settings": settings_, "context": context, "figures": figures})
