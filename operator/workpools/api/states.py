"""FlowRun states and the run state machine, kept as one plain data table.

`ALLOWED` is the single source for which `status.state` moves exist and who writes each one
(DESIGN §4). The API server enforces it: the CRD's CEL transition rules are generated from it
(`transition_pairs`), and a move it refuses comes back to the writer as an error, so neither the
operator nor the workers look a move up before they write. The unit tests hold the operator's
moves (`core/`) and the worker-restriction policy's worker moves to it. An unchanged state is not
a transition; the generated rule must admit `self == oldSelf` on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Flag, StrEnum, auto
from types import MappingProxyType

__all__ = [
    "ALLOWED",
    "RETRYABLE",
    "SLOT_HOLDING",
    "TERMINAL",
    "StateType",
    "Writer",
    "is_slot_holding",
    "transition_pairs",
]


class StateType(StrEnum):
    """Prefect's state types; each value is the string stored in `status.state`."""

    SCHEDULED = "Scheduled"
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    CRASHED = "Crashed"
    PAUSED = "Paused"


SCHEDULED, PENDING, RUNNING = StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING
COMPLETED, FAILED, CRASHED = StateType.COMPLETED, StateType.FAILED, StateType.CRASHED
CANCELLING, CANCELLED, PAUSED = StateType.CANCELLING, StateType.CANCELLED, StateType.PAUSED

SLOT_HOLDING: frozenset[StateType] = frozenset({PENDING, RUNNING, CANCELLING})
"""States that occupy a pool slot and a queue slot.

Deliberate difference: Prefect counts Cancelling for legacy queues only. A cancelling run's
infrastructure is still being torn down, so it holds its slot in pools and queues alike.
"""

TERMINAL: frozenset[StateType] = frozenset({COMPLETED, FAILED, CANCELLED, CRASHED})
"""States a run does not leave, except by a retry from `RETRYABLE`."""

RETRYABLE: frozenset[StateType] = frozenset({FAILED, CRASHED})
"""Terminal states a retry may leave, back to Scheduled (stateName `AwaitingRetry`).

Like Prefect's retries of failed and crashed runs. Completed is final, and Cancelled is what the
user asked for; running either again is a new FlowRun.
"""


class Writer(Flag):
    """Who may write a transition. A Flag, because two moves have both writers."""

    OPERATOR = auto()
    WORKER = auto()


_OPERATOR, _WORKER = Writer.OPERATOR, Writer.WORKER

ALLOWED: Mapping[tuple[StateType | None, StateType], Writer] = MappingProxyType(
    {
        # Operator, admission and user intent.
        (None, SCHEDULED): _OPERATOR,  # a new run joins its queue
        (None, PENDING): _OPERATOR,  # a new run granted when first seen: one write per admitted run
        (SCHEDULED, PENDING): _OPERATOR,  # the grant: slot taken, worker bound
        (SCHEDULED, CANCELLED): _OPERATOR,  # spec.cancel before admission: nothing to stop
        (PENDING, CANCELLING): _OPERATOR,  # spec.cancel: the bound worker stops it
        (RUNNING, CANCELLING): _OPERATOR,
        # Operator, recovery: no slot outlives its worker (DESIGN §4 "Slots follow liveness").
        (PENDING, SCHEDULED): _OPERATOR,  # worker lost, or pendingTimeoutSeconds passed
        (RUNNING, CRASHED): _OPERATOR | _WORKER,  # worker lost; or the worker saw its infra die
        (CANCELLING, CANCELLED): _OPERATOR | _WORKER,  # the worker stopped it; or worker lost
        # Bound worker, execution.
        (PENDING, RUNNING): _WORKER,
        (PENDING, FAILED): _WORKER,
        (PENDING, CRASHED): _WORKER,
        (RUNNING, COMPLETED): _WORKER,
        (RUNNING, FAILED): _WORKER,
        # Retry (AwaitingRetry): the operator applies spec.retries (core/retries.py), also to
        # runs it marked Crashed itself (their worker is gone); the run goes back through
        # admission as a new attempt, so a retry never bypasses a limit.
        (FAILED, SCHEDULED): _OPERATOR,
        (CRASHED, SCHEDULED): _OPERATOR,
        # Pause. Paused holds no slot, so resuming re-enters admission (no Paused → Running,
        # which would take a slot unchecked); a paused run has nothing to stop on cancel.
        (RUNNING, PAUSED): _WORKER,  # the flow suspended itself
        (PAUSED, SCHEDULED): _OPERATOR,  # resumed
        (PAUSED, CANCELLED): _OPERATOR,  # spec.cancel
    }
)


def is_slot_holding(state: StateType | None) -> bool:
    """Whether a run in `state` occupies its pool's and its queue's slot."""
    return state in SLOT_HOLDING


def transition_pairs() -> list[tuple[StateType | None, StateType]]:
    """Every allowed move in lifecycle order (None first), so generated CEL is stable."""
    rank: dict[StateType | None, int] = {state: n for n, state in enumerate([None, *StateType])}
    return sorted(ALLOWED, key=lambda pair: (rank[pair[0]], rank[pair[1]]))
