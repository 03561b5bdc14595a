"""Desired status of each kind, derived from what the cache knows; and the events transitions cause.

Every function is pure: `now` comes in as an argument, the current status comes in as a model,
and the result says what the status should be. The controller writes it only if it differs.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from workpools.api.base import SlotStatus
from workpools.api.conditions import Condition, ConditionType, Reason
from workpools.api.phases import ConditionStatus, PoolPhase
from workpools.api.workpool import WorkerCounts, WorkPoolStatus
from workpools.core import slots

EVENT_MESSAGE_MAX = 1024
"""Kubernetes truncates longer Event messages; we cut them ourselves, on one line."""


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class Event:
    """One Kubernetes Event to post about an object: a CamelCase reason and a one-line message."""

    type: EventType
    reason: str
    message: str

    def __post_init__(self) -> None:
        line = " ".join(self.message.split())
        if len(line) > EVENT_MESSAGE_MAX:
            line = line[: EVENT_MESSAGE_MAX - 1] + "…"
        object.__setattr__(self, "message", line)


def set_condition(
    conditions: Sequence[Condition],
    type_: ConditionType,
    status: bool,
    reason: Reason,
    message: str,
    *,
    generation: int | None,
    now: datetime.datetime,
) -> list[Condition]:
    """`conditions` with one condition set; lastTransitionTime moves only when the status flips.

    When the condition already says exactly this, `conditions` itself is returned (as a list), so
    a caller can tell "nothing changed" by identity, without comparing or serialising anything.
    """
    wanted, kind = (ConditionStatus.TRUE if status else ConditionStatus.FALSE), type_.value
    current = next((c for c in conditions if c.type == kind), None)
    if (
        current is not None
        and current.status == wanted
        and current.reason == reason.value
        and current.message == message
        and current.observed_generation == generation
    ):
        return conditions if isinstance(conditions, list) else list(conditions)
    since = current.last_transition_time if current is not None and current.status == wanted else now
    new = Condition(
        type=kind,
        status=wanted,
        reason=reason.value,
        message=message,
        observed_generation=generation,
        last_transition_time=since,
    )
    return [new if c.type == kind else c for c in conditions] if current else [*conditions, new]


def slot_status(counts: slots.Slots) -> SlotStatus:
    """`status.slots` of a pool or queue, with the `active/limit` text `kubectl get` shows."""
    limit = "∞" if counts.limit is None else str(counts.limit)
    return SlotStatus(active=counts.active, limit=counts.limit, open=counts.open, summary=f"{counts.active}/{limit}")


def pool_phase(*, paused: bool, workers_online: int) -> PoolPhase:
    """Paused iff spec.paused; otherwise Ready iff at least one worker is Online."""
    if paused:
        return PoolPhase.PAUSED
    return PoolPhase.READY if workers_online > 0 else PoolPhase.NOT_READY


def pool_status(
    current: WorkPoolStatus,
    *,
    generation: int | None,
    paused: bool,
    default_queue: str,
    queues: int,
    workers: WorkerCounts,
    slot_counts: slots.Slots,
    invalid: str = "",
    now: datetime.datetime,
) -> WorkPoolStatus:
    """`invalid` says what is wrong with a spec the schema accepted (empty: nothing)."""
    phase = pool_phase(paused=paused, workers_online=workers.online)
    none_online = f"no worker is online ({workers.total} registered, all offline)" if workers.total else ""
    ready_reason, ready_message = {
        PoolPhase.READY: (Reason.READY, f"{workers.online} of {workers.total} workers online"),
        PoolPhase.NOT_READY: (Reason.NO_ONLINE_WORKER, none_online or "no worker is online"),
        PoolPhase.PAUSED: (Reason.PAUSED, "the pool is paused"),
    }[phase]
    conditions = set_condition(
        current.conditions,
        ConditionType.READY,
        phase is PoolPhase.READY,
        ready_reason,
        ready_message,
        generation=generation,
        now=now,
    )
    conditions = set_condition(
        conditions,
        ConditionType.PAUSED,
        paused,
        Reason.PAUSED if paused else Reason.NOT_PAUSED,
        "spec.paused is true" if paused else "spec.paused is false",
        generation=generation,
        now=now,
    )
    conditions = set_condition(
        conditions,
        ConditionType.INVALID,
        bool(invalid),
        Reason.TEMPLATE_INVALID if invalid else Reason.VALID,
        invalid or "the spec is usable",
        generation=generation,
        now=now,
    )
    return current.model_copy(
        update={
            "phase": phase,
            "conditions": conditions,
            "observed_generation": generation,
            "default_queue": default_queue,
            "slots": slot_status(slot_counts),
            "workers": workers,
            "queues": queues,
            "last_transition_time": now if phase != current.phase else current.last_transition_time,
        }
    )


def pool_events(old: WorkPoolStatus, new: WorkPoolStatus, *, name: str) -> list[Event]:
    """Events for a pool's status change: Created then its first phase on first sight, then one per transition.

    Prefect emits the created event and then the status event; so do we, once, so that a pool
    created paused says Paused in its events as well as in its status.
    """
    events = []
    if old.observed_generation is None:
        events.append(Event(EventType.NORMAL, "Created", f"WorkPool {name} created; default queue {new.default_queue}"))
    if new.phase is not None and (new.phase != old.phase or old.observed_generation is None):
        events.append(phase_event("WorkPool", name, new.phase.value, new.conditions))
    return events


def phase_event(kind: str, name: str, phase: str, conditions: Sequence[Condition]) -> Event:
    """`<Phase>`: `<Kind> <name> is now <Phase>: <why>`, the why being the Ready condition's message."""
    ready = next((c for c in conditions if c.type == ConditionType.READY.value), None)
    why = f": {ready.message}" if ready is not None and ready.message else ""
    return Event(EventType.NORMAL, phase, f"{kind} {name} is now {phase}{why}")
