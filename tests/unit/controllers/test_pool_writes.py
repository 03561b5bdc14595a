"""How the pool reconciler writes (controllers/pools.py), with a scripted transport in place of
the API server: only the order and outcome of writes are under test here, so each call answers
what the case needs (the integration tests run the same code against a real API server).

Aspects: assume, then write (a grant on the wire counts against the next pass's limits; one of
unknown outcome holds its slot until read back, and is sent again if the read shows it not landed;
a refused one is forgotten and the pool woken); the bookkeeping lane (a waiting run's hold is
written once, after a delay, and never for a run granted first; a status is written at most once
per interval, the latest one); a worker is deleted for its TTL only on the version judged; the
pool's worker counts are written after the Worker phases they count have landed; a pass woken
before the next full one is due only grants, from the heads of the queues' lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import pytest

from tests.builders import T0
from tests.unit.core.run_support import DEFAULT_QUEUE, flowrun, merge, wkr, wp, wq
from workpools.api.base import Resource, to_json
from workpools.api.meta import API_VERSION, ObjectKey
from workpools.api.states import StateType
from workpools.cache import wakeups
from workpools.cache.store import Store
from workpools.cache.wakeups import Pacing, Wakeups
from workpools.client import errors
from workpools.client.events import event_name
from workpools.client.resources import WORKERS
from workpools.client.transport import ResourceType
from workpools.controllers import metrics, pools, writers
from workpools.controllers.runtime import Runtime
from workpools.core.backlog import admissible_backlog
from workpools.core.runs import RunChange

POOL = ObjectKey("ns", "p")
Answer = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ScriptedTransport:
    """Answers each call with the script's coroutine for that verb; records every call."""

    def __init__(self, **answers: Answer) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def _call(self, verb: str, name: str, options: dict[str, Any]) -> Any:
        self.calls.append((verb, name, options))
        return await self.answers[verb](name, options)

    async def patch(self, rt: ResourceType, namespace: str, name: str, patch: Any, **options: Any) -> Any:
        return await self._call("patch", name, {"kind": rt.kind, "patch": patch, **options})

    async def create(self, rt: ResourceType, namespace: str, body: Any, **options: Any) -> Any:
        return await self._call("create", body["metadata"].get("name", ""), {"kind": rt.kind, "body": body})

    async def get(self, rt: ResourceType, namespace: str, name: str) -> Any:
        return await self._call("get", name, {})

    async def delete(self, rt: ResourceType, namespace: str, name: str, **options: Any) -> None:
        await self._call("delete", name, options)


@pytest.fixture(autouse=True)
def every_pass_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases call passes directly, one after the other, each to decide everything; pacing has a
    case of its own."""
    monkeypatch.setattr(wakeups, "FULL_PASS_GAP_MAX", 0.0)


def runtime(transport: ScriptedTransport) -> Runtime:
    async def reconcile(pool: ObjectKey) -> None:
        return None

    store = Store(clock=lambda: T0)
    return Runtime(transport=transport, store=store, wakeups=Wakeups(reconcile), clock=lambda: T0)  # type: ignore[arg-type]


def stored(rt: Runtime, *objects: Resource) -> None:
    for obj in objects:
        obj.metadata.uid, obj.metadata.resource_version = f"uid-{obj.metadata.name}", "1"
        rt.store.put({"apiVersion": API_VERSION, "kind": obj.KIND, **to_json(obj, as_read=True)})


def as_patched(rt: Runtime, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """What the API server answers to a status patch of the object the store holds."""
    members = {"WorkPool": rt.store.pools.values(), "WorkQueue": rt.store.queues.of(POOL)}
    objects = {"Worker": rt.store.workers.of(POOL), "FlowRun": rt.store.runs.of(POOL), **members}
    obj = next(o for o in objects[kind] if o.metadata.name == name)
    body = merge({"apiVersion": API_VERSION, "kind": kind, **to_json(obj, as_read=True)}, patch)
    body["metadata"]["resourceVersion"] = str(int(obj.metadata.resource_version or "1") + 1)
    return body


def granted(transport: ScriptedTransport) -> list[str]:
    """The runs a grant was sent for, in order."""
    return [n for verb, n, o in transport.calls if verb == "patch" and o["patch"]["status"].get("state") == "Pending"]


def two_runs_behind_a_limit_of_one(rt: Runtime) -> None:
    pool = wp(concurrencyLimit=1)
    pool.status.default_queue = DEFAULT_QUEUE
    stored(
        rt,
        pool,
        wq(),
        wkr("w"),
        flowrun("a", created=T0 - timedelta(seconds=2)),
        flowrun("b", created=T0 - timedelta(seconds=1)),
    )


def complete(rt: Runtime, name: str) -> None:
    """The run's worker moved it to Completed: its slot is free (as the watch would bring it)."""
    (run,) = (r for r in rt.store.runs.of(POOL) if r.metadata.name == name)
    done = {"apiVersion": API_VERSION, "kind": "FlowRun", **to_json(run, as_read=True)}
    done["status"].update(state="Completed", slot=None)
    done["metadata"]["resourceVersion"] = "9"
    rt.store.put(done)


