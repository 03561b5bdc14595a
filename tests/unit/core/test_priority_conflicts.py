"""A queue off its requested priority names the queue holding that value (PriorityConflict).

Aspects: direct and cascaded pushes, settled pools, inputs that did not come from `resolve`,
and that every queue resolved off its request has a holder.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from workpools.core.priorities import PriorityRequest, conflicts, resolve

from .priority_support import at, pool, priority_requests, requested


def seen_in_order(text: str) -> list[PriorityRequest]:
    """'A=1 B=2 P=1' -> requests seen one tick apart, left to right."""
    return [PriorityRequest(q, value, at(tick)) for tick, (q, value) in enumerate(pool(text).items())]


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        pytest.param("A=1 B=3", {}, id="settled pool has none"),
        pytest.param("A=1 P=1", {"A": "P"}, id="pushed queue names its pusher"),
        pytest.param("A=1 B=2 P=1", {"A": "P", "B": "A"}, id="cascade names each holder"),
        pytest.param("A=1 B=3 P=1", {"A": "P"}, id="gap stops the cascade"),
        pytest.param("A=1 B=1 C=1", {"A": "C", "B": "C"}, id="all pushed by the latest"),
    ],
)
def test_conflicts_name_the_holder(requests: str, expected: dict[str, str]) -> None:
    asked = seen_in_order(requests)

    assert conflicts(asked, resolve(asked)) == expected


@pytest.mark.parametrize(
    ("effective", "expected"),
    [
        pytest.param("A=2 B=3", {}, id="requested value held by nobody"),
        pytest.param("B=1", {}, id="queue missing from effective"),
        pytest.param("A=2 B=1", {"A": "B"}, id="held value is still reported"),
    ],
)
def test_mismatched_inputs_invent_no_holder(effective: str, expected: dict[str, str]) -> None:
    assert conflicts(seen_in_order("A=1 B=3"), pool(effective)) == expected


@given(priority_requests())
def test_every_queue_off_its_request_has_a_holder(requests: list[PriorityRequest]) -> None:
    effective = resolve(requests)
    asked = requested(requests)

    found = conflicts(requests, effective)

    assert found.keys() == {queue for queue in asked if effective[queue] != asked[queue]}
    assert all(effective[holder] == asked[queue] for queue, holder in found.items())
