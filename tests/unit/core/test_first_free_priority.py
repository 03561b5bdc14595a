"""A queue created without a priority takes the first gap, else max + 1 (prefect-semantics §3).

Aspects: the reference examples, the upstream create cases, and that the answer is always the
lowest free positive value.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workpools.core.priorities import first_free_priority

from .priority_support import PRIORITIES


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        pytest.param([1], 2, id="after default takes 2"),
        pytest.param([1, 99], 2, id="gap below a far queue is taken"),
        pytest.param([1, 3], 2, id="fills the gap"),
        pytest.param([2, 3], 1, id="slot 1 left empty is reused"),
        pytest.param([1, 2, 3], 4, id="no gap gives max + 1"),
        pytest.param([], 1, id="empty pool starts at 1"),
        pytest.param([1, 2, 3, 4], 5, id="A B C D after default"),
        pytest.param([1, 2, 4, 5, 50], 3, id="create E takes gap 3"),
        pytest.param([1, 2, 3, 10], 4, id="q-paused after q-low 10 takes 4"),
        pytest.param([3, 1], 2, id="input order does not matter"),
        pytest.param([1, 1, 2], 3, id="duplicates never yield a taken value"),
        pytest.param([0, -4, 1], 2, id="values below 1 are ignored"),
    ],
)
def test_first_free_priority(taken: list[int], expected: int) -> None:
    assert first_free_priority(taken) == expected


def test_accepts_any_iterable() -> None:
    assert first_free_priority(value for value in (1, 2)) == 3


@given(st.lists(PRIORITIES, max_size=12))
def test_is_the_lowest_free_positive_value(taken: list[int]) -> None:
    free = first_free_priority(taken)

    assert free >= 1
    assert free not in taken
    assert set(range(1, free)) <= set(taken)
