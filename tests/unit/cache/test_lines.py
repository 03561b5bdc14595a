"""The store's index of queue lines and slot holders (cache/lines.py): after any sequence of
watch events and write responses it says what a walk over every stored run would say."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import T0
from workpools.api.base import timestamp
from workpools.api.flowrun import queue_of
from workpools.api.meta import ObjectKey
from workpools.api.states import SLOT_HOLDING
from workpools.cache.store import Store
from workpools.core.selection import in_line, place

NAMES = ["a", "b", "c", "d"]
STATES = [None, "Scheduled", "Pending", "Running", "Completed", "Crashed"]


def body(  # noqa: PLR0917 -- one event of the script, field by field
    name: str, version: int, pool: str, queue: str | None, state: str | None, scheduled: int
) -> dict[str, Any]:
    status: dict[str, Any] = {"scheduledTime": timestamp(T0 + timedelta(seconds=scheduled))}
    if state is not None:
        status["state"] = state
    return {
        "apiVersion": "workpools.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}-{pool}",
            "resourceVersion": str(version),
            "creationTimestamp": timestamp(T0),
        },
        "spec": {"workPool": pool, **({"workQueue": queue} if queue else {})},
        "status": status,
    }


events = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "put", "remove"]),
        st.sampled_from(NAMES),
        st.integers(1, 6),  # resourceVersion: late and repeated events too
        st.sampled_from(["p", "other"]),
        st.sampled_from([None, "q1"]),
        st.sampled_from(STATES),
        st.integers(0, 3),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_the_lines_and_holders_are_what_a_walk_over_the_stored_runs_says(script: list[Any]) -> None:
    store = Store(clock=lambda: T0)
    for verb, name, version, pool, queue, state, scheduled in script:
        event = body(name, version, pool, queue, state, scheduled)
        store.put(event) if verb == "put" else store.remove(event)
    for pool in (ObjectKey("ns", "p"), ObjectKey("ns", "other")):
        lines: defaultdict[str, list[Any]] = defaultdict(list)
        for run in store.runs.of(pool):
            if in_line(run):
                lines[queue_of(run)].append(place(run))
        for queue in ("p-default", "other-default", "q1"):
            assert store.lines.line(pool, queue) == sorted(lines[queue])
        holding = {r.metadata.name for r in store.runs.of(pool) if r.status.state in SLOT_HOLDING}
        assert store.lines.holding(pool) == holding


def test_a_freed_slot_or_a_run_joining_a_line_is_an_opening_once() -> None:
    store, pool = Store(clock=lambda: T0), ObjectKey("ns", "p")
    assert not store.lines.opened(pool)
    store.put(body("a", 1, "p", None, None, 0))  # a new run joins the line
    assert store.lines.opened(pool)
    assert not store.lines.opened(pool)  # taken
    store.put(body("a", 2, "p", None, "Pending", 0))  # granted: no opening
    store.put(body("a", 3, "p", None, "Running", 0))  # started: none either
    assert not store.lines.opened(pool)
    store.put(body("a", 4, "p", None, "Completed", 0))  # its slot freed
    assert store.lines.opened(pool)
