"""The verbs of `workpools`: each one a coroutine of the clients and the parsed arguments.

`main.py` parses; this module holds everything a command needs at run time (the clients, the
transport, the models, asyncio), so it is imported only once a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import inspect
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from workpools.cli import render
from workpools.cli.main import describe, fail, one_line, prog, worker_module
from workpools.cli.render import View, as_data
from workpools.cli.schedules import (  # noqa: F401  (handlers main.py names, looked up in this module)
    schedule_inspect,
    schedule_ls,
    schedule_resume,
    schedule_suspend,
    schedule_trigger,
)
from workpools.client import errors
from workpools.client.specs import SpecsClient
from workpools.client.transport import Transport
from workpools.client.workpools import WorkpoolsClient
from workpools.clock import utc_now

if TYPE_CHECKING:
    from workpools.client.runs import RunsClient
    from workpools.client.schedules import SchedulesClient

# -- running a command -----------------------------------------------------------------------------


class Context:
    """What a command works with: the clients, on one connection, in one namespace.

    The runs and schedules clients are made (and their modules imported) on first use: with
    them come core/'s admission, selection and slot rules and cronsim, which most pool, queue
    and worker verbs (`pool ls`) do not need.
    """

    def __init__(self, transport: Transport, namespace: str | None):
        self.namespace = namespace or transport.namespace
        self._transport = transport
        self.pools = WorkpoolsClient(transport, self.namespace)
        self.specs = SpecsClient(transport, self.namespace)

    @functools.cached_property
    def runs(self) -> RunsClient:
        from workpools.client.runs import RunsClient  # noqa: PLC0415  (see the class docstring)

        return RunsClient(self._transport, self.namespace)

    @functools.cached_property
    def schedules(self) -> SchedulesClient:
        from workpools.client.schedules import SchedulesClient  # noqa: PLC0415  (see the class docstring)

        return SchedulesClient(self._transport, self.namespace)

    now = staticmethod(utc_now)


Handler = Callable[[Context, argparse.Namespace], Awaitable[View]]


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; expected failures print one line on stderr and give exit code 1."""
    try:
        if getattr(args, "worker_entry", False):
            return start_worker(args)
        return asyncio.run(_run(args))
    except errors.WorkpoolsError as error:
        return fail(describe(error))
    except ValueError as error:  # bad arguments the client refuses (e.g. duplicate reorder targets)
        return fail(one_line(str(error)))
    except (OSError, TimeoutError) as error:  # the API server could not be reached
        return fail(f"cannot reach the Kubernetes API server: {one_line(str(error)) or type(error).__name__}")
    except KeyboardInterrupt:  # Ctrl-C: the way to leave --watch; an interruption otherwise
        return 0 if getattr(args, "watch", False) else 130


def _handler(name: str) -> Handler:
    handler: Handler = globals()[name]
    return handler


async def _run(args: argparse.Namespace) -> int:
    transport = await Transport.connect(args.kubeconfig, args.context)
    try:
        context = Context(transport, args.namespace)
        handler = _handler(args.handler)
        if getattr(args, "watch", False):
            await _watch(handler, context, args)
        else:
            _print(render.emit(await handler(context, args), args.output))
        return 0
    finally:
        await transport.close()


