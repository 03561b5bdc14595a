"""Run selection (`get_scheduled_flow_runs`) and the Late rule.

Ports prefect-semantics §8 "Scheduled runs" (models), the worked examples of §4 (live server and
upstream tests), and the matching API and query-level cases. Deliberate differences are marked
ADAPTED: one pool per call (the API's shape); strict priority order only; Cancelling holds a
slot; unknown queue names select nothing (the caller reports QueueNotFound instead of a 404).
Aspects: counts per filter, exact orders, slot caps, determinism, Late, and properties.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypedDict, Unpack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.builders import T0, at, pool, queue, run
from workpools.api.states import StateType
from workpools.core.selection import late, scheduled_runs
from workpools.core.snapshot import PoolView, QueueView, RunView

S = StateType


# --- Prefect's fixture: pools A, B, C; queues xA, xB, xC; 1 Running, 1 Pending, 5 Scheduled ---

OFFSETS = {"m1h": -1, "0h": 0, "p1h": 1, "p2h": 2, "p3h": 3}  # Scheduled runs, hours from T0
NOW = T0 + timedelta(seconds=1)  # the tests read the clock just after creating the runs


class Options(TypedDict, total=False):
    """The keyword arguments of `scheduled_runs`, so cases are type-checked."""

    queue_names: list[str]
    scheduled_after: datetime
    scheduled_before: datetime
    limit: int


@dataclass(frozen=True)
class World:
    pools: dict[str, PoolView]
    queues: list[QueueView]
    runs: list[RunView]

    def poll(self, pools: str, **options: Unpack[Options]) -> list[RunView]:
        """One `scheduled_runs` call per pool letter, concatenated."""
        found: list[RunView] = []
        for name in pools:
            found += scheduled_runs(self.pools[name], self.queues, self.runs, **options)
        return found


def three_pools(
    pool_limits: Mapping[str, int] | None = None,
    queue_limits: Mapping[str, int] | None = None,
    paused: Collection[str] = (),
) -> World:
    """Prefect's TestGetScheduledRuns world; `paused` names pools or queues."""
    pool_limits, queue_limits = pool_limits or {}, queue_limits or {}
    pools = {p: pool(p, limit=pool_limits.get(p), paused=p in paused) for p in "ABC"}
    queues, runs = [], []
    for p in "ABC":
        queues.append(queue(f"{p}-default", pool=p, priority=1))  # Prefect's "default", empty
        for priority, letter in enumerate("ABC", start=2):
            name = f"{p}{letter}"
            queues.append(
                queue(
                    name,
                    pool=p,
                    priority=priority,
                    limit=queue_limits.get(name),
                    paused=name in paused,
                )
            )
            runs += [
                run(f"{name}-running", pool=p, queue=name, state=S.RUNNING),
                run(f"{name}-pending", pool=p, queue=name, state=S.PENDING),
            ]
            runs += [
                run(f"{name}-{label}", pool=p, queue=name, scheduled=at(hours=hours))
                for label, hours in OFFSETS.items()
            ]
    return World(pools, queues, runs)


@dataclass(frozen=True)
class Case:
    want: int
    polled: str = "ABC"  # pools polled, one call each
    options: Options = field(default_factory=Options)
    pool_limits: dict[str, int] = field(default_factory=dict)
    queue_limits: dict[str, int] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()


def hours(n: float) -> datetime:
    return NOW + timedelta(hours=n)


