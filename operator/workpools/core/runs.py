"""What the operator writes to FlowRuns: their start in Scheduled, cancellation (and its
timeout), recovery from lost workers, lateness, and admission (grants and the reasons runs
wait). A new run's first write is its grant when it can be admitted at once (new → Pending),
else Scheduled with its first hold reason: one write either way.

Two pure steps, applied one after the other by the reconciler: `lifecycle_changes` (recovery,
cancellation, retries) and `admission_changes`. A run with a write of ours still in flight is
`busy` (controllers/writers.py): neither step decides about it, and a grant in flight is in the
state as its write makes it, so the second step counts the first one's writes without waiting for
them. Each change is a status merge patch to write with a resourceVersion precondition: the bound
worker writes the same status, and a decision taken on a version that has moved on must not land.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workpools.api.base import LatePolicy, timestamp, to_json
from workpools.api.conditions import Condition, ConditionType, Reason
from workpools.api.flowrun import FlowRun, queue_of
from workpools.api.states import SLOT_HOLDING, TERMINAL, StateType
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPoolSpec
from workpools.api.workqueue import WorkQueueSpec
from workpools.core import admission, late, liveness, retries
from workpools.core.plan import queue_priorities
from workpools.core.selection import Place, in_line, overdue, scheduled_time
from workpools.core.snapshot import FlowControl, PoolState, PoolView, QueueView, RunView, WorkerView
from workpools.core.statuses import Event, EventType, set_condition

S = StateType


@dataclass(frozen=True, slots=True)
class RunChange:
    run: FlowRun
    patch: dict[str, Any]
    """Merge patch of `status` (only the fields that change)."""
    event: Event | None = None
    granted_to: str | None = None
    """The worker, when this change is a grant."""
    reclaim: str | None = None
    """Why a slot is taken back (WorkerLost, PendingTimeout, HandedBack), when this change does that."""


# -- views ---------------------------------------------------------------------------------------


def in_flight(run: FlowRun) -> bool:
    """Whether a run may still hold or take a slot, now or after a retry (else it is finished:
    only its TTL concerns it)."""
    return run.status.state not in TERMINAL or retries.retrying(run)


def run_view(run: FlowRun, pool: str) -> RunView:
    created = run.metadata.creation_timestamp
    assert created is not None
    return RunView(
        name=run.metadata.name,
        pool=pool,
        queue=queue_of(run),
        state=run.status.state or S.SCHEDULED,
        scheduled_time=scheduled_time(run),
        created=created,
        worker=run.status.worker,
        slot_acquired_at=run.status.slot.acquired_at if run.status.slot else None,
        granted_at=run.status.granted_at,
        labels=run.metadata.labels,
        parameters=run.spec.parameters,
    )


def granted_at(run: FlowRun) -> datetime.datetime | None:
    """When the run was last granted a slot: status.grantedAt, or (granted before that field) its slot's start."""
    return run.status.granted_at or (run.status.slot.acquired_at if run.status.slot else None)


def flow_control(spec: WorkPoolSpec | WorkQueueSpec) -> FlowControl:
    """A pool's or queue's flow-control rules, as admission reads them (core/flowcontrol.py)."""
    return FlowControl(tuple(spec.concurrency_limit_schedule), tuple(spec.concurrency_limit_per_key), spec.start_rate)


def worker_view(worker: Worker, judgement: liveness.Judgement) -> WorkerView:
    return WorkerView(
        name=worker.metadata.name,
        online=worker.metadata.name in judgement.online,
        draining=worker.spec.draining,
        queues=frozenset(worker.spec.work_queues),
        limit=worker.spec.limit,
    )


# -- lifecycle -----------------------------------------------------------------------------------


