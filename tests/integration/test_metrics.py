"""The Prometheus endpoint, scraped during a real run, agrees with the objects it describes."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.support.kube import Kubectl
from tests.support.objects import pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker


def samples(operator: OperatorProcess, namespace: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of this namespace's series, keyed by (name, sorted labels without namespace)."""
    found = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "namespace"))
                found[sample.name, labels] = sample.value
    return found


def test_metrics_follow_slots_queues_workers_admissions_and_reclaims(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Callable[..., SimulatedWorker]
) -> None:
    installed.apply(pool("p", concurrencyLimit=2), queue("q", "p", priority=1), namespace=namespace)
    installed.apply(*[run(f"r{i}", "p", workQueue="q") for i in range(3)], namespace=namespace)
    worker = workers("p", "w1", interval=1)
    worker.beat()
    wait_for(
        lambda: installed.get("wq", "q", namespace).get("status", {}).get("scheduledRuns"),
        equals=1,
        what="2 admitted, 1 waiting",
    )

    P, Q = (("pool", "p"),), (("pool", "p"), ("queue", "q"))
    got = wait_for(
        lambda: (m := samples(operator, namespace)).get(("workpools_scheduled_runs", Q)) == 1 and m, what="the gauges"
    )
    # The gauges follow each pass; the pool's status counts are written at most every few seconds.
    pool_status = wait_for(
        lambda: (s := installed.get("wp", "p", namespace)["status"])["slots"]["active"] == 2 and s,
        what="the pool's status counts",
    )
    assert got["workpools_pool_slots_active", P] == pool_status["slots"]["active"] == 2
    assert got["workpools_pool_slots_limit", P] == 2
    assert got["workpools_pool_slots_open", P] == 0
    assert got["workpools_workers_online", P] == pool_status["workers"]["online"] == 1
    assert got["workpools_queue_slots_active", Q] == 2
    assert ("workpools_queue_slots_limit", Q) not in got, "an unlimited queue has no limit series"
    assert got["workpools_admissions_total", Q] == 2
    assert got["workpools_admission_latency_seconds_count", P] == 2
    assert got["workpools_late_runs", Q] == 0

    # The worker goes silent: both of its Pending runs are reclaimed.
    lost = (("pool", "p"), ("reason", "WorkerLost"))
    wait_for(
        lambda: samples(operator, namespace).get(("workpools_reclaims_total", lost)),
        equals=2.0,
        timeout=15,
        what="two reclaims counted",
    )
    # Bounded labels: pools, queues and reasons only, never a run or a worker.
    label_sets = {labels for (_, labels) in samples(operator, namespace)}
    assert {k for labels in label_sets for k, _ in labels} <= {"pool", "queue", "reason", "le"}


def test_the_admissible_backlog_counts_runs_within_the_limits_that_wait_for_a_worker(
    installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Callable[..., SimulatedWorker]
) -> None:
    installed.apply(pool("p", concurrencyLimit=3), queue("q", "p", priority=1), namespace=namespace)
    installed.apply(*[run(f"r{i}", "p", workQueue="q") for i in range(5)], namespace=namespace)
    Q, default = (("pool", "p"), ("queue", "q")), (("pool", "p"), ("queue", "p-default"))

    def backlog() -> tuple[float | None, float | None]:
        got = samples(operator, namespace)
        return got.get(("workpools_admissible_backlog", Q)), got.get(("workpools_admissible_backlog", default))

    def active() -> int | None:
        slots: int | None = installed.get("wp", "p", namespace).get("status", {}).get("slots", {}).get("active")
        return slots

    # No worker: five wait, three of them within the pool's limit (a worker would get them now).
    wait_for(backlog, equals=(3, 0), what="a backlog of 3 on q, none on the default queue")
    # A worker with room for two takes two: one run within the limit still lacks a worker.
    workers("p", "w1", interval=60, limit=2).beat()  # online for the whole test
    wait_for(active, equals=2, what="2 granted to w1")
    wait_for(backlog, equals=(1, 0), what="a backlog of 1")
    # A second worker takes the last slot: the two runs left wait for a slot, which more workers would not give.
    workers("p", "w2", interval=60, limit=2).beat()
    wait_for(active, equals=3, what="3 granted")
    wait_for(backlog, equals=(0, 0), what="no backlog with the pool full")
