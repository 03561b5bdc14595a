"""Flow control on pools and queues (DESIGN §8): limits by time window, per key, and a start rate.

The schema refuses what it can check itself: a window that is neither a cron start with a
duration nor a daily from/to, a malformed cron expression or clock time, an unknown time zone
(the same checks as FlowSchedule's), a key rule naming both or neither of a label and a
parameter, a malformed label key or parameter name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

from pydantic import ConfigDict, Field

from workpools.api.base import Model, SlotStatus
from workpools.api.flowschedule import CronExpression, TimeZone

LIMIT_MAX = 1_000_000
WINDOWS_MAX = 8
"""Windows per pool or queue: a schedule is a handful of periods (nights, weekends), not a calendar."""
KEY_LIMITS_MAX = 8

CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
"""`HH:MM`, 24-hour: the bounds of a daily window."""
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters."""
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
"""A top-level key of spec.parameters (a base job template variable's name)."""


class LimitWindow(Model):
    """A recurring period during which `limit` replaces the concurrency limit.

    Either `cron` and `durationSeconds` (opens at each cron time, stays open that long) or a
    daily `from`/`to` (wall-clock times; `to` before `from` runs over midnight), read in `timeZone`.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.cron) && has(self.durationSeconds) && !has(self.from) && !has(self.to))"
                    " || (has(self.from) && has(self.to) && !has(self.cron) && !has(self.durationSeconds))",
                    "message": "a window is either cron with durationSeconds, or from and to (daily), not both",
                },
                {
                    "rule": "!has(self.from) || !has(self.to) || self.from != self.to",
                    "message": "a daily window's from and to must differ (for all day, leave the schedule out)",
                },
            ]
        }
    )

    name: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=63,
            pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
            description="Named in the LimitWindow condition, events and hold reasons; absent: its times.",
        ),
    ] = None
    cron: Annotated[
        CronExpression | None,
        Field(description="When the window opens: a cron expression (as FlowSchedule's), with durationSeconds."),
    ] = None
    duration_seconds: int | None = Field(
        default=None, ge=1, le=31_536_000, description="How long the window stays open after each cron time."
    )
    from_: Annotated[
        str | None,
        Field(
            alias="from",
            pattern=CLOCK_TIME,
            description="Daily window: opens at this wall-clock time (HH:MM) in timeZone.",
        ),
    ] = None
    to: Annotated[
        str | None,
        Field(
            pattern=CLOCK_TIME,
            description="Daily window: closes at this wall-clock time (HH:MM); before `from`: the next day.",
        ),
    ] = None
    time_zone: Annotated[
        TimeZone | None, Field(description="IANA time zone the window is read in (e.g. Europe/Berlin); absent: UTC.")
    ] = None
    limit: int = Field(
        ge=0, le=LIMIT_MAX, description="The concurrency limit while the window is open (0: admit nothing)."
    )

    def label(self) -> str:
        """How the window is named to a person: its name, else its times."""
        if self.name:
            return self.name
        zone = f" {self.time_zone}" if self.time_zone else " UTC"
        if self.cron is not None:
            return f"'{self.cron}' for {self.duration_seconds}s{zone}"
        return f"{self.from_}-{self.to}{zone}"


class KeyLimit(Model):
    """At most `limit` runs hold a slot at once per distinct value of a run label or parameter."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.label) != has(self.parameter)",
                    "message": "a key limit names exactly one of label and parameter",
                }
            ]
        }
    )

    label: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=317,
            pattern=LABEL_KEY,
            description="A FlowRun label key (e.g. team): runs with the same value share the limit.",
        ),
    ] = None
    parameter: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=63,
            pattern=PARAMETER_NAME,
            description="A top-level key of FlowRun spec.parameters (e.g. dataset): runs with equal values share it.",
        ),
    ] = None
    limit: int = Field(
        ge=0,
        le=LIMIT_MAX,
        description="Runs at once per value. A run without the label or parameter is not limited by this rule.",
    )

    def key(self) -> str:
        """`label team` or `parameter dataset`: how the key is named to a person."""
        return f"label {self.label}" if self.label is not None else f"parameter {self.parameter}"


class StartRate(Model):
    """A token bucket on grants: `burst` at once after a quiet time, then `perMinute` a minute."""

    per_minute: int = Field(ge=1, le=LIMIT_MAX, description="Grants (run starts) per minute, on average.")
    burst: int = Field(default=1, ge=1, le=LIMIT_MAX, description="Grants at most at once. Default 1.")


ConcurrencyLimitSchedule = Annotated[
    list[LimitWindow],
    Field(
        max_length=WINDOWS_MAX,
        description=(
            "Limits by time window: while a window is open its limit replaces concurrencyLimit (several open: the "
            "lowest). Lowering a limit never stops running runs; new grants wait. The effective limit is "
            "status.slots.limit."
        ),
    ),
]

ConcurrencyLimitPerKey = Annotated[
    list[KeyLimit],
    Field(
        max_length=KEY_LIMITS_MAX,
        description="At most `limit` runs at once per distinct value of a run label or parameter.",
    ),
]

StartRateField = Annotated[
    StartRate | None,
    Field(description="Rate of grants (token bucket), derived from recorded grant times: survives restarts."),
]


class _Limits(Protocol):
    """A pool's or a queue's spec, as far as its limit goes."""

    @property
    def concurrency_limit(self) -> int | None: ...

    @property
    def concurrency_limit_schedule(self) -> Sequence[LimitWindow]: ...


def limit_in_force(spec: _Limits, slots: SlotStatus) -> int | None:
    """The operator's status.slots.limit while limit windows may change it, else the spec's
    (current at once after an edit, before the operator has seen it)."""
    return slots.limit if spec.concurrency_limit_schedule else spec.concurrency_limit
