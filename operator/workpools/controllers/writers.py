"""The operator's writers: run writes that never block the next decision, and the bookkeeping lane.

Grants go first. A run write (a grant, or a lifecycle move: reclaim, cancel, retry) goes into an
outbox that RUN_WRITES_IN_FLIGHT senders empty, first first, and the pass that decided it ends
without waiting for it (`RunWriter`). While it is queued or on the wire its run is *busy*: no
pass decides anything else about it, and a grant counts as made (*assumed*, Kueue's scheduler
pattern) against the pool, its queue and its worker, so the next pass may hand out the next slot
without exceeding a limit. The outcome settles it: landed, the store takes the response (a grant
that landed as assumed wakes no pass); refused (Conflict, NotFound), the assumption is dropped
and the pool decided again; unknown (a timeout, a reset), it stays assumed until it is read back
(`RunWriter.read_back`). A read that still shows the version the write was decided on does not
settle it: the request may yet land (delayed on the way), so it is sent again on that same
version, and at most one of the two can land.

Everything else the operator writes is bookkeeping, and goes through `StatusLane`: status-only
patches (a waiting run's Scheduled stamp, Late mark and hold reason; pool, queue and worker
statuses), coalesced per object (only the latest is sent), each object at most once per
`STATUS_EVERY` (`COUNTS_EVERY` when only counts changed), a few at a time. A run's hold waits
until its turn is expected to be past (`hold_delay`): a run granted meanwhile needs no such write
at all, so a run admitted within that time costs one write in all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workpools.api.base import Resource, to_json
from workpools.api.flowrun import FlowRun, FlowRunStatus, queue_of
from workpools.api.meta import ObjectKey
from workpools.client import errors
from workpools.client.patches import apply_merge_patch, merge_patch
from workpools.client.resources import FLOWRUNS
from workpools.client.transport import ResourceType
from workpools.controllers import metrics
from workpools.controllers.events import FIELD_MANAGER, post_event
from workpools.core import runs, selection

if TYPE_CHECKING:
    from workpools.controllers.runtime import Runtime

logger = logging.getLogger(__name__)

RUN_WRITES_IN_FLIGHT = 32
"""Run writes on the wire at once, all pools together (they touch distinct objects)."""

LANE_IN_FLIGHT = 4
"""Bookkeeping writes on the wire at once: a small share of the API server, so grants keep the rest."""

HOLD_DELAY = 1.0
"""Seconds a waiting run's hold write waits at least: a run granted meanwhile needs none."""

HOLD_HORIZON = 10.0
"""A waiting run whose turn is expected within this many seconds has its hold write wait until
that turn is past (`hold_delay`); one expected to wait longer says why after HOLD_DELAY."""

GRANT_RATE_WINDOW = 10.0
"""Seconds of a queue's latest grants its grant rate is measured over (`RunWriter.grant_rate`)."""

STATUS_EVERY = 1.0
"""Seconds between two bookkeeping writes of one object: a drain writes a pool's counts once a second, not per grant."""

COUNTS_EVERY = 5.0
"""Seconds between two bookkeeping writes of one object when only its counts changed (`COUNTS`),
as Kueue refreshes a ClusterQueue's pending workloads: a drain's pool, queues and workers change
their counts with every grant, and wrote them once a second each: 0.1 writes per run of 1,000.
A change of anything else (a phase, a condition, a priority) goes at STATUS_EVERY, counts with it."""

COUNTS = frozenset({"slots", "workers", "queues", "scheduledRuns", "lateRuns", "assignedRuns", "lastPolled"})
"""The status fields of pools, queues and workers that only count (serialized names)."""

READS_IN_FLIGHT = 16
"""Read-backs of one pool on the wire at once."""

RETRY_FIRST, RETRY_MAX = 1.0, 16.0
"""Backoff of a bookkeeping write that failed (doubling): never a retry storm."""


# -- run writes ----------------------------------------------------------------------------------


