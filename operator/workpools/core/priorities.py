"""Queue priorities: Prefect's rebalance, and the effective priority the operator reports.

Prefect keeps a pool's priorities unique by renumbering queues in its database whenever one
collides. The operator never writes a spec, so instead it *replays* Prefect's single-queue update
over every queue's request, in the order it first saw them, and reports the outcome as
`status.effectivePriority` (DESIGN §3). Lower value = served first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "DuplicatePriorityError",
    "PriorityRequest",
    "bulk_update",
    "conflicts",
    "current_request",
    "first_free_priority",
    "resolve",
]


class DuplicatePriorityError(ValueError):
    """Two targets of one bulk update ask for the same value, which has no fair winner."""

    def __init__(self, clashes: Mapping[int, Iterable[str]]) -> None:
        self.clashes = {priority: tuple(sorted(queues)) for priority, queues in clashes.items()}
        detail = "; ".join(
            f"priority {priority} targeted by {', '.join(queues)}" for priority, queues in sorted(self.clashes.items())
        )
        # Prefect's own wording first, so messages read the same as upstream's.
        super().__init__(f"Duplicate target priorities provided: {detail}")


@dataclass(frozen=True)
class PriorityRequest:
    """What one queue asks for, and since when: the replay order is `(seen, queue)`.

    `requested` is `spec.priority`, or for a queue without one the value auto-assigned (with
    `first_free_priority` over the pool's effective values) when the operator first saw it and
    kept in its status. `seen` is when the operator first saw this request; it changes only
    when the request does, so the same objects always replay in the same order.
    """

    queue: str
    requested: int
    seen: datetime
    assigned: bool = False
    """The value was assigned (the queue has no `spec.priority`), not asked for."""


def current_request(
    queue: str,
    *,
    spec: int | None,
    kept: int | None,
    kept_assigned: bool | None,
    since: datetime | None,
    now: datetime,
) -> PriorityRequest | None:
    """A queue's request now, from its `spec.priority` and what its status kept; None: never seen.

    The request is `spec` when set, else the value kept (a queue whose `spec.priority` is removed
    keeps its value: nothing moves). It keeps its `seen` moment only while it is the same request:
    the same value *and* the same origin. Giving an auto-assigned queue a `spec.priority` equal to
    the value it was assigned is a new request, seen now, as it is an update in Prefect (issue 15:
    `d` takes 1 and pushes the default queue to 2; the default queue's `spec.priority: 1` then takes
    1 back and pushes `d` to 2). A status from before the origin was kept (`kept_assigned` None)
    counts as the same origin, so an upgrade moves nothing.
    """
    wanted = spec if spec is not None else kept
    if wanted is None:
        return None
    assigned = spec is None
    same = kept == wanted and since is not None and not (kept_assigned and not assigned)
    return PriorityRequest(queue, wanted, since if same and since is not None else now, assigned=assigned)


def first_free_priority(taken: Iterable[int]) -> int:
    """Prefect's value for a queue created without a priority: the first gap, else max + 1.

    The operator uses it for a queue without `spec.priority` at first sight, over the pool's
    effective values. Duplicates and values below 1 are dropped first, so the answer is always
    a free positive value (Prefect could return a taken one from a pool its legacy route had
    left with duplicates).
    """
    ordered = sorted({priority for priority in taken if priority >= 1})
    for position, priority in enumerate(ordered, start=1):
        if priority != position:
            return position
    return len(ordered) + 1


def bulk_update(current: Mapping[str, int], targets: Mapping[str, int]) -> dict[str, int]:
    """Prefect's `bulk_update_work_queue_priorities`, step for step; returns the whole pool.

    Every target holds; a queue that collides is pushed down by one, cascading until a gap
    absorbs it; gaps are never compacted. Targets naming queues not in `current` are ignored
    (but still count for the duplicate check, as upstream). Queues with equal current values,
    which Prefect orders however its database returns them, are ordered by name.

    Faithful quirk: a target above every other queue's value is not inserted into the walk; it
    simply keeps its value. With one target over a pool of unique values that is harmless (nothing
    can collide with it), but with several targets it is Prefect's latent defect:
    queues below it can be bumped onto it, e.g. X1 Y2 Z3 A8 B9 with {B: 1, A: 4} gives
    B1 X2 Y3 A4 Z4, a duplicate. Prefect's API never passes more than one target, and `resolve`
    passes exactly one, over unique values.
    """
    _check_targets(targets)
    new = dict(current)
    walk = sorted((q for q in current if q not in targets), key=lambda q: (current[q], q))
    for queue in sorted((q for q in targets if q in current), key=targets.__getitem__):
        target = new[queue] = targets[queue]
        slot = next((i for i, other in enumerate(walk) if new[other] >= target), None)
        if slot is not None:
            walk.insert(slot, queue)
    last = 0
    for queue in walk:
        if new[queue] <= last:
            last += 1
            new[queue] = last
        else:
            last = new[queue]
    return new


def resolve(requests: Iterable[PriorityRequest]) -> dict[str, int]:
    """Each queue's effective priority: Prefect's single-queue update replayed per request.

    Starting from an empty pool, every queue in `(seen, queue)` order joins the pool and is
    updated to its request, exactly as Prefect's create/update would do it. Hence: values are
    unique and positive with gaps kept; no effective value is below its request (a queue enters
    at its request and can only be pushed down); when no two requests are equal nobody collides, so
    every queue holds its request whatever the order; and a latest-seen change to a pool whose
    queues hold their requests is precisely Prefect's own update. Because the pool is rebuilt
    from the requests alone, queues pushed by a queue that later moves away or is deleted go
    back to their requests (Prefect would leave them where they were pushed).
    """
    ordered = sorted(requests, key=lambda request: (request.seen, request.queue))
    effective: dict[str, int] = {}
    for request in ordered:
        if request.queue in effective:
            raise ValueError(f"queue {request.queue!r} has more than one priority request")
        effective[request.queue] = request.requested
        effective = bulk_update(effective, {request.queue: request.requested})
    return effective


def conflicts(requests: Iterable[PriorityRequest], effective: Mapping[str, int]) -> dict[str, str]:
    """For each queue pushed off its request, the queue that now holds that value.

    With `effective` from `resolve` over the same requests a holder always exists: a queue
    leaves its value only when another queue takes it, and a push moves the whole contiguous
    run up by one, so a value once held stays held. A queue whose requested value nobody holds
    (or that is missing from `effective`) can only come from mismatched inputs; it is left out
    rather than blamed on an invented holder.
    """
    holder_of = {priority: queue for queue, priority in effective.items()}
    found: dict[str, str] = {}
    for request in requests:
        value = effective.get(request.queue)
        holder = holder_of.get(request.requested)
        if value is not None and value != request.requested and holder is not None:
            found[request.queue] = holder
    return found


def _check_targets(targets: Mapping[str, int]) -> None:
    """Refuse what Prefect's API refuses: values below 1 and two queues sharing a target."""
    below_one = sorted(f"{queue}={value}" for queue, value in targets.items() if value < 1)
    if below_one:
        raise ValueError(f"priorities must be at least 1: {', '.join(below_one)}")
    by_value: defaultdict[int, list[str]] = defaultdict(list)
    for queue, priority in targets.items():
        by_value[priority].append(queue)
    clashes = {priority: queues for priority, queues in by_value.items() if len(queues) > 1}
    if clashes:
        raise DuplicatePriorityError(clashes)