COUNT_CASES: dict[str, Case] = {
    # §8 tests/server/models/test_workers.py, "Scheduled runs".
    "model/no-filters-45": Case(45),
    # ADAPTED: Prefect's model call spans pools; ours takes one pool per call, like the API.
    "model/limit-12": Case(12, polled="A", options={"limit": 12}),
    "model/scheduled-before-now-18": Case(18, options={"scheduled_before": NOW}),
    "model/scheduled-after-now-27": Case(27, options={"scheduled_after": NOW}),
    "model/queue-AA-5": Case(5, options={"queue_names": ["AA"]}),
    "model/queues-AA-BA-CB-15": Case(15, options={"queue_names": ["AA", "BA", "CB"]}),
    "model/pool-A-15": Case(15, polled="A"),
    "model/pools-A-B-30": Case(30, polled="AB"),
    "model/pool-A-queue-AA-5": Case(5, polled="A", options={"queue_names": ["AA"]}),
    "model/pool-B-queue-AA-0": Case(0, polled="B", options={"queue_names": ["AA"]}),
    # §4 "From the tests": queue limits (AA holds 2 slots: 1 Running, 1 Pending).
    **{
        f"queue-AA-limit-{limit}-gives-{want}": Case(
            want, polled="A", options={"queue_names": ["AA"]}, queue_limits={"AA": limit}
        )
        for limit, want in [(10, 5), (5, 3), (2, 0)]
    },
    # Pool limits count all 6 slot holders of pool A, even when polling only AA.
    **{
        f"pool-A-limit-{limit}-polling-AA-gives-{want}": Case(
            want, polled="A", options={"queue_names": ["AA"]}, pool_limits={"A": limit}
        )
        for limit, want in [(20, 5), (10, 4), (7, 1), (2, 0)]
    },
    **{
        f"pool-A-limit-{limit}-whole-pool-gives-{want}": Case(want, polled="A", pool_limits={"A": limit})
        for limit, want in [(25, 15), (16, 10), (7, 1), (2, 0)]
    },
    **{
        f"scheduled-before-now{offset:+}h-gives-{want}": Case(want, options={"scheduled_before": hours(offset)})
        for offset, want in [(100, 45), (3, 45), (1, 27), (-1, 9), (-10, 0)]
    },
    **{
        f"scheduled-after-now{offset:+}h-gives-{want}": Case(want, options={"scheduled_after": hours(offset)})
        for offset, want in [(-100, 45), (-3, 45), (0, 27), (2, 9), (10, 0)]
    },
    "bounds-inclusive-before-equals-after": Case(
        9, options={"scheduled_after": at(hours=1), "scheduled_before": at(hours=1)}
    ),
    "before-earlier-than-after-0": Case(0, options={"scheduled_before": hours(-1), "scheduled_after": NOW}),
    # Query-level cases (tests/server/database/test_queries.py).
    "queue-AA-paused-0": Case(0, options={"queue_names": ["AA"]}, paused=frozenset({"AA"})),
    "pool-A-paused-0-for-AA": Case(0, options={"queue_names": ["AA"]}, paused=frozenset({"A"})),
    "pool-A-paused-others-unaffected-30": Case(30, paused=frozenset({"A"})),
    # API cases (tests/server/orchestration/api/test_workers.py), pool A only.
    "api/limit-7": Case(7, polled="A", options={"limit": 7}),
    "api/limit-0": Case(0, polled="A", options={"limit": 0}),
    "api/queue-AA-5": Case(5, polled="A", options={"queue_names": ["AA"]}),
    "api/queues-AA-AB-10": Case(10, polled="A", options={"queue_names": ["AA", "AB"]}),
    # ADAPTED: Prefect answers 404 for a queue of another pool; the pure function selects
    # nothing and the caller reports QueueNotFound.
    "api/queue-of-other-pool-BA-0": Case(0, polled="A", options={"queue_names": ["BA"]}),
    "api/scheduled-before-now-6": Case(6, polled="A", options={"scheduled_before": NOW}),
    "api/scheduled-after-now-9": Case(9, polled="A", options={"scheduled_after": NOW}),
    "api/before-now-minus-1h-after-now-0": Case(
        0, polled="A", options={"scheduled_before": hours(-1), "scheduled_after": NOW}
    ),
    # Prefect's API: an empty `work_queue_names` means every queue.
    "api/empty-queue-names-means-all-15": Case(15, polled="A", options={"queue_names": []}),
}


@pytest.mark.parametrize("case", list(COUNT_CASES.values()), ids=list(COUNT_CASES))
def test_scheduled_run_count(case: Case) -> None:
    world = three_pools(case.pool_limits, case.queue_limits, case.paused)
    found = world.poll(case.polled, **case.options)
    assert len(found) == case.want
    assert all(r.state is S.SCHEDULED for r in found)


