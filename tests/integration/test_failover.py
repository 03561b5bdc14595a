"""High availability: two replicas, one Lease, one active admitter; the leader killed mid-admission,
the standby takes over within a bounded time, and no limit is exceeded across the failover."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue, run
from tests.support.operator import OPERATOR_NAMESPACE, OperatorProcess
from tests.support.recorder import RunRecorder
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker

LEASE_SECONDS = 15  # client/transport.py `lead`: a standby may take over after this much silence


@pytest.fixture
def replicas(operator: OperatorProcess, tmp_path: Path) -> Iterator[dict[str, OperatorProcess]]:
    """Two leader-electing replicas instead of the session's standalone operator (restored after)."""
    operator.stop()
    made = {
        name: OperatorProcess(operator.kubeconfig, tmp_path / f"{name}.log", leader_election=name)
        for name in ("replica-a", "replica-b")
    }
    try:
        yield made
    finally:
        for replica in made.values():
            replica.stop(signal.SIGKILL)
        operator.start()


def holder(kubectl: Kubectl) -> str | None:
    lease = kubectl.try_get("lease", "workpools-operator", OPERATOR_NAMESPACE)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_the_standby_takes_over_within_bounded_time_and_limits_hold(
    installed: Kubectl,
    namespace: str,
    replicas: dict[str, OperatorProcess],
    workers: Callable[..., SimulatedWorker],
) -> None:
    first, second = replicas["replica-a"], replicas["replica-b"]
    first.start()  # elected: the Lease is free
    second.start(wait=False)  # a follower: it waits on the Lease
    assert holder(installed) == "replica-a"
    time.sleep(0.5)
    assert not second.healthy(), "the standby must not operate while the leader renews"

    installed.apply(pool("p", concurrencyLimit=3), queue("q", "p", priority=1, concurrencyLimit=2), namespace=namespace)
    recorder = RunRecorder(installed, namespace, {("pool", "p"): 3, ("queue", "q"): 2, ("worker", "w1"): 3})
    worker = workers("p", "w1", interval=30, limit=3)
    worker.beat()
    installed.apply(*[run(f"r{i:02d}", "p", workQueue="q" if i % 2 else None) for i in range(24)], namespace=namespace)

    def finish_bound_runs() -> int:
        """The worker's part: run what is bound to it to completion; returns how many are done."""
        for name, state in recorder.snapshot().items():
            for step in {"Pending": ("Running", "Completed"), "Running": ("Completed",)}.get(state, ()):
                try:
                    worker.move(name, step)
                except Exception:  # the operator moved it meanwhile (e.g. a reclaim): next round
                    break
        return sum(1 for s in recorder.snapshot().values() if s == "Completed")

    wait_for(lambda: finish_bound_runs() >= 6, what="admission under the first leader")
    killed_at = time.monotonic()
    first.stop(signal.SIGKILL)  # mid-admission: runs are Pending and Running right now
    wait_for(
        lambda: holder(installed) == "replica-b",
        timeout=LEASE_SECONDS + 15,
        interval=0.5,
        what="the standby holding the Lease",
    )
    wait_for(second.healthy, timeout=30, what="the new leader operating")
    failover = time.monotonic() - killed_at
    wait_for(lambda: finish_bound_runs() == 24, timeout=120, interval=0.3, what="every run completed")
    recorder.stop()

    assert recorder.violations == []
    assert recorder.peak["pool", "p"] == 3
    assert failover <= LEASE_SECONDS + 10, f"failover took {failover:.1f}s"
    print(f"\nfailover: leader killed → standby operating in {failover:.1f}s")
