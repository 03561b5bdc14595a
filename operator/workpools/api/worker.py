"""Worker: one worker process; it heartbeats through its status."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import ConfigDict, Field

from workpools.api import meta
from workpools.api.base import Model, PoolRef, QueueName, Resource
from workpools.api.conditions import READY_MESSAGE_COLUMN, Condition, conditions_field
from workpools.api.phases import WorkerPhase

HEARTBEAT_INTERVAL_MAX = 3600
QUEUES_MAX = 100


POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
"""The user-info extra a pod-bound ServiceAccount token carries: the name of the pod it is bound to."""


class WorkerIdentity(Model):
    """Who a worker process is to the API server: what a SelfSubjectReview answers for its credentials.

    Recorded on the Worker at registration and copied onto each run granted to it, so that the
    worker-restriction admission policy (manifests/policy/) can tell a worker's own objects from
    the others'. The pod name tells apart workers that share one ServiceAccount.
    """

    username: Annotated[str, Field(min_length=1, max_length=1024, description="The authenticated user name.")]
    pod_name: Annotated[
        str | None,
        Field(
            max_length=253,
            description=f"The pod a bound ServiceAccount token is tied to (user-info extra {POD_NAME_EXTRA}).",
        ),
    ] = None


class WorkerSpec(Model):
    """Desired state of a Worker; written by the worker process itself."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(oldSelf.identity) || has(self.identity)",
                    "message": "spec.identity cannot be removed: it names who registered this Worker",
                }
            ]
        }
    )

    work_pool: PoolRef
    work_queues: Annotated[
        list[QueueName],
        Field(
            max_length=QUEUES_MAX,
            description="Queues this worker serves; empty means every queue of the pool.",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = Field(default_factory=list)
    limit: Annotated[
        int | None, Field(ge=1, le=100_000, description="Most runs this worker holds at once; absent: no limit.")
    ] = None
    heartbeat_interval_seconds: Annotated[
        int | None,
        Field(
            ge=1,
            le=HEARTBEAT_INTERVAL_MAX,
            description=(
                "Seconds between heartbeats (default 30). The worker is Offline when its last heartbeat is "
                "older than 3 intervals."
            ),
        ),
    ] = None
    type: Annotated[str, Field(min_length=1, max_length=63, description="Worker type, e.g. process.")] = "process"
    draining: bool = Field(default=False, description="Set by a stopping worker: it takes no new runs.")
    identity: Annotated[
        WorkerIdentity | None,
        Field(
            description=(
                "Who registered this Worker; only that identity may change it, beat its heartbeat and move "
                "the runs bound to it. Set at creation, immutable."
            ),
            json_schema_extra={
                "x-kubernetes-validations": [
                    {
                        "rule": "self == oldSelf",
                        "message": "spec.identity is immutable: it names who registered this Worker",
                    }
                ]
            },
        ),
    ] = None


class WorkerStatus(Model):
    """Observed state of a Worker: the heartbeat (worker-written) and liveness (operator-written)."""

    last_heartbeat_time: datetime.datetime | None = Field(default=None, description="The heartbeat.")
    phase: WorkerPhase | None = Field(default=None, description="Online while heartbeats are recent.")
    conditions: list[Condition] = conditions_field("worker")
    observed_generation: int | None = Field(default=None, ge=0)
    assigned_runs: int = Field(default=0, ge=0, description="Runs bound to this worker that hold a slot.")


class Worker(Resource):
    """One worker process serving a pool."""

    KIND, PLURAL = meta.WORKER
    SHORT_NAMES = ("wkr",)
    PRINTER_COLUMNS = (
        {"name": "Pool", "type": "string", "jsonPath": ".spec.workPool"},
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Last Heartbeat", "type": "date", "jsonPath": ".status.lastHeartbeatTime"},
        {"name": "Limit", "type": "integer", "jsonPath": ".spec.limit"},
        {"name": "Runs", "type": "integer", "jsonPath": ".status.assignedRuns"},
        READY_MESSAGE_COLUMN,
    )
    SELECTABLE_FIELDS = (".spec.workPool",)

    spec: WorkerSpec
    status: WorkerStatus = Field(default_factory=WorkerStatus)
