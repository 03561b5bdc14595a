"""Why a run waits, and when it may start (DESIGN §8, `workpools run why`): computed on read.

Nothing here decides anything: it asks admission's own rules (core/admission.py) about one run,
over the views the admitter decides on (core/runs.admission_inputs), and lists **every** rule
that holds it, not only the first one its `Admitted` condition names:

* the gates: the pool missing or paused, the queue missing or paused, a scheduled time still to
  come (`admission.pool_gate`, `admission.gates`);
* the lifecycle's verdicts: a requested cancellation or the late policy end the run instead of
  starting it, so admission never counts it (core/late.py);
* slots, keys, rates and workers (`admission.rules_holding`), judged against the pool as an
  admission pass over the runs ready now leaves it (`admission.admission_pass`), as the
  `Admitted` reason is; a run that pass would grant is held by nothing.

Its position is its place in admission order (`selection.admission_order`) among the pool's
and its queue's admissible runs: Scheduled runs past every gate whose cancellation nobody asked
for, exactly the runs an admission pass considers.

**The estimate** (`Estimate`). The pool's grant rate is measured over the last `window` (10
minutes unless asked otherwise): n = the pool's runs whose latest grant (`status.grantedAt`, else
`status.slot.acquiredAt`) falls in `(now − window, now]`, rate λ = n / window. The run's turn
comes with the k-th grant from now, k = the admissible runs ahead of it in the pool + 1. If grants
keep coming as a Poisson process at rate λ, the time to the k-th is Gamma(k, λ)-distributed: the
estimate is its mean k / λ, the range its 10th to 90th percentile (exact for k = 1, `−ln(1 − p) /
λ`; the Wilson–Hilferty approximation above, within 0.5 % of the exact percentile from k = 2 on).
A scheduled time still to come, or the moment a start rate next allows a grant, is a floor under
all three. There is no estimate when no grant fell in the window (no rate to go by), or when a
rule holds the run that time alone does not lift: a missing or paused pool or queue, no Online
worker serving its queue (full workers do empty), a limit of 0 outside any window, a pending
cancellation. It is a forecast from the recent past, not a promise: grants that go to other
queues while the run's own queue is full, workers that come and go, new runs of higher priority
all move it.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

from workpools.api.flowrun import FlowRun
from workpools.api.states import StateType
from workpools.core import admission, late, liveness, runs
from workpools.core.admission import Hold, HoldReason
from workpools.core.selection import admission_order, in_line
from workpools.core.snapshot import PoolState, PoolView, QueueView, RunView, WorkerView

__all__ = [
    "CANCELLATION_REQUESTED",
    "DEFAULT_WINDOW",
    "RANGE",
    "Estimate",
    "Holding",
    "Position",
    "Waiting",
    "explain",
    "gamma_quantile",
    "why_waiting",
]

DEFAULT_WINDOW = datetime.timedelta(minutes=10)
"""How far back grants are counted for the pool's grant rate."""
RANGE = (0.1, 0.9)
"""The percentiles of the time to the run's turn that bound the estimate's range."""
CANCELLATION_REQUESTED = "CancellationRequested"
"""The reason a run whose `spec.cancel` is set waits for nothing: it is cancelled, not started."""


@dataclass(frozen=True, slots=True)
class Holding:
    """One rule that holds the run now."""

    reason: str
    """An `Admitted` reason (`HoldReason`), or CancellationRequested / LateCancelled / SkippedToLatest."""
    message: str
    lifted_by_time: bool
    """Whether waiting alone lifts it (runs finish, tokens come, its time comes), so an estimate makes sense."""
    until: datetime.datetime | None = None
    """When time lifts it, where that is known: its scheduled time, the next start token."""


