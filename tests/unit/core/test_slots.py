"""Slot accounting: active slots of pools and queues, open slots, slot holders, acquiredAt.

Ports prefect-semantics §8 "Active slots and slot holders" (tests/server/models/test_workers.py)
and the `/concurrency_status` cases. Deliberate differences from DESIGN §3 are marked ADAPTED:
Cancelling holds a slot; runs always name their queue (no "name-only" runs).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.builders import T0, at, pool, queue, run
from workpools.api.states import StateType
from workpools.core.slots import (
    Slots,
    active_slots_by_pool,
    active_slots_by_queue,
    pool_slots,
    queue_slots,
    slot_acquired_at,
    slot_holders,
)
from workpools.core.snapshot import RunView

S = StateType


# --- Slots: open is derived from active and limit ------------------------------------------


@pytest.mark.parametrize(
    ("active", "limit", "open_"),
    [
        pytest.param(0, None, None, id="unlimited-empty"),
        pytest.param(7, None, None, id="unlimited-busy"),
        pytest.param(2, 3, 1, id="room-left"),
        pytest.param(3, 3, 0, id="full"),
        pytest.param(5, 3, 0, id="limit-lowered-below-active-is-not-negative"),
        pytest.param(0, 0, 0, id="limit-zero"),
    ],
)
def test_open_slots(active: int, limit: int | None, open_: int | None) -> None:
    slots = Slots(active, limit)
    assert (slots.active, slots.limit, slots.open) == (active, limit, open_)


# --- Pool active slots ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runs", "active"),
    [
        pytest.param([], 0, id="no-runs"),
        pytest.param([run("r", state=S.RUNNING), run("p", state=S.PENDING)], 2, id="running-and-pending"),
        # ADAPTED: Prefect counts 0 here; DESIGN §3 makes Cancelling hold a slot.
        pytest.param([run("c", state=S.CANCELLING)], 1, id="cancelling-counts"),
        pytest.param(
            [
                run("r", state=S.RUNNING),
                run("done", state=S.COMPLETED),
                run("failed", state=S.FAILED),
                run("waiting", state=S.SCHEDULED),
            ],
            1,
            id="completed-failed-scheduled-excluded",
        ),
        pytest.param(
            [run("r", state=S.RUNNING), run("rp", queue="paused", state=S.RUNNING)],
            2,
            id="paused-queue-run-counted",
        ),
        # ADAPTED: Prefect excludes runs whose queue link is gone ("name-only"); ours still
        # execute and name their pool, so they keep counting: the limit is never exceeded.
        pytest.param(
            [run("orphan", queue="deleted-queue", state=S.RUNNING)],
            1,
            id="run-of-deleted-queue-counted",
        ),
        pytest.param(
            [run("r", state=S.RUNNING), run("elsewhere", pool="other", state=S.RUNNING)],
            1,
            id="other-pool-excluded",
        ),
    ],
)
def test_pool_active_slots(runs: list[RunView], active: int) -> None:
    assert pool_slots(pool("p", limit=3), runs) == Slots(active, 3)


def test_bulk_pool_active_slots() -> None:
    runs = [
        run("a1", pool="A", queue="qa", state=S.RUNNING),
        run("a2", pool="A", queue="qa", state=S.PENDING),
        run("a3", pool="A", queue="qa", state=S.COMPLETED),
        run("b1", pool="B", queue="qb", state=S.RUNNING),
        run("c1", pool="C", queue="qc", state=S.SCHEDULED),
    ]
    assert active_slots_by_pool(runs) == {"A": 2, "B": 1}


def test_bulk_pool_active_slots_of_nothing_is_empty() -> None:
    assert active_slots_by_pool([]) == {}


# --- Queue active slots --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runs", "active"),
    [
        pytest.param([], 0, id="no-runs"),
        pytest.param([run("r", state=S.RUNNING), run("p", state=S.PENDING)], 2, id="running-and-pending"),
        # ADAPTED: Prefect's pool path counts 0; DESIGN §3 makes Cancelling hold a slot.
        pytest.param([run("c", state=S.CANCELLING)], 1, id="cancelling-counts"),
        pytest.param(
            [run("r", state=S.RUNNING), run("other", queue="q2", state=S.RUNNING)],
            1,
            id="other-queue-excluded",
        ),
    ],
)
def test_queue_active_slots(runs: list[RunView], active: int) -> None:
    assert queue_slots(queue("q", limit=5), runs) == Slots(active, 5)


def test_bulk_queue_active_slots() -> None:
    runs = [
        run("r1", queue="q1", state=S.RUNNING),
        run("r2", queue="q1", state=S.CANCELLING),
        run("r3", queue="q2", state=S.PENDING),
        run("r4", queue="q3", state=S.FAILED),
    ]
    assert active_slots_by_queue(runs) == {"q1": 2, "q2": 1}
    assert active_slots_by_queue([]) == {}


# --- Slot holders ----------------------------------------------------------------------------


def _names(runs: list[RunView]) -> list[str]:
    return [r.name for r in runs]


@pytest.mark.parametrize(
    ("runs", "holders"),
    [
        # ADAPTED: Prefect excludes Cancelling from pool slot holders; DESIGN §3 includes it.
        pytest.param([run("c", state=S.CANCELLING, acquired=at(minutes=1))], ["c"], id="cancelling-included"),
        pytest.param(
            [
                run("running", state=S.RUNNING, acquired=at(minutes=1)),
                run("pending", state=S.PENDING, acquired=at(minutes=2)),
            ],
            ["running", "pending"],
            id="running-and-pending-included",
        ),
        # ADAPTED: Prefect's "name-only run excluded" has no counterpart (every run names its
        # queue); a run whose queue was deleted still executes, so it still holds its slot.
        pytest.param(
            [run("orphan", queue="deleted", state=S.RUNNING, acquired=at())],
            ["orphan"],
            id="run-of-deleted-queue-included",
        ),
        pytest.param(
            [
                run("active", state=S.RUNNING, acquired=at(minutes=2)),
                run("in-paused", queue="paused", state=S.RUNNING, acquired=at(minutes=1)),
            ],
            ["in-paused", "active"],
            id="paused-queue-run-included",
        ),
        pytest.param(
            [
                run(name, state=state)
                for name, state in [
                    ("completed", S.COMPLETED),
                    ("failed", S.FAILED),
                    ("cancelled", S.CANCELLED),
                    ("crashed", S.CRASHED),
                    ("scheduled", S.SCHEDULED),
                    ("paused", S.PAUSED),
                ]
            ]
            + [run("running", state=S.RUNNING, acquired=at())],
            ["running"],
            id="terminal-and-waiting-runs-excluded",
        ),
        pytest.param(
            [
                run("b", state=S.RUNNING),
                run("late-holder", state=S.RUNNING, acquired=at(minutes=5)),
                run("a", state=S.PENDING),
                run("early-holder", state=S.RUNNING, acquired=at(minutes=-5)),
            ],
            ["early-holder", "late-holder", "a", "b"],
            id="longest-held-first-unknown-last-by-name",
        ),
    ],
)
def test_pool_slot_holders(runs: list[RunView], holders: list[str]) -> None:
    assert _names(slot_holders(runs)) == holders


def test_slot_holders_carry_their_acquired_time() -> None:
    held = slot_holders([run("r", state=S.RUNNING, acquired=at(minutes=3))])
    assert [h.slot_acquired_at for h in held] == [at(minutes=3)]


@pytest.mark.parametrize(
    ("history", "acquired"),
    [
        pytest.param([(S.PENDING, at(seconds=1))], at(seconds=1), id="pending-acquires"),
        pytest.param(
            [(S.SCHEDULED, at()), (S.PENDING, at(seconds=1)), (S.RUNNING, at(seconds=2))],
            at(seconds=1),
            id="running-keeps-pending-time",
        ),
        pytest.param(
            [
                (S.PENDING, at(seconds=1)),
                (S.RUNNING, at(seconds=2)),
                (S.FAILED, at(seconds=3)),
                (S.PENDING, at(seconds=4)),
            ],
            at(seconds=4),
            id="after-P-R-F-P-second-pending",
        ),
        pytest.param(
            [
                (S.PENDING, at(seconds=1)),
                (S.RUNNING, at(seconds=2)),
                (S.FAILED, at(seconds=3)),
                (S.PENDING, at(seconds=3, microseconds=1)),
            ],
            at(seconds=3, microseconds=1),
            id="failed-and-pending-1us-apart-retry-time",
        ),
        pytest.param(
            [
                (S.PENDING, at(seconds=1)),
                (S.RUNNING, at(seconds=2)),
                (S.CANCELLING, at(seconds=3)),
            ],
            at(seconds=1),
            id="cancelling-keeps-the-stretch",  # ADAPTED: Cancelling holds a slot here
        ),
        pytest.param(
            [(S.PENDING, at(seconds=1)), (S.SCHEDULED, at(seconds=2))],
            None,
            id="returned-to-scheduled-releases",
        ),
    ],
)
def test_slot_acquired_at_over_a_state_history(
    history: list[tuple[StateType, datetime]], acquired: datetime | None
) -> None:
    """Prefect derives acquiredAt from the state history; we fold the same rule per move."""

    def step(
        held: tuple[StateType | None, datetime | None], move: tuple[StateType, datetime]
    ) -> tuple[StateType | None, datetime | None]:
        old, previous = held
        new, now = move
        return new, slot_acquired_at(old, new, previous=previous, now=now)

    start: tuple[StateType | None, datetime | None] = (None, None)
    assert reduce(step, history, start)[1] == acquired


def test_slot_acquired_at_restarts_when_previous_is_unknown() -> None:
    # A holder seen without acquiredAt (e.g. written before the field existed) gets one now.
    assert slot_acquired_at(S.PENDING, S.RUNNING, previous=None, now=at(seconds=9)) == at(seconds=9)


def test_queue_slot_holders_only_this_queue() -> None:
    runs = [
        run("mine", queue="q1", state=S.RUNNING, acquired=at()),
        run("theirs", queue="q2", state=S.RUNNING, acquired=at()),
    ]
    assert _names(slot_holders(runs, queues=["q1"])) == ["mine"]


def test_slot_holders_with_no_queue_filter_cover_every_queue() -> None:
    # Like the selection's `queue_names` (and a Worker's `workQueues`): empty means all.
    runs = [
        run("one", queue="q1", state=S.RUNNING, acquired=at()),
        run("two", queue="q2", state=S.RUNNING, acquired=at(seconds=1)),
    ]
    assert _names(slot_holders(runs, queues=[])) == _names(slot_holders(runs)) == ["one", "two"]


def test_queue_slot_holders_match_by_queue_name() -> None:
    # Prefect's legacy queue path also matches runs by queue name, even across pools. Queue
    # names are unique per namespace here, so the name is the identity: a run naming the queue
    # holds a slot in it whatever pool it names.
    runs = [
        run("by-name", pool="p", queue="q1", state=S.RUNNING, acquired=at()),
        run("other-pool", pool="other", queue="q1", state=S.RUNNING, acquired=at(seconds=1)),
    ]
    assert _names(slot_holders(runs, queues=["q1"])) == ["by-name", "other-pool"]
    assert queue_slots(queue("q1"), runs).active == 2


def test_slot_holders_per_queue_limit() -> None:
    runs = [
        run("q1-a", queue="q1", state=S.RUNNING, acquired=at(minutes=1)),
        run("q1-b", queue="q1", state=S.RUNNING, acquired=at(minutes=2)),
        run("q1-c", queue="q1", state=S.RUNNING, acquired=at(minutes=3)),
        run("q2-a", queue="q2", state=S.PENDING, acquired=at(minutes=4)),
    ]
    assert _names(slot_holders(runs, per_queue_limit=2)) == ["q1-a", "q1-b", "q2-a"]
    assert _names(slot_holders(runs, per_queue_limit=0)) == []
    with pytest.raises(ValueError, match="per_queue_limit"):
        slot_holders(runs, per_queue_limit=-1)


# --- /concurrency_status (API tests) ---------------------------------------------------------


CONCURRENCY_STATUS_RUNS = [
    run("a-run-1", queue="queue-a", state=S.RUNNING, acquired=at(minutes=1)),
    run("a-run-2", queue="queue-a", state=S.RUNNING, acquired=at(minutes=2)),
    run("a-done", queue="queue-a", state=S.COMPLETED),
    run("b-pending", queue="queue-b", state=S.PENDING, acquired=at(minutes=3)),
    run("b-cancelling", queue="queue-b", state=S.CANCELLING, acquired=at(minutes=4)),
]


def test_concurrency_status_counts() -> None:
    # Pool limit 10; queue-a limit 5 with 2 Running + 1 Completed; queue-b 1 Pending +
    # 1 Cancelling. ADAPTED: Prefect reports pool 3 and queue-b 1 (Cancelling not counted).
    runs = CONCURRENCY_STATUS_RUNS
    assert pool_slots(pool("p", limit=10), runs) == Slots(4, 10)
    assert queue_slots(queue("queue-a", limit=5), runs) == Slots(2, 5)
    assert queue_slots(queue("queue-b"), runs) == Slots(2, None)
    assert _names(slot_holders(runs, queues=["queue-a"])) == ["a-run-1", "a-run-2"]


@pytest.mark.parametrize(
    ("per_queue_limit", "listed"),
    [
        pytest.param(None, ["a-run-1", "a-run-2", "b-pending", "b-cancelling"], id="all"),
        pytest.param(1, ["a-run-1", "b-pending"], id="flow-run-limit-1"),
        pytest.param(0, [], id="flow-run-limit-0-lists-none-counts-intact"),
    ],
)
def test_concurrency_status_listing(per_queue_limit: int | None, listed: list[str]) -> None:
    runs = CONCURRENCY_STATUS_RUNS
    assert _names(slot_holders(runs, per_queue_limit=per_queue_limit)) == listed
    assert active_slots_by_queue(runs) == {"queue-a": 2, "queue-b": 2}


# --- Properties: every count equals a brute-force count --------------------------------------

_HOLDING_VALUES = {"Pending", "Running", "Cancelling"}  # spelled independently of the module

_runs = st.lists(
    st.tuples(
        st.sampled_from(["p", "other"]),
        st.sampled_from(["q1", "q2", "q3"]),
        st.sampled_from(list(StateType)),
        st.none() | st.integers(0, 5).map(lambda minutes: at(minutes=minutes)),
    ),
    max_size=30,
).map(
    lambda rows: [
        run(f"r{i}", pool=p, queue=q, state=state, acquired=acquired) for i, (p, q, state, acquired) in enumerate(rows)
    ]
)


@given(runs=_runs, limit=st.none() | st.integers(0, 10))
def test_counts_equal_brute_force(runs: list[RunView], limit: int | None) -> None:
    holding = [r for r in runs if r.state.value in _HOLDING_VALUES]
    assert pool_slots(pool("p", limit=limit), runs).active == sum(r.pool == "p" for r in holding)
    for name in ("q1", "q2", "q3"):
        slots = queue_slots(queue(name, limit=limit), runs)
        assert slots.active == sum(r.queue == name for r in holding)
        assert slots.open == (None if limit is None else max(0, limit - slots.active))
    assert active_slots_by_queue(runs) == Counter(r.queue for r in holding)
    assert active_slots_by_pool(runs) == Counter(r.pool for r in holding)


@given(runs=_runs, per_queue_limit=st.none() | st.integers(0, 4))
def test_slot_holders_equal_brute_force(runs: list[RunView], per_queue_limit: int | None) -> None:
    holders = slot_holders(runs, per_queue_limit=per_queue_limit)
    holding = [r for r in runs if r.state.value in _HOLDING_VALUES]
    assert {h.name for h in holders} <= {r.name for r in holding}
    per_queue = Counter(h.queue for h in holders)
    for name, total in Counter(r.queue for r in holding).items():
        expected = total if per_queue_limit is None else min(total, per_queue_limit)
        assert per_queue[name] == expected
    known = [h.slot_acquired_at for h in holders if h.slot_acquired_at is not None]
    assert known == sorted(known)
    assert all(h.slot_acquired_at is None for h in holders[len(known) :])


def test_default_run_is_scheduled_at_t0() -> None:
    # Guards the builders the properties rely on.
    assert run("r") == RunView("r", "p", "q", S.SCHEDULED, T0, T0)
