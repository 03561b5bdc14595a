"""Waiting for a condition with a deadline: the only way tests wait (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


_TRUTHY = object()


def wait_for(
    probe: Callable[[], T | None],
    *,
    equals: object = _TRUTHY,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "",
) -> T:
    """Call `probe` until it returns something truthy (or equal to `equals`), and return that.

    Fails after `timeout` seconds; the message shows the last value seen (or the last exception),
    so a timeout explains itself.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if (value == equals) if equals is not _TRUTHY else value:
                return value  # type: ignore[return-value]
            last = value
        except AssertionError as error:
            last = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or probe}; last: {last!r}")
        time.sleep(interval)
