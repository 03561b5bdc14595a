"""What a FlowSchedule should do now: which scheduled times get a run, which runs are cancelled or
deleted, its status, and when time alone will next change it. Pure: `now` is an argument.

The rules follow Kubernetes' CronJob controller where it has one:

* The scheduled times considered are those after `status.lastScheduleTime` (or the schedule's
  creation) up to `now`; of those, at most `spec.maxCatchUpRuns`, the most recent, and none older
  than `startingDeadlineSeconds`. The others are skipped: one `MissedSchedule` warning says how many.
* Times after the newest run the schedule already owns are the only ones considered too. So after a
  restart in the middle of a catch-up (runs created, lastScheduleTime not yet written) the remaining
  times are created and none twice; and run names are a function of the scheduled time
  (`<schedule>-<minutes since the epoch>`), so a second replica creating the same run gets
  AlreadyExists, which means done.
* concurrencyPolicy: Allow creates all of them (oldest first); Forbid creates nothing while a run
  is active, then one at a time, oldest first; Replace requests cancellation (`spec.cancel`) of the
  active runs (children of the schedule, so the operator may write their spec) and creates only
  the newest due time.
* Finished runs beyond the history limits are deleted, oldest first, only once lastScheduleTime has
  passed them (a run deleted before that could be created again).

Cron expressions are evaluated by cronsim, in `spec.timeZone`, with Debian cron's rules at DST
changes: a job at a fixed local time that falls into the spring gap runs at the end of the gap, one
that falls into the repeated hour in autumn runs once; jobs whose minute or hour field is `*` or a
step follow real time (an hourly job runs 23 times on the spring day and 25 in autumn).
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cronsim import CronSim, CronSimError

from workpools.api.base import timestamp, to_json
from workpools.api.conditions import ConditionType, Reason
from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import (
    ACTIVE_NAMES_MAX,
    MACROS,
    MANUAL_ANNOTATION,
    SCHEDULE_LABEL,
    SCHEDULED_AT_ANNOTATION,
    ConcurrencyPolicy,
    FlowSchedule,
    FlowScheduleSpec,
    FlowScheduleStatus,
)
from workpools.api.meta import API_VERSION
from workpools.api.states import COMPLETED, TERMINAL
from workpools.core.statuses import Event, EventType, set_condition

UTC = datetime.UTC
SKIPPED_COUNT_MAX = 1000
"""Skipped times are counted up to this many (the message then says "more than"): an outage of a
year on a per-minute schedule must not cost half a million cron steps."""


class InvalidScheduleError(ValueError):
    """The expression or the time zone passed the schema but cannot be evaluated."""


@dataclass(frozen=True)
class Cron:
    """A schedule that can be evaluated: the five-field expression and the zone it is read in."""

    expression: str
    zone: datetime.tzinfo

    def before(self, moment: datetime.datetime) -> Iterator[datetime.datetime]:
        """Scheduled times at or before `moment`, newest first, in UTC."""
        # cronsim's reverse iteration starts strictly before a whole second; a microsecond later
        # makes `moment` itself count when it is a scheduled time.
        start = (moment + datetime.timedelta(microseconds=1)).astimezone(self.zone)
        for tick in CronSim(self.expression, start, reverse=True):
            yield tick.astimezone(UTC)

    def after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first scheduled time strictly after `moment`, in UTC."""
        return next(iter(CronSim(self.expression, moment.astimezone(self.zone)))).astimezone(UTC)


