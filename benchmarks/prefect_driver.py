"""The Prefect side of `benchmarks/prefect_side_by_side.py`: runs inside Prefect's own virtualenv.

    <prefect venv>/bin/python -m benchmarks.prefect_driver CONFIG.json EVENTS.json

Against a running Prefect server (PREFECT_API_URL), it creates the pools, queues, a flow and a
deployment per pool, starts the simulated workers, creates the runs, waits until every run is
COMPLETED (or the deadline), and writes what happened, timestamped with `time.monotonic()`, to
EVENTS.json for the parent process to turn into figures. It imports nothing of this project.

The simulated workers are Prefect's own worker loop (`prefect/workers/base.py` of the installed
release) with the infrastructure left out, through Prefect's own `PrefectClient` (its retries on
429/502/503, its request bodies):

- drain creates the runs while the workers poll; refill creates them all first, then starts
  the workers;
- `setup` syncs once (read the pool, REST heartbeat) before the first poll;
- every `poll` seconds, jittered like the worker (`critical_service_loop(jitter_range=0.3)`):
  `get_scheduled_flow_runs_for_work_pool(scheduled_before=now + prefetch)`, then for each run in
  the server's order: skip it if already being submitted, take a slot of the worker's `limit` or
  stop at the first run that finds none, then in its own task read the run's deployment and
  propose PENDING (`propose_state`: WAIT sleeps and retries, ABORT or a non-PENDING answer drops
  the run and frees the slot);
- an accepted run then "executes": RUNNING, then COMPLETED `hold` seconds after PENDING, then
  the worker's slot is freed (the worker frees it when the flow-run process exits);
- every heartbeat interval (30 s, jittered): read the pool and send the REST heartbeat (the
  worker's REST fallback; 3.9's worker sends the same heartbeat over its websocket channel when
  the server offers one).

Left out (a real worker does them after PENDING, all extra writes): the `Submitting` state, the
worker's labels on the run, the `infrastructure_pid` update, starting a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import State, StateType
from prefect.client.schemas.responses import SetStateStatus, StateAbortDetails, StateWaitDetails
from prefect.states import Completed, Pending, Running, Scheduled
from prefect.utilities.math import clamped_poisson_interval

CREATE_ATTEMPTS = 3
"""Creates of one run before it counts as failed (each after the client's own 5 retries)."""
JITTER = 0.3
"""The worker's `critical_service_loop(jitter_range=0.3)` for both of its loops."""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} prefect driver: {message}", file=sys.stderr, flush=True)


@dataclass
class EventLog:
    """Everything the harness needs for its figures, in the order it happened."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Run id → pool, queue, `created` (when its POST returned)."""
    proposals: list[list[Any]] = field(default_factory=list)
    """[sent, answered, run, worker, proposed type, status, the run's state type after]."""
    polls: list[list[Any]] = field(default_factory=list)
    """[sent, answered, worker, runs returned]."""
    heartbeats: int = 0
    errors: list[str] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    failed_creates: int = 0
    expected: int | None = None
    """Runs to wait for, once every create returned."""
    all_completed: asyncio.Event = field(default_factory=asyncio.Event)

    def complete(self, run: str) -> None:
        self.completed.add(run)
        self.check()

    def check(self) -> None:
        if self.expected is not None and len(self.completed) >= self.expected:
            self.all_completed.set()

    def error(self, what: str, error: BaseException) -> None:
        self.errors.append(f"{what}: {type(error).__name__}: {error}"[:300])


async def propose(client: PrefectClient, state: State[Any], run: str, worker: str, events: EventLog) -> State[Any]:
    """`prefect.utilities.engine.propose_state`, recording every answer of the server.

    ACCEPT returns the proposed state, REJECT the server's, ABORT raises; WAIT sleeps the delay
    the server asked for and proposes again.
    """
    while True:
        sent = time.monotonic()
        response = await client.set_flow_run_state(UUID(run), state)
        answered = time.monotonic()
        after = response.state.type.value if response.state is not None else None
        events.proposals.append([sent, answered, run, worker, state.type.value, response.status.value, after])
        if response.status == SetStateStatus.WAIT:
            assert isinstance(response.details, StateWaitDetails)
            await asyncio.sleep(response.details.delay_seconds)
            continue
        if response.status == SetStateStatus.ACCEPT:
            return state
        if response.status == SetStateStatus.ABORT:
            assert isinstance(response.details, StateAbortDetails)
            raise Aborted(str(response.details.reason))
        assert response.state is not None
        return response.state


