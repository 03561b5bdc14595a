"""WorkQueue: a prioritized queue of runs inside one pool."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import Field

from workpools.api import meta
from workpools.api.base import ConcurrencyLimit, Description, LatePolicy, Model, PoolRef, Resource, SlotStatus
from workpools.api.conditions import READY_MESSAGE_COLUMN, Condition, conditions_field
from workpools.api.flowcontrol import ConcurrencyLimitPerKey, ConcurrencyLimitSchedule, StartRateField
from workpools.api.phases import QueuePhase

PRIORITY_MAX = 1_000_000


class WorkQueueSpec(Model):
    """Desired state of a WorkQueue; owned by the user (the operator never writes it)."""

    work_pool: PoolRef
    priority: Annotated[
        int | None,
        Field(
            ge=1,
            le=PRIORITY_MAX,
            description=(
                "Lower runs first (1 is the highest). Unique per pool: when two queues ask for the same value, "
                "the one asking last takes it and the other runs one step lower (see status.effectivePriority). "
                "Absent: the first free value when the queue is first seen."
            ),
        ),
    ] = None
    concurrency_limit: ConcurrencyLimit = None
    paused: bool = Field(default=False, description="Stop admitting runs from this queue.")
    concurrency_limit_schedule: ConcurrencyLimitSchedule = Field(default_factory=list)
    concurrency_limit_per_key: ConcurrencyLimitPerKey = Field(default_factory=list)
    start_rate: StartRateField = None
    description: Description | None = None
    late_policy: LatePolicy | None = Field(
        default=None, description="Replaces the pool's latePolicy for this queue's runs (absent: the pool's)."
    )


class WorkQueueStatus(Model):
    """Observed state of a WorkQueue; written by the operator only."""

    phase: QueuePhase | None = Field(
        default=None, description="Paused if spec.paused; else Ready when an Online worker serves it; else NotReady."
    )
    conditions: list[Condition] = conditions_field("queue")
    observed_generation: int | None = Field(default=None, ge=0)
    effective_priority: int | None = Field(
        default=None, ge=1, description="The priority admission uses: spec.priority unless another queue holds it."
    )
    requested_priority: int | None = Field(
        default=None,
        ge=1,
        description="spec.priority, or the value assigned when the queue was first seen without one.",
    )
    priority_assigned: bool | None = Field(
        default=None,
        description=(
            "True when requestedPriority was assigned (the queue has no spec.priority); setting spec.priority, "
            "even to that value, is then a new request."
        ),
    )
    priority_requested_at: datetime.datetime | None = Field(
        default=None,
        description="When the operator first saw the current requested priority; later requests win collisions.",
    )
    slots: SlotStatus = Field(default_factory=SlotStatus)
    scheduled_runs: int = Field(default=0, ge=0, description="Runs in this queue waiting in Scheduled.")
    late_runs: int = Field(
        default=0, ge=0, description="Of those, the runs more than 15 s past their scheduled time (Late)."
    )
    last_polled: datetime.datetime | None = Field(
        default=None, description="Latest heartbeat of a worker serving this queue (written at most every 30 s)."
    )


class WorkQueue(Resource):
    """A prioritized queue in one pool; runs name it in spec.workQueue."""

    KIND, PLURAL = meta.WORKQUEUE
    SHORT_NAMES = ("wq",)
    PRINTER_COLUMNS = (
        {"name": "Pool", "type": "string", "jsonPath": ".spec.workPool"},
        {
            "name": "Priority",
            "type": "integer",
            "jsonPath": ".status.effectivePriority",
            "description": "Effective priority (lower runs first)",
        },
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Slots",
            "type": "string",
            "jsonPath": ".status.slots.summary",
            "description": "Active slots / concurrency limit",
        },
        {"name": "Scheduled", "type": "integer", "jsonPath": ".status.scheduledRuns"},
        {
            "name": "Late",
            "type": "integer",
            "priority": 1,
            "jsonPath": ".status.lateRuns",
            "description": "Waiting runs more than 15 s past their scheduled time",
        },
        {
            "name": "Requested",
            "type": "integer",
            "priority": 1,
            "jsonPath": ".status.requestedPriority",
            "description": "The priority the queue asks for (spec.priority, or the value it was assigned)",
        },
        READY_MESSAGE_COLUMN,
    )
    SELECTABLE_FIELDS = (".spec.workPool",)

    spec: WorkQueueSpec
    status: WorkQueueStatus = Field(default_factory=WorkQueueStatus)
