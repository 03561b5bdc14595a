"""What the CLI prints: tables, slot bars, durations, detail views, and JSON/YAML for scripts.

Pure functions of the models and a `now`: no I/O, no clock reads, so every view is unit-tested.
A command builds a `View` (the data for `-o json|yaml` and the text for the default table) and
`emit` picks one.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from workpools.api.base import LatePolicy, Resource, SlotStatus, timestamp, to_json
from workpools.api.conditions import Condition, ConditionType
from workpools.api.flowcontrol import limit_in_force
from workpools.api.flowrun import FlowRun
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool, WorkPoolSpec
from workpools.api.workqueue import WorkQueue, WorkQueueSpec

if TYPE_CHECKING:  # the runs client and core/'s views: imported by the commands that use them only
    from workpools.client.runs import PoolSlots, QueueSlots
    from workpools.core.snapshot import RunView
    from workpools.core.waiting import Estimate, Position, Waiting

BAR_WIDTH = 8
NONE = "-"
"""What an empty cell shows, as kubectl does (`<none>` is too wide for narrow columns)."""


@dataclass(frozen=True)
class View:
    """One command's answer: `data` for `-o json|yaml`, `text` for people."""

    data: Any
    text: str


def emit(view: View, output: str) -> str:
    """The text to print for `-o output` (no trailing newline)."""
    if output == "json":
        return json.dumps(view.data, indent=2, ensure_ascii=False)
    if output == "yaml":
        return yaml.safe_dump(view.data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return view.text


def as_data(obj: Resource) -> dict[str, Any]:
    """An object as the API server stores it (camelCase, nulls left out)."""
    return to_json(obj)


# -- building blocks -------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, indent: str = "") -> str:
    """Left-aligned columns, three spaces apart, headers upper-case, as `kubectl get` prints them."""
    cells = [[str(h).upper() for h in headers], *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    return "\n".join(indent + line for line in lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return NONE
    return str(value)


def bar(active: int, limit: int | None, width: int = BAR_WIDTH) -> str:
    """`[████░░░░] 4/8`: the share of a limit in use. Unlimited: `[no limit] 4/∞`.

    Any use shows at least one block and a limit not yet reached never looks full, so a glance
    tells "idle", "busy" and "full" apart; a lowered limit can show more in use than allowed.
    """
    if limit is None:
        label = "no limit" if width >= len("no limit") else "∞"
        return f"[{label.center(width)}] {active}/∞"
    if limit == 0:
        filled = width if active > 0 else 0
    else:
        filled = round(width * min(active, limit) / limit)
        if active > 0:
            filled = max(filled, 1)
        if active < limit:
            filled = min(filled, width - 1)
    return f"[{'█' * filled}{'░' * (width - filled)}] {active}/{limit}"


def duration(seconds: float) -> str:
    """A short, exact-enough span: `42s`, `1m05s`, `2h03m`, `3d04h` (negative clock skew: `0s`)."""
    total = max(0, math.floor(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def age(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """How long ago `moment` was, as `duration` (`-` when unknown)."""
    return NONE if moment is None else duration((now - moment).total_seconds())


def ago(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """`12s ago` / `in 5m00s` / `never`."""
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def stamp(moment: datetime.datetime | None) -> str:
    """`2026-01-01 12:00:05Z`: UTC to the second."""
    if moment is None:
        return NONE
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def details(pairs: Iterable[tuple[str, object]]) -> str:
    """`Key:   value` lines, values aligned, as `kubectl describe` prints them."""
    items = [(f"{key}:", _cell(value)) for key, value in pairs]
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}".rstrip() for key, value in items)


def conditions(items: Sequence[Condition], now: datetime.datetime) -> str:
    if not items:
        return "Conditions:  -"
    rows = [(c.type, c.status.value, c.reason, age(c.last_transition_time, now), c.message) for c in items]
    return "Conditions:\n" + table(("type", "status", "reason", "age", "message"), rows, indent="  ")


def _flag(value: bool) -> str:
    return "yes" if value else "no"


def _limit(limit: int | None) -> str:
    return "unlimited" if limit is None else str(limit)


# -- pools -----------------------------------------------------------------------------------------


def pools_table(pools: Sequence[WorkPool], now: datetime.datetime) -> str:
    if not pools:
        return "No WorkPools found."
    rows = [
        (
            p.metadata.name,
            p.spec.type,
            _phase(p.status.phase),
            f"{p.status.workers.online}/{p.status.workers.total}",
            _summary(p.status.slots.active, limit_in_force(p.spec, p.status.slots)),
            p.status.queues,
            age(p.metadata.creation_timestamp, now),
        )
        for p in pools
    ]
    return table(("name", "type", "status", "workers", "slots", "queues", "age"), rows)


def pool_details(pool: WorkPool, now: datetime.datetime) -> str:
    spec, status = pool.spec, pool.status
    template = spec.base_job_template
    policies = [
        f"{name}={value}s"
        for name, value in (
            ("pendingTimeout", spec.pending_timeout_seconds),
            ("cancellingTimeout", spec.cancelling_timeout_seconds),
            ("workerTTLAfterOffline", spec.worker_ttl_after_offline_seconds),
            ("finishedRunTTL", spec.finished_run_ttl_seconds),
        )
        if value is not None
    ]
    if spec.late_policy is not None:
        policies.append(f"latePolicy={late_policy(spec.late_policy)}")
    lines = details(
        [
            ("Name", pool.metadata.name),
            ("Namespace", pool.metadata.namespace),
            ("Type", spec.type),
            ("Description", spec.description),
            ("Status", _phase(status.phase)),
            ("Paused", _flag(spec.paused)),
            ("Concurrency limit", _limit(spec.concurrency_limit)),
            *flow_control_rows(spec, status.slots, status.conditions),
            ("Slots", bar(status.slots.active, limit_in_force(spec, status.slots))),
            ("Workers", f"{status.workers.online} online of {status.workers.total}"),
            ("Queues", f"{status.queues} (default: {status.default_queue or NONE})"),
            ("Job command", (template.job_configuration.get("command") if template else None)),
            ("Job variables", ", ".join(sorted(template.variables.get("properties") or {})) if template else None),
            ("Policies", ", ".join(policies) or None),
            ("Created", _when(pool.metadata.creation_timestamp, now)),
        ]
    )
    return lines + "\n" + conditions(status.conditions, now)


def flow_control_rows(
    spec: WorkPoolSpec | WorkQueueSpec, slots: SlotStatus, conditions: Sequence[Condition]
) -> list[tuple[str, str | None]]:
    """The flow-control lines of `pool inspect` / `queue inspect` (none when nothing is set)."""
    rows: list[tuple[str, str | None]] = []
    if spec.concurrency_limit_schedule:
        window = next((c for c in conditions if c.type == ConditionType.LIMIT_WINDOW), None)
        now = f" ({window.message})" if window is not None else ""
        rows.append(("Effective limit", _limit(slots.limit) + now))
        rows.append(("Limit windows", "; ".join(f"{w.label()}: {w.limit}" for w in spec.concurrency_limit_schedule)))
    if spec.concurrency_limit_per_key:
        rows.append(("Per-key limits", ", ".join(f"{r.key()}: {r.limit}" for r in spec.concurrency_limit_per_key)))
    if (rate := spec.start_rate) is not None:
        rows.append(("Start rate", f"{rate.per_minute}/min, burst {rate.burst}"))
    return rows


def late_policy(policy: LatePolicy) -> str:
    """`Cancel after 60s, skip to latest`: a latePolicy on one line."""
    text = f"{policy.action.value} after {policy.after_seconds}s" if policy.after_seconds else policy.action.value
    return text + (", skip to latest" if policy.skip_to_latest else "")


def pool_changed(pool: WorkPool, what: str) -> str:
    return f'WorkPool "{pool.metadata.name}" {what}'


# -- queues ----------------------------------------------------------------------------------------


def queues_table(queues: Sequence[WorkQueue], now: datetime.datetime) -> str:
    if not queues:
        return "No WorkQueues found."
    rows = [
        (
            q.metadata.name,
            priority(q),
            _phase(q.status.phase),
            _summary(q.status.slots.active, limit_in_force(q.spec, q.status.slots)),
            q.status.scheduled_runs,
            ago(q.status.last_polled, now),
            age(q.metadata.creation_timestamp, now),
        )
        for q in queues
    ]
    return table(("name", "priority", "status", "slots", "scheduled", "last polled", "age"), rows)


def priority(queue: WorkQueue) -> str:
    """The effective priority, and the requested one when another queue holds it: `3 (asks 2)`."""
    effective, asked = queue.status.effective_priority, queue.spec.priority
    if effective is None:
        return f"{asked} (pending)" if asked is not None else NONE
    if asked is not None and asked != effective:
        return f"{effective} (asks {asked})"
    return str(effective)


def queue_details(queue: WorkQueue, now: datetime.datetime) -> str:
    spec, status = queue.spec, queue.status
    lines = details(
        [
            ("Name", queue.metadata.name),
            ("Namespace", queue.metadata.namespace),
            ("Pool", spec.work_pool),
            ("Priority", priority(queue)),
            ("Description", spec.description),
            ("Status", _phase(status.phase)),
            ("Paused", _flag(spec.paused)),
            ("Concurrency limit", _limit(spec.concurrency_limit)),
            *flow_control_rows(spec, status.slots, status.conditions),
            ("Slots", bar(status.slots.active, limit_in_force(spec, status.slots))),
            ("Scheduled runs", f"{status.scheduled_runs} ({status.late_runs} late)"),
            ("Late policy", late_policy(spec.late_policy) if spec.late_policy else "(the pool's)"),
            ("Last polled", ago(status.last_polled, now)),
            ("Created", _when(queue.metadata.creation_timestamp, now)),
        ]
    )
    return lines + "\n" + conditions(status.conditions, now)


def same_priority(queue: WorkQueue, holder: str | None, prog: str) -> str:
    """What `queue set-priority` says when asked for the value the queue already requests (nothing is written).

    Writing the same spec.priority again changes nothing in a declarative system (no new
    generation, nothing for the operator to see), so it cannot take the value back from the queue
    holding it, as Prefect's update of the same value would: `reorder` can, by rewriting specs.
    """
    name, pool, asked = queue.metadata.name, queue.spec.work_pool, queue.spec.priority
    effective = queue.status.effective_priority
    if effective == asked:
        return f'WorkQueue "{name}" already asks for and runs at priority {asked}; nothing to change'
    if effective is None:
        return (
            f'WorkQueue "{name}" already asks for priority {asked}; nothing to change (the operator has not '
            "resolved it yet: see status.effectivePriority)"
        )
    held = f"queue {holder} holds {asked}" if holder else f"{asked} is taken"
    return (
        f'WorkQueue "{name}" already asks for priority {asked} (spec.priority) and runs at priority {effective}: '
        f"{held}, asked for later. Nothing was written: writing the same value again is not a change the operator "
        f"can see, so it cannot take {asked} back (Prefect's update would). To give it {asked} now and "
        f"push the others down, run `{prog} queue reorder {pool} {name}={asked}` (rewrites spec.priority "
        "of the queues it moves)."
    )


def priorities_table(priorities: Mapping[str, int]) -> str:
    rows = sorted(priorities.items(), key=lambda item: (item[1], item[0]))
    return table(("queue", "priority"), rows)


# -- workers ---------------------------------------------------------------------------------------


def workers_table(workers: Sequence[Worker], now: datetime.datetime) -> str:
    if not workers:
        return "No Workers found."
    rows = [
        (
            w.metadata.name,
            _phase(w.status.phase) + (",Draining" if w.spec.draining else ""),
            ",".join(w.spec.work_queues) or "all",
            w.spec.limit,
            w.status.assigned_runs,
            ago(w.status.last_heartbeat_time, now),
            age(w.metadata.creation_timestamp, now),
        )
        for w in workers
    ]
    return table(("name", "status", "queues", "limit", "runs", "last heartbeat", "age"), rows)


# -- runs ------------------------------------------------------------------------------------------


def state(run: FlowRun) -> str:
    """`Running`, or `Scheduled (Late)` when the state name says more than the type."""
    kind, name = run.status.state, run.status.state_name
    if kind is None:
        return "New"
    return kind.value if not name or name == kind.value else f"{kind.value} ({name})"


def runs_table(runs: Sequence[FlowRun], now: datetime.datetime) -> str:
    if not runs:
        return "No FlowRuns found."
    rows = [
        (
            r.metadata.name,
            r.spec.work_pool,
            r.spec.work_queue or "(default)",
            state(r),
            r.status.worker,
            ago(r.status.scheduled_time or r.spec.scheduled_time or r.metadata.creation_timestamp, now),
            age(r.metadata.creation_timestamp, now),
        )
        for r in runs
    ]
    return table(("name", "pool", "queue", "state", "worker", "scheduled", "age"), rows)


def run_details(run: FlowRun, now: datetime.datetime) -> str:
    spec, status = run.spec, run.status
    slot = status.slot
    lines = details(
        [
            ("Name", run.metadata.name),
            ("Namespace", run.metadata.namespace),
            ("Pool", spec.work_pool),
            ("Queue", spec.work_queue or "(the pool's default queue)"),
            ("State", state(run)),
            ("Attempt", _attempt(run)),
            ("Last failure", _failure(run)),
            ("Worker", status.worker),
            ("Scheduled", _when(status.scheduled_time or spec.scheduled_time, now)),
            ("Slot", f"in {slot.queue}, held for {age(slot.acquired_at, now)}" if slot else None),
            ("Cancelling since", _when(status.cancelling_since, now) if status.cancelling_since else None),
            ("Started", _when(status.start_time, now) if status.start_time else None),
            ("Ended", _when(status.end_time, now) if status.end_time else None),
            ("Parameters", json.dumps(spec.parameters, ensure_ascii=False) if spec.parameters else None),
            ("Command", spec.command or "(the pool's job template)"),
            ("Cancel requested", _flag(spec.cancel)),
            ("Message", status.message.splitlines()[-1] if status.message else None),
            ("Created", _when(run.metadata.creation_timestamp, now)),
        ]
    )
    return lines + "\n" + conditions(status.conditions, now)


def _attempt(run: FlowRun) -> str | None:
    """`2 of 4`: the attempt, out of the most spec.retries allows; nothing to say for a single try."""
    attempt, retries = run.status.attempt or 1, run.spec.retries
    if retries == 0 and attempt == 1:
        return None
    delay = f", {run.spec.retry_delay_seconds}s apart" if run.spec.retry_delay_seconds else ""
    return f"{attempt} of {retries + 1}{delay}"


def _failure(run: FlowRun) -> str | None:
    failure = run.status.last_failure
    if failure is None:
        return None
    line = failure.message.splitlines()[-1] if failure.message else "no message"
    return f"attempt {failure.attempt} {failure.state.value}: {line}"


def run_changed(run: FlowRun, what: str) -> str:
    return f'FlowRun "{run.metadata.name}" {what}'


# -- why a run waits -------------------------------------------------------------------------------


def why_view(why: Waiting, now: datetime.datetime) -> str:
    """`workpools run why`: state, position, every rule holding the run, the estimated start."""
    shown = why.state.value if why.state is not None else "New"
    if why.state_name and why.state is not None and why.state_name != why.state.value:
        shown += f" ({why.state_name})"
    head = [("Run", why.run), ("Pool", why.pool), ("Queue", why.queue), ("State", shown)]
    if not why.waiting:
        return details([*head, ("Waiting", f"no: {why.note}")])
    lines = details(
        [
            *head,
            ("Position", position(why.pool_position, why.queue_position)),
            ("Estimated start", estimate(why.estimate, now)),
        ]
    )
    if not why.holds:
        return lines + "\nHeld by:  nothing: the next admission pass grants it"
    rules = table(("reason", "message"), [(h.reason, h.message) for h in why.holds], indent="  ")
    return f"{lines}\nHeld by:\n{rules}"


def position(pool: Position | None, queue: Position | None) -> str | None:
    """`3rd of 12 admissible in pool etl, 1st of 4 in queue etl-high`, or how many are ahead of a
    run that is not admissible itself (not due yet, paused, being cancelled)."""
    if pool is None or queue is None:
        return None
    if pool.counted:
        return (
            f"{ordinal(pool.ahead + 1)} of {pool.admissible} admissible in {pool.scope}, "
            f"{ordinal(queue.ahead + 1)} of {queue.admissible} in {queue.scope}"
        )
    return (
        f"not admissible itself; {pool.ahead} of the {pool.admissible} admissible runs of {pool.scope} "
        f"come before it, {queue.ahead} of {queue.admissible} in {queue.scope}"
    )


def ordinal(n: int) -> str:
    """`1st`, `2nd`, `3rd`, `4th`, `11th`, `12th`, `13th`, `21st`."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")  # the teens take th
    return f"{n}{suffix}"


def estimate(found: Estimate | None, now: datetime.datetime) -> str | None:
    """`in 40s (range 25s–1m10s), from 18 grants in the last 10m`, `now (...)` or `none: why`."""
    if found is None:
        return None
    if found.start is None or found.earliest is None or found.latest is None:
        return f"none: {found.unknown}"
    if found.needed == 0:
        return "now (nothing holds it)"
    grants = f"{found.grants} grant{'' if found.grants == 1 else 's'}"
    return (
        f"in {_until(found.start, now)} (range {_until(found.earliest, now)}–{_until(found.latest, now)}), "
        f"from {grants} in the last {_span(found.window)}"
    )


def _span(window: datetime.timedelta) -> str:
    """`10m`, `1h30m`, else as `duration` (`1m30s`): a window as it was most likely asked for."""
    minutes, seconds = divmod(math.floor(window.total_seconds()), 60)
    if seconds or not minutes:
        return duration(window.total_seconds())
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")


def _until(moment: datetime.datetime, now: datetime.datetime) -> str:
    return duration(math.ceil((moment - now).total_seconds()))


def why_data(why: Waiting, now: datetime.datetime) -> dict[str, Any]:
    """`run why -o json|yaml`: the same, structured (times as RFC 3339, spans in seconds)."""

    def where(found: Position | None) -> dict[str, Any] | None:
        if found is None:
            return None
        rank = found.ahead + 1 if found.counted else None
        return {"scope": found.scope, "rank": rank, "ahead": found.ahead, "admissible": found.admissible}

    found = why.estimate
    return {
        "name": why.run,
        "pool": why.pool,
        "queue": why.queue,
        "state": why.state.value if why.state is not None else None,
        "stateName": why.state_name,
        "waiting": why.waiting,
        "note": why.note or None,
        "position": {"pool": where(why.pool_position), "queue": where(why.queue_position)} if why.waiting else None,
        "heldBy": [
            {
                "reason": h.reason,
                "message": h.message,
                "liftedByTime": h.lifted_by_time,
                "until": timestamp(h.until) if h.until else None,
            }
            for h in why.holds
        ],
        "estimate": None
        if found is None
        else {
            "start": timestamp(found.start) if found.start else None,
            "earliest": timestamp(found.earliest) if found.earliest else None,
            "latest": timestamp(found.latest) if found.latest else None,
            "inSeconds": _seconds(found.start, now),
            "rangeSeconds": [_seconds(found.earliest, now), _seconds(found.latest, now)] if found.start else None,
            "grantsNeeded": found.needed,
            "grantsInWindow": found.grants,
            "windowSeconds": found.window.total_seconds(),
            "unknown": found.unknown,
        },
    }


def _seconds(moment: datetime.datetime | None, now: datetime.datetime) -> float | None:
    return None if moment is None else round((moment - now).total_seconds(), 3)


# -- preview and slots -----------------------------------------------------------------------------


def preview_table(
    runs: Sequence[RunView],
    priorities: Mapping[str, int | None],
    now: datetime.datetime,
    pool: WorkPool | None = None,
) -> str:
    """The runs a pool would hand out next; when there are none, `pool` (if given) says why."""
    if not runs:
        return "No runs would be handed out in that window" + _why_none(pool) + "."
    rows = [
        (stamp(r.scheduled_time), ago(r.scheduled_time, now), r.name, r.queue, priorities.get(r.queue)) for r in runs
    ]
    return table(("scheduled", "when", "run", "queue", "priority"), rows)


def _why_none(pool: WorkPool | None) -> str:
    if pool is None:
        return ""
    if pool.spec.paused:
        return ": the pool is paused"
    slots = pool.status.slots
    if pool.spec.concurrency_limit is not None and slots.active >= pool.spec.concurrency_limit:
        return f": the pool has no open slot ({slots.active}/{pool.spec.concurrency_limit} in use)"
    return ""


def preview_data(runs: Sequence[RunView], priorities: Mapping[str, int | None]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "queue": r.queue,
            "priority": priorities.get(r.queue),
            "scheduledTime": timestamp(r.scheduled_time),
            "state": r.state.value,
        }
        for r in runs
    ]


def slots_view(pools: Sequence[PoolSlots], now: datetime.datetime) -> str:
    """`workpools pool slots`: per pool a bar, per queue a bar, then who holds the slots and how long."""
    if not pools:
        return "No WorkPools found."
    return "\n\n".join(_pool_slots(pool, now) for pool in pools)


def _pool_slots(pool: PoolSlots, now: datetime.datetime) -> str:
    status = pool.pool.status
    head = (
        f"{pool.name}   {bar(pool.active, pool.limit)}   {_phase(status.phase)}, "
        f"{status.workers.online}/{status.workers.total} workers online"
    )
    if pool.pool.spec.paused and status.phase is not None and status.phase.value != "Paused":
        head += ", paused"
    queue_rows = [
        (
            "  " + q.name,
            q.priority if q.exists else "(deleted)",
            bar(q.active, q.limit) + ("   paused" if q.paused else ""),
        )
        for q in pool.queues
    ]
    queues = table(("  queue", "priority", "slots"), queue_rows) if queue_rows else "  no queues"
    parts = [head, queues, ""]
    holders = [(q, run) for q in pool.queues for run in q.holders]
    if holders:
        rows = [
            (
                "  " + run.metadata.name,
                q.name,
                state(run),
                run.status.worker,
                age(run.status.slot.acquired_at if run.status.slot else None, now),
            )
            for q, run in holders
        ]
        parts.append(table(("  slot holder", "queue", "state", "worker", "held for"), rows))
        hidden = sum(q.active - len(q.holders) for q in pool.queues)
        if hidden > 0:
            parts.append(f"  ... and {hidden} more (raise --holders to see them)")
    else:
        parts.append("  no slot holders")
    return "\n".join(parts)


def slots_data(pool: PoolSlots, now: datetime.datetime) -> dict[str, Any]:
    """Prefect's `/concurrency_status` shape, in camelCase like the rest of our API."""
    return {
        "pool": pool.name,
        "phase": pool.pool.status.phase.value if pool.pool.status.phase is not None else None,
        "activeSlots": pool.active,
        "concurrencyLimit": pool.limit,
        "queues": [_queue_slots_data(q, now) for q in pool.queues],
    }


def _queue_slots_data(queue: QueueSlots, now: datetime.datetime) -> dict[str, Any]:
    return {
        "name": queue.name,
        "priority": queue.priority,
        "exists": queue.exists,
        "paused": queue.paused,
        "activeSlots": queue.active,
        "concurrencyLimit": queue.limit,
        "flowRunCount": queue.active,
        "flowRuns": [
            {
                "name": run.metadata.name,
                "state": run.status.state.value if run.status.state else None,
                "stateName": run.status.state_name,
                "worker": run.status.worker,
                "slotAcquiredAt": timestamp(run.status.slot.acquired_at) if run.status.slot else None,
                "heldSeconds": (
                    max(0, math.floor((now - run.status.slot.acquired_at).total_seconds())) if run.status.slot else None
                ),
            }
            for run in queue.holders
        ],
    }


# -- small helpers ---------------------------------------------------------------------------------


def _phase(phase: Any) -> str:
    return NONE if phase is None else str(phase.value)


def _summary(active: int, limit: int | None) -> str:
    return f"{active}/{'∞' if limit is None else limit}"


def _when(moment: datetime.datetime | None, now: datetime.datetime) -> str | None:
    return None if moment is None else f"{stamp(moment)} ({ago(moment, now)})"
