"""The dashboard and alerts of manifests/monitoring/, evaluated on what the running operator
exports: a pool, its queues, a worker and runs go through three moments (waiting for a worker;
saturated with a Late run; the worker lost and its slots reclaimed), the operator's /metrics is
scraped at each, and `promtool test rules` evaluates every dashboard query and every alert on
those scrapes (each held on promtool's clock for as long as the alerts' `for` needs: this is the
state staying as scraped). Each query returns exactly the series, with the labels, that its
panel is for; the alerts that fire are exactly the ones the moment calls for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import promtool
from tests.support.kube import Kubectl
from tests.support.objects import pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.promtool import count_by, expr_test, firing, series_line
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker
from workpools.controllers import metrics

Labels = tuple[tuple[str, str], ...]
Scrape = dict[tuple[str, Labels], float]
MOMENTS = (("S0", 0, 5), ("S1", 5, 40), ("S2", 40, 61))
"""Each scrape's minutes on promtool's clock: [from, to)."""


def scrape(operator: OperatorProcess, namespace: str) -> Scrape:
    """This namespace's samples, as a Prometheus scrape stores them (no _created series)."""
    found = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace and not sample.name.endswith("_created"):
                found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def input_series(scrapes: list[Scrape], zero: float, target: dict[str, str]) -> list[dict[str, str]]:
    """promtool input series: scrape i's value at every minute of its moment, `_` where it had no sample.

    Timestamps (`*_timestamp_seconds`) move to promtool's clock with one offset, `zero` (the first
    scrape's wall time) at minute 0, so that `time() - x` is the real age then and grows with the clock.
    """
    keys = sorted({key for samples in scrapes for key in samples})
    out = []
    for name, labels in keys:
        values = []
        for samples, (_, start, end) in zip(scrapes, MOMENTS, strict=True):
            value = samples.get((name, labels))
            if value is not None and name.endswith("_timestamp_seconds"):
                value -= zero
            values += [repr(value) if value is not None else "_"] * (end - start)
        out.append({"series": series_line(name, {**dict(labels), **target}), "values": " ".join(values)})
    return out


