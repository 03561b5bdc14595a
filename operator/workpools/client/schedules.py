"""FlowSchedules through the Kubernetes API: list, read, suspend, resume, trigger.

    schedules = SchedulesClient(transport, "team-a")
    await schedules.suspend_flow_schedule("nightly")       # patches spec.suspend only
    run = await schedules.trigger_flow_schedule("nightly")  # one run now, from the template

Spec writes are JSON merge patches of exactly one field under the field manager `workpools-cli`,
so they sit alongside a GitOps tool that owns the rest of the spec.
"""

from __future__ import annotations

import datetime

from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import FlowSchedule
from workpools.client.resources import FLOWRUNS, FLOWSCHEDULES
from workpools.client.transport import Transport
from workpools.client.workpools import FIELD_MANAGER
from workpools.core.schedules import run_manifest


class SchedulesClient:
    def __init__(self, transport: Transport, namespace: str | None = None):
        self._transport = transport
        self.namespace = namespace or transport.namespace

    async def read_flow_schedules(self) -> list[FlowSchedule]:
        """Every schedule of the namespace, by name."""
        found = [FlowSchedule.model_validate(b) async for b in self._transport.list_all(FLOWSCHEDULES, self.namespace)]
        return sorted(found, key=lambda s: s.metadata.name)

    async def read_flow_schedule(self, name: str) -> FlowSchedule:
        """Schedule `name`; `NotFound` without it."""
        return FlowSchedule.model_validate(await self._transport.get(FLOWSCHEDULES, self.namespace, name))

    async def set_suspended(self, name: str, suspend: bool) -> FlowSchedule:
        """Set `spec.suspend` (and only that field)."""
        body = await self._transport.patch(
            FLOWSCHEDULES, self.namespace, name, {"spec": {"suspend": suspend}}, field_manager=FIELD_MANAGER
        )
        return FlowSchedule.model_validate(body)

    async def trigger_flow_schedule(self, name: str, now: datetime.datetime) -> FlowRun:
        """Create one run from the schedule's template now, owned by the schedule (as
        `kubectl create job --from=cronjob/NAME`); it moves no scheduled time."""
        schedule = await self.read_flow_schedule(name)
        body = run_manifest(schedule, now.replace(microsecond=0), manual=True)
        created = await self._transport.create(FLOWRUNS, self.namespace, body, field_manager=FIELD_MANAGER)
        return FlowRun.model_validate(created)
