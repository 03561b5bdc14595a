"""Objects as the API server returns them, for the CLI's rendering tests (times relative to `T0`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.builders import T0, at
from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue

NOW = at(minutes=10)


def _meta(name: str, created: datetime = T0) -> dict[str, Any]:
    return {"name": name, "namespace": "team-a", "creationTimestamp": timestamp(created)}


def pool(name: str = "etl", *, limit: int | None = None, active: int = 0, **status: Any) -> WorkPool:
    spec: dict[str, Any] = {"type": "process", "concurrencyLimit": limit, **status.pop("spec", {})}
    return WorkPool.model_validate(
        {
            "metadata": _meta(name),
            "spec": spec,
            "status": {"phase": "Ready", "slots": {"active": active, "limit": limit}, **status},
        }
    )


def queue(name: str, *, priority: int | None = 1, effective: int | None = None, limit: int | None = None) -> WorkQueue:
    return WorkQueue.model_validate(
        {
            "metadata": _meta(name),
            "spec": {"workPool": "etl", "priority": priority, "concurrencyLimit": limit},
            "status": {"phase": "Ready", "effectivePriority": effective if effective is not None else priority},
        }
    )


def run(
    name: str,
    *,
    queue: str | None = None,
    state: str | None = "Running",
    state_name: str | None = None,
    worker: str | None = "w1",
    acquired: datetime | None = None,
    pool: str = "etl",
) -> FlowRun:
    status: dict[str, Any] = {"state": state, "stateName": state_name or state, "worker": worker}
    if acquired is not None:
        status["slot"] = {"acquiredAt": timestamp(acquired), "queue": queue or f"{pool}-default"}
    return FlowRun.model_validate(
        {
            "metadata": _meta(name),
            "spec": {"workPool": pool, "workQueue": queue},
            "status": {key: value for key, value in status.items() if value is not None},
        }
    )


def worker(name: str, *, heartbeat: datetime | None = None, draining: bool = False, **spec: Any) -> Worker:
    status: dict[str, Any] = {"phase": "Online", "assignedRuns": 1}
    if heartbeat is not None:
        status["lastHeartbeatTime"] = timestamp(heartbeat)
    return Worker.model_validate(
        {"metadata": _meta(name), "spec": {"workPool": "etl", "draining": draining, **spec}, "status": status}
    )