def lifecycle_changes(state: PoolState) -> list[RunChange]:
    """The operator's moves that free slots or end runs (recovery, cancellation), for the pool's
    unfinished runs; a run whose cancellation is requested before it started is stamped first.

    Runs of a deleted pool keep their state: its Workers go with it (garbage collection), but
    their processes may well still be running them, so nothing is reclaimed there.
    """
    now, pool = state.now, state.pool
    judgement = liveness.judge(state)
    lost = judgement.lost if pool is not None else frozenset()
    draining = {w.metadata.name for w in state.workers if w.spec.draining}
    timeout = pool.spec.pending_timeout_seconds if pool is not None else None
    too_late = late.verdicts(state)
    changes = []
    for run in state.runs:
        current = run.status.state
        if run.metadata.name in state.busy:
            continue
        if current in TERMINAL:
            if retries.retrying(run):
                changes.append(_retry(run, now))
            continue
        if current is None:  # admission stamps it, with its grant or its first hold reason
            doomed = run.spec.cancel or run.metadata.name in too_late  # stamped first, cancelled next
            change: RunChange | None = _start(run, now) if doomed else None
        elif current in SLOT_HOLDING:  # recovery first: a lost worker cannot finish a cancellation
            recovered = _recover(run, lost, draining, timeout, now) if pool is not None else None
            if recovered is None and pool is not None and current is S.CANCELLING:
                recovered = _cancelling_timeout(run, pool.spec.cancelling_timeout_seconds, state, judgement)
            change = recovered or (_cancel(run, now) if run.spec.cancel else None)
        elif run.spec.cancel:  # a waiting run's Late mark goes with its hold reason (admission_changes)
            change = _cancel(run, now)
        elif current is S.SCHEDULED and (verdict := too_late.get(run.metadata.name)) is not None:
            change = _late_cancel(run, verdict, now)
        else:
            change = None
        if change is not None:
            changes.append(change)
    return changes


def _retry(run: FlowRun, now: datetime.datetime) -> RunChange:
    patch = retries.next_attempt(run, now)
    event = Event(EventType.WARNING, "AwaitingRetry", f"FlowRun {run.metadata.name}: {patch['message']}")
    return RunChange(run, patch, event)


def _start(run: FlowRun, now: datetime.datetime) -> RunChange:
    """A new run joins its queue: Scheduled, at spec.scheduledTime or its creation time."""
    return RunChange(run, _stamp(run, now))


def _stamp(run: FlowRun, now: datetime.datetime) -> dict[str, Any]:
    """What a new run's first write records, whatever state it goes to."""
    return {
        "state": S.SCHEDULED.value,
        "stateName": _scheduled_name(run, now),
        "scheduledTime": timestamp(scheduled_time(run)),
        "attempt": 1,
        "observedGeneration": run.metadata.generation,
    }


def cancelling_deadline(run: FlowRun, timeout: int) -> datetime.datetime | None:
    """When a Cancelling run's timeout passes (None: not Cancelling, or not stamped yet)."""
    since = run.status.cancelling_since
    if run.status.state is not S.CANCELLING or since is None:
        return None
    return since + datetime.timedelta(seconds=timeout)


def _cancelling_timeout(
    run: FlowRun, timeout: int, state: PoolState, judgement: liveness.Judgement
) -> RunChange | None:
    """A Cancelling run its worker has not reported stopped within cancellingTimeoutSeconds.

    Its slot is freed only when the worker has provably been told and had the time to stop it:
    the worker is alive (heartbeat seen within 3 intervals, core/liveness.py) and was seen beating
    after the run went Cancelling, so its watch of the run worked meanwhile; a live worker kills
    at once a run it finds Cancelled. A worker that is silent is the reclaim protocol's (lost:
    fenced, then Cancelled by `_recover`); until then nothing is freed. A run Cancelling from
    before this rule has no `cancellingSince`: it is stamped now, and times out from there.
    """
    now, worker, name = state.now, run.status.worker, run.metadata.name
    deadline = cancelling_deadline(run, timeout)
    if run.status.cancelling_since is None:
        return RunChange(run, {"cancellingSince": timestamp(now)})
    sighting = state.sightings.get(worker) if worker is not None else None
    if deadline is None or now <= deadline or worker not in judgement.online or sighting is None:
        return None
    if sighting.seen_at is None or sighting.seen_at <= run.status.cancelling_since:
        return None  # not seen beating since it was told: it may not know yet
    message = (
        f"worker {worker} did not report it stopped within cancellingTimeoutSeconds ({timeout}s); "
        "the worker is alive and was told, so it stops the process if it still runs"
    )
    return RunChange(
        run,
        _finished(S.CANCELLED, "Cancelled", message, now),
        Event(EventType.WARNING, "CancellingTimeout", f"FlowRun {name}: {message}; marked Cancelled"),
        reclaim="CancellingTimeout",
    )