async def events(name: str, options: dict[str, Any]) -> dict[str, Any]:
    return options["body"]


def echoing() -> tuple[Runtime, ScriptedTransport]:
    """A runtime whose API server applies every status patch and takes every event."""

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    return rt, transport


def grants_held_on_the_wire() -> tuple[Runtime, ScriptedTransport, asyncio.Event]:
    """Two runs behind a limit of one, and an API server that answers a grant once the event is set."""
    on_the_wire = asyncio.Event()

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["patch"]["status"].get("state") == "Pending":
            await on_the_wire.wait()
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    two_runs_behind_a_limit_of_one(rt)
    return rt, transport, on_the_wire


def test_a_grant_on_the_wire_counts_against_the_limit_of_the_next_pass() -> None:
    # Assume, then write: the pass ends with its grant in flight, and the next pass, woken by
    # anything, must not hand the pool's only slot out again meanwhile.
    rt, transport, on_the_wire = grants_held_on_the_wire()

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)  # returns with "a"'s grant still on the wire
        await pools.reconcile_pool(rt, POOL)
        assert granted(transport) == ["a"]
        on_the_wire.set()
        await rt.run_writer.drain()
        await pools.reconcile_pool(rt, POOL)
        await rt.stop_writers()

    asyncio.run(scenario())
    assert granted(transport) == ["a"]
    assert {r.metadata.name: r.status.worker for r in rt.store.runs.of(POOL)} == {"a": "w", "b": None}


def unknown_then(get: Answer, resend: Answer | None = None) -> tuple[Runtime, ScriptedTransport]:
    """Two runs behind a limit of one; "a"'s first grant is reset on the wire (it may have landed,
    or may yet), the read-back answers `get`, a grant sent again answers `resend` (default: lands)."""

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["patch"]["status"].get("state") == "Pending":
            if granted(transport).count(name) == 1:
                raise errors.Unavailable("connection reset by peer", kind="FlowRun", name=name)
            if resend is not None:
                return cast(dict[str, Any], await resend(name, options))
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, get=get, create=events)
    rt = runtime(transport)
    two_runs_behind_a_limit_of_one(rt)
    return rt, transport


def as_stored(rt: Runtime, name: str) -> dict[str, Any]:
    run = next(r for r in rt.store.runs.of(POOL) if r.metadata.name == name)
    return {"apiVersion": API_VERSION, "kind": "FlowRun", **to_json(run, as_read=True)}


def two_passes(rt: Runtime) -> None:
    """A pass, its writes answered, then the next pass and its writes."""

    async def scenario() -> None:
        for _ in range(2):
            await pools.reconcile_pool(rt, POOL)
            await rt.run_writer.drain()
        await rt.stop_writers()

    asyncio.run(scenario())


def test_a_pass_that_grants_many_runs_keeps_a_bounded_number_of_writes_on_the_wire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 10,000-run fill decides 10,000 grants in one pass: they wait in the writer's outbox, and
    # only RUN_WRITES_IN_FLIGHT are on the wire (a task each) at any moment; every one is sent.
    monkeypatch.setattr(writers, "RUN_WRITES_IN_FLIGHT", 3)
    on_the_wire, most = 0, 0

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        nonlocal on_the_wire, most
        run = options["kind"] == "FlowRun"
        on_the_wire += run
        most = max(most, on_the_wire)
        await asyncio.sleep(0.001)
        on_the_wire -= run
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    pool = wp()
    pool.status.default_queue = DEFAULT_QUEUE
    names = [f"r{i:02d}" for i in range(20)]
    stored(rt, pool, wq(), wkr("w"), *(flowrun(n, created=T0 - timedelta(seconds=30 - i)) for i, n in enumerate(names)))

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        assert sum(t.get_name() == "run writes" for t in asyncio.all_tasks()) == 3  # not a task per grant
        await rt.run_writer.drain()
        await rt.stop_writers()

    asyncio.run(scenario())
    assert most == 3
    assert granted(transport) == names  # first decided, first sent
    assert all(r.status.worker == "w" for r in rt.store.runs.of(POOL))


