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

This module only parses arguments: building the parser imports no client, model or transport
(`--help` answers at once); `commands.py` holds the verbs and is imported once one runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, NoReturn

from workpools.api.phases import WorkerPhase
from workpools.api.states import StateType
from workpools.client import errors
from workpools.clock import utc_now

WATCH_INTERVAL = 2.0
WORKER_MODULE = "workpools.worker.main"
"""Where `worker start` finds `run_worker(args)` (and `add_arguments(parser)` for its options)."""
FIELD_MANAGER_NOTE = "field manager workpools-cli"
FORMATS = ("table", "json", "yaml")
"""`-o`: a table for people (the default), JSON or YAML for scripts."""


# -- entry point and error messages ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `workpools` and `kubectl-workpools`; returns the exit code."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog(), only=noun_in(arguments)).parse_args(arguments)
    with _quick_imports():
        from workpools.cli import commands  # the client, the models, asyncio: only now that a command runs

    return commands.run(args)


@contextlib.contextmanager
def _quick_imports() -> Iterator[None]:
    """Import what a command needs at the least cost (together ~0.1–0.15 s of a verb's ~0.5 s start).

    * No garbage collection meanwhile: imports make objects by the hundred thousand and free almost
      none, so the collector's passes find nothing; `gc.freeze()` then keeps them out of later ones.
    * aiohttp builds two default TLS contexts at import, each loading the system's CA bundle. The
      Kubernetes client never uses them (it passes its own context, holding the kubeconfig's CA), so
      they are built from an empty bundle: SSL_CERT_FILE=/dev/null for the import only.
    """
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = os.devnull
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
        if saved is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = saved


def fail(message: str) -> int:
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
    message = one_line(error.message)
    if error.kind:  # "workpools.workpools.dev" / "WorkPool.workpools.dev" read better as the kind
        message = re.sub(r"\b\w+\.workpools\.dev\b", error.kind, message)
    if isinstance(error, errors.Conflict):
        return f"{message} (it changed meanwhile; run the command again)"
    return message


def _quotes(text: str) -> str:
    return one_line(text).replace("'", '"')


def one_line(text: str) -> str:
    return " ".join(text.split())


def worker_module() -> ModuleType | None:
    try:
        return importlib.import_module(WORKER_MODULE)
    except ModuleNotFoundError as missing:
        if missing.name not in ("workpools.worker", WORKER_MODULE):
            raise
        return None


# -- argument values -------------------------------------------------------------------------------


_SPAN = re.compile(r"(\d+)([smhd])")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """`--at`: `now`, a span from now (`+90s`, `+5m`, `+1h30m`, `+2d`) or ISO 8601 (no zone: local time)."""
    moment = now or utc_now()
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


def _hours(text: str, unit: str = "hours") -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _seconds(text: str, unit: str = "seconds") -> float:
    value = _hours(text, unit)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _minutes(text: str) -> float:
    return _seconds(text, "minutes")


# -- the parser ------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), pointing at the verb's --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def prog() -> str:
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
        "-o", "--output", choices=FORMATS, default=default("table"), help="table (default), json or yaml"
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
        handler: str | None,
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
        parser.set_defaults(handler=handler)  # a function of commands.py, by name
        return parser


NOUNS = ("pool", "queue", "worker", "run", "schedule")
VALUED_OPTIONS = ("-n", "--namespace", "--context", "--kubeconfig", "-o", "--output")
"""The common options that take a value: the word after one is not the noun."""


def noun_in(argv: Sequence[str]) -> str | None:
    """The noun a command line names (its first positional word), if it is one of ours."""
    words = iter(argv)
    for word in words:
        if word in VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in NOUNS else None
    return None


