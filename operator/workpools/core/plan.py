"""What a pool and its queues should look like now: statuses, events, and the default queue.

`plan_pool` is the whole decision of one reconcile pass, as a pure function of what the store
holds. The controller applies the plan: it creates the default queue if asked to, writes each
status that differs from the object's, and posts the events.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from workpools.api.base import Resource
from workpools.api.conditions import Condition, ConditionType, Reason
from workpools.api.flowrun import queue_of
from workpools.api.meta import default_queue_name
from workpools.api.phases import QueuePhase, WorkerPhase
from workpools.api.worker import Worker, WorkerStatus
from workpools.api.workpool import WorkerCounts, WorkPool, WorkPoolSpec, WorkPoolStatus
from workpools.api.workqueue import WorkQueue, WorkQueueSpec, WorkQueueStatus
from workpools.core import flowcontrol, liveness, priorities, slots, templates
from workpools.core.selection import in_line, overdue, scheduled_time
from workpools.core.snapshot import PoolState
from workpools.core.statuses import (
    Event,
    EventType,
    phase_event,
    pool_events,
    pool_status,
    set_condition,
    slot_status,
)


@dataclass(frozen=True)
class SpecChange:
    """A spec the store saw replaced by a newer generation: the source of `Updated` events."""

    kind: str
    name: str
    old: BaseModel
    new: BaseModel


@dataclass
class PoolPlan:
    """One pass's decisions: statuses to make true, events to post (about which object), writes to make."""

    pool_status: WorkPoolStatus | None = None
    queue_statuses: dict[str, WorkQueueStatus] = field(default_factory=dict)
    worker_statuses: dict[str, WorkerStatus] = field(default_factory=dict)
    events: list[tuple[Resource, Event]] = field(default_factory=list)
    create_default_queue: bool = False
    delete_workers: list[str] = field(default_factory=list)
    """Workers Offline for longer than the pool's workerTTLAfterOfflineSeconds."""


def plan_pool(
    state: PoolState, *, changes: Sequence[SpecChange] = (), deletions: Sequence[WorkPool | WorkQueue] = ()
) -> PoolPlan:
    plan = PoolPlan()
    for gone in deletions:
        plan.events.append((gone, Event(EventType.NORMAL, "Deleted", f"{gone.KIND} {gone.metadata.name} deleted")))
    judgement = liveness.judge(state)
    online = _plan_workers(plan, state, judgement)
    if state.pool is not None:
        _plan_pool(plan, state, state.pool, online, judgement.observer_suspected)
    _plan_queues(plan, state, online)
    _plan_updates(plan, state, changes)
    return plan


def _plan_workers(plan: PoolPlan, state: PoolState, judgement: liveness.Judgement) -> list[Worker]:
    """Each worker's phase (core/liveness.py); the expired ones to delete. Returns the Online ones."""
    pool, now = state.pool, state.now
    ttl = pool.spec.worker_ttl_after_offline_seconds if pool is not None else None
    assigned = Counter(r.status.worker for r in state.holders if r.status.worker)
    queue_names = {q.metadata.name for q in state.queues}
    online = []
    for worker in state.workers:
        name = worker.metadata.name
        if pool is not None and liveness.expired(worker, judgement, ttl, now):
            plan.delete_workers.append(name)
            plan.events.append(
                (pool, Event(EventType.NORMAL, "WorkerDeleted", f"deleted Worker {name}: Offline for more than {ttl}s"))
            )
            continue
        # A silent worker stays Online as written until a direct read confirms it (a suspect).
        phase = WorkerPhase.OFFLINE if name in judgement.offline else WorkerPhase.ONLINE
        status = _worker_status(
            worker, phase, pool_exists=pool is not None, queue_names=queue_names, assigned=assigned[name], now=now
        )
        plan.worker_statuses[name] = status
        if status.phase is WorkerPhase.ONLINE:
            online.append(worker)
        if status.phase is not worker.status.phase and (worker.status.phase, status.phase) != (
            None,
            WorkerPhase.OFFLINE,
        ):
            online_now = status.phase is WorkerPhase.ONLINE
            plan.events.append(
                (
                    worker,
                    Event(
                        EventType.NORMAL if online_now else EventType.WARNING,
                        "WorkerOnline" if online_now else "WorkerOffline",
                        _ready_message(worker, online=online_now),
                    ),
                )
            )
    return online


