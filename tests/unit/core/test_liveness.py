"""Worker liveness (core/liveness.py): Prefect's 3 × interval rule on the operator's clock, the
steps before a slot is taken back, Offline since when, TTL, lastPolled.

Aspects: the silent boundary (strict, per interval, from when a heartbeat was *seen*); sightings
(a skewed worker clock does not matter); the judgement (suspect → confirmed → written Offline →
lost; gone workers; the observer suspected when many fall silent at once); when an Offline worker
may be deleted; the newest heartbeat; how often a queue's lastPolled moves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.builders import T0, at
from tests.unit.core.run_support import bound_run, condition, pool_state, wkr, wp
from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.states import StateType
from workpools.api.worker import Worker, WorkerPhase
from workpools.core import liveness
from workpools.core.snapshot import PoolState, Sighting


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [pytest.param(None, 30, id="default"), pytest.param(1, 1, id="1s"), pytest.param(45, 45, id="45s")],
)
def test_heartbeat_interval(interval: int | None, seconds: int) -> None:
    assert liveness.heartbeat_interval(wkr("w", interval=interval)) == timedelta(seconds=seconds)


def seen(at_: datetime | None, interval: int = 30, heartbeat: datetime | None = T0) -> Sighting:
    return Sighting(heartbeat, at_, timedelta(seconds=interval))


def test_silent_three_intervals_after_the_heartbeat_was_seen() -> None:
    assert liveness.offline_at(seen(T0)) == at(seconds=90)
    assert liveness.offline_at(seen(T0, interval=7)) == at(seconds=21)
    assert liveness.offline_at(seen(None)) is None
    assert liveness.offline_at(None) is None


@pytest.mark.parametrize(
    ("since_seen", "alive"),
    [
        pytest.param(timedelta(0), True, id="just-seen"),
        pytest.param(timedelta(seconds=89), True, id="89s"),
        pytest.param(timedelta(seconds=90), True, id="exactly-90s"),
        pytest.param(timedelta(seconds=90, microseconds=1), False, id="just-over-90s"),
        pytest.param(timedelta(days=1), False, id="a-day"),
    ],
)
def test_alive_strictly_until_three_intervals(since_seen: timedelta, alive: bool) -> None:
    assert liveness.alive(seen(T0), T0 + since_seen) is alive


def test_a_worker_never_seen_beating_is_not_alive() -> None:
    assert not liveness.alive(seen(None), T0)
    assert not liveness.alive(None, T0)


# --- sightings: the operator's clock, not the worker's ---------------------------------------


def test_first_sight_of_a_beating_worker_gives_it_three_intervals_from_now() -> None:
    sighting = liveness.sight(None, wkr("w", heartbeat=at(hours=-5), interval=10), T0)
    assert sighting == seen(T0, interval=10, heartbeat=at(hours=-5))


def test_first_sight_of_a_worker_judged_offline_keeps_it_offline_until_it_beats() -> None:
    worker = wkr("w", heartbeat=at(minutes=-5)).model_copy(deep=True)
    worker.status.phase = WorkerPhase.OFFLINE
    first = liveness.sight(None, worker, T0)
    assert first.seen_at is None
    assert liveness.sight(first, worker, at(seconds=5)).seen_at is None  # same heartbeat: still silent
    worker.status.last_heartbeat_time = at(minutes=-4)
    assert liveness.sight(first, worker, at(seconds=6)).seen_at == at(seconds=6)


def test_a_new_heartbeat_is_seen_now_whatever_the_worker_clock_says() -> None:
    # The worker's clock is an hour behind: its heartbeats look ancient, yet each one is new.
    first = liveness.sight(None, wkr("w", heartbeat=at(hours=-1)), T0)
    later = liveness.sight(first, wkr("w", heartbeat=at(hours=-1, seconds=30)), at(seconds=30))
    assert later.seen_at == at(seconds=30)
    assert liveness.alive(later, at(seconds=100))


def test_an_unchanged_heartbeat_keeps_the_moment_it_was_first_seen() -> None:
    first = liveness.sight(None, wkr("w", heartbeat=T0), T0)
    assert liveness.sight(first, wkr("w", heartbeat=T0), at(minutes=10)).seen_at == T0


# --- judgement: silent, confirmed, written Offline, lost ------------------------------------


def written(name: str, phase: WorkerPhase | None, heartbeat: datetime = T0) -> Worker:
    worker = wkr(name, heartbeat=heartbeat).model_copy(deep=True)
    worker.status.phase = phase
    return worker


def state_of(
    workers: list[Worker],
    now: datetime,
    *,
    confirmed: set[str] = frozenset(),
    runs: list[FlowRun] = (),  # type: ignore[assignment]
) -> PoolState:
    sightings = {w.metadata.name: seen(w.status.last_heartbeat_time) for w in workers}
    return PoolState(
        name="p",
        pool=wp(),
        queues=[],
        workers=workers,
        runs=list(runs),
        now=now,
        sightings=sightings,
        confirmed_silent=frozenset(confirmed),
    )


def test_a_silent_online_worker_is_only_a_suspect_until_a_read_confirms_it() -> None:
    workers = [written("w", WorkerPhase.ONLINE), written("a", WorkerPhase.ONLINE, at(minutes=5))]
    silent = liveness.judge(state_of(workers, at(minutes=2)))
    assert (silent.online, silent.suspects, silent.offline, silent.lost) == ({"a"}, {"w"}, set(), set())
    confirmed = liveness.judge(state_of(workers, at(minutes=2), confirmed={"w"}))
    assert (confirmed.suspects, confirmed.offline, confirmed.lost) == (set(), {"w"}, set())


def test_only_a_worker_written_offline_silent_one_interval_more_is_lost() -> None:
    # Heartbeat seen at T0, interval 30 s: silent from 90 s; written Offline; lost from 120 s.
    offline = [written("w", WorkerPhase.OFFLINE)]
    assert liveness.judge(state_of(offline, at(seconds=119))).lost == set()
    assert liveness.judge(state_of(offline, at(seconds=120))).lost == {"w"}
    came_back = liveness.judge(state_of([written("w", WorkerPhase.OFFLINE, at(minutes=2))], at(minutes=2)))
    assert (came_back.online, came_back.lost) == ({"w"}, set())


def test_a_bound_worker_gone_from_the_api_is_lost_once_a_read_confirms_it() -> None:
    run = bound_run(StateType.RUNNING, worker="gone")
    assert liveness.judge(state_of([], T0, runs=[run])).suspects == {"gone"}
    assert liveness.judge(state_of([], T0, runs=[run], confirmed={"gone"})).lost == {"gone"}


def test_many_workers_silent_at_once_suspect_the_observer() -> None:
    workers = [written(n, WorkerPhase.ONLINE) for n in "abc"] + [written("d", WorkerPhase.ONLINE, at(minutes=5))]
    judgement = liveness.judge(state_of(workers, at(minutes=2), confirmed={"a", "b", "c"}))
    assert "3 of 4 workers fell silent together" in judgement.observer_suspected
    assert (judgement.offline, judgement.lost) == ({"a", "b", "c"}, set())  # their phase is what we see
    d_alive = written("d", WorkerPhase.ONLINE, at(hours=5))
    offline = [written(n, WorkerPhase.OFFLINE) for n in "abc"]
    assert liveness.judge(state_of([*offline, d_alive], at(hours=5))).lost == set()  # while they stay silent
    one_back = [*offline[:2], written("c", WorkerPhase.OFFLINE, at(hours=5)), d_alive]
    assert liveness.judge(state_of(one_back, at(hours=5))).lost == {"a", "b"}  # one beats again: two of four
    apart = [offline[0], offline[1], written("c", WorkerPhase.OFFLINE, at(minutes=-2)), workers[3]]
    assert liveness.judge(state_of(apart, at(minutes=3))).lost == {"a", "b", "c"}  # silent minutes apart: no wave


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
    assert is_expired(ready(False, T0), ttl, T0 + offline_for) is expired


def test_a_worker_without_ready_false_never_expires() -> None:
    assert not is_expired(ready(True, T0), 60, at(hours=1))
    assert not is_expired(wkr("w", heartbeat=None), 60, at(hours=1))


def test_a_worker_that_heartbeats_again_has_not_expired() -> None:
    came_back = wkr("w", heartbeat=at(hours=2), offline_since=T0)
    assert not is_expired(came_back, 3600, at(hours=2))


def is_expired(worker: Worker, ttl: int | None, now: datetime) -> bool:
    """As the pool's pass decides it, the worker's phase written by earlier passes."""
    state = pool_state(workers=[worker], now=now)
    return liveness.expired(state.workers[0], liveness.judge(state), ttl, now)


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
