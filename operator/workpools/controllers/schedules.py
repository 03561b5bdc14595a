"""The per-schedule reconciler: creates the runs `core.schedules` says are due, cancels (Replace) and
deletes (history limits) the schedule's own runs, and writes its status when it changed.

Creates go one at a time, oldest scheduled time first, so an operator killed in the middle of a
catch-up leaves a prefix that the next pass continues from; a run name is a function of its
scheduled time, so AlreadyExists (a second replica, or our own create whose answer was lost) means
done. Old runs are deleted only after the status that passes them has landed.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from typing import Any

from workpools.api.base import to_json
from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import FlowSchedule
from workpools.api.meta import ObjectKey
from workpools.client import errors
from workpools.client.patches import merge_patch
from workpools.client.resources import FLOWRUNS, FLOWSCHEDULES
from workpools.controllers import metrics
from workpools.controllers.events import FIELD_MANAGER, post_event
from workpools.controllers.feeders import feed_body
from workpools.controllers.runtime import Runtime
from workpools.core import schedules

logger = logging.getLogger(__name__)


async def reconcile_schedule(rt: Runtime, key: ObjectKey) -> None:
    schedule = rt.schedules.schedules.get(key)
    if schedule is None:
        rt.schedule_deadlines.pop(key, None)
        metrics.forget_schedule(key)
        return
    plan = schedules.plan_schedule(schedule, rt.schedules.runs_of(key), rt.clock())
    for instant in plan.create:
        await _create_run(rt, schedule, instant)
    for run in plan.cancel:
        await _cancel(rt, schedule, run)
    landed = await _write_status(rt, schedule, plan)
    for event in plan.events:
        await post_event(rt, schedule, event)
    if landed:
        for run in plan.delete:
            await _delete(rt, schedule, run)
    metrics.record_schedule(key, plan.status, plan.skipped)
    if plan.wake_at is not None:
        rt.schedule_deadlines[key] = plan.wake_at
    else:
        rt.schedule_deadlines.pop(key, None)


async def _create_run(rt: Runtime, schedule: FlowSchedule, instant: datetime.datetime) -> None:
    manifest = schedules.run_manifest(schedule, instant)
    namespace = schedule.metadata.namespace or ""
    try:
        created = await rt.transport.create(FLOWRUNS, namespace, manifest, field_manager=FIELD_MANAGER)
    except errors.AlreadyExists:
        return  # created before (by us before a restart, or by another replica): done
    _remember(rt, created)
    metrics.record_schedule_run_created(ObjectKey(namespace, schedule.metadata.name))
    await post_event(rt, schedule, schedules.created_event(manifest["metadata"]["name"], instant))


async def _cancel(rt: Runtime, schedule: FlowSchedule, run: FlowRun) -> None:
    """Request cancellation of a run the schedule owns (Replace): the run lifecycle does the rest."""
    meta = run.metadata
    with contextlib.suppress(errors.NotFound, errors.Conflict):  # gone, or changed: the next pass decides again
        updated = await rt.transport.patch(
            FLOWRUNS,
            meta.namespace or "",
            meta.name,
            {"spec": {"cancel": True}},
            field_manager=FIELD_MANAGER,
            resource_version=meta.resource_version,
        )
        _remember(rt, updated)
        await post_event(rt, schedule, schedules.replaced_event(run))


async def _write_status(rt: Runtime, schedule: FlowSchedule, plan: schedules.SchedulePlan) -> bool:
    """Patch the status if it differs from the plan's; False when the schedule changed or went meanwhile."""
    patch = merge_patch(to_json(schedule.status, as_read=True), to_json(plan.status))
    if not patch:
        return True
    meta = schedule.metadata
    try:
        updated = await rt.transport.patch(
            FLOWSCHEDULES,
            meta.namespace or "",
            meta.name,
            {"status": patch},
            status=True,
            field_manager=FIELD_MANAGER,
            # lastScheduleTime only moves forward from the version decided on (a second replica's
            # older decision must not move it back).
            resource_version=meta.resource_version,
        )
    except (errors.Conflict, errors.NotFound):
        return False
    rt.schedules.put(updated)
    return True


async def _delete(rt: Runtime, schedule: FlowSchedule, run: FlowRun) -> None:
    meta = run.metadata
    with contextlib.suppress(errors.NotFound, errors.Conflict):
        await rt.transport.delete(FLOWRUNS, meta.namespace or "", meta.name, uid=meta.uid)
        await post_event(rt, schedule, schedules.deleted_event(run))


def _remember(rt: Runtime, body: dict[str, Any]) -> None:
    """A run we wrote goes into both stores at once, as its watch event would (which then changes
    nothing): its pool is woken, and so is this schedule, whose next pass counts the run in its
    status (this pass planned the status before the run existed)."""
    feed_body(rt, dict(body))
