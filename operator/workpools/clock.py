"""The one clock of the operator, the worker and the CLI: UTC wall time that advances with the monotonic clock.

Anchored to the wall clock once, at import, then moved on by `time.monotonic()`: liveness rules
("no heartbeat seen for 3 × interval") measure real elapsed time even when the system clock is
stepped, and a timestamp the operator or a worker writes never goes backwards.
"""

from __future__ import annotations

import datetime
import time

_WALL = datetime.datetime.now(datetime.UTC)
_MONOTONIC = time.monotonic()


def utc_now() -> datetime.datetime:
    # Microseconds matter: the order in which queue priority requests were first seen is kept
    # in status timestamps, and two requests a few milliseconds apart must not tie.
    return _WALL + datetime.timedelta(seconds=time.monotonic() - _MONOTONIC)
