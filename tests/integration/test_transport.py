"""The transport's verbs against the real API server: the URLs, queries, bodies and content types
it builds itself (through the client's `ApiClient`, without the generated `CustomObjectsApi`).

Aspects: get, create with a field manager, merge patches of the object and of its status subresource,
preconditions (resourceVersion on patches, uid and resourceVersion on deletes) as `Conflict`, LIST
pages with continue tokens and selectors, a refusal as a typed error naming the object, and the
watch: the starting LIST as ADDED, then MODIFIED and DELETED, a refusal ending it, and a stream
gone silent (through Toxiproxy) resumed within the idle bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from tests.support.kube import Kubectl
from tests.support.objects import pool
from tests.support.toxiproxy import Toxiproxy, via_proxy
from tests.support.workers import CLOSE_GRACE
from workpools.client import errors, transport
from workpools.client.resources import WORKPOOLS
from workpools.client.transport import Body, ResourceType, Transport

T = TypeVar("T")
FIELD_MANAGER = "transport-test"


def session(installed: Kubectl, call: Callable[[Transport], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await Transport.connect(installed.kubeconfig) as transport:
            result = await call(transport)
        await asyncio.sleep(CLOSE_GRACE)  # let closing connections finish before asyncio.run closes the loop
        return result

    return asyncio.run(run())


def test_get_create_patch_and_delete(installed: Kubectl, namespace: str) -> None:
    async def calls(t: Transport) -> None:
        created = await t.create(WORKPOOLS, namespace, pool("a", type="process"), field_manager=FIELD_MANAGER)
        assert created["metadata"]["name"] == "a"
        assert [m["manager"] for m in created["metadata"]["managedFields"]] == [FIELD_MANAGER]
        with pytest.raises(errors.AlreadyExists):
            await t.create(WORKPOOLS, namespace, pool("a", type="process"))

        merged = await t.patch(WORKPOOLS, namespace, "a", {"spec": {"concurrencyLimit": 3}})
        assert merged["spec"]["concurrencyLimit"] == 3
        stale = created["metadata"]["resourceVersion"]
        with pytest.raises(errors.Conflict):
            await t.patch(WORKPOOLS, namespace, "a", {"spec": {"paused": True}}, resource_version=stale)

        both = {"status": {"queues": 2}, "spec": {"paused": True}}
        status = await t.patch(WORKPOOLS, namespace, "a", both, status=True)
        assert status["status"]["queues"] == 2
        assert "paused" not in status["spec"]  # the status subresource ignores spec
        assert (await t.get(WORKPOOLS, namespace, "a"))["spec"]["concurrencyLimit"] == 3

        with pytest.raises(errors.Conflict):
            await t.delete(WORKPOOLS, namespace, "a", uid="not-its-uid")
        with pytest.raises(errors.Conflict):
            await t.delete(WORKPOOLS, namespace, "a", resource_version=stale)
        await t.delete(WORKPOOLS, namespace, "a", uid=created["metadata"]["uid"])
        with pytest.raises(errors.NotFound) as missing:
            await t.get(WORKPOOLS, namespace, "a")
        assert (missing.value.kind, missing.value.namespace, missing.value.name) == ("WorkPool", namespace, "a")

    session(installed, calls)


def test_list_pages_with_continue_tokens_and_selectors(installed: Kubectl, namespace: str) -> None:
    async def calls(t: Transport) -> None:
        for name in ("p1", "p2", "p3"):
            body = pool(name, type="process")
            body["metadata"]["labels"] = {"odd": str(name != "p2").lower()}
            await t.create(WORKPOOLS, namespace, body)
        first, token = await t.list_page(WORKPOOLS, namespace, limit=2)
        assert [p["metadata"]["name"] for p in first] == ["p1", "p2"]
        assert {(p["apiVersion"], p["kind"]) for p in first} == {("workpools.dev/v1alpha1", "WorkPool")}
        assert token is not None
        rest, token = await t.list_page(WORKPOOLS, namespace, limit=2, continue_token=token)
        assert ([p["metadata"]["name"] for p in rest], token) == (["p3"], None)
        odd = [p["metadata"]["name"] async for p in t.list_all(WORKPOOLS, namespace, label_selector="odd=true")]
        assert odd == ["p1", "p3"]
        named = [p["metadata"]["name"] async for p in t.list_all(WORKPOOLS, None, field_selector="metadata.name=p2")]
        assert named == ["p2"]  # namespace None: every namespace

    session(installed, calls)


def test_watch_lists_then_streams_changes(installed: Kubectl, namespace: str) -> None:
    """Each change arrives in order. An operator of another test may be running (the session's):
    its status writes arrive as MODIFIED events in between, so those are skipped."""

    async def calls(t: Transport) -> list[tuple[str, str, int | None]]:
        await t.create(WORKPOOLS, namespace, pool("before", type="process"))
        events = t.watch(WORKPOOLS, namespace)
        seen: list[tuple[str, str, int | None]] = []

        async def until(expected: tuple[str, str, int | None]) -> None:
            while True:
                kind, body = await asyncio.wait_for(anext(events), timeout=10)
                assert (body["apiVersion"], body["kind"]) == ("workpools.dev/v1alpha1", "WorkPool")
                event = (kind, body["metadata"]["name"], body["spec"].get("concurrencyLimit"))
                if event == expected:
                    seen.append(event)
                    return
                assert kind == "MODIFIED", (event, expected)

        await until(("ADDED", "before", None))
        await t.create(WORKPOOLS, namespace, pool("after", type="process"))
        await until(("ADDED", "after", None))
        await t.patch(WORKPOOLS, namespace, "before", {"spec": {"concurrencyLimit": 1}})
        await until(("MODIFIED", "before", 1))
        await t.delete(WORKPOOLS, namespace, "after")
        await until(("DELETED", "after", None))
        await events.aclose()
        return seen

    assert len(session(installed, calls)) == 4


def test_a_watch_of_all_namespaces_brings_an_object_larger_than_a_default_stream_line(
    installed: Kubectl, namespace: str
) -> None:
    """The operator watches Workers of every namespace; aiohttp refuses lines over 512 KiB by default."""
    big = pool("big", type="process")
    template = {"job_configuration": {"command": "true", "notes": "x" * 700_000}, "variables": {"properties": {}}}
    big["spec"]["baseJobTemplate"] = template

    async def calls(t: Transport) -> int:
        events = t.watch(WORKPOOLS, None)
        await t.create(WORKPOOLS, namespace, big)
        while True:
            _, body = await asyncio.wait_for(anext(events), timeout=10)
            if (body["metadata"]["namespace"], body["metadata"]["name"]) == (namespace, "big"):
                await events.aclose()
                return len(body["spec"]["baseJobTemplate"]["job_configuration"]["notes"])

    assert session(installed, calls) == 700_000


def test_a_refused_watch_ends_with_a_typed_error(installed: Kubectl, namespace: str) -> None:
    unknown = ResourceType("workpools.dev", "v1alpha1", "nosuchkinds", "NoSuchKind")

    async def calls(t: Transport) -> None:
        events: AsyncIterator[tuple[str, Body]] = t.watch(unknown, namespace)
        with pytest.raises(errors.NotFound) as refused:
            await asyncio.wait_for(anext(events), timeout=10)
        assert (refused.value.kind, refused.value.namespace) == ("NoSuchKind", namespace)

    session(installed, calls)


class Resumed(logging.Handler):
    """The transport's warnings that a watch broke and is being resumed, and an event set by the first."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.first = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "broke" in (message := record.getMessage()):
            self.messages.append(message)
            self.first.set()


def test_a_watch_whose_stream_goes_silent_is_resumed_within_the_idle_bound(
    installed: Kubectl, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that stops carrying data and is never closed (a network fault that no reset
    follows) raises nothing: the stream only goes quiet. The API server sends a bookmark every
    minute, so a stream silent for longer (here 2 s) is taken for broken and resumed; what was
    written meanwhile still arrives."""
    monkeypatch.setattr(transport, "WATCH_IDLE_MAX", 2.0)
    installed.apply(pool("before"), namespace=namespace)
    server = yaml.safe_load(installed.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with Toxiproxy.start(tmp_path) as toxiproxy:
        proxy = toxiproxy.proxy("watch", int(server.rsplit(":", 1)[1]))
        proxied = via_proxy(installed.kubeconfig, proxy, tmp_path / "proxied.kubeconfig")

        async def calls(t: Transport) -> tuple[str, str, list[str]]:
            resumed = Resumed()
            logging.getLogger(transport.__name__).addHandler(resumed)
            try:
                events = t.watch(WORKPOOLS, namespace)
                assert (await asyncio.wait_for(anext(events), timeout=10))[0] == "ADDED"  # the LIST: "before"
                following = asyncio.create_task(anext(events))
                await asyncio.sleep(1.0)  # the WATCH is open
                proxy.add("stall", "timeout", timeout=0)  # nothing more comes through, nothing is closed
                installed.apply(pool("during"), namespace=namespace)
                await asyncio.wait_for(resumed.first.wait(), timeout=8)  # 2 s idle, and then some
                proxy.remove("stall")
                kind, body = await asyncio.wait_for(following, timeout=15)
                await events.aclose()
            finally:
                logging.getLogger(transport.__name__).removeHandler(resumed)
            return kind, body["metadata"]["name"], resumed.messages

        async def run() -> tuple[str, str, list[str]]:
            async with await Transport.connect(proxied) as t:
                result = await calls(t)
            await asyncio.sleep(CLOSE_GRACE)
            return result

        kind, name, messages = asyncio.run(run())
    assert (kind, name) == ("ADDED", "during")
    assert "TimeoutError" in messages[0]  # a read timeout, aiohttp's name for it aside