class RunWriter:
    """Run status writes in flight, and the grants assumed while they are."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._gate = asyncio.Semaphore(RUN_WRITES_IN_FLIGHT)
        self._busy: defaultdict[ObjectKey, dict[str, FlowRun | None]] = defaultdict(dict)
        """Per pool, runs with a write in flight (or of unknown outcome): the run as its grant
        makes it (assumed), or None for a write that holds no slot."""
        self._outbox: collections.deque[tuple[ObjectKey, runs.RunChange]] = collections.deque()
        """Writes decided and not sent yet, first first: a pass that grants 10,000 runs queues
        10,000 writes here, not 10,000 tasks."""
        self._senders: set[asyncio.Task[None]] = set()
        self._skipped: defaultdict[ObjectKey, set[str]] = defaultdict(set)
        """Per pool, busy runs a pass decided nothing about: their settling wakes the pool again."""
        self._unknown: defaultdict[ObjectKey, dict[str, runs.RunChange]] = defaultdict(dict)
        """Per pool, busy runs whose write has an unknown outcome (a timeout, a reset), with that
        write: they are read back before the pool is decided again."""
        self._granted: dict[tuple[ObjectKey, str], collections.deque[float]] = {}
        """Per pool and queue, when its grants of the last GRANT_RATE_WINDOW seconds were decided."""

    def busy(self, pool: ObjectKey) -> Collection[str]:
        return self._busy.get(pool, {}).keys()

    def unknown(self, pool: ObjectKey) -> Collection[str]:
        """The pool's runs whose write has an unknown outcome: to be read back first."""
        return self._unknown.get(pool, {}).keys()

    def skip(self, pool: ObjectKey) -> frozenset[str]:
        """The pool's busy runs, for a pass that will decide nothing about them (it is woken once they settle)."""
        busy = frozenset(self.busy(pool))
        if busy:
            self._skipped[pool] |= busy
        return busy

    def writing(self, body: dict[str, Any]) -> bool:
        """Whether a write of ours is in flight for this run: its watch events wake nothing, its outcome does."""
        meta = body["metadata"]
        pool = ObjectKey(meta.get("namespace", ""), body.get("spec", {}).get("workPool", ""))
        return meta["name"] in self._busy.get(pool, {})

    def assumed(self, pool: ObjectKey) -> dict[str, FlowRun]:
        """The pool's grants in flight, by run name: each run as its grant makes it."""
        return {name: run for name, run in self._busy.get(pool, {}).items() if run is not None}

    def as_assumed(self, pool: ObjectKey, stored: Sequence[FlowRun]) -> list[FlowRun]:
        """The pool's runs with each grant in flight counted as made."""
        assumed = self._busy.get(pool)
        if not assumed:
            return list(stored)
        return [a if (a := assumed.get(r.metadata.name)) is not None else r for r in stored]

    def grant_rate(self, pool: ObjectKey, queue: str) -> float:
        """Grants per second decided lately from `queue` of `pool`: those of the last
        GRANT_RATE_WINDOW seconds, over the time since the first of them (1 s at least). One
        grant is no rate (0): a run behind a lone grant, as behind a limit of 0, says why at once."""
        times, now = self._granted.get((pool, queue)), time.monotonic()
        if times is None or _within_window(times, now) < 2:
            if times is not None and not times:
                del self._granted[(pool, queue)]
            return 0.0
        return len(times) / max(now - times[0], 1.0)

    def launch(self, pool: ObjectKey, change: runs.RunChange) -> None:
        """Send `change` on the version it was decided on, without waiting for it."""
        name = change.run.metadata.name
        if change.granted_to is not None:
            times, now = self._granted.setdefault((pool, queue_of(change.run)), collections.deque()), time.monotonic()
            times.append(now)
            _within_window(times, now)  # a queue whose runs never wait is never asked its rate
        self._busy[pool][name] = _as_granted(change) if change.granted_to is not None else None
        self._rt.lane.discard_hold(ObjectKey(pool.namespace, name))  # the run's state is decided anew
        self._outbox.append((pool, change))
        if len(self._senders) < RUN_WRITES_IN_FLIGHT:
            sender = asyncio.create_task(self._send_outbox(), name="run writes")
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _send_outbox(self) -> None:
        """One of at most RUN_WRITES_IN_FLIGHT senders: sends the outbox's writes one by one until it is empty."""
        while self._outbox:
            pool, change = self._outbox.popleft()
            try:
                await self._write(pool, change)
            except Exception:  # its outcome is settled by then (`_landed`): the next writes still go
                logger.exception("after the write of run %s", change.run.metadata.name)

    def mark_busy(self, pool: ObjectKey, name: str) -> None:
        """A write that holds no slot is in flight for the run (a bookkeeping one): no decision about it meanwhile."""
        self._busy[pool][name] = None

    def settle(self, pool: ObjectKey, name: str, *, as_assumed: bool = False) -> None:
        """The outcome of the run's write is known (or read back): decide about it again.

        `as_assumed`: a grant that landed as it was counted while on the wire. It changes no grant
        (every pass counted it as made), so a pass that skipped it leaves it to the next full pass,
        when that is due (cache/wakeups.Pacing): waking one per landed grant, in a 10,000-run fill,
        ran a pass per grant, each walking the pool's 10,000 slot holders."""
        for pending in (self._busy, self._unknown):
            of_pool = pending.get(pool)
            if of_pool is not None:
                of_pool.pop(name, None)
                if not of_pool:
                    del pending[pool]
        skipped = self._skipped.get(pool)
        if skipped is not None and name in skipped:
            skipped.discard(name)
            if not skipped:
                del self._skipped[pool]
            if as_assumed:
                self._rt.pacing.defer(pool)
            else:
                self._rt.wakeups.wake(pool)  # a pass ran without it: decide about it now

    async def _write(self, pool: ObjectKey, change: runs.RunChange) -> None:
        rt, name = self._rt, change.run.metadata.name
        try:
            updated = await self._send(change)
        except (errors.Conflict, errors.NotFound):
            self.settle(pool, name)  # it moved on, or is gone: decided again on what it is now
            rt.wakeups.wake(pool)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # It may have landed, or may yet: it stays busy (a grant stays assumed) until read back.
            self._unknown[pool][name] = change
            logger.warning("write of run %s has an unknown outcome (%s); reading it back", name, error)
            rt.wakeups.wake(pool)
            return
        await self._landed(pool, change, updated)

    async def _send(self, change: runs.RunChange) -> dict[str, Any]:
        """The write, on the version it was decided on (so at most one send of it can ever land)."""
        meta = change.run.metadata
        async with self._gate:
            updated: dict[str, Any] = await self._rt.transport.patch(
                FLOWRUNS,
                meta.namespace or "",
                meta.name,
                {"status": change.patch},
                status=True,
                field_manager=FIELD_MANAGER,
                resource_version=meta.resource_version,
            )
        return updated

    async def _landed(self, pool: ObjectKey, change: runs.RunChange, updated: dict[str, Any]) -> None:
        rt, run = self._rt, change.run
        rt.store.put(updated)
        # A landed grant changes no decision (it was counted as made), unless the run changed again
        # meanwhile (its watch events woke nothing while it was busy).
        as_assumed = change.granted_to is not None and not _changed_since(rt, updated)
        self.settle(pool, run.metadata.name, as_assumed=as_assumed)
        if not as_assumed:
            rt.wakeups.wake(pool)
        if change.granted_to is not None:
            admissible = max(selection.scheduled_time(run), run.metadata.creation_timestamp or rt.clock())
            metrics.record_grant(pool, queue_of(run), admissible, rt.clock())
        if change.reclaim is not None:
            metrics.record_reclaim(pool, change.reclaim)
        if change.event is not None:
            await post_event(rt, run, change.event)

    async def read_back(self, pool: ObjectKey) -> None:
        """Learn the outcome of the pool's writes that failed ambiguously; raises if one is still
        unknown (then the pool is not decided: the pass fails and is retried)."""
        unknown = self._unknown.get(pool)
        if not unknown:
            return
        gate = asyncio.Semaphore(READS_IN_FLIGHT)

        async def resolve(name: str, change: runs.RunChange) -> None:
            async with gate:
                await self._resolve(pool, name, change)

        outcomes = await asyncio.gather(*(resolve(*item) for item in list(unknown.items())), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _resolve(self, pool: ObjectKey, name: str, change: runs.RunChange) -> None:
        rt, decided_on = self._rt, change.run.metadata.resource_version
        while True:
            try:
                body = await rt.transport.get(FLOWRUNS, pool.namespace, name)
            except errors.NotFound:
                rt.store.remove({"kind": "FlowRun", "metadata": {"namespace": pool.namespace, "name": name}})
                break
            if body["metadata"]["resourceVersion"] != decided_on:
                rt.store.put(body)  # it landed, or it never can (its version is gone): the read is the truth
                break
            # Not landed yet, but the request may still be on its way: sent again on the same
            # version, so that one of the two lands now or neither ever can.
            logger.info("write of run %s not landed when read back; sending it again on version %s", name, decided_on)
            try:
                updated = await self._send(change)
            except (errors.Conflict, errors.NotFound):
                continue  # moved on meanwhile (the first send landed, or another change): read what it is
            await self._landed(pool, change, updated)
            return
        self.settle(pool, name)  # no longer assumed: the read shows what happened

    async def drain(self) -> None:
        """Wait until no run write is queued or on the wire."""
        while self._senders:
            await asyncio.gather(*list(self._senders), return_exceptions=True)

    async def stop(self) -> None:
        self._outbox.clear()
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)


