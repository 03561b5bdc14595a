"""The one module that talks to the Kubernetes API (through the official client's asyncio API).

Everything above it — the operator, the worker, the CLI — calls these few verbs with plain
dicts and gets `workpools.client.errors` back, never the library's exceptions. Keeping the
surface this small is what lets us swap the underlying library in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib.util
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast


def _without_the_synchronous_package() -> None:
    """Let `import kubernetes.aio` skip `kubernetes/__init__.py`, when nothing has imported it yet.

    That file imports the synchronous client's config, stream and watch modules, and with them
    requests, oauthlib, requests-oauthlib and websocket-client: about 220 modules and a third of
    the start-up of a CLI command, none of which `kubernetes.aio` uses. `kubernetes` is registered
    as the bare package instead (its directory, nothing run): `import kubernetes.config` and
    `from kubernetes.client import X` still import those submodules when someone wants them; only
    the attributes the skipped file set (`kubernetes.__version__`, submodules not yet imported)
    are missing from the bare package.
    """
    if "kubernetes" in sys.modules:
        return
    spec = importlib.util.find_spec("kubernetes")
    if spec is not None and spec.submodule_search_locations is not None:
        sys.modules["kubernetes"] = importlib.util.module_from_spec(spec)


_without_the_synchronous_package()

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from kubernetes.aio import client as k8s  # noqa: E402
from kubernetes.aio import config as k8s_config  # noqa: E402
from kubernetes.aio import watch as k8s_watch  # noqa: E402
from kubernetes.aio.client.exceptions import ApiException  # noqa: E402
from kubernetes.aio.config.config_exception import ConfigException  # noqa: E402

from workpools.client import errors  # noqa: E402

logger = logging.getLogger(__name__)

Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the API: enough to build every URL for it."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


EVENTS = ResourceType("", "v1", "events", "Event")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
SELF_SUBJECT_REVIEWS = ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview")

READ_TIMEOUT = 30.0
WRITE_TIMEOUT = 5.0
"""No request waits for ever (the client's default is 300 s). Writes are small: a write that has
no answer within 5 s has an unknown outcome, and an operator whose Lease is about to lapse must
know that its last writes are over before a successor may start (client/leadership.py)."""

WATCH_RETRY = (0.5, 10.0)
"""A broken watch is resumed after this backoff (first, most seconds), doubling in between."""

WRITE_FENCE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("write_fence", default=None)
"""A check run before every write (create, patch, delete) of the tasks that inherit it; it raises
`errors.Fenced` when the process may no longer write. The leader election sets it for the work it
runs, so a leader whose Lease lapsed sends nothing, whatever its tasks are doing."""

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a pod finds its own namespace (mounted with the service account token)."""


def _service_account_namespace() -> str | None:
    # A few bytes from a local file, read once at connect: not worth a thread.
    return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else None


def _kubeconfig_file(given: str | Path | None) -> Path | None:
    """The kubeconfig kubectl would read: `given`, else the first of $KUBECONFIG, else ~/.kube/config.

    None when there is none (connect then tries the in-cluster service account). A file named
    explicitly that does not exist is a `ConfigError`, not a silent fallback.
    """
    # A stat or two of local files, once at connect: not worth a thread.
    named = given or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    if named is not None:
        if not Path(named).is_file():
            source = "$KUBECONFIG" if given is None else "argument"
            raise errors.ConfigError(f"kubeconfig {named} ({source}) does not exist")
        return Path(named)
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None


@contextlib.contextmanager
def _answers(rt: ResourceType, namespace: str, name: str) -> Iterator[None]:
    """Turn the library's exceptions into ours: an HTTP answer by its status, no answer as `Unavailable`."""
    try:
        yield
    except ApiException as e:
        raise _translate(e, rt, namespace, name) from e
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise errors.Unavailable(
            f"no answer from the API server ({type(e).__name__}{f': {e}' if str(e) else ''})",
            kind=rt.kind,
            namespace=namespace,
            name=name,
        ) from e


def _check_fence() -> None:
    if (fence := WRITE_FENCE.get()) is not None:
        fence()


def _translate(error: ApiException, rt: ResourceType, namespace: str, name: str) -> errors.WorkpoolsError:
    """Map an HTTP status from the API server onto our error tree, keeping the server's message."""
    message, causes = str(error.reason or "error"), []
    try:
        status = json.loads(error.body or "{}")
        message = status.get("message") or message
        causes = [c.get("message", "") for c in (status.get("details") or {}).get("causes", [])]
    except (TypeError, ValueError):
        pass
    where = {"kind": rt.kind, "namespace": namespace, "name": name, "status": int(error.status or 0)}
    if error.status == 404:
        return errors.NotFound(message, **where)  # type: ignore[arg-type]
    if error.status == 409:
        cls = errors.AlreadyExists if "already exists" in message else errors.Conflict
        return cls(message, **where)  # type: ignore[arg-type]
    if error.status == 422:
        return errors.Invalid(message, causes=causes, **where)  # type: ignore[arg-type]
    if error.status == 403:
        return errors.Forbidden(message, **where)  # type: ignore[arg-type]
    return errors.ApiError(message, **where)  # type: ignore[arg-type]


class Transport:
    """An open connection to one API server. Create with `await Transport.connect()`; `await close()`."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str = "default"):
        self._api = api_client
        self.namespace = namespace
        """The namespace kubectl would use with this configuration; callers default to it."""
        self._custom = k8s.CustomObjectsApi(api_client)

    @functools.cached_property
    def _core(self) -> k8s.CoreV1Api:
        """Events only. Made on first use: its module imports the client's models of every core
        kind (hundreds of pydantic classes, seconds of a CLI command that posts no event)."""
        return k8s.CoreV1Api(self._api)

    @functools.cached_property
    def _coordination(self) -> k8s.CoordinationV1Api:
        """Leases (leader election) only; made on first use, as `_core`."""
        return k8s.CoordinationV1Api(self._api)

    def load_every_api(self) -> None:
        """Make the lazily made APIs now. A long-running process (the operator) pays their import
        once at start, instead of blocking its event loop for seconds when it posts its first event."""
        _ = self._core, self._coordination

    @classmethod
    async def connect(cls, kubeconfig: str | Path | None = None, context: str | None = None) -> Transport:
        """Kubeconfig (argument, then $KUBECONFIG, then ~/.kube/config), else the in-cluster service account.

        `namespace` becomes the context's namespace, or the service account's, else `default`, as with kubectl.
        """
        configuration = k8s.Configuration()
        path = _kubeconfig_file(kubeconfig)
        try:
            if path is not None:
                loader = await k8s_config.load_kube_config(
                    config_file=str(path),
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                namespace = loader.current_context["context"].get("namespace")
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
                namespace = _service_account_namespace()
        except ConfigException as e:
            if path is None:
                raise errors.ConfigError(
                    f"no kubeconfig ($KUBECONFIG unset, no ~/.kube/config) and not running in a cluster ({e})"
                ) from e
            raise errors.ConfigError(f"cannot use kubeconfig {path}: {e}") from e
        except OSError as e:
            raise errors.ConfigError(f"cannot read kubeconfig {path}: {e.strerror or e}") from e
        except (yaml.YAMLError, TypeError, ValueError, KeyError, AttributeError) as e:  # the loader's parse errors
            raise errors.ConfigError(f"kubeconfig {path} is not a valid kubeconfig file ({type(e).__name__})") from e
        return cls(k8s.ApiClient(configuration), namespace or "default")

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- verbs ---------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str, name: str) -> Body:
        with _answers(rt, namespace, name):
            return cast(
                Body,
                await self._custom.get_namespaced_custom_object(
                    rt.group, rt.version, namespace, rt.plural, name, _request_timeout=READ_TIMEOUT
                ),
            )

    async def list_page(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[list[Body], str | None]:
        """One page of a LIST, and the token for the next (None on the last page)."""
        kwargs: dict[str, Any] = {
            "label_selector": label_selector,
            "field_selector": field_selector,
            "limit": limit,
            "_continue": continue_token,
            "_request_timeout": READ_TIMEOUT,
        }
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        result: Body
        with _answers(rt, namespace or "", ""):
            if namespace is None:
                result = cast(
                    Body, await self._custom.list_cluster_custom_object(rt.group, rt.version, rt.plural, **kwargs)
                )
            else:
                result = cast(
                    Body,
                    await self._custom.list_namespaced_custom_object(
                        rt.group, rt.version, namespace, rt.plural, **kwargs
                    ),
                )
        items: list[Body] = result.get("items", [])
        for item in items:  # LIST items omit apiVersion/kind; put them back so bodies are whole
            item.setdefault("apiVersion", rt.api_version)
            item.setdefault("kind", rt.kind)
        return items, (result.get("metadata") or {}).get("continue") or None

    async def list_all(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Body]:
        """Every matching object, fetched page by page with continue tokens."""
        token: str | None = None
        while True:
            items, token = await self.list_page(
                rt,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=page_size,
                continue_token=token,
            )
            for item in items:
                yield item
            if token is None:
                return

    async def watch(
        self,
        rt: ResourceType,
        namespace: str,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        server_timeout: int = 290,
    ) -> AsyncIterator[tuple[str, Body]]:
        """Every matching object now, then every change, forever: ("ADDED" | "MODIFIED" | "DELETED", body).

        A LIST gives the starting point and its resourceVersion; the WATCH continues from there and
        is resumed where it stopped, also after a broken connection or a restarted API server (with
        a growing pause, `WATCH_RETRY`). When the server has compacted that far ("410 Gone") the
        LIST is taken again and every object is yielded again as ADDED, so consumers must be
        idempotent. Only a refusal (403, 404, ...) ends it, as a `WorkpoolsError`.
        """
        selectors: dict[str, Any] = {
            k: v for k, v in (("field_selector", field_selector), ("label_selector", label_selector)) if v
        }
        # The server ends a watch after `server_timeout`; one still open well after that is stalled.
        stream_timeout = float(server_timeout + 30)
        version: str | None = None
        pause = WATCH_RETRY[0]
        while True:
            stream = k8s_watch.Watch(return_type="object")
            try:
                if version is None:
                    listed = cast(
                        Body,
                        await self._custom.list_namespaced_custom_object(
                            rt.group, rt.version, namespace, rt.plural, _request_timeout=READ_TIMEOUT, **selectors
                        ),
                    )
                    for item in listed.get("items", []):
                        yield "ADDED", {"apiVersion": rt.api_version, "kind": rt.kind, **item}
                    version = listed["metadata"]["resourceVersion"]
                async for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    rt.group,
                    rt.version,
                    namespace,
                    rt.plural,
                    resource_version=version,
                    timeout_seconds=server_timeout,
                    allow_watch_bookmarks=True,
                    _request_timeout=stream_timeout,
                    **selectors,
                ):
                    pause = WATCH_RETRY[0]
                    body: Body = event["raw_object"]
                    version = body.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        yield event["type"], body
                continue  # the server ended the watch (its timeout): resume at once
            except ApiException as e:
                if e.status == 410:
                    version = None  # too old to resume: start over from a fresh LIST
                    continue
                if e.status is not None and e.status < 500 and e.status != 429:
                    raise _translate(e, rt, namespace, "") from e
                reason = f"HTTP {e.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                reason = type(e).__name__
            finally:
                await stream.close()
            logger.warning("watch of %s in %s broke (%s); resuming in %.1fs", rt.plural, namespace, reason, pause)
            await asyncio.sleep(pause)
            pause = min(WATCH_RETRY[1], pause * 2)

    async def read_lease(self, namespace: str, name: str) -> Body | None:
        """The Lease `namespace/name` as a dict (camelCase, times as datetimes), or None if missing."""
        try:
            with _answers(LEASES, namespace, name):
                lease = await self._coordination.read_namespaced_lease(name, namespace, _request_timeout=WRITE_TIMEOUT)
        except errors.NotFound:
            return None
        return lease.to_dict(serialize=True)

    async def write_lease(self, namespace: str, name: str, spec: Body, *, resource_version: str | None) -> bool:
        """Create the Lease (no `resource_version`) or replace exactly that version; False if someone else won."""
        body = k8s.V1Lease.from_dict(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
                "spec": spec,
            }
        )
        try:
            with _answers(LEASES, namespace, name):
                if resource_version is None:
                    await self._coordination.create_namespaced_lease(
                        namespace,
                        body,  # type: ignore[arg-type]
                        _request_timeout=WRITE_TIMEOUT,
                    )
                else:
                    await self._coordination.replace_namespaced_lease(
                        name,
                        namespace,
                        body,  # type: ignore[arg-type]
                        _request_timeout=WRITE_TIMEOUT,
                    )
        except (errors.Conflict, errors.AlreadyExists):
            return False
        return True

    async def create(self, rt: ResourceType, namespace: str, body: Body, *, field_manager: str | None = None) -> Body:
        name = body.get("metadata", {}).get("name", "")
        _check_fence()
        with _answers(rt, namespace, name):
            if rt == EVENTS:
                event = await self._core.create_namespaced_event(
                    namespace,
                    body,  # type: ignore[arg-type]
                    _request_timeout=WRITE_TIMEOUT,
                )
                return event.to_dict()
            return cast(
                Body,
                await self._custom.create_namespaced_custom_object(
                    rt.group,
                    rt.version,
                    namespace,
                    rt.plural,
                    body,
                    field_manager=field_manager,
                    _request_timeout=WRITE_TIMEOUT,
                ),
            )

    async def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Body | list[Body],
        *,
        status: bool = False,
        resource_version: str | None = None,
        content_type: str = MERGE_PATCH,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> Body:
        """PATCH the object, or its status subresource when `status` is true.

        With `resource_version`, the write succeeds only on that exact version of the object
        (optimistic concurrency): a stale decision raises `Conflict` instead of landing.
        """
        if resource_version is not None:
            if content_type == JSON_PATCH:
                assert isinstance(patch, list)
                patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}, *patch]
            else:
                assert isinstance(patch, dict)
                patch = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": resource_version}}
        call = (
            self._custom.patch_namespaced_custom_object_status
            if status
            else self._custom.patch_namespaced_custom_object
        )
        _check_fence()
        try:
            with _answers(rt, namespace, name):
                return cast(
                    Body,
                    await call(
                        rt.group,
                        rt.version,
                        namespace,
                        rt.plural,
                        name,
                        patch,
                        field_manager=field_manager,
                        force=force,
                        _content_type=content_type,
                        _request_timeout=WRITE_TIMEOUT,
                    ),
                )
        except errors.Invalid as error:
            if content_type == JSON_PATCH and "test operation" in error.message:  # the precondition failed
                raise errors.Conflict(error.message, kind=rt.kind, namespace=namespace, name=name) from error
            raise

    async def who_am_i(self) -> Body:
        """Who the API server takes these credentials for: a SelfSubjectReview's user info
        (`username`, `uid`, `groups`, `extra`), as admission sees it in `request.userInfo`."""
        review = k8s.V1SelfSubjectReview(api_version=SELF_SUBJECT_REVIEWS.api_version, kind=SELF_SUBJECT_REVIEWS.kind)
        with _answers(SELF_SUBJECT_REVIEWS, "", ""):
            answer = await k8s.AuthenticationV1Api(self._api).create_self_subject_review(
                review, _request_timeout=READ_TIMEOUT
            )
        user = answer.status.user_info if answer.status is not None else None
        return user.to_dict() if user is not None else {}

    async def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        """DELETE the object; with `uid`, only that incarnation of it, with `resource_version` only
        that exact version (a newer one raises `Conflict`)."""
        options = None
        if uid is not None or resource_version is not None:
            options = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=uid, resource_version=resource_version))
        _check_fence()
        with _answers(rt, namespace, name):
            await self._custom.delete_namespaced_custom_object(
                rt.group, rt.version, namespace, rt.plural, name, body=options, _request_timeout=WRITE_TIMEOUT
            )
