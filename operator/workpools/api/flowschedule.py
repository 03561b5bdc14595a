"""FlowSchedule: FlowRuns created on a cron schedule, the way a CronJob creates Jobs.

The schema refuses what it can check itself: a malformed cron expression (a pattern of the five
fields, each value in its range, or one of the `@` macros), a time zone that is not an IANA name
(the names of the `tzdata` package, pinned), negative counts. What only evaluating the
expression finds (a reversed range such as `5-1`, a date that never comes such as February 30)
becomes the `Invalid` condition and one Warning event (core/schedules.py).
"""

from __future__ import annotations

import datetime
import functools
import importlib.resources
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from workpools.api import meta
from workpools.api.base import DNS_LABEL, Model, QueueName, Resource
from workpools.api.conditions import READY_MESSAGE_COLUMN, Condition, conditions_field
from workpools.api.meta import GROUP, POOL_NAME_MAX
from workpools.api.phases import CrdEnum

SCHEDULE_NAME_MAX = 52
"""A run is named `<schedule>-<minutes since the epoch>` (as a CronJob names its Jobs): 52 leaves
room for the 10-digit suffix within a 63-character name, for the next 19,000 years."""

SCHEDULE_LABEL = f"{GROUP}/schedule"
"""Label on every run a schedule creates: the schedule's name (`kubectl get fr -l workpools.dev/schedule=S`)."""
SCHEDULED_AT_ANNOTATION = f"{GROUP}/scheduled-at"
"""Annotation on every run a schedule creates: the cron instant it is for (RFC 3339, UTC)."""

MANUAL_ANNOTATION = f"{GROUP}/manual"
"""On a run made by `workpools schedule trigger`: it counts as the schedule's (active runs, history)
but is for no scheduled time, so it never moves the catch-up window."""

