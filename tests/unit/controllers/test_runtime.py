"""The operator's shared deletion budget, from its environment (controllers/runtime.py)."""

from __future__ import annotations

import pytest

from workpools.controllers.runtime import DELETIONS_ENV, deletion_budget
from workpools.core.snapshot import DELETIONS_BURST, DELETIONS_PER_SECOND


def test_the_default_budget_is_ten_a_second_in_bursts_of_twenty() -> None:
    budget = deletion_budget({})
    assert (budget.rate, budget.burst) == (DELETIONS_PER_SECOND, DELETIONS_BURST) == (10.0, 20)


@pytest.mark.parametrize(("text", "rate", "burst"), [("50", 50.0, 100), ("0.2", 0.2, 1), ("2.5", 2.5, 5)])
def test_a_configured_rate_bursts_two_seconds_worth(text: str, rate: float, burst: int) -> None:
    budget = deletion_budget({DELETIONS_ENV: text})
    assert (budget.rate, budget.burst) == (rate, burst)


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf", "100000"])
def test_a_bad_rate_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(ValueError, match=rf"WORKPOOLS_RUN_DELETIONS_PER_SECOND must be .* not '{text}'"):
        deletion_budget({DELETIONS_ENV: text})