@pytest.mark.parametrize("changed_meanwhile", [False, True])
def test_a_grant_that_lands_as_assumed_wakes_no_pass_and_is_left_to_the_next_full_one(
    monkeypatch: pytest.MonkeyPatch, changed_meanwhile: bool
) -> None:
    # The pass that skipped "a" (its grant on the wire) counted it as granted: its landing as
    # assumed changes no decision, and a pass per landed grant of a 10,000-run fill was most of the
    # operator's CPU. A run that changed again meanwhile (its watch events woke nothing while busy)
    # is decided at once.
    pass_over = asyncio.Event()

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["kind"] == "FlowRun":
            await pass_over.wait()
        answer = as_patched(rt, options["kind"], name, options["patch"])
        if changed_meanwhile and options["kind"] == "FlowRun":
            newer = merge(answer, {"metadata": {"resourceVersion": "9"}, "spec": {"cancel": True}})
            rt.store.put(newer)  # the user's change, seen on the watch before the answer
        return answer

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    two_runs_behind_a_limit_of_one(rt)
    woken: list[ObjectKey] = []
    paced: list[ObjectKey] = []
    monkeypatch.setattr(rt.wakeups, "wake", lambda *pools: woken.extend(pools))
    rt.pacing = Pacing(paced.append)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)  # grants "a"; its statuses step skips "a", on the wire
        pass_over.set()
        await rt.run_writer.drain()
        await asyncio.sleep(0.01)  # the pacing timer, if one was set
        await rt.stop_writers()

    asyncio.run(scenario())
    assert granted(transport) == ["a"]
    assert (set(woken), paced) == (({POOL}, []) if changed_meanwhile else (set(), [POOL]))