class Aborted(Exception):
    """The server answered ABORT (`prefect.exceptions.Abort` in the worker)."""


@dataclass
class Worker:
    name: str
    pool: str
    limit: int | None
    poll: float
    prefetch: float
    heartbeat: float
    hold: float
    events: EventLog
    client: PrefectClient = field(init=False)
    submitting: set[str] = field(default_factory=set)
    """`BaseWorker._submitting_flow_run_ids`."""
    holding: set[str] = field(default_factory=set)
    """Runs holding one of this worker's `limit` slots (its `CapacityLimiter`)."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> None:
        async with get_client() as client:
            self.client = client
            await self.sync()  # BaseWorker.setup(): sync before the loops start
            await asyncio.gather(
                self.loop(self.get_and_submit_flow_runs, self.poll), self.loop(self.sync, self.heartbeat)
            )

    async def loop(self, workload: Callable[[], Awaitable[None]], interval: float) -> None:
        """`critical_service_loop`: run, then sleep a clamped Poisson interval around `interval`."""
        while True:
            try:
                await workload()
            except Exception as error:  # the loop goes on after HTTP errors, as the worker's does
                self.events.error(f"{self.name} {workload.__name__}", error)
            await asyncio.sleep(clamped_poisson_interval(interval, clamping_factor=JITTER))

    async def sync(self) -> None:
        """`sync_with_backend` without a worker channel: read the pool, then the REST heartbeat."""
        await self.client.read_work_pool(self.pool)
        await self.client.send_worker_heartbeat(
            work_pool_name=self.pool, worker_name=self.name, heartbeat_interval_seconds=int(self.heartbeat)
        )
        self.events.heartbeats += 1

    async def get_and_submit_flow_runs(self) -> None:
        scheduled_before = datetime.now(UTC) + timedelta(seconds=int(self.prefetch))
        sent = time.monotonic()
        responses = await self.client.get_scheduled_flow_runs_for_work_pool(
            work_pool_name=self.pool, scheduled_before=scheduled_before, work_queue_names=[]
        )
        self.events.polls.append([sent, time.monotonic(), self.name, len(responses)])
        for response in responses:
            run = str(response.flow_run.id)
            if run in self.submitting:
                continue
            if self.limit is not None and len(self.holding) >= self.limit:
                break  # "Flow run limit reached": the rest waits for the next poll
            self.holding.add(run)
            self.submitting.add(run)
            self.spawn(self.submit(run, response.flow_run.deployment_id))

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def submit(self, run: str, deployment: UUID | None) -> None:
        """`BaseWorker._submit_run`: the deployment must still exist, then PENDING."""
        try:
            if deployment is not None:
                await self.client.read_deployment(deployment)
            state = await propose(self.client, Pending(), run, self.name, self.events)
            pending = state.type == StateType.PENDING
        except Aborted:
            pending = False
        except Exception as error:
            self.events.error(f"{self.name} PENDING {run}", error)
            pending = False
        finally:
            self.submitting.discard(run)
        if pending:
            self.spawn(self.execute(run, time.monotonic()))
        else:
            self.holding.discard(run)

    async def execute(self, run: str, pending_at: float) -> None:
        """The flow-run process: RUNNING, the flow (`hold` seconds after PENDING), COMPLETED."""
        try:
            await propose(self.client, Running(), run, self.name, self.events)
            await asyncio.sleep(max(0.0, pending_at + self.hold - time.monotonic()))
            state = await propose(self.client, Completed(), run, self.name, self.events)
            if state.type == StateType.COMPLETED:
                self.events.complete(run)
        except Exception as error:
            self.events.error(f"{self.name} execute {run}", error)
        finally:
            self.holding.discard(run)


async def create_pools(client: PrefectClient, config: dict[str, Any]) -> dict[str, UUID]:
    """The pools and their queues, a flow, and one deployment per pool (→ its id)."""
    flow = await client.create_flow_from_name("side-by-side")
    deployments = {}
    for pool in config["pools"]:
        await client.create_work_pool(
            WorkPoolCreate(name=pool["name"], type="process", concurrency_limit=pool["limit"])
        )
        for queue in pool["queues"]:
            await client.create_work_queue(
                name=queue["name"],
                work_pool_name=pool["name"],
                priority=queue["priority"],
                concurrency_limit=queue["limit"],
            )
        deployments[pool["name"]] = await client.create_deployment(
            flow_id=flow, name=pool["name"], work_pool_name=pool["name"]
        )
    return deployments


async def create_runs(
    client: PrefectClient, config: dict[str, Any], deployments: dict[str, UUID], events: EventLog
) -> None:
    """N runs round-robin over every pool's queues, `creates_in_flight` POSTs at a time."""
    queues = [(pool["name"], queue["name"]) for pool in config["pools"] for queue in pool["queues"]]
    gate = asyncio.Semaphore(config["creates_in_flight"])

    async def create(i: int) -> None:
        pool, queue = queues[i % len(queues)]
        async with gate:
            for attempt in range(CREATE_ATTEMPTS):
                try:
                    made = await client.create_flow_run_from_deployment(
                        deployments[pool], work_queue_name=queue, state=Scheduled(), name=f"run-{i:05d}"
                    )
                except Exception as error:  # SQLite's "database is locked" outlasts the client's own retries
                    events.error(f"create run-{i:05d} (attempt {attempt + 1})", error)
                    continue
                events.runs[str(made.id)] = {"pool": pool, "queue": queue, "created": time.monotonic()}
                return
        events.failed_creates += 1

    await asyncio.gather(*(create(i) for i in range(config["runs"])))