def _late_cancel(run: FlowRun, verdict: late.Verdict, now: datetime.datetime) -> RunChange:
    """A waiting run the late policy ends (core/late.py): Cancelled, named for why, one event."""
    patch = _finished(S.CANCELLED, verdict.reason, verdict.message, now)
    return RunChange(
        run, patch, Event(EventType.WARNING, verdict.reason, f"FlowRun {run.metadata.name} {verdict.message}")
    )


def _cancel(run: FlowRun, now: datetime.datetime) -> RunChange | None:
    current = run.status.state
    if current in (S.SCHEDULED, S.PAUSED):  # nothing runs yet: cancelled at once
        return RunChange(
            run,
            _finished(S.CANCELLED, "Cancelled", "cancelled by request (spec.cancel)", now),
            Event(EventType.NORMAL, "Cancelled", f"FlowRun {run.metadata.name} cancelled by request"),
        )
    if current in (S.PENDING, S.RUNNING):  # its worker stops it and reports Cancelled
        return RunChange(
            run,
            {
                "state": S.CANCELLING.value,
                "stateName": "Cancelling",
                "cancellingSince": timestamp(now),
                "message": "cancellation requested (spec.cancel)",
                "observedGeneration": run.metadata.generation,
            },
            # A user's request, once per run: `kubectl describe` shows when it was asked for.
            Event(
                EventType.NORMAL,
                "Cancelling",
                f"FlowRun {run.metadata.name} cancellation requested (spec.cancel); "
                f"worker {run.status.worker} stops it and reports Cancelled",
            ),
        )
    return None


def _recover(
    run: FlowRun, lost_workers: frozenset[str], draining: set[str], timeout: int | None, now: datetime.datetime
) -> RunChange | None:
    """No slot outlives its worker: reclaim the slot of a run whose worker is lost (core/liveness.py) or stuck."""
    worker, current, name = run.status.worker, run.status.state, run.metadata.name
    lost = worker is None or worker in lost_workers
    if current is S.PENDING and lost:
        return _requeue(run, f"worker {worker} went offline before starting it", "WorkerLost", now)
    if current is S.PENDING and worker in draining:
        return _requeue(
            run, f"worker {worker} is draining; handed back before it started", "HandedBack", now, EventType.NORMAL
        )
    acquired = run.status.slot.acquired_at if run.status.slot else None
    if (
        current is S.PENDING
        and timeout is not None
        and acquired is not None
        and now - acquired > datetime.timedelta(seconds=timeout)
    ):
        return _requeue(
            run, f"worker {worker} did not start it within pendingTimeoutSeconds ({timeout}s)", "PendingTimeout", now
        )
    if current is S.RUNNING and lost:
        message = f"worker {worker} went offline while it was running"
        return RunChange(
            run,
            _finished(S.CRASHED, "Crashed", message, now),
            Event(EventType.WARNING, "WorkerLost", f"FlowRun {name}: {message}; marked Crashed"),
            reclaim="WorkerLost",
        )
    if current is S.CANCELLING and lost:
        message = f"worker {worker} went offline while cancelling it"
        return RunChange(
            run,
            _finished(S.CANCELLED, "Cancelled", message, now),
            Event(EventType.WARNING, "WorkerLost", f"FlowRun {name}: {message}; marked Cancelled"),
            reclaim="WorkerLost",
        )
    return None


def _requeue(
    run: FlowRun, why: str, reason: str, now: datetime.datetime, kind: EventType = EventType.WARNING
) -> RunChange:
    patch = {
        "state": S.SCHEDULED.value,
        "stateName": _scheduled_name(run, now),
        "worker": None,
        "slot": None,
        "message": why,
    }
    event = Event(kind, reason, f"FlowRun {run.metadata.name} back to Scheduled: {why}")
    return RunChange(run, patch, event, reclaim=reason)


