"""WorkPool: a pool of concurrency slots that workers serve and queues feed."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from workpools.api import meta
from workpools.api.base import ConcurrencyLimit, Description, LatePolicy, Model, Resource, SlotStatus
from workpools.api.conditions import READY_MESSAGE_COLUMN, Condition, conditions_field
from workpools.api.flowcontrol import ConcurrencyLimitPerKey, ConcurrencyLimitSchedule, StartRateField
from workpools.api.meta import POOL_NAME_MAX
from workpools.api.phases import PoolPhase


class BaseJobTemplate(Model):
    """Prefect's base job template: what a worker runs, and the variables runs may set."""

    model_config = ConfigDict(populate_by_name=True)

    job_configuration: dict[str, Any] = Field(
        alias="job_configuration",
        description=(
            "The job a worker runs; `{{ name }}` placeholders are filled from the run's parameters "
            "and the variables' defaults. The process worker reads `command`."
        ),
    )
    variables: dict[str, Any] = Field(
        description="JSON schema of the variables (`properties`, `required`); each `{{ name }}` must be declared.",
    )


Seconds = Annotated[int | None, Field(ge=1, le=31_536_000)]

CANCELLING_TIMEOUT_DEFAULT = 300
CANCELLING_TIMEOUT_MIN = 15


class WorkPoolSpec(Model):
    """Desired state of a WorkPool; owned by the user (the operator never writes it)."""

    type: Annotated[str, Field(min_length=1, max_length=63, description="Worker type that serves this pool.")] = (
        "process"
    )
    description: Description | None = None
    paused: bool = Field(default=False, description="Stop admitting runs from every queue of the pool.")
    concurrency_limit: ConcurrencyLimit = None
    concurrency_limit_schedule: ConcurrencyLimitSchedule = Field(default_factory=list)
    concurrency_limit_per_key: ConcurrencyLimitPerKey = Field(default_factory=list)
    start_rate: StartRateField = None
    base_job_template: BaseJobTemplate | None = Field(
        default=None, description="Template for the jobs workers run for this pool."
    )
    pending_timeout_seconds: Seconds = Field(
        default=None,
        description="A Pending run not started by its worker within this time returns to Scheduled. Default: off.",
    )
    worker_ttl_after_offline_seconds: Seconds = Field(
        default=None,
        alias="workerTTLAfterOfflineSeconds",
        description="Delete Workers that stayed Offline this long. Default: keep them.",
    )
    cancelling_timeout_seconds: Annotated[
        int,
        Field(
            ge=CANCELLING_TIMEOUT_MIN,
            le=31_536_000,
            description=(
                "A run Cancelling longer than this is marked Cancelled and frees its slot, once its worker, alive "
                "and heartbeating since the cancellation, has had this long to stop it (a lost worker's runs are "
                f"reclaimed sooner). At least {CANCELLING_TIMEOUT_MIN}s: the worker stops a run with SIGTERM, then "
                f"SIGKILL 10s later. Default: {CANCELLING_TIMEOUT_DEFAULT} (as Prefect)."
            ),
        ),
    ] = CANCELLING_TIMEOUT_DEFAULT
    late_policy: LatePolicy | None = Field(
        default=None, description="What happens to runs waiting past their time; a queue's own replaces it."
    )
    finished_run_ttl_seconds: Seconds = Field(
        default=None,
        alias="finishedRunTTLSeconds",
        description=(
            "Delete FlowRuns this long after they finished (status.endTime; a run with a retry left is not "
            "finished), spread out and rate-limited. Default: keep them."
        ),
    )


class WorkerCounts(Model):
    online: int = Field(default=0, ge=0, description="Workers whose heartbeat is recent.")
    total: int = Field(default=0, ge=0, description="Workers registered with the pool.")


class WorkPoolStatus(Model):
    """Observed state of a WorkPool; written by the operator only."""

    phase: PoolPhase | None = Field(
        default=None, description="Paused if spec.paused; else Ready when a worker is Online; else NotReady."
    )
    conditions: list[Condition] = conditions_field("pool")
    observed_generation: int | None = Field(default=None, ge=0)
    default_queue: str | None = Field(
        default=None, max_length=63, description="The queue runs go to when they name none."
    )
    slots: SlotStatus = Field(default_factory=SlotStatus)
    workers: WorkerCounts = Field(default_factory=WorkerCounts)
    queues: int = Field(default=0, ge=0, description="Number of WorkQueues in the pool.")
    last_transition_time: datetime.datetime | None = Field(default=None, description="When the phase last changed.")


class WorkPool(Resource):
    """A pool of slots: queues feed it runs, workers serve it, concurrencyLimit caps it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.metadata.name.size() <= {POOL_NAME_MAX}",
                    "message": f"a WorkPool name must be at most {POOL_NAME_MAX} characters,"
                    " so that its default queue `<pool>-default` is a valid name",
                }
            ]
        }
    )

    KIND, PLURAL = meta.WORKPOOL
    SHORT_NAMES = ("wp",)
    PRINTER_COLUMNS = (
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Workers", "type": "integer", "jsonPath": ".status.workers.online", "description": "Online workers"},
        {
            "name": "Slots",
            "type": "string",
            "jsonPath": ".status.slots.summary",
            "description": "Active slots / concurrency limit",
        },
        {"name": "Queues", "type": "integer", "jsonPath": ".status.queues"},
        READY_MESSAGE_COLUMN,
    )

    spec: WorkPoolSpec = Field(default_factory=WorkPoolSpec)
    status: WorkPoolStatus = Field(default_factory=WorkPoolStatus)
