"""Worker liveness (core/liveness.py): Prefect's 3 × interval rule on the operator's clock, the
steps before a slot is taken back, Offline since when, TTL, lastPolled.

Aspects: the silent boundary (strict, per interval, from when a heartbeat was *seen*); sightings
(a skewed worker clock does not matter); the judgement (suspect → confirmed → written Offline →
lost; gone workers; a failed read retried; after a restart; the observer suspected when many fall
silent at once, and what "at once" means); when an Offline worker may be deleted; the newest
heartbeat; how often a queue's lastPolled moves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.builders import T0, at
from tests.unit.core.run_support import bound_run, condition, pool_state, wkr, wp
from workpools.api.base import timestamp
from workpools.api.flowrun import FlowRun
from workpools.api.phases import WorkerPhase
from workpools.api.states import StateType
from workpools.api.worker import Worker
from workpools.core import liveness
from workpools.core.deadlines import next_deadline
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
    sighting = liveness.sight(None, wkr("w", heartbeat=T0), T0)
    for minutes in (1, 2, 10):  # each watch event or direct read showing the same heartbeat
        sighting = liveness.sight(sighting, wkr("w", heartbeat=T0), at(minutes=minutes))
    assert sighting == seen(T0)
    assert not liveness.alive(sighting, at(minutes=10))


def test_a_changed_heartbeat_interval_counts_at_once_from_the_heartbeat_already_seen() -> None:
    first = liveness.sight(None, wkr("w", heartbeat=T0, interval=30), T0)
    shorter = liveness.sight(first, wkr("w", heartbeat=T0, interval=10), at(seconds=5))
    assert shorter == seen(T0, interval=10)
    assert not liveness.alive(shorter, at(seconds=31))  # 3 × 10 s, not 3 × 30 s, after it was seen


# --- judgement: silent, confirmed, written Offline, lost ------------------------------------


def written(
    name: str,
    phase: WorkerPhase | None,
    heartbeat: datetime = T0,
    *,
    interval: int | None = None,
    offline_since: datetime | None = None,
) -> Worker:
    worker = wkr(name, heartbeat=heartbeat, interval=interval, offline_since=offline_since).model_copy(deep=True)
    worker.status.phase = phase
    return worker


def state_of(
    workers: list[Worker],
    now: datetime,
    *,
    confirmed: set[str] = frozenset(),
    runs: list[FlowRun] = (),  # type: ignore[assignment]
    sightings: dict[str, Sighting] | None = None,
) -> PoolState:
    """Each worker's heartbeat seen the moment it was written, unless `sightings` says otherwise."""
    seen_beating = {w.metadata.name: sight_written(w) for w in workers}
    return PoolState(
        name="p",
        pool=wp(),
        queues=[],
        workers=workers,
        runs=list(runs),
        now=now,
        sightings={**seen_beating, **(sightings or {})},
        confirmed_silent=frozenset(confirmed),
    )


def sight_written(worker: Worker) -> Sighting:
    beat = worker.status.last_heartbeat_time
    return Sighting(beat, beat, liveness.heartbeat_interval(worker))


def test_a_silent_online_worker_is_only_a_suspect_until_a_read_confirms_it() -> None:
    workers = [written("w", WorkerPhase.ONLINE), written("a", WorkerPhase.ONLINE, at(minutes=5))]
    silent = liveness.judge(state_of(workers, at(minutes=2)))
    assert (silent.online, silent.suspects, silent.offline, silent.lost) == ({"a"}, {"w"}, set(), set())
    confirmed = liveness.judge(state_of(workers, at(minutes=2), confirmed={"w"}))
    assert (confirmed.suspects, confirmed.offline, confirmed.lost) == (set(), {"w"}, set())


def test_only_a_worker_written_offline_silent_one_interval_more_is_lost() -> None:
    # Heartbeat seen at T0, interval 30 s: silent from 90 s; written Offline; lost from 120 s.
    offline = [written("w", WorkerPhase.OFFLINE)]
    waiting, settled = (liveness.judge(state_of(offline, at(seconds=s))) for s in (119, 120))
    assert (waiting.offline, waiting.lost) == ({"w"}, set())  # stays Offline meanwhile
    assert (settled.offline, settled.lost) == ({"w"}, {"w"})
    came_back = liveness.judge(state_of([written("w", WorkerPhase.OFFLINE, at(minutes=2))], at(minutes=2)))
    assert (came_back.online, came_back.lost) == ({"w"}, set())


def test_a_bound_worker_gone_from_the_api_is_lost_once_a_read_confirms_it() -> None:
    run = bound_run(StateType.RUNNING, worker="gone")
    assert liveness.judge(state_of([], T0, runs=[run])).suspects == {"gone"}
    assert liveness.judge(state_of([], T0, runs=[run], confirmed={"gone"})).lost == {"gone"}


def test_a_gone_worker_seen_beating_is_lost_one_interval_after_its_silence_too() -> None:
    # Seen beating at T0 with a 10 s interval, then deleted: silent from 30 s, lost from 40 s.
    run, sighting = bound_run(StateType.RUNNING, worker="gone"), {"gone": seen(T0, interval=10)}
    lost = [
        liveness.judge(state_of([], at(seconds=s), runs=[run], sightings=sighting, confirmed={"gone"})).lost
        for s in (39, 40)
    ]
    assert lost == [set(), {"gone"}]