def _plan_pool(
    plan: PoolPlan, state: PoolState, pool: WorkPool, online: Sequence[Worker], observer_suspected: str
) -> None:
    default_queue = default_queue_name(state.name)
    plan.create_default_queue = pool.metadata.deletion_timestamp is None and not any(
        q.metadata.name == default_queue for q in state.queues
    )
    problems = _template_problems(pool.spec)
    plan.pool_status = pool_status(
        pool.status,
        generation=pool.metadata.generation,
        paused=pool.spec.paused,
        default_queue=default_queue,
        queues=len(state.queues) + plan.create_default_queue,
        workers=WorkerCounts(online=len(online), total=len(state.workers) - len(plan.delete_workers)),
        slot_counts=slots.Slots(len(state.holders), _effective(pool.spec, state.now).limit),
        invalid=problems,
        now=state.now,
    )
    conditions = limit_window(
        plan.pool_status.conditions, pool.spec, generation=pool.metadata.generation, now=state.now
    )
    plan.pool_status = plan.pool_status.model_copy(update={"conditions": conditions})
    plan.events += [(pool, e) for e in window_events(pool.status.conditions, conditions)]
    plan.pool_status = _reclaim_suspension(plan.pool_status, observer_suspected, pool.metadata.generation, state.now)
    plan.events += [(pool, e) for e in pool_events(pool.status, plan.pool_status, name=state.name)]
    if observer_suspected and not _reclaim_suspended(pool.status.conditions):
        plan.events.append((pool, Event(EventType.WARNING, Reason.RECLAIM_SUSPENDED, observer_suspected)))
    if problems and not _invalid(pool.status.conditions):
        plan.events.append((pool, Event(EventType.WARNING, Reason.TEMPLATE_INVALID, problems)))


def _reclaim_suspension(
    status: WorkPoolStatus, suspected: str, generation: int | None, now: datetime.datetime
) -> WorkPoolStatus:
    """The ReclaimSuspended condition: True while too many workers look lost at once; absent until first needed."""
    if not suspected and not any(c.type == ConditionType.RECLAIM_SUSPENDED for c in status.conditions):
        return status
    conditions = set_condition(
        status.conditions,
        ConditionType.RECLAIM_SUSPENDED,
        bool(suspected),
        Reason.RECLAIM_SUSPENDED if suspected else Reason.WORKERS_REACHABLE,
        suspected or "workers go silent one at a time: reclaiming normally",
        generation=generation,
        now=now,
    )
    return status.model_copy(update={"conditions": conditions})


def _reclaim_suspended(conditions: Sequence[Condition]) -> bool:
    return any(c.type == ConditionType.RECLAIM_SUSPENDED and c.status == "True" for c in conditions)


def _plan_queues(plan: PoolPlan, state: PoolState, online: Sequence[Worker]) -> None:
    active_by_queue = Counter(queue_of(r) for r in state.holders)
    waiting_runs = [r for r in state.runs if in_line(r)]
    waiting = Counter(queue_of(r) for r in waiting_runs)
    late = Counter(queue_of(r) for r in waiting_runs if overdue(scheduled_time(r), state.now))
    effective, requests = queue_priorities(state.queues, state.now)
    holder_of = {value: name for name, value in effective.items()}
    for queue in state.queues:
        name = queue.metadata.name
        request = requests[name]
        serving = [w for w in online if _serves(w, name)]
        status = _queue_status(
            queue,
            pool_exists=state.pool is not None,
            served=bool(serving),
            effective=effective[name],
            request=request,
            holder=holder_of.get(request.requested) if effective[name] != request.requested else None,
            active=active_by_queue[name],
            scheduled=waiting[name],
            late=late[name],
            last_polled=liveness.last_polled(queue.status.last_polled, liveness.latest_heartbeat(serving)),
            now=state.now,
        )
        plan.queue_statuses[name] = status
        plan.events += [(queue, e) for e in _queue_events(queue, status, pool_name=state.name)]


