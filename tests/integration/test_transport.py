"""The transport's verbs against the real API server: the URLs, queries, bodies and content types
it builds itself (through the client's `ApiClient`, without the generated `CustomObjectsApi`).

Aspects: get, create with a field manager, merge patches of the object and of its status subresource,
preconditions (resourceVersion on patches, uid and resourceVersion on deletes) as `Conflict`, LIST
pages with continue tokens and selectors, a refusal as a typed error naming the object, and the
watch: the starting LIST as ADDED, then MODIFIED and DELETED, and a refusal ending it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from tests.support.kube import Kubectl
from tests.support.objects import pool
from tests.support.workers import CLOSE_GRACE
from workpools.client import errors
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
