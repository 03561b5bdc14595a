"""The reference `process` worker: heartbeats, and runs the FlowRuns the operator binds to it.

It never polls for work. It watches the runs whose `status.worker` is its name (the operator
binds runs like the scheduler binds pods), and for each Pending one: moves it to Running, runs
its command as a child process, and reports Completed or Failed. It writes only the transitions
DESIGN §4 gives to the bound worker, each on the exact version it read.

Its half of the reclaim protocol (README, "Admission"): once no heartbeat of its own has been
accepted for `3 × interval − margin` (its monotonic clock; margin = one interval) it *fences*
itself: it stops every run it executes and starts none until a heartbeat lands again, because by
`3 × interval` the operator may give those slots to someone else. A run it finds ended by the
operator, or bound elsewhere, is killed at once. Each run's processes sit under a small supervisor
(`supervise.py`) that kills them if this process dies, so no run outlives its worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.states import TERMINAL, StateType
from workpools.client import errors
from workpools.client.heartbeats import FIELD_MANAGER, Heartbeat
from workpools.client.resources import FLOWRUNS, WORKPOOLS
from workpools.client.transport import Transport
from workpools.clock import utc_now
from workpools.core import retries, templates

logger = logging.getLogger(__name__)

S = StateType
STDERR_LINES = 20
MESSAGE_CHARS = 1024
"""Bounded: the last lines of stderr go into status.message, never the whole stream."""

SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
RETRY = (0.5, 10.0)
"""Backoff (first, most seconds) for what must eventually get through: the watch, a run's report."""


def command_of(run: FlowRun, pool_template: dict[str, Any] | None) -> list[str]:
    """The argv to execute: spec.command, else the pool template's `command` filled with parameters."""
    line: Any = run.spec.command
    if not line and pool_template is not None:
        job = templates.render(
            pool_template.get("job_configuration") or {}, pool_template.get("variables") or {}, run.spec.parameters
        )
        line = job.get("command") if isinstance(job, dict) else None
        if not line:
            raise templates.TemplateError("the pool's baseJobTemplate.job_configuration has no command")
    if not line:
        raise templates.TemplateError("the run has no spec.command and its pool has no baseJobTemplate")
    argv = line if isinstance(line, list) else shlex.split(str(line))
    if not argv:
        raise templates.TemplateError("the command is empty")
    return [str(part) for part in argv]


def failure_message(code: int, stderr: collections.deque[str]) -> str:
    tail = "".join(stderr).strip()
    message = f"exit code {code}" + (f"; last lines of stderr:\n{tail}" if tail else "")
    return message if len(message) <= MESSAGE_CHARS else "…" + message[-(MESSAGE_CHARS - 1) :]


@dataclass
class Execution:
    """One run this process started: its child process and why it may end early."""

    process: asyncio.subprocess.Process
    attempt: int = 1
    """The run's status.attempt it executes: a later attempt is never taken for this one."""
    task: asyncio.Task[None] | None = None
    cancelled: bool = False
    abandoned: str = ""  # set when the worker stops before the run ends: the reason it is Crashed
    stderr: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=STDERR_LINES))


