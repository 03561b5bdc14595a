"""Shared notation and data for the priority tests.

Pools are written the way prefect-semantics.md §3 writes them ("A=1 B=2 D=4"), so a table row
reads like the reference it was taken from.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from workpools.core.priorities import PriorityRequest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
QUEUES = tuple(f"q{index:02d}" for index in range(12))
PRIORITIES = st.integers(min_value=1, max_value=30)


def pool(text: str) -> dict[str, int]:
    """Parse the reference notation: "A=1 B=2" -> {"A": 1, "B": 2}."""
    return {name: int(value) for name, _, value in (item.partition("=") for item in text.split())}


def at(tick: int) -> datetime:
    """A moment `tick` seconds after T0: tests speak in ticks, the core in datetimes."""
    return T0 + timedelta(seconds=tick)


def requested(requests: list[PriorityRequest]) -> dict[str, int]:
    return {request.queue: request.requested for request in requests}


@st.composite
def priority_requests(
    draw: st.DrawFn, *, distinct: bool = False, min_size: int = 0, max_size: int = 12
) -> list[PriorityRequest]:
    """Up to 12 queues asking for 1..30; `seen` ticks collide often, to exercise the tie-break."""
    queues = draw(st.lists(st.sampled_from(QUEUES), min_size=min_size, max_size=max_size, unique=True))
    size = len(queues)
    values = draw(st.lists(PRIORITIES, min_size=size, max_size=size, unique=distinct))
    ticks = draw(st.lists(st.integers(min_value=0, max_value=15), min_size=size, max_size=size))
    return [PriorityRequest(queue, value, at(tick)) for queue, value, tick in zip(queues, values, ticks, strict=True)]