def test_a_grant_of_unknown_outcome_holds_its_slot_and_is_sent_again_when_the_read_shows_it_not_landed() -> None:
    # "a"'s grant may still be on its way when the read shows "a" unchanged. Handing the slot to
    # anyone else then ("c", now first in line) would put two runs in it once that request lands;
    # the grant is sent again on the same version instead: one of the two lands, or neither can.
    async def get(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return as_stored(rt, name)  # not landed (yet): the version the grant was decided on

    rt, transport = unknown_then(get)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        assert set(rt.run_writer.unknown(POOL)) == {"a"}
        assert [r.status.worker for r in pools._state(rt, POOL).runs if r.metadata.name == "a"] == ["w"]  # assumed
        stored(rt, flowrun("c", created=T0 - timedelta(seconds=3)))  # ahead of "a" in the line
        await pools.reconcile_pool(rt, POOL)  # reads "a" back, sends its grant again, then decides
        await rt.run_writer.drain()
        await rt.stop_writers()

    asyncio.run(scenario())
    assert [verb for verb, name, _ in transport.calls if name == "a"][:3] == ["patch", "get", "patch"]
    assert granted(transport) == ["a", "a"]
    assert {r.metadata.name: r.status.worker for r in rt.store.runs.of(POOL)} == {"a": "w", "b": None, "c": None}
    assert not rt.run_writer.unknown(POOL)
    assert not rt.run_writer.busy(POOL)


def test_a_grant_of_unknown_outcome_read_back_on_another_version_is_settled_by_the_read() -> None:
    # Either it landed (the read shows it) or its version is gone and it never can: the read is the
    # truth, and nothing is sent again. Here it had landed.
    async def get(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return landed(name)

    rt, transport = unknown_then(get)

    two_passes(rt)
    assert [verb for verb, name, _ in transport.calls if name == "a"] == ["patch", "get"]
    assert granted(transport) == ["a"]
    assert {r.metadata.name: r.status.worker for r in rt.store.runs.of(POOL)} == {"a": "w", "b": None}


def test_a_grant_sent_again_and_refused_is_read_again() -> None:
    # The version moved between the read and the second send (here: the first send landed in
    # between): the second send is refused, and a second read settles it.
    reads = 0

    async def get(name: str, options: dict[str, Any]) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return as_stored(rt, name) if reads == 1 else landed(name)

    async def resend(name: str, options: dict[str, Any]) -> dict[str, Any]:
        raise errors.Conflict("the object has been modified", kind="FlowRun", name=name)

    rt, transport = unknown_then(get, resend)

    two_passes(rt)
    assert [verb for verb, name, _ in transport.calls if name == "a"] == ["patch", "get", "patch", "get"]
    assert {r.metadata.name: r.status.worker for r in rt.store.runs.of(POOL)} == {"a": "w", "b": None}
    assert not rt.run_writer.unknown(POOL)


def test_a_pool_with_a_write_still_unknown_is_not_decided() -> None:
    async def get(name: str, options: dict[str, Any]) -> dict[str, Any]:
        raise errors.Unavailable("connection refused", kind="FlowRun", name=name)

    rt, transport = unknown_then(get)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        with pytest.raises(errors.Unavailable):
            await pools.reconcile_pool(rt, POOL)
        await rt.stop_writers()

    asyncio.run(scenario())
    assert set(rt.run_writer.unknown(POOL)) == {"a"}
    assert granted(transport) == ["a"]


def test_a_refused_grant_is_forgotten_and_the_pool_decided_again() -> None:
    woken: list[ObjectKey] = []

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["patch"]["status"].get("state") == "Pending":
            raise errors.Conflict("the object has been modified", kind="FlowRun", name=name)
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    rt.wakeups.wake = woken.append  # type: ignore[method-assign,assignment]
    two_runs_behind_a_limit_of_one(rt)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        await rt.stop_writers()

    asyncio.run(scenario())
    assert POOL in woken
    assert not rt.run_writer.busy(POOL)
    assert not rt.run_writer.unknown(POOL)


def test_a_run_granted_before_its_hold_was_sent_costs_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # "b" waits behind "a"; its hold (Scheduled, PoolLimitReached) waits HOLD_DELAY in the lane.
    # "a" completes before that, "b" is granted, and its hold is never sent.
    monkeypatch.setattr(writers, "HOLD_DELAY", 0.2)
    monkeypatch.setattr(writers, "HOLD_HORIZON", 0.0)  # no turn expected: HOLD_DELAY alone

    rt, transport = echoing()
    two_runs_behind_a_limit_of_one(rt)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        complete(rt, "a")
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        await asyncio.sleep(0.4)  # past HOLD_DELAY
        await rt.stop_writers()

    asyncio.run(scenario())
    assert [name for verb, name, o in transport.calls if verb == "patch" and o["kind"] == "FlowRun"] == ["a", "b"]


def test_a_waiting_run_gets_one_hold_write_after_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "HOLD_DELAY", 0.1)
    monkeypatch.setattr(writers, "HOLD_HORIZON", 0.0)

    rt, transport = echoing()
    two_runs_behind_a_limit_of_one(rt)

    async def scenario() -> None:
        for _ in range(3):  # passes woken by anything: the hold is submitted each time, sent once
            await pools.reconcile_pool(rt, POOL)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await rt.stop_writers()

    asyncio.run(scenario())
    holds = [o["patch"]["status"] for verb, n, o in transport.calls if verb == "patch" and n == "b"]
    assert len(holds) == 1
    assert [c["reason"] for c in holds[0]["conditions"]] == ["PoolLimitReached"]


def test_a_pass_before_the_next_full_one_is_due_only_grants_and_the_full_one_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wakeups, "FULL_PASS_GAP_MAX", 1.0)
    monkeypatch.setattr(writers, "HOLD_DELAY", 0.05)
    monkeypatch.setattr(writers, "HOLD_HORIZON", 0.0)
    rt, transport = echoing()
    two_runs_behind_a_limit_of_one(rt)
    woken: list[ObjectKey] = []
    rt.pacing = Pacing(woken.append)

    async def scenario() -> None:
        rt.pacing.full_done(POOL, 0.02)  # a full pass just took 20 ms: the next one in 180 ms
        await pools.reconcile_pool(rt, POOL)
        await asyncio.sleep(0.1)
        assert granted(transport) == ["a"]
        assert [(verb, name) for verb, name, _ in transport.calls] == [("patch", "a")]  # no hold, no status
        await asyncio.sleep(0.15)
        assert woken == [POOL]  # the full pass is due
        await pools.reconcile_pool(rt, POOL)
        await asyncio.sleep(0.2)
        await rt.stop_writers()

    asyncio.run(scenario())
    written = {(o["kind"], name) for verb, name, o in transport.calls if verb == "patch"}
    assert {("FlowRun", "b"), ("WorkQueue", DEFAULT_QUEUE), ("WorkPool", "p")} <= written


def steps_timed() -> dict[str, float]:
    """How many of each step of a pass `workpools_pass_step_seconds` has observed so far."""
    return {
        sample.labels["step"]: sample.value
        for sample in metrics.pass_steps.collect()[0].samples
        if sample.name.endswith("_count")
    }