def _within_window(times: collections.deque[float], now: float) -> int:
    """Drop the grant times older than GRANT_RATE_WINDOW; how many are left."""
    while times and times[0] <= now - GRANT_RATE_WINDOW:
        times.popleft()
    return len(times)


def _as_granted(change: runs.RunChange) -> FlowRun:
    """The run as its grant write makes it: what the next decisions count until the outcome is known.

    Only the status is new; metadata and spec are the stored run's own objects (a whole copy per
    grant in flight was tens of MB when a 10,000-run fill decided every grant at once)."""
    run = change.run
    status = FlowRunStatus.model_validate(apply_merge_patch(to_json(run.status, as_read=True), change.patch))
    return run.model_copy(update={"status": status})


# -- bookkeeping ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Bookkeeping:
    resource: ResourceType
    key: ObjectKey
    pool: ObjectKey
    patch: dict[str, Any]
    """The status merge patch: only what the decisions changed, so fields others write (a worker's
    heartbeat) are never sent back as they were."""
    planned: Any
    """The status model as the patch makes it, for passes to decide on (None for a run's hold)."""
    version: str | None
    """A run's: the version its hold was decided on (the write lands only there)."""
    due: float
    failures: int = 0
    since: float = 0.0
    """A run's: when its hold was first submitted (it leaves HOLD_DELAY + HOLD_HORIZON later at the latest)."""


