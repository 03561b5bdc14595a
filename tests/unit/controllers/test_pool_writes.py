"""How the pool reconciler writes (controllers/pools.py), with a scripted transport in place of
the API server: only the order and outcome of writes are under test here, so each call answers
what the case needs (the integration tests run the same code against a real API server).

Aspects: a pass never ends with its own writes in flight, and a write with an unknown outcome is
read back before the pool is decided again; a failed bookkeeping write does not hold up grants;
a worker is deleted for its TTL only on the version judged; a silent worker is read directly
before anything is decided about it; the pool's worker counts are written after the Worker
phases they count have landed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.builders import T0
from tests.unit.core.run_support import DEFAULT_QUEUE, flowrun, merge, wkr, wp, wq
from workpools.api.base import Resource, to_json
from workpools.api.meta import API_VERSION, ObjectKey
from workpools.api.states import StateType
from workpools.cache.store import Store
from workpools.cache.wakeups import Wakeups
from workpools.client import errors
from workpools.client.transport import ResourceType
from workpools.controllers import pools
from workpools.controllers.runtime import Runtime
from workpools.core.runs import RunChange

POOL = ObjectKey("ns", "p")
Answer = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ScriptedTransport:
    """Answers each call with the script's coroutine for that verb; records every call."""

    def __init__(self, **answers: Answer) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def _call(self, verb: str, name: str, options: dict[str, Any]) -> Any:
        self.calls.append((verb, name, options))
        return await self.answers[verb](name, options)

    async def patch(self, rt: ResourceType, namespace: str, name: str, patch: Any, **options: Any) -> Any:
        return await self._call("patch", name, {"kind": rt.kind, "patch": patch, **options})

    async def create(self, rt: ResourceType, namespace: str, body: Any, **options: Any) -> Any:
        return await self._call("create", body["metadata"].get("name", ""), {"kind": rt.kind, "body": body})

    async def get(self, rt: ResourceType, namespace: str, name: str) -> Any:
        return await self._call("get", name, {})

    async def delete(self, rt: ResourceType, namespace: str, name: str, **options: Any) -> None:
        await self._call("delete", name, options)


def runtime(transport: ScriptedTransport) -> Runtime:
    async def reconcile(pool: ObjectKey) -> None:
        return None

    store = Store(clock=lambda: T0)
    return Runtime(transport=transport, store=store, wakeups=Wakeups(reconcile), clock=lambda: T0)  # type: ignore[arg-type]


def stored(rt: Runtime, *objects: Resource) -> None:
    for obj in objects:
        obj.metadata.uid, obj.metadata.resource_version = f"uid-{obj.metadata.name}", "1"
        rt.store.put({"apiVersion": API_VERSION, "kind": obj.KIND, **to_json(obj, as_read=True)})


