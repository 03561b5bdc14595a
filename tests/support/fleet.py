"""Many simulated workers in one asyncio program, each behaving like a real worker process:
its own connection with the worker's credentials, a `Heartbeat` every interval, a watch on the
runs bound to it (`status.worker=<name>`), and every run it gets moved Pending → Running →
Completed after a random short delay per step (zero delay: instant-completing workers).

Used by the exactness stress test and by the admission benchmark. Nothing here shortcuts the
API: every write is the worker's own status PATCH, refused by RBAC or CEL if it were wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.watches import ResourceWatch
from workpools.client import errors
from workpools.client.heartbeats import Heartbeat
from workpools.client.resources import FLOWRUNS
from workpools.client.transport import Transport

FIELD_MANAGER = "workpools-worker"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    pool: str
    limit: int | None = None
    queues: tuple[str, ...] = ()
    """Queues served; empty serves every queue of the pool."""

    def serves(self, pool: str, queue: str) -> bool:
        return pool == self.pool and (not self.queues or queue in self.queues)


@dataclass
class WorkerLog:
    """What a worker did and what went wrong, for the test to assert on."""

    received: dict[str, float] = field(default_factory=dict)
    """Run name → time.monotonic() when the worker first saw it bound to itself (Pending)."""
    completed: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    beats: int = 0
    """Heartbeats sent after the first (each one status PATCH of the Worker)."""
    writes: Counter[str] = field(default_factory=Counter)
    """Run status PATCHes sent: `flowruns/status`, and `flowruns/status failed` for refused ones."""


class AsyncWorker:
    """One worker: `await start()` (registered, first heartbeat sent, watch open), `await stop()`."""

    def __init__(
        self,
        spec: WorkerSpec,
        kubeconfig: Path,
        namespace: str,
        *,
        interval: int = 5,
        delays: tuple[float, float] = (0.0, 0.3),
        rng: random.Random | None = None,
        on_error: Callable[[str], None] | None = None,
    ):
        self.spec, self.kubeconfig, self.namespace = spec, kubeconfig, namespace
        self.interval = interval
        self.delays = delays
        self.rng = rng or random.Random(spec.name)
        self.log = WorkerLog()
        self._on_error = on_error
        self._transport: Transport | None = None
        self._heartbeat: Heartbeat | None = None
        self._watch: ResourceWatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._transport = await Transport.connect(self.kubeconfig)
        self._heartbeat = Heartbeat(
            self._transport,
            namespace=self.namespace,
            pool=self.spec.pool,
            name=self.spec.name,
            interval=self.interval,
            queues=self.spec.queues,
            limit=self.spec.limit,
        )
        await self._heartbeat.beat()
        self._watch = await ResourceWatch(
            self.kubeconfig, FLOWRUNS, self.namespace, field_selector=f"status.worker={self.spec.name}"
        ).__aenter__()
        for item in await self._watch.list():
            self._consider(item)
        self._spawn(self._beat_forever(), "heartbeat")
        self._spawn(self._watch_forever(), "watch")

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._watch is not None:
            await self._watch.__aexit__(None, None, None)
        if self._transport is not None:
            await self._transport.close()

    # -- internals -----------------------------------------------------------------------------

    def _spawn(self, coroutine: Any, what: str) -> None:
        task = asyncio.create_task(coroutine, name=f"{self.spec.name} {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _error(self, message: str) -> None:
        self.log.errors.append(message)
        if self._on_error is not None:
            self._on_error(message)

    async def _beat_forever(self) -> None:
        assert self._heartbeat is not None
        next_beat = time.monotonic() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_beat - time.monotonic()))
            next_beat += self.interval
            try:
                await self._heartbeat.beat()
            except errors.WorkpoolsError as error:
                self._error(f"{self.spec.name}: heartbeat failed: {error}")
            else:
                self.log.beats += 1

    async def _watch_forever(self) -> None:
        assert self._watch is not None
        try:
            async for event in self._watch.events():
                if event.type != "DELETED":
                    self._consider(event.object)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a dead watch means lost runs: the test must hear of it
            self._error(f"{self.spec.name}: watch failed: {error!r}")

    def _consider(self, run: dict[str, Any]) -> None:
        status, name = run.get("status") or {}, run["metadata"]["name"]
        if status.get("state") != "Pending" or name in self.log.received:
            return
        if status.get("worker") != self.spec.name:
            self._error(f"{self.spec.name}: the watch delivered {name}, bound to {status.get('worker')!r}")
            return
        self.log.received[name] = time.monotonic()
        self._spawn(self._execute(name), f"run {name}")

    async def _execute(self, name: str) -> None:
        low, high = self.delays
        await asyncio.sleep(self.rng.uniform(low, high))
        if not await self._move(name, {"state": "Running", "stateName": "Running", "startTime": _now()}):
            return
        await asyncio.sleep(self.rng.uniform(low, high))
        finished = {"state": "Completed", "stateName": "Completed", "endTime": _now(), "slot": None}
        if await self._move(name, finished):
            self.log.completed[name] = time.monotonic()

    async def _move(self, name: str, status: dict[str, Any]) -> bool:
        assert self._transport is not None
        try:
            await self._transport.patch(
                FLOWRUNS, self.namespace, name, {"status": status}, status=True, field_manager=FIELD_MANAGER
            )
        except errors.WorkpoolsError as error:
            self.log.writes["flowruns/status failed"] += 1
            self._error(f"{self.spec.name}: moving {name} to {status['state']} failed: {error}")
            return False
        self.log.writes["flowruns/status"] += 1
        return True


@contextlib.asynccontextmanager
async def running(workers: list[AsyncWorker]) -> AsyncIterator[list[AsyncWorker]]:
    """Start every worker (concurrently), stop them all on the way out."""
    try:
        await asyncio.gather(*(w.start() for w in workers))
        yield workers
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