class StatusLane:
    """Status-only writes, coalesced per object, after the grants (see the module's docstring)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._gate = asyncio.Semaphore(LANE_IN_FLIGHT)
        self._pending = _Entries()
        self._sending = _Entries()
        self._queue: list[tuple[float, int, tuple[str, ObjectKey]]] = []
        self._order = itertools.count()
        self._sent_at: dict[tuple[str, ObjectKey], float] = {}
        self._news = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def submit_status(self, resource: ResourceType, obj: Resource, pool: ObjectKey, status: Any) -> None:
        """Make `obj`'s status `status` (a model; `obj` as the pass saw it, this lane's plans included):
        sent once the object's last bookkeeping write is STATUS_EVERY old (COUNTS_EVERY for counts only)."""
        key = (resource.kind, ObjectKey(obj.metadata.namespace or "", obj.metadata.name))
        patch = self.take(resource, key[1], _delta(obj, status))
        if not patch:
            return
        every = COUNTS_EVERY if patch.keys() <= COUNTS else STATUS_EVERY
        due = max(time.monotonic(), self._sent_at.get(key, 0.0) + every)
        self._submit(key, _Bookkeeping(resource, key[1], pool, patch, status, None, due))

    def submit_hold(self, run: FlowRun, pool: ObjectKey, patch: dict[str, Any], delay: float = HOLD_DELAY) -> None:
        """Write a waiting run's status `patch` on the version decided, `delay` seconds from now
        (`hold_delay`: each pass says when it expects the run's turn, from the latest grant rate),
        and HOLD_DELAY + HOLD_HORIZON after its first submission at the latest."""
        key = (FLOWRUNS.kind, ObjectKey(run.metadata.namespace or "", run.metadata.name))
        earlier, now = self._pending.get(key), time.monotonic()
        since = earlier.since if earlier is not None else now
        due = min(now + delay, since + HOLD_DELAY + HOLD_HORIZON)
        self._submit(
            key, _Bookkeeping(FLOWRUNS, key[1], pool, patch, None, run.metadata.resource_version, due, since=since)
        )

    def take(self, resource: ResourceType, key: ObjectKey, patch: dict[str, Any] | None = None) -> dict[str, Any]:
        """What is pending for the object, with `patch` on top, taken out of the lane (to be sent now,
        or submitted again as one)."""
        earlier = self._pending.pop((resource.kind, key), None)
        if earlier is None:
            return patch or {}
        return _compose(earlier.patch, patch or {})

    def discard_hold(self, key: ObjectKey) -> None:
        """A run's state is decided anew (a write of it leaves now): its pending hold is void."""
        self._pending.pop((FLOWRUNS.kind, key), None)

    def planned(self, resource: ResourceType, obj: Resource) -> Any:
        """The status this lane is about to write to `obj` (pending or on the wire), else None.

        Passes decide on it as if written: the same decision is not made twice, nor its events posted twice.
        """
        key = (resource.kind, ObjectKey(obj.metadata.namespace or "", obj.metadata.name))
        entry = self._pending.get(key) or self._sending.get(key)
        return entry.planned if entry is not None else None

    def planned_in(self, resource: ResourceType, namespace: str) -> dict[str, Any]:
        """`planned` of every object of `resource` in `namespace` that has a write here, by name: one
        walk over this lane's entries of that kind, not a lookup per object (a pool's 1,000 workers,
        per step), nor over the runs' holds (10,000 of them while a paused pool fills)."""
        found: dict[str, Any] = {}
        for entries in (self._sending, self._pending):  # pending last: it wins, as in `planned`
            of_kind = entries.of_kind(resource.kind)
            found.update((k.name, e.planned) for k, e in of_kind.items() if k.namespace == namespace)
        return found

    def _submit(self, key: tuple[str, ObjectKey], entry: _Bookkeeping) -> None:
        earlier = self._pending.get(key)
        self._pending[key] = entry
        if earlier is not None and earlier.due == entry.due:
            return  # its place in the queue stays (one with another due is skipped when it comes up)
        heapq.heappush(self._queue, (entry.due, next(self._order), key))
        self._news.set()
        if self._loop is None:
            self._loop = asyncio.create_task(self._send_due(), name="bookkeeping lane")

    async def _send_due(self) -> None:
        while True:
            if not self._queue:
                self._news.clear()
                await self._news.wait()
                continue
            due, _, key = self._queue[0]
            entry = self._pending.get(key)
            if entry is None or entry.due != due:
                heapq.heappop(self._queue)  # sent, discarded or moved
                continue
            wait = due - time.monotonic()
            if wait > 0:
                self._news.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: in 3.11 it can swallow a cancellation
                        await self._news.wait()
                continue
            heapq.heappop(self._queue)
            if key in self._sending:
                # One write per object on the wire: two could land in the other order, the older
                # status last, and its answer (our own write) wakes nothing to set it right.
                continue  # queued again when the one on the wire has its answer (`_send`)
            del self._pending[key]
            await self._gate.acquire()
            self._sending[key] = entry
            task = asyncio.create_task(self._send(key, entry), name=f"bookkeeping {key[0]} {key[1]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, key: tuple[str, ObjectKey], entry: _Bookkeeping) -> None:
        try:
            if entry.resource is FLOWRUNS:
                await self._write_hold(entry)
            else:
                await send_status(self._rt, entry.resource, entry.key, entry.patch)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if entry.resource is FLOWRUNS:  # a run's hold is decided again by the pass this wakes
                logger.warning("status write of run %s failed (%s)", key[1], error)
                self._rt.wakeups.wake(entry.pool)
                return
            entry.failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (entry.failures - 1))
            logger.warning("status write of %s %s failed (%s); again in %.0fs", key[0], key[1], error, delay)
            newer = self._pending.get(key)
            entry.patch = _compose(entry.patch, newer.patch) if newer is not None else entry.patch
            entry.planned = newer.planned if newer is not None else entry.planned
            entry.due = time.monotonic() + delay
            self._pending.pop(key, None)
            self._submit(key, entry)
        finally:
            self._sending.pop(key, None)
            if entry.resource is not FLOWRUNS:
                self._sent_at[key] = time.monotonic()
            self._gate.release()
            if (waiting := self._pending.get(key)) is not None:  # decided while this one was on the wire:
                heapq.heappush(self._queue, (waiting.due, next(self._order), key))  # it leaves now, when due
                self._news.set()

    async def _write_hold(self, entry: _Bookkeeping) -> None:
        rt, key = self._rt, entry.key
        run = rt.store.runs.by_key.get(key)
        moved = run is None or run.metadata.resource_version != entry.version
        if moved or key.name in rt.run_writer.busy(entry.pool):
            return  # it moved on since the hold was decided: the pass its change woke decides again
        rt.run_writer.mark_busy(entry.pool, key.name)
        try:
            landed = await send_status(rt, FLOWRUNS, key, entry.patch, entry.version)
        finally:
            rt.run_writer.settle(entry.pool, key.name)
        if landed is None or _changed_since(rt, landed):
            rt.wakeups.wake(entry.pool)

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._loop] if self._loop is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Entries:
    """The lane's entries by (kind, object), kept per kind: `planned_in` walks one kind's only."""

    def __init__(self) -> None:
        self._by_kind: defaultdict[str, dict[ObjectKey, _Bookkeeping]] = defaultdict(dict)

    def of_kind(self, kind: str) -> dict[ObjectKey, _Bookkeeping]:
        return self._by_kind.get(kind, {})

    def get(self, key: tuple[str, ObjectKey]) -> _Bookkeeping | None:
        return self.of_kind(key[0]).get(key[1])

    def pop(self, key: tuple[str, ObjectKey], default: None = None) -> _Bookkeeping | None:
        return self.of_kind(key[0]).pop(key[1], default)

    def __setitem__(self, key: tuple[str, ObjectKey], entry: _Bookkeeping) -> None:
        self._by_kind[key[0]][key[1]] = entry

    def __delitem__(self, key: tuple[str, ObjectKey]) -> None:
        del self._by_kind[key[0]][key[1]]

    def __contains__(self, key: tuple[str, ObjectKey]) -> bool:
        return key[1] in self.of_kind(key[0])


