"""Prefect's bulk rebalance, reproduced exactly (prefect-semantics §3 and §8 "Bulk priorities").

Aspects: every worked example, the upstream test cases, refused targets (duplicates, below 1),
unknown queues, the latent multi-target defect, purity, and properties of a single-target update.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workpools.core.priorities import DuplicatePriorityError, bulk_update

from .priority_support import PRIORITIES, QUEUES, pool

A_TO_E = "A=1 B=2 C=3 D=4 E=5"


@pytest.mark.parametrize(
    ("start", "targets", "expected"),
    [
        # prefect-semantics §3, worked examples ([live] rows and re-implementation rows)
        pytest.param(
            "default=1 A=2 B=3 C=4 D=5",
            "default=2",
            "default=2 A=3 B=4 C=5 D=6",
            id="default to 2 pushes every queue, slot 1 left empty",
        ),
        pytest.param(
            "default=2 A=3 B=4 C=5 D=6",
            "D=1",
            "D=1 default=2 A=3 B=4 C=5",
            id="D to 1 moves up, nobody collides",
        ),
        pytest.param(
            "D=1 default=2 A=3 B=4 C=5",
            "A=50",
            "D=1 default=2 B=4 C=5 A=50",
            id="A beyond max changes only A",
        ),
        pytest.param(
            "D=1 default=2 E=3 B=4 C=5 A=50 F=3",
            "F=3",
            "D=1 default=2 F=3 E=4 B=5 C=6 A=50",
            id="create F at 3 cascades E B C",
        ),
        pytest.param(
            "D=1 default=2 F=3 E=4 B=5 A=50",
            "",
            "D=1 default=2 F=3 E=4 B=5 A=50",
            id="after delete C no compaction",
        ),
        pytest.param(
            "default=1 q-high=1",
            "q-high=1",
            "q-high=1 default=2",
            id="create q-high at 1 pushes default",
        ),
        pytest.param(
            "q-high=1 default=2 q-mid=3 q-low=10",
            "q-low=10",
            "q-high=1 default=2 q-mid=3 q-low=10",
            id="create q-low at 10 moves nobody",
        ),
        pytest.param(A_TO_E, "A=2", "A=2 B=3 C=4 D=5 E=6", id="A to 2"),
        pytest.param(A_TO_E, "A=2 B=4", "A=2 C=3 B=4 D=5 E=6", id="A to 2 and B to 4"),
        pytest.param(A_TO_E, "A=2 B=4 C=1", "C=1 A=2 B=4 D=5 E=6", id="A to 2, B to 4, C to 1"),
        pytest.param(A_TO_E, "A=2 B=1", "B=1 A=2 C=3 D=4 E=5", id="A to 2 and B to 1"),
        pytest.param(A_TO_E, "E=1", "E=1 A=2 B=3 C=4 D=5", id="E to 1 pushes all"),
        pytest.param(A_TO_E, "A=5", "B=2 C=3 D=4 A=5 E=6", id="A to 5 shifts, never swaps"),
        pytest.param(A_TO_E, "C=10", "A=1 B=2 D=4 E=5 C=10", id="C beyond max leaves a gap"),
        pytest.param("A=1 B=2 D=4 E=5", "", "A=1 B=2 D=4 E=5", id="empty map keeps the gap"),
        pytest.param(
            "default=1 C=2 A=3 B=4",
            "A=100",
            "default=1 C=2 B=4 A=100",
            id="A to 100 leaves B at 4",
        ),
        # prefect-semantics §8, tests/server/models/test_workers.py
        pytest.param("default=1 A=2", "default=2", "default=2 A=3", id="set default priority to 2"),
        pytest.param("default=1 A=2 C=4", "", "default=1 A=2 C=4", id="after deleting B, C stays at 4"),
        pytest.param(A_TO_E, "", A_TO_E, id="empty map changes nothing"),
        pytest.param(A_TO_E, "B=2 C=3 D=4 E=5", A_TO_E, id="targets above every other queue all hold"),
        pytest.param(A_TO_E, A_TO_E, A_TO_E, id="every queue targeted"),
        pytest.param(A_TO_E, "ghost=3 A=4", "B=2 C=3 A=4 D=5 E=6", id="unknown queue ignored, A to 4"),
    ],
)
def test_worked_examples(start: str, targets: str, expected: str) -> None:
    assert bulk_update(pool(start), pool(targets)) == pool(expected)


@pytest.mark.parametrize(
    "targets",
    [
        pytest.param("A=2", id="A to 2"),
        pytest.param("A=2 B=4", id="A to 2, B to 4"),
        pytest.param("A=2 B=4 C=1", id="A to 2, B to 4, C to 1"),
        pytest.param("A=2 B=1", id="A to 2, B to 1"),
        pytest.param("B=2 C=3 D=4 E=5", id="B..E to 2..5"),
        pytest.param(A_TO_E, id="A..E to 1..5"),
    ],
)
def test_every_target_holds_and_no_queue_is_lost(targets: str) -> None:
    """Upstream `test_bulk_update_priorities`, with uniqueness checked as well."""
    result = bulk_update(pool(A_TO_E), pool(targets))

    assert result.keys() == pool(A_TO_E).keys()
    assert {queue: result[queue] for queue in pool(targets)} == pool(targets)
    assert len(set(result.values())) == len(result)


def test_unknown_queue_is_not_added() -> None:
    assert "ghost" not in bulk_update(pool(A_TO_E), {"ghost": 3})


@pytest.mark.parametrize(
    ("targets", "named", "message"),
    [
        pytest.param(
            {"A": 3, "B": 3},
            ["A", "B"],
            "Duplicate target priorities provided: priority 3 targeted by A, B",
            id="two known queues",
        ),
        pytest.param(
            {"ghost": 3, "A": 3},
            ["A", "ghost"],
            "Duplicate target priorities provided: priority 3 targeted by A, ghost",
            id="unknown queue still counts",
        ),
        pytest.param(
            {"D": 2, "C": 2, "B": 1, "A": 1},
            ["A", "B", "C", "D"],
            "Duplicate target priorities provided: priority 1 targeted by A, B; priority 2 targeted by C, D",
            id="two clashes",
        ),
    ],
)
def test_duplicate_targets_are_refused_naming_the_queues(
    targets: dict[str, int], named: list[str], message: str
) -> None:
    # The exact text: users (and the CLI) read it, and its first words are Prefect's own.
    with pytest.raises(DuplicatePriorityError, match=f"^{re.escape(message)}$") as info:
        bulk_update(pool(A_TO_E), targets)

    assert isinstance(info.value, ValueError)
    assert sorted(queue for queues in info.value.clashes.values() for queue in queues) == named


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        pytest.param({"A": 0}, "priorities must be at least 1: A=0", id="zero"),
        pytest.param({"A": -1}, "priorities must be at least 1: A=-1", id="negative"),
        pytest.param({"B": 0, "C": 2, "A": -1}, "priorities must be at least 1: A=-1, B=0", id="each-one-named"),
    ],
)
def test_targets_below_one_are_refused(targets: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bulk_update(pool(A_TO_E), targets)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param("B=1 A=1", "A=1 B=2", id="equal values walked in name order"),
        pytest.param("c=2 b=2 a=2 d=3", "a=2 b=3 c=4 d=5", id="tie cascades into the next queue"),
    ],
)
def test_duplicates_left_by_prefects_legacy_route_are_repaired_by_name(start: str, expected: str) -> None:
    """Prefect walks equal values in database order; ours is by name, so the result is stable."""
    assert bulk_update(pool(start), {}) == pool(expected)


def test_latent_defect_is_reproduced() -> None:
    """A target above every other queue is never walked, so a bump can land on it (§3)."""
    result = bulk_update(pool("X=1 Y=2 Z=3 B=9 A=8"), pool("B=1 A=4"))

    assert result == pool("B=1 X=2 Y=3 A=4 Z=4")


def test_inputs_are_not_modified() -> None:
    current, targets = pool(A_TO_E), pool("A=3")

    bulk_update(current, targets)

    assert (current, targets) == (pool(A_TO_E), pool("A=3"))


unique_pools = st.lists(PRIORITIES, max_size=12, unique=True).map(
    lambda values: dict(zip(QUEUES, values, strict=False))
)


@given(unique_pools, st.sampled_from((*QUEUES, "newcomer")), PRIORITIES)
def test_single_target_over_unique_pool(current: dict[str, int], queue: str, target: int) -> None:
    """What `resolve` relies on: one target keeps a pool unique and only pushes values down."""
    before = {**current, queue: target}

    after = bulk_update(before, {queue: target})

    assert after[queue] == target
    assert len(set(after.values())) == len(after) == len(before)
    assert all(after[other] >= before[other] for other in before if other != queue)
    assert all(after[other] == before[other] for other in before if before[other] < target)


@given(unique_pools)
def test_empty_targets_never_compact(current: dict[str, int]) -> None:
    assert bulk_update(current, {}) == current