def test_every_synchronous_step_of_a_pass_is_timed_into_the_step_histogram(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loop is held while a step runs: the histogram is how a user sees the stalls (a freed
    # slot is refilled only after the step in progress).
    monkeypatch.setattr(wakeups, "FULL_PASS_GAP_MAX", 5.0)
    rt, _ = echoing()
    two_runs_behind_a_limit_of_one(rt)
    rt.pacing = Pacing(lambda _: None)
    before = steps_timed()

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)  # a full pass: none ran before
        rt.pacing.full_done(POOL, 1.0)  # as if it had taken a second: the next full one is 5 s away
        await pools.reconcile_pool(rt, POOL)  # so this one is a grant pass
        await rt.stop_writers()

    asyncio.run(scenario())
    after = steps_timed()
    timed = {step: after[step] - before.get(step, 0.0) for step in after}
    assert timed == {"lifecycle": 1, "admission": 1, "statuses": 1, "deletions": 1, "deadline": 1, "grant": 1}


def test_a_queues_status_is_written_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "COUNTS_EVERY", 0.3)

    rt, transport = echoing()
    two_runs_behind_a_limit_of_one(rt)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await asyncio.sleep(0.05)  # the first status goes out at once
        rt.store.put(flowrun_body("c"))
        await pools.reconcile_pool(rt, POOL)  # a change of the counts: coalesced
        rt.store.put(flowrun_body("d"))
        await pools.reconcile_pool(rt, POOL)
        await asyncio.sleep(0.1)
        assert queue_writes() == 1
        await asyncio.sleep(0.4)
        await rt.stop_writers()

    def queue_writes() -> int:
        return sum(1 for verb, _, o in transport.calls if verb == "patch" and o["kind"] == "WorkQueue")

    asyncio.run(scenario())
    assert queue_writes() == 2
    assert rt.store.queues.of(POOL)[0].status.scheduled_runs == 3  # b, c, d: the latest counts landed


def landed(name: str) -> dict[str, Any]:
    body = to_json(flowrun(name, state=StateType.PENDING, worker="w"), as_read=True)
    body["metadata"].update({"uid": f"uid-{name}", "resourceVersion": "2"})
    return {"apiVersion": "workpools.dev/v1alpha1", "kind": "FlowRun", **body}


def test_a_waiting_run_whose_turn_is_near_is_granted_without_a_hold_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # "a" and "b" are granted: the queue grants 2 runs a second, so "c", next in line, expects its
    # turn in half a second; its hold waits for that (not HOLD_DELAY), and "a" completing first
    # makes it void.
    monkeypatch.setattr(writers, "HOLD_DELAY", 0.05)
    rt, transport = echoing()
    pool = wp(concurrencyLimit=2)
    pool.status.default_queue = DEFAULT_QUEUE
    runs = [flowrun(name, created=T0 - timedelta(seconds=3 - i)) for i, name in enumerate("abc")]
    stored(rt, pool, wq(), wkr("w"), *runs)

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        assert rt.run_writer.grant_rate(POOL, DEFAULT_QUEUE) == 2.0
        await asyncio.sleep(0.3)  # HOLD_DELAY is long past, the expected turn is not
        complete(rt, "a")
        await pools.reconcile_pool(rt, POOL)
        await rt.run_writer.drain()
        await rt.stop_writers()

    asyncio.run(scenario())
    assert [name for verb, name, o in transport.calls if verb == "patch" and o["kind"] == "FlowRun"] == ["a", "b", "c"]
    assert granted(transport) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("ahead", "rate", "until_scheduled", "delay"),
    [
        (0, 0.0, 0.0, 1.0),  # its queue grants nothing: it says why after HOLD_DELAY
        (9, 5.0, 0.0, 3.0),  # its turn in 2 s: written 1 s after that, unless granted
        (49, 5.0, 0.0, 11.0),  # in 10 s, the horizon
        (50, 5.0, 0.0, 1.0),  # beyond it: a long wait, said at once
        (0, 5.0, 4.0, 5.0),  # not before its scheduled time
        (0, 5.0, 30.0, 1.0),  # scheduled beyond the horizon
    ],
)
def test_a_hold_write_waits_until_the_runs_expected_turn_is_past(
    ahead: int, rate: float, until_scheduled: float, delay: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "HOLD_DELAY", 1.0)
    monkeypatch.setattr(writers, "HOLD_HORIZON", 10.0)
    assert writers.hold_delay(ahead, rate, until_scheduled) == pytest.approx(delay)