def _scheduled_name(run: FlowRun, now: datetime.datetime) -> str:
    """Prefect's state name for a Scheduled run: Late once more than 15 s past its time."""
    return "Late" if overdue(scheduled_time(run), now) else "Scheduled"


def _finished(state: StateType, name: str, message: str, now: datetime.datetime) -> dict[str, Any]:
    return {"state": state.value, "stateName": name, "message": message, "endTime": timestamp(now), "slot": None}


# -- admission -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdmissionInputs:
    """What `admission.admit` decides on for a pool, but the workers (core/backlog.py puts a
    worker of its own in their place): built once here, so the admitter and the backlog agree."""

    pool: PoolView | None
    queues: list[QueueView]
    runs: list[RunView]
    history: list[RunView]
    live: dict[str, FlowRun]
    """The runs that compete or hold a slot, by name (`runs` are their views)."""


def views(state: PoolState) -> tuple[PoolView | None, list[QueueView]]:
    """The pool and its queues as admission sees them, the queues at their effective priorities."""
    pool = state.pool
    effective, _ = queue_priorities(state.queues, state.now)
    queues = [
        QueueView(
            q.metadata.name,
            state.name,
            q.spec.paused,
            q.spec.concurrency_limit,
            effective[q.metadata.name],
            flow_control(q.spec),
        )
        for q in state.queues
    ]
    pool_view = (
        None
        if pool is None
        else PoolView(state.name, pool.spec.paused, pool.spec.concurrency_limit, flow_control(pool.spec))
    )
    return pool_view, queues


def heads_suffice(state: PoolState) -> bool:
    """Whether a grant pass over the heads of the queues' lines (`line_heads`) grants what a pass
    over all runs would: not with a start rate (it counts the grants of finished runs too), nor
    with skipToLatest (a newer run of the same schedule may wait further back in the line)."""
    pool = state.pool
    if pool is None:
        return False
    specs: list[WorkPoolSpec | WorkQueueSpec] = [pool.spec, *(q.spec for q in state.queues)]
    return not any(s.start_rate is not None or (s.late_policy and s.late_policy.skip_to_latest) for s in specs)


def line_heads(
    state: PoolState, lines: Mapping[str, Sequence[Place]], stored: Callable[[str], FlowRun | None]
) -> list[FlowRun]:
    """The runs a grant pass decides on: per queue, the first ready runs of its line (`lines`, by
    queue name, in admission order), as many as `admission.heads_bound` allows. `state.runs` are the
    pool's slot holders (grants in flight counted as made); `stored` finds a run by name."""
    pool, queues = views(state)
    if pool is None or pool.paused:
        return []
    ready = {
        q.name: _ready(lines.get(q.name, ()), state, stored, late.policy_of(q.name, state))
        for q in queues
        if not q.paused
    }
    firsts = {name: next(runs, None) for name, runs in ready.items()}
    if not any(firsts.values()):
        return []  # nothing ready (say, every run in line has its grant on the wire): no room to count
    holders_in = Counter(queue_of(r) for r in state.runs)
    assigned = Counter(r.status.worker for r in state.runs if r.status.worker)
    judgement = liveness.judge(state)
    workers = [worker_view(w, judgement) for w in state.workers]
    found: list[FlowRun] = []
    for queue in queues:
        first = firsts.get(queue.name)
        room = admission.worker_room(workers, queue.name, assigned) if first is not None else 0
        bound = admission.heads_bound(pool, queue, len(state.runs), holders_in[queue.name], room, state.now)
        if first is not None and bound != 0:
            found += [first, *itertools.islice(ready[queue.name], None if bound is None else bound - 1)]
    return found


def grants_at_heads(
    state: PoolState, lines: Mapping[str, Sequence[Place]], stored: Callable[[str], FlowRun | None]
) -> list[RunChange]:
    """A grant pass: the grants admission makes over the pool's slot holders (`state.runs`) and the
    heads of its lines, and nothing else (the full pass that follows gives the reasons)."""
    heads = line_heads(state, lines, stored)
    if not heads:
        return []
    changes = admission_changes(dataclasses.replace(state, runs=[*state.runs, *heads]))
    return [change for change in changes if change.granted_to is not None]


