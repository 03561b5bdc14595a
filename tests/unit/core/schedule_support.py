"""Builders for FlowSchedule tests: a schedule, the runs it owns, and a simulated operator that
creates what `plan_schedule` asks for (AlreadyExists = done) with an injected clock."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import FlowSchedule
from workpools.api.states import StateType
from workpools.core import schedules

UTC = datetime.UTC
CREATED = datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
UID = "uid-s"


def schedule(
    cron: str = "* * * * *",
    *,
    name: str = "s",
    created: datetime.datetime = CREATED,
    last: datetime.datetime | None = None,
    conditions: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> FlowSchedule:
    status: dict[str, Any] = {"conditions": conditions or []}
    if last is not None:
        status["lastScheduleTime"] = last.isoformat()
    return FlowSchedule.model_validate(
        {
            "apiVersion": "workpools.dev/v1alpha1",
            "kind": "FlowSchedule",
            "metadata": {
                "name": name,
                "namespace": "ns",
                "uid": UID,
                "generation": 1,
                "creationTimestamp": created.isoformat(),
            },
            "spec": {"schedule": cron, "template": {"workPool": "p"}, **spec},
            "status": status,
        }
    )


def run_for(
    owner: FlowSchedule,
    instant: datetime.datetime,
    state: StateType | None = StateType.SCHEDULED,
    *,
    cancel: bool = False,
) -> FlowRun:
    body = schedules.run_manifest(owner, instant)
    body["metadata"]["uid"] = f"uid-{body['metadata']['name']}"
    body["spec"]["cancel"] = cancel
    if state is not None:
        body["status"] = {"state": state.value}
    return FlowRun.model_validate(body)


def with_status(owner: FlowSchedule, plan: schedules.SchedulePlan) -> FlowSchedule:
    return owner.model_copy(update={"status": plan.status})


@dataclass
class Cluster:
    """What the API server holds: the schedule and its runs by name. Creates are idempotent by name."""

    schedule: FlowSchedule
    runs: dict[str, FlowRun] = field(default_factory=dict)
    creates: list[str] = field(default_factory=list)
    """Every create request sent, including those answered AlreadyExists."""

    def run_pass(self, now: datetime.datetime, *, status_lands: bool = True, crash_after: int | None = None) -> None:
        """One operator pass at `now`. `crash_after`: the process dies after that many creates (no
        status write). `status_lands` False: the status write is lost."""
        plan = schedules.plan_schedule(self.schedule, list(self.runs.values()), now)
        for i, instant in enumerate(plan.create):
            if crash_after is not None and i >= crash_after:
                return
            name = schedules.run_name(self.schedule.metadata.name, instant)
            self.creates.append(name)
            self.runs.setdefault(name, run_for(self.schedule, instant))
        if crash_after is not None and crash_after < len(plan.create):
            return
        if status_lands:
            self.schedule = with_status(self.schedule, plan)

    def finish_all(self, state: StateType = StateType.COMPLETED) -> None:
        for name, r in list(self.runs.items()):
            if schedules.is_active(r):
                self.runs[name] = r.model_copy(update={"status": r.status.model_copy(update={"state": state})})

    def times(self) -> list[datetime.datetime]:
        return sorted(t for r in self.runs.values() if (t := schedules.scheduled_at(r)) is not None)
