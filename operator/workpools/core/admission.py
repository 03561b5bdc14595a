"""Admission: which Scheduled runs get a slot now, on which worker; and why the others wait.

One decision per pool, over a snapshot, serialised by the caller. Runs are walked in admission
order (queue effective priority, then scheduled time) and each grant is charged at once to the
pool's and queue's open slots, per-key room and start tokens, and to the worker's room, so the
second grant of a pass sees the first: no limit can be exceeded by one pass. Limits are the
effective ones at `now` (an open window's, core/flowcontrol.py). A run that cannot be bound (no
worker serves its queue, or its key value has no room) does not block the runs behind it: its
slot stays free for them (best effort).

A waiting run's reason names what would have to change for it to be admitted first: the queue's
rules (limit, key limits, start rate), then a worker with room, then the pool's (key limits,
start rate, limit). `PoolLimitReached` therefore means a worker would take the run, so no run
behind it in admission order was granted; so does a pool's `StartRateLimited`.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from workpools.api.flowcontrol import KeyLimit
from workpools.api.states import SLOT_HOLDING, StateType
from workpools.core import flowcontrol
from workpools.core.selection import admission_order
from workpools.core.slots import Slots
from workpools.core.snapshot import FlowControl, PoolView, QueueView, RunView, WorkerView


class HoldReason(StrEnum):
    """Why a Scheduled run is not admitted: the `Admitted=False` condition's reason."""

    POOL_NOT_FOUND = "PoolNotFound"
    POOL_PAUSED = "PoolPaused"
    QUEUE_NOT_FOUND = "QueueNotFound"
    QUEUE_PAUSED = "QueuePaused"
    NOT_YET_SCHEDULED = "NotYetScheduled"
    POOL_LIMIT_REACHED = "PoolLimitReached"
    QUEUE_LIMIT_REACHED = "QueueLimitReached"
    NO_ONLINE_WORKER = "NoOnlineWorker"
    KEY_LIMIT_REACHED = "KeyLimitReached"
    START_RATE_LIMITED = "StartRateLimited"


@dataclass(frozen=True, slots=True)
class Grant:
    run: RunView
    worker: str


@dataclass(frozen=True, slots=True)
class Hold:
    run: RunView
    reason: HoldReason
    message: str  # stable for a given reason and spec, so the condition is rewritten only on real change


@dataclass(frozen=True, slots=True)
class Admission:
    grants: list[Grant]
    holds: list[Hold]
    behind: dict[str, tuple[HoldReason, str]] = field(default_factory=dict)
    """Per queue open to admission, why a ready run of it waits that the pass was not given: one
    behind the heads of its line (core/runs.line_heads), judged against the room as the pass
    leaves it, as every hold is."""


def admit(
    pool_name: str,
    pool: PoolView | None,
    queues: Sequence[QueueView],
    runs: Sequence[RunView],
    workers: Sequence[WorkerView],
    *,
    now: datetime.datetime,
    history: Sequence[RunView] = (),
) -> Admission:
    """`history`: runs that neither wait nor hold a slot any more (finished), whose grant times
    still count against start rates."""
    scheduled = [r for r in runs if r.state is StateType.SCHEDULED]
    if (closed := pool_gate(pool_name, pool)) is not None:
        reason, message = closed
        return Admission([], [Hold(r, reason, message) for r in scheduled])
    assert pool is not None  # pool_gate said so

    by_name = {q.name: q for q in queues}
    holds: list[Hold] = []
    ready: list[RunView] = []
    for run in scheduled:
        held = _gate(run, by_name.get(run.queue), pool_name, now)
        if held is None:
            ready.append(run)
        else:
            holds.append(held)

    done = admission_pass(pool_name, pool, queues, ready, runs, workers, now=now, history=history)
    # Reasons are judged against the room as the pass leaves it, so the next pass over an
    # unchanged pool gives the same reasons (and writes nothing).
    # Whether a worker has room for a queue is the same for every run still waiting in it (the
    # pass's grants are all charged by now): asked once per queue, not once per run.
    served = {q.name: done.served(q.name) for q in queues if not q.paused}
    holds += [_why_waiting(run, done.queues[run.queue], done.pool, served=served[run.queue]) for run in done.waiting]
    behind = {name: waits_behind(name, done.queues[name], done.pool, served=up) for name, up in served.items()}
    return Admission(done.grants, holds, behind)


