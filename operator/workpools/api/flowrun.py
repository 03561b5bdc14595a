"""FlowRun: one run to execute, admitted into a pool's and queue's slots and bound to a worker."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

from pydantic import Field

from workpools.api import meta
from workpools.api.base import DNS_LABEL, Model, PoolRef, QueueName, Resource
from workpools.api.conditions import Condition, conditions_field
from workpools.api.meta import NAME_MAX, default_queue_name
from workpools.api.states import StateType, transition_pairs
from workpools.api.worker import WorkerIdentity

MESSAGE_MAX = 4096
"""status.message is bounded: a worker puts the last lines of stderr here, never more."""
RETRIES_MAX = 1000


def _transition_rule() -> dict[str, str]:
    """The CEL transition rule on status.state, generated from the state machine's table."""
    moves = " || ".join(
        f"(oldSelf == '{old}' && self == '{new}')" for old, new in transition_pairs() if old is not None
    )
    return {
        "rule": f"self == oldSelf || {moves}",
        "messageExpression": "'a FlowRun cannot move from ' + oldSelf + ' to ' + self",
        "reason": "FieldValueForbidden",
    }


class SlotGrant(Model):
    """The slot a run holds: when the current slot-holding stretch began, and in which queue."""

    acquired_at: datetime.datetime = Field(description="Start of the current slot-holding stretch.")
    queue: Annotated[str, Field(max_length=NAME_MAX, pattern=DNS_LABEL, description="The queue the slot is in.")]


class FlowRunSpec(Model):
    """Desired state of a FlowRun; owned by the user (the operator never writes it)."""

    work_pool: PoolRef
    work_queue: Annotated[
        QueueName | None,
        Field(
            description="Queue in the pool; absent: the pool's default queue. Immutable once set.",
            json_schema_extra={
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "workQueue is immutable"}]
            },
        ),
    ] = None
    scheduled_time: datetime.datetime | None = Field(
        default=None, description="Not admitted before this time; absent: when the run was created."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Values for the pool's base job template variables (free-form object).",
    )
    command: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=4096,
            description="Command line to run (split like a shell would, no shell); absent: the template command.",
        ),
    ] = None
    cancel: bool = Field(
        default=False, description="Request cancellation: Scheduled runs are Cancelled, active ones Cancelling."
    )
    retries: Annotated[
        int,
        Field(
            ge=0,
            le=RETRIES_MAX,
            description="How many times a Failed or Crashed run is run again (each a new attempt). Default: 0.",
        ),
    ] = 0
    retry_delay_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=31_536_000,
            description="Seconds between a failed attempt and the next one's scheduled time. Default: 0.",
        ),
    ] = 0


class Failure(Model):
    """How an attempt that was retried ended."""

    attempt: int = Field(ge=1, description="The attempt that failed.")
    state: Annotated[StateType, Field(description="Failed or Crashed.")]
    message: Annotated[str | None, Field(max_length=MESSAGE_MAX, description="Its status.message.")] = None
    end_time: datetime.datetime | None = Field(default=None, description="When it ended.")


class FlowRunStatus(Model):
    """Observed state of a FlowRun; the operator and the bound worker write it (see `api.states`)."""

    state: Annotated[
        StateType | None,
        Field(
            description="Prefect state type.",
            json_schema_extra={"x-kubernetes-validations": [_transition_rule()]},
        ),
    ] = None
    state_name: Annotated[
        str | None, Field(max_length=63, description="Prefect state name, e.g. Late or AwaitingRetry.")
    ] = None
    worker: Annotated[
        str | None, Field(max_length=253, description="The Worker this run is bound to (like a pod's nodeName).")
    ] = None
    worker_identity: WorkerIdentity | None = Field(
        default=None,
        description="spec.identity of the Worker, copied at the grant: only that identity may move the run.",
    )
    slot: SlotGrant | None = Field(default=None, description="The slot this run holds, while it holds one.")
    granted_at: datetime.datetime | None = Field(
        default=None,
        description=(
            "When the run was last granted a slot; kept after the slot is released (a start rate is derived "
            "from these times)."
        ),
    )
    scheduled_time: datetime.datetime | None = Field(
        default=None, description="spec.scheduledTime, or the creation time when absent."
    )
    cancelling_since: datetime.datetime | None = Field(
        default=None,
        description="When the run went Cancelling: the pool's cancellingTimeoutSeconds counts from here.",
    )
    attempt: int | None = Field(
        default=None,
        ge=1,
        description="Which attempt this is: 1, then one more at each retry (absent: 1). Workers fence by it.",
    )
    last_failure: Failure | None = Field(
        default=None, description="How the previous attempt ended, when the run is being retried."
    )
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None
    message: Annotated[str | None, Field(max_length=MESSAGE_MAX, description="Why the run is in its state.")] = None
    conditions: list[Condition] = conditions_field("run")
    observed_generation: int | None = Field(default=None, ge=0)


class FlowRun(Resource):
    """One run: Scheduled until the operator admits it into a slot and binds it to a worker."""

    KIND, PLURAL = meta.FLOWRUN
    SHORT_NAMES = ("fr",)
    PRINTER_COLUMNS = (
        {"name": "Pool", "type": "string", "jsonPath": ".spec.workPool"},
        {"name": "Queue", "type": "string", "jsonPath": ".spec.workQueue"},
        {"name": "State", "type": "string", "jsonPath": ".status.state"},
        {"name": "Worker", "type": "string", "jsonPath": ".status.worker"},
        {
            "name": "Attempt",
            "type": "integer",
            "jsonPath": ".status.attempt",
            "description": "Which attempt this is (empty: the first); spec.retries allows that many more",
        },
        {
            "name": "Scheduled",
            "type": "string",
            "jsonPath": ".status.scheduledTime",
            "description": "When the run may start (a date column would show a future time as <invalid>)",
        },
        {
            "name": "State Name",
            "type": "string",
            "priority": 1,
            "jsonPath": ".status.stateName",
            "description": "Prefect's state name, e.g. Late or AwaitingRetry",
        },
        {
            "name": "Admission",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Admitted")].reason',
            "description": "Admitted, or why the run waits (e.g. NoOnlineWorker, PoolLimitReached)",
        },
        {"name": "Message", "type": "string", "priority": 1, "jsonPath": ".status.message"},
    )
    SELECTABLE_FIELDS = (".spec.workPool", ".spec.workQueue", ".status.state", ".status.worker")

    spec: FlowRunSpec
    status: FlowRunStatus = Field(default_factory=FlowRunStatus)


def queue_of(run: FlowRun) -> str:
    """The queue a run waits in and takes its slot from: spec.workQueue, else its pool's default queue."""
    return run.spec.work_queue or default_queue_name(run.spec.work_pool)