@dataclass(frozen=True, slots=True)
class Position:
    """The run's place in admission order among the admissible runs of a pool or a queue."""

    scope: str
    """`pool etl` or `queue etl-high`."""
    ahead: int
    """Admissible runs before it."""
    admissible: int
    """Admissible runs in the scope, the run itself included when it is one."""
    counted: bool
    """Whether the run itself is admissible (else `ahead` says where it would stand)."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """When the run may start, from the pool's recent grant rate (see the module notes)."""

    window: datetime.timedelta
    grants: int
    """Grants of the pool in the window."""
    needed: int = 0
    """Grants until the run's turn (the admissible runs ahead of it in the pool, plus its own)."""
    start: datetime.datetime | None = None
    earliest: datetime.datetime | None = None
    latest: datetime.datetime | None = None
    unknown: str | None = None
    """Why there is no estimate (then `start` is None)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """What `workpools run why` shows about one run."""

    run: str
    pool: str
    queue: str
    state: StateType | None
    """None: new (the operator has not stamped it Scheduled yet)."""
    state_name: str | None
    waiting: bool
    """Scheduled (or new): waiting for admission; else `note` says where it is."""
    note: str = ""
    holds: list[Holding] = field(default_factory=list)
    """Every rule that holds it now; empty while waiting: the next admission pass grants it."""
    pool_position: Position | None = None
    queue_position: Position | None = None
    estimate: Estimate | None = None


def explain(  # noqa: PLR0917 -- the run, then admit's own arguments in its order
    run: RunView,
    pool_name: str,
    pool: PoolView | None,
    queues: Sequence[QueueView],
    runs: Sequence[RunView],
    workers: Sequence[WorkerView],
    *,
    now: datetime.datetime,
    history: Sequence[RunView] = (),
    ending: Sequence[Holding] = (),
    grant_times: Sequence[datetime.datetime] | None = None,
    window: datetime.timedelta = DEFAULT_WINDOW,
) -> Waiting:
    """Why `run` waits, over `admit`'s own inputs (`runs`, `workers`, `history` as admission takes
    them). A run the lifecycle ends instead (`ending`: cancellation requested, the late policy) is
    not among `runs`, as admission does not count it: it is then not admissible itself.

    `grant_times`: the latest grant of each of the pool's runs, for the rate (None: read from
    `runs` and `history`).
    """
    base = Waiting(run.name, pool_name, run.queue, run.state, None, waiting=run.state is StateType.SCHEDULED)
    if not base.waiting:
        return replace(base, note=_where(run))
    by_name = {q.name: q for q in queues}
    queue = by_name.get(run.queue)
    holds = [*ending, *_gates(run, pool_name, pool, queue, now)]
    times = (
        [t for r in (*runs, *history) if (t := r.granted_at or r.slot_acquired_at)]
        if grant_times is None
        else grant_times
    )
    if pool is None or queue is None:  # nothing to count slots or order in
        return replace(base, holds=holds, estimate=_estimate(holds, 0, times, now, window))

    admissible = [] if pool.paused else [r for r in runs if _ready(r, by_name, pool_name, now)]
    done = admission.admission_pass(pool_name, pool, queues, admissible, runs, workers, now=now, history=history)
    if not any(g.run.name == run.name for g in done.grants):
        served = done.served(run.queue)
        found = admission.rules_holding(run, done.queues[run.queue], done.pool, served=served)
        holds += [_holding(hold, done, workers) for hold in found]
    counted = any(r.name == run.name for r in admissible)
    order = admission_order(run, queue)
    ahead = [r for r in admissible if r.name != run.name and admission_order(r, by_name[r.queue]) < order]
    in_queue = [r for r in admissible if r.queue == run.queue]
    return replace(
        base,
        holds=holds,
        pool_position=Position(f"pool {pool_name}", len(ahead), len(admissible), counted),
        queue_position=Position(f"queue {run.queue}", sum(r.queue == run.queue for r in ahead), len(in_queue), counted),
        estimate=_estimate(holds, len(ahead) + 1, times, now, window),
    )


def why_waiting(state: PoolState, name: str, *, window: datetime.timedelta = DEFAULT_WINDOW) -> Waiting:
    """`explain` for run `name` of `state` (in `state.runs` or `state.finished`), over exactly
    the inputs the admitter builds from the same state (core/runs.py). `KeyError` without it."""
    everything = [*state.runs, *state.finished]
    found = next((r for r in everything if r.metadata.name == name), None)
    if found is None:
        raise KeyError(name)
    inputs = runs.admission_inputs(state)
    judgement = liveness.judge(state)
    waiting = explain(
        runs.run_view(found, state.name),
        state.name,
        inputs.pool,
        inputs.queues,
        inputs.runs,
        [runs.worker_view(w, judgement) for w in state.workers],
        now=state.now,
        history=inputs.history,
        ending=_ending(found, state),
        grant_times=[t for r in everything if (t := runs.granted_at(r)) is not None],
        window=window,
    )
    return replace(waiting, state=found.status.state, state_name=found.status.state_name)


# -- the rules -------------------------------------------------------------------------------------


def _gates(
    run: RunView, pool_name: str, pool: PoolView | None, queue: QueueView | None, now: datetime.datetime
) -> list[Holding]:
    found = []
    if (closed := admission.pool_gate(pool_name, pool)) is not None:
        found.append(Holding(closed[0].value, closed[1], lifted_by_time=False))
    for hold in admission.gates(run, queue, pool_name, now):
        due = hold.reason is HoldReason.NOT_YET_SCHEDULED
        message = f"scheduled for {run.scheduled_time.isoformat()}" if due else hold.message
        found.append(Holding(hold.reason.value, message, due, run.scheduled_time if due else None))
    return found


def _ready(run: RunView, queues: Mapping[str, QueueView], pool_name: str, now: datetime.datetime) -> bool:
    """Admissible: Scheduled and past every gate of its queue (the pool's are the caller's)."""
    return (
        run.state is StateType.SCHEDULED
        and next(admission.gates(run, queues.get(run.queue), pool_name, now), None) is None
    )


def _holding(hold: Hold, done: admission.Pass, workers: Sequence[WorkerView]) -> Holding:
    """A rule of slots, keys, rates or workers, with whether and when time lifts it."""
    queue = hold.run.queue
    # A hold's message starts with the scope of the room that holds it (`pool p ...`, `queue q ...`).
    room = done.pool if hold.message.startswith(f"{done.pool.scope} ") else done.queues[queue]
    if hold.reason in (HoldReason.POOL_LIMIT_REACHED, HoldReason.QUEUE_LIMIT_REACHED):
        # A limit of 0 is lifted only by a window closing (or a person).
        return Holding(hold.reason.value, hold.message, room.limit.limit != 0 or room.limit.window is not None)
    if hold.reason is HoldReason.KEY_LIMIT_REACHED:
        found = room.key_full(hold.run)
        return Holding(hold.reason.value, hold.message, found is not None and found[0].limit > 0)
    if hold.reason is HoldReason.START_RATE_LIMITED:
        return Holding(hold.reason.value, hold.message, lifted_by_time=True, until=room.next_start())
    serving = [w for w in workers if w.serves(queue) and w.online and not w.draining]
    if not serving:
        return Holding(hold.reason.value, f"{hold.message}: none serving it is online", lifted_by_time=False)
    busy = ", ".join(f"{w.name} {done.assigned[w.name]}/{w.limit}" for w in sorted(serving, key=lambda w: w.name))
    return Holding(hold.reason.value, f"{hold.message}: all at their limit ({busy})", lifted_by_time=True)


def _ending(run: FlowRun, state: PoolState) -> list[Holding]:
    """What the lifecycle step does to the run instead of admitting it (core/runs.py)."""
    if not in_line(run):
        return []
    if run.spec.cancel:
        return [
            Holding(CANCELLATION_REQUESTED, "cancellation requested (spec.cancel): it is cancelled, not started", False)
        ]
    verdict = late.verdicts(state).get(run.metadata.name)
    if verdict is None:
        return []
    return [Holding(verdict.reason, f"the late policy cancels it: {verdict.message}", lifted_by_time=False)]


def _where(run: RunView) -> str:
    """Where a run that does not wait is."""
    if run.state is StateType.PENDING:
        return f"admitted: bound to worker {run.worker}, which has not started it yet"
    if run.state is StateType.RUNNING:
        return f"running on worker {run.worker}"
    if run.state is StateType.CANCELLING:
        return f"being cancelled by worker {run.worker}"
    return f"{run.state.value}: it does not wait for a slot"


# -- the estimate ----------------------------------------------------------------------------------


def _estimate(
    holds: Sequence[Holding],
    needed: int,
    grant_times: Sequence[datetime.datetime],
    now: datetime.datetime,
    window: datetime.timedelta,
) -> Estimate:
    grants = sum(1 for t in grant_times if now - window < t <= now)
    base = Estimate(window, grants, needed)
    if not holds:
        return replace(base, needed=0, start=now, earliest=now, latest=now)
    if (stuck := next((h for h in holds if not h.lifted_by_time), None)) is not None:
        return replace(base, unknown=f"{stuck.message}: time alone does not lift that")
    if grants == 0:
        return replace(base, unknown=f"no run of the pool was granted in the last {_span(window)}: no rate to go by")
    seconds_per_grant = window.total_seconds() / grants
    floor = max((h.until for h in holds if h.until is not None), default=now)

    def after(grant_units: float) -> datetime.datetime:
        return max(floor, now + datetime.timedelta(seconds=grant_units * seconds_per_grant))

    low, high = (gamma_quantile(needed, p) for p in RANGE)
    return replace(base, start=after(needed), earliest=after(low), latest=after(high))


def gamma_quantile(k: int, p: float) -> float:
    """The p-quantile of Gamma(k, 1): the time to the k-th event of a Poisson process of rate 1.

    Exact for k = 1 (exponential); Wilson–Hilferty's cube-root normal approximation from k = 2 on
    (within 0.5 % there: tests/unit/core/test_waiting.py checks it against the exact Poisson sum).
    """
    if k < 1 or not 0 < p < 1:
        raise ValueError(f"need k >= 1 and 0 < p < 1, got k={k}, p={p}")
    if k == 1:
        return -math.log1p(-p)
    z = NormalDist().inv_cdf(p)
    return k * max(0.0, 1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3


def _span(window: datetime.timedelta) -> str:
    minutes, seconds = divmod(int(window.total_seconds()), 60)
    return f"{minutes}m" if seconds == 0 else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
