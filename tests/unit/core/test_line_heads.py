"""Admission over the heads of the queues' lines (core/runs.line_heads): a grant pass must grant
exactly what a pass over every run of the pool grants, or a freed slot would go to another run
than the one whose turn it is; a full pass given the lines must write exactly what it writes
without them (grants, and every waiting run's reason, Scheduled stamp and Late mark)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.builders import T0
from tests.unit.core.run_support import S, condition, flowrun, pool_state, wkr, wp, wq
from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.states import SLOT_HOLDING
from workpools.core import runs
from workpools.core.selection import Place, place
from workpools.core.snapshot import PoolState

QUEUES = ["q0", "q1", "q2"]
WAITING = condition("Admitted", False, "PoolLimitReached", "pool p has no open slot (limit 2)", T0)
limits = st.one_of(st.none(), st.integers(0, 4))


@st.composite
def pools(draw: st.DrawFn) -> PoolState:
    queues = [
        wq(
            name,
            concurrencyLimit=draw(limits),
            priority=draw(st.integers(1, 3)),
            paused=draw(st.integers(0, 4)) == 0,
            **draw(st.sampled_from([{}, {}, {"concurrencyLimitPerKey": [{"label": "team", "limit": 1}]}])),
        )
        for name in QUEUES[: draw(st.integers(1, 3))]
    ]
    names = [q.metadata.name for q in queues]
    workers = [
        wkr(f"w{i}", limit=draw(st.one_of(st.none(), st.integers(1, 3))), queues=draw(st.sets(st.sampled_from(names))))
        for i in range(draw(st.integers(0, 3)))
    ]
    flowruns = []
    for i in range(draw(st.integers(0, 20))):
        state = draw(st.sampled_from([None, S.SCHEDULED, S.SCHEDULED, S.PENDING, S.RUNNING, S.COMPLETED]))
        holding = state in SLOT_HOLDING
        flowruns.append(
            flowrun(
                f"r{i:02}",
                queue=draw(st.sampled_from(names)),
                state=state,
                created=T0 + timedelta(seconds=draw(st.integers(0, 3))),
                spec_scheduled=T0 + timedelta(seconds=draw(st.sampled_from([0, 1, 2, 60]))),
                worker=draw(st.sampled_from([w.metadata.name for w in workers])) if holding and workers else None,
                acquired=T0 if holding else None,
                cancel=draw(st.booleans()) and not holding and draw(st.booleans()),
                labels={"team": draw(st.sampled_from(["a", "b"]))},
                conditions=draw(st.sampled_from([(), [WAITING]])),
            )
        )
    late = draw(st.sampled_from([{}, {}, {"latePolicy": {"action": "Cancel", "afterSeconds": 30}}]))
    pool = wp(concurrencyLimit=draw(limits), paused=draw(st.integers(0, 9)) == 0, **late)
    return pool_state(runs=flowruns, workers=workers, pool=pool, queues=queues, now=T0 + timedelta(seconds=5))


def changes(state: PoolState, lines: dict[str, list[Place]] | None = None) -> dict[str, object]:
    return {c.run.metadata.name: (c.patch, c.granted_to) for c in runs.admission_changes(state, lines)}


def grants(state: PoolState) -> list[tuple[str, str | None]]:
    return [(c.run.metadata.name, c.granted_to) for c in runs.admission_changes(state) if c.granted_to is not None]


def lines_of(flowruns: list[FlowRun]) -> dict[str, list[Place]]:
    lines: defaultdict[str, list[Place]] = defaultdict(list)
    for run in flowruns:
        if run.status.state in (None, S.SCHEDULED):
            lines[queue_of(run)].append(place(run))
    return {queue: sorted(line) for queue, line in lines.items()}


@settings(max_examples=400, deadline=None)
@given(pools())
@example(pool_state(runs=[flowrun(f"r{i}", queue="q0") for i in range(5)], queues=[wq("q0")], workers=[wkr("w")]))
def test_a_grant_pass_over_the_line_heads_grants_what_a_pass_over_every_run_does(state: PoolState) -> None:
    by_name = {r.metadata.name: r for r in state.runs}
    holders = replace(state, runs=[r for r in state.runs if r.status.state in SLOT_HOLDING])
    at_heads = runs.grants_at_heads(holders, lines_of(list(state.runs)), by_name.get)
    assert [(c.run.metadata.name, c.granted_to) for c in at_heads] == grants(state)
    assert [c.patch for c in at_heads] == [c.patch for c in runs.admission_changes(state) if c.granted_to]


@settings(max_examples=400, deadline=None)
@given(pools(), st.sampled_from([5, 20, 60]))
def test_a_full_pass_given_the_lines_writes_what_it_writes_without_them(state: PoolState, seconds: int) -> None:
    state = replace(state, now=T0 + timedelta(seconds=seconds))  # also past Late (15 s) and afterSeconds (30 s)
    assert changes(state, lines_of(list(state.runs))) == changes(state)


def test_heads_are_cut_to_the_open_slots_of_the_pool_and_the_queue() -> None:
    waiting = [flowrun(f"r{i}", queue="q0") for i in range(10)]
    holding = [flowrun("h", queue="q0", state=S.RUNNING, worker="w", acquired=T0)]
    state = pool_state(
        runs=holding, workers=[wkr("w")], pool=wp(concurrencyLimit=4), queues=[wq("q0", concurrencyLimit=9)]
    )
    by_name = {r.metadata.name: r for r in waiting}
    heads = runs.line_heads(state, lines_of(waiting), by_name.get)
    assert [r.metadata.name for r in heads] == ["r0", "r1", "r2"]  # the pool's 3 open slots


def test_without_pool_or_queue_limits_heads_are_cut_to_what_the_workers_take() -> None:
    waiting = [flowrun(f"r{i}", queue="q0") for i in range(10)]
    holding = [flowrun("h", queue="q0", state=S.RUNNING, worker="w1", acquired=T0)]
    workers = [wkr("w1", limit=2), wkr("w2", limit=1), wkr("other", limit=5, queues=["q1"])]
    state = pool_state(runs=holding, workers=workers, queues=[wq("q0"), wq("q1")])
    by_name = {r.metadata.name: r for r in waiting}
    heads = runs.line_heads(state, lines_of(waiting), by_name.get)
    assert [r.metadata.name for r in heads] == ["r0", "r1"]  # w1 takes one more, w2 one
    unlimited = pool_state(runs=holding, workers=[*workers, wkr("w3")], queues=[wq("q0"), wq("q1")])
    assert len(runs.line_heads(unlimited, lines_of(waiting), by_name.get)) == 10


def test_a_start_rate_or_skip_to_latest_needs_a_pass_over_every_run() -> None:
    assert runs.heads_suffice(pool_state())
    assert not runs.heads_suffice(pool_state(pool=wp(startRate={"perMinute": 6})))
    assert not runs.heads_suffice(pool_state(queues=[wq(latePolicy={"skipToLatest": True})]))
    assert not runs.heads_suffice(replace(pool_state(), pool=None))