def _plan_updates(plan: PoolPlan, state: PoolState, changes: Sequence[SpecChange]) -> None:
    current: dict[tuple[str, str], Resource] = {(q.KIND, q.metadata.name): q for q in state.queues}
    if state.pool is not None:
        current[state.pool.KIND, state.name] = state.pool
    for change in changes:
        message = describe_changes(change.old, change.new)
        target = current.get((change.kind, change.name))
        if message and target is not None:
            event = Event(EventType.NORMAL, "Updated", f"{change.kind} {change.name} updated: {message}")
            plan.events.append((target, event))


# -- workers -------------------------------------------------------------------------------------


def _worker_status(
    worker: Worker,
    phase: WorkerPhase,
    *,
    pool_exists: bool,
    queue_names: set[str],
    assigned: int,
    now: datetime.datetime,
) -> WorkerStatus:
    current, generation = worker.status, worker.metadata.generation
    online = phase is WorkerPhase.ONLINE
    conditions = set_condition(
        current.conditions,
        ConditionType.READY,
        online,
        Reason.WORKER_ONLINE if online else Reason.HEARTBEAT_MISSED,
        _ready_message(worker, online=online),
        generation=generation,
        now=now,
    )
    unknown = sorted(set(worker.spec.work_queues) - queue_names) if pool_exists else []
    conditions = set_condition(
        conditions,
        ConditionType.QUEUE_NOT_FOUND,
        bool(unknown),
        Reason.QUEUE_NOT_FOUND if unknown else Reason.QUEUES_FOUND,
        f"not queues of pool {worker.spec.work_pool}: {', '.join(unknown)}"
        if unknown
        else "every queue it serves exists",
        generation=generation,
        now=now,
    )
    conditions = _pool_found(conditions, worker.spec.work_pool, exists=pool_exists, generation=generation, now=now)
    if (
        conditions is current.conditions
        and current.phase is phase
        and current.observed_generation == generation
        and current.assigned_runs == assigned
    ):
        return current  # as stored: the caller sees by identity that there is nothing to write
    return current.model_copy(
        update={
            "phase": phase,
            "conditions": conditions,
            "observed_generation": generation,
            "assigned_runs": assigned,
        }
    )


def _pool_found(
    conditions: Sequence[Condition], pool: str, *, exists: bool, generation: int | None, now: datetime.datetime
) -> list[Condition]:
    """The PoolNotFound condition of a queue or worker: True while the pool it names is missing."""
    return set_condition(
        conditions,
        ConditionType.POOL_NOT_FOUND,
        not exists,
        Reason.POOL_FOUND if exists else Reason.POOL_NOT_FOUND,
        f"WorkPool {pool} " + ("exists" if exists else "does not exist"),
        generation=generation,
        now=now,
    )


def _ready_message(worker: Worker, *, online: bool) -> str:
    last = worker.status.last_heartbeat_time
    if last is None:
        return "no heartbeat yet"
    interval = int(liveness.heartbeat_interval(worker).total_seconds())
    if online:
        # Stable while Online: a message that changed with every heartbeat would cost a write each.
        return f"heartbeating every {interval}s"
    since = last.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"no heartbeat since {since} (more than {liveness.OFFLINE_AFTER_INTERVALS} x {interval}s)"


# -- priorities ----------------------------------------------------------------------------------


def queue_priorities(
    queues: Sequence[WorkQueue], now: datetime.datetime
) -> tuple[dict[str, int], dict[str, priorities.PriorityRequest]]:
    """Each queue's request (spec, else the value it was given) and the replayed effective priorities.

    A queue seen for the first time without spec.priority takes the first value free at that
    moment and keeps it (in status.requestedPriority, with status.priorityAssigned), like
    Prefect's create. A queue whose spec.priority is removed keeps its last requested value:
    nothing moves. `priorities.current_request` says when a request is new.
    """
    requests: dict[str, priorities.PriorityRequest] = {}
    newcomers = []
    for queue in queues:
        request = priorities.current_request(
            queue.metadata.name,
            spec=queue.spec.priority,
            kept=queue.status.requested_priority,
            kept_assigned=queue.status.priority_assigned,
            since=queue.status.priority_requested_at,
            now=now,
        )
        if request is None:
            newcomers.append(queue)
        else:
            requests[queue.metadata.name] = request
    for queue in sorted(newcomers, key=lambda q: (q.metadata.creation_timestamp or now, q.metadata.name)):
        taken = priorities.resolve(requests.values()).values()
        name = queue.metadata.name
        requests[name] = priorities.PriorityRequest(name, priorities.first_free_priority(taken), now, assigned=True)
    return priorities.resolve(requests.values()), requests