MAX_CATCH_UP_RUNS = 100
"""The highest maxCatchUpRuns: CronJob gives up beyond 100 missed start times, and so do we."""
ACTIVE_NAMES_MAX = 50
"""status.active lists at most this many names (activeCount counts them all)."""

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The `@` forms CronJob accepts, and the five fields each stands for (cronsim knows only fields)."""


def _field(value: str) -> str:
    element = rf"([*]|({value})(-({value}))?)(/[1-9][0-9]?)?"
    return rf"{element}(,{element})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
CRON_PATTERN = (
    r"(?i)^("
    + "|".join(MACROS)
    + "|"
    + " +".join(
        _field(values)
        for values in (
            "[0-5]?[0-9]",  # minute
            "[01]?[0-9]|2[0-3]",  # hour
            "0?[1-9]|[12][0-9]|3[01]",  # day of month
            f"0?[1-9]|1[0-2]|{_MONTHS}",  # month
            f"[0-7]|{_DAYS}",  # day of week (0 and 7 are Sunday)
        )
    )
    + ")$"
)
"""Five cron fields (minute hour day-of-month month day-of-week: numbers in range, `*`, ranges,
lists, steps `/n`, month and day names) or an `@` macro. RE2 and Python's re read it alike."""


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone name of the pinned `tzdata` package: the values timeZone accepts."""
    return tuple(sorted(importlib.resources.files("tzdata").joinpath("zones").read_text().split()))


def time_zone_rule() -> dict[str, str]:
    names = ", ".join(f"'{name}'" for name in time_zones())
    return {
        "rule": f"self in [{names}]",
        "messageExpression": "'unknown time zone ' + self + '; use an IANA name such as Europe/Berlin or UTC'",
        "reason": "FieldValueInvalid",
    }


def cron_rule() -> dict[str, str]:
    """The CEL rule that refuses a malformed cron expression, with a message that shows the shape."""
    return {
        "rule": f"self.matches('{CRON_PATTERN}')",
        "messageExpression": (
            "'invalid cron expression ' + self + ': want five fields (minute 0-59, hour 0-23, "
            "day of month 1-31, month 1-12 or jan-dec, day of week 0-7 or sun-sat; "
            "* , - and /n allowed) or @hourly, @daily, @weekly, @monthly, @yearly'"
        ),
        "reason": "FieldValueInvalid",
    }


CronExpression = Annotated[
    str, Field(min_length=1, max_length=256, json_schema_extra={"x-kubernetes-validations": [cron_rule()]})
]
"""A cron expression the API server checks (CRON_PATTERN)."""
TimeZone = Annotated[
    str, Field(min_length=1, max_length=64, json_schema_extra={"x-kubernetes-validations": [time_zone_rule()]})
]
"""An IANA time zone name the API server checks (the pinned tzdata's names)."""


class ConcurrencyPolicy(str, CrdEnum):
    """What to do when a run is due while an earlier run of the schedule is still active (as CronJob)."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class FlowRunTemplate(Model):
    """The spec of each run the schedule creates (a FlowRun's spec without scheduledTime and cancel:
    the operator sets the scheduled instant, and cancels only under concurrencyPolicy Replace)."""

    work_pool: Annotated[
        str,
        Field(min_length=1, max_length=POOL_NAME_MAX, pattern=DNS_LABEL, description="WorkPool of the runs."),
    ]
    work_queue: QueueName | None = Field(default=None, description="Queue in the pool; absent: its default queue.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Values for the pool's base job template variables (free-form object)."
    )
    command: Annotated[
        str | None,
        Field(min_length=1, max_length=4096, description="Command line to run; absent: the template command."),
    ] = None


class FlowScheduleSpec(Model):
    """Desired state of a FlowSchedule; owned by the user (the operator never writes it)."""

    schedule: Annotated[
        CronExpression,
        Field(
            description=(
                "Cron expression: minute hour day-of-month month day-of-week (e.g. `30 2 * * 1-5`), "
                "or @hourly, @daily, @weekly, @monthly, @yearly."
            )
        ),
    ]
    time_zone: Annotated[
        TimeZone | None,
        Field(description="IANA time zone the schedule is read in (e.g. Europe/Berlin); absent: UTC."),
    ] = None
    template: FlowRunTemplate = Field(description="The spec of each FlowRun created.")
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW,
        description=(
            "Allow: runs may overlap. Forbid: no new run while one is active (missed times are caught up "
            "one at a time after it ends). Replace: the active runs are cancelled (spec.cancel) and only "
            "the newest due time gets a run."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="A scheduled time more than this many seconds past is skipped (counted missed). Default: none.",
    )
    max_catch_up_runs: int = Field(
        default=1,
        ge=1,
        le=MAX_CATCH_UP_RUNS,
        description=(
            "When several scheduled times are due at once (after an outage, or on resume), create runs for "
            "at most this many, the most recent; the older ones are skipped. Default 1, as a CronJob."
        ),
    )
    suspend: bool = Field(default=False, description="Create no runs while true (running ones go on).")
    successful_runs_history_limit: int = Field(
        default=3, ge=0, le=1000, description="Completed runs to keep; older ones are deleted. Default 3."
    )
    failed_runs_history_limit: int = Field(
        default=1, ge=0, le=1000, description="Failed, Crashed or Cancelled runs to keep. Default 1."
    )


class FlowScheduleStatus(Model):
    """Observed state of a FlowSchedule; written by the operator only."""

    last_schedule_time: datetime.datetime | None = Field(
        default=None, description="The latest scheduled time handled: a run was created for it, or it was skipped."
    )
    next_schedule_time: datetime.datetime | None = Field(
        default=None, description="The next scheduled time (absent while suspended or invalid)."
    )
    active: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=ACTIVE_NAMES_MAX,
        description=f"Names of the schedule's runs not yet finished (the first {ACTIVE_NAMES_MAX}).",
    )
    active_count: int = Field(default=0, ge=0, description="How many of the schedule's runs are not finished.")
    last_successful_time: datetime.datetime | None = Field(
        default=None, description="Scheduled time of the latest run that Completed."
    )
    conditions: list[Condition] = conditions_field("schedule")
    observed_generation: int | None = Field(default=None, ge=0)


class FlowSchedule(Resource):
    """Creates a FlowRun at every time of a cron schedule; the runs are owned by the schedule."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.metadata.name.size() <= {SCHEDULE_NAME_MAX}",
                    "message": f"a FlowSchedule name must be at most {SCHEDULE_NAME_MAX} characters, so that its"
                    " runs `<schedule>-<minutes since the epoch>` are valid names",
                }
            ]
        }
    )

    KIND, PLURAL = meta.FLOWSCHEDULE
    SHORT_NAMES = ("fs",)
    PRINTER_COLUMNS = (
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Timezone", "type": "string", "jsonPath": ".spec.timeZone", "priority": 1},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
        {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount"},
        {"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime", "description": "Since the last run"},
        {
            "name": "Next",
            "type": "string",
            "jsonPath": ".status.nextScheduleTime",
            "description": "The next scheduled time (a date column would show a future time as <invalid>)",
        },
        {"name": "Pool", "type": "string", "jsonPath": ".spec.template.workPool", "priority": 1},
        READY_MESSAGE_COLUMN,
    )

    spec: FlowScheduleSpec
    status: FlowScheduleStatus = Field(default_factory=FlowScheduleStatus)
