"""The operator's own watch of Workers and runs (controllers/feeders.watch_directly), with a
scripted watch in place of the API server: only what it does with each event is under test here
(the integration tests run it against a real API server). The cases use Workers; runs take the
same path.

Aspects: every event reaches the store; an event the store cannot take is skipped, not the end of
the watch (the operator would go blind to heartbeats or freed slots); a refused watch is tried
again; the end of its first LIST is signalled once the store holds all of it (the start waits);
a LIST taken again removes what it no longer contains (deleted while the watch was broken).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.builders import T0
from tests.unit.core.run_support import wkr
from workpools.api.base import to_json
from workpools.api.meta import API_VERSION, ObjectKey
from workpools.cache.store import Store
from workpools.cache.wakeups import Wakeups
from workpools.client import errors
from workpools.client.resources import WORKERS
from workpools.client.transport import ResourceType
from workpools.controllers import feeders
from workpools.controllers.runtime import Runtime


def body(name: str, version: str = "1") -> dict[str, Any]:
    worker = to_json(wkr(name), as_read=True)
    worker["metadata"].update({"namespace": "ns", "uid": f"uid-{name}", "resourceVersion": version})
    return {"apiVersion": API_VERSION, "kind": "Worker", **worker}


class ScriptedWatch:
    """Each call of `watch` plays the next script: events, then an error to raise (or the end).
    A script's ("LISTED", {}) ends a LIST: `on_listed` gets the objects ADDED since the last one."""

    def __init__(self, *scripts: tuple[list[tuple[str, dict[str, Any]]], Exception | None]) -> None:
        self.scripts = list(scripts)
        self.calls = 0

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        on_listed: Callable[[frozenset[tuple[str, str]]], None] | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.calls += 1
        if not self.scripts:
            await asyncio.Event().wait()  # no more scripts: a quiet watch
        events, error = self.scripts.pop(0)
        present: set[tuple[str, str]] = set()
        for kind, obj in events:
            if kind == "LISTED":
                if on_listed is not None:
                    on_listed(frozenset(present))
                present = set()
                continue
            if kind == "ADDED":
                present.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
            yield kind, obj
        if error is not None:
            raise error


async def watched(transport: ScriptedWatch, seconds: float, listed: asyncio.Event | None = None) -> Runtime:
    async def reconcile(pool: ObjectKey) -> None:
        return None

    rt = Runtime(transport=transport, store=Store(clock=lambda: T0), wakeups=Wakeups(reconcile))  # type: ignore[arg-type]
    task = asyncio.create_task(feeders.watch_directly(rt, WORKERS, "ns", listed))
    await asyncio.sleep(seconds)
    task.cancel()
    return rt


def test_an_event_the_store_cannot_take_is_skipped_and_the_watch_goes_on() -> None:
    broken = {"apiVersion": API_VERSION, "kind": "Worker", "metadata": {"name": "bad", "namespace": "ns"}}
    transport = ScriptedWatch(([("ADDED", body("w1")), ("MODIFIED", broken), ("ADDED", body("w2"))], None))
    rt = asyncio.run(watched(transport, 0.05))
    assert sorted(key.name for key in rt.store.workers.by_key) == ["w1", "w2"]


def test_a_deleted_worker_leaves_the_store() -> None:
    transport = ScriptedWatch(([("ADDED", body("w1")), ("DELETED", body("w1", "2"))], None))
    rt = asyncio.run(watched(transport, 0.05))
    assert rt.store.workers.by_key == {}


def test_a_refused_watch_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeders, "REFUSED_WATCH_PAUSE", 0.01)
    refused = errors.Forbidden("workers is forbidden", kind="Worker", namespace="ns")
    transport = ScriptedWatch(([], refused), ([("ADDED", body("w1"))], None))
    rt = asyncio.run(watched(transport, 0.1))
    assert transport.calls >= 2
    assert [key.name for key in rt.store.workers.by_key] == ["w1"]


def test_the_end_of_the_first_list_is_signalled_once_the_store_has_every_listed_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The operator's start waits for it (controllers/startup.prime): no pass decides on half a LIST.
    monkeypatch.setattr(feeders, "REFUSED_WATCH_PAUSE", 0.01)
    refused = errors.Forbidden("workers is forbidden", kind="Worker", namespace="ns")
    listing = [("ADDED", body("w1")), ("ADDED", body("w2")), ("LISTED", {}), ("MODIFIED", body("w1", "2"))]
    transport = ScriptedWatch(([], refused), (listing, None))

    async def reconcile(pool: ObjectKey) -> None:
        return None

    rt = Runtime(transport=transport, store=Store(clock=lambda: T0), wakeups=Wakeups(reconcile))  # type: ignore[arg-type]
    seen: list[list[tuple[str, str | None]]] = []

    class Listed(asyncio.Event):
        def set(self) -> None:
            seen.append([(key.name, w.metadata.resource_version) for key, w in sorted(rt.store.workers.by_key.items())])
            super().set()

    async def scenario() -> None:
        listed = Listed()
        task = asyncio.create_task(feeders.watch_directly(rt, WORKERS, "ns", listed))
        await asyncio.wait_for(listed.wait(), 1)
        task.cancel()

    asyncio.run(scenario())
    assert seen == [[("w1", "1"), ("w2", "1")]]  # once, with the whole LIST and nothing after it


def test_a_list_taken_again_removes_what_was_deleted_while_the_watch_was_broken() -> None:
    # After "410 Gone" the transport lists again; w2, deleted in the gap, got no DELETED event.
    first = [("ADDED", body("w1")), ("ADDED", body("w2")), ("LISTED", {})]
    again = [("ADDED", body("w1", "3")), ("LISTED", {})]
    transport = ScriptedWatch((first + again, None))
    woken: list[ObjectKey] = []

    async def reconcile(pool: ObjectKey) -> None:
        woken.append(pool)

    async def scenario() -> Runtime:
        rt = Runtime(transport=transport, store=Store(clock=lambda: T0), wakeups=Wakeups(reconcile))  # type: ignore[arg-type]
        rt.wakeups.enable()
        task = asyncio.create_task(feeders.watch_directly(rt, WORKERS, "ns"))
        await asyncio.sleep(0.05)
        task.cancel()
        return rt

    rt = asyncio.run(scenario())
    assert [(key.name, w.metadata.resource_version) for key, w in rt.store.workers.by_key.items()] == [("w1", "3")]
    assert ObjectKey("ns", "p") in woken  # its pool decided again without it
    assert "uid-w2" in rt.store.tombstones  # a late write response cannot bring it back