def _ready(
    line: Sequence[Place], state: PoolState, stored: Callable[[str], FlowRun | None], policy: LatePolicy | None
) -> Iterator[FlowRun]:
    """The runs of a queue's line that may be admitted now, in order: due, not busy, not cancelled,
    and not too late (the lifecycle step cancels those)."""
    for when, _, name in line:
        if when > state.now:
            return  # the rest of the line is not due yet either
        run = stored(name)
        if name in state.busy or run is None or run.spec.cancel or late.too_late(run, policy, state.now):
            continue
        yield run


def admission_inputs(state: PoolState) -> AdmissionInputs:
    """The pool, its queues at their effective priorities, the runs admission counts and the
    grant history start rates read."""
    pool_view, queues = views(state)
    # Slot holders count against limits; new and Scheduled runs compete, except those whose
    # cancellation is requested or that the late policy ends (the lifecycle step cancels them; they
    # must not take a slot meanwhile).
    too_late = late.verdicts(state)
    live = [
        r
        for r in state.runs
        if r.status.state in SLOT_HOLDING
        or (in_line(r) and not r.spec.cancel and r.metadata.name not in too_late and r.metadata.name not in state.busy)
    ]
    by_name = {r.metadata.name: r for r in live}
    history = _granted_history(state, by_name.keys(), rated=any(v.flow.start_rate for v in (pool_view, *queues) if v))
    return AdmissionInputs(pool_view, queues, [run_view(r, state.name) for r in live], history, by_name)


def admission_changes(state: PoolState, lines: Mapping[str, Sequence[Place]] | None = None) -> list[RunChange]:
    """Grants (new or Scheduled → Pending, bound to a worker) and, for the other runs, what they
    wait as: Scheduled (when new), Late (once overdue) and the reason, each run in one write.

    With the pool's queue `lines` (by queue name, in admission order: cache/lines.py), where heads
    suffice (`heads_suffice`), only the heads of the lines are admitted one by one; every other
    waiting run waits at a gate or for its queue's reason behind them (`Admission.behind`): a
    waiting run costs a comparison, not a place in a sort.
    """
    if lines is not None and heads_suffice(state):
        return _admission_by_heads(state, lines)
    inputs = admission_inputs(state)
    if not any(r.state is S.SCHEDULED for r in inputs.runs):
        return []  # nothing waits: no grant, no hold, and no worker to judge (1,000 of them cost a pass 10 ms)
    return _changes(state, inputs.live, _admit(state, inputs))


def _admission_by_heads(state: PoolState, lines: Mapping[str, Sequence[Place]]) -> list[RunChange]:
    if not any(lines.values()):
        return []  # nothing waits: no grant, no hold, and no worker to judge
    now, by_name = state.now, {r.metadata.name: r for r in state.runs}
    holders = [r for r in state.runs if r.status.state in SLOT_HOLDING]
    heads = line_heads(dataclasses.replace(state, runs=holders), lines, by_name.get)
    at_heads = dataclasses.replace(state, runs=[*holders, *heads])
    inputs = admission_inputs(at_heads)
    decided = _admit(at_heads, inputs)
    changes = _changes(at_heads, inputs.live, decided)
    looked_at = {r.metadata.name for r in heads}
    closed = admission.pool_gate(state.name, inputs.pool)
    queues = {q.name: q for q in inputs.queues}
    policies: dict[str, LatePolicy | None] = {}
    for run in state.runs:
        name = run.metadata.name
        if not in_line(run) or name in looked_at or name in state.busy or run.spec.cancel:
            continue
        queue = queue_of(run)
        if queue not in policies:
            policies[queue] = late.policy_of(queue, state)
        if late.too_late(run, policies[queue], now) is not None:
            continue  # the lifecycle step cancels it
        view = queues.get(queue)
        if closed is not None:
            reason, message = closed
        elif view is None or view.paused or scheduled_time(run) > now:
            gate = next(admission.gates(run_view(run, state.name), view, state.name, now))
            reason, message = gate.reason, gate.message
        else:
            reason, message = decided.behind[queue]
        if (change := _hold(run, reason, message, now)) is not None:
            changes.append(change)
    return changes


