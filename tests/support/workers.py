"""A simulated worker for tests: it heartbeats and moves the runs bound to it, with the worker's
own credentials, exactly through the writes a real worker makes (no shortcut around the API)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from workpools.api.base import timestamp
from workpools.client.heartbeats import Heartbeat
from workpools.client.resources import FLOWRUNS, WORKERS
from workpools.client.transport import Transport

CLOSE_GRACE = 0.05
"""Seconds an event loop keeps running after its client closed, before the loop itself is closed:
aiohttp closes connections on the loop's next turns, and a connection left closing on a closed
loop is reported as leaked (a ResourceWarning, an error here) in whatever test collects it."""


class SimulatedWorker:
    def __init__(self, kubeconfig: Path, namespace: str, pool: str, name: str, **options: Any):
        self.namespace, self.name = namespace, name
        self._loop = asyncio.new_event_loop()
        self._transport = self._run(Transport.connect(kubeconfig))
        self.heartbeat = Heartbeat(self._transport, namespace=namespace, pool=pool, name=name, **options)

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def beat(self, clock_skew: datetime.timedelta = datetime.timedelta(0)) -> Any:
        """One heartbeat, stamped by a clock `clock_skew` off the real one."""
        return self._run(self.heartbeat.beat(datetime.datetime.now(datetime.UTC) + clock_skew))

    def move(self, run: str, state: str, **fields: Any) -> dict[str, Any]:
        """Write the run's status as its worker (e.g. Running, Completed); raises the client's errors."""
        now = timestamp(datetime.datetime.now(datetime.UTC))
        status: dict[str, Any] = {"state": state, "stateName": state, **fields}
        if state == "Running":
            status.setdefault("startTime", now)
        if state in ("Completed", "Failed", "Crashed", "Cancelled"):
            status.setdefault("endTime", now)
            status["slot"] = None
        body: dict[str, Any] = self._run(
            self._transport.patch(
                FLOWRUNS, self.namespace, run, {"status": status}, status=True, field_manager="workpools-worker"
            )
        )
        return body

    def patch(self, kind: str, name: str, body: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        """A plain merge PATCH of any Worker (`wkr`) or FlowRun (`fr`), or of its status, with this
        worker's credentials: whatever a buggy or hostile worker could send."""
        resource = {"wkr": WORKERS, "fr": FLOWRUNS}[kind]
        written: dict[str, Any] = self._run(
            self._transport.patch(resource, self.namespace, name, body, status=status, field_manager="workpools-worker")
        )
        return written

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Worker with this worker's credentials, as written (no identity filled in)."""
        created: dict[str, Any] = self._run(self._transport.create(WORKERS, self.namespace, body))
        return created

    def close(self) -> None:
        self._run(self._transport.close())
        self._run(asyncio.sleep(CLOSE_GRACE))  # let closing connections finish
        self._loop.close()
