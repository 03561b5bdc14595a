"""Worker status or a Lease per worker? The two heartbeat shapes side by side (issue 12).

    .venv/bin/python -m benchmarks.heartbeat_shapes --workers 1000 --interval 10 --window 90

Kubernetes moved node heartbeats from Node status to one small `coordination.k8s.io` Lease per
node (KEP-589) because each status write carried the whole Node. This harness measures what that
choice costs here, with no operator running, one shape after the other on the same control plane:

* **status**: each worker merge-PATCHes `status.lastHeartbeatTime` of its Worker (what
  `workpools.client.Heartbeat` does today, with the workers' RBAC and admission policy);
* **status, admin credentials**: the same, as a cluster admin: what the worker's credentials
  and the worker-restriction policy add (an authorizer check, then the policy's CEL);
* **lease**: each worker merge-PATCHes `spec.renewTime` of its own Lease `worker-<name>` (as a
  cluster admin: no policy restricts a Lease to its worker today).

N registered workers beat every `--interval` seconds, spread evenly, for `--window` seconds per
shape. Measured from the outside in each window: API writes (the API server's counter), bytes
etcd appended to its WAL (`etcd_disk_wal_write_bytes_total`), CPU seconds of kube-apiserver and
etcd (`/proc`), what a watcher of each kind receives (events, and bytes as re-encoded JSON: the
watch traffic an operator or Argo CD's cluster cache takes in), and how many Worker objects
changed version (what Argo CD sees as churn on the Workers it tracks). It measures; it asserts
nothing. Results go to `benchmarks/results/heartbeat-shapes-<N>.md` (and `.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    RESULTS,
    Cluster,
    Sampler,
    api_writes,
    git_commit,
    log,
    machine,
    record,
    source_digest,
    utc_now,
)
from tests.support.objects import pool
from tests.support.worker_rbac import worker_kubeconfig
from workpools.client import Heartbeat, errors
from workpools.client.heartbeats import FIELD_MANAGER
from workpools.client.resources import WORKERS
from workpools.client.transport import LEASES, ResourceType, Transport

POOL = "shapes"


@dataclass(frozen=True)
class Settings:
    workers: int
    interval: int
    window: float
    output: Path
    keep: bool
    argv: tuple[str, ...]


def stamp() -> str:
    return utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z")


def etcd_counters(port: int) -> dict[str, float]:
    """etcd's own counters of what it wrote (its /metrics on the client port)."""
    wanted = ("etcd_disk_wal_write_bytes_total", "etcd_mvcc_put_total", "etcd_debugging_mvcc_total_put_size_in_bytes")
    found: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in wanted:
                found[name] = float(value)
    return found


@dataclass
class Watched:
    """What one watcher of a kind received: events and their bytes (as JSON), and objects changed."""

    events: int = 0
    bytes: int = 0
    objects: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.events, self.bytes, self.objects = 0, 0, set()


async def watch(transport: Transport, rt: ResourceType, namespace: str, into: Watched) -> None:
    async for kind, body in transport.watch(rt, namespace):
        if kind != "MODIFIED":
            continue
        into.events += 1
        into.bytes += len(json.dumps(body, separators=(",", ":")))
        into.objects.add(body["metadata"]["name"])


async def beat_all(
    names: Sequence[str], beat: Callable[[str], Awaitable[None]], *, interval: int, seconds: float
) -> dict[str, Any]:
    """Every name beats every `interval` s, spread evenly, for `seconds`; failures are counted."""
    start = time.monotonic() + 0.5
    end = start + seconds
    done, failed = 0, Counter[str]()

    async def one(offset: float, name: str) -> None:
        nonlocal done
        due = start + offset
        while due < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                await beat(name)
                done += 1
            except errors.WorkpoolsError as error:
                failed[type(error).__name__] += 1
            due += interval

    await asyncio.gather(*(one(i * interval / len(names), name) for i, name in enumerate(names)))
    return {"beats": done, "failed": dict(failed)}