# -- queues --------------------------------------------------------------------------------------


def _queue_status(
    queue: WorkQueue,
    *,
    pool_exists: bool,
    served: bool,
    effective: int,
    request: priorities.PriorityRequest,
    holder: str | None,
    active: int,
    scheduled: int,
    late: int,
    last_polled: datetime.datetime | None,
    now: datetime.datetime,
) -> WorkQueueStatus:
    current, generation = queue.status, queue.metadata.generation
    if queue.spec.paused:
        phase, reason, message = QueuePhase.PAUSED, Reason.PAUSED, "the queue is paused"
    elif not pool_exists:
        phase, reason, message = (
            QueuePhase.NOT_READY,
            Reason.POOL_NOT_FOUND,
            f"WorkPool {queue.spec.work_pool} not found",
        )
    elif served:
        phase, reason, message = QueuePhase.READY, Reason.READY, "an online worker serves this queue"
    else:
        phase, reason, message = QueuePhase.NOT_READY, Reason.NO_ONLINE_WORKER, "no online worker serves this queue"

    conditions = set_condition(
        current.conditions,
        ConditionType.READY,
        phase is QueuePhase.READY,
        reason,
        message,
        generation=generation,
        now=now,
    )
    conditions = set_condition(
        conditions,
        ConditionType.PAUSED,
        queue.spec.paused,
        Reason.PAUSED if queue.spec.paused else Reason.NOT_PAUSED,
        "spec.paused is true" if queue.spec.paused else "spec.paused is false",
        generation=generation,
        now=now,
    )
    conflict = f"priority {request.requested} is held by queue {holder}; effective priority {effective}"
    conditions = set_condition(
        conditions,
        ConditionType.PRIORITY_CONFLICT,
        holder is not None,
        Reason.PRIORITY_TAKEN if holder else Reason.PRIORITY_HELD,
        conflict if holder else f"effective priority {effective} is the requested one",
        generation=generation,
        now=now,
    )
    conditions = _pool_found(conditions, queue.spec.work_pool, exists=pool_exists, generation=generation, now=now)
    conditions = limit_window(conditions, queue.spec, generation=generation, now=now)
    return current.model_copy(
        update={
            "phase": phase,
            "conditions": conditions,
            "observed_generation": generation,
            "effective_priority": effective,
            "requested_priority": request.requested,
            "priority_assigned": request.assigned,
            "priority_requested_at": request.seen,
            "slots": slot_status(slots.Slots(active, _effective(queue.spec, now).limit)),
            "scheduled_runs": scheduled,
            "late_runs": late,
            "last_polled": last_polled,
        }
    )


def _queue_events(queue: WorkQueue, new: WorkQueueStatus, *, pool_name: str) -> list[Event]:
    old, name = queue.status, queue.metadata.name
    events = []
    first_sight = old.observed_generation is None
    if first_sight:
        events.append(
            Event(
                EventType.NORMAL,
                "Created",
                f"WorkQueue {name} created in pool {pool_name} with priority {new.effective_priority}",
            )
        )
    if new.phase is not None and (new.phase != old.phase or first_sight):
        events.append(phase_event(queue.KIND, name, new.phase.value, new.conditions))
    events += window_events(old.conditions, new.conditions)
    for type_ in (ConditionType.PRIORITY_CONFLICT, ConditionType.POOL_NOT_FOUND):
        before, after = _condition(old.conditions, type_), _condition(new.conditions, type_)
        newly_true = after is not None and after.status == "True"
        if newly_true and (before is None or before.status != "True" or before.message != after.message):
            events.append(Event(EventType.WARNING, type_.value, after.message))
    return events


# -- limit windows -------------------------------------------------------------------------------


def _effective(spec: WorkPoolSpec | WorkQueueSpec, now: datetime.datetime) -> flowcontrol.EffectiveLimit:
    return flowcontrol.effective_limit(spec.concurrency_limit, spec.concurrency_limit_schedule, now)


