"""Condition shape (metav1.Condition, field for field) and the condition vocabulary.

Every condition type and reason the operator writes is declared here, with one line on what
it means; no other module spells them.
"""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Any

from pydantic import Field

from workpools.api.base import Model
from workpools.api.phases import ConditionStatus


class ConditionType(enum.StrEnum):
    READY = "Ready"
    """Pool/queue: an Online worker serves it and it is not paused. Worker: Online. Run: done well."""
    PAUSED = "Paused"
    """spec.paused is true: nothing is admitted from this pool or queue."""
    PRIORITY_CONFLICT = "PriorityConflict"
    """The queue's requested priority is held by another queue, so it runs at another value."""
    POOL_NOT_FOUND = "PoolNotFound"
    """The WorkPool named in spec.workPool does not exist (anymore)."""
    INVALID = "Invalid"
    """The spec is accepted by the schema but cannot be used (e.g. an undeclared template variable)."""
    QUEUE_NOT_FOUND = "QueueNotFound"
    """Worker: some queues in spec.workQueues are not queues of its pool (it still serves the others)."""
    ADMITTED = "Admitted"
    """Run: it holds a slot and is bound to a worker (False carries the reason it waits)."""
    RECLAIM_SUSPENDED = "ReclaimSuspended"
    """Pool: too many workers went silent at once; their slots are not taken back (core/liveness.py)."""
    LIMIT_WINDOW = "LimitWindow"
    """Pool/queue with concurrencyLimitSchedule: True while a window sets the limit (the message names it)."""


class Reason(enum.StrEnum):
    """Reasons, CamelCase as Kubernetes expects; also used as Event reasons."""

    READY = "Ready"
    NOT_READY = "NotReady"
    PAUSED = "Paused"
    NOT_PAUSED = "NotPaused"
    NO_ONLINE_WORKER = "NoOnlineWorker"
    WORKER_ONLINE = "WorkerOnline"
    POOL_NOT_FOUND = "PoolNotFound"
    POOL_FOUND = "PoolFound"
    QUEUE_NOT_FOUND = "QueueNotFound"
    POOL_PAUSED = "PoolPaused"
    QUEUE_PAUSED = "QueuePaused"
    NOT_YET_SCHEDULED = "NotYetScheduled"
    POOL_LIMIT_REACHED = "PoolLimitReached"
    QUEUE_LIMIT_REACHED = "QueueLimitReached"
    KEY_LIMIT_REACHED = "KeyLimitReached"
    START_RATE_LIMITED = "StartRateLimited"
    WINDOW_OPEN = "WindowOpen"
    NO_WINDOW_OPEN = "NoWindowOpen"
    INVALID_WINDOW = "InvalidWindow"
    WINDOW_OPENED = "LimitWindowOpened"
    WINDOW_CLOSED = "LimitWindowClosed"
    ADMITTED = "Admitted"
    QUEUES_FOUND = "QueuesFound"
    HEARTBEAT_MISSED = "HeartbeatMissed"
    PRIORITY_TAKEN = "PriorityTaken"
    PRIORITY_HELD = "PriorityHeld"
    TEMPLATE_INVALID = "TemplateInvalid"
    VALID = "Valid"
    RECLAIM_SUSPENDED = "ReclaimSuspended"
    WORKERS_REACHABLE = "WorkersReachable"
    # FlowSchedules (CronJob's event reasons where it has one):
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    INVALID_SCHEDULE = "InvalidSchedule"
    SUCCESSFUL_CREATE = "SuccessfulCreate"
    MISSED_SCHEDULE = "MissedSchedule"
    REPLACED = "Replaced"
    SUCCESSFUL_DELETE = "SuccessfulDelete"


CONDITIONS_MAX = 8
"""No kind carries more condition types than this; the schema refuses longer lists."""


class Condition(Model):
    """One aspect of the object's state, in the shape of metav1.Condition."""

    type: Annotated[str, Field(min_length=1, max_length=316, description="Type of condition in CamelCase.")]
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was set from."
    )
    last_transition_time: datetime.datetime = Field(
        description="When the condition last changed from one status to another."
    )
    reason: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            description="Machine-readable CamelCase reason for the last transition.",
        ),
    ]
    message: Annotated[str, Field(max_length=32768, description="Human-readable details.")] = ""


READY_MESSAGE_COLUMN = {
    "name": "Message",
    "type": "string",
    "priority": 1,
    "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
    "description": "Why the object is or is not Ready (the Ready condition's message)",
}
"""A printer column of `kubectl get -o wide`: the Ready condition's message, e.g. `no worker is online`."""


def conditions_field(what: str) -> Any:
    """The `conditions` list: a list-map keyed by type, so server-side apply merges it."""
    return Field(
        default_factory=list,
        max_length=CONDITIONS_MAX,
        description=f"Current observations of the {what}'s state.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
