"""A pool's status (core/statuses.py) as `kubectl get` and `kubectl describe` show it.

Aspects: the phase (Paused, else Ready with one Online worker, else NotReady); `status.slots` and
its `active/limit` text; the Ready, Paused and Invalid conditions (status, reason, message, the
generation they were set from); the counts; when lastTransitionTime moves; Event messages on one
bounded line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.builders import T0, at
from workpools.api.phases import PoolPhase
from workpools.api.workpool import WorkerCounts, WorkPoolStatus
from workpools.core import slots
from workpools.core.statuses import EVENT_MESSAGE_MAX, Event, EventType, pool_phase, pool_status, slot_status


@pytest.mark.parametrize(
    ("paused", "online", "phase"),
    [
        pytest.param(False, 0, PoolPhase.NOT_READY, id="no-worker-online"),
        pytest.param(False, 1, PoolPhase.READY, id="one-worker-online"),
        pytest.param(False, 5, PoolPhase.READY, id="several-online"),
        pytest.param(True, 0, PoolPhase.PAUSED, id="paused"),
        pytest.param(True, 3, PoolPhase.PAUSED, id="paused-with-workers-online"),
    ],
)
def test_paused_else_ready_with_one_online_worker(paused: bool, online: int, phase: PoolPhase) -> None:
    assert pool_phase(paused=paused, workers_online=online) is phase


@pytest.mark.parametrize(
    ("active", "limit", "shown"),
    [
        pytest.param(3, None, (3, None, None, "3/∞"), id="unlimited"),
        pytest.param(3, 5, (3, 5, 2, "3/5"), id="limited"),
        pytest.param(4, 2, (4, 2, 0, "4/2"), id="limit-lowered-below-active"),
        pytest.param(0, 0, (0, 0, 0, "0/0"), id="closed"),
    ],
)
def test_slots_show_active_limit_open_and_their_summary(
    active: int, limit: int | None, shown: tuple[int, int | None, int | None, str]
) -> None:
    status = slot_status(slots.Slots(active, limit))
    assert (status.active, status.limit, status.open, status.summary) == shown


def status_of(current: WorkPoolStatus | None = None, *, now: datetime = T0, **kw: Any) -> WorkPoolStatus:
    """pool "p" at generation 4: 2 of 3 workers online, 2 queues, 1 of 5 slots taken, unless `kw` says otherwise."""
    args: dict[str, Any] = {
        "generation": 4,
        "paused": False,
        "default_queue": "p-default",
        "queues": 2,
        "workers": WorkerCounts(online=2, total=3),
        "slot_counts": slots.Slots(1, 5),
    }
    return pool_status(current or WorkPoolStatus(), now=now, **(args | kw))


def conditions(status: WorkPoolStatus) -> dict[str, tuple[str, str, str, int | None]]:
    return {c.type: (c.status, c.reason, c.message, c.observed_generation) for c in status.conditions}


def test_a_ready_pool_shows_its_workers_slots_and_queues() -> None:
    status = status_of()
    assert status.phase is PoolPhase.READY
    assert conditions(status) == {
        "Ready": ("True", "Ready", "2 of 3 workers online", 4),
        "Paused": ("False", "NotPaused", "spec.paused is false", 4),
        "Invalid": ("False", "Valid", "the spec is usable", 4),
    }
    assert (status.observed_generation, status.default_queue, status.queues) == (4, "p-default", 2)
    assert status.workers == WorkerCounts(online=2, total=3)
    assert status.slots.summary == "1/5"
    assert status.last_transition_time == T0


def test_a_pool_without_an_online_worker_is_not_ready() -> None:
    status = status_of(workers=WorkerCounts(online=0, total=3))
    assert status.phase is PoolPhase.NOT_READY
    message = "no worker is online (3 registered, all offline)"
    assert conditions(status)["Ready"] == ("False", "NoOnlineWorker", message, 4)
    none = status_of(workers=WorkerCounts(online=0, total=0))
    assert conditions(none)["Ready"] == ("False", "NoOnlineWorker", "no worker is online", 4)


def test_a_paused_pool_says_so_in_ready_and_paused() -> None:
    status = status_of(paused=True)
    assert status.phase is PoolPhase.PAUSED
    assert conditions(status)["Ready"] == ("False", "Paused", "the pool is paused", 4)
    assert conditions(status)["Paused"] == ("True", "Paused", "spec.paused is true", 4)


def test_an_invalid_spec_is_named_in_the_invalid_condition() -> None:
    status = status_of(invalid="baseJobTemplate uses {{ flow }} but variables.properties does not declare it")
    assert conditions(status)["Invalid"] == (
        "True",
        "TemplateInvalid",
        "baseJobTemplate uses {{ flow }} but variables.properties does not declare it",
        4,
    )
    assert status.phase is PoolPhase.READY  # an invalid template does not stop the pool


def test_last_transition_times_move_only_when_the_phase_or_a_condition_flips() -> None:
    first = status_of(now=T0)
    same = status_of(first, now=at(minutes=5), workers=WorkerCounts(online=1, total=3))
    assert same.last_transition_time == T0
    assert {c.type: c.last_transition_time for c in same.conditions} == dict.fromkeys(
        ["Ready", "Paused", "Invalid"], T0
    )
    assert conditions(same)["Ready"][2] == "1 of 3 workers online"  # the message follows without a transition
    paused = status_of(same, now=at(minutes=7), paused=True)
    assert paused.last_transition_time == at(minutes=7)
    assert {c.type: c.last_transition_time for c in paused.conditions} == {
        "Ready": at(minutes=7),
        "Paused": at(minutes=7),
        "Invalid": T0,
    }


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        pytest.param("a\n  b\tc ", "a b c", id="whitespace-folded-to-one-line"),
        pytest.param("x" * EVENT_MESSAGE_MAX, "x" * EVENT_MESSAGE_MAX, id="exactly-the-limit"),
        pytest.param("x" * (EVENT_MESSAGE_MAX + 1), "x" * (EVENT_MESSAGE_MAX - 1) + "…", id="one-over-the-limit"),
        pytest.param("y" * 5000, "y" * (EVENT_MESSAGE_MAX - 1) + "…", id="far-over-the-limit"),
    ],
)
def test_an_event_message_is_one_line_of_at_most_1024_characters(message: str, shown: str) -> None:
    assert Event(EventType.WARNING, "WorkerLost", message).message == shown
