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


def _bare_package(name: str) -> None:
    """Register package `name` without running its `__init__.py`, when nothing has imported it yet.

    Its submodules still import as usual (`import kubernetes.config`, `from kubernetes.client
    import X`); only what the skipped file sets is missing: `__version__`, and submodules nobody
    imported yet as attributes.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations is not None:
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        parent, _, child = name.rpartition(".")
        if parent:  # as an import would: `kubernetes.aio.client.models` is looked up by attribute
            setattr(sys.modules[parent], child, module)


# `kubernetes/__init__.py` imports the synchronous client's config, stream and watch modules, and
# with them requests, oauthlib, requests-oauthlib and websocket-client: about 220 modules and a
# third of the start-up of a CLI command. `kubernetes/aio/__init__.py` imports the asyncio
# client's dynamic client (and urllib3), leader election, stream and utils packages: another
# 0.05 s or so. This module uses `kubernetes.aio.client` and `kubernetes.aio.config` only.
# (`kubernetes.aio.dynamic` reads `kubernetes.aio.__version__`: it cannot be imported after this.)
_bare_package("kubernetes")
_bare_package("kubernetes.aio")

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from kubernetes.aio import client as k8s  # noqa: E402
from kubernetes.aio import config as k8s_config  # noqa: E402
from kubernetes.aio.client.exceptions import ApiException  # noqa: E402
from kubernetes.aio.client.rest import RESTResponse  # noqa: E402
from kubernetes.aio.config.config_exception import ConfigException  # noqa: E402

from workpools.client import errors  # noqa: E402

logger = logging.getLogger(__name__)

Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
"""The one patch the operator, the worker and the client send: a status or spec change is a few fields."""

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
"""With one of these set, requests go through the proxy it names (aiohttp's trust_env), as kubectl's do."""


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

WATCH_EVENT_MAX = 4 * 1024 * 1024
"""Bytes one watch event may take. aiohttp refuses a line over 512 KiB by default, and an object
may be up to etcd's 1.5 MiB request limit (a pool's large job template): well above both."""

WATCH_LIST_PAGE = 500
"""Objects per page of the LIST a watch starts from (a continue token keeps the pages one snapshot)."""

WATCH_IDLE_MAX = 150.0
"""Seconds a watch stream may stay silent. The API server sends a bookmark every minute (asked for
with allowWatchBookmarks), so a read idle for longer is a stalled connection (half-open after a
network fault, no reset ever comes): resumed then, not at the end of the stream's whole timeout."""

WATCH_RETRY = (0.5, 10.0)
"""A broken watch is resumed after this backoff (first, most seconds), doubling in between."""

TOO_MANY_REQUESTS_PAUSES = (0.5, 1.0, 1.0, 2.0, 2.0, 0.0)
"""Most seconds waited before each of the attempts after a 429 (Too Many Requests): about 6 s in
all, then the last 429 is the caller's error."""

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


def _event(line: bytes) -> tuple[str, Body]:
    """One line of a WATCH: its type (ADDED, MODIFIED, DELETED, BOOKMARK) and object. An ERROR
    event (e.g. 410 Gone: the version to resume from was compacted) raises its `ApiException`."""
    event = json.loads(line)
    if event["type"] == "ERROR":
        status = event["object"]
        raise ApiException(status=status.get("code"), reason=status.get("reason"), body=json.dumps(status))
    return event["type"], event["object"]


