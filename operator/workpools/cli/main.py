"""`workpools`, also installed as `kubectl-workpools` so that `kubectl workpools ...` works.

    workpools pool ls
    workpools pool slots etl --watch
    workpools queue reorder etl etl-high=1 etl-default=2
    workpools run create etl --queue etl-high --parameter seconds=5 --at +10m

Prefect's `work-pool`, `work-queue`, `worker` and `flow-run` verbs on the client library, in the
namespace of the kubeconfig context (or `-n`). Tables for people, `-o json|yaml` for scripts.
Verbs that change a spec patch only the fields they own (JSON merge patch, field manager
`workpools-cli`), so they are safe alongside GitOps. Expected failures print one line on stderr
and exit 1 (2 for usage errors); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NoReturn

from workpools.api.states import StateType
from workpools.api.worker import WorkerPhase
from workpools.cli import render, schedules
from workpools.cli.render import View, as_data
from workpools.client import errors
from workpools.client.runs import RunsClient
from workpools.client.schedules import SchedulesClient
from workpools.client.specs import SpecsClient
from workpools.client.transport import Transport
from workpools.client.workpools import WorkpoolsClient

WATCH_INTERVAL = 2.0
WORKER_MODULE = "workpools.worker.main"
"""Where `worker start` finds `run_worker(args)` (and `add_arguments(parser)` for its options)."""
FIELD_MANAGER_NOTE = "field manager workpools-cli"


# -- running a command -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a command works with: the clients, on one connection, in one namespace."""

    namespace: str
    pools: WorkpoolsClient
    runs: RunsClient
    specs: SpecsClient
    schedules: SchedulesClient

    @classmethod
    def open(cls, transport: Transport, namespace: str | None) -> Context:
        ns = namespace or transport.namespace
        return cls(
            ns,
            WorkpoolsClient(transport, ns),
            RunsClient(transport, ns),
            SpecsClient(transport, ns),
            SchedulesClient(transport, ns),
        )

    @staticmethod
    def now() -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)