def test_every_dashboard_query_and_alert_on_the_operators_own_series(
    installed: Kubectl,
    operator: OperatorProcess,
    namespace: str,
    workers: Callable[..., SimulatedWorker],
    tmp_path: Path,
) -> None:
    promtool.binary()  # built before the clock matters
    installed.apply(pool("p", concurrencyLimit=3), queue("q", "p", priority=1, concurrencyLimit=5), namespace=namespace)
    installed.apply(*[run(f"r{i}", "p", workQueue="q") for i in range(4)], namespace=namespace)
    Q = (("namespace", namespace), ("pool", "p"), ("queue", "q"))
    P = Q[:2]

    def waiting(samples: Scrape) -> float | None:
        return samples.get(("workpools_scheduled_runs", Q))

    def backlog(samples: Scrape) -> float | None:
        return samples.get(("workpools_admissible_backlog", Q))

    # S0: four runs wait, no worker yet; three of them within the pool's limit (the admissible backlog).
    s0 = wait_for(
        lambda: (m := scrape(operator, namespace)) and waiting(m) == 4 and backlog(m) == 3 and m,
        what="4 runs waiting, 3 admissible",
    )
    zero = time.time()
    scrapes = [s0]

    # S1: a worker takes 3 runs (the pool's limit), r3 waits until it is Late (15 s past its time).
    worker = workers("p", "w1", interval=1)

    def saturated_and_late() -> Scrape | None:
        worker.beat()
        m = scrape(operator, namespace)
        return m if waiting(m) == 1 and m.get(("workpools_late_runs", Q)) == 1 and backlog(m) == 0 else None

    scrapes.append(wait_for(saturated_and_late, timeout=40, interval=0.5, what="saturated, r3 Late"))
    assert scrapes[1]["workpools_pool_slots_active", P] == 3

    # S2: the worker falls silent; its three Pending runs are reclaimed and wait again.
    lost = (*P, ("reason", "WorkerLost"))

    def reclaimed() -> Scrape | None:
        m = scrape(operator, namespace)
        return (
            m
            # All three, seen in one scrape: a scrape in the middle of a pass can see the reclaims
            # counted before the gauges of that pass are set.
            if m.get(("workpools_reclaims_total", lost)) == 3
            and m.get(("workpools_workers_online", P)) == 0
            and waiting(m) == 4
            and backlog(m) == 3
            else None
        )

    scrapes.append(wait_for(reclaimed, timeout=30, what="3 reclaims, no worker online"))
    assert waiting(scrapes[2]) == 4

    target = {"job": "workpools-operator", "instance": f"127.0.0.1:{operator.metrics_port}"}
    series = input_series(scrapes, zero, target)

    # What each panel is for, on this pool: its default queue p-default has no limit and no runs.
    both_queues = [{"queue": "p-default"}, {"queue": "q"}]
    expected = {
        "Pool saturation (active / limit)": [{}],
        "Pool slots": [{}],
        "Queue saturation (active / limit)": [{"queue": "q"}],
        "Queue backlog (Scheduled runs)": both_queues,
        "Late runs": both_queues,
        "Oldest waiting run (age past its scheduled time)": [{"queue": "q"}],
        "Admission latency": [{}],
        "Admissions": both_queues,
        "Workers online": [{}],
        "Reclaims": [{"reason": r} for r in sorted(metrics.RECLAIM_REASONS)],
        "Reconcile errors": [{}],
        "Admissible backlog (runs only waiting for a worker)": both_queues,
    }
    queries = promtool.dashboard_queries(namespace=namespace)
    assert {q.panel for q in queries} == set(expected)
    tests = []
    for query in queries:
        labels = [{"namespace": namespace, "pool": "p", **extra} for extra in expected[query.panel]]
        shown = [{k: v for k, v in ls.items() if k in query.legend_labels} for ls in labels]
        for at in ("8m", "42m"):  # 5-minute windows across S0 → S1 (grants) and S1 → S2 (reclaims)
            tests.append(expr_test(count_by(query.legend_labels, query.expr), at, shown))

    def alert(name: str, severity: str, **labels: str) -> dict[str, str]:
        return {"alertname": name, "severity": severity, "namespace": namespace, "pool": "p", **labels}

    # S1 held 30 minutes: saturated with r3 waiting; r3 long Late. S2 10 minutes on: no worker
    # for 5 minutes, 3 reclaims within 15; r3 and the others still Late; no longer saturated.
    at_35m = [alert("WorkPoolSaturated", "warning"), alert("WorkQueueRunsLate", "warning", queue="q")]
    at_50m = [
        alert("WorkPoolNoWorkerOnline", "critical"),
        alert("WorkPoolReclaimsSpiking", "warning", reason="WorkerLost"),
        alert("WorkQueueRunsLate", "warning", queue="q"),
    ]
    tests += [expr_test(firing(), "35m", at_35m), expr_test(firing(), "50m", at_50m)]
    alerts_checked = {a["alertname"] for a in [*at_35m, *at_50m]}
    untested = set(promtool.alerts()) - alerts_checked
    assert untested == {"WorkPoolReconcileErrors"}, "the operator made no reconcile error here: unit-tested only"
    # Every series an alert reads is there for this pool (WorkPoolReconcileErrors' counter too, at 0).
    read = {name for rule in promtool.alerts().values() for name in re.findall(r"\bworkpools_\w+", rule["expr"])}
    for name in sorted(read):
        tests.append(expr_test(f"group by (namespace, pool) ({name})", "42m", [{"namespace": namespace, "pool": "p"}]))

    result = promtool.test_rules(tmp_path, series, tests)
    assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "tests.yaml").read_text()[:4000]