def test_a_later_pass_may_postpone_a_hold_but_not_past_the_horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first pass expects the run's turn 0.1 s on (its hold due then); the next one, with a
    # slower grant rate, much later: the hold waits, but leaves HOLD_DELAY + HOLD_HORIZON after
    # it was first submitted, whatever the passes expect.
    monkeypatch.setattr(writers, "HOLD_DELAY", 0.05)
    monkeypatch.setattr(writers, "HOLD_HORIZON", 0.3)
    sent: list[float] = []

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        sent.append(asyncio.get_running_loop().time())
        return as_patched(rt, options["kind"], name, options["patch"])

    rt = runtime(ScriptedTransport(patch=patch, create=events))
    two_runs_behind_a_limit_of_one(rt)
    (b,) = (r for r in rt.store.runs.of(POOL) if r.metadata.name == "b")

    async def scenario() -> float:
        start = asyncio.get_running_loop().time()
        rt.lane.submit_hold(b, POOL, {"message": "waits"}, 0.1)
        await asyncio.sleep(0.05)
        rt.lane.submit_hold(b, POOL, {"message": "waits"}, 10.0)
        await asyncio.sleep(1.0)
        await rt.stop_writers()
        return start

    start = asyncio.run(scenario())
    (at,) = (t - start for t in sent)
    assert 0.3 <= at < 0.9  # not at 0.1 (postponed), nor at 10 (capped at 0.35)


def test_the_grant_rate_counts_the_grants_of_the_window_per_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(writers.time, "monotonic", lambda: now[0])
    rt, _ = echoing()
    writer = rt.run_writer

    async def scenario() -> list[float]:
        rates = [writer.grant_rate(POOL, "q")]
        for i in range(9):
            run = flowrun(f"r{i}", queue="q")
            stored(rt, run)
            writer.launch(POOL, RunChange(run, {"state": "Pending"}, granted_to="w"))
            rates.append(writer.grant_rate(POOL, "q"))
            now[0] += 0.5
        await writer.drain()
        rates.append(writer.grant_rate(POOL, "other"))
        now[0] += writers.GRANT_RATE_WINDOW
        rates.append(writer.grant_rate(POOL, "q"))
        await rt.stop_writers()
        return rates

    rates = asyncio.run(scenario())
    assert rates[:3] == [0.0, 0.0, 2.0]  # none; one grant is no rate; two within 1 s
    assert rates[9] == pytest.approx(9 / 4.0)  # 9 grants over the last 4 s
    assert rates[10:] == [0.0, 0.0]  # another queue's; and all of them older than the window


def test_a_change_of_counts_alone_waits_longer_than_one_of_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers, "STATUS_EVERY", 0.1)
    monkeypatch.setattr(writers, "COUNTS_EVERY", 10.0)
    rt, transport = echoing()
    two_runs_behind_a_limit_of_one(rt)

    def queue_writes() -> list[dict[str, Any]]:
        return [o["patch"]["status"] for verb, _, o in transport.calls if verb == "patch" and o["kind"] == "WorkQueue"]

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await asyncio.sleep(0.05)
        assert len(queue_writes()) == 1  # the first status goes out at once
        rt.store.put(flowrun_body("c"))
        await pools.reconcile_pool(rt, POOL)  # one more run waiting: counts only
        await asyncio.sleep(0.3)
        assert len(queue_writes()) == 1
        (queue,) = rt.store.queues.of(POOL)
        paused = {"apiVersion": API_VERSION, "kind": "WorkQueue", **to_json(queue, as_read=True)}
        paused["spec"]["paused"] = True
        paused["metadata"]["resourceVersion"] = "9"
        rt.store.put(paused)
        await pools.reconcile_pool(rt, POOL)  # its phase changes: written at STATUS_EVERY, counts with it
        await asyncio.sleep(0.3)
        await rt.stop_writers()

    asyncio.run(scenario())
    _, second = queue_writes()
    assert second["phase"] == "Paused"
    assert second["scheduledRuns"] == 2  # b and c ("a" holds the slot)


def flowrun_body(name: str) -> dict[str, Any]:
    run = flowrun(name, created=T0 - timedelta(seconds=1))
    run.metadata.uid, run.metadata.resource_version = f"uid-{name}", "1"
    return {"apiVersion": API_VERSION, "kind": "FlowRun", **to_json(run, as_read=True)}


def test_an_expired_worker_is_deleted_only_in_the_version_judged() -> None:
    async def delete(name: str, options: dict[str, Any]) -> None:
        raise errors.Conflict("the object has been modified", kind="Worker", name=name)  # it beat meanwhile

    transport = ScriptedTransport(delete=delete)
    rt = runtime(transport)
    judged = wkr("w").model_copy(deep=True)
    judged.metadata.resource_version = "41"
    asyncio.run(pools._delete_worker(rt, judged))  # a Conflict is "alive again", not an error
    assert transport.calls == [("delete", "w", {"resource_version": "41"})]


