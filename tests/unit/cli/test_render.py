"""What the CLI prints: tables, slot bars, durations, the `pool slots` view, JSON/YAML output.

Aspects: column alignment and empty cells; bars for idle, busy, full, over-limit, zero and
unlimited limits; durations at every unit boundary; relative times; the slots view (pool and
queue bars, holders with state, worker and time held, hidden holders, deleted queues); priority
shown with the request it differs from; `emit` for each format.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import replace

import pytest
import yaml

from tests.builders import T0, at
from tests.unit.cli.models import NOW, pool, queue, run, worker
from workpools.api.base import LatePolicy
from workpools.api.flowrun import Failure
from workpools.api.states import StateType
from workpools.cli import render
from workpools.cli.render import View, emit
from workpools.client.runs import PoolSlots, concurrency_status
from workpools.core.waiting import Estimate, Holding, Position, Waiting

# -- building blocks -------------------------------------------------------------------------------


def test_table_aligns_columns_upper_cases_headers_and_fills_empty_cells() -> None:
    text = render.table(("name", "state", "worker"), [("a", "Running", "w1"), ("longer-name", "Pending", None)])
    assert text.splitlines() == [
        "NAME          STATE     WORKER",
        "a             Running   w1",
        "longer-name   Pending   -",
    ]


def test_table_strips_trailing_spaces_and_indents() -> None:
    assert render.table(("a", "b"), [("x", "")], indent="  ").splitlines() == ["  A   B", "  x   -"]


@pytest.mark.parametrize(
    ("active", "limit", "expected"),
    [
        (0, 8, "[░░░░░░░░] 0/8"),
        (4, 8, "[████░░░░] 4/8"),
        (8, 8, "[████████] 8/8"),
        (1, 100, "[█░░░░░░░] 1/100"),  # any use shows
        (99, 100, "[███████░] 99/100"),  # not full until it is
        (10, 4, "[████████] 10/4"),  # a limit lowered below what runs
        (0, 0, "[░░░░░░░░] 0/0"),
        (2, 0, "[████████] 2/0"),
        (3, None, "[no limit] 3/∞"),
    ],
)
def test_bar(active: int, limit: int | None, expected: str) -> None:
    assert render.bar(active, limit) == expected


def test_bar_width() -> None:
    assert render.bar(2, 4, width=4) == "[██░░] 2/4"
    assert render.bar(2, None, width=4) == "[ ∞  ] 2/∞"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "0s"),
        (0, "0s"),
        (0.9, "0s"),
        (59, "59s"),
        (60, "1m00s"),
        (65, "1m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7380, "2h03m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (3 * 86400 + 4 * 3600 + 59, "3d04h"),
    ],
)
def test_duration(seconds: float, expected: str) -> None:
    assert render.duration(seconds) == expected


def test_relative_times() -> None:
    assert render.ago(at(seconds=-12), T0) == "12s ago"
    assert render.ago(at(minutes=5), T0) == "in 5m00s"
    assert render.ago(None, T0) == "never"
    assert render.age(None, T0) == "-"
    assert render.age(at(hours=-2), T0) == "2h00m"
    assert render.stamp(T0) == "2026-01-01 12:00:00Z"


def test_details_align_values() -> None:
    assert render.details([("Name", "etl"), ("Concurrency limit", None)]).splitlines() == [
        "Name:               etl",
        "Concurrency limit:  -",
    ]


# -- output formats --------------------------------------------------------------------------------


def test_emit_each_format() -> None:
    view = View({"name": "etl", "slots": "4/∞"}, "a table")
    assert emit(view, "table") == "a table"
    assert json.loads(emit(view, "json")) == {"name": "etl", "slots": "4/∞"}
    assert yaml.safe_load(emit(view, "yaml")) == {"name": "etl", "slots": "4/∞"}
    assert "∞" in emit(view, "json")  # not escaped


def test_objects_render_as_the_server_stores_them() -> None:
    data = render.as_data(pool(limit=4))
    assert data["spec"]["concurrencyLimit"] == 4
    assert data["metadata"]["creationTimestamp"] == "2026-01-01T12:00:00Z"
    json.dumps(data)  # serialisable as it is


# -- tables of objects -----------------------------------------------------------------------------


def test_pools_table() -> None:
    busy = pool("etl", limit=8, active=4, workers={"online": 2, "total": 3}, queues=3)
    idle = pool("ml", spec={"paused": True}, phase="Paused")
    assert render.pools_table([busy, idle], NOW).splitlines() == [
        "NAME   TYPE      STATUS   WORKERS   SLOTS   QUEUES   AGE",
        "etl    process   Ready    2/3       4/8     3        10m00s",
        "ml     process   Paused   0/0       0/∞     0        10m00s",
    ]
    assert render.pools_table([], NOW) == "No WorkPools found."


def test_queue_priority_shows_the_request_it_differs_from() -> None:
    assert render.priority(queue("a", priority=2)) == "2"
    assert render.priority(queue("a", priority=1, effective=2)) == "2 (asks 1)"
    assert render.priority(queue("a", priority=None, effective=4)) == "4"
    unresolved = queue("a", priority=3)
    unresolved.status.effective_priority = None
    assert render.priority(unresolved) == "3 (pending)"


def test_workers_table() -> None:
    text = render.workers_table(
        [
            worker("w1", heartbeat=at(minutes=10, seconds=-4), limit=2),
            worker("w2", draining=True, workQueues=["etl-high", "etl-low"]),
        ],
        NOW,
    )
    assert text.splitlines() == [
        "NAME   STATUS            QUEUES             LIMIT   RUNS   LAST HEARTBEAT   AGE",
        "w1     Online            all                2       1      4s ago           10m00s",
        "w2     Online,Draining   etl-high,etl-low   -       1      never            10m00s",
    ]


def test_run_state_shows_a_telling_state_name() -> None:
    assert render.state(run("r", state="Scheduled", state_name="Late")) == "Scheduled (Late)"
    assert render.state(run("r", state="Running")) == "Running"
    assert render.state(run("r", state=None)) == "New"


def test_run_details_show_the_slot_held() -> None:
    text = render.run_details(run("r1", queue="etl-high", acquired=at(minutes=8, seconds=55)), NOW)
    assert "Slot:              in etl-high, held for 1m05s" in text
    assert "Worker:            w1" in text
    assert "Admitted" not in text  # no conditions yet
    assert text.endswith("Conditions:  -")


def test_preview_says_why_nothing_would_run() -> None:
    full = pool(limit=2, active=2)
    assert render.preview_table([], {}, NOW, full) == (
        "No runs would be handed out in that window: the pool has no open slot (2/2 in use)."
    )
    paused = pool(spec={"paused": True})
    assert render.preview_table([], {}, NOW, paused).endswith(": the pool is paused.")
    assert render.preview_table([], {}, NOW, pool()) == "No runs would be handed out in that window."


# -- pool slots ------------------------------------------------------------------------------------


def slots_fixture(per_queue_limit: int | None = None) -> list[PoolSlots]:
    return concurrency_status(
        pool("etl", limit=8, active=4, workers={"online": 2, "total": 2}),
        [queue("etl-high", priority=1, limit=4), queue("etl-default", priority=2)],
        [
            run("r-1", queue="etl-high", acquired=at(minutes=8, seconds=55)),
            run("r-2", queue="etl-high", state="Pending", worker="w2", acquired=at(minutes=9, seconds=57)),
            run("r-3", queue="etl-high", state="Cancelling", acquired=at(minutes=5)),
            run("r-4", queue=None, acquired=at(hours=-2)),
            run("r-5", queue="etl-high", state="Scheduled", worker=None),  # waits: holds nothing
            run("r-6", queue="etl-old", acquired=at(minutes=9)),  # its queue was deleted
        ],
        per_queue_limit,
    )


def test_slots_view_shows_bars_and_holders_like_prefect() -> None:
    assert render.slots_view(slots_fixture(), NOW).splitlines() == [
        "etl   [█████░░░] 5/8   Ready, 2/2 workers online",
        "  QUEUE         PRIORITY    SLOTS",
        "  etl-high      1           [██████░░] 3/4",
        "  etl-default   2           [no limit] 1/∞",
        "  etl-old       (deleted)   [no limit] 1/∞",
        "",
        "  SLOT HOLDER   QUEUE         STATE        WORKER   HELD FOR",
        "  r-3           etl-high      Cancelling   w1       5m00s",
        "  r-1           etl-high      Running      w1       1m05s",
        "  r-2           etl-high      Pending      w2       3s",
        "  r-4           etl-default   Running      w1       2h10m",
        "  r-6           etl-old       Running      w1       1m00s",
    ]


def test_slots_view_counts_holders_it_does_not_list() -> None:
    text = render.slots_view(slots_fixture(per_queue_limit=1), NOW)
    assert "[██████░░] 3/4" in text  # the bar counts all three
    assert "r-3" in text
    assert "r-1" not in text
    assert text.endswith("  ... and 2 more (raise --holders to see them)")


def test_slots_view_of_an_idle_pool() -> None:
    idle = concurrency_status(pool("etl"), [queue("etl-default")], [])
    assert render.slots_view(idle, NOW).splitlines()[-1] == "  no slot holders"
    assert render.slots_view([], NOW) == "No WorkPools found."


def test_slots_data_is_prefects_concurrency_status() -> None:
    data = render.slots_data(slots_fixture(per_queue_limit=2)[0], NOW)
    assert (data["pool"], data["activeSlots"], data["concurrencyLimit"]) == ("etl", 5, 8)
    high = data["queues"][0]
    assert (high["name"], high["activeSlots"], high["concurrencyLimit"], high["flowRunCount"]) == (
        "etl-high",
        3,
        4,
        3,
    )
    assert high["flowRuns"][0] == {
        "name": "r-3",
        "state": "Cancelling",
        "stateName": "Cancelling",
        "worker": "w1",
        "slotAcquiredAt": "2026-01-01T12:05:00Z",
        "heldSeconds": 300,
    }
    assert len(high["flowRuns"]) == 2
    assert data["queues"][2]["exists"] is False
    json.dumps(data)


def test_slots_view_of_a_pool_without_queues() -> None:
    bare = concurrency_status(pool("etl"), [], [])
    assert render.slots_view(bare, NOW).splitlines()[1:] == ["  no queues", "", "  no slot holders"]


# -- queue set-priority to the value already asked for ---------------------------------------------


def test_asking_again_for_a_held_priority_says_there_is_nothing_to_change() -> None:
    text = render.same_priority(queue("etl-high", priority=1), None, "workpools")
    assert text == 'WorkQueue "etl-high" already asks for and runs at priority 1; nothing to change'


def test_asking_again_for_a_pushed_priority_explains_why_nothing_moves_and_what_does() -> None:
    text = render.same_priority(queue("etl-high", priority=1, effective=2), "etl-low", "kubectl workpools")
    assert text == (
        'WorkQueue "etl-high" already asks for priority 1 (spec.priority) and runs at priority 2: queue etl-low '
        "holds 1, asked for later. Nothing was written: writing the same value again is not a change the "
        "operator can see, so it cannot take 1 back (Prefect's update would). To give it 1 now and push the "
        "others down, run `kubectl workpools queue reorder etl etl-high=1` (rewrites spec.priority of the "
        "queues it moves)."
    )


def test_asking_again_for_a_priority_not_resolved_yet_says_so() -> None:
    unresolved = queue("etl-high", priority=1).model_copy(deep=True)
    unresolved.status.effective_priority = None
    assert render.same_priority(unresolved, None, "workpools") == (
        'WorkQueue "etl-high" already asks for priority 1; nothing to change (the operator has not resolved it '
        "yet: see status.effectivePriority)"
    )


def test_run_details_show_the_attempt_and_the_last_failure() -> None:
    retried = run("r1", state="Scheduled", state_name="AwaitingRetry", worker=None)
    retried.spec.retries, retried.spec.retry_delay_seconds = 3, 30
    retried.status.attempt = 2
    retried.status.last_failure = Failure(attempt=1, state=StateType.FAILED, message="boom\nexit code 1")
    text = render.run_details(retried, NOW)
    assert "Attempt:           2 of 4, 30s apart" in text
    assert "Last failure:      attempt 1 Failed: exit code 1" in text
    single = render.run_details(run("r2"), NOW)
    assert "Attempt:           -" in single  # a single try: nothing to say
    assert "Last failure:      -" in single


def test_pool_details_list_the_lifecycle_policies() -> None:
    text = render.pool_details(pool(spec={"finishedRunTTLSeconds": 3600}), NOW)
    assert "Policies:           cancellingTimeout=300s, finishedRunTTL=3600s" in text


def test_late_policies_read_as_a_phrase() -> None:
    text = render.pool_details(
        pool(spec={"latePolicy": {"action": "Cancel", "afterSeconds": 60, "skipToLatest": True}}), NOW
    )
    assert "latePolicy=Cancel after 60s, skip to latest" in text
    assert render.late_policy(LatePolicy(skip_to_latest=True)) == "Run, skip to latest"


def test_pool_details_show_the_effective_limit_its_window_and_the_other_flow_control() -> None:
    window = {"name": "night", "from": "22:00", "to": "06:00", "timeZone": "Europe/Berlin", "limit": 1}
    spec = {
        "concurrencyLimitSchedule": [window, {"cron": "0 9 * * 1-5", "durationSeconds": 3600, "limit": 0}],
        "concurrencyLimitPerKey": [{"label": "team", "limit": 2}, {"parameter": "dataset", "limit": 1}],
        "startRate": {"perMinute": 30, "burst": 5},
    }
    condition = {
        "type": "LimitWindow",
        "status": "True",
        "reason": "WindowOpen",
        "message": "window night is open: limit 1",
        "lastTransitionTime": NOW.isoformat(),
    }
    text = render.pool_details(
        pool(limit=8, active=3, spec=spec, slots={"active": 3, "limit": 1}, conditions=[condition]), NOW
    )
    assert "Concurrency limit:  8" in text
    assert "Effective limit:    1 (window night is open: limit 1)" in text
    assert "Limit windows:      night: 1; '0 9 * * 1-5' for 3600s UTC: 0" in text
    assert "Per-key limits:     label team: 2, parameter dataset: 1" in text
    assert "Start rate:         30/min, burst 5" in text
    assert "3/1" in text  # the bar is against the limit in force


def test_pool_details_without_flow_control_have_no_such_lines() -> None:
    text = render.pool_details(pool(limit=8), NOW)
    assert "Effective limit" not in text
    assert "Start rate" not in text


# -- run why -----------------------------------------------------------------------------------------

HELD = Waiting(
    "r3",
    "etl",
    "etl-high",
    StateType.SCHEDULED,
    "Late",
    waiting=True,
    holds=[
        Holding("QueueLimitReached", "queue etl-high has no open slot (limit 2)", lifted_by_time=True),
        Holding("KeyLimitReached", "pool etl runs at most 1 at once per label team; team=a has no room", True),
    ],
    pool_position=Position("pool etl", 2, 12, counted=True),
    queue_position=Position("queue etl-high", 0, 4, counted=True),
    estimate=Estimate(
        datetime.timedelta(minutes=10),
        18,
        3,
        start=NOW + datetime.timedelta(seconds=40),
        earliest=NOW + datetime.timedelta(seconds=25),
        latest=NOW + datetime.timedelta(seconds=70),
    ),
)


def test_run_why_reads_like_describe_with_every_rule_and_the_estimate() -> None:
    assert render.why_view(HELD, NOW).splitlines() == [
        "Run:              r3",
        "Pool:             etl",
        "Queue:            etl-high",
        "State:            Scheduled (Late)",
        "Position:         3rd of 12 admissible in pool etl, 1st of 4 in queue etl-high",
        "Estimated start:  in 40s (range 25s–1m10s), from 18 grants in the last 10m",
        "Held by:",
        "  REASON              MESSAGE",
        "  QueueLimitReached   queue etl-high has no open slot (limit 2)",
        "  KeyLimitReached     pool etl runs at most 1 at once per label team; team=a has no room",
    ]


def test_run_why_data_for_scripts() -> None:
    data = render.why_data(HELD, NOW)
    assert data["position"] == {
        "pool": {"scope": "pool etl", "rank": 3, "ahead": 2, "admissible": 12},
        "queue": {"scope": "queue etl-high", "rank": 1, "ahead": 0, "admissible": 4},
    }
    assert [h["reason"] for h in data["heldBy"]] == ["QueueLimitReached", "KeyLimitReached"]
    assert data["estimate"] == {
        "start": "2026-01-01T12:10:40Z",
        "earliest": "2026-01-01T12:10:25Z",
        "latest": "2026-01-01T12:11:10Z",
        "inSeconds": 40.0,
        "rangeSeconds": [25.0, 70.0],
        "grantsNeeded": 3,
        "grantsInWindow": 18,
        "windowSeconds": 600.0,
        "unknown": None,
    }
    assert json.loads(emit(View(data, ""), "json")) == data


@pytest.mark.parametrize(
    ("why", "lines"),
    [
        pytest.param(
            replace(HELD, holds=[], estimate=Estimate(datetime.timedelta(minutes=10), 0, 0, NOW, NOW, NOW)),
            ["Estimated start:  now (nothing holds it)", "Held by:  nothing: the next admission pass grants it"],
            id="granted-next",
        ),
        pytest.param(
            replace(
                HELD,
                pool_position=Position("pool etl", 4, 12, counted=False),
                queue_position=Position("queue etl-high", 1, 4, counted=False),
                estimate=Estimate(datetime.timedelta(minutes=10), 1, unknown="WorkQueue etl-high is paused: ..."),
            ),
            [
                "Position:         not admissible itself; 4 of the 12 admissible runs of pool etl come before it, "
                "1 of 4 in queue etl-high",
                "Estimated start:  none: WorkQueue etl-high is paused: ...",
            ],
            id="not-admissible-no-estimate",
        ),
        pytest.param(
            replace(HELD, state=StateType.RUNNING, state_name="Running", waiting=False, note="running on worker w1"),
            ["State:    Running", "Waiting:  no: running on worker w1"],
            id="running",
        ),
    ],
)
def test_run_why_other_cases(why: Waiting, lines: list[str]) -> None:
    text = render.why_view(why, NOW).splitlines()
    assert all(line in text for line in lines), text


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (102, "102nd"),
        (111, "111th"),
    ],
)
def test_ordinal(n: int, shown: str) -> None:
    assert render.ordinal(n) == shown