Handler = Callable[[Context, argparse.Namespace], Awaitable[View]]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `workpools` and `kubectl-workpools`; returns the exit code."""
    parser = build_parser(_prog())
    args = parser.parse_args(argv)
    try:
        if getattr(args, "worker_entry", False):
            return start_worker(args)
        return asyncio.run(_run(args))
    except errors.WorkpoolsError as error:
        return _fail(describe(error))
    except ValueError as error:  # bad arguments the client refuses (e.g. duplicate reorder targets)
        return _fail(_one_line(str(error)))
    except (OSError, TimeoutError) as error:  # the API server could not be reached
        return _fail(f"cannot reach the Kubernetes API server: {_one_line(str(error)) or type(error).__name__}")
    except KeyboardInterrupt:  # Ctrl-C: the way to leave --watch; an interruption otherwise
        return 0 if getattr(args, "watch", False) else 130


async def _run(args: argparse.Namespace) -> int:
    transport = await Transport.connect(args.kubeconfig, args.context)
    try:
        context = Context.open(transport, args.namespace)
        handler: Handler = args.handler
        if getattr(args, "watch", False):
            await _watch(handler, context, args)
        else:
            _print(render.emit(await handler(context, args), args.output))
        return 0
    finally:
        await transport.close()


async def _watch(handler: Handler, context: Context, args: argparse.Namespace) -> NoReturn:
    """Redraw every `--interval` seconds until Ctrl-C (`main` exits 0 then)."""
    clear = sys.stdout.isatty() and args.output == "table"
    while True:
        view = await handler(context, args)
        if args.output == "json":
            text = json.dumps(view.data, ensure_ascii=False)  # one document per line
        elif args.output == "yaml":
            text = "---\n" + render.emit(view, "yaml")
        else:
            heading = f"Every {args.interval:g}s: {_prog()} {' '.join(sys.argv[1:])}"
            text = f"{heading}   {render.stamp(context.now())}\n\n{view.text}"
        _print(("\x1b[H\x1b[2J" if clear else "") + text)
        await asyncio.sleep(args.interval)


def _print(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `workpools ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def describe(error: errors.WorkpoolsError) -> str:
    """One line a person understands, naming the object and namespace an error is about."""
    where = f'namespace "{error.namespace}"' if error.namespace else "the namespace"
    if isinstance(error, errors.NotFound) and error.kind and error.name:
        if error.message.endswith(f'"{error.name}" not found'):  # the API server's own wording
            return f'{error.kind} "{error.name}" not found in {where}'
        return f"{_quotes(error.message)} ({where})"
    if isinstance(error, errors.AlreadyExists) and error.kind and error.name:
        return f'{error.kind} "{error.name}" already exists in {where}'
    message = _one_line(error.message)
    if error.kind:  # "workpools.workpools.dev" / "WorkPool.workpools.dev" read better as the kind
        message = re.sub(r"\b\w+\.workpools\.dev\b", error.kind, message)
    if isinstance(error, errors.Conflict):
        return f"{message} (it changed meanwhile; run the command again)"
    return message


def _quotes(text: str) -> str:
    return _one_line(text).replace("'", '"')


def _one_line(text: str) -> str:
    return " ".join(text.split())


def start_worker(args: argparse.Namespace) -> int:
    """`worker start`: hand over to the worker process's `run_worker(args)`.

    The worker package is imported only here and when the parser is built, never at module
    level, so every other verb works in an installation without it. `args` carries the
    worker's own options plus namespace, context and kubeconfig; an int result is the exit code
    (a coroutine is run to completion first).
    """
    module = _worker_module()
    if module is None:
        return _fail("the worker is not part of this installation (module workpools.worker.main is missing)")
    result = module.run_worker(args)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return result if isinstance(result, int) else 0


def _worker_module() -> ModuleType | None:
    try:
        return importlib.import_module(WORKER_MODULE)
    except ModuleNotFoundError as missing:
        if missing.name not in ("workpools.worker", WORKER_MODULE):
            raise
        return None


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
        return View(as_data(current), render.same_priority(current, holder, _prog()))
    queue = await ctx.specs.update_work_queue(args.pool, args.name, priority=args.priority)
    return View(
        as_data(queue),
        f'WorkQueue "{args.name}" asks for priority {args.priority}; '
        f"status.effectivePriority shows where it runs (`{_prog()} queue ls {args.pool}`)",
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


async def run_cancel(ctx: Context, args: argparse.Namespace) -> View:
    run = await ctx.runs.cancel_flow_run(args.name)
    return View(as_data(run), render.run_changed(run, "cancellation requested (spec.cancel=true)"))


def _deleted(kind: str, name: str, namespace: str) -> View:
    return View({"kind": kind, "name": name, "namespace": namespace, "deleted": True}, f'{kind} "{name}" deleted')


# -- argument values -------------------------------------------------------------------------------


_SPAN = re.compile(r"(\d+)([smhd])")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """`--at`: `now`, a span from now (`+90s`, `+5m`, `+1h30m`, `+2d`) or ISO 8601 (no zone: local time)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    if text == "now":
        return moment
    if text.startswith("+"):
        body = text[1:]
        parts = _SPAN.findall(body)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != body:
            raise argparse.ArgumentTypeError(f"{text!r} is not a span like +30s, +5m, +1h30m or +2d")
        return moment + datetime.timedelta(seconds=sum(int(n) * _SPAN_SECONDS[u] for n, u in parts))
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use now, +5m, or ISO 8601 like 2026-01-01T12:00:00Z"
        ) from None
    return parsed if parsed.utcoffset() is not None else parsed.astimezone()


