"""Effective priorities: Prefect's single-queue update replayed in first-seen order (DESIGN §3).

Aspects: the reference's worked examples as the operator sees them (a change is a new request,
seen last), where and why we deliberately end elsewhere than Prefect, and the properties the
contract promises: unique and positive, requests honoured when they do not clash whatever the
order, deterministic, Prefect's result for a single change, pushed queues return when the pusher
leaves, minimal movement, gaps kept.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from workpools.core.priorities import (
    PriorityRequest,
    bulk_update,
    first_free_priority,
    resolve,
)

from .priority_support import PRIORITIES, at, pool, priority_requests, requested


def replay(steps: str) -> dict[str, int]:
    """Drive one pool as the operator sees it and return the effective priorities.

    "A=3" applies A with `spec.priority` 3, "A" applies A without one (the first free effective
    value is assigned at first sight and kept), "-A" deletes A. Each new request is seen one tick
    after the previous one.
    """
    requests: dict[str, PriorityRequest] = {}
    for tick, step in enumerate(steps.split()):
        queue, _, value = step.lstrip("-").partition("=")
        if step.startswith("-"):
            del requests[queue]
        elif value and (queue not in requests or requests[queue].requested != int(value)):
            requests[queue] = PriorityRequest(queue, int(value), at(tick))
        elif not value and queue not in requests:
            assigned = first_free_priority(resolve(requests.values()).values())
            requests[queue] = PriorityRequest(queue, assigned, at(tick))
    return resolve(requests.values())


A_TO_E = "A=1 B=2 C=3 D=4 E=5"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # prefect-semantics §3 worked examples
        pytest.param("default=1 A B C D", "default=1 A=2 B=3 C=4 D=5", id="A-D auto take 2-5"),
        pytest.param(
            "default=1 A B C D default=2",
            "default=2 A=3 B=4 C=5 D=6",
            id="default to 2 pushes A-D",
        ),
        pytest.param(
            "default=1 A B C D default=2 D=1",
            "D=1 default=2 A=3 B=4 C=5",
            id="then D to 1 moves up",
        ),
        pytest.param("default=1 q-high=1", "q-high=1 default=2", id="q-high at 1 pushes default"),
        pytest.param(
            "default=1 q-high=1 q-mid q-low=10 q-paused",
            "q-high=1 default=2 q-mid=3 q-low=10 q-paused=4",
            id="q-mid and q-paused take gaps, q-low keeps 10",
        ),
        pytest.param(f"{A_TO_E} A=2", "A=2 B=3 C=4 D=5 E=6", id="A to 2"),
        pytest.param(f"{A_TO_E} A=2 B=4", "A=2 C=3 B=4 D=5 E=6", id="A to 2, B to 4"),
        pytest.param(f"{A_TO_E} C=1 A=2 B=4", "C=1 A=2 B=4 D=5 E=6", id="C to 1, A to 2, B to 4"),
        pytest.param(f"{A_TO_E} B=1 A=2", "B=1 A=2 C=3 D=4 E=5", id="B to 1, A to 2"),
        pytest.param(f"{A_TO_E} E=1", "E=1 A=2 B=3 C=4 D=5", id="E to 1 pushes all"),
        pytest.param(f"{A_TO_E} A=5", "B=2 C=3 D=4 A=5 E=6", id="A to 5 shifts, never swaps"),
        pytest.param(f"{A_TO_E} C=10", "A=1 B=2 D=4 E=5 C=10", id="C beyond max leaves a gap"),
        pytest.param(f"{A_TO_E} -C", "A=1 B=2 D=4 E=5", id="delete C keeps the gap"),
        pytest.param("default=1 C A B A=100", "default=1 C=2 B=4 A=100", id="A to 100 leaves B at 4"),
        pytest.param("default=1 wpq-1=99 wpq-2", "default=1 wpq-2=2 wpq-1=99", id="wpq-2 takes 2 below 99"),
        # prefect-semantics §8, models and API tests
        pytest.param("default=1 A=1", "A=1 default=2", id="queue at 1 pushes default to 2"),
        pytest.param("default=1 A B C", "default=1 A=2 B=3 C=4", id="A B C auto take 2 3 4"),
        pytest.param("default=1 C A B", "default=1 C=2 A=3 B=4", id="C A B read in priority order"),
        pytest.param("default=1 A default=2", "default=2 A=3", id="set default priority to 2"),
        pytest.param("default=1 A B C -B", "default=1 A=2 C=4", id="delete B keeps C at 4"),
        pytest.param("default=1 q=99", "default=1 q=99", id="api: prio 99 kept"),
        pytest.param("default=1 q r", "default=1 q=2 r=3", id="api: no prio gives 2 then 3"),
        pytest.param("default=1 q=99 r", "default=1 r=2 q=99", id="api: 99 then none gives 2"),
    ],
)
def test_worked_examples_match_prefect(steps: str, expected: str) -> None:
    assert replay(steps) == pool(expected)


CHAIN = "default=1 A B C D default=2 D=1"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # Prefect: D1 default2 B4 C5 A50 (B and C stay where A's push left them).
        pytest.param(
            f"{CHAIN} A=50",
            "D=1 default=2 B=3 C=4 A=50",
            id="A leaves, B and C return to their requests",
        ),
        # Prefect: E takes gap 3, which only exists because B and C were left pushed.
        pytest.param(f"{CHAIN} A=50 E", "D=1 default=2 B=3 C=4 E=5 A=50", id="E takes the first real gap"),
        # Prefect: F3 E4 B5 C6.
        pytest.param(f"{CHAIN} A=50 E F=3", "D=1 default=2 F=3 B=4 C=5 E=6 A=50", id="F at 3 cascades"),
        # Prefect: E4 B5.
        pytest.param(
            f"{CHAIN} A=50 E F=3 -C",
            "D=1 default=2 F=3 B=4 E=5 A=50",
            id="delete C returns E to its request",
        ),
        # Prefect: A2 B3 after P is deleted.
        pytest.param("A=1 B=2 P=1 -P", "A=1 B=2", id="pusher deleted, pushed return"),
        # Prefect: A2 B3 P7.
        pytest.param("A=1 B=2 P=1 P=7", "A=1 B=2 P=7", id="pusher moves away, pushed return"),
    ],
)
def test_deliberate_differences_from_prefect(steps: str, expected: str) -> None:
    assert replay(steps) == pool(expected)


def test_replay_order_is_seen_then_queue_name() -> None:
    tie = [PriorityRequest("b", 1, at(0)), PriorityRequest("a", 1, at(0))]
    later = [PriorityRequest("a", 1, at(0)), PriorityRequest("b", 1, at(1))]

    assert resolve(tie) == {"a": 2, "b": 1}
    assert resolve(later) == {"a": 2, "b": 1}
    assert resolve([PriorityRequest("a", 1, at(2)), PriorityRequest("b", 1, at(1))]) == {
        "b": 2,
        "a": 1,
    }


def test_a_queue_with_two_requests_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^queue 'a' has more than one priority request$"):
        resolve([PriorityRequest("a", 1, at(0)), PriorityRequest("a", 2, at(1))])


@given(priority_requests())
def test_effective_values_are_unique_and_positive(requests: list[PriorityRequest]) -> None:
    effective = resolve(requests)

    assert effective.keys() == requested(requests).keys()
    assert len(set(effective.values())) == len(effective)
    assert all(value >= 1 for value in effective.values())


@given(priority_requests(distinct=True), st.data())
def test_unclashing_requests_hold_whatever_the_seen_order(requests: list[PriorityRequest], data: st.DataObject) -> None:
    moments = data.draw(st.permutations([request.seen for request in requests]))
    reseen = [
        PriorityRequest(request.queue, request.requested, moment)
        for request, moment in zip(requests, moments, strict=True)
    ]

    assert resolve(requests) == resolve(reseen) == requested(requests)


@given(priority_requests(), st.data())
def test_same_requests_in_any_list_order_give_the_same_result(
    requests: list[PriorityRequest], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(requests))

    assert resolve(shuffled) == resolve(requests)


@given(priority_requests(distinct=True, max_size=11), PRIORITIES, st.data())
def test_single_change_to_a_settled_pool_is_prefects_update(
    requests: list[PriorityRequest], new: int, data: st.DataObject
) -> None:
    current = requested(requests)
    queue = data.draw(st.sampled_from([*current, "newcomer"]))
    # Prefect's create inserts the row first; its update finds it there already.
    before = current if queue in current else {**current, queue: new}
    changed = [request for request in requests if request.queue != queue]

    effective = resolve([*changed, PriorityRequest(queue, new, at(100))])

    assert effective == bulk_update(before, {queue: new})


@given(priority_requests(distinct=True, min_size=1, max_size=11), st.data())
def test_pushed_queues_return_when_the_pusher_leaves(requests: list[PriorityRequest], data: st.DataObject) -> None:
    taken = data.draw(st.sampled_from([request.requested for request in requests]))
    free = data.draw(PRIORITIES.filter(lambda value: value not in requested(requests).values()))
    holder = next(request.queue for request in requests if request.requested == taken)
    pushing = resolve([*requests, PriorityRequest("pusher", taken, at(100))])
    moved_away = resolve(
        [*requests, PriorityRequest("pusher", free, at(101))]  # its request changed, seen anew
    )

    assert pushing["pusher"] == taken
    assert pushing[holder] > taken
    assert resolve(requests) == requested(requests)
    assert moved_away == {**requested(requests), "pusher": free}


@given(priority_requests())
def test_queues_move_only_along_a_collision_chain(requests: list[PriorityRequest]) -> None:
    effective = resolve(requests)
    asked = requested(requests)
    taken = set(effective.values())
    first_clash = min((value for value, count in Counter(asked.values()).items() if count > 1), default=None)
    latest = max(requests, key=lambda request: (request.seen, request.queue), default=None)

    for queue, value in asked.items():
        # Pushed only downwards, and only through values that other queues now hold.
        assert effective[queue] >= value
        assert set(range(value, effective[queue])) <= taken - {effective[queue]}
        # Nothing below the first clash is ever disturbed.
        if first_clash is None or value < first_clash:
            assert effective[queue] == value
    # The latest request always wins its value, as Prefect's latest update does.
    if latest is not None:
        assert effective[latest.queue] == latest.requested


@given(priority_requests(distinct=True, min_size=1))
def test_gaps_are_kept(requests: list[PriorityRequest]) -> None:
    asked = requested(requests)
    assume(max(asked.values()) > len(asked))  # at least one gap below the top
    gone = requests[0]
    remaining = resolve(requests[1:])

    assert resolve(requests) == asked
    assert gone.requested not in remaining.values()
    assert remaining == {queue: value for queue, value in asked.items() if queue != gone.queue}
