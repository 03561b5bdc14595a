"""Event names: chronological, so `kubectl describe` lists events of one second in posting order."""

from __future__ import annotations

from datetime import timedelta

from tests.builders import T0
from workpools.client.events import event_name


def test_names_are_the_object_and_the_posting_time_in_hex_nanoseconds() -> None:
    assert event_name("etl", T0) == f"etl.{int(T0.timestamp()) * 10**9:016x}"


def test_names_sort_in_posting_order_within_a_second() -> None:
    times = [T0 + timedelta(microseconds=m) for m in (0, 1, 9, 10, 999_999)] + [T0 + timedelta(days=365 * 200)]
    names = [event_name("p", t) for t in times]
    assert sorted(names) == names
    assert len(set(names)) == len(names)


def test_a_long_object_name_still_gives_a_valid_event_name() -> None:
    name = event_name("a" * 235 + "-b" * 9, T0)
    assert len(name) <= 253
    assert ".." not in name
    assert "-." not in name