async def _watch(handler: Handler, context: Context, args: argparse.Namespace) -> None:
    """Redraw every `--interval` seconds until Ctrl-C, then return (exit code 0).

    Ctrl-C sets an event rather than relying on the task's cancellation alone: a cancellation
    that lands while a request is timing out can be swallowed below us (Python 3.11), and the
    watch then went on drawing (seen under load in CI).
    """
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    try:
        clear = sys.stdout.isatty() and args.output == "table"
        while True:
            view = await _unless(stopped, handler(context, args))
            if view is None:
                return
            if args.output == "json":
                text = json.dumps(view.data, ensure_ascii=False)  # one document per line
            elif args.output == "yaml":
                text = "---\n" + render.emit(view, "yaml")
            else:
                heading = f"Every {args.interval:g}s: {prog()} {' '.join(sys.argv[1:])}"
                text = f"{heading}   {render.stamp(context.now())}\n\n{view.text}"
            _print(("\x1b[H\x1b[2J" if clear else "") + text)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.interval):  # not wait_for: in 3.11 it can swallow a cancellation
                    await stopped.wait()
            if stopped.is_set():
                return
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _unless(stopped: asyncio.Event, frame: Awaitable[View]) -> View | None:
    """The frame, or None as soon as `stopped` is set (the frame's request is then cancelled)."""
    drawing = asyncio.ensure_future(frame)
    stopping = asyncio.ensure_future(stopped.wait())
    done, _ = await asyncio.wait({drawing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if drawing in done:
        return drawing.result()
    drawing.cancel()
    return None


def _print(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `workpools ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def start_worker(args: argparse.Namespace) -> int:
    """`worker start`: hand over to the worker process's `run_worker(args)`.

    The worker package is imported only here and when the parser is built, never at module
    level, so every other verb works in an installation without it. `args` carries the
    worker's own options plus namespace, context and kubeconfig; an int result is the exit code
    (a coroutine is run to completion first).
    """
    module = worker_module()
    if module is None:
        return fail("the worker is not part of this installation (module workpools.worker.main is missing)")
    result = module.run_worker(args)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return result if isinstance(result, int) else 0


async def _awaited(value: Awaitable[object]) -> object:
    return await value


# -- pools -----------------------------------------------------------------------------------------


async def pool_ls(ctx: Context, args: argparse.Namespace) -> View:
    pools = await ctx.pools.read_work_pools()
    return View([as_data(p) for p in pools], render.pools_table(pools, ctx.now()))


async def pool_inspect(ctx: Context, args: argparse.Namespace) -> View:
    pool = await ctx.pools.read_work_pool(args.name)
    return View(as_data(pool), render.pool_details(pool, ctx.now()))


async def pool_create(ctx: Context, args: argparse.Namespace) -> View:
    pool = await ctx.specs.create_work_pool(
        args.name,
        type=args.type,
        description=args.description,
        concurrency_limit=args.concurrency_limit,
        paused=args.paused,
    )
    note = f'; the operator adds its default queue "{args.name}-default"'
    return View(as_data(pool), render.pool_changed(pool, "created" + note))


async def pool_pause(ctx: Context, args: argparse.Namespace) -> View:
    pool = await ctx.specs.update_work_pool(args.name, paused=True)
    return View(as_data(pool), render.pool_changed(pool, "paused (spec.paused=true)"))


async def pool_resume(ctx: Context, args: argparse.Namespace) -> View:
    pool = await ctx.specs.update_work_pool(args.name, paused=False)
    return View(as_data(pool), render.pool_changed(pool, "resumed (spec.paused=false)"))


async def pool_set_limit(ctx: Context, args: argparse.Namespace) -> View:
    pool = await ctx.specs.update_work_pool(args.name, concurrency_limit=args.limit)
    return View(as_data(pool), render.pool_changed(pool, f"concurrency limit set to {args.limit}"))


async def pool_clear_limit(ctx: Context, args: argparse.Namespace) -> View:
    pool = await ctx.specs.update_work_pool(args.name, concurrency_limit=None)
    return View(as_data(pool), render.pool_changed(pool, "concurrency limit cleared (unlimited)"))


async def pool_delete(ctx: Context, args: argparse.Namespace) -> View:
    await ctx.specs.delete_work_pool(args.name)
    return _deleted("WorkPool", args.name, ctx.namespace)


async def pool_preview(ctx: Context, args: argparse.Namespace) -> View:
    runs = await ctx.runs.preview(args.name, hours=args.hours, limit=args.limit)
    queues = await ctx.pools.read_work_queues(args.name)
    priorities = {q.metadata.name: q.status.effective_priority for q in queues}
    pool = None if runs else await ctx.pools.read_work_pool(args.name)  # only to say why nothing would run
    return View(render.preview_data(runs, priorities), render.preview_table(runs, priorities, ctx.now(), pool))


async def pool_slots(ctx: Context, args: argparse.Namespace) -> View:
    now = ctx.now()
    if args.name is not None:
        status = await ctx.runs.concurrency_status(args.name, per_queue_limit=args.holders)
        return View(render.slots_data(status, now), render.slots_view([status], now))
    statuses = await ctx.runs.concurrency_statuses(per_queue_limit=args.holders)
    return View([render.slots_data(s, now) for s in statuses], render.slots_view(statuses, now))


# -- queues ----------------------------------------------------------------------------------------


async def queue_ls(ctx: Context, args: argparse.Namespace) -> View:
    queues = await ctx.pools.read_work_queues(args.pool)
    return View([as_data(q) for q in queues], render.queues_table(queues, ctx.now()))


async def queue_inspect(ctx: Context, args: argparse.Namespace) -> View:
    queue = await ctx.pools.read_work_queue(args.pool, args.name)
    return View(as_data(queue), render.queue_details(queue, ctx.now()))


async def queue_create(ctx: Context, args: argparse.Namespace) -> View:
    queue = await ctx.specs.create_work_queue(
        args.pool,
        args.name,
        priority=args.priority,
        concurrency_limit=args.concurrency_limit,
        description=args.description,
        paused=args.paused,
    )
    return View(as_data(queue), f'WorkQueue "{args.name}" created in WorkPool "{args.pool}"')


async def queue_pause(ctx: Context, args: argparse.Namespace) -> View:
    queue = await ctx.specs.update_work_queue(args.pool, args.name, paused=True)
    return View(as_data(queue), f'WorkQueue "{args.name}" paused (spec.paused=true)')


async def queue_resume(ctx: Context, args: argparse.Namespace) -> View:
    queue = await ctx.specs.update_work_queue(args.pool, args.name, paused=False)
    return View(as_data(queue), f'WorkQueue "{args.name}" resumed (spec.paused=false)')


async def queue_set_priority(ctx: Context, args: argparse.Namespace) -> View:
    current = await ctx.pools.read_work_queue(args.pool, args.name)
    if current.spec.priority == args.priority:
        holder = None
        if current.status.effective_priority != args.priority:
            queues = await ctx.pools.read_work_queues(args.pool)
            holder = next((q.metadata.name for q in queues if q.status.effective_priority == args.priority), None)
        return View(as_data(current), render.same_priority(current, holder, prog()))
    queue = await ctx.specs.update_work_queue(args.pool, args.name, priority=args.priority)
    return View(
        as_data(queue),
        f'WorkQueue "{args.name}" asks for priority {args.priority}; '
        f"status.effectivePriority shows where it runs (`{prog()} queue ls {args.pool}`)",
    )


async def queue_set_limit(ctx: Context, args: argparse.Namespace) -> View:
    queue = await ctx.specs.update_work_queue(args.pool, args.name, concurrency_limit=args.limit)
    return View(as_data(queue), f'WorkQueue "{args.name}" concurrency limit set to {args.limit}')


async def queue_clear_limit(ctx: Context, args: argparse.Namespace) -> View:
    queue = await ctx.specs.update_work_queue(args.pool, args.name, concurrency_limit=None)
    return View(as_data(queue), f'WorkQueue "{args.name}" concurrency limit cleared (unlimited)')


async def queue_delete(ctx: Context, args: argparse.Namespace) -> View:
    await ctx.specs.delete_work_queue(args.pool, args.name)
    return _deleted("WorkQueue", args.name, ctx.namespace)


async def queue_reorder(ctx: Context, args: argparse.Namespace) -> View:
    priorities = await ctx.pools.bulk_update_work_queue_priorities(args.pool, dict(args.targets))
    return View(priorities, render.priorities_table(priorities))


# -- workers ---------------------------------------------------------------------------------------


async def worker_ls(ctx: Context, args: argparse.Namespace) -> View:
    workers = await ctx.pools.read_workers(args.pool, phase=args.status)
    return View([as_data(w) for w in workers], render.workers_table(workers, ctx.now()))


async def worker_delete(ctx: Context, args: argparse.Namespace) -> View:
    await ctx.pools.delete_worker(args.pool, args.name)
    return _deleted("Worker", args.name, ctx.namespace)


# -- runs ------------------------------------------------------------------------------------------


async def run_create(ctx: Context, args: argparse.Namespace) -> View:
    run = await ctx.runs.create_flow_run(
        args.pool,
        args.queue,
        name=args.name,
        parameters=dict(args.parameters),
        command=args.command,
        scheduled_time=args.at,
        retries=args.retries,
        retry_delay_seconds=args.retry_delay,
    )
    where = f"{args.pool}/{args.queue or args.pool + '-default'}"
    when = "now" if args.at is None else render.stamp(args.at)
    return View(as_data(run), render.run_changed(run, f"created in {where}, scheduled {when}"))


async def run_ls(ctx: Context, args: argparse.Namespace) -> View:
    runs = await ctx.runs.read_flow_runs(pool=args.pool, queue=args.queue, state=args.state, limit=args.limit)
    return View([as_data(r) for r in runs], render.runs_table(runs, ctx.now()))


async def run_inspect(ctx: Context, args: argparse.Namespace) -> View:
    run = await ctx.runs.read_flow_run(args.name)
    return View(as_data(run), render.run_details(run, ctx.now()))


async def run_why(ctx: Context, args: argparse.Namespace) -> View:
    options = {} if args.window is None else {"window": datetime.timedelta(minutes=args.window)}
    now = ctx.now()
    why = await ctx.runs.why_waiting(args.name, now=now, **options)
    return View(render.why_data(why, now), render.why_view(why, now))


async def run_cancel(ctx: Context, args: argparse.Namespace) -> View:
    run = await ctx.runs.cancel_flow_run(args.name)
    return View(as_data(run), render.run_changed(run, "cancellation requested (spec.cancel=true)"))


def _deleted(kind: str, name: str, namespace: str) -> View:
    return View({"kind": kind, "name": name, "namespace": namespace, "deleted": True}, f'{kind} "{name}" deleted')
