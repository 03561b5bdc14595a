"""The client library's FlowRun calls against the real API server, with the operator admitting runs.

Aspects: `create_flow_run` (default queue, generated names, parameters, scheduled time; typed
errors for a missing pool or queue, a naive time); `read_flow_runs` filtered by pool, queue
(a default queue also holds runs naming none) and state, newest first, windowed; `cancel_flow_run`
patches only `spec.cancel`; slot holders and active-slot counts of pools and queues, per queue,
and in bulk from one LIST narrowed by the API server to slot-holding states; `preview`;
`why_waiting` (one LIST per kind; workers judged by their heartbeat; a deleted pool).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import CLOSE_GRACE, SimulatedWorker
from workpools.client import errors
from workpools.client.runs import HOLDER_SELECTOR, RunsClient
from workpools.client.transport import Body, ResourceType, Transport

T = TypeVar("T")
Workers = Callable[..., SimulatedWorker]


class CountingTransport(Transport):
    """The real transport, noting the field selector of every LIST page it asks for."""

    lists: list[str | None]

    async def list_page(self, rt: ResourceType, namespace: str | None, **options: Any) -> tuple[list[Body], str | None]:
        self.lists.append(options.get("field_selector"))
        return await super().list_page(rt, namespace, **options)


class Runs:
    """A `RunsClient` kept open on its own loop: `runs(lambda c: c.read_flow_runs())`."""

    def __init__(self, kubectl: Kubectl, namespace: str):
        self.loop = asyncio.new_event_loop()
        transport = self.loop.run_until_complete(CountingTransport.connect(kubectl.kubeconfig))
        assert isinstance(transport, CountingTransport)
        transport.lists = []
        self.transport = transport
        self.client = RunsClient(transport, namespace)

    def __call__(self, call: Callable[[RunsClient], Awaitable[T]]) -> T:
        return self.loop.run_until_complete(call(self.client))

    def close(self) -> None:
        self.loop.run_until_complete(self.transport.close())
        self.loop.run_until_complete(asyncio.sleep(CLOSE_GRACE))  # let closing connections finish
        self.loop.close()


@pytest.fixture
def runs(installed: Kubectl, namespace: str) -> Iterator[Runs]:
    client = Runs(installed, namespace)
    yield client
    client.close()


def names(items: list[Any]) -> list[str]:
    return [item.metadata.name for item in items]


def test_create_read_and_cancel_runs(installed: Kubectl, operator: OperatorProcess, namespace: str, runs: Runs) -> None:
    installed.apply(pool("p"), queue("q", "p", priority=1), pool("other"), namespace=namespace)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    first = runs(lambda c: c.create_flow_run("p", "q", name="r1", parameters={"n": 1}, command="echo hi"))
    assert (first.spec.work_queue, first.spec.parameters, first.spec.command) == ("q", {"n": 1}, "echo hi")
    default = runs(lambda c: c.create_flow_run("p", scheduled_time=later))
    assert default.metadata.name.startswith("p-")
    assert default.spec.work_queue is None
    assert default.spec.scheduled_time == later
    runs(lambda c: c.create_flow_run("other", generate_name="nightly-"))

    with pytest.raises(errors.PoolNotFound):
        runs(lambda c: c.create_flow_run("ghost"))
    with pytest.raises(errors.NotFound) as missing:
        runs(lambda c: c.create_flow_run("p", "ghost"))
    assert missing.value.name == "ghost"
    with pytest.raises(ValueError, match="timezone-aware"):
        runs(lambda c: c.create_flow_run("p", scheduled_time=datetime.datetime(2026, 1, 1)))

    wait_for(lambda: len(runs(lambda c: c.read_flow_runs(state="Scheduled"))) == 3, what="three Scheduled runs")
    assert names(runs(lambda c: c.read_flow_runs(pool="p"))) == [default.metadata.name, "r1"]  # newest first
    assert names(runs(lambda c: c.read_flow_runs(pool="p", queue="p-default"))) == [default.metadata.name]
    assert names(runs(lambda c: c.read_flow_runs(queue="q"))) == ["r1"]
    assert names(runs(lambda c: c.read_flow_runs(pool="p", offset=1, limit=5))) == ["r1"]
    assert runs(lambda c: c.read_flow_runs(state="Running")) == []
    with pytest.raises(ValueError, match="Done"):
        runs(lambda c: c.read_flow_runs(state="Done"))
    assert runs(lambda c: c.read_flow_run("r1")).spec.parameters == {"n": 1}
    with pytest.raises(errors.NotFound):
        runs(lambda c: c.read_flow_run("ghost"))

    cancelled = runs(lambda c: c.cancel_flow_run("r1"))
    assert cancelled.spec.cancel is True
    wait_for(lambda: runs(lambda c: c.read_flow_run("r1")).status.state, equals="Cancelled", what="r1 Cancelled")
    with pytest.raises(errors.NotFound):
        runs(lambda c: c.cancel_flow_run("ghost"))


QUEUES = ("q1", "q2", "p-default")


def test_slot_holders_and_active_slots(
    installed: Kubectl, operator: OperatorProcess, namespace: str, runs: Runs, workers: Workers
) -> None:
    installed.apply(
        pool("p", concurrencyLimit=3),
        queue("q1", "p", priority=1, concurrencyLimit=2),
        queue("q2", "p", priority=2),
        pool("p2"),
        namespace=namespace,
    )
    wait_for(  # the order below is by effective priority: the default queue is pushed behind both
        lambda: {n: installed.get("wq", n, namespace).get("status", {}).get("effectivePriority") for n in QUEUES},
        equals={"q1": 1, "q2": 2, "p-default": 3},
        what="priorities resolved",
    )

    async def create(client: RunsClient) -> None:
        for i in range(3):
            await client.create_flow_run("p", "q1", name=f"a{i}")
        for i in range(2):
            await client.create_flow_run("p", "q2", name=f"b{i}")
        await client.create_flow_run("p", name="d0")
        await client.create_flow_run("p2", name="x0")

    runs(create)
    # no worker is online yet: everything waits, and the preview shows the admission order
    assert [r.name for r in runs(lambda c: c.preview("p"))] == ["a0", "a1", "b0"]  # q1's limit, then the pool's
    assert [r.name for r in runs(lambda c: c.preview("p", limit=1))] == ["a0"]
    # Prefect's name and arguments for the same rule: queues named, bounds on the scheduled time
    assert [r.name for r in runs(lambda c: c.get_scheduled_flow_runs("p"))] == ["a0", "a1", "b0"]
    assert [r.name for r in runs(lambda c: c.get_scheduled_flow_runs("p", ["q2", "p-default"]))] == ["b0", "b1", "d0"]
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    assert runs(lambda c: c.get_scheduled_flow_runs("p", scheduled_after=later)) == []
    assert [r.name for r in runs(lambda c: c.get_scheduled_flow_runs("p", scheduled_before=later, limit=2))] == [
        "a0",
        "a1",
    ]
    workers("p", "w1").beat()
    workers("p2", "w2").beat()
    wait_for(
        lambda: runs(lambda c: c.count_work_pool_active_slots_bulk(["p", "p2"])) == {"p": 3, "p2": 1},
        what="the pools' slots filled",
    )

    holders = runs(lambda c: c.get_work_pool_slot_holders("p"))
    assert sorted(names(holders)) == ["a0", "a1", "b0"]  # q1 up to its limit, then q2 by priority
    acquired = [h.status.slot.acquired_at for h in holders if h.status.slot]
    assert acquired == sorted(acquired)  # longest held first
    assert sorted(names(runs(lambda c: c.get_work_pool_slot_holders("p", queues=["q1"])))) == ["a0", "a1"]
    one_each = runs(lambda c: c.get_work_pool_slot_holders("p", per_queue_limit=1))
    assert sorted(h.spec.work_queue or "" for h in one_each) == ["q1", "q2"]
    assert sorted(names(runs(lambda c: c.get_work_queue_slot_holders("p", "q1")))) == ["a0", "a1"]

    assert runs(lambda c: c.count_work_pool_slot_holders("p")) == 3
    assert runs(lambda c: c.count_work_pool_slot_holders_by_queue("p")) == {"q1": 2, "q2": 1}
    assert runs(lambda c: c.count_work_queue_slot_holders("p", "q1")) == 2
    assert runs(lambda c: c.count_work_queue_slot_holders("p", "p-default")) == 0
    assert runs(lambda c: c.count_work_pool_active_slots("p")) == 3
    assert runs(lambda c: c.count_work_queue_active_slots("p", "q2")) == 1
    assert runs(lambda c: c.count_work_queue_active_slots("p", "p-default")) == 0

    runs.transport.lists.clear()
    bulk = runs(lambda c: c.count_work_pool_active_slots_bulk(["p", "p2", "ghost"]))
    assert bulk == {"p": 3, "p2": 1, "ghost": 0}
    assert runs.transport.lists == [HOLDER_SELECTOR]  # one LIST, only slot holders sent back
    assert runs(lambda c: c.count_work_pool_active_slots_bulk()) == {"p": 3, "p2": 1}
    runs.transport.lists.clear()
    assert runs(lambda c: c.count_work_queue_active_slots_bulk("p")) == {"q1": 2, "q2": 1}
    assert runs.transport.lists == [f"spec.workPool=p,{HOLDER_SELECTOR}"]
    assert runs(lambda c: c.count_work_queue_active_slots_bulk("p", ["q1", "p-default"])) == {"q1": 2, "p-default": 0}

    for call in (
        lambda c: c.get_work_pool_slot_holders("ghost"),
        lambda c: c.count_work_pool_slot_holders("ghost"),
        lambda c: c.count_work_queue_slot_holders("ghost", "q1"),
        lambda c: c.get_scheduled_flow_runs("ghost"),
        lambda c: c.count_work_pool_active_slots("ghost"),
        lambda c: c.preview("ghost"),
    ):
        with pytest.raises(errors.PoolNotFound):
            runs(call)

    status = runs(lambda c: c.concurrency_status("p", per_queue_limit=1))
    assert (status.active, status.limit) == (3, 3)
    assert [(q.name, q.active, len(q.holders)) for q in status.queues] == [
        ("q1", 2, 1),
        ("q2", 1, 1),
        ("p-default", 0, 0),
    ]
    assert runs(lambda c: c.preview("p")) == []  # the pool is full


def test_why_waiting_reads_the_pool_as_the_admitter_sees_it(
    installed: Kubectl, operator: OperatorProcess, namespace: str, runs: Runs, workers: Workers
) -> None:
    installed.apply(pool("p", paused=True), namespace=namespace)
    wait_for(lambda: installed.try_get("wq", "p-default", namespace), what="the default queue")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    runs(lambda c: c.create_flow_run("p", name="r", scheduled_time=later))
    wait_for(lambda: runs(lambda c: c.read_flow_run("r")).status.state, what="r stamped Scheduled")

    def reasons() -> list[str]:
        return [h.reason for h in runs(lambda c: c.why_waiting("r")).holds]

    runs.transport.lists.clear()
    why = runs(lambda c: c.why_waiting("r"))
    assert runs.transport.lists == ["spec.workPool=p"] * 3  # queues, Workers, runs: one LIST each
    assert [h.reason for h in why.holds] == ["PoolPaused", "NotYetScheduled", "NoOnlineWorker"]
    assert why.estimate is not None
    assert why.estimate.unknown == "WorkPool p is paused: time alone does not lift that"

    workers("p", "w1").beat()  # Online by its fresh heartbeat, whatever the operator wrote yet
    assert reasons() == ["PoolPaused", "NotYetScheduled"]

    installed("delete", "wp", "p", "-n", namespace)
    wait_for(lambda: "PoolNotFound" in reasons(), what="the run's pool gone")
    with pytest.raises(errors.NotFound):
        runs(lambda c: c.why_waiting("nope"))