async def drive(config: dict[str, Any]) -> dict[str, Any]:
    events = EventLog()
    async with get_client() as client:
        deployments = await create_pools(client, config)
        workers = [
            Worker(
                f"{pool['name']}-w{i + 1}",
                pool["name"],
                config["worker_limit"],
                config["poll"],
                config["prefetch"],
                config["heartbeat"],
                config["hold"],
                events,
            )
            for pool in config["pools"]
            for i in range(config["workers_per_pool"])
        ]
        if config["queue_first"]:
            # refill: every run queued before the first worker polls, so each grant waits for a slot only
            creating = time.monotonic()
            await create_runs(client, config, deployments, events)
            created = time.monotonic()
        running = [asyncio.create_task(w.run(), name=w.name) for w in workers]
        await asyncio.sleep(1.0)  # every worker through its first sync, as ours are Online first
        started = time.monotonic()
        if not config["queue_first"]:
            creating = started
            await create_runs(client, config, deployments, events)
            created = time.monotonic()
        log(f"created {len(events.runs)} runs in {created - creating:.1f}s; waiting for them to complete")
        events.expected = len(events.runs)
        events.check()
        # The deadline counts from the last create: on SQLite, creating the runs can take longer than it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                events.all_completed.wait(), timeout=max(started, created) + config["deadline"] - time.monotonic()
            )
        finished = time.monotonic()
        if len(events.completed) < len(events.runs):
            log(f"only {len(events.completed)}/{len(events.runs)} runs completed by the deadline")
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return {
        "creating": creating,
        "created": created,
        "started": started,
        "finished": finished,
        "runs": events.runs,
        "proposals": events.proposals,
        "polls": events.polls,
        "heartbeats": events.heartbeats,
        "completed": len(events.completed),
        "failed creates": events.failed_creates,
        "errors": events.errors,
    }


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(drive(config))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