class ProcessWorker:
    def __init__(
        self,
        transport: Transport,
        *,
        namespace: str,
        pool: str,
        name: str,
        queues: list[str],
        limit: int | None,
        interval: int,
        grace: float = 30.0,
    ):
        self.transport, self.namespace, self.pool, self.name = transport, namespace, pool, name
        self.interval, self.grace = interval, grace
        self.heartbeat = Heartbeat(
            transport, namespace=namespace, pool=pool, name=name, interval=interval, queues=queues, limit=limit
        )
        self.executions: dict[str, Execution] = {}
        self.draining = False
        self.margin = interval / 2
        self.fence_after = 3 * interval - self.margin
        """Seconds without an accepted heartbeat after which runs are stopped: 3 × interval − margin.
        They are gone half a margin later (SIGTERM, then SIGKILL), well before the operator may
        reclaim their slots (not before 4 × interval after it saw the last heartbeat)."""
        self.accepted_at = time.monotonic()
        """Monotonic time at which the last accepted heartbeat was sent (not answered: conservative)."""
        self.deferred: set[str] = set()
        """Pending runs seen while fenced: looked at again once a heartbeat lands."""
        self._deciding = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.claimed: set[tuple[str, int]] = set()
        """Attempts (run, attempt) this process has written Running (or tried to): launched here, or
        by no process at all."""
        self.after_exit: set[str] = set()
        """Runs whose next attempt is bound here while an earlier attempt's process is still ending:
        looked at again once it has."""

    @property
    def fenced(self) -> bool:
        return time.monotonic() - self.accepted_at > self.fence_after

    async def serve(self, stop: asyncio.Event) -> None:
        """Heartbeat and run bound runs until `stop` is set; then drain gracefully and return."""
        await self._beat()  # raises PoolNotFound before anything else happens
        logger.info("worker %s serving pool %s in namespace %s", self.name, self.pool, self.namespace)
        background = [
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._fence(), name="fence"),
            asyncio.create_task(self._watch_bound_runs(), name="bound runs"),
        ]
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *background], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await self.drain()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def drain(self) -> None:
        """Take no new runs, let running ones finish within the grace period, then stop the rest."""
        self.draining = True
        with contextlib.suppress(errors.WorkpoolsError):
            await self.heartbeat.drain()  # the operator binds nothing more and hands back Pending runs
        running = [e.task for e in self.executions.values() if e.task is not None]
        if running:
            logger.info("draining: waiting up to %.0fs for %d running runs", self.grace, len(running))
            _, late = await asyncio.wait(running, timeout=self.grace)
            for name, execution in list(self.executions.items()):
                if execution.task in late:
                    execution.abandoned = f"worker {self.name} stopped before it finished (grace {self.grace:.0f}s)"
                    await self._terminate(name, execution)
            await asyncio.gather(*running, return_exceptions=True)

    # -- loops ---------------------------------------------------------------------------------

    async def _beat(self) -> None:
        sent = time.monotonic()
        try:
            await self.heartbeat.beat()
        except errors.PoolNotFound:
            # The API server answered: our pool is gone. Nothing of a missing pool is reclaimed,
            # and when it is back its workers get 3 intervals to register again: keep running.
            self.accepted_at = sent
            raise
        was_fenced, self.accepted_at = self.fenced, sent
        if was_fenced and self.deferred:  # in a task of its own: nothing may hold up the heartbeat
            logger.info("a heartbeat was accepted again: taking the runs bound meanwhile")
            deferred, self.deferred = sorted(self.deferred), set()
            self._background.add(task := asyncio.create_task(self._take(deferred), name="deferred runs"))
            task.add_done_callback(self._background.discard)

    async def _take(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(errors.WorkpoolsError):
                await self._on_bound_run(
                    FlowRun.model_validate(await self.transport.get(FLOWRUNS, self.namespace, name))
                )

    async def _heartbeats(self) -> None:
        """A beat every interval from the last one sent (a slow answer does not push the next one
        back); a failed beat is retried at once with a short backoff, not an interval later."""
        pause = RETRY[0]
        while True:
            await asyncio.sleep(max(0.0, self.accepted_at + self.interval - time.monotonic()))
            try:
                await self._beat()
                pause = RETRY[0]
            except errors.WorkpoolsError as error:  # a missed beat is survivable; the next one may land
                logger.warning("heartbeat failed: %s; again in %.1fs", error, pause)
                await asyncio.sleep(pause)
                pause = min(self.interval, pause * 2)

    async def _fence(self) -> None:
        """Stop every run once the operator may consider this worker gone (whatever requests do)."""
        while True:
            await asyncio.sleep(min(0.25, self.interval / 4))
            running = [e for e in self.executions.values() if e.process.returncode is None and not e.abandoned]
            if self.fenced and running:
                silent = time.monotonic() - self.accepted_at
                logger.error("no heartbeat accepted for %.1fs: stopping %d runs", silent, len(running))
                for execution in running:
                    execution.abandoned = (
                        f"worker {self.name} stopped it: no heartbeat accepted for {silent:.0f}s "
                        f"(its slot may be given to another worker {4 * self.interval}s after its last heartbeat)"
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(execution.process.pid, signal.SIGTERM)
                await asyncio.sleep(self.margin / 2)  # then no more asking
                for execution in running:
                    self._kill(execution)

    async def _watch_bound_runs(self) -> None:
        pause = RETRY[0]
        while True:  # the transport resumes broken connections itself; this outlives refusals too
            try:
                async for kind, body in self.transport.watch(
                    FLOWRUNS, self.namespace, field_selector=f"status.worker={self.name}", server_timeout=60
                ):
                    pause = RETRY[0]
                    run = FlowRun.model_validate(body)
                    if kind == "DELETED":  # deleted, or bound to another worker: not ours to run any more
                        if (execution := self.executions.get(run.metadata.name)) is not None:
                            execution.abandoned = "the FlowRun was deleted or bound to another worker"
                            self._kill(execution)
                        continue
                    await self._on_bound_run(run)
            except errors.WorkpoolsError as error:
                logger.warning("watching bound runs failed (%s); again in %.1fs", error, pause)
                await asyncio.sleep(pause)
                pause = min(RETRY[1], pause * 2)

    async def _on_bound_run(self, run: FlowRun) -> None:
        # One run event at a time (the watch, and deferred runs after a fence), or a run could be
        # launched twice from two views of it.
        async with self._deciding:
            await self._decide(run)

    async def _decide(self, run: FlowRun) -> None:
        name, state, attempt = run.metadata.name, run.status.state, retries.attempt(run)
        if run.status.worker != self.name:
            return  # read again (after a fence, or for a next attempt) and bound elsewhere meanwhile
        if self._ending_earlier_attempt(name, attempt):
            return
        mine = name in self.executions
        if state is S.PENDING and not mine and not self.draining:
            if self.fenced:
                self.deferred.add(name)
            else:
                await self._start(run)
        elif state in TERMINAL and mine and self.executions[name].process.returncode is None:
            # Ended by the operator (e.g. Crashed) while it still runs: its slot is gone.
            execution = self.executions[name]
            execution.abandoned = execution.abandoned or f"the operator marked it {state.value}"
            self._kill(execution)
        elif state is S.RUNNING and not mine and (name, attempt) in self.claimed:
            # Our own Running write landed, though its answer was lost (e.g. a cut connection):
            # this process never launched it, and no other process may have. Launch it now.
            if (argv := await self._command(run)) is not None:
                await self._launch(name, argv, attempt)
        elif state is S.RUNNING and not mine:
            # Started by an earlier process of this worker that died: never run it twice.
            await self._write(
                run,
                S.CRASHED,
                message=f"worker {self.name} restarted while it was running",
                endTime=timestamp(utc_now()),
            )
        elif state is S.CANCELLING and mine:
            execution = self.executions[name]
            if not execution.cancelled:
                execution.cancelled = True
                await self._terminate(name, execution)
        elif state is S.CANCELLING:
            await self._write(run, S.CANCELLED, message="cancelled before it started", endTime=timestamp(utc_now()))

    def _ending_earlier_attempt(self, name: str, attempt: int) -> bool:
        """Whether this process still has an execution of an earlier attempt of the run.

        A retry: that attempt is over. It is never taken for the new one: its process is made
        sure to be gone, and the run is looked at again once it has ended (`after_exit`).
        """
        earlier = self.executions.get(name)
        if earlier is None or earlier.attempt == attempt:
            return False
        if earlier.process.returncode is None:
            earlier.abandoned = earlier.abandoned or f"attempt {earlier.attempt} is over (now {attempt})"
            self._kill(earlier)
        self.after_exit.add(name)
        return True

    # -- one run -------------------------------------------------------------------------------

    async def _start(self, run: FlowRun) -> None:
        argv = await self._command(run)
        if argv is None:
            return
        claim = (run.metadata.name, retries.attempt(run))
        self.claimed.add(claim)  # from here on this attempt Running is this process's own
        started = await self._write(run, S.RUNNING, startTime=timestamp(utc_now()), message=None)
        if started is None:
            self.claimed.discard(claim)
            return  # it moved on meanwhile (cancelled, reclaimed): not ours to run
        await self._launch(run.metadata.name, argv, claim[1])

    async def _command(self, run: FlowRun) -> list[str] | None:
        """The run's argv, or None when it cannot be built (the run is then Failed, with why)."""
        try:
            argv = command_of(run, await self._pool_template())
        except templates.TemplateError as error:
            await self._write(run, S.FAILED, message=f"cannot build the command: {error}", endTime=timestamp(utc_now()))
            return None
        if shutil.which(argv[0]) is None:
            await self._write(
                run, S.FAILED, message=f"cannot start {argv[0]!r}: no such executable", endTime=timestamp(utc_now())
            )
            return None
        return argv

    async def _launch(self, name: str, argv: list[str], attempt: int) -> None:
        env = {
            **os.environ,
            "WORKPOOLS_FLOW_RUN": name,
            "WORKPOOLS_FLOW_RUN_ATTEMPT": str(attempt),
            "WORKPOOLS_WORK_POOL": self.pool,
            "WORKPOOLS_NAMESPACE": self.namespace,
            "WORKPOOLS_WORKER": self.name,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                SUPERVISOR,
                str(os.getpid()),
                "--",
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group: cancellation reaches its children too
            )
        except OSError as error:
            await self._finish(name, attempt, S.FAILED, f"cannot start {argv[0]!r}: {error.strerror or error}")
            return
        execution = Execution(process, attempt)
        self.executions[name] = execution
        execution.task = asyncio.create_task(self._supervise(name, execution), name=f"run {name}")
        logger.info("run %s started: %s", name, shlex.join(argv))

    async def _supervise(self, name: str, execution: Execution) -> None:
        process = execution.process
        assert process.stderr is not None
        reading = asyncio.create_task(self._read_stderr(process.stderr, execution.stderr))
        code = await process.wait()
        # Nothing of the run outlives it: a child left behind (and holding stderr open) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await reading
        logger.info("run %s ended with exit code %s", name, code)
        try:  # still ours until reported: a watch event meanwhile must not take it for a lost run
            attempt = execution.attempt
            if execution.abandoned:
                await self._finish(name, attempt, S.CRASHED, execution.abandoned)
            elif execution.cancelled:
                await self._finish(name, attempt, S.CANCELLED, "cancelled: the process was stopped")
            elif code == 0:
                await self._finish(name, attempt, S.COMPLETED, None)
            else:
                await self._finish(name, attempt, S.FAILED, failure_message(code, execution.stderr))
        finally:
            self.executions.pop(name, None)
            self.claimed.discard((name, execution.attempt))
            if name in self.after_exit:  # its next attempt was bound here meanwhile
                self.after_exit.discard(name)
                self._background.add(task := asyncio.create_task(self._take([name]), name=f"next attempt {name}"))
                task.add_done_callback(self._background.discard)

    @staticmethod
    async def _read_stderr(stream: asyncio.StreamReader, lines: collections.deque[str]) -> None:
        async for line in stream:
            lines.append(line.decode(errors="replace"))

    async def _terminate(self, name: str, execution: Execution) -> None:
        """SIGTERM to the run's process group, SIGKILL if it is still there after the grace period."""
        process = execution.process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=min(self.grace, 10.0))
        except TimeoutError:
            self._kill(execution)

    @staticmethod
    def _kill(execution: Execution) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(execution.process.pid, signal.SIGKILL)

    async def _finish(self, name: str, attempt: int, state: StateType, message: str | None) -> None:
        """Report the end of a run on its latest version, until it is recorded or no longer ours.

        A report that cannot get through (the API server unreachable, e.g. while fenced) is
        retried with backoff: a run's end must not be lost, or its slot stays held.
        """
        pause = RETRY[0]
        while True:
            try:
                run = FlowRun.model_validate(await self.transport.get(FLOWRUNS, self.namespace, name))
                if run.status.state is S.CANCELLING and state is not S.CRASHED:
                    state, message = S.CANCELLED, message or "cancelled"
                if (
                    run.status.state not in (S.RUNNING, S.CANCELLING)
                    or run.status.worker != self.name
                    or retries.attempt(run) != attempt
                ):
                    return  # e.g. the operator already marked it Crashed (and retried it): its word stands
                if await self._write(run, state, message=message, endTime=timestamp(utc_now()), slot=None):
                    return
                pause = RETRY[0]  # it changed meanwhile: decide again on the new version at once
            except errors.NotFound:
                return
            except errors.WorkpoolsError as error:
                logger.warning("reporting run %s as %s failed (%s); again in %.1fs", name, state.value, error, pause)
                await asyncio.sleep(pause)
                pause = min(RETRY[1], pause * 2)

    async def _write(self, run: FlowRun, state: StateType, **fields: Any) -> dict[str, Any] | None:
        """Move `run` to `state` on the version we read; None when it changed meanwhile."""
        status = {"state": state.value, "stateName": state.value, **fields}
        if state in (S.FAILED, S.CRASHED, S.CANCELLED, S.COMPLETED):
            status["slot"] = None
        try:
            return await self.transport.patch(
                FLOWRUNS,
                self.namespace,
                run.metadata.name,
                {"status": status},
                status=True,
                field_manager=FIELD_MANAGER,
                resource_version=run.metadata.resource_version,
            )
        except (errors.Conflict, errors.NotFound):
            return None

    async def _pool_template(self) -> dict[str, Any] | None:
        pool = await self.transport.get(WORKPOOLS, self.namespace, self.pool)
        template: dict[str, Any] | None = pool.get("spec", {}).get("baseJobTemplate")
        return template