def test_no_filters_orders_by_priority_not_time() -> None:
    # §8: "no filters → 45 runs, not time-sorted": priorities are respected by default.
    found = three_pools().poll("A")
    assert [r.name for r in found[:5]] == [f"AA-{label}" for label in OFFSETS]
    times = [r.scheduled_time for r in found]
    assert times != sorted(times)


def test_priority_blocks_per_queue() -> None:
    # test_queries "respect_queue_priorities=True → [0:5] AA, [5:10] AB, [10:15] AC".
    found = three_pools().poll("A")
    assert [r.queue for r in found] == ["AA"] * 5 + ["AB"] * 5 + ["AC"] * 5


def test_time_only_order_is_not_offered() -> None:
    # ADAPTED: Prefect's `respect_queue_priorities=False` returns the same 45 runs time-sorted.
    # DESIGN §3 orders strictly by priority, so there is no such switch; the runs are the same.
    world = three_pools()
    everything = {r.name for r in world.runs if r.state is S.SCHEDULED}
    assert {r.name for r in world.poll("ABC")} == everything


# --- §4 live worked example: q-high(1), default(2), q-mid(3), q-paused(4, paused), q-low(10) ---


def live_pool(
    pool_limit: int | None = None,
    high_limit: int | None = None,
    pending: Collection[str] = (),
) -> tuple[PoolView, list[QueueView], list[RunView]]:
    """Each queue has 2 overdue runs; q-high also has one due in an hour."""
    queues = [
        queue("q-high", priority=1, limit=high_limit),
        queue("default", priority=2),
        queue("q-mid", priority=3),
        queue("q-paused", priority=4, paused=True),
        queue("q-low", priority=10),
    ]
    runs = [
        run(f"{q.name.removeprefix('q-')}-{i}", queue=q.name, scheduled=at(minutes=-10 + i))
        for q in queues
        for i in (1, 2)
    ]
    runs.append(run("high-later", queue="q-high", scheduled=at(hours=1)))
    runs = [replace(r, state=S.PENDING) if r.name in pending else r for r in runs]
    return pool("p", limit=pool_limit), queues, runs


LIVE_CASES = {
    # Strict priority: q-high's run due in an hour comes before default's overdue runs.
    "no-filter-strict-priority-paused-skipped": (
        live_pool(),
        {},
        ["high-1", "high-2", "high-later", "default-1", "default-2", "mid-1", "mid-2", "low-1", "low-2"],
    ),
    "before-now-plus-10s-limit-3": (
        live_pool(),
        {"scheduled_before": T0 + timedelta(seconds=10), "limit": 3},
        ["high-1", "high-2", "default-1"],
    ),
    "pool-limit-3": (live_pool(pool_limit=3), {}, ["high-1", "high-2", "high-later"]),
    "pool-limit-3-one-pending": (
        live_pool(pool_limit=3, pending={"high-1"}),
        {},
        ["high-2", "high-later"],
    ),
    "then-q-high-limit-1-pool-slots-go-to-default": (
        live_pool(pool_limit=3, high_limit=1, pending={"high-1"}),
        {},
        ["default-1", "default-2"],
    ),
    "named-paused-queue-skipped": (
        live_pool(),
        {"queue_names": ["q-low", "q-paused"]},
        ["low-1", "low-2"],
    ),
}


@pytest.mark.parametrize(("world", "options", "want"), list(LIVE_CASES.values()), ids=list(LIVE_CASES))
def test_live_worked_example(
    world: tuple[PoolView, list[QueueView], list[RunView]],
    options: Options,
    want: list[str],
) -> None:
    found = scheduled_runs(*world, **options)
    assert [r.name for r in found] == want


def test_paused_pool_gives_nothing() -> None:
    p, queues, runs = live_pool()
    assert scheduled_runs(replace(p, paused=True), queues, runs) == []


def test_cancelling_holds_a_queue_slot() -> None:
    # ADAPTED: Prefect's selection ignores Cancelling runs when counting slots (DESIGN §3).
    p, queues, runs = live_pool(high_limit=2)
    runs.append(run("stopping", queue="q-high", state=S.CANCELLING))
    found = scheduled_runs(p, queues, runs, queue_names=["q-high"])
    assert [r.name for r in found] == ["high-1"]


