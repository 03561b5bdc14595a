"""Flow control (DESIGN §8, issue 14 items 1-3): limits by time window, per-key limits, start rates.

The pure rules of core/flowcontrol.py at exact instants, then admission with them: examples of
each, and properties over random pools and random sequences of passes (no limit of any kind is
ever exceeded, windows are honoured at every instant, a start rate holds over every interval,
every hold reason is true and stable).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import T0, at, pool, queue, run, worker
from workpools.api.flowcontrol import KeyLimit, LimitWindow, StartRate
from workpools.api.states import SLOT_HOLDING, StateType
from workpools.core import flowcontrol
from workpools.core.admission import Admission, HoldReason, admit
from workpools.core.selection import admission_order
from workpools.core.snapshot import FlowControl, PoolView, QueueView, RunView, WorkerView

S = StateType
H = HoldReason
PROPERTY = settings(deadline=None)


def daily(start: str, end: str, limit: int, zone: str | None = None, name: str | None = None) -> LimitWindow:
    return LimitWindow.model_validate({"from": start, "to": end, "limit": limit, "timeZone": zone, "name": name})


def cron(expression: str, seconds: int, limit: int, zone: str | None = None) -> LimitWindow:
    return LimitWindow(cron=expression, duration_seconds=seconds, limit=limit, time_zone=zone)


def utc(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


# --- windows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "now", "open_"),
    [
        (daily("09:00", "17:00", 1), utc(9), True),
        (daily("09:00", "17:00", 1), utc(8, 59), False),
        (daily("09:00", "17:00", 1), utc(17), False),  # `to` is exclusive
        (daily("22:00", "06:00", 1), utc(23), True),  # over midnight
        (daily("22:00", "06:00", 1), utc(5, 59), True),
        (daily("22:00", "06:00", 1), utc(6), False),
        (daily("09:00", "17:00", 1, "Europe/Berlin"), utc(8), True),  # 09:00 in Berlin (CET, +1)
        (daily("09:00", "17:00", 1, "Europe/Berlin"), utc(16), False),
        (cron("0 * * * *", 600, 1), utc(10, 9), True),
        (cron("0 * * * *", 600, 1), utc(10, 10), False),
        (cron("0 9 * * 1-5", 3600, 1), datetime(2026, 1, 3, 9, 30, tzinfo=UTC), False),  # a Saturday
        (cron("0 9 * * 1-5", 3600, 1), datetime(2026, 1, 5, 9, 30, tzinfo=UTC), True),  # a Monday
        (cron("@daily", 3600, 1, "America/New_York"), utc(5, 30), True),  # midnight in New York
    ],
)
def test_window_open(window: LimitWindow, now: datetime, open_: bool) -> None:
    assert flowcontrol.window_open(window, now) is open_


def test_the_lowest_open_window_sets_the_limit_else_the_concurrency_limit() -> None:
    windows = [daily("00:00", "12:00", 5, name="morning"), daily("06:00", "18:00", 2, name="day")]
    assert flowcontrol.effective_limit(10, windows, utc(3)) == flowcontrol.EffectiveLimit(5, windows[0])
    assert flowcontrol.effective_limit(10, windows, utc(7)) == flowcontrol.EffectiveLimit(2, windows[1])
    assert flowcontrol.effective_limit(10, windows, utc(19)) == flowcontrol.EffectiveLimit(10)
    assert flowcontrol.effective_limit(None, windows, utc(19)).describe() == "∞"
    assert flowcontrol.effective_limit(None, windows, utc(7)).describe() == "2 in window day"


def test_a_window_without_a_name_is_named_by_its_times() -> None:
    assert daily("22:00", "06:00", 1, "Europe/Berlin").label() == "22:00-06:00 Europe/Berlin"
    assert cron("0 9 * * 1-5", 3600, 1).label() == "'0 9 * * 1-5' for 3600s UTC"


def test_the_next_window_change_is_the_next_open_or_close() -> None:
    windows = [daily("22:00", "06:00", 1), cron("30 * * * *", 60, 1)]
    assert flowcontrol.next_window_change(windows, utc(21, 0)) == utc(21, 30)
    assert flowcontrol.next_window_change(windows, utc(21, 30)) == utc(21, 31)
    assert flowcontrol.next_window_change(windows, utc(21, 45)) == utc(22, 0)
    assert flowcontrol.next_window_change([daily("09:00", "17:00", 1, "Europe/Berlin")], utc(18)) == utc(8, day=2)
    assert flowcontrol.next_window_change([], utc(18)) is None


@PROPERTY
@given(st.integers(min_value=0, max_value=3 * 24 * 60), st.sampled_from([None, "Europe/Berlin", "Asia/Kolkata"]))
def test_no_window_changes_between_now_and_its_next_change(minutes: int, zone: str | None) -> None:
    windows = [daily("22:00", "06:30", 1, zone), cron("15 */3 * * *", 1800, 2, zone)]
    now = T0 + timedelta(minutes=minutes)
    change = flowcontrol.next_window_change(windows, now)
    assert change is not None
    assert change > now
    before = [flowcontrol.window_open(w, now) for w in windows]
    for step in (change - now) / 3, (change - now) * 2 / 3, change - now - timedelta(microseconds=1):
        assert [flowcontrol.window_open(w, now + step) for w in windows] == before


# --- keys ---------------------------------------------------------------------------------------


def test_a_key_is_a_label_or_a_parameter_value_and_a_run_without_it_has_none() -> None:
    team, dataset = KeyLimit(label="team", limit=1), KeyLimit(parameter="dataset", limit=1)
    assert flowcontrol.key_value(team, {"team": "data"}, {}) == "data"
    assert flowcontrol.key_value(team, {}, {"team": "data"}) is None
    assert flowcontrol.key_value(dataset, {}, {"dataset": "sales"}) == '"sales"'
    assert flowcontrol.key_value(dataset, {}, {"dataset": 1}) != flowcontrol.key_value(dataset, {}, {"dataset": "1"})
    assert flowcontrol.key_value(dataset, {}, {"dataset": {"b": 1, "a": 2}}) == '{"a":2,"b":1}'
    assert flowcontrol.key_value(dataset, {}, {"dataset": None}) is None


# --- start rates --------------------------------------------------------------------------------


def test_a_start_rate_starts_full_and_refills_at_its_rate() -> None:
    rate = StartRate(per_minute=2, burst=3)
    assert flowcontrol.starts_available([], rate, T0) == 3
    grants = [T0, T0, T0]
    assert flowcontrol.starts_available(grants, rate, T0) == 0
    assert flowcontrol.starts_available(grants, rate, at(seconds=29, microseconds=999_999)) == 0
    assert flowcontrol.starts_available(grants, rate, at(seconds=30)) == 1
    assert flowcontrol.next_start(grants, rate, T0) == at(seconds=30)
    assert flowcontrol.starts_available(grants, rate, at(minutes=10)) == 3
    assert flowcontrol.next_start(grants, rate, at(minutes=10)) == at(minutes=10)


def test_old_grants_matter_when_later_ones_were_dense() -> None:
    # The bucket is not "full again after burst/rate": it emptied at -30 s and got one token back by 0.
    rate = StartRate(per_minute=2, burst=2)
    grants = [at(seconds=-30), at(seconds=-30), at(seconds=0)]
    assert flowcontrol.starts_available(grants, rate, at(seconds=1)) == 0
    assert flowcontrol.next_start(grants, rate, at(seconds=1)) == at(seconds=30)


@dataclass(frozen=True)
class Sim:
    rate: StartRate
    instants: list[datetime]
    wanted: list[int]


@PROPERTY
@given(
    st.builds(StartRate, per_minute=st.integers(1, 120), burst=st.integers(1, 5)),
    st.lists(st.tuples(st.integers(0, 90_000_000), st.integers(0, 6)), min_size=1, max_size=25),
)
def test_grants_taken_as_allowed_never_exceed_the_bucket_over_any_interval(
    rate: StartRate, steps: list[tuple[int, int]]
) -> None:
    now, grants = T0, []
    for gap_us, wanted in steps:
        now += timedelta(microseconds=gap_us)
        take = min(wanted, flowcontrol.starts_available(grants, rate, now))
        grants += [now] * take
        if take < wanted:  # the next instant with a token has one, and not an instant before
            ready = flowcontrol.next_start(grants, rate, now)
            assert flowcontrol.starts_available(grants, rate, ready) >= 1
            if ready > now:
                assert flowcontrol.starts_available(grants, rate, ready - timedelta(microseconds=1)) == 0
    _assert_within_rate(grants, rate)


def _assert_within_rate(grants: Sequence[datetime], rate: StartRate) -> None:
    """Every interval [a, b] between two grants holds at most burst + per_minute × (b − a) grants."""
    times = sorted(grants)
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            elapsed_us = (times[j] - first) // timedelta(microseconds=1)
            count = sum(1 for t in times if first <= t <= times[j])
            assert count <= rate.burst + rate.per_minute * elapsed_us // 60_000_000, (first, times[j], count)


# --- admission with flow control: examples ------------------------------------------------------


def names(result: Admission) -> tuple[list[str], dict[str, tuple[HoldReason, str]]]:
    return [g.run.name for g in result.grants], {h.run.name: (h.reason, h.message) for h in result.holds}


def holding(name: str, *, queue: str = "q", labels: dict[str, str] | None = None, acquired: datetime = T0) -> RunView:
    return run(name, queue=queue, state=S.RUNNING, worker="w", acquired=acquired, labels=labels)


def test_an_open_window_lowers_the_limit_without_stopping_running_runs() -> None:
    night = daily("11:00", "13:00", 1, name="noon")
    flow = FlowControl(limit_schedule=(night,))
    runs = [holding("a"), holding("b"), run("r")]
    result = admit("p", pool(limit=5, flow=flow), [queue()], runs, [worker("w")], now=T0)
    assert names(result) == ([], {"r": (H.POOL_LIMIT_REACHED, "pool p has no open slot (limit 1 in window noon)")})
    later = admit("p", pool(limit=5, flow=flow), [queue()], runs, [worker("w")], now=at(hours=1))
    assert names(later) == (["r"], {})


def test_a_queue_window_names_the_queue_and_window() -> None:
    flow = FlowControl(limit_schedule=(daily("12:00", "12:30", 0),))
    result = admit("p", pool(), [queue(flow=flow)], [run("r")], [worker("w")], now=T0)
    message = "queue q has no open slot (limit 0 in window 12:00-12:30 UTC)"
    assert names(result)[1] == {"r": (H.QUEUE_LIMIT_REACHED, message)}


def test_per_key_limits_count_every_grant_of_the_pass_and_runs_without_the_key_go_free() -> None:
    flow = FlowControl(per_key=(KeyLimit(parameter="dataset", limit=2),))
    runs = [
        holding("a", labels={}),
        run("r1", scheduled=at(seconds=-5)),
        run("r2", scheduled=at(seconds=-4)),
        run("r3", scheduled=at(seconds=-3)),
        run("r4", scheduled=at(seconds=-2)),
    ]
    runs = [
        replace(r, parameters={"dataset": "sales"}) if r.name in {"a", "r1", "r2"} else r for r in runs
    ]  # a holds one sales slot; r1 takes the other; r2 waits; r3 and r4 have no dataset
    result = admit("p", pool(flow=flow), [queue()], runs, [worker("w")], now=T0)
    message = 'pool p runs at most 2 at once per parameter dataset; dataset="sales" has no room'
    assert names(result) == (["r1", "r3", "r4"], {"r2": (H.KEY_LIMIT_REACHED, message)})


def test_a_start_rate_counts_finished_runs_grant_times_and_this_pass_grants() -> None:
    flow = FlowControl(start_rate=StartRate(per_minute=60, burst=2))
    done = run("done", state=S.COMPLETED, granted=at(seconds=-0.5))
    runs = [run("r1", scheduled=at(seconds=-3)), run("r2", scheduled=at(seconds=-2))]
    result = admit("p", pool(flow=flow), [queue()], runs, [worker("w")], now=T0, history=[done])
    assert names(result) == (
        ["r1"],
        {"r2": (H.START_RATE_LIMITED, "pool p starts at most 60 runs a minute (burst 2): none available now")},
    )


# --- admission with flow control: properties ----------------------------------------------------

QUEUES = ("q0", "q1")
TEAMS = st.sampled_from([None, "a", "a", "b"])
WINDOWS = st.lists(
    st.builds(
        daily,
        st.sampled_from(["00:00", "06:00", "12:00", "18:00"]),
        st.sampled_from(["03:00", "09:00", "15:00", "21:00"]),
        st.integers(0, 3),
        st.sampled_from([None, "Asia/Kolkata"]),
    )
    | st.builds(cron, st.sampled_from(["*/10 * * * *", "0 */4 * * *"]), st.integers(60, 7200), st.integers(0, 3)),
    max_size=2,
)
FLOWS = st.builds(
    FlowControl,
    limit_schedule=WINDOWS.map(tuple),
    per_key=st.lists(
        st.builds(KeyLimit, label=st.just("team"), limit=st.integers(0, 2))
        | st.builds(KeyLimit, parameter=st.just("dataset"), limit=st.integers(0, 2)),
        max_size=2,
    ).map(tuple),
    start_rate=st.none() | st.builds(StartRate, per_minute=st.integers(1, 6), burst=st.integers(1, 3)),
)
LIMITS = st.none() | st.integers(0, 4)
GAPS = st.sampled_from([1, 5, 10, 20, 30]) | st.integers(1, 3 * 3600)
"""Seconds between passes: often shorter than a start token, sometimes across window changes."""


@dataclass(frozen=True)
class World:
    pool: PoolView
    queues: list[QueueView]
    runs: list[RunView]
    workers: list[WorkerView]
    now: datetime

    def admit(self, runs: Sequence[RunView] | None = None, now: datetime | None = None) -> Admission:
        live = [r for r in (self.runs if runs is None else runs) if r.state in (*SLOT_HOLDING, S.SCHEDULED)]
        done = [r for r in (self.runs if runs is None else runs) if r not in live]
        return admit("p", self.pool, self.queues, live, self.workers, now=now or self.now, history=done)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    queues = [queue(name, priority=i + 1, limit=draw(LIMITS), flow=draw(FLOWS)) for i, name in enumerate(QUEUES)]
    now = T0 + timedelta(minutes=draw(st.integers(0, 2 * 24 * 60)), seconds=draw(st.integers(0, 59)))
    runs = []
    for index in range(draw(st.integers(1, 14))):
        state = draw(st.sampled_from([S.SCHEDULED] * 4 + [S.RUNNING, S.PENDING, S.COMPLETED]))
        granted = None if state is S.SCHEDULED else now - timedelta(seconds=draw(st.integers(0, 300)))
        team, dataset = draw(TEAMS), draw(TEAMS)
        runs.append(
            run(
                f"r{index:02d}",
                queue=draw(st.sampled_from(QUEUES)),
                state=state,
                scheduled=now - timedelta(seconds=draw(st.integers(0, 5))),
                worker="w0" if state in SLOT_HOLDING else None,
                acquired=granted if state in SLOT_HOLDING else None,
                granted=granted,
                labels={"team": team} if team else {},
                parameters={"dataset": dataset} if dataset else {},
            )
        )
    workers = [worker("w0"), worker("w1", limit=draw(st.none() | st.integers(1, 3)))]
    return World(pool(limit=draw(LIMITS), flow=draw(FLOWS)), queues, runs, workers, now)


def _landed(world: World, result: Admission, now: datetime) -> list[RunView]:
    granted = {g.run.name: g.worker for g in result.grants}
    return [
        replace(r, state=S.PENDING, worker=granted[r.name], slot_acquired_at=now, granted_at=now)
        if r.name in granted
        else r
        for r in world.runs
    ]


def _scopes(world: World) -> list[tuple[str, int | None, FlowControl, str | None]]:
    """(scope, concurrency limit, flow control, queue name or None for the pool)."""
    return [("pool p", world.pool.concurrency_limit, world.pool.flow, None)] + [
        (f"queue {q.name}", q.concurrency_limit, q.flow, q.name) for q in world.queues
    ]


def _in(runs: Sequence[RunView], queue_name: str | None) -> list[RunView]:
    return [r for r in runs if queue_name is None or r.queue == queue_name]


@PROPERTY
@given(worlds())
def test_no_limit_of_any_kind_is_exceeded_by_a_grant(world: World) -> None:
    result = world.admit()
    after = _landed(world, result, world.now)
    granted = {g.run.name for g in result.grants}
    for _, base, flow, queue_name in _scopes(world):
        mine = _in(after, queue_name)
        holders = [r for r in mine if r.state in SLOT_HOLDING]
        new = [r for r in holders if r.name in granted]
        limit = flowcontrol.effective_limit(base, flow.limit_schedule, world.now).limit
        if limit is not None and new:
            assert len(holders) <= limit
        for rule in flow.per_key:
            counts = Counter(flowcontrol.key_value(rule, r.labels, r.parameters) for r in holders)
            for r in new:
                value = flowcontrol.key_value(rule, r.labels, r.parameters)
                if value is not None:
                    assert counts[value] <= rule.limit
        if flow.start_rate is not None and new:
            before = [t for r in _in(world.runs, queue_name) if (t := r.granted_at) is not None]
            assert len(new) <= flowcontrol.starts_available(before, flow.start_rate, world.now)


@PROPERTY
@given(worlds())
def test_every_flow_control_hold_is_true_after_the_grants_and_stable(world: World) -> None:
    result = world.admit()
    after = _landed(world, result, world.now)
    scopes = {scope: (base, flow, queue_name) for scope, base, flow, queue_name in _scopes(world)}
    for hold in result.holds:
        scope = hold.message.split(" runs ")[0].split(" starts ")[0].split(" has ")[0]
        if hold.reason in (H.KEY_LIMIT_REACHED, H.START_RATE_LIMITED, H.POOL_LIMIT_REACHED, H.QUEUE_LIMIT_REACHED):
            base, flow, queue_name = scopes[scope]
            mine = _in(after, queue_name)
            holders = [r for r in mine if r.state in SLOT_HOLDING]
        if hold.reason is H.KEY_LIMIT_REACHED:
            assert any(
                (value := flowcontrol.key_value(rule, hold.run.labels, hold.run.parameters)) is not None
                and sum(flowcontrol.key_value(rule, r.labels, r.parameters) == value for r in holders) >= rule.limit
                for rule in flow.per_key
            )
        elif hold.reason is H.START_RATE_LIMITED:
            assert flow.start_rate is not None
            times = [t for r in mine if (t := r.granted_at) is not None]
            assert flowcontrol.starts_available(times, flow.start_rate, world.now) == 0
        elif hold.reason in (H.POOL_LIMIT_REACHED, H.QUEUE_LIMIT_REACHED):
            limit = flowcontrol.effective_limit(base, flow.limit_schedule, world.now).limit
            assert limit is not None
            assert len(holders) >= limit
    again = world.admit(after)
    assert again.grants == []
    assert sorted((h.run.name, h.reason, h.message) for h in again.holds) == sorted(
        (h.run.name, h.reason, h.message) for h in result.holds
    )


@PROPERTY
@given(worlds(), st.lists(st.tuples(GAPS, st.integers(0, 3)), min_size=1, max_size=12))
def test_over_a_sequence_of_passes_windows_hold_at_every_instant_and_rates_over_every_interval(
    world: World, steps: list[tuple[int, int]]
) -> None:
    # Between passes time moves on (windows open and close) and some runs finish; every pass's
    # grants must fit the limits in force at its instant, and all grants together every rate.
    now, runs = world.now, list(world.runs)
    grant_log: dict[str | None, list[datetime]] = {None: [], **{q: [] for q in QUEUES}}
    for r in runs:
        if r.granted_at is not None:
            grant_log[None].append(r.granted_at)
            grant_log[r.queue].append(r.granted_at)
    for gap, finishing in steps:
        now += timedelta(seconds=gap)
        holders = [r for r in runs if r.state in SLOT_HOLDING]
        done = {r.name for r in holders[:finishing]}
        runs = [replace(r, state=S.COMPLETED, slot_acquired_at=None) if r.name in done else r for r in runs]
        world = replace(world, runs=runs, now=now)
        result = world.admit()
        runs = _landed(world, result, now)
        for g in result.grants:
            grant_log[None].append(now)
            grant_log[g.run.queue].append(now)
        for _, base, flow, queue_name in _scopes(world):
            limit = flowcontrol.effective_limit(base, flow.limit_schedule, now).limit
            mine = [r for r in _in(runs, queue_name) if r.state in SLOT_HOLDING]
            if limit is not None and any(g.run.queue == queue_name or queue_name is None for g in result.grants):
                assert len(mine) <= limit
    for _, _, flow, queue_name in _scopes(world):
        if flow.start_rate is not None:
            _assert_within_rate_from(grant_log[queue_name], flow.start_rate, world.runs, queue_name)


def _assert_within_rate_from(
    grants: list[datetime], rate: StartRate, initial: Sequence[RunView], queue_name: str | None
) -> None:
    # The world's initial grant history was drawn at random and may break the rate itself; only
    # the grants of the passes must respect it: every interval ending at a new grant.
    first = {t for r in _in(initial, queue_name) if (t := r.granted_at) is not None}
    times = sorted(grants)
    for j, end in enumerate(times):
        if end in first:
            continue
        for start in times[: j + 1]:
            elapsed_us = (end - start) // timedelta(microseconds=1)
            count = sum(1 for t in times if start <= t <= end)
            allowed = rate.burst + rate.per_minute * elapsed_us // 60_000_000
            # An initial history denser than the rate may already exceed it: a new grant adds nothing then.
            old = sum(1 for t in times if start <= t <= end and t in first)
            assert count <= max(allowed, old), (start, end, count)


@PROPERTY
@given(worlds())
def test_nothing_is_granted_behind_a_run_held_by_the_pool_limit_or_the_pool_start_rate(world: World) -> None:
    # Both hold every run of the pool alike (unlike key limits, which hold only some values), so
    # a run behind the held one in admission order cannot have been granted either.
    result = world.admit()
    queues = {q.name: q for q in world.queues}
    pool_wide = [
        admission_order(h.run, queues[h.run.queue])
        for h in result.holds
        if h.reason is H.POOL_LIMIT_REACHED or (h.reason is H.START_RATE_LIMITED and h.message.startswith("pool "))
    ]
    if pool_wide:
        assert all(admission_order(g.run, queues[g.run.queue]) < min(pool_wide) for g in result.grants)
