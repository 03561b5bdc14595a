"""A Kubernetes LIST+WATCH of one kind in one namespace, for tests and benchmarks that must see
every version of every object, in the API server's order.

`Transport` (the product's client) has no watch verb yet; this is the smallest one that can be
trusted by a recorder: it resumes from the last resourceVersion it saw when the server ends a
watch, and never skips silently: when the server can no longer replay from there (410 Gone),
`events()` raises `WatchExpired` instead of relisting, because a relist would hide versions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from workpools.client.transport import ResourceType

WATCH_SECONDS = 240
"""How long one watch request lasts server-side before it is resumed (a fresh request)."""


class WatchExpired(AssertionError):
    """The server could not replay changes from our resourceVersion: versions would be missed."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED or DELETED (bookmarks are consumed inside)."""
    object: dict[str, Any]


class ResourceWatch:
    """`async with ResourceWatch(...) as w: items = await w.list(); async for e in w.events(): ...`

    Every event after the LIST's resourceVersion arrives, in order; with `field_selector` (e.g.
    `status.worker=w1`) an object leaving the selection arrives as DELETED.
    """

    def __init__(
        self,
        kubeconfig: Path,
        resource: ResourceType,
        namespace: str,
        *,
        field_selector: str | None = None,
    ):
        self.kubeconfig = kubeconfig
        self.resource = resource
        self.namespace = namespace
        self.field_selector = field_selector
        self.resource_version: str | None = None
        """The last version seen (LIST, event or bookmark): where a resumed watch starts."""
        self._api: k8s.ApiClient | None = None

    async def __aenter__(self) -> ResourceWatch:
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration, persist_config=False
        )
        # Its own connection pool: a long watch must never starve the caller's other requests.
        self._api = k8s.ApiClient(configuration)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._api is not None:
            await self._api.close()  # type: ignore[no-untyped-call]

    @property
    def _custom(self) -> k8s.CustomObjectsApi:
        assert self._api is not None, "use `async with ResourceWatch(...)`"
        return k8s.CustomObjectsApi(self._api)

    async def list(self) -> list[dict[str, Any]]:
        """The current objects; the watch starts right after this LIST's resourceVersion."""
        rt = self.resource
        result = cast(
            dict[str, Any],
            await self._custom.list_namespaced_custom_object(
                rt.group, rt.version, self.namespace, rt.plural, field_selector=self.field_selector
            ),
        )
        self.resource_version = result["metadata"]["resourceVersion"]
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def events(self) -> AsyncIterator[WatchEvent]:
        """Every change after `list()`, forever (resumed transparently); raises `WatchExpired`."""
        assert self.resource_version is not None, "list() first: a watch from nowhere would miss versions"
        rt = self.resource
        while True:
            response = await self._custom.list_namespaced_custom_object_without_preload_content(
                rt.group,
                rt.version,
                self.namespace,
                rt.plural,
                field_selector=self.field_selector,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                watch=True,
                _request_timeout=float(WATCH_SECONDS + 30),
            )
            try:
                if response.status != 200:
                    raise AssertionError(f"watch of {rt.plural} refused ({response.status}): {await response.text()}")
                while line := await response.content.readline():
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise WatchExpired(f"watch of {rt.plural} expired at {self.resource_version}: {obj}")
                        raise AssertionError(f"watch of {rt.plural} failed: {obj}")
                    self.resource_version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        yield WatchEvent(kind, obj)
            finally:
                response.release()