def test_default_queue_capped_next_queue_takes_the_rest() -> None:
    # §9 observation: pool limit 50, default queue (priority 1) limit 5 → {default: 5, q1: 45}.
    queues = [queue("default", priority=1, limit=5)]
    queues += [queue(f"q{i}", priority=i + 1) for i in range(1, 5)]
    runs = [run(f"{q.name}-{n:03}", queue=q.name, scheduled=at(minutes=5 + n)) for q in queues for n in range(60)]
    found = scheduled_runs(pool("p", limit=50), queues, runs, limit=200)
    assert Counter(r.queue for r in found) == {"default": 5, "q1": 45}


def test_ties_broken_by_creation_then_name_whatever_the_input_order() -> None:
    # Our addition: Prefect leaves (priority, time) ties to the database.
    runs = [
        run("b-older", created=at(seconds=-2)),
        run("c-newest", created=at(seconds=-1)),
        run("a-newest", created=at(seconds=-1)),
        run("d-earlier", scheduled=at(seconds=-1), created=at(seconds=5)),
    ]
    want = ["d-earlier", "b-older", "a-newest", "c-newest"]
    for seed in range(5):
        shuffled = random.Random(seed).sample(runs, len(runs))
        assert [r.name for r in scheduled_runs(pool(), [queue()], shuffled)] == want


def test_runs_naming_another_pool_are_not_selected() -> None:
    # A run whose spec.workPool is not its queue's pool is never admitted through that pool.
    runs = [run("ok"), run("misdirected", pool="other")]
    assert [r.name for r in scheduled_runs(pool(), [queue()], runs)] == ["ok"]


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        scheduled_runs(pool(), [queue()], [run("r")], limit=-1)


# --- Late ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "now", "after", "want"),
    [
        pytest.param(S.SCHEDULED, at(seconds=15), None, False, id="exactly-15s-is-not-late"),
        pytest.param(S.SCHEDULED, at(seconds=15, microseconds=1), None, True, id="just-over-15s-is-late"),
        pytest.param(S.SCHEDULED, at(seconds=-60), None, False, id="future-is-not-late"),
        pytest.param(S.PENDING, at(hours=1), None, False, id="admitted-is-not-late"),
        pytest.param(S.RUNNING, at(hours=1), None, False, id="running-is-not-late"),
        pytest.param(S.SCHEDULED, at(seconds=31), timedelta(seconds=30), True, id="custom-threshold"),
        # Between the default and a custom threshold: only the one passed may decide.
        pytest.param(S.SCHEDULED, at(seconds=20), timedelta(seconds=30), False, id="20s-under-a-30s-threshold"),
        pytest.param(S.SCHEDULED, at(seconds=12), timedelta(seconds=10), True, id="12s-over-a-10s-threshold"),
    ],
)
def test_late(state: StateType, now: datetime, after: timedelta | None, want: bool) -> None:
    r = run("r", state=state, scheduled=T0)
    assert (late(r, now) if after is None else late(r, now, after)) is want


# --- Properties ------------------------------------------------------------------------------

_HOLDING_VALUES = {"Pending", "Running", "Cancelling"}  # spelled independently of the module


@dataclass(frozen=True)
class Poll:
    pool: PoolView
    queues: list[QueueView]
    runs: list[RunView]
    queue_names: list[str] | None
    after: datetime | None
    before: datetime | None
    limit: int | None

    def select(self) -> list[RunView]:
        return scheduled_runs(
            self.pool,
            self.queues,
            self.runs,
            queue_names=self.queue_names,
            scheduled_after=self.after,
            scheduled_before=self.before,
            limit=self.limit,
        )

    def holding(self) -> list[RunView]:
        return [r for r in self.runs if r.state.value in _HOLDING_VALUES]

    def pool_open(self) -> int | None:
        limit = self.pool.concurrency_limit
        taken = sum(r.pool == self.pool.name for r in self.holding())
        return None if limit is None else max(0, limit - taken)

    def queue_open(self, q: QueueView) -> int | None:
        taken = sum(r.queue == q.name for r in self.holding())
        return None if q.concurrency_limit is None else max(0, q.concurrency_limit - taken)

    def eligible(self, r: RunView) -> bool:
        q = next((q for q in self.queues if q.name == r.queue), None)
        return (
            not self.pool.paused
            and r.state is S.SCHEDULED
            and r.pool == self.pool.name
            and q is not None
            and q.pool == self.pool.name
            and not q.paused
            and (not self.queue_names or q.name in self.queue_names)
            and (self.after is None or self.after <= r.scheduled_time)
            and (self.before is None or r.scheduled_time <= self.before)
        )