def hold_delay(ahead: int, grants_per_second: float, until_scheduled: float = 0.0) -> float:
    """Seconds a waiting run's hold write waits, for a run with `ahead` runs before it in its
    queue's line, whose queue granted `grants_per_second` lately, and whose scheduled time is
    `until_scheduled` seconds away.

    Its turn is expected after `(ahead + 1) / grants_per_second` seconds (not before its scheduled
    time): within HOLD_HORIZON, the write waits until that turn is HOLD_DELAY past, since a run
    granted by then needs no write at all (a drain's runs wait seconds each: their holds were 0.3
    writes per run of 1,000). A run expected to wait longer, or in a queue that grants nothing,
    is the one whose reason a person looks for: written after HOLD_DELAY.
    """
    if grants_per_second <= 0:
        return HOLD_DELAY
    turn = max((ahead + 1) / grants_per_second, until_scheduled)
    return turn + HOLD_DELAY if turn <= HOLD_HORIZON else HOLD_DELAY


def _delta(obj: Resource, status: Any) -> dict[str, Any]:
    """The status merge patch from what `obj` shows to `status`."""
    return merge_patch(to_json(obj.status, as_read=True), to_json(status))  # type: ignore[attr-defined]


def _compose(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """One merge patch that does what `first` and then `then` do."""
    composed = dict(first)
    for key, value in then.items():
        before = composed.get(key)
        composed[key] = _compose(before, value) if isinstance(value, dict) and isinstance(before, dict) else value
    return composed


async def write_status(
    rt: Runtime, resource: ResourceType, obj: Resource, status: Any, version: str | None = None
) -> bool:
    """Make `obj`'s status `status` now (`obj` as the pass saw it), with what the lane had pending for it."""
    key = ObjectKey(obj.metadata.namespace or "", obj.metadata.name)
    patch = rt.lane.take(resource, key, _delta(obj, status))
    return not patch or await send_status(rt, resource, key, patch, version) is not None


async def send_status(
    rt: Runtime, resource: ResourceType, key: ObjectKey, patch: dict[str, Any], version: str | None = None
) -> dict[str, Any] | None:
    """Send a status merge patch; the response goes into the store (our own write: it wakes nothing)
    and is returned.

    With `version`, it lands only on that version. None when it did not land (changed meanwhile,
    or gone): the watch event that brings the change wakes the pool again.
    """
    try:
        updated = await rt.transport.patch(
            resource,
            key.namespace,
            key.name,
            {"status": patch},
            status=True,
            field_manager=FIELD_MANAGER,
            resource_version=version,
        )
    except (errors.Conflict, errors.NotFound):
        return None
    rt.store.put(updated)
    return updated


def _changed_since(rt: Runtime, landed: dict[str, Any]) -> bool:
    """Whether the store holds another version of the run than the one our write made (or none)."""
    meta = landed["metadata"]
    stored = rt.store.runs.by_key.get(ObjectKey(meta.get("namespace", ""), meta["name"]))
    return stored is None or stored.metadata.resource_version != meta.get("resourceVersion")