def test_after_a_restart_a_worker_found_offline_is_silent_since_ready_turned_false() -> None:
    # The operator never saw it beat (it was Offline at first sight); Ready=False 10 s ago, 30 s interval.
    worker = written("w", WorkerPhase.OFFLINE, at(minutes=-5), offline_since=at(seconds=-10))
    not_seen = {"w": liveness.sight(None, worker, T0)}
    lost = [liveness.judge(state_of([worker], at(seconds=s), sightings=not_seen)).lost for s in (19, 20)]
    assert lost == [set(), {"w"}]
    # Without a Ready condition nothing says since when: silent long enough already.
    unknown = written("w", WorkerPhase.OFFLINE, at(minutes=-5))
    assert liveness.judge(state_of([unknown], T0, sightings=not_seen)).lost == {"w"}


def test_a_suspect_whose_read_failed_is_read_again_an_interval_later() -> None:
    # Seen at T0 with a 10 s interval: silent from 30 s, its silence settled at 40 s; not confirmed at 60 s.
    state = state_of([written("w", WorkerPhase.ONLINE, interval=10)], at(minutes=1))
    assert liveness.judge(state).suspects == {"w"}
    assert next_deadline(state) == at(minutes=1, seconds=10)
    # A bound worker gone from the API and never seen: the default 30 s interval.
    gone = state_of([], at(minutes=1), runs=[bound_run(StateType.RUNNING, worker="gone")])
    assert liveness.judge(gone).suspects == {"gone"}
    assert next_deadline(gone) == at(minutes=1, seconds=30)


def test_many_workers_silent_at_once_suspect_the_observer() -> None:
    workers = [written(n, WorkerPhase.ONLINE) for n in "abc"] + [written("d", WorkerPhase.ONLINE, at(minutes=5))]
    judgement = liveness.judge(state_of(workers, at(minutes=2), confirmed={"a", "b", "c"}))
    assert judgement.observer_suspected == (
        "3 of 4 workers fell silent together: not reclaiming their runs "
        "(the operator or its network may be the one cut off; delete the Workers to release them)"
    )
    assert (judgement.offline, judgement.lost) == ({"a", "b", "c"}, set())  # their phase is what we see
    d_alive = written("d", WorkerPhase.ONLINE, at(hours=5))
    offline = [written(n, WorkerPhase.OFFLINE) for n in "abc"]
    assert liveness.judge(state_of([*offline, d_alive], at(hours=5))).lost == set()  # while they stay silent
    one_back = [*offline[:2], written("c", WorkerPhase.OFFLINE, at(hours=5)), d_alive]
    assert liveness.judge(state_of(one_back, at(hours=5))).lost == {"a", "b"}  # one beats again: two of four
    apart = [offline[0], offline[1], written("c", WorkerPhase.OFFLINE, at(minutes=-2)), workers[3]]
    assert liveness.judge(state_of(apart, at(minutes=3))).lost == {"a", "b", "c"}  # silent minutes apart: no wave


def test_two_of_three_workers_silent_together_are_a_wave() -> None:
    workers = [written(n, WorkerPhase.OFFLINE) for n in "ab"] + [written("c", WorkerPhase.ONLINE, at(minutes=5))]
    judgement = liveness.judge(state_of(workers, at(minutes=5)))
    assert judgement.observer_suspected.startswith("2 of 3 workers fell silent together")
    assert judgement.lost == set()


@pytest.mark.parametrize(
    ("apart", "wave"),
    [
        pytest.param(timedelta(seconds=60), True, id="two-intervals-apart"),
        pytest.param(timedelta(seconds=60, milliseconds=1), False, id="just-over-two-intervals-apart"),
    ],
)
def test_a_wave_is_silences_at_most_two_intervals_apart(apart: timedelta, wave: bool) -> None:
    # 30 s intervals: each beat at its own moment, so workers that die at once fall silent up to
    # an interval apart; two intervals is the margin. "c" stays alive; "a" and "b" are written Offline.
    workers = [
        written("a", WorkerPhase.OFFLINE, T0),
        written("b", WorkerPhase.OFFLINE, T0 + apart),
        written("c", WorkerPhase.ONLINE, at(minutes=5)),
    ]
    judgement = liveness.judge(state_of(workers, at(minutes=5)))
    assert bool(judgement.observer_suspected) is wave
    assert judgement.lost == (set() if wave else {"a", "b"})


def test_a_worker_that_never_beat_joins_no_wave() -> None:
    # "a" never beat and has no Ready=False: when it fell silent is unknown, so it cannot have
    # fallen silent together with "b". Placing it at a moment relative to now made the wave, and
    # with it b's reclaim, come and go as the clock moved (hypothesis found it).
    never = written("a", WorkerPhase.OFFLINE, None)  # type: ignore[arg-type]
    b = written("b", WorkerPhase.OFFLINE, None, offline_since=T0 - timedelta(seconds=30))  # type: ignore[arg-type]
    c = written("c", WorkerPhase.ONLINE, T0)
    for now in (T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=90), T0 + timedelta(seconds=150)):
        judgement = liveness.judge(state_of([never, b, c], now))
        assert judgement.observer_suspected == ""
        assert judgement.lost == {"a", "b"}


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


# -- a reader's judgement (`workpools run why`) ------------------------------------------------------


def test_a_reader_counts_each_heartbeat_as_seen_at_its_stamp_and_judges_by_prefects_rule() -> None:
    workers = [
        wkr("fresh", heartbeat=at(seconds=-90), interval=30),  # exactly 3 intervals: still alive
        wkr("stale", heartbeat=at(seconds=-91), interval=30),
        wkr("ahead", heartbeat=at(minutes=5)),  # a clock ahead of ours counts as seen now, no later
        wkr("never", heartbeat=None),
    ]
    seen = liveness.stamped_sightings(workers, T0)
    assert seen["ahead"] == Sighting(at(minutes=5), T0, timedelta(seconds=30))
    assert seen["never"] == Sighting(None, None, timedelta(seconds=30))
    state = PoolState("p", wp(), [], workers, [], T0, sightings=seen)
    assert liveness.judge(state).online == {"fresh", "ahead"}
