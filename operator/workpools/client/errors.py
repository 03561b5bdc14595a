"""Errors of the client library. Nothing outside `client/` sees the kubernetes client's exceptions.

    WorkpoolsError
     ├── NotFound          the object (or its pool: PoolNotFound) does not exist
     │    └── PoolNotFound
     ├── AlreadyExists     create of a name that is taken (409)
     ├── Conflict          a precondition failed: the object changed since it was read (409)
     ├── Invalid           the API server refused the object (422); `causes` holds its field messages
     ├── Forbidden         RBAC said no (403)
     ├── ApiError          anything else the API server answered (status code kept)
     │    └── Unavailable  no answer: connection refused, reset or timed out (a write's outcome is unknown)
     ├── Fenced            this process may no longer write (its leadership lapsed): nothing was sent
     └── ConfigError       no usable kubeconfig, context or in-cluster credentials (raised by connect)

Catch `WorkpoolsError` for all of them. Every error names the object it is about.
"""

from __future__ import annotations


class WorkpoolsError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str, *, kind: str = "", namespace: str = "", name: str = "", status: int = 0):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.status = status


class NotFound(WorkpoolsError):
    pass


class PoolNotFound(NotFound):
    """An operation names a WorkPool that does not exist in the namespace."""

    @classmethod
    def from_not_found(cls, error: NotFound) -> PoolNotFound:
        """The `NotFound` of a WorkPool read, retyped: same message, kind, namespace, name and status.

        Raise it `from error`, so the original stays attached.
        """
        return cls(error.message, kind=error.kind, namespace=error.namespace, name=error.name, status=error.status)


class AlreadyExists(WorkpoolsError):
    pass


class Conflict(WorkpoolsError):
    """The object changed since it was read; re-read and decide again."""


class Invalid(WorkpoolsError):
    def __init__(self, message: str, *, causes: list[str] | None = None, **where: str | int):
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.causes = causes or []


class Forbidden(WorkpoolsError):
    pass


class ApiError(WorkpoolsError):
    pass


class Unavailable(ApiError):
    """The API server could not be reached or did not answer in time.

    For a write, the outcome is unknown: it may have landed. Read the object back before deciding
    on it again.
    """


class Fenced(WorkpoolsError):
    """A write was refused before it was sent: this process no longer holds the right to write
    (e.g. an operator whose Lease lapsed). Stop, do not retry."""


class ConfigError(WorkpoolsError):
    """The connection could not be configured: no kubeconfig, an unknown context, a broken file."""