@dataclass(slots=True)
class Pass:
    """One admission pass over a pool's ready runs, and the pool as the pass leaves it: every
    grant charged to its pool, queue and worker (core/waiting.py judges a run against this too)."""

    grants: list[Grant]
    waiting: list[RunView]
    """Ready runs that got nothing, in admission order."""
    pool: Room
    queues: dict[str, Room]
    workers: Sequence[WorkerView]
    assigned: Counter[str]
    """Runs bound to each worker, this pass's grants included."""

    def served(self, queue: str) -> bool:
        """Whether an Online worker serving `queue` still has room."""
        return pick_worker(self.workers, queue, self.assigned) is not None


def admission_pass(  # noqa: PLR0917 -- admit's own arguments, in its order
    pool_name: str,
    pool: PoolView,
    queues: Sequence[QueueView],
    ready: Sequence[RunView],
    runs: Sequence[RunView],
    workers: Sequence[WorkerView],
    *,
    now: datetime.datetime,
    history: Sequence[RunView] = (),
) -> Pass:
    """Grant `ready` runs (Scheduled, past every gate) in admission order while room and a worker
    allow; `runs` are all the pool's runs (slot holders count), `history` its finished ones."""
    by_name = {q.name: q for q in queues}
    holding = [r for r in runs if r.state in SLOT_HOLDING]
    holding_in: dict[str, list[RunView]] = defaultdict(list)
    for r in holding:
        holding_in[r.queue].append(r)
    # Grant times are read only where a start rate needs them: a pass over a pool without one stays as cheap as before.
    granted_in: dict[str | None, list[datetime.datetime]] = defaultdict(list)
    if pool.flow.start_rate is not None or any(q.flow.start_rate is not None for q in queues):
        for r in (*runs, *history):
            if (t := r.granted_at or r.slot_acquired_at) is not None:
                granted_in[None].append(t)
                granted_in[r.queue].append(t)
    pool_room = Room.of(f"pool {pool_name}", pool.concurrency_limit, pool.flow, holding, granted_in[None], now)
    queue_room = {
        q.name: Room.of(f"queue {q.name}", q.concurrency_limit, q.flow, holding_in[q.name], granted_in[q.name], now)
        for q in queues
    }
    assigned = Counter(r.worker for r in holding if r.worker)
    grants: list[Grant] = []
    waiting: list[RunView] = []
    for run in sorted(ready, key=lambda r: admission_order(r, by_name[r.queue])):
        room = queue_room[run.queue]
        worker = None
        if room.admits(run) and pool_room.admits(run):
            worker = pick_worker(workers, run.queue, assigned)
        if worker is None:
            waiting.append(run)
            continue
        grants.append(Grant(run, worker.name))
        assigned[worker.name] += 1
        pool_room.take(run)
        room.take(run)
    return Pass(grants, waiting, pool_room, queue_room, workers, assigned)


def heads_bound(  # noqa: PLR0917 -- the counts of one queue, each named by its variable
    pool: PoolView,
    queue: QueueView,
    pool_holders: int,
    queue_holders: int,
    worker_room: int | None,
    now: datetime.datetime,
) -> int | None:
    """How many of a queue's first ready runs one pass can grant at most (None: no bound).

    Every run of a queue has the same workers and the same pool and queue room, so within a queue
    runs are granted in their order until the first one that finds none, which stops those behind
    it too; only a per-key limit holds some runs and not the ones behind them (no bound then). A
    pass over the first this many ready runs of each queue's line therefore grants exactly what a
    pass over all of them would. `worker_room`: what the workers that may take the queue's runs
    still take (None: one of them has no limit).
    """
    if pool.flow.per_key or queue.flow.per_key:
        return None
    bounds = [
        Slots(holders, flowcontrol.effective_limit(limit, schedule, now).limit).open
        for holders, limit, schedule in (
            (pool_holders, pool.concurrency_limit, pool.flow.limit_schedule),
            (queue_holders, queue.concurrency_limit, queue.flow.limit_schedule),
        )
    ]
    return min((b for b in (*bounds, worker_room) if b is not None), default=None)