def limit_window(
    conditions: Sequence[Condition],
    spec: WorkPoolSpec | WorkQueueSpec,
    *,
    generation: int | None,
    now: datetime.datetime,
) -> list[Condition]:
    """With the LimitWindow condition: True while a window sets the limit; absent without a
    schedule, until first set (then False once the schedule is removed)."""
    if not spec.concurrency_limit_schedule and _condition(conditions, ConditionType.LIMIT_WINDOW) is None:
        return list(conditions)
    effective = _effective(spec, now)
    base = "unlimited" if spec.concurrency_limit is None else str(spec.concurrency_limit)
    if effective.window is not None:
        reason, message = Reason.WINDOW_OPEN, f"window {effective.window.label()} is open: limit {effective.limit}"
    else:
        reason, message = Reason.NO_WINDOW_OPEN, f"no window is open: concurrencyLimit ({base}) applies"
    if problems := flowcontrol.window_problems(spec.concurrency_limit_schedule):
        reason, message = Reason.INVALID_WINDOW, "; ".join([message, *problems])
    return set_condition(
        conditions,
        ConditionType.LIMIT_WINDOW,
        effective.window is not None,
        reason,
        message,
        generation=generation,
        now=now,
    )


def window_events(old: Sequence[Condition], new: Sequence[Condition]) -> list[Event]:
    """`LimitWindowOpened` / `LimitWindowClosed` when the window that sets the limit changed, and
    one Warning `InvalidWindow` when a window that cannot be evaluated appears."""
    before, after = _condition(old, ConditionType.LIMIT_WINDOW), _condition(new, ConditionType.LIMIT_WINDOW)
    if after is None or (before is not None and (before.status, before.message) == (after.status, after.message)):
        return []
    events = []
    if after.status == "True":
        events.append(Event(EventType.NORMAL, Reason.WINDOW_OPENED, after.message))
    elif before is not None and before.status == "True":
        events.append(Event(EventType.NORMAL, Reason.WINDOW_CLOSED, after.message))
    if after.reason == Reason.INVALID_WINDOW and (before is None or before.reason != Reason.INVALID_WINDOW):
        events.append(Event(EventType.WARNING, Reason.INVALID_WINDOW, after.message))
    return events


# -- helpers -------------------------------------------------------------------------------------


def describe_changes(old: BaseModel, new: BaseModel) -> str:
    """`field: old → new` for each user-visible spec field that changed, on one line.

    Phase-changing fields (paused) are left out: they have events of their own. The base job
    template is summarised, never dumped.
    """
    parts = []
    for name, info in type(new).model_fields.items():
        if name == "paused":
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        label = info.alias or name
        if name == "base_job_template":
            parts.append(f"{label}: {_summarise_template(before)} → {_summarise_template(after)}")
        else:
            parts.append(f"{label}: {_show(before)} → {_show(after)}")
    return "; ".join(parts)


def _summarise_template(template: Any) -> str:
    if template is None:
        return "none"
    names = sorted(templates.declared_variables(template.variables))
    return f"{len(names)} variables ({', '.join(names)})" if names else "no variables"


def _models(value: BaseModel | list[Any]) -> bool:
    return isinstance(value, BaseModel) or (bool(value) and all(isinstance(v, BaseModel) for v in value))


def _as_written(value: BaseModel | list[Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return [_as_written(v) for v in value]


def _show(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, BaseModel | list) and _models(value):
        text = json.dumps(_as_written(value), separators=(",", ":"))  # as the user wrote it, not a Python repr
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _template_problems(spec: WorkPoolSpec) -> str:
    template = spec.base_job_template
    if template is None:
        return ""
    missing = templates.undeclared_variables(template.job_configuration, template.variables)
    if not missing:
        return ""
    names = ", ".join(f"{{{{ {name} }}}}" for name in missing)
    return f"baseJobTemplate uses {names} but variables.properties does not declare it"


def _invalid(conditions: Sequence[Any]) -> bool:
    found = _condition(conditions, ConditionType.INVALID)
    return found is not None and found.status == "True"


def _condition(conditions: Sequence[Any], type_: ConditionType) -> Any:
    return next((c for c in conditions if c.type == type_.value), None)


def _serves(worker: Worker, queue: str) -> bool:
    return not worker.spec.work_queues or queue in worker.spec.work_queues


__all__ = ["PoolPlan", "SpecChange", "describe_changes", "plan_pool", "queue_priorities"]
