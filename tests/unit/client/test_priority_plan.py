"""The client's bulk priority action, worked out before any write, and the order queues are listed in.

Aspects: Prefect's result over held priorities (effective, else spec), which queues get written
(only those whose request changes) and in what order, queues the operator has not placed yet,
refused and ignored targets, and `queue_order` (effective priority, name, unresolved last).
"""

from __future__ import annotations

import pytest

from workpools.api.workqueue import WorkQueue
from workpools.client.workpools import plan_priorities, queue_order
from workpools.core.priorities import DuplicatePriorityError


def queue(
    name: str, spec: int | None = None, *, effective: int | None = None, requested: int | None = None
) -> WorkQueue:
    """A queue as read from the server; `effective` and `requested` default to the spec (resolved, no conflict)."""
    effective = spec if effective is None else effective
    return WorkQueue.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"workPool": "p", "priority": spec},
            "status": {"effectivePriority": effective, "requestedPriority": requested or effective},
        }
    )


def unresolved(name: str, spec: int | None = None) -> WorkQueue:
    """A queue the operator has not resolved yet: no status at all."""
    return WorkQueue.model_validate({"metadata": {"name": name}, "spec": {"workPool": "p", "priority": spec}})


def resolved(text: str) -> list[WorkQueue]:
    """Queues holding their specs, written like prefect-semantics §3: "A=1 B=2"."""
    return [queue(name, int(value)) for name, _, value in (item.partition("=") for item in text.split())]


def test_prefect_result_is_returned_and_only_moved_queues_are_written() -> None:
    plan = plan_priorities(resolved("A=1 B=2 C=3 D=4 E=5"), {"A": 5})

    assert plan.priorities == {"A": 5, "B": 2, "C": 3, "D": 4, "E": 6}
    assert plan.writes == [("E", 6), ("A", 5)]


def test_writes_go_from_the_highest_value_down_so_pushed_queues_make_room_first() -> None:
    plan = plan_priorities(resolved("default=1 A=2 B=3 C=4 D=5"), {"default": 2})

    assert plan.writes == [("D", 6), ("C", 5), ("B", 4), ("A", 3), ("default", 2)]


def test_a_queue_pushed_off_its_request_gets_its_held_value_written() -> None:
    # The operator placed B at 3 because A holds the 2 it asks for; Prefect's state is the held one.
    plan = plan_priorities([queue("A", 2), queue("B", 2, effective=3)], {})

    assert plan.priorities == {"A": 2, "B": 3}
    assert plan.writes == [("B", 3)]


def test_spec_stands_in_for_an_effective_priority_not_resolved_yet() -> None:
    plan = plan_priorities([unresolved("A", 1), unresolved("B", 2)], {"B": 1})

    assert plan.priorities == {"A": 2, "B": 1}
    assert plan.writes == [("A", 2), ("B", 1)]


def test_a_queue_without_spec_keeps_its_assigned_value_unwritten_unless_it_moves() -> None:
    queues = [queue("auto", effective=2, requested=2), queue("A", 1), queue("B", 5)]

    assert plan_priorities(queues, {"B": 4}).writes == [("B", 4)]
    assert plan_priorities(queues, {"A": 2}).writes == [("auto", 3), ("A", 2)]


def test_a_queue_not_placed_yet_takes_part_only_as_a_target() -> None:
    fresh = unresolved("fresh")

    untouched = plan_priorities([fresh, queue("A", 1)], {"A": 1})
    targeted = plan_priorities([fresh, queue("A", 1)], {"fresh": 1})

    assert (untouched.priorities, untouched.writes) == ({"A": 1}, [])
    assert (targeted.priorities, targeted.writes) == ({"fresh": 1, "A": 2}, [("A", 2), ("fresh", 1)])


def test_targets_naming_no_queue_of_the_pool_are_ignored() -> None:
    plan = plan_priorities(resolved("A=1 B=2"), {"ghost": 1, "B": 3})

    assert plan.priorities == {"A": 1, "B": 3}
    assert plan.writes == [("B", 3)]


def test_prefects_latent_multi_target_defect_is_written_as_it_comes() -> None:
    # prefect-semantics §3: A's target is above every other value, so Z is bumped onto it.
    plan = plan_priorities(resolved("X=1 Y=2 Z=3 A=8 B=9"), {"B": 1, "A": 4})

    assert plan.priorities == {"B": 1, "X": 2, "Y": 3, "A": 4, "Z": 4}
    assert plan.writes == [("A", 4), ("Z", 4), ("Y", 3), ("X", 2), ("B", 1)]


@pytest.mark.parametrize("targets", [{"A": 2, "B": 2}, {"ghost": 1, "A": 1}], ids=["two queues", "unknown queue too"])
def test_duplicate_targets_are_refused(targets: dict[str, int]) -> None:
    with pytest.raises(DuplicatePriorityError, match="Duplicate target priorities provided"):
        plan_priorities(resolved("A=1 B=2"), targets)


def test_queue_order_is_effective_priority_then_name_with_unresolved_queues_last() -> None:
    queues = [
        queue("zeta", 1, effective=2),
        unresolved("late-b"),
        queue("alpha", 5),
        queue("beta", 2),
        unresolved("late-a", 1),
    ]

    assert [q.metadata.name for q in sorted(queues, key=queue_order)] == ["beta", "zeta", "alpha", "late-a", "late-b"]