@dataclass(slots=True)
class Room:
    """What a pool or a queue still allows in this pass: slots, room per key value, starts.

    Every grant of the pass is charged at once (`take`), and each only shrinks, so a rule that
    blocks a run after the pass blocked it at its turn too.
    """

    scope: str  # `pool p` or `queue q`: how hold messages name it
    limit: flowcontrol.EffectiveLimit
    open: int | None  # None: unlimited
    flow: FlowControl
    per_key: Counter[tuple[int, str]]  # (rule index, value) → runs holding a slot with that value
    starts: int | None  # grants the start rate allows now; None: no rate
    granted: Sequence[datetime.datetime]  # the grant times `starts` was derived from
    now: datetime.datetime
    full_reason: HoldReason  # PoolLimitReached or QueueLimitReached

    @classmethod
    def of(  # noqa: PLR0917 -- one call site per scope, each argument named by its variable
        cls,
        scope: str,
        base_limit: int | None,
        flow: FlowControl,
        holding: Sequence[RunView],
        granted: Sequence[datetime.datetime],
        now: datetime.datetime,
    ) -> Room:
        limit = flowcontrol.effective_limit(base_limit, flow.limit_schedule, now)
        per_key: Counter[tuple[int, str]] = Counter(
            (index, value)
            for run in holding
            for index, rule in enumerate(flow.per_key)
            if (value := flowcontrol.key_value(rule, run.labels, run.parameters)) is not None
        )
        rate = flow.start_rate
        starts = None if rate is None else flowcontrol.starts_available(granted, rate, now)
        full = HoldReason.POOL_LIMIT_REACHED if scope.startswith("pool ") else HoldReason.QUEUE_LIMIT_REACHED
        return cls(scope, limit, Slots(len(holding), limit.limit).open, flow, per_key, starts, granted, now, full)

    def full(self) -> bool:
        return self.open == 0

    def key_full(self, run: RunView) -> tuple[KeyLimit, str] | None:
        """The first per-key rule this run's value has no room under, with the value."""
        for index, rule in enumerate(self.flow.per_key):
            value = flowcontrol.key_value(rule, run.labels, run.parameters)
            if value is not None and self.per_key[index, value] >= rule.limit:
                return rule, value
        return None

    def rate_limited(self) -> bool:
        return self.starts == 0

    def admits(self, run: RunView) -> bool:
        """Whether this room lets `run` have a grant now (a worker aside)."""
        return not self.full() and self.key_full(run) is None and not self.rate_limited()

    def take(self, run: RunView) -> None:
        if self.open is not None:
            self.open -= 1
        if self.starts is not None:
            self.starts -= 1
        for index, rule in enumerate(self.flow.per_key):
            if (value := flowcontrol.key_value(rule, run.labels, run.parameters)) is not None:
                self.per_key[index, value] += 1

    def key_hold(self, run: RunView) -> Hold | None:
        found = self.key_full(run)
        if found is None:
            return None
        rule, value = found
        return Hold(
            run,
            HoldReason.KEY_LIMIT_REACHED,
            f"{self.scope} runs at most {rule.limit} at once per {rule.key()}; {_shown(rule, value)} has no room",
        )

    def limit_hold(self, run: RunView) -> Hold:
        return Hold(run, *self.limit_reason())

    def limit_reason(self) -> tuple[HoldReason, str]:
        return self.full_reason, f"{self.scope} has no open slot (limit {self.limit.describe()})"

    def next_start(self) -> datetime.datetime | None:
        """When the start rate next allows a grant (None: no rate)."""
        rate = self.flow.start_rate
        return None if rate is None else flowcontrol.next_start(self.granted, rate, self.now)

    def rate_hold(self, run: RunView) -> Hold | None:
        rate = self.flow.start_rate
        if rate is None or not self.rate_limited():
            return None
        return Hold(
            run,
            HoldReason.START_RATE_LIMITED,
            f"{self.scope} starts at most {rate.per_minute} runs a minute (burst {rate.burst}): none available now",
        )


def _shown(rule: KeyLimit, value: str) -> str:
    return f"{rule.label}={value}" if rule.label is not None else f"{rule.parameter}={value}"


def _why_waiting(run: RunView, queue: Room, pool: Room, *, served: bool) -> Hold:
    """A ready run that got nothing: the first of `rules_holding` (written out: admission's hot
    path, thousands of waiting runs a pass, pays no generator)."""
    if queue.full():
        return queue.limit_hold(run)
    if (held := queue.key_hold(run) or queue.rate_hold(run)) is not None:
        return held
    if not served:
        return no_worker_hold(run)
    if (held := pool.key_hold(run) or pool.rate_hold(run)) is not None:
        return held
    # Nothing else holds it after the pass, so nothing did at its turn (all only shrink during a
    # pass): the pool was full then and is now.
    return pool.limit_hold(run)