def build_parser(prog: str = "workpools", *, only: str | None = None) -> Parser:
    """The whole parser; with `only`, the verbs of that noun alone (the others are listed, with
    their summaries, but not built: a command line names one noun, and building every verb's
    parser was a tenth of a command's start)."""
    parser = Parser(
        prog=prog,
        description="Prefect-style work pools on Kubernetes: pools, prioritized queues, workers and runs.",
        epilog=f"example:\n  {prog} pool slots --watch\n\nEvery verb has --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, top=True)
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", required=True, parser_class=Parser)
    for noun, summary, add_verbs in (
        ("pool", "Work pools: list, inspect, create, pause, limit, preview, slots.", _pool_verbs),
        ("queue", "Work queues of a pool: list, create, pause, prioritize.", _queue_verbs),
        ("worker", "Workers of a pool: list, delete, start one.", _worker_verbs),
        ("run", "Flow runs: create, list, inspect, why, cancel.", _run_verbs),
        ("schedule", "Flow schedules: list, inspect, suspend, resume, trigger.", _schedule_verbs),
    ):
        verbs = _Verbs(nouns, noun, summary, prog)
        if only in (None, noun):
            add_verbs(verbs)
    return parser


def _pool_verbs(verbs: _Verbs) -> None:
    verbs.add("ls", "List the work pools with their status, workers and slots.", "ls", "pool_ls")
    verbs.add("inspect", "Show one pool in detail.", "inspect etl", "pool_inspect").add_argument("name")

    create = verbs.add(
        "create",
        "Create a work pool (the operator adds its default queue NAME-default).",
        "create etl --concurrency-limit 8 --description 'Nightly ETL'",
        "pool_create",
    )
    create.add_argument("name")
    create.add_argument("--type", default="process", help="worker type that serves it (default: process)")
    create.add_argument("--description")
    create.add_argument("--concurrency-limit", type=_count, metavar="N", help="slots (default: unlimited)")
    create.add_argument("--paused", action="store_true", help="create it paused")

    verbs.add(
        "pause", "Stop admitting runs from every queue of the pool.", "pause etl", "pool_pause", patches="spec.paused"
    ).add_argument("name")
    verbs.add(
        "resume", "Admit runs from the pool again.", "resume etl", "pool_resume", patches="spec.paused"
    ).add_argument("name")
    limit = verbs.add(
        "set-concurrency-limit",
        "Set how many runs may hold a slot of the pool at once.",
        "set-concurrency-limit etl 8",
        "pool_set_limit",
        patches="spec.concurrencyLimit",
    )
    limit.add_argument("name")
    limit.add_argument("limit", type=_count, metavar="N")
    verbs.add(
        "clear-concurrency-limit",
        "Remove the pool's concurrency limit (unlimited).",
        "clear-concurrency-limit etl",
        "pool_clear_limit",
        patches="spec.concurrencyLimit",
    ).add_argument("name")
    verbs.add(
        "delete",
        "Delete a pool (its default queue goes with it; runs left behind report PoolNotFound).",
        "delete etl",
        "pool_delete",
    ).add_argument("name")

    preview = verbs.add(
        "preview",
        "Show the scheduled runs the pool would hand out next, in admission order, within its open slots.",
        "preview etl --hours 2",
        "pool_preview",
    )
    preview.add_argument("name")
    preview.add_argument("--hours", type=_hours, default=1.0, help="look this far ahead (default: 1)")
    preview.add_argument("--limit", type=_count, metavar="N", help="show at most N runs")

    slots = verbs.add(
        "slots",
        "Show used/limit slots per pool and queue, and the runs holding them, with state, worker and time held.",
        "slots etl --watch",
        "pool_slots",
    )
    slots.add_argument("name", nargs="?", help="one pool (default: every pool in the namespace)")
    slots.add_argument("--watch", "-w", action="store_true", help="redraw every 2 s until Ctrl-C")
    slots.add_argument("--interval", type=_seconds, default=WATCH_INTERVAL, help=argparse.SUPPRESS)
    slots.add_argument("--holders", type=_count, default=10, metavar="N", help="holders shown per queue (default: 10)")


def _queue_verbs(verbs: _Verbs) -> None:
    verbs.add(
        "ls", "List a pool's queues in admission order (lower priority runs first).", "ls etl", "queue_ls"
    ).add_argument("pool")
    inspect_ = verbs.add("inspect", "Show one queue in detail.", "inspect etl etl-high", "queue_inspect")
    inspect_.add_argument("pool")
    inspect_.add_argument("name")

    create = verbs.add(
        "create", "Create a queue in a pool.", "create etl etl-high --priority 1 --concurrency-limit 2", "queue_create"
    )
    create.add_argument("pool")
    create.add_argument("name")
    create.add_argument("--priority", type=_positive, help="1 runs first (default: the first free value)")
    create.add_argument("--concurrency-limit", type=_count, metavar="N", help="slots (default: unlimited)")
    create.add_argument("--description")
    create.add_argument("--paused", action="store_true", help="create it paused")

    for verb, summary, handler in (
        ("pause", "Stop admitting runs from the queue.", "queue_pause"),
        ("resume", "Admit runs from the queue again.", "queue_resume"),
    ):
        parser = verbs.add(verb, summary, f"{verb} etl etl-high", handler, patches="spec.paused")
        parser.add_argument("pool")
        parser.add_argument("name")

    priority = verbs.add(
        "set-priority",
        "Ask for a priority for one queue; the operator resolves collisions in status.effectivePriority.\n"
        "Asking again for the value a queue already requests writes nothing: use reorder to take it back.",
        "set-priority etl etl-high 1",
        "queue_set_priority",
        patches="this queue's spec.priority",
    )
    priority.add_argument("pool")
    priority.add_argument("name")
    priority.add_argument("priority", type=_positive, metavar="N")

    limit = verbs.add(
        "set-concurrency-limit",
        "Set how many runs may hold a slot of the queue at once.",
        "set-concurrency-limit etl etl-high 2",
        "queue_set_limit",
        patches="spec.concurrencyLimit",
    )
    limit.add_argument("pool")
    limit.add_argument("name")
    limit.add_argument("limit", type=_count, metavar="N")
    clear = verbs.add(
        "clear-concurrency-limit",
        "Remove the queue's concurrency limit (unlimited).",
        "clear-concurrency-limit etl etl-high",
        "queue_clear_limit",
        patches="spec.concurrencyLimit",
    )
    clear.add_argument("pool")
    clear.add_argument("name")

    delete = verbs.add(
        "delete", "Delete a queue (its runs stay and report QueueNotFound).", "delete etl etl-low", "queue_delete"
    )
    delete.add_argument("pool")
    delete.add_argument("name")

    reorder = verbs.add(
        "reorder",
        "Prefect's bulk priority update: give queues these priorities and push colliding queues down.\n"
        "Unlike set-priority it rewrites spec.priority of every queue it moves (a GitOps tool reports them as drift).",
        "reorder etl etl-high=1 etl-default=2",
        "queue_reorder",
        patches="spec.priority of the queues it moves",
    )
    reorder.add_argument("pool")
    reorder.add_argument("targets", nargs="+", type=parse_target, metavar="QUEUE=PRIORITY")


def _worker_verbs(verbs: _Verbs) -> None:
    ls = verbs.add("ls", "List a pool's workers, newest heartbeat first.", "ls etl", "worker_ls")
    ls.add_argument("pool")
    ls.add_argument("--status", choices=[p.value for p in WorkerPhase], help="only Online or Offline workers")
    delete = verbs.add(
        "delete",
        "Delete a worker (one still running registers again with its next heartbeat).",
        "delete etl old-worker",
        "worker_delete",
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
    module = worker_module()
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
        "run_create",
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
    create.add_argument(
        "--retries", type=_count, default=0, metavar="N", help="attempts after a Failed or Crashed one (default: 0)"
    )
    create.add_argument(
        "--retry-delay", type=_count, default=0, metavar="SECONDS", help="between a failed attempt and the next"
    )

    ls = verbs.add("ls", "List flow runs, newest scheduled first.", "ls --pool etl --state Running", "run_ls")
    ls.add_argument("--pool")
    ls.add_argument("--queue")
    ls.add_argument("--state", choices=[s.value for s in StateType], help="only runs in this state")
    ls.add_argument("--limit", type=_count, metavar="N", help="show at most N runs")

    verbs.add("inspect", "Show one flow run in detail.", "inspect etl-x7k2p", "run_inspect").add_argument("name")
    why = verbs.add(
        "why",
        "Why a run waits: its place among the admissible runs of its pool and queue, every rule holding it,\n"
        "and an estimated start from the pool's recent grant rate (mean and 10th-90th percentile).",
        "why etl-x7k2p --window 30",
        "run_why",
    )
    why.add_argument("name")
    why.add_argument(
        "--window",
        type=_minutes,
        metavar="MINUTES",
        help="count the pool's grants over this many minutes for its rate (default: 10)",
    )
    verbs.add(
        "cancel",
        "Cancel a run: a Scheduled one at once, an active one through its worker.",
        "cancel etl-x7k2p",
        "run_cancel",
        patches="spec.cancel",
    ).add_argument("name")


def _schedule_verbs(verbs: _Verbs) -> None:
    verbs.add("ls", "List flow schedules: cron, suspended, active runs, last and next time.", "ls", "schedule_ls")
    verbs.add("inspect", "Show one flow schedule in detail.", "inspect nightly", "schedule_inspect").add_argument(
        "name"
    )
    verbs.add(
        "suspend",
        "Stop creating runs (running ones go on).",
        "suspend nightly",
        "schedule_suspend",
        patches="spec.suspend",
    ).add_argument("name")
    verbs.add(
        "resume",
        "Create runs again; times missed meanwhile are caught up within maxCatchUpRuns.",
        "resume nightly",
        "schedule_resume",
        patches="spec.suspend",
    ).add_argument("name")
    verbs.add(
        "trigger", "Create one run now from the schedule's template.", "trigger nightly", "schedule_trigger"
    ).add_argument("name")


if __name__ == "__main__":
    sys.exit(main())
