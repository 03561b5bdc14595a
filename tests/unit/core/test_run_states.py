"""The FlowRun state machine: the DESIGN §4 transition table, who writes each move, slot holding.

Aspects: state values; slot-holding and terminal sets; every allowed move and its writer;
examples of refused moves; the table's stable listing for CEL; properties over all pairs
(terminal states are left only by a retry; every slot can be released by the operator).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workpools.api.states import (
    ALLOWED,
    RETRYABLE,
    SLOT_HOLDING,
    TERMINAL,
    StateType,
    Writer,
    is_slot_holding,
    transition_pairs,
)

S = StateType
OPERATOR, WORKER, EITHER = Writer.OPERATOR, Writer.WORKER, Writer.OPERATOR | Writer.WORKER

# (old, new, writer), written out again here so any change to the table must be made twice.
EXPECTED_MOVES = [
    # Operator (DESIGN §4 "Who writes which transition").
    (None, S.SCHEDULED, OPERATOR),
    (None, S.PENDING, OPERATOR),  # granted when first seen: one write per admitted run (issue 11)
    (S.SCHEDULED, S.PENDING, OPERATOR),
    (S.SCHEDULED, S.CANCELLED, OPERATOR),
    (S.PENDING, S.CANCELLING, OPERATOR),
    (S.RUNNING, S.CANCELLING, OPERATOR),
    # Operator recovery (DESIGN §4 "Slots follow liveness").
    (S.PENDING, S.SCHEDULED, OPERATOR),
    (S.RUNNING, S.CRASHED, EITHER),
    (S.CANCELLING, S.CANCELLED, EITHER),
    # Bound worker.
    (S.PENDING, S.RUNNING, WORKER),
    (S.PENDING, S.FAILED, WORKER),
    (S.PENDING, S.CRASHED, WORKER),
    (S.RUNNING, S.COMPLETED, WORKER),
    (S.RUNNING, S.FAILED, WORKER),
    # Retry (AwaitingRetry) and pause: our decisions, documented in states.py.
    (S.FAILED, S.SCHEDULED, OPERATOR),  # spec.retries, decided by the operator
    (S.CRASHED, S.SCHEDULED, OPERATOR),
    (S.RUNNING, S.PAUSED, WORKER),
    (S.PAUSED, S.SCHEDULED, OPERATOR),
    (S.PAUSED, S.CANCELLED, OPERATOR),
]


def _move_id(old: StateType | None, new: StateType) -> str:
    return f"{old or 'new'}->{new}"


def test_state_values_are_the_strings_stored_in_status() -> None:
    assert [state.value for state in StateType] == [
        "Scheduled",
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Cancelling",
        "Cancelled",
        "Crashed",
        "Paused",
    ]
    assert StateType("Cancelling") is StateType.CANCELLING
    assert f"{StateType.RUNNING}" == "Running"


def test_slot_holding_states_include_cancelling() -> None:
    # Deliberate difference (DESIGN §3): Cancelling holds a slot for pools and queues alike.
    assert {S.PENDING, S.RUNNING, S.CANCELLING} == SLOT_HOLDING
    assert [state for state in StateType if is_slot_holding(state)] == [
        S.PENDING,
        S.RUNNING,
        S.CANCELLING,
    ]
    assert not is_slot_holding(None)


def test_terminal_and_retryable_states() -> None:
    assert {S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED} == TERMINAL
    assert {S.FAILED, S.CRASHED} == RETRYABLE


@pytest.mark.parametrize(
    ("old", "new", "writer"),
    [pytest.param(*move, id=_move_id(*move[:2])) for move in EXPECTED_MOVES],
)
def test_allowed_move_and_its_writer(old: StateType | None, new: StateType, writer: Writer) -> None:
    assert ALLOWED[old, new] == writer


def test_table_holds_exactly_the_documented_moves() -> None:
    assert dict(ALLOWED) == {(old, new): writer for old, new, writer in EXPECTED_MOVES}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(None, S.RUNNING, id="new-run-cannot-start"),
        pytest.param(S.SCHEDULED, S.RUNNING, id="scheduled-cannot-start-unbound"),
        pytest.param(S.SCHEDULED, S.CANCELLING, id="scheduled-has-nothing-to-stop"),
        pytest.param(S.PENDING, S.COMPLETED, id="pending-cannot-complete"),
        pytest.param(S.PENDING, S.CANCELLED, id="pending-cancel-goes-through-cancelling"),
        pytest.param(S.RUNNING, S.SCHEDULED, id="running-is-not-requeued"),
        pytest.param(S.RUNNING, S.PENDING, id="running-cannot-go-back"),
        pytest.param(S.CANCELLING, S.RUNNING, id="cancelling-cannot-resume"),
        pytest.param(S.CANCELLING, S.COMPLETED, id="cancelling-ends-cancelled"),
        pytest.param(S.PAUSED, S.RUNNING, id="paused-resumes-through-admission"),
        pytest.param(S.COMPLETED, S.SCHEDULED, id="completed-is-final"),
        pytest.param(S.CANCELLED, S.SCHEDULED, id="cancelled-is-final"),
        pytest.param(S.FAILED, S.PENDING, id="retry-goes-through-scheduled"),
        pytest.param(S.CRASHED, S.RUNNING, id="crashed-cannot-restart"),
        pytest.param(S.SCHEDULED, S.SCHEDULED, id="same-state-is-no-transition"),
    ],
)
def test_refused_move(old: StateType | None, new: StateType) -> None:
    assert (old, new) not in ALLOWED


def test_transition_pairs_lists_the_table_in_lifecycle_order() -> None:
    pairs = transition_pairs()
    assert set(pairs) == set(ALLOWED)
    assert len(pairs) == len(ALLOWED)
    assert pairs[0] == (None, S.SCHEDULED)
    assert pairs[:3] == [
        (None, S.SCHEDULED),
        (None, S.PENDING),
        (S.SCHEDULED, S.PENDING),
    ]
    assert pairs[-2:] == [(S.PAUSED, S.SCHEDULED), (S.PAUSED, S.CANCELLED)]
    assert pairs == transition_pairs()


STATES = st.sampled_from(list(StateType))


@given(old=st.sampled_from(sorted(TERMINAL)), new=STATES)
def test_terminal_states_are_left_only_by_a_retry(old: StateType, new: StateType) -> None:
    if (old, new) in ALLOWED:
        assert old in RETRYABLE
        assert new is S.SCHEDULED
        assert ALLOWED[old, new] == OPERATOR  # spec.retries, applied by the operator


@given(steps=st.lists(st.integers(min_value=0), max_size=30))
def test_random_walk_from_creation_stays_on_the_table(steps: list[int]) -> None:
    """Walk the table from a new run: Completed and Cancelled end every walk that reaches them."""
    state: StateType | None = None
    for step in steps:
        moves = [new for old, new in transition_pairs() if old == state]
        if state in {S.COMPLETED, S.CANCELLED}:
            assert moves == []
        if not moves:
            break
        state = moves[step % len(moves)]


def test_every_state_is_reachable_and_only_final_states_are_dead_ends() -> None:
    reached: set[StateType | None] = {None}
    frontier: list[StateType | None] = [None]
    while frontier:
        old = frontier.pop()
        for source, new in ALLOWED:
            if source == old and new not in reached:
                reached.add(new)
                frontier.append(new)
    assert reached == {None, *StateType}
    dead_ends = {state for state in StateType if not any(old == state for old, _ in ALLOWED)}
    assert dead_ends == {S.COMPLETED, S.CANCELLED}


@pytest.mark.parametrize("held", sorted(SLOT_HOLDING), ids=str)
def test_operator_can_release_every_slot_of_a_lost_worker(held: StateType) -> None:
    # DESIGN §4: no slot is held by a dead worker, so each slot-holding state needs a move the
    # operator may write that leaves the slot-holding states.
    releases = [
        new
        for (old, new), writer in ALLOWED.items()
        if old is held and Writer.OPERATOR in writer and not is_slot_holding(new)
    ]
    assert releases, f"operator cannot release a {held} run"