def _admit(state: PoolState, inputs: AdmissionInputs) -> admission.Admission:
    judgement = liveness.judge(state)
    return admission.admit(
        state.name,
        inputs.pool,
        inputs.queues,
        inputs.runs,
        [worker_view(w, judgement) for w in state.workers],
        now=state.now,
        history=inputs.history,
    )


def _changes(state: PoolState, by_name: Mapping[str, FlowRun], decided: admission.Admission) -> list[RunChange]:
    """The writes of an admission: each grant, and each hold that changes what its run says."""
    now = state.now
    # The worker's identity goes onto the run in the grant write itself: the worker-restriction
    # policy lets only that identity move the run (manifests/policy/).
    identities = {w.metadata.name: w.spec.identity for w in state.workers}
    changes = []
    for grant in decided.grants:
        run = by_name[grant.run.name]
        conditions = _admitted(run, True, Reason.ADMITTED, f"bound to worker {grant.worker}", now)
        identity = identities.get(grant.worker)
        changes.append(
            RunChange(
                run,
                {
                    **(_stamp(run, now) if run.status.state is None else {}),  # new → Pending in one write
                    "state": S.PENDING.value,
                    "stateName": "Pending",
                    "worker": grant.worker,
                    "workerIdentity": None if identity is None else to_json(identity),
                    "slot": {"acquiredAt": timestamp(now), "queue": grant.run.queue},
                    "grantedAt": timestamp(now),
                    "message": None,
                    **({"conditions": conditions} if conditions is not None else {}),
                },
                granted_to=grant.worker,
            )
        )
    for hold in decided.holds:
        if (change := _hold(by_name[hold.run.name], hold.reason, hold.message, now)) is not None:
            changes.append(change)
    return changes


def _hold(run: FlowRun, reason: admission.HoldReason, message: str, now: datetime.datetime) -> RunChange | None:
    """A waiting run's write: its reason, Scheduled when new, Late once overdue; None if it says all that."""
    conditions = _admitted(run, False, Reason(reason.value), message, now)
    patch: dict[str, Any] = {"conditions": conditions} if conditions is not None else {}
    if run.status.state is None:  # Scheduled and its first hold reason in one write
        patch = {**_stamp(run, now), **patch}
    elif run.status.state_name not in ("Late", "AwaitingRetry") and _scheduled_name(run, now) == "Late":
        # Like Prefect's late-runs service, a retry keeps its name: AwaitingRetry says more.
        patch = {"stateName": "Late", **patch}  # with the reason, if that changed too: one write
    return RunChange(run, patch) if patch else None


def _granted_history(state: PoolState, live: Collection[str], *, rated: bool) -> list[RunView]:
    """Runs that were granted a slot and neither wait nor hold one now (finished, or cancelled
    while waiting): their grant times still count against start rates. Only read when a rate is set."""
    if not rated:
        return []
    return [
        run_view(r, state.name)
        for r in (*state.finished, *state.runs)
        if granted_at(r) is not None and r.metadata.name not in live
    ]


def _admitted(
    run: FlowRun, admitted: bool, reason: Reason, message: str, now: datetime.datetime
) -> list[dict[str, Any]] | None:
    """The run's conditions with `Admitted` set, or None when it already says exactly that."""
    current = next((c for c in run.status.conditions if c.type == ConditionType.ADMITTED), None)
    if current is not None and current.reason == reason and current.message == message:
        return None
    generation = run.metadata.generation
    conditions: Sequence[Condition] = set_condition(
        run.status.conditions, ConditionType.ADMITTED, admitted, reason, message, generation=generation, now=now
    )
    # A run whose pool is gone says so in a condition of its own too, like queues and workers do;
    # once written it stays, False when the pool is back.
    missing = reason is Reason.POOL_NOT_FOUND
    if missing or any(c.type == ConditionType.POOL_NOT_FOUND for c in conditions):
        conditions = set_condition(
            conditions,
            ConditionType.POOL_NOT_FOUND,
            missing,
            Reason.POOL_NOT_FOUND if missing else Reason.POOL_FOUND,
            message if missing else "its WorkPool exists",
            generation=generation,
            now=now,
        )
    return [to_json(c) for c in conditions]