def parse_parameter(text: str) -> tuple[str, Any]:
    """`--parameter key=value`: the value as JSON when it is JSON (5, true, [1,2], "x"), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_target(text: str) -> tuple[str, int]:
    """`reorder`'s `QUEUE=PRIORITY`."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not QUEUE=PRIORITY with a priority of 1 or more")
    return name, int(value)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _seconds(text: str) -> float:
    value = _hours(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


# -- the parser ------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), pointing at the verb's --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _prog() -> str:
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "workpools"
    return "kubectl workpools" if invoked.startswith("kubectl-") else "workpools"


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Connection and output options, on the top parser and on every verb (so they go anywhere)."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument("-n", "--namespace", default=default(None), help="namespace (default: the kubeconfig context's)")
    group.add_argument("--context", default=default(None), help="kubeconfig context (default: the current one)")
    group.add_argument(
        "--kubeconfig", default=default(None), help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    group.add_argument(
        "-o", "--output", choices=render.FORMATS, default=default("table"), help="table (default), json or yaml"
    )


class _Verbs:
    """Adds verbs to one noun: each with a one-line summary, an example and the common options."""

    def __init__(self, parent: argparse._SubParsersAction[Parser], noun: str, summary: str, prog: str):
        self.prog, self.noun = prog, noun
        self.parser = parent.add_parser(noun, help=summary, description=summary)
        _common(self.parser, top=False)
        self.group = self.parser.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=Parser)

    def add(
        self,
        verb: str,
        summary: str,
        example: str,
        handler: Handler | None,
        *,
        patches: str | None = None,
    ) -> Parser:
        description = summary
        if patches is not None:
            description += f"\n\nSafe alongside GitOps: only patches {patches} ({FIELD_MANAGER_NOTE})."
        parser: Parser = self.group.add_parser(
            verb,
            help=summary,
            description=description,
            epilog=f"example:\n  {self.prog} {self.noun} {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(parser, top=False)
        parser.set_defaults(handler=handler)
        return parser


def build_parser(prog: str = "workpools") -> Parser:
    parser = Parser(
        prog=prog,
        description="Prefect-style work pools on Kubernetes: pools, prioritized queues, workers and runs.",
        epilog=f"example:\n  {prog} pool slots --watch\n\nEvery verb has --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, top=True)
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", required=True, parser_class=Parser)
    _pool_verbs(_Verbs(nouns, "pool", "Work pools: list, inspect, create, pause, limit, preview, slots.", prog))
    _queue_verbs(_Verbs(nouns, "queue", "Work queues of a pool: list, create, pause, prioritize.", prog))
    _worker_verbs(_Verbs(nouns, "worker", "Workers of a pool: list, delete, start one.", prog))
    _run_verbs(_Verbs(nouns, "run", "Flow runs: create, list, inspect, cancel.", prog))
    schedules.add_verbs(_Verbs(nouns, "schedule", "Flow schedules: list, inspect, suspend, resume, trigger.", prog))
    return parser


def _pool_verbs(verbs: _Verbs) -> None:
    verbs.add("ls", "List the work pools with their status, workers and slots.", "ls", pool_ls)
    verbs.add("inspect", "Show one pool in detail.", "inspect etl", pool_inspect).add_argument("name")

    create = verbs.add(
        "create",
        "Create a work pool (the operator adds its default queue NAME-default).",
        "create etl --concurrency-limit 8 --description 'Nightly ETL'",
        pool_create,
    )
    create.add_argument("name")
    create.add_argument("--type", default="process", help="worker type that serves it (default: process)")
    create.add_argument("--description")
    create.add_argument("--concurrency-limit", type=_count, metavar="N", help="slots (default: unlimited)")
    create.add_argument("--paused", action="store_true", help="create it paused")

    verbs.add(
        "pause", "Stop admitting runs from every queue of the pool.", "pause etl", pool_pause, patches="spec.paused"
    ).add_argument("name")
    verbs.add(
        "resume", "Admit runs from the pool again.", "resume etl", pool_resume, patches="spec.paused"
    ).add_argument("name")
    limit = verbs.add(
        "set-concurrency-limit",
        "Set how many runs may hold a slot of the pool at once.",
        "set-concurrency-limit etl 8",
        pool_set_limit,
        patches="spec.concurrencyLimit",
    )
    limit.add_argument("name")
    limit.add_argument("limit", type=_count, metavar="N")
    verbs.add(
        "clear-concurrency-limit",
        "Remove the pool's concurrency limit (unlimited).",
        "clear-concurrency-limit etl",
        pool_clear_limit,
        patches="spec.concurrencyLimit",
    ).add_argument("name")
    verbs.add(
        "delete",
        "Delete a pool (its default queue goes with it; runs left behind report PoolNotFound).",
        "delete etl",
        pool_delete,
    ).add_argument("name")

    preview = verbs.add(
        "preview",
        "Show the scheduled runs the pool would hand out next, in admission order, within its open slots.",
        "preview etl --hours 2",
        pool_preview,
    )
    preview.add_argument("name")
    preview.add_argument("--hours", type=_hours, default=1.0, help="look this far ahead (default: 1)")
    preview.add_argument("--limit", type=_count, metavar="N", help="show at most N runs")

    slots = verbs.add(
        "slots",
        "Show used/limit slots per pool and queue, and the runs holding them, with state, worker and time held.",
        "slots etl --watch",
        pool_slots,
    )
    slots.add_argument("name", nargs="?", help="one pool (default: every pool in the namespace)")
    slots.add_argument("--watch", "-w", action="store_true", help="redraw every 2 s until Ctrl-C")
    slots.add_argument("--interval", type=_seconds, default=WATCH_INTERVAL, help=argparse.SUPPRESS)
    slots.add_argument("--holders", type=_count, default=10, metavar="N", help="holders shown per queue (default: 10)")


def _queue_verbs(verbs: _Verbs) -> None:
    verbs.add(
        "ls", "List a pool's queues in admission order (lower priority runs first).", "ls etl", queue_ls
    ).add_argument("pool")
    inspect_ = verbs.add("inspect", "Show one queue in detail.", "inspect etl etl-high", queue_inspect)
    inspect_.add_argument("pool")
    inspect_.add_argument("name")

    create = verbs.add(
        "create", "Create a queue in a pool.", "create etl etl-high --priority 1 --concurrency-limit 2", queue_create
    )
    create.add_argument("pool")
    create.add_argument("name")
    create.add_argument("--priority", type=_positive, help="1 runs first (default: the first free value)")
    create.add_argument("--concurrency-limit", type=_count, metavar="N", help="slots (default: unlimited)")
    create.add_argument("--description")
    create.add_argument("--paused", action="store_true", help="create it paused")

    for verb, summary, handler in (
        ("pause", "Stop admitting runs from the queue.", queue_pause),
        ("resume", "Admit runs from the queue again.", queue_resume),
    ):
        parser = verbs.add(verb, summary, f"{verb} etl etl-high", handler, patches="spec.paused")
        parser.add_argument("pool")
        parser.add_argument("name")

    priority = verbs.add(
        "set-priority",
        "Ask for a priority for one queue; the operator resolves collisions in status.effectivePriority.\n"
        "Asking again for the value a queue already requests writes nothing: use reorder to take it back.",
        "set-priority etl etl-high 1",
        queue_set_priority,
        patches="this queue's spec.priority",
    )
    priority.add_argument("pool")
    priority.add_argument("name")
    priority.add_argument("priority", type=_positive, metavar="N")

    limit = verbs.add(
        "set-concurrency-limit",
        "Set how many runs may hold a slot of the queue at once.",
        "set-concurrency-limit etl etl-high 2",
        queue_set_limit,
        patches="spec.concurrencyLimit",
    )
    limit.add_argument("pool")
    limit.add_argument("name")
    limit.add_argument("limit", type=_count, metavar="N")
    clear = verbs.add(
        "clear-concurrency-limit",
        "Remove the queue's concurrency limit (unlimited).",
        "clear-concurrency-limit etl etl-high",
        queue_clear_limit,
        patches="spec.concurrencyLimit",
    )
    clear.add_argument("pool")
    clear.add_argument("name")

    delete = verbs.add(
        "delete", "Delete a queue (its runs stay and report QueueNotFound).", "delete etl etl-low", queue_delete
    )
    delete.add_argument("pool")
    delete.add_argument("name")

    reorder = verbs.add(
        "reorder",
        "Prefect's bulk priority update: give queues these priorities and push colliding queues down.\n"
        "Unlike set-priority it rewrites spec.priority of every queue it moves (a GitOps tool reports them as drift).",
        "reorder etl etl-high=1 etl-default=2",
        queue_reorder,
        patches="spec.priority of the queues it moves",
    )
    reorder.add_argument("pool")
    reorder.add_argument("targets", nargs="+", type=parse_target, metavar="QUEUE=PRIORITY")


def _worker_verbs(verbs: _Verbs) -> None:
    ls = verbs.add("ls", "List a pool's workers, newest heartbeat first.", "ls etl", worker_ls)
    ls.add_argument("pool")
    ls.add_argument("--status", choices=[p.value for p in WorkerPhase], help="only Online or Offline workers")
    delete = verbs.add(
        "delete",
        "Delete a worker (one still running registers again with its next heartbeat).",
        "delete etl old-worker",
        worker_delete,
    )
    delete.add_argument("pool")
    delete.add_argument("name")

    start = verbs.add(
        "start",
        "Run a process worker for a pool in the foreground (heartbeats, runs its bound runs; Ctrl-C drains).",
        "start --pool etl --queue etl-high --limit 2",
        None,
    )
    start.set_defaults(worker_entry=True)
    module = _worker_module()
    if module is not None and hasattr(module, "add_arguments"):
        module.add_arguments(start)  # the worker owns its options
        return
    start.add_argument("--pool", required=True, help="the WorkPool to serve")
    start.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=[],
        metavar="QUEUE",
        help="serve this queue (repeatable; default: every queue of the pool)",
    )
    start.add_argument("--limit", type=_positive, metavar="N", help="most runs at once (default: no limit)")
    start.add_argument("--name", help="worker name (default: the host name)")
    start.add_argument(
        "--heartbeat-interval", type=_positive, default=30, metavar="S", help="seconds between heartbeats (default: 30)"
    )


def _run_verbs(verbs: _Verbs) -> None:
    create = verbs.add(
        "create",
        "Create a flow run in a pool; the operator admits it when a slot and a worker are free.",
        "create etl --queue etl-high --parameter seconds=5 --at +10m",
        run_create,
    )
    create.add_argument("pool")
    create.add_argument("--queue", help="queue in the pool (default: the pool's default queue)")
    create.add_argument(
        "--parameter",
        "-p",
        dest="parameters",
        action="append",
        default=[],
        type=parse_parameter,
        metavar="KEY=VALUE",
        help="a parameter (repeatable); VALUE is read as JSON when it is JSON",
    )
    create.add_argument("--command", help="command line to run (default: the pool's job template)")
    create.add_argument(
        "--at", type=parse_time, metavar="TIME", help="not before: now, +5m, or ISO 8601 (default: now)"
    )
    create.add_argument("--name", help="run name (default: POOL-xxxxx)")

    ls = verbs.add("ls", "List flow runs, newest scheduled first.", "ls --pool etl --state Running", run_ls)
    ls.add_argument("--pool")
    ls.add_argument("--queue")
    ls.add_argument("--state", choices=[s.value for s in StateType], help="only runs in this state")
    ls.add_argument("--limit", type=_count, metavar="N", help="show at most N runs")

    verbs.add("inspect", "Show one flow run in detail.", "inspect etl-x7k2p", run_inspect).add_argument("name")
    verbs.add(
        "cancel",
        "Cancel a run: a Scheduled one at once, an active one through its worker.",
        "cancel etl-x7k2p",
        run_cancel,
        patches="spec.cancel",
    ).add_argument("name")


if __name__ == "__main__":
    sys.exit(main())
