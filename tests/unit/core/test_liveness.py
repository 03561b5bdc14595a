"""Worker liveness (core/liveness.py): Prefect's 3 × interval rule, Offline since when, TTL, lastPolled.

Aspects: the Online/Offline boundary (strict, per interval); when a worker went Offline; when an
Offline worker may be deleted; the newest heartbeat; how often a queue's lastPolled moves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.builders import T0, at
from tests.unit.core.run_support import condition, wkr
from workpools.api.base import timestamp
from workpools.api.worker import Worker, WorkerPhase
from workpools.core import liveness


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [pytest.param(None, 30, id="default"), pytest.param(1, 1, id="1s"), pytest.param(45, 45, id="45s")],
)
def test_heartbeat_interval(interval: int | None, seconds: int) -> None:
    assert liveness.heartbeat_interval(wkr("w", interval=interval)) == timedelta(seconds=seconds)


def test_offline_at_is_three_intervals_after_the_last_heartbeat() -> None:
    assert liveness.offline_at(wkr("w", heartbeat=T0)) == at(seconds=90)
    assert liveness.offline_at(wkr("w", heartbeat=T0, interval=7)) == at(seconds=21)
    assert liveness.offline_at(wkr("w", heartbeat=None)) is None


@pytest.mark.parametrize(
    ("since_heartbeat", "phase"),
    [
        pytest.param(timedelta(0), WorkerPhase.ONLINE, id="just-beat"),
        pytest.param(timedelta(seconds=-5), WorkerPhase.ONLINE, id="beat-in-the-future"),
        pytest.param(timedelta(seconds=89), WorkerPhase.ONLINE, id="89s"),
        pytest.param(timedelta(seconds=90), WorkerPhase.ONLINE, id="exactly-90s"),
        pytest.param(timedelta(seconds=90, microseconds=1), WorkerPhase.OFFLINE, id="just-over-90s"),
        pytest.param(timedelta(days=1), WorkerPhase.OFFLINE, id="a-day"),
    ],
)
def test_phase_is_offline_strictly_after_three_intervals(since_heartbeat: timedelta, phase: WorkerPhase) -> None:
    assert liveness.phase(wkr("w", heartbeat=T0), T0 + since_heartbeat) is phase


def test_a_worker_that_never_heartbeat_is_offline() -> None:
    assert liveness.phase(wkr("w", heartbeat=None), T0) is WorkerPhase.OFFLINE


def ready(status: bool, since: datetime) -> Worker:
    """A worker silent for an hour whose Ready condition is `status` since `since`."""
    reason = "WorkerOnline" if status else "HeartbeatMissed"
    return Worker.model_validate(
        {
            "metadata": {"name": "w"},
            "spec": {"workPool": "p"},
            "status": {
                "lastHeartbeatTime": timestamp(at(hours=-1)),
                "conditions": [condition("Ready", status, reason, "", since)],
            },
        }
    )


def test_offline_since_is_when_ready_turned_false() -> None:
    assert liveness.offline_since(ready(False, at(minutes=-3))) == at(minutes=-3)
    assert liveness.offline_since(ready(True, at(minutes=-3))) is None
    assert liveness.offline_since(wkr("w")) is None


@pytest.mark.parametrize(
    ("ttl", "offline_for", "expired"),
    [
        pytest.param(None, timedelta(days=30), False, id="no-ttl-keeps-workers"),
        pytest.param(60, timedelta(seconds=59, microseconds=999_999), False, id="just-under"),
        pytest.param(60, timedelta(seconds=60), True, id="exactly-ttl"),
        pytest.param(60, timedelta(hours=1), True, id="long-past"),
    ],
)
def test_an_offline_worker_expires_after_its_ttl(ttl: int | None, offline_for: timedelta, expired: bool) -> None:
    assert liveness.expired(ready(False, T0), ttl, T0 + offline_for) is expired


def test_a_worker_without_ready_false_never_expires() -> None:
    assert not liveness.expired(ready(True, T0), 60, at(hours=1))
    assert not liveness.expired(wkr("w", heartbeat=None), 60, at(hours=1))


def test_a_worker_that_heartbeats_again_has_not_expired() -> None:
    came_back = wkr("w", heartbeat=at(hours=2), offline_since=T0)
    assert liveness.phase(came_back, at(hours=2)) is WorkerPhase.ONLINE
    assert not liveness.expired(came_back, 3600, at(hours=2))


def test_latest_heartbeat() -> None:
    workers = [wkr("a", heartbeat=at(seconds=3)), wkr("b", heartbeat=None), wkr("c", heartbeat=at(seconds=-9))]
    assert liveness.latest_heartbeat(workers) == at(seconds=3)
    assert liveness.latest_heartbeat([wkr("b", heartbeat=None)]) is None
    assert liveness.latest_heartbeat([]) is None


@pytest.mark.parametrize(
    ("current", "heartbeat", "expected"),
    [
        pytest.param(None, None, None, id="never-polled"),
        pytest.param(None, at(seconds=1), at(seconds=1), id="first-poll"),
        pytest.param(T0, None, T0, id="no-heartbeat-keeps-it"),
        pytest.param(T0, at(seconds=29), T0, id="within-30s"),
        pytest.param(T0, at(seconds=30), at(seconds=30), id="after-30s"),
        pytest.param(T0, at(seconds=-40), T0, id="older-heartbeat-keeps-it"),
    ],
)
def test_last_polled_moves_at_most_every_30s(
    current: datetime | None, heartbeat: datetime | None, expected: datetime | None
) -> None:
    assert liveness.last_polled(current, heartbeat) == expected
