"""`workpools schedule ls | inspect | suspend | resume | trigger`: the handlers and their rendering.
Their arguments are in `cli.main` (which imports nothing heavy); `cli.commands` runs them."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING

from workpools.api.flowschedule import FlowSchedule
from workpools.cli import render
from workpools.cli.render import View, as_data

if TYPE_CHECKING:
    from workpools.cli.commands import Context


def schedules_table(schedules: Sequence[FlowSchedule], now: datetime.datetime) -> str:
    rows = [
        (
            s.metadata.name,
            s.spec.schedule,
            s.spec.time_zone or "UTC",
            "yes" if s.spec.suspend else "no",
            s.status.active_count,
            render.ago(s.status.last_schedule_time, now),
            render.stamp(s.status.next_schedule_time),
            s.spec.template.work_pool,
        )
        for s in schedules
    ]
    return render.table(["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "POOL"], rows)


def schedule_details(s: FlowSchedule, now: datetime.datetime) -> str:
    return "\n".join(
        [
            render.details(
                [
                    ("Name", s.metadata.name),
                    ("Schedule", f"{s.spec.schedule} ({s.spec.time_zone or 'UTC'})"),
                    ("Suspend", s.spec.suspend),
                    ("Concurrency policy", s.spec.concurrency_policy.value),
                    ("Max catch-up runs", s.spec.max_catch_up_runs),
                    ("Pool", s.spec.template.work_pool),
                    ("Last scheduled", render.stamp(s.status.last_schedule_time)),
                    ("Next", render.stamp(s.status.next_schedule_time)),
                    ("Active runs", ", ".join(s.status.active) or "none"),
                ]
            ),
            render.conditions(s.status.conditions, now),
        ]
    )


async def schedule_ls(ctx: Context, args: argparse.Namespace) -> View:
    found = await ctx.schedules.read_flow_schedules()
    return View([as_data(s) for s in found], schedules_table(found, ctx.now()))


async def schedule_inspect(ctx: Context, args: argparse.Namespace) -> View:
    found = await ctx.schedules.read_flow_schedule(args.name)
    return View(as_data(found), schedule_details(found, ctx.now()))


async def schedule_suspend(ctx: Context, args: argparse.Namespace) -> View:
    found = await ctx.schedules.set_suspended(args.name, True)
    return View(as_data(found), f'FlowSchedule "{args.name}" suspended (spec.suspend=true): no runs are created')


async def schedule_resume(ctx: Context, args: argparse.Namespace) -> View:
    found = await ctx.schedules.set_suspended(args.name, False)
    return View(
        as_data(found),
        f'FlowSchedule "{args.name}" resumed (spec.suspend=false); missed times are caught up '
        f"up to maxCatchUpRuns={found.spec.max_catch_up_runs}",
    )


async def schedule_trigger(ctx: Context, args: argparse.Namespace) -> View:
    run = await ctx.schedules.trigger_flow_schedule(args.name, ctx.now())
    return View(as_data(run), f'FlowRun "{run.metadata.name}" created from FlowSchedule "{args.name}"')