def parse(schedule: str, time_zone: str | None = None) -> Cron:
    """`spec.schedule` read in `spec.timeZone`; raises InvalidScheduleError with a message for a person."""
    expression = MACROS.get(schedule.strip().lower(), schedule)
    try:
        zone: datetime.tzinfo = zoneinfo.ZoneInfo(time_zone) if time_zone else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidScheduleError(f"unknown time zone {time_zone!r}") from error
    try:
        CronSim(expression, datetime.datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as error:
        raise InvalidScheduleError(f"schedule {schedule!r} cannot be evaluated: {error}") from error
    return Cron(expression, zone)


@functools.lru_cache(maxsize=1024)
def parse_cached(schedule: str, time_zone: str | None) -> Cron | str:
    try:
        return parse(schedule, time_zone)
    except InvalidScheduleError as error:
        return str(error)


def run_name(schedule: str, instant: datetime.datetime) -> str:
    """`<schedule>-<minutes since the epoch>`: one name per scheduled time, as CronJob names its Jobs."""
    return f"{schedule}-{int(instant.timestamp()) // 60}"


def scheduled_at(run: FlowRun) -> datetime.datetime | None:
    """The scheduled time a run of a schedule is for (its annotation; else its spec.scheduledTime)."""
    raw = run.metadata.annotations.get(SCHEDULED_AT_ANNOTATION)
    if raw is not None:
        try:
            return datetime.datetime.fromisoformat(raw).astimezone(UTC)
        except ValueError:
            pass
    return run.spec.scheduled_time


def owned_by(run: FlowRun, schedule: FlowSchedule) -> bool:
    return any(
        ref.get("kind") == FlowSchedule.KIND and ref.get("uid") == schedule.metadata.uid
        for ref in run.metadata.owner_references
    )


def run_manifest(schedule: FlowSchedule, instant: datetime.datetime, *, manual: bool = False) -> dict[str, Any]:
    """The FlowRun for one scheduled time: the template's spec, owned by and labelled with the schedule.
    `manual`: a run asked for now by a person (`workpools schedule trigger`), for no scheduled time."""
    meta = schedule.metadata
    name = f"{meta.name}-manual-{int(instant.timestamp())}" if manual else run_name(meta.name, instant)
    annotation = MANUAL_ANNOTATION if manual else SCHEDULED_AT_ANNOTATION
    return {
        "apiVersion": API_VERSION,
        "kind": FlowRun.KIND,
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": {SCHEDULE_LABEL: meta.name},
            "annotations": {annotation: timestamp(instant)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": FlowSchedule.KIND,
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {**to_json(schedule.spec.template), "scheduledTime": timestamp(instant)},
    }


@dataclass(frozen=True)
class SchedulePlan:
    create: tuple[datetime.datetime, ...] = ()
    """Scheduled times to create a run for, oldest first (in this order: a restart leaves no gap)."""
    cancel: tuple[FlowRun, ...] = ()
    """Active runs to cancel (concurrencyPolicy Replace: every one older than the newest scheduled run)."""
    delete: tuple[FlowRun, ...] = ()
    """Finished runs beyond the history limits."""
    status: FlowScheduleStatus = field(default_factory=FlowScheduleStatus)
    events: tuple[Event, ...] = ()
    skipped: int = 0
    """Scheduled times passed over for good in this pass (capped, too late, replaced)."""
    wake_at: datetime.datetime | None = None
    """When time alone next changes this schedule (its next scheduled time)."""


@dataclass(frozen=True)
class Due:
    times: tuple[datetime.datetime, ...]
    """The times that may get a run, oldest first: at most `limit`, the most recent, none too late."""
    skipped: int
    """Earlier times of the window passed over (capped, too late); SKIPPED_COUNT_MAX means at least that."""
    newest: datetime.datetime | None
    """The newest scheduled time in the window, whether it may get a run or is too late."""


def due_times(
    cron: Cron, *, after: datetime.datetime, now: datetime.datetime, limit: int, deadline: datetime.timedelta | None
) -> Due:
    """The scheduled times in (after, now]: the most recent `limit` of them that are within `deadline`."""
    times: list[datetime.datetime] = []
    skipped = 0
    newest = None
    for tick in cron.before(now):
        if tick <= after or skipped >= SKIPPED_COUNT_MAX:
            break
        newest = newest or tick
        if len(times) < limit and (deadline is None or now - tick <= deadline):
            times.append(tick)
        else:
            skipped += 1
    return Due(tuple(reversed(times)), skipped, newest)


def is_active(run: FlowRun) -> bool:
    return run.status.state not in TERMINAL


def plan_schedule(schedule: FlowSchedule, runs: Sequence[FlowRun], now: datetime.datetime) -> SchedulePlan:
    """Everything the schedule should do at `now`, given the runs it owns (others are ignored)."""
    spec, old = schedule.spec, schedule.status
    generation = schedule.metadata.generation
    mine = sorted((r for r in runs if owned_by(r, schedule)), key=_order)
    active = [r for r in mine if is_active(r)]
    status = FlowScheduleStatus(
        last_schedule_time=old.last_schedule_time,
        active=[r.metadata.name for r in active[:ACTIVE_NAMES_MAX]],
        active_count=len(active),
        last_successful_time=_latest(
            [old.last_successful_time, *(scheduled_at(r) for r in mine if r.status.state is COMPLETED)]
        ),
        conditions=list(old.conditions),
        observed_generation=generation,
    )
    delete = tuple(_beyond_history(spec, mine, old.last_schedule_time))
    events: list[Event] = []

    def condition(type_: ConditionType, value: bool, reason: Reason, message: str) -> None:
        status.conditions = set_condition(
            status.conditions, type_, value, reason, message, generation=generation, now=now
        )

    parsed = parse_cached(spec.schedule, spec.time_zone)
    if isinstance(parsed, str):
        if not _true(old, ConditionType.INVALID):
            events.append(Event(EventType.WARNING, Reason.INVALID_SCHEDULE, parsed))
        condition(ConditionType.INVALID, True, Reason.INVALID_SCHEDULE, parsed)
        condition(ConditionType.READY, False, Reason.INVALID_SCHEDULE, parsed)
        return SchedulePlan(delete=delete, status=status, events=tuple(events))
    condition(ConditionType.INVALID, False, Reason.VALID, "the schedule and time zone can be evaluated")
    if spec.suspend:
        condition(ConditionType.READY, False, Reason.SUSPENDED, "suspended (spec.suspend): no runs are created")
        return SchedulePlan(delete=delete, status=status, events=tuple(events))

    newest_run = _latest([scheduled_at(r) for r in mine if MANUAL_ANNOTATION not in r.metadata.annotations])
    after = _latest([old.last_schedule_time or schedule.metadata.creation_timestamp or now, newest_run])
    assert after is not None
    deadline = (
        None if spec.starting_deadline_seconds is None else datetime.timedelta(seconds=spec.starting_deadline_seconds)
    )
    due = due_times(parsed, after=after, now=now, limit=spec.max_catch_up_runs, deadline=deadline)
    create, cancel, skipped, handled = _apply_policy(spec.concurrency_policy, due, active)
    if handled is not None:
        status.last_schedule_time = _latest([old.last_schedule_time, handled])
        if skipped:
            events.append(Event(EventType.WARNING, Reason.MISSED_SCHEDULE, _missed_message(skipped, spec)))
    if spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
        # Level-based: whatever is active besides the newest scheduled run is cancelled, so a cancel
        # write that did not land is made again by the next pass.
        newest = _latest([*create, newest_run])
        cancel = tuple(r for r in active if not r.spec.cancel and (scheduled_at(r) or newest or now) < (newest or now))
    # The runs this pass creates are active as soon as they exist: counted now, so the status the
    # pass writes is already true (a pass after the creates would otherwise be needed to say so).
    created = [run_name(schedule.metadata.name, instant) for instant in create]
    status.active = [*status.active, *created][:ACTIVE_NAMES_MAX]
    status.active_count += len(created)
    status.next_schedule_time = parsed.after(now)
    condition(
        ConditionType.READY,
        True,
        Reason.SCHEDULED,
        f"next run at {timestamp(status.next_schedule_time)}",
    )
    return SchedulePlan(
        create=create,
        cancel=cancel,
        delete=delete,
        status=status,
        events=tuple(events),
        skipped=skipped if handled is not None else 0,
        wake_at=status.next_schedule_time,
    )


def _apply_policy(
    policy: ConcurrencyPolicy, due: Due, active: Sequence[FlowRun]
) -> tuple[tuple[datetime.datetime, ...], tuple[FlowRun, ...], int, datetime.datetime | None]:
    """(times to create, runs to cancel, times skipped, the newest time now done with) under the policy."""
    if not due.times:  # nothing due, or every due time too late: those are done with
        return (), (), due.skipped, due.newest
    if policy is ConcurrencyPolicy.FORBID:
        if active:  # the due times wait, not consumed, until the active run ends
            return (), (), 0, None
        return due.times[:1], (), due.skipped, due.times[0]  # one at a time, oldest first
    if policy is ConcurrencyPolicy.REPLACE:
        return due.times[-1:], (), due.skipped + len(due.times) - 1, due.times[-1]
    return due.times, (), due.skipped, due.times[-1]


def _missed_message(skipped: int, spec: FlowScheduleSpec) -> str:
    count = f"more than {SKIPPED_COUNT_MAX}" if skipped >= SKIPPED_COUNT_MAX else str(skipped)
    limits = [f"maxCatchUpRuns={spec.max_catch_up_runs}"]
    if spec.starting_deadline_seconds is not None:
        limits.append(f"startingDeadlineSeconds={spec.starting_deadline_seconds}")
    if spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
        limits.append("concurrencyPolicy=Replace")
    return f"skipped {count} missed scheduled time(s) ({', '.join(limits)})"


def _beyond_history(
    spec: FlowScheduleSpec, runs: Sequence[FlowRun], handled_until: datetime.datetime | None
) -> list[FlowRun]:
    """Finished runs past the history limits, oldest first; only those lastScheduleTime has passed."""
    if handled_until is None:
        return []
    finished = [r for r in runs if not is_active(r)]
    succeeded = [r for r in finished if r.status.state is COMPLETED]
    failed = [r for r in finished if r.status.state is not COMPLETED]
    surplus = [
        *succeeded[: max(0, len(succeeded) - spec.successful_runs_history_limit)],
        *failed[: max(0, len(failed) - spec.failed_runs_history_limit)],
    ]
    return [r for r in sorted(surplus, key=_order) if (scheduled_at(r) or handled_until) <= handled_until]


def _order(run: FlowRun) -> tuple[datetime.datetime, str]:
    return (scheduled_at(run) or datetime.datetime.min.replace(tzinfo=UTC), run.metadata.name)


def _latest(moments: Sequence[datetime.datetime | None]) -> datetime.datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def _true(status: FlowScheduleStatus, type_: ConditionType) -> bool:
    return any(c.type == type_.value and c.status.value == "True" for c in status.conditions)


def created_event(run: str, instant: datetime.datetime) -> Event:
    return Event(EventType.NORMAL, Reason.SUCCESSFUL_CREATE, f"created run {run} for {timestamp(instant)}")


def replaced_event(run: FlowRun) -> Event:
    return Event(EventType.NORMAL, Reason.REPLACED, f"cancelled run {run.metadata.name} (concurrencyPolicy Replace)")


def deleted_event(run: FlowRun) -> Event:
    return Event(
        EventType.NORMAL, Reason.SUCCESSFUL_DELETE, f"deleted finished run {run.metadata.name} (history limit)"
    )