@pytest.mark.parametrize("worker_write_lands", [True, False])
def test_the_pool_counts_worker_phases_only_once_they_landed(worker_write_lands: bool) -> None:
    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["kind"] == "Worker" and not worker_write_lands:
            raise errors.NotFound('workers.workpools.dev "w" not found', kind="Worker", name=name)
        return as_patched(rt, options["kind"], name, options["patch"])

    async def create(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return options["body"]  # events

    transport = ScriptedTransport(patch=patch, create=create)
    rt = runtime(transport)
    pool = wp(concurrencyLimit=1)
    pool.status.default_queue = DEFAULT_QUEUE
    stored(rt, pool, wq(), wkr("w"))  # registered, its first heartbeat seen: to be written Online

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        await asyncio.sleep(0.05)  # the pool's status goes out by the bookkeeping lane
        await rt.stop_writers()

    asyncio.run(scenario())
    patched = [options["kind"] for verb, _, options in transport.calls if verb == "patch"]
    if worker_write_lands:
        assert patched.index("Worker") < patched.index("WorkPool")
        assert rt.store.pools[POOL].status.workers.online == 1
    else:
        assert "WorkPool" not in patched  # online: 1 would count a phase that never landed


def test_a_finished_run_is_deleted_for_its_ttl_only_in_the_version_judged() -> None:
    # "kept" was changed after it was judged (a Conflict); "gone" is deleted and leaves the store.
    async def delete(name: str, options: dict[str, Any]) -> None:
        if name == "kept":
            raise errors.Conflict("the object has been modified", kind="FlowRun", name=name)

    transport = ScriptedTransport(delete=delete)
    rt = runtime(transport)
    ended = T0 - timedelta(hours=2)
    stored(
        rt,
        wp(finishedRunTTLSeconds=60),
        flowrun("kept", state=StateType.COMPLETED, ended=ended),
        flowrun("gone", state=StateType.FAILED, ended=ended),
        flowrun("young", state=StateType.COMPLETED, ended=T0),
        flowrun("running", state=StateType.RUNNING, ended=ended),
    )
    before = rt.deletion_budget.available(T0)
    asyncio.run(pools._delete_finished_runs(rt, POOL, frozenset()))
    assert sorted(transport.calls) == [
        ("delete", "gone", {"resource_version": "1"}),
        ("delete", "kept", {"resource_version": "1"}),
    ]
    assert sorted(r.metadata.name for r in rt.store.runs.of(POOL)) == ["kept", "running", "young"]
    assert rt.deletion_budget.available(T0) == before - 2  # the shared bucket paid for both


def test_a_bookkeeping_write_sends_only_what_the_decision_changed() -> None:
    # The pass saw the worker at its first heartbeat; it beats again before the lane sends the
    # assigned-run count. The write must not carry the older heartbeat back.
    rt, transport = echoing()
    seen = wkr("w", heartbeat=T0 - timedelta(seconds=20))
    stored(rt, seen)
    newer = wkr("w", heartbeat=T0)
    newer.metadata.uid, newer.metadata.resource_version = "uid-w", "2"
    rt.store.put({"apiVersion": API_VERSION, "kind": "Worker", **to_json(newer, as_read=True)})

    async def scenario() -> None:
        rt.lane.submit_status(WORKERS, seen, POOL, seen.status.model_copy(update={"assigned_runs": 3}))
        await asyncio.sleep(0.05)
        await rt.stop_writers()

    asyncio.run(scenario())
    (sent,) = [o["patch"]["status"] for verb, _, o in transport.calls if verb == "patch"]
    assert sent["assignedRuns"] == 3
    assert "lastHeartbeatTime" not in sent
    (worker,) = rt.store.workers.of(POOL)
    assert worker.status.last_heartbeat_time == T0


def test_the_backlog_snapshot_counts_a_grant_on_the_wire_as_made_and_changes_nothing() -> None:
    # Scraped while "a"'s grant is on the wire: "a" holds the pool's only slot, so "b" is held by
    # the limit and no run only lacks a worker. The snapshot leaves sightings and writes as they were.
    rt, transport, on_the_wire = grants_held_on_the_wire()

    def backlog() -> dict[str, int]:
        ((key, state),) = pools.backlog_snapshots(rt)
        assert key == POOL
        return admissible_backlog(state)

    async def scenario() -> None:
        assert backlog() == {DEFAULT_QUEUE: 1}
        await pools.reconcile_pool(rt, POOL)
        sightings, busy = dict(rt.store.sightings[POOL]), set(rt.run_writer.busy(POOL))
        assert backlog() == {DEFAULT_QUEUE: 0}
        assert (dict(rt.store.sightings[POOL]), set(rt.run_writer.busy(POOL))) == (sightings, busy)
        on_the_wire.set()
        await rt.stop_writers()

    asyncio.run(scenario())
    assert granted(transport) == ["a"]


def test_a_refused_offline_write_is_tried_again_by_a_later_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changed meanwhile by our own bookkeeping write, the Worker's watch event wakes nothing, and a
    silence past its reclaim moment sets no deadline: the pool must be decided again all the same."""
    monkeypatch.setattr(pools, "STALE_RETRY_SECONDS", 0.01)
    woken: list[ObjectKey] = []

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["kind"] == "Worker":
            raise errors.Conflict("the object has been modified", kind="Worker", name=name)
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    rt.wakeups.wake = woken.append  # type: ignore[method-assign,assignment]
    pool = wp(concurrencyLimit=1)
    pool.status.default_queue = DEFAULT_QUEUE
    stored(rt, pool, wq(), wkr("w"))  # its first heartbeat seen: to be written Online, refused here

    async def scenario() -> None:
        await pools.reconcile_pool(rt, POOL)
        assert POOL not in woken  # not at once: a tight loop while the watch lags is what the delay avoids
        await asyncio.sleep(0.05)
        await rt.stop_writers()

    asyncio.run(scenario())
    assert POOL in woken


def test_a_pass_does_not_wait_for_its_events_which_keep_the_time_they_were_decided() -> None:
    """1,000 workers registering mean 1,000 WorkerOnline events: a pass that waited for each held
    its pool (newcomers, grants) for minutes. Posted later, each is still named and stamped by the
    moment the pass decided it, so an object's events list in the order decided."""
    posted: list[dict[str, Any]] = []
    answer_events, all_online_posted = asyncio.Event(), asyncio.Event()

    async def create(name: str, options: dict[str, Any]) -> dict[str, Any]:
        await answer_events.wait()
        posted.append(options["body"])
        if sum(e["reason"] == "WorkerOnline" for e in posted) == len(workers):
            all_online_posted.set()
        return options["body"]

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=create)
    rt = runtime(transport)
    ticks = iter(range(10_000))
    rt.clock = lambda: T0 + timedelta(milliseconds=next(ticks))  # every reading a millisecond later
    pool = wp(concurrencyLimit=1)
    pool.status.default_queue = DEFAULT_QUEUE
    workers = [f"w{i:02d}" for i in range(20)]
    stored(rt, pool, wq(), *(wkr(name) for name in workers))  # each to be written Online, with its event

    async def scenario() -> str:
        await asyncio.wait_for(pools.reconcile_pool(rt, POOL), timeout=5)  # returns with no event answered
        assert posted == []
        passed = event_name("x", rt.clock()).split(".")[1]
        answer_events.set()
        await asyncio.wait_for(all_online_posted.wait(), timeout=5)
        await rt.stop_writers()
        return passed

    passed = asyncio.run(scenario())
    online = [e for e in posted if e["reason"] == "WorkerOnline"]
    assert sorted(e["involvedObject"]["name"] for e in online) == workers
    assert all(e["metadata"]["name"].split(".")[1] < passed for e in posted)  # decided during the pass


