"""Retries: a Failed or Crashed run with attempts left goes back to Scheduled as a new attempt.

FlowRun `spec.retries` allows that many more attempts after the first; `spec.retryDelaySeconds`
puts the next attempt's scheduled time that long after the failure is seen, so it waits in
Scheduled (`stateName: AwaitingRetry`, hold reason NotYetScheduled) and then goes through
admission like any run: a retry never bypasses a limit. The attempt number (`status.attempt`)
goes up by one, and the worker fences by it: an execution of an earlier attempt is never taken
for the current one, so no attempt runs twice. How the previous attempt ended stays in
`status.lastFailure`.

A run whose cancellation is requested is not retried (it is over, as the user asked).
"""

from __future__ import annotations

import datetime
from typing import Any

from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.states import RETRYABLE, StateType

__all__ = ["attempt", "next_attempt", "retrying"]


def attempt(run: FlowRun) -> int:
    """The run's attempt: 1 until it is first retried (absent on runs from before retries)."""
    return run.status.attempt or 1


def retrying(run: FlowRun) -> bool:
    """Whether the run ended an attempt that will be followed by another one."""
    return run.status.state in RETRYABLE and not run.spec.cancel and attempt(run) <= run.spec.retries


def next_attempt(run: FlowRun, now: datetime.datetime) -> dict[str, Any]:
    """The status merge patch that makes the run its next attempt, Scheduled `retryDelaySeconds` from now."""
    failed, ended = attempt(run), run.status.state
    assert ended is not None, "a run that is retrying ended its attempt"
    assert retrying(run), "only a run that is retrying gets a next attempt"
    due = now + datetime.timedelta(seconds=run.spec.retry_delay_seconds)
    total = run.spec.retries + 1
    return {
        "state": StateType.SCHEDULED.value,
        "stateName": "AwaitingRetry",
        "attempt": failed + 1,
        "scheduledTime": timestamp(due),
        "lastFailure": {
            "attempt": failed,
            "state": ended.value,
            "message": run.status.message,
            "endTime": timestamp(run.status.end_time or now),
        },
        "message": f"attempt {failed} of {total} {ended.value}; attempt {failed + 1} at {timestamp(due)}",
        # A new attempt: bound to no worker (the last one's watch drops it), holding nothing.
        "worker": None,
        "workerIdentity": None,
        "slot": None,
        "startTime": None,
        "endTime": None,
    }
