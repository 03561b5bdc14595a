"""The runs client's pure parts: the server-side selectors, run order, queue views and slot grouping.

Aspects: the holder selector leaves exactly the slot-holding states; runs list newest expected
start first; a queue is previewed at its effective priority, else its spec, else last; slot
grouping puts holders under their pool and queue, counts beyond the per-queue cap, and keeps
queues that were deleted while their runs hold slots.
"""

from __future__ import annotations

from tests.builders import at
from tests.unit.cli.models import pool, queue, run
from workpools.api.states import SLOT_HOLDING, StateType
from workpools.api.workqueue import PRIORITY_MAX
from workpools.client.runs import HOLDER_SELECTOR, concurrency_status, queue_view, run_order


def test_holder_selector_excludes_every_other_state() -> None:
    excluded = {part.removeprefix("status.state!=") for part in HOLDER_SELECTOR.split(",")}
    assert excluded == {s.value for s in StateType} - {s.value for s in SLOT_HOLDING}


def test_runs_are_ordered_newest_expected_start_first() -> None:
    early, late = run("early"), run("late")
    early.status.scheduled_time, late.status.scheduled_time = at(minutes=1), at(minutes=2)
    tie = run("a-tie")
    tie.status.scheduled_time = at(minutes=2)
    assert [r.metadata.name for r in sorted([early, late, tie], key=run_order)] == ["a-tie", "late", "early"]


def test_queue_view_priority() -> None:
    assert queue_view(queue("q", priority=1, effective=3)).effective_priority == 3
    unresolved = queue("q", priority=4)
    unresolved.status.effective_priority = None
    assert queue_view(unresolved).effective_priority == 4
    unresolved.spec.priority = None
    assert queue_view(unresolved).effective_priority == PRIORITY_MAX + 1


def test_concurrency_status_groups_holders_by_pool_and_queue() -> None:
    statuses = concurrency_status(
        [pool("etl", limit=4), pool("ml")],
        [queue("etl-b", priority=2), queue("etl-a", priority=1)],
        [
            run("r1", queue="etl-a", acquired=at(minutes=2)),
            run("r2", queue="etl-a", acquired=at(minutes=1)),
            run("r3", queue="etl-gone", acquired=at(minutes=3)),
            run("m1", pool="ml", acquired=at()),
            run("done", queue="etl-a", state="Completed"),
        ],
        per_queue_limit=1,
    )
    etl, ml = statuses
    assert (etl.name, etl.active, etl.limit) == ("etl", 3, 4)
    assert [(q.name, q.active, [r.metadata.name for r in q.holders], q.exists) for q in etl.queues] == [
        ("etl-a", 2, ["r2"], True),  # longest held shown, both counted
        ("etl-b", 0, [], True),
        ("etl-gone", 1, ["r3"], False),
    ]
    assert (ml.active, [(q.name, q.active) for q in ml.queues]) == (1, [("ml-default", 1)])
