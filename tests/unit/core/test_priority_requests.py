"""`current_request`: when a queue's priority request is new (seen now) and when it is the same one.

Aspects: a first request; the same value from the same origin keeps its moment; a new value is
new; an assigned value asked for explicitly is new (issue 15 (a)); removing spec.priority keeps
the value and the moment; a status from before the origin was kept changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.builders import T0
from workpools.core.priorities import PriorityRequest, current_request

NOW = T0 + timedelta(hours=1)


def request(spec: int | None, kept: int | None, kept_assigned: bool | None) -> PriorityRequest | None:
    since = T0 if kept is not None else None
    return current_request("q", spec=spec, kept=kept, kept_assigned=kept_assigned, since=since, now=NOW)


def test_a_queue_never_seen_without_a_priority_has_no_request_yet() -> None:
    assert request(None, None, None) is None


def test_a_first_request_is_seen_now() -> None:
    assert request(3, None, None) == PriorityRequest("q", 3, NOW)


@pytest.mark.parametrize(
    ("spec", "kept", "kept_assigned", "expected"),
    [
        pytest.param(3, 3, False, PriorityRequest("q", 3, T0), id="same value, asked for: same request"),
        pytest.param(None, 3, True, PriorityRequest("q", 3, T0, assigned=True), id="same value, assigned: same"),
        pytest.param(4, 3, False, PriorityRequest("q", 4, NOW), id="a new value is new"),
        pytest.param(3, 3, True, PriorityRequest("q", 3, NOW), id="asking for the assigned value is new"),
        pytest.param(None, 3, False, PriorityRequest("q", 3, T0, assigned=True), id="spec removed: nothing moves"),
        pytest.param(3, 3, None, PriorityRequest("q", 3, T0), id="status from before the origin was kept"),
    ],
)
def test_a_request_keeps_its_moment_only_while_it_is_the_same(
    spec: int | None, kept: int, kept_assigned: bool | None, expected: PriorityRequest
) -> None:
    assert request(spec, kept, kept_assigned) == expected
