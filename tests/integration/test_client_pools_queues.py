"""The client library's pool and queue calls against the real API server, on objects a user applied.

Aspects: reading one pool or queue as a model; typed NotFound / PoolNotFound naming kind and name;
Prefect's ordering (pools by name, queues by effective priority), filters, offset, limit and
counts; pagination with continue tokens and server-side selection; the namespace of the
kubeconfig context; and the bulk priority action (specs written under its own field manager,
duplicate targets refused before any write, unknown queues ignored).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import CLOSE_GRACE
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.client import errors
from workpools.client.transport import Body, ResourceType, Transport
from workpools.client.workpools import DEFAULT_PAGE_SIZE, FIELD_MANAGER, WorkpoolsClient
from workpools.core.priorities import DuplicatePriorityError

T = TypeVar("T")


class PageCountingTransport(Transport):
    """The real transport, noting each LIST page it fetched: (plural, field selector, items)."""

    pages: list[tuple[str, str | None, int]]

    async def list_page(self, rt: ResourceType, namespace: str | None, **options: Any) -> tuple[list[Body], str | None]:
        items, token = await super().list_page(rt, namespace, **options)
        self.pages.append((rt.plural, options.get("field_selector"), len(items)))
        return items, token


@dataclass
class Client:
    """Runs one client call in its own event loop: `client(lambda c: c.read_work_pool("a"))`."""

    kubeconfig: Path
    namespace: str | None
    page_size: int = DEFAULT_PAGE_SIZE
    pages: list[tuple[str, str | None, int]] = field(default_factory=list)

    def __call__(self, call: Callable[[WorkpoolsClient], Awaitable[T]]) -> T:
        async def session() -> T:
            transport = await PageCountingTransport.connect(self.kubeconfig)
            transport.pages = self.pages
            async with WorkpoolsClient(transport, self.namespace, page_size=self.page_size) as client:
                result = await call(client)
            await asyncio.sleep(CLOSE_GRACE)  # let closing connections finish before asyncio.run closes the loop
            return result

        return asyncio.run(session())


@pytest.fixture
def client(installed: Kubectl, namespace: str) -> Client:
    return Client(installed.kubeconfig, namespace)


def names(objects: list[WorkPool] | list[WorkQueue]) -> list[str]:
    return [o.metadata.name for o in objects]


def wait_effective_priorities(kubectl: Kubectl, namespace: str, expected: dict[str, int]) -> None:
    def current() -> dict[str, int | None]:
        items = kubectl.json("get", "wq", "-n", namespace)["items"]
        return {q["metadata"]["name"]: q.get("status", {}).get("effectivePriority") for q in items}

    wait_for(lambda: current() == expected, what=f"effective priorities {expected}")


def test_read_work_pool_returns_the_model_with_its_status(
    installed: Kubectl, operator: OperatorProcess, namespace: str, client: Client
) -> None:
    installed.apply(pool("etl", type="process", description="nightly loads", concurrencyLimit=3), namespace=namespace)
    wait_for(lambda: installed.get("wp", "etl", namespace).get("status", {}).get("defaultQueue"), what="pool status")

    etl = client(lambda c: c.read_work_pool("etl"))

    assert isinstance(etl, WorkPool)
    assert (etl.metadata.name, etl.metadata.namespace) == ("etl", namespace)
    assert (etl.spec.type, etl.spec.description, etl.spec.concurrency_limit) == ("process", "nightly loads", 3)
    assert etl.status.default_queue == "etl-default"
    # Prefect's names for the same reads (objects here are named, not numbered)
    assert client(lambda c: c.read_work_pool_by_name("etl")).metadata.uid == etl.metadata.uid
    wait_for(lambda: installed.try_get("wq", "etl-default", namespace), what="the default queue")
    default = client(lambda c: c.read_work_queue_by_name("etl", "etl-default"))
    assert (default.metadata.name, default.spec.work_pool) == ("etl-default", "etl")


def test_missing_objects_raise_typed_errors_naming_kind_and_name(
    installed: Kubectl, namespace: str, client: Client
) -> None:
    installed.apply(pool("p"), pool("other"), queue("elsewhere", "other"), namespace=namespace)

    with pytest.raises(errors.NotFound) as pool_missing:
        client(lambda c: c.read_work_pool("nope"))
    assert type(pool_missing.value) is errors.NotFound
    where = (pool_missing.value.kind, pool_missing.value.namespace, pool_missing.value.name, pool_missing.value.status)
    assert where == ("WorkPool", namespace, "nope", 404)

    queue_calls: list[Callable[[WorkpoolsClient], Awaitable[object]]] = [
        lambda c: c.read_work_queue("nope", "q"),
        lambda c: c.read_work_queue_by_name("nope", "q"),
        lambda c: c.read_work_queues("nope"),
        lambda c: c.count_work_queues("nope"),
        lambda c: c.bulk_update_work_queue_priorities("nope", {"q": 1}),
    ]
    for call in queue_calls:
        with pytest.raises(errors.PoolNotFound) as no_pool:
            client(call)
        assert (no_pool.value.kind, no_pool.value.name) == ("WorkPool", "nope")

    for pool_name, queue_name in (("p", "missing"), ("p", "elsewhere")):  # absent, and in another pool
        with pytest.raises(errors.NotFound) as no_queue:
            client(lambda c, p=pool_name, q=queue_name: c.read_work_queue(p, q))
        assert type(no_queue.value) is errors.NotFound
        assert (no_queue.value.kind, no_queue.value.namespace, no_queue.value.name) == (
            "WorkQueue",
            namespace,
            queue_name,
        )


def test_pools_are_listed_by_name_filtered_windowed_and_counted(
    installed: Kubectl, namespace: str, client: Client
) -> None:
    installed.apply(
        pool("c"), pool("a", type="kubernetes"), pool("b"), pool("d", type="kubernetes"), namespace=namespace
    )

    def listed(**query: Any) -> list[str]:
        return names(client(lambda c: c.read_work_pools(**query)))

    assert listed() == ["a", "b", "c", "d"]
    assert listed(names=["d", "b"]) == ["b", "d"]
    assert listed(names=["c"]) == ["c"]
    assert listed(names=["c", "zz"]) == ["c"]
    assert listed(names=[]) == []
    assert listed(types=["kubernetes"]) == ["a", "d"]
    assert listed(names=["a", "b"], types=["process"]) == ["b"]
    assert listed(offset=1) == ["b", "c", "d"]
    assert listed(limit=2) == ["a", "b"]
    assert listed(offset=1, limit=2) == ["b", "c"]
    assert listed(offset=9) == []
    assert listed(limit=0) == []
    with pytest.raises(ValueError, match="must not be negative"):
        listed(offset=-1)

    assert client(lambda c: c.count_work_pools()) == 4
    assert client(lambda c: c.count_work_pools(types=["process"])) == 2
    assert client(lambda c: c.count_work_pools(names=["a", "zz"])) == 1
    assert client(lambda c: c.count_work_pools(names=["zz"])) == 0


def test_queues_are_read_by_pool_in_effective_priority_order(
    installed: Kubectl, operator: OperatorProcess, namespace: str, client: Client
) -> None:
    installed.apply(
        pool("p"),
        queue("q-low", "p", priority=30),
        queue("q-high", "p", priority=10, description="urgent work"),
        queue("q-mid", "p", priority=20),
        pool("other"),
        queue("q-other", "other", priority=5),
        namespace=namespace,
    )
    wait_effective_priorities(
        installed, namespace, {"p-default": 1, "q-high": 10, "q-mid": 20, "q-low": 30, "other-default": 1, "q-other": 5}
    )

    high = client(lambda c: c.read_work_queue("p", "q-high"))
    assert isinstance(high, WorkQueue)
    assert (high.spec.work_pool, high.spec.description, high.status.effective_priority) == ("p", "urgent work", 10)

    def listed(**query: Any) -> list[str]:
        return names(client(lambda c: c.read_work_queues("p", **query)))

    assert listed() == ["p-default", "q-high", "q-mid", "q-low"]  # not name order: q-low < q-mid
    assert listed(name_prefix="q-") == ["q-high", "q-mid", "q-low"]
    assert listed(name_prefix="Q-M") == ["q-mid"]  # case-insensitive, like Prefect's ILIKE
    assert listed(name_prefix="zz") == []
    assert listed(offset=1, limit=2) == ["q-high", "q-mid"]
    assert client(lambda c: c.count_work_queues("p")) == 4
    assert client(lambda c: c.count_work_queues("other")) == 2


def test_lists_follow_continue_tokens_and_let_the_server_select_a_pools_queues(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    pool_names = [f"pool-{i}" for i in range(7)]
    installed.apply(*(pool(name) for name in reversed(pool_names)), namespace=namespace)
    installed.apply(*(queue(f"q-{i}", "pool-0", priority=10 + i) for i in range(6)), namespace=namespace)
    wait_for(
        lambda: len(installed.json("get", "wq", "-n", namespace)["items"]) == 13, what="7 default queues + 6 queues"
    )
    paged = Client(installed.kubeconfig, namespace, page_size=3)
    pages = paged.pages

    assert names(paged(lambda c: c.read_work_pools())) == pool_names
    assert pages == [("workpools", None, 3), ("workpools", None, 3), ("workpools", None, 1)]

    pages.clear()
    assert names(paged(lambda c: c.read_work_pools(offset=2, limit=3))) == ["pool-2", "pool-3", "pool-4"]
    assert paged(lambda c: c.count_work_pools(names=["pool-6"])) == 1
    assert pages[-1] == ("workpools", "metadata.name=pool-6", 1)

    pages.clear()
    assert paged(lambda c: c.count_work_queues("pool-0")) == 7
    assert pages == [("workqueues", "spec.workPool=pool-0", n) for n in (3, 3, 1)]


def test_namespace_defaults_to_the_kubeconfig_contexts(installed: Kubectl, namespace: str, tmp_path: Path) -> None:
    installed.apply(pool("here"), namespace=namespace)
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(installed.kubeconfig, kubeconfig)
    in_namespace = Kubectl(kubeconfig, installed.binary)
    in_namespace("config", "set-context", "--current", f"--namespace={namespace}")

    async def pools_seen_with(config: Path) -> tuple[str, list[str]]:
        async with await WorkpoolsClient.connect(kubeconfig=config) as client:
            return client.namespace, names(await client.read_work_pools())

    assert asyncio.run(pools_seen_with(kubeconfig)) == (namespace, ["here"])
    assert asyncio.run(pools_seen_with(installed.kubeconfig))[0] == "default"  # the context names none


def test_bulk_priorities_rewrite_the_specs_of_the_queues_that_move(
    installed: Kubectl, operator: OperatorProcess, namespace: str, client: Client
) -> None:
    installed.apply(
        pool("p"),
        queue("a", "p", priority=10),
        queue("b", "p", priority=11),
        queue("c", "p", priority=30),
        namespace=namespace,
    )
    wait_for(lambda: installed.try_get("wq", "p-default", namespace), what="the default queue")

    result = client(lambda c: c.bulk_update_work_queue_priorities("p", {"c": 10, "ghost": 2}))

    assert {q: result[q] for q in ("a", "b", "c")} == {"a": 11, "b": 12, "c": 10}  # c takes 10, a and b cascade
    assert "ghost" not in result
    specs = {q["metadata"]["name"]: q["spec"] for q in installed.json("get", "wq", "-n", namespace)["items"]}
    assert {q: specs[q].get("priority") for q in ("a", "b", "c", "p-default")} == {
        "a": 11,
        "b": 12,
        "c": 10,
        "p-default": None,  # held its value: never written, still without a spec priority
    }
    assert "ghost" not in specs
    c = installed.json("get", "wq", "c", "-n", namespace, "--show-managed-fields")
    assert c["metadata"]["generation"] == 2
    managers = {m["manager"]: m for m in c["metadata"]["managedFields"]}
    assert managers[FIELD_MANAGER]["fieldsV1"] == {"f:spec": {"f:priority": {}}}
    assert installed.get("wq", "p-default", namespace)["metadata"]["generation"] == 1


def test_bulk_priorities_refuse_duplicate_targets_before_writing_anything(
    installed: Kubectl, namespace: str, client: Client
) -> None:
    installed.apply(pool("p"), queue("a", "p", priority=1), queue("b", "p", priority=2), namespace=namespace)

    with pytest.raises(DuplicatePriorityError, match="priority 3 targeted by a, b"):
        client(lambda c: c.bulk_update_work_queue_priorities("p", {"a": 3, "b": 3}))

    for name, priority in (("a", 1), ("b", 2)):
        written = installed.get("wq", name, namespace)
        assert (written["spec"]["priority"], written["metadata"]["generation"]) == (priority, 1)