def rules_holding(run: RunView, queue: Room, pool: Room, *, served: bool) -> Iterator[Hold]:
    """Every rule of slots, keys, rates and workers that holds a ready run, in the order the
    `Admitted` reason names them: the queue's rules first (the narrower scope: its limit, key
    limits, start rate), then workers, then the pool's key limits, start rate and limit.

    Workers before the pool: a run nobody can take lets lower runs have the pool's slots (best
    effort), and a bigger pool would not admit it, so the pool limit would not be the true reason.
    Key limits before the pool's own limit: they hold only some runs, so lower runs may still go.
    For a run that got nothing in a pass, nothing but the pool's limit holding it after the pass
    means nothing else did at its turn (all only shrink during a pass): the pool was full then and is now.
    """
    if queue.full():
        yield queue.limit_hold(run)
    if (held := queue.key_hold(run)) is not None:
        yield held
    if (held := queue.rate_hold(run)) is not None:
        yield held
    if not served:
        yield no_worker_hold(run)
    if (held := pool.key_hold(run)) is not None:
        yield held
    if (held := pool.rate_hold(run)) is not None:
        yield held
    if pool.full():
        yield pool.limit_hold(run)


def waits_behind(queue_name: str, queue: Room, pool: Room, *, served: bool) -> tuple[HoldReason, str]:
    """Why the ready runs of a queue behind the heads a pass looked at wait: `_why_waiting` where no
    per-key limit or start rate applies (core/runs.heads_suffice and line_heads see to that)."""
    if queue.full():
        return queue.limit_reason()
    if not served:
        return no_worker(queue_name)
    return pool.limit_reason()


def no_worker_hold(run: RunView) -> Hold:
    return Hold(run, *no_worker(run.queue))


def no_worker(queue: str) -> tuple[HoldReason, str]:
    return HoldReason.NO_ONLINE_WORKER, f"no online worker with room serves queue {queue}"


def pool_gate(pool_name: str, pool: PoolView | None) -> tuple[HoldReason, str] | None:
    """Why none of a pool's runs can be considered: the pool is gone or paused."""
    if pool is None:
        return HoldReason.POOL_NOT_FOUND, f"WorkPool {pool_name} not found"
    if pool.paused:
        return HoldReason.POOL_PAUSED, f"WorkPool {pool_name} is paused"
    return None


def _gate(run: RunView, queue: QueueView | None, pool_name: str, now: datetime.datetime) -> Hold | None:
    """The first of `gates`; a run past every gate (the common case, admission's hot path) costs
    no generator."""
    if queue is not None and not queue.paused and run.scheduled_time <= now:
        return None
    return next(gates(run, queue, pool_name, now))


def gates(run: RunView, queue: QueueView | None, pool_name: str, now: datetime.datetime) -> Iterator[Hold]:
    """Why a Scheduled run cannot be considered at all yet (slots and workers aside), every one,
    the `Admitted` reason's first."""
    if queue is None:
        yield Hold(run, HoldReason.QUEUE_NOT_FOUND, f"WorkQueue {run.queue} not found in pool {pool_name}")
    elif queue.paused:
        yield Hold(run, HoldReason.QUEUE_PAUSED, f"WorkQueue {run.queue} is paused")
    if run.scheduled_time > now:
        yield Hold(run, HoldReason.NOT_YET_SCHEDULED, "scheduled for later")


def pick_worker(workers: Sequence[WorkerView], queue: str, assigned: Counter[str]) -> WorkerView | None:
    """Like the scheduler picking a node: an Online, non-draining worker serving the queue with
    room under its own limit; the least loaded first (then by name, for determinism)."""
    fits = [w for w in workers if _takes(w, queue) and (w.limit is None or assigned[w.name] < w.limit)]
    return min(fits, key=lambda w: (assigned[w.name], w.name), default=None)


def worker_room(workers: Sequence[WorkerView], queue: str, assigned: Counter[str]) -> int | None:
    """How many more of `queue`'s runs its workers take (None: one without a limit takes any number)."""
    room = 0
    for worker in workers:
        if _takes(worker, queue):
            if worker.limit is None:
                return None
            room += max(0, worker.limit - assigned[worker.name])
    return room


def _takes(worker: WorkerView, queue: str) -> bool:
    return worker.online and not worker.draining and worker.serves(queue)