def as_patched(rt: Runtime, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """What the API server answers to a status patch of the object the store holds."""
    members = {"WorkPool": rt.store.pools.values(), "WorkQueue": rt.store.queues.of(POOL)}
    objects = {"Worker": rt.store.workers.of(POOL), "FlowRun": rt.store.runs.of(POOL), **members}
    obj = next(o for o in objects[kind] if o.metadata.name == name)
    body = merge({"apiVersion": API_VERSION, "kind": kind, **to_json(obj, as_read=True)}, patch)
    body["metadata"]["resourceVersion"] = str(int(obj.metadata.resource_version or "1") + 1)
    return body


def grant(name: str) -> RunChange:
    run = flowrun(name, state=StateType.SCHEDULED)
    run.metadata.uid, run.metadata.resource_version = f"uid-{name}", "1"
    return RunChange(run, {"state": "Pending", "worker": "w"}, granted_to="w")


def landed(name: str) -> dict[str, Any]:
    body = to_json(flowrun(name, state=StateType.PENDING, worker="w"), as_read=True)
    body["metadata"].update({"uid": f"uid-{name}", "resourceVersion": "2"})
    return {"apiVersion": "workpools.dev/v1alpha1", "kind": "FlowRun", **body}


def test_a_failed_write_ends_the_pass_only_once_its_sibling_writes_have_ended() -> None:
    # Pool limit 2 and two grants decided: one write is reset, the other is slow. Ending the pass
    # at the first failure would let the next pass decide without the slow grant: a third slot.
    slow = asyncio.Event()

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if name == "reset":
            raise errors.Unavailable("connection reset by peer", kind="FlowRun", name=name)
        await slow.wait()
        return landed(name)

    rt = runtime(ScriptedTransport(patch=patch))

    async def scenario() -> None:
        writing = asyncio.create_task(pools._apply_run_changes(rt, POOL, [grant("reset"), grant("slow")]))
        await asyncio.sleep(0.05)
        assert not writing.done(), "the pass ended while one of its grants was still on the wire"
        slow.set()
        assert isinstance(await writing, errors.Unavailable)  # for the pass to raise once its steps are done

    asyncio.run(scenario())
    assert rt.store.unsure[POOL] == {"reset"}  # may have landed: read back before deciding again
    assert [r.status.worker for r in rt.store.runs.of(POOL)] == ["w"]  # the slow grant counts


def test_a_failed_bookkeeping_write_does_not_hold_up_a_grant_of_the_same_pass() -> None:
    # "stopped" is to be Cancelled (lifecycle step), and that write is reset; "waiting" is
    # Scheduled, and the only worker is online: the pass grants it all the same.
    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if name == "stopped":
            raise errors.Unavailable("connection reset by peer", kind="FlowRun", name=name)
        return as_patched(rt, options["kind"], name, options["patch"])

    async def create(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return options["body"]  # events

    transport = ScriptedTransport(patch=patch, create=create)
    rt = runtime(transport)
    pool = wp(concurrencyLimit=1)
    pool.status.default_queue = DEFAULT_QUEUE
    stored(rt, pool, wq(), wkr("w"), flowrun("stopped", cancel=True), flowrun("waiting"))

    async def scenario() -> None:
        with pytest.raises(errors.Unavailable):  # raised once every step is done: the pass is retried
            await pools.reconcile_pool(rt, POOL)

    asyncio.run(scenario())
    assert {r.metadata.name: (r.status.state, r.status.worker) for r in rt.store.runs.of(POOL)} == {
        "stopped": (StateType.SCHEDULED, None),
        "waiting": (StateType.PENDING, "w"),
    }
    assert rt.store.unsure[POOL] == {"stopped"}


def test_a_write_with_unknown_outcome_is_read_back_before_the_pool_is_decided() -> None:
    async def get(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return landed(name)  # it had landed after all

    transport = ScriptedTransport(get=get)
    rt = runtime(transport)
    rt.store.unsure[POOL].add("reset")
    asyncio.run(pools._read_back_unsure_runs(rt, POOL))
    assert [call[:2] for call in transport.calls] == [("get", "reset")]
    assert [r.status.state for r in rt.store.runs.of(POOL)] == ["Pending"]
    assert not rt.store.unsure.get(POOL)


def test_an_expired_worker_is_deleted_only_in_the_version_judged() -> None:
    async def delete(name: str, options: dict[str, Any]) -> None:
        raise errors.Conflict("the object has been modified", kind="Worker", name=name)  # it beat meanwhile

    transport = ScriptedTransport(delete=delete)
    rt = runtime(transport)
    judged = wkr("w").model_copy(deep=True)
    judged.metadata.resource_version = "41"
    asyncio.run(pools._delete_worker(rt, judged))  # a Conflict is "alive again", not an error
    assert transport.calls == [("delete", "w", {"resource_version": "41"})]


@pytest.mark.parametrize("worker_write_lands", [True, False])
def test_the_pool_counts_worker_phases_only_once_they_landed(worker_write_lands: bool) -> None:
    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["kind"] == "Worker" and not worker_write_lands:
            raise errors.NotFound('workers.workpools.dev "w" not found', kind="Worker", name=name)
        return as_patched(rt, options["kind"], name, options["patch"])

    async def create(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return options["body"]  # events

    transport = ScriptedTransport(patch=patch, create=create)
    rt = runtime(transport)
    pool = wp(concurrencyLimit=1)
    pool.status.default_queue = DEFAULT_QUEUE
    stored(rt, pool, wq(), wkr("w"))  # registered, its first heartbeat seen: to be written Online
    asyncio.run(pools.reconcile_pool(rt, POOL))
    patched = [options["kind"] for verb, _, options in transport.calls if verb == "patch"]
    if worker_write_lands:
        assert patched.index("Worker") < patched.index("WorkPool")
        assert rt.store.pools[POOL].status.workers.online == 1
    else:
        assert "WorkPool" not in patched  # online: 1 would count a phase that never landed


def test_a_finished_run_is_deleted_for_its_ttl_only_in_the_version_judged() -> None:
    # "kept" was changed after it was judged (a Conflict); "gone" is deleted and leaves the store.
    async def delete(name: str, options: dict[str, Any]) -> None:
        if name == "kept":
            raise errors.Conflict("the object has been modified", kind="FlowRun", name=name)

    transport = ScriptedTransport(delete=delete)
    rt = runtime(transport)
    ended = T0 - timedelta(hours=2)
    stored(
        rt,
        wp(finishedRunTTLSeconds=60),
        flowrun("kept", state=StateType.COMPLETED, ended=ended),
        flowrun("gone", state=StateType.FAILED, ended=ended),
        flowrun("young", state=StateType.COMPLETED, ended=T0),
        flowrun("running", state=StateType.RUNNING, ended=ended),
    )
    before = rt.deletion_budget.available(T0)
    asyncio.run(pools._delete_finished_runs(rt, POOL, frozenset()))
    assert sorted(transport.calls) == [
        ("delete", "gone", {"resource_version": "1"}),
        ("delete", "kept", {"resource_version": "1"}),
    ]
    assert sorted(r.metadata.name for r in rt.store.runs.of(POOL)) == ["kept", "running", "young"]
    assert rt.deletion_budget.available(T0) == before - 2  # the shared bucket paid for both