class Transport:
    """An open connection to one API server. Create with `await Transport.connect()`; `await close()`."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str = "default"):
        self._api = api_client
        self.namespace = namespace
        """The namespace kubectl would use with this configuration; callers default to it."""

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
        if not any(os.environ.get(name) for name in _PROXY_VARIABLES):
            # aiohttp's trust_env looks up proxy variables and ~/.netrc on a thread for every
            # request: a few percent of the operator's CPU at a hundred writes a second, for nothing.
            configuration.client_session_kwargs = {"trust_env": False}
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
            return cast(Body, await self._json("GET", rt, namespace, name, request_timeout=READ_TIMEOUT))

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
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_token,
        }
        with _answers(rt, namespace or "", ""):
            result = cast(Body, await self._json("GET", rt, namespace, query=query, request_timeout=READ_TIMEOUT))
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
        namespace: str | None,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        server_timeout: int = 290,
        on_listed: Callable[[frozenset[tuple[str, str]]], None] | None = None,
    ) -> AsyncIterator[tuple[str, Body]]:
        """Every matching object now, then every change, forever: ("ADDED" | "MODIFIED" | "DELETED", body).

        A LIST (in pages) gives the starting point and its resourceVersion; the WATCH continues from
        there and is resumed where it stopped, also after a broken connection or a restarted API
        server (with a growing pause, `WATCH_RETRY`). When the server has compacted that far ("410
        Gone") the LIST is taken again and every object is yielded again as ADDED, so consumers
        must be idempotent. Only a refusal (403, 404, ...) ends it, as a `WorkpoolsError`. `namespace`
        None watches every namespace. `on_listed` is called each time every object of a LIST has
        been yielded, with the (namespace, name) of each: the consumer has the whole picture (an
        informer's "synced"), and what it holds beyond those is gone (an object deleted while the
        watch could not resume got no DELETED event: an informer's "replace").
        """
        selectors = {"fieldSelector": field_selector, "labelSelector": label_selector}
        # The server ends a watch after `server_timeout`; one still open well after that, or silent
        # for longer than its bookmarks allow, is stalled.
        stream_timeout = aiohttp.ClientTimeout(total=server_timeout + 30, sock_read=WATCH_IDLE_MAX)
        version: str | None = None
        pause = WATCH_RETRY[0]
        while True:
            try:
                token: str | None = None
                present: set[tuple[str, str]] = set()
                while version is None:  # page by page: 10,000 runs in one answer are tens of MB at once
                    query = {**selectors, "limit": WATCH_LIST_PAGE, "continue": token}
                    answer = await self._json("GET", rt, namespace, query=query, request_timeout=READ_TIMEOUT)
                    listed = cast(Body, answer)
                    for item in listed.get("items", []):
                        present.add((item["metadata"].get("namespace", ""), item["metadata"]["name"]))
                        yield "ADDED", {"apiVersion": rt.api_version, "kind": rt.kind, **item}
                    token = listed["metadata"].get("continue") or None
                    if token is None:  # every page is of the first one's snapshot: the watch goes on from it
                        version = listed["metadata"]["resourceVersion"]
                        if on_listed is not None:
                            on_listed(frozenset(present))
                query = {
                    **selectors,
                    "watch": True,
                    "resourceVersion": version,
                    "timeoutSeconds": server_timeout,
                    "allowWatchBookmarks": True,
                }
                response = await self._call("GET", rt, namespace, query=query, request_timeout=stream_timeout)
                try:
                    # One JSON event a line, until the server ends the stream (its timeout): b"".
                    while line := await response.response.content.readline(max_line_length=WATCH_EVENT_MAX):
                        kind, body = _event(line)
                        pause = WATCH_RETRY[0]
                        version = body.get("metadata", {}).get("resourceVersion", version)
                        if kind != "BOOKMARK":
                            yield kind, body
                finally:
                    response.response.release()
                continue  # the server ended the watch (its timeout): resume at once
            except ApiException as e:
                if e.status == 410:
                    version = None  # too old to resume: start over from a fresh LIST
                    continue
                if e.status is not None and e.status < 500 and e.status != 429:
                    raise _translate(e, rt, namespace or "", "") from e
                reason = f"HTTP {e.status}"
            except (aiohttp.ClientError, TimeoutError, OSError, json.JSONDecodeError) as e:  # the last: a cut line
                reason = type(e).__name__
            scope = namespace or "all namespaces"
            logger.warning("watch of %s in %s broke (%s); resuming in %.1fs", rt.plural, scope, reason, pause)
            await asyncio.sleep(pause)
            pause = min(WATCH_RETRY[1], pause * 2)

    async def _call(
        self,
        method: str,
        rt: ResourceType,
        namespace: str | None,
        name: str | None = None,
        *,
        status: bool = False,
        query: dict[str, Any] | None = None,
        body: Body | None = None,
        content_type: str | None = None,
        request_timeout: float | aiohttp.ClientTimeout,
    ) -> RESTResponse:
        """Send one request to a custom resource's endpoint; a refusal (not 2xx) raises `ApiException`.

        Through the `ApiClient`, which adds the credentials (renewing them when they expire), TLS,
        and the connection pool; only the URL and the query are built here. The generated
        `CustomObjectsApi` built them before, but its module takes 0.2 s to import (every method
        is wrapped in pydantic's `validate_call`): most of a CLI command, for arguments we make.
        """
        path = "/apis/{group}/{version}"
        if namespace is not None:
            path += "/namespaces/{namespace}"
        path += "/{plural}"
        if name is not None:
            path += "/{name}/status" if status else "/{name}"
        names = {"group": rt.group, "version": rt.version, "namespace": namespace, "plural": rt.plural, "name": name}
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = await self._api.param_serialize(
            method=method,
            resource_path=path,
            path_params={k: v for k, v in names.items() if v is not None},
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        for pause in TOO_MANY_REQUESTS_PAUSES:
            response = await self._api.call_api(*request, _request_timeout=request_timeout)
            if response.status != 429:
                break
            # Not processed at all (API priority and fairness, or a watch cache still initializing
            # after a CRD was installed): as client-go does, sent again after the server's Retry-After.
            await response.read()
            await asyncio.sleep(min(pause, _retry_after(response.getheader("Retry-After"))))
            if method != "GET":
                _check_fence()  # a leader's write must still be allowed after the pause
        if not 200 <= response.status <= 299:
            await response.read()  # the server's Status object, whose message `_translate` keeps
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    async def _json(
        self,
        method: str,
        rt: ResourceType,
        namespace: str | None,
        name: str | None = None,
        **options: Any,
    ) -> Any:
        """`_call`, and the answer's JSON body."""
        data = await (await self._call(method, rt, namespace, name, **options)).read()
        return json.loads(data) if data else None

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
            query = {"fieldManager": field_manager}
            return cast(
                Body, await self._json("POST", rt, namespace, body=body, query=query, request_timeout=WRITE_TIMEOUT)
            )

    async def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Body,
        *,
        status: bool = False,
        resource_version: str | None = None,
        field_manager: str | None = None,
    ) -> Body:
        """Merge-PATCH the object, or its status subresource when `status` is true.

        With `resource_version`, the write succeeds only on that exact version of the object
        (optimistic concurrency): a stale decision raises `Conflict` instead of landing.
        """
        if resource_version is not None:
            patch = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": resource_version}}
        _check_fence()
        with _answers(rt, namespace, name):
            answer = await self._json(
                "PATCH",
                rt,
                namespace,
                name,
                status=status,
                body=patch,
                content_type=MERGE_PATCH,
                query={"fieldManager": field_manager},
                request_timeout=WRITE_TIMEOUT,
            )
            return cast(Body, answer)

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
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v is not None}
        options = {"preconditions": preconditions} if preconditions else None  # a DeleteOptions
        _check_fence()
        with _answers(rt, namespace, name):
            await self._call("DELETE", rt, namespace, name, body=options, request_timeout=WRITE_TIMEOUT)


def _retry_after(header: str | None) -> float:
    """The Retry-After of a 429, in seconds (1 when missing or not a number of seconds)."""
    try:
        return max(0.0, float(header or 1))
    except ValueError:
        return 1.0