def test_a_status_decided_while_the_last_one_is_on_the_wire_leaves_after_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two writes of one object on the wire at once can land in the other order, the older status
    last; its answer is our own write and wakes nothing, so the object kept the older status (CI:
    a pool's `status.queues` stuck at 1, a queue's SCHEDULED at 1 of 2)."""
    monkeypatch.setattr(writers, "STATUS_EVERY", 0.0)
    first_answered = asyncio.Event()
    sent: list[int] = []

    async def patch(name: str, options: dict[str, Any]) -> dict[str, Any]:
        sent.append(options["patch"]["status"]["assignedRuns"])
        if len(sent) == 1:
            await first_answered.wait()
        return as_patched(rt, options["kind"], name, options["patch"])

    transport = ScriptedTransport(patch=patch, create=events)
    rt = runtime(transport)
    worker = wkr("w")
    stored(rt, worker)

    async def scenario() -> None:
        rt.lane.submit_status(WORKERS, worker, POOL, worker.status.model_copy(update={"assigned_runs": 1}))
        await asyncio.sleep(0.05)  # on the wire, unanswered
        rt.lane.submit_status(WORKERS, worker, POOL, worker.status.model_copy(update={"assigned_runs": 2}))
        await asyncio.sleep(0.05)
        assert sent == [1]  # the second waits for the first one's answer
        first_answered.set()
        await asyncio.sleep(0.05)
        await rt.stop_writers()

    asyncio.run(scenario())
    assert sent == [1, 2]
    assert rt.store.workers.of(POOL)[0].status.assigned_runs == 2