_limits = st.none() | st.integers(0, 4)
_minutes = st.integers(-3, 3).map(lambda m: at(minutes=m))


@st.composite
def polls(draw: st.DrawFn) -> Poll:
    count = draw(st.integers(1, 4))
    priorities = draw(st.lists(st.integers(1, 9), min_size=count, max_size=count, unique=True))
    queues = [
        queue(f"q{i}", priority=p, limit=draw(_limits), paused=draw(st.booleans())) for i, p in enumerate(priorities)
    ]
    queues.append(queue("elsewhere", pool="other", priority=1))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from([q.name for q in queues] + ["gone"]),
                st.sampled_from(list(StateType)),
                _minutes,
                st.integers(0, 2),
            ),
            max_size=25,
        )
    )
    runs = [
        run(
            f"r{i}",
            pool="other" if name == "elsewhere" else "p",
            queue=name,
            state=state,
            scheduled=scheduled,
            created=at(seconds=created),
        )
        for i, (name, state, scheduled, created) in enumerate(rows)
    ]
    names = [q.name for q in queues] + ["unknown"]
    return Poll(
        pool=pool("p", limit=draw(_limits), paused=draw(st.booleans())),
        queues=draw(st.permutations(queues)),
        runs=draw(st.permutations(runs)),
        queue_names=draw(st.none() | st.lists(st.sampled_from(names), unique=True)),
        after=draw(st.none() | _minutes),
        before=draw(st.none() | _minutes),
        limit=draw(st.none() | st.integers(0, 6)),
    )


@given(polls())
def test_never_more_than_open_slots_or_limit(poll: Poll) -> None:
    found = poll.select()
    if poll.limit is not None:
        assert len(found) <= poll.limit
    pool_open = poll.pool_open()
    if pool_open is not None:
        assert len(found) <= pool_open
    per_queue = Counter(r.queue for r in found)
    for q in poll.queues:
        queue_open = poll.queue_open(q)
        if queue_open is not None:
            assert per_queue[q.name] <= queue_open


@given(polls())
def test_only_eligible_scheduled_runs_of_unpaused_queues(poll: Poll) -> None:
    found = poll.select()
    assert len({r.name for r in found}) == len(found)
    assert all(poll.eligible(r) for r in found)
    if poll.pool.paused:
        assert found == []


@given(polls())
def test_sorted_by_priority_then_time(poll: Poll) -> None:
    priority = {q.name: q.effective_priority for q in poll.queues}
    keys = [(priority[r.queue], r.scheduled_time, r.created, r.name) for r in poll.select()]
    assert keys == sorted(keys)


@given(polls())
def test_nothing_eligible_left_out_without_a_full_cap(poll: Poll) -> None:
    found = poll.select()
    per_queue = Counter(r.queue for r in found)
    queues = {q.name: q for q in poll.queues}
    for r in poll.runs:
        if poll.eligible(r) and r not in found:
            assert (
                len(found) == poll.limit
                or len(found) == poll.pool_open()
                or per_queue[r.queue] == poll.queue_open(queues[r.queue])
            ), f"{r.name} left out with room everywhere"


@given(polls(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(poll: Poll, rnd: random.Random) -> None:
    shuffled = replace(
        poll,
        queues=rnd.sample(poll.queues, len(poll.queues)),
        runs=rnd.sample(poll.runs, len(poll.runs)),
    )
    assert shuffled.select() == poll.select()