async def measure(cluster: Cluster, workdir: Path, settings: Settings) -> dict[str, Any]:
    kubectl = cluster.kubectl
    cluster.install()
    assert cluster.plane is not None, "needs the local control plane (etcd's metrics): unset KUBECONFIG"
    etcd_port = cluster.plane.ports["etcd-client"]
    namespace = f"bench-shapes-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    kubectl.apply(pool(POOL), namespace=namespace)
    workers = await Transport.connect(worker_kubeconfig(kubectl, namespace, workdir / "worker.kubeconfig"))
    admin = await Transport.connect(kubectl.kubeconfig)
    names = [f"w-{i:05d}" for i in range(settings.workers)]
    log(f"registering {len(names)} workers and creating their Leases")
    gate = asyncio.Semaphore(16)

    async def register(name: str) -> None:
        async with gate:
            await Heartbeat(workers, namespace=namespace, pool=POOL, name=name, interval=settings.interval).beat()
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": f"worker-{name}", "namespace": namespace},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 3 * settings.interval, "renewTime": stamp()},
            }
            with contextlib.suppress(errors.AlreadyExists):
                await admin.create(LEASES, namespace, lease, field_manager=FIELD_MANAGER)

    await asyncio.gather(*(register(n) for n in names))
    sizes = {
        "Worker": len(json.dumps(await admin.get(WORKERS, namespace, names[0]), separators=(",", ":"))),
        "Lease": len(json.dumps(await admin.get(LEASES, namespace, f"worker-{names[0]}"), separators=(",", ":"))),
    }
    watched = {"Worker": Watched(), "Lease": Watched()}
    watchers = [
        asyncio.create_task(watch(admin, WORKERS, namespace, watched["Worker"])),
        asyncio.create_task(watch(admin, LEASES, namespace, watched["Lease"])),
    ]
    sampler = Sampler({**cluster.control_plane_pids(), "harness": os.getpid()})

    def status_beat(transport: Transport) -> Callable[[str], Awaitable[None]]:
        async def beat(name: str) -> None:
            patch = {"status": {"lastHeartbeatTime": stamp().split(".")[0] + "Z"}}
            await transport.patch(WORKERS, namespace, name, patch, status=True, field_manager=FIELD_MANAGER)

        return beat

    async def lease_beat(name: str) -> None:
        await admin.patch(
            LEASES, namespace, f"worker-{name}", {"spec": {"renewTime": stamp()}}, field_manager=FIELD_MANAGER
        )

    shapes: dict[str, Any] = {}
    try:
        await asyncio.sleep(2)  # the watches have listed
        for shape, beat in (
            ("status", status_beat(workers)),
            ("status, admin credentials", status_beat(admin)),
            ("lease", lease_beat),
        ):
            log(f"shape {shape}: {len(names)} workers every {settings.interval}s for {settings.window:.0f}s")
            for w in watched.values():
                w.reset()
            writes0, etcd0, cpu0 = api_writes(kubectl), etcd_counters(etcd_port), sampler.sample()
            beats = await beat_all(names, beat, interval=settings.interval, seconds=settings.window)
            await asyncio.sleep(1)  # the last events arrive
            writes1, etcd1, cpu1 = api_writes(kubectl), etcd_counters(etcd_port), sampler.sample()
            done = max(1, beats["beats"])
            written = {
                f"{k.verb} {k.target}" + ("" if k.ok else " (refused)"): writes1[k] - writes0[k] for k in writes1
            }
            shapes[shape] = {
                **beats,
                "beats per second": round(beats["beats"] / (cpu1.at - cpu0.at), 1),
                "API writes per beat": round(sum(v for k, v in written.items() if "refused" not in k) / done, 3),
                "writes": {k: v for k, v in sorted(written.items()) if v},
                "etcd WAL bytes per beat": round(
                    (etcd1["etcd_disk_wal_write_bytes_total"] - etcd0["etcd_disk_wal_write_bytes_total"]) / done
                ),
                "etcd put bytes per beat": round(
                    (
                        etcd1.get("etcd_debugging_mvcc_total_put_size_in_bytes", 0)
                        - etcd0.get("etcd_debugging_mvcc_total_put_size_in_bytes", 0)
                    )
                    / done
                ),
                "cpu ms per beat": {
                    name: round(1000 * (cpu1.cpu[name] - cpu0.cpu[name]) / done, 3)
                    for name in ("kube-apiserver", "etcd", "harness")
                    if name in cpu1.cpu
                },
                "watch events (Worker / Lease)": f"{watched['Worker'].events} / {watched['Lease'].events}",
                "watch bytes per beat (Worker + Lease)": round(
                    (watched["Worker"].bytes + watched["Lease"].bytes) / done
                ),
                "Worker objects that changed (Argo CD churn)": len(watched["Worker"].objects),
            }
    finally:
        for task in watchers:
            task.cancel()
        await workers.close()
        await admin.close()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return {
        "command": "python -m benchmarks.heartbeat_shapes " + " ".join(settings.argv),
        "date": utc_now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "source digest": source_digest(),
        "machine": {**machine(), "kubernetes (API server)": cluster.server_version()},
        "object sizes": sizes,
        "shapes": shapes,
    }


def report(figures: dict[str, Any], settings: Settings) -> str:
    rows = sorted(
        {k for s in figures["shapes"].values() for k in s if k != "writes"}, key=list(figures["shapes"]["status"]).index
    )
    out = [
        f"# Heartbeat shapes: {settings.workers} workers every {settings.interval} s, Worker status or a Lease",
        "",
        f"Measured by `benchmarks/heartbeat_shapes.py` on {figures['date']}:",
        "",
        "```",
        figures["command"],
        "```",
        "",
        f"* commit `{figures['commit']}`, source digest `{figures['source digest']}`",
        *(f"* {k}: {v}" for k, v in figures["machine"].items()),
        "* one object as stored (JSON bytes): " + ", ".join(f"{k} {v}" for k, v in figures["object sizes"].items()),
        "",
        "| figure | " + " | ".join(figures["shapes"]) + " |",
        "|---|" + "---|" * len(figures["shapes"]),
    ]
    for row in rows:
        out.append(f"| {row} | " + " | ".join(str(s.get(row, "–")) for s in figures["shapes"].values()) + " |")
    out += ["", "## Writes per shape (API server counter)", ""]
    for shape, s in figures["shapes"].items():
        out.append(f"* {shape}: " + ", ".join(f"{k} {v}" for k, v in s["writes"].items()))
    return "\n".join(out) + "\n"


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeat_shapes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000, help="simulated workers (default 1000)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between a worker's beats (default 10)")
    parser.add_argument("--window", type=float, default=90, help="seconds of beating per shape (default 90)")
    parser.add_argument("--output", type=Path, default=None, help="default: results/heartbeat-shapes-<N>.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    output = args.output or RESULTS / f"heartbeat-shapes-{args.workers}.md"
    return Settings(args.workers, args.interval, args.window, output, args.keep, tuple(argv))


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-shapes-"))
    cluster = Cluster(workdir)
    cluster.start()
    try:
        figures = asyncio.run(measure(cluster, workdir, settings))
    finally:
        cluster.stop()
        if not settings.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    record(settings.output, report(figures, settings), figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
