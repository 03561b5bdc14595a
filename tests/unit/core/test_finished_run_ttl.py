"""Finished-run TTL (core/ttl.py) and the token bucket its deletions draw from (core/tokens.py).

Aspects: when a finished run expires (endTime + TTL + its own jitter, strictly after); what is
never deleted (runs in flight, runs without endTime, a pool without TTL, a deleted pool); the
order and number of deletions a pass may make (the longest expired first, as many as the shared
bucket pays for); the deadlines that bring the next deletions (an expiry, the bucket refilling);
and, as properties, that nothing unfinished or early is ever deleted and that over any sequence
of passes the deletions never outrun the bucket, even after a week of downtime.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import T0, at
from tests.unit.core.run_support import flowrun, pool_state, wp
from workpools.api.flowrun import FlowRun
from workpools.api.states import TERMINAL, StateType
from workpools.core import ttl
from workpools.core.deadlines import TICK, next_deadline
from workpools.core.snapshot import PoolState
from workpools.core.tokens import TokenBucket

S = StateType
PROPERTY = settings(deadline=None)
HOUR = 3600


def done(name: str, ended: datetime | None = T0, state: StateType = S.COMPLETED) -> FlowRun:
    return flowrun(name, state=state, ended=ended)


def state_with(
    finished: list[FlowRun], *, ttl_seconds: int | None = HOUR, now: datetime, budget: TokenBucket | None = None
) -> PoolState:
    state = pool_state(pool=wp(finishedRunTTLSeconds=ttl_seconds), now=now)
    return replace(state, finished=finished, deletion_budget=budget or TokenBucket(1000, 1000))


def names(runs: list[FlowRun]) -> list[str]:
    return [r.metadata.name for r in runs]


# --- when a run expires -----------------------------------------------------------------------


def test_a_run_expires_its_ttl_after_its_end_plus_a_jitter_below_a_tenth_of_the_ttl() -> None:
    for name in ("a", "b", "c", "d"):
        when = ttl.expires_at(done(name), 600)
        assert when is not None
        assert at(seconds=600) <= when < at(seconds=660)


def test_the_jitter_is_at_most_a_minute_and_fixed_by_the_run() -> None:
    jitters = {ttl.expires_at(done(f"r{n}"), 86_400) for n in range(50)}
    assert all(j is not None and at(hours=24) <= j < at(hours=24, seconds=60) for j in jitters)
    assert len(jitters) > 40  # spread: runs ended together expire apart
    assert ttl.expires_at(done("r1"), 86_400) == ttl.expires_at(done("r1"), 86_400)  # stable across passes


def test_the_jitter_follows_the_uid_when_there_is_one() -> None:
    one, other = done("same"), done("same")
    one.metadata.uid, other.metadata.uid = "uid-1", "uid-2"
    assert ttl.expires_at(one, 600) != ttl.expires_at(other, 600)


def test_a_run_without_an_end_time_never_expires() -> None:
    assert ttl.expires_at(done("r", ended=None), 1) is None
    assert ttl.deletions(state_with([done("r", ended=None)], ttl_seconds=1, now=at(hours=24 * 365))).runs == []


# --- what a pass deletes ----------------------------------------------------------------------


def test_a_run_is_deleted_only_strictly_after_it_expires() -> None:
    run = done("r")
    when = ttl.expires_at(run, HOUR)
    assert when is not None
    assert ttl.deletions(state_with([run], now=when)).runs == []
    assert names(ttl.deletions(state_with([run], now=when + TICK)).runs) == ["r"]


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_every_terminal_state_expires(state: StateType) -> None:
    assert names(ttl.deletions(state_with([done("r", state=state)], now=at(hours=2))).runs) == ["r"]


def test_nothing_is_deleted_without_a_ttl_or_without_the_pool() -> None:
    expired = [done("r", ended=at(hours=-100))]
    assert ttl.deletions(state_with(expired, ttl_seconds=None, now=T0)).runs == []
    assert ttl.deletions(replace(state_with(expired, now=T0), pool=None)).runs == []


def test_runs_in_flight_are_never_deleted() -> None:
    # Only PoolState.finished is judged: a run in `runs` (which may still take or hold a slot) is not.
    state = replace(state_with([], now=at(hours=100)), runs=[flowrun("r", state=S.RUNNING, ended=T0)])
    assert ttl.deletions(state).runs == []


def test_the_longest_expired_go_first_and_only_as_many_as_the_bucket_pays_for() -> None:
    runs = [done(f"r{n}", ended=at(minutes=-n)) for n in range(10)]
    decided = ttl.deletions(state_with(runs, now=at(hours=2), budget=TokenBucket(1, 3)))
    assert names(decided.runs) == ["r9", "r8", "r7"]
    assert decided.budget.available(at(hours=2)) == 0


def test_a_week_of_downtime_starts_with_one_burst_then_the_rate() -> None:
    # 100k runs expired while the operator was away: the first pass deletes one burst.
    week_ago = done("r", ended=at(hours=-24 * 7))
    runs = [
        week_ago.model_copy(update={"metadata": week_ago.metadata.model_copy(update={"name": f"r{n}"})})
        for n in range(100_000)
    ]
    state = state_with(runs, now=T0, budget=TokenBucket(10, 20))
    decided = ttl.deletions(state)
    assert len(decided.runs) == 20
    # The pool is woken again when the bucket holds another burst: two seconds later.
    left = replace(state, finished=runs[20:], deletion_budget=decided.budget)
    assert next_deadline(left) == T0 + timedelta(seconds=2, microseconds=1)
    assert len(ttl.deletions(replace(left, now=at(seconds=2, microseconds=1))).runs) == 20


# --- deadlines --------------------------------------------------------------------------------


def test_the_next_deadline_is_the_first_expiry() -> None:
    runs = [done("late", ended=T0), done("early", ended=at(minutes=-10))]
    early = ttl.expires_at(runs[1], HOUR)
    assert early is not None
    assert next_deadline(state_with(runs, now=T0)) == early + TICK


def test_no_deadline_for_runs_that_never_expire() -> None:
    assert next_deadline(state_with([done("r", ended=None)], now=T0)) is None
    assert next_deadline(state_with([done("r")], ttl_seconds=None, now=T0)) is None


def test_expired_runs_left_over_wake_the_pool_when_the_bucket_has_refilled() -> None:
    run = done("r", ended=at(hours=-2))
    empty = TokenBucket(4, 8, tokens=0, at=T0)
    assert next_deadline(state_with([run], now=T0, budget=empty)) == T0 + timedelta(seconds=0.25, microseconds=1)


# --- the token bucket -------------------------------------------------------------------------


def test_a_new_bucket_is_full_and_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(2, 5)
    granted, bucket = bucket.take(8, T0)
    assert granted == 5
    assert bucket.take(8, at(seconds=1))[0] == 2
    assert bucket.take(8, at(hours=1))[0] == 5  # never more than a burst, however long the pause


def test_a_clock_that_steps_back_adds_no_tokens() -> None:
    _, bucket = TokenBucket(1, 1).take(1, T0)
    assert bucket.take(1, at(seconds=-10))[0] == 0
    assert bucket.take(1, at(seconds=1))[0] == 1


def test_ready_at_is_when_the_tokens_are_there() -> None:
    _, bucket = TokenBucket(3, 6).take(6, T0)
    when = bucket.ready_at(4, T0)
    assert bucket.take(4, when)[0] == 4
    assert bucket.take(4, when - timedelta(milliseconds=1))[0] < 4
    assert bucket.ready_at(100, T0) == bucket.ready_at(6, T0)  # at most a burst is waited for


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate, burst)


# --- properties -------------------------------------------------------------------------------

ENDS = st.one_of(st.none(), st.integers(min_value=-10 * HOUR, max_value=HOUR).map(lambda s: at(seconds=s)))


@PROPERTY
@given(
    ends=st.lists(ENDS, max_size=20),
    states=st.lists(st.sampled_from(list(StateType)), min_size=20, max_size=20),
    ttl_seconds=st.integers(min_value=1, max_value=2 * HOUR),
    now=st.integers(min_value=-HOUR, max_value=10 * HOUR).map(lambda s: at(seconds=s)),
)
def test_never_an_unfinished_run_nor_before_its_time(
    ends: list[datetime | None], states: list[StateType], ttl_seconds: int, now: datetime
) -> None:
    finished = [done(f"f{n}", ended=end) for n, end in enumerate(ends)]
    in_flight = [flowrun(f"u{n}", state=s, ended=T0) for n, s in enumerate(states) if s not in TERMINAL]
    state = replace(state_with(finished, ttl_seconds=ttl_seconds, now=now), runs=in_flight)
    for run in ttl.deletions(state).runs:
        assert run in finished
        end = run.status.end_time
        assert end is not None
        assert now > end + timedelta(seconds=ttl_seconds)


@PROPERTY
@given(
    rate=st.sampled_from([0.5, 1, 3, 10]),
    burst=st.integers(min_value=1, max_value=10),
    steps=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=40),
    pools=st.integers(min_value=1, max_value=3),
)
def test_deletions_never_outrun_the_bucket(rate: float, burst: int, steps: list[int], pools: int) -> None:
    # Several pools with a backlog each (a restart after downtime), passes at arbitrary moments,
    # one shared bucket: by any moment t, at most burst + rate × (t - first pass) deletions.
    backlog = {p: [done(f"p{p}-{n}", ended=at(hours=-24 * 7)) for n in range(200)] for p in range(pools)}
    budget, now, deleted = TokenBucket(rate, burst), T0, 0
    for step, pool in zip(steps, [p for _ in steps for p in range(pools)], strict=False):
        now += timedelta(milliseconds=step)
        decided = ttl.deletions(state_with(backlog[pool], now=now, budget=budget))
        budget, deleted = decided.budget, deleted + len(decided.runs)
        backlog[pool] = [r for r in backlog[pool] if r not in decided.runs]
        assert deleted <= burst + math.floor(rate * (now - T0).total_seconds() + 1e-9)
