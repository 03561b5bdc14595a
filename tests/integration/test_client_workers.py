"""The client library's worker calls against the real API server, with the operator running.

Aspects: `read_workers` ordered by newest heartbeat (never-heartbeat last, then by name), filtered
by stored phase and inclusive heartbeat bounds, windowed by offset/limit, selected by the API
server (`spec.workPool`) page by page; `read_worker_by_name`; `delete_worker` (only that worker);
`heartbeat` through the client with the worker's own RBAC: registration once, then one status
write per beat, re-registration when settings change or the Worker was deleted; typed errors
(`PoolNotFound`, `NotFound`, `Invalid`, `ValueError` for bad arguments); `kubectl get wkr` columns.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.kube import Kubectl
from tests.support.objects import API_VERSION, pool
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.worker_rbac import worker_kubeconfig
from tests.support.workers import CLOSE_GRACE
from workpools.api.phases import WorkerPhase
from workpools.api.worker import Worker
from workpools.client import Heartbeat, WorkpoolsClient, errors
from workpools.client.transport import Body, ResourceType, Transport

T = TypeVar("T")
UTC = datetime.UTC


class RecordingTransport(Transport):
    """The real transport, noting each request: (verb, plural or plural/status, detail)."""

    calls: list[tuple[str, str, Any]]

    async def get(self, rt: ResourceType, namespace: str, name: str) -> Body:
        self.calls.append(("get", rt.plural, name))
        return await super().get(rt, namespace, name)

    async def list_page(self, rt: ResourceType, namespace: str | None, **options: Any) -> tuple[list[Body], str | None]:
        items, token = await super().list_page(rt, namespace, **options)
        self.calls.append(("list", rt.plural, (options.get("field_selector"), len(items))))
        return items, token

    async def create(self, rt: ResourceType, namespace: str, body: Body, **options: Any) -> Body:
        self.calls.append(("create", rt.plural, body["metadata"]["name"]))
        return await super().create(rt, namespace, body, **options)

    async def patch(self, rt: ResourceType, namespace: str, name: str, patch: Any, **options: Any) -> Body:
        self.calls.append(("patch", rt.plural + ("/status" if options.get("status") else ""), name))
        return await super().patch(rt, namespace, name, patch, **options)

    async def who_am_i(self) -> Body:
        self.calls.append(("create", "selfsubjectreviews", ""))
        return await super().who_am_i()

    async def delete(self, rt: ResourceType, namespace: str, name: str, **options: Any) -> None:
        self.calls.append(("delete", rt.plural, name))
        await super().delete(rt, namespace, name, **options)


class Session:
    """One client kept open across calls (as a worker process keeps it): `session(lambda c: ...)`."""

    def __init__(self, kubeconfig: Path, namespace: str, *, page_size: int = 500):
        self.loop = asyncio.new_event_loop()
        transport = self.loop.run_until_complete(RecordingTransport.connect(kubeconfig))
        assert isinstance(transport, RecordingTransport)
        self.calls: list[tuple[str, str, Any]] = []
        transport.calls = self.calls
        self.transport = transport
        self.client = WorkpoolsClient(self.transport, namespace, page_size=page_size)

    def __call__(self, call: Callable[[WorkpoolsClient], Awaitable[T]]) -> T:
        return self.loop.run_until_complete(call(self.client))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.run_until_complete(asyncio.sleep(CLOSE_GRACE))  # let closing connections finish
        self.loop.close()


@pytest.fixture
def sessions(installed: Kubectl, namespace: str) -> Iterator[Callable[..., Session]]:
    made: list[Session] = []

    def make(kubeconfig: Path | None = None, **options: Any) -> Session:
        made.append(Session(kubeconfig or installed.kubeconfig, namespace, **options))
        return made[-1]

    yield make
    for session in made:
        session.close()


def names(workers: list[Worker]) -> list[str]:
    return [w.metadata.name for w in workers]


def worker(name: str, pool: str, **spec: Any) -> dict[str, Any]:
    """A Worker as a user could apply it: registered, never heartbeat."""
    return {"apiVersion": API_VERSION, "kind": "Worker", "metadata": {"name": name}, "spec": {"workPool": pool, **spec}}


def stored_phases(kubectl: Kubectl, namespace: str) -> dict[str, str | None]:
    items = kubectl.json("get", "wkr", "-n", namespace)["items"]
    return {w["metadata"]["name"]: (w.get("status") or {}).get("phase") for w in items}


def test_workers_are_read_newest_heartbeat_first_filtered_and_windowed(
    installed: Kubectl, operator: OperatorProcess, namespace: str, sessions: Callable[..., Session]
) -> None:
    installed.apply(pool("p"), pool("other"), worker("never-b", "p"), worker("never-a", "p"), namespace=namespace)
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    # Explicit heartbeat times (what the reads order and filter by). Liveness does not read them:
    # it counts from when the operator saw a beat, so w-old beats every 1 s and is Offline after 3 s
    # of silence; the others beat every 30 s and stay Online for 90 s.
    beats = {
        "w-old": now - datetime.timedelta(hours=1),
        "w-mid": now - datetime.timedelta(seconds=10),
        "w-new": now,
        "w-elsewhere": now,
    }
    admin = sessions(page_size=2)

    async def send(_: WorkpoolsClient) -> None:
        for name, at in beats.items():
            pool_name = "other" if name == "w-elsewhere" else "p"
            interval = 1 if name == "w-old" else None
            await Heartbeat(admin.transport, namespace=namespace, pool=pool_name, name=name, interval=interval).beat(
                now=at
            )

    admin(send)
    wait_for(
        lambda: stored_phases(installed, namespace),
        equals={
            "never-a": "Offline",
            "never-b": "Offline",
            "w-old": "Offline",
            "w-mid": "Online",
            "w-new": "Online",
            "w-elsewhere": "Online",
        },
        what="the operator's phases",
    )

    def listed(**query: Any) -> list[str]:
        return names(admin(lambda c: c.read_workers("p", **query)))

    admin.calls.clear()
    everyone = admin(lambda c: c.read_workers("p"))
    assert names(everyone) == ["w-new", "w-mid", "w-old", "never-a", "never-b"]
    assert everyone[0].status.last_heartbeat_time == now
    assert everyone[0].status.phase is WorkerPhase.ONLINE
    pages = [detail for verb, plural, detail in admin.calls if verb == "list"]
    assert pages == [("spec.workPool=p", 2), ("spec.workPool=p", 2), ("spec.workPool=p", 1)]  # server-side, paged

    assert listed(phase="Online") == ["w-new", "w-mid"]
    assert listed(phase=WorkerPhase.OFFLINE) == ["w-old", "never-a", "never-b"]
    assert listed(heartbeat_after=now - datetime.timedelta(seconds=10)) == ["w-new", "w-mid"]  # inclusive
    assert listed(heartbeat_before=now - datetime.timedelta(seconds=10)) == ["w-mid", "w-old"]  # inclusive
    minutes_ago = now - datetime.timedelta(minutes=30)
    assert listed(heartbeat_after=minutes_ago, heartbeat_before=now - datetime.timedelta(seconds=20)) == []
    assert listed(phase="Offline", heartbeat_before=now) == ["w-old"]
    assert listed(offset=1, limit=2) == ["w-mid", "w-old"]
    assert listed(offset=4) == ["never-b"]
    assert listed(limit=0) == []
    assert names(admin(lambda c: c.read_workers("other"))) == ["w-elsewhere"]

    with pytest.raises(ValueError, match="Sleeping"):
        listed(phase="Sleeping")
    with pytest.raises(ValueError, match="timezone-aware"):
        listed(heartbeat_after=datetime.datetime(2020, 1, 1))  # naive
    with pytest.raises(ValueError, match="must not be negative"):
        listed(offset=-1)


def test_read_and_delete_a_worker_by_name(
    installed: Kubectl, operator: OperatorProcess, namespace: str, sessions: Callable[..., Session]
) -> None:
    installed.apply(pool("p"), pool("other"), worker("w1", "p", limit=3), worker("w2", "other"), namespace=namespace)
    admin = sessions()

    w1 = admin(lambda c: c.read_worker_by_name("p", "w1"))
    assert isinstance(w1, Worker)
    assert (w1.metadata.name, w1.metadata.namespace, w1.spec.work_pool, w1.spec.limit) == ("w1", namespace, "p", 3)

    admin(lambda c: c.delete_worker("p", "w1"))
    assert installed.try_get("wkr", "w1", namespace) is None
    assert installed.try_get("wkr", "w2", namespace) is not None

    for pool_name, worker_name in (("p", "w1"), ("p", "w2")):  # gone, and in another pool
        for call in (
            lambda c, p=pool_name, w=worker_name: c.read_worker_by_name(p, w),
            lambda c, p=pool_name, w=worker_name: c.delete_worker(p, w),
        ):
            with pytest.raises(errors.NotFound) as missing:
                admin(call)
            assert type(missing.value) is errors.NotFound
            assert (missing.value.kind, missing.value.namespace, missing.value.name, missing.value.status) == (
                "Worker",
                namespace,
                worker_name,
                404,
            )
    assert installed.try_get("wkr", "w2", namespace) is not None  # a worker of another pool is never deleted


def test_heartbeat_through_the_client_registers_once_then_writes_status_once_per_beat(
    installed: Kubectl, operator: OperatorProcess, namespace: str, sessions: Callable[..., Session], tmp_path: Path
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    owner_uid = installed.get("wp", "p", namespace)["metadata"]["uid"]
    as_worker = sessions(worker_kubeconfig(installed, namespace, tmp_path / "worker.kubeconfig"))

    first = as_worker(lambda c: c.heartbeat("p", "w1", interval=5, queues=["p-default"], limit=2))
    assert as_worker.calls == [
        ("create", "selfsubjectreviews", ""),  # who the worker is, asked once per connection
        ("get", "workers", "w1"),
        ("get", "workpools", "p"),
        ("create", "workers", "w1"),
        ("patch", "workers/status", "w1"),
    ]
    assert first.status.last_heartbeat_time is not None
    written = installed.get("wkr", "w1", namespace)
    assert written["spec"] == {
        "workPool": "p",
        "workQueues": ["p-default"],
        "limit": 2,
        "heartbeatIntervalSeconds": 5,
        "type": "process",
        "identity": {"username": f"system:serviceaccount:{namespace}:worker"},
    }
    assert [(o["kind"], o["name"], o["uid"]) for o in written["metadata"]["ownerReferences"]] == [
        ("WorkPool", "p", owner_uid)
    ]
    wait_for(lambda: stored_phases(installed, namespace).get("w1"), equals="Online", what="w1 Online")
    # The pool counts its online workers a moment after the worker's phase is written (bookkeeping lane).
    wait_for(
        lambda: installed.get("wp", "p", namespace).get("status", {}).get("workers", {}).get("online"),
        equals=1,
        what="the pool counting w1 online",
    )
    pool_version = installed.get("wp", "p", namespace)["metadata"]["resourceVersion"]

    for _ in range(3):  # steady beats: one status write each, nothing else
        as_worker.calls.clear()
        beat = as_worker(lambda c: c.heartbeat("p", "w1", interval=5, queues=["p-default"], limit=2))
        assert as_worker.calls == [("patch", "workers/status", "w1")]
        assert beat.status.last_heartbeat_time is not None
        assert first.status.last_heartbeat_time is not None
        assert beat.status.last_heartbeat_time > first.status.last_heartbeat_time
    assert installed.get("wp", "p", namespace)["metadata"]["resourceVersion"] == pool_version

    as_worker.calls.clear()  # new settings: the spec is brought up to date once, then the beat
    as_worker(lambda c: c.heartbeat("p", "w1", interval=10))
    assert as_worker.calls == [("get", "workers", "w1"), ("patch", "workers", "w1"), ("patch", "workers/status", "w1")]
    spec = installed.get("wkr", "w1", namespace)["spec"]
    assert (spec["heartbeatIntervalSeconds"], spec["workQueues"], spec.get("limit")) == (10, [], None)

    installed("delete", "wkr", "w1", "-n", namespace)  # deleted under a running worker: the next beat registers anew
    as_worker.calls.clear()
    again = as_worker(lambda c: c.heartbeat("p", "w1", interval=10))
    assert [verb for verb, _, _ in as_worker.calls] == ["patch", "get", "get", "create", "patch"]
    assert again.metadata.uid != first.metadata.uid

    as_worker.calls.clear()  # no interval given: the recorded one stays (Prefect sets it only when given)
    as_worker(lambda c: c.heartbeat("p", "w1"))
    assert as_worker.calls == [("get", "workers", "w1"), ("patch", "workers/status", "w1")]
    assert installed.get("wkr", "w1", namespace)["spec"]["heartbeatIntervalSeconds"] == 10

    named = as_worker(lambda c: c.worker_heartbeat("p", "w1", 10))  # Prefect's name for the same call
    assert (named.metadata.name, named.spec.heartbeat_interval_seconds) == ("w1", 10)


def test_worker_calls_raise_typed_errors(
    installed: Kubectl, namespace: str, sessions: Callable[..., Session], tmp_path: Path
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    admin = sessions()
    as_worker = sessions(worker_kubeconfig(installed, namespace, tmp_path / "worker.kubeconfig"))

    pool_calls: list[tuple[Session, Callable[[WorkpoolsClient], Awaitable[object]]]] = [
        (admin, lambda c: c.read_workers("nope")),
        (admin, lambda c: c.read_worker_by_name("nope", "w1")),
        (admin, lambda c: c.delete_worker("nope", "w1")),
        (as_worker, lambda c: c.heartbeat("nope", "w1")),
    ]
    for session, call in pool_calls:
        with pytest.raises(errors.PoolNotFound) as no_pool:
            session(call)
        assert (no_pool.value.kind, no_pool.value.namespace, no_pool.value.name, no_pool.value.status) == (
            "WorkPool",
            namespace,
            "nope",
            404,
        )
        assert isinstance(no_pool.value.__cause__, errors.NotFound)
    assert installed.try_get("wkr", "w1", namespace) is None

    with pytest.raises(errors.Invalid, match="heartbeatIntervalSeconds") as invalid:
        as_worker(lambda c: c.heartbeat("p", "w1", interval=0))
    assert (invalid.value.kind, invalid.value.name, invalid.value.status) == ("Worker", "w1", 422)
    with pytest.raises(errors.Invalid, match="limit"):
        as_worker(lambda c: c.heartbeat("p", "w2", limit=0))

    with pytest.raises(errors.Forbidden) as forbidden:  # a worker's token reads no worker list
        as_worker(lambda c: c.read_workers("p"))
    assert forbidden.value.kind == "Worker"


def test_kubectl_get_wkr_shows_pool_status_heartbeat_limit_runs_age(
    installed: Kubectl, operator: OperatorProcess, namespace: str, sessions: Callable[..., Session]
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    sessions()(lambda c: c.heartbeat("p", "w1", limit=4))
    wait_for(lambda: stored_phases(installed, namespace).get("w1"), equals="Online", what="w1 Online")

    header, row = installed("get", "wkr", "-n", namespace).splitlines()
    assert re.split(r"\s{2,}", header.strip()) == ["NAME", "POOL", "STATUS", "LAST HEARTBEAT", "LIMIT", "RUNS", "AGE"]
    name, pool_name, status, last_heartbeat, limit, runs, age = row.split()
    assert (name, pool_name, status, limit, runs) == ("w1", "p", "Online", "4", "0")
    assert re.fullmatch(r"\d+s", last_heartbeat), row
    assert re.fullmatch(r"\d+s", age), row
