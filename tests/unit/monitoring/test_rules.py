"""The alert rules and dashboard of manifests/monitoring/, checked by promtool (tools/prometheus/build.sh):
the rules file is valid, every expression parses and names only series the operator exports, and
each alert fires in the situation it describes, and only there (series written by hand, on
promtool's simulated clock; tests/integration/test_monitoring.py does the same on real scrapes).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.support import promtool
from tests.support.promtool import expr_test, firing, series_line
from workpools.controllers import metrics

NS, POOL = "team", "etl"
P = {"namespace": NS, "pool": POOL}
Q = {**P, "queue": "nightly"}


def exported_names() -> set[str]:
    """Every sample name the operator's registry exposes (counters as _total, histograms as _bucket, ...)."""
    names = set()
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_rules_file_is_valid(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": promtool.rule_groups()}))
    result = promtool.run("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(promtool.alerts())} rules found" in result.stdout


def test_every_expression_names_only_series_the_operator_exports() -> None:
    exprs = [rule["expr"] for rule in promtool.alerts().values()] + [q.expr for q in promtool.dashboard_queries()]
    used = {name for expr in exprs for name in re.findall(r"\bworkpools_\w+", expr)}
    assert used, "no expression read"
    assert used <= exported_names(), used - exported_names()


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = promtool.dashboard_queries()
    result = promtool.test_rules(tmp_path, [], [expr_test(q.expr, "1m", []) for q in queries])
    assert result.returncode == 0, result.stdout + result.stderr


def alert_fired(tmp_path: Path, series: dict[str, str], at: str, expected: list[dict[str, str]]) -> None:
    """With these series (`{name{labels}: values}`, one value a minute), exactly `expected` fire at `at`."""
    input_series = [{"series": name, "values": values} for name, values in series.items()]
    result = promtool.test_rules(tmp_path, input_series, [expr_test(firing(), at, expected)])
    assert result.returncode == 0, result.stdout + result.stderr


def s(name: str, labels: dict[str, str], values: str) -> tuple[str, str]:
    return series_line(name, labels), values


HEALTHY = dict(
    [
        s("workpools_pool_slots_limit", P, "2x60"),
        s("workpools_pool_slots_active", P, "1x60"),
        s("workpools_pool_slots_open", P, "1x60"),
        s("workpools_workers_online", P, "1x60"),
        s("workpools_scheduled_runs", Q, "0x60"),
        s("workpools_reclaims_total", {**P, "reason": "WorkerLost"}, "0x60"),
        s("workpools_reconcile_errors_total", P, "0x60"),
    ]
)


def with_(*changes: tuple[str, str]) -> dict[str, str]:
    return {**HEALTHY, **dict(changes)}


def alert(name: str, severity: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, **P, **labels}


def test_a_healthy_pool_fires_nothing(tmp_path: Path) -> None:
    alert_fired(tmp_path, HEALTHY, "59m", [])


def test_a_pool_full_with_runs_waiting_for_30_minutes_is_saturated(tmp_path: Path) -> None:
    full = with_(
        s("workpools_pool_slots_active", P, "2x60"),
        s("workpools_pool_slots_open", P, "0x60"),
        s("workpools_scheduled_runs", Q, "3x60"),
    )
    alert_fired(tmp_path, full, "29m", [])
    alert_fired(tmp_path, full, "31m", [alert("WorkPoolSaturated", "warning")])
    nothing_waits = {**full, **dict([s("workpools_scheduled_runs", Q, "0x60")])}
    alert_fired(tmp_path, nothing_waits, "59m", [])
    closed = with_(  # concurrencyLimit 0 closes a pool on purpose
        s("workpools_pool_slots_limit", P, "0x60"),
        s("workpools_pool_slots_active", P, "0x60"),
        s("workpools_pool_slots_open", P, "0x60"),
        s("workpools_scheduled_runs", Q, "3x60"),
    )
    alert_fired(tmp_path, closed, "59m", [])


def test_a_run_waiting_15_minutes_past_its_time_makes_its_queue_late(tmp_path: Path) -> None:
    # The oldest due run was scheduled 100 s before the clock's 0: 900 s late at 13m20s, firing 5 minutes on.
    waiting = with_(s("workpools_queue_oldest_scheduled_timestamp_seconds", Q, "-100x60"))
    alert_fired(tmp_path, waiting, "18m", [])
    alert_fired(tmp_path, waiting, "19m", [alert("WorkQueueRunsLate", "warning", queue="nightly")])
    admitted_in_time = with_(s("workpools_queue_oldest_scheduled_timestamp_seconds", Q, "-100x10 _x50"))
    alert_fired(tmp_path, admitted_in_time, "30m", [])


def test_runs_admissible_with_no_worker_online_for_5_minutes(tmp_path: Path) -> None:
    stranded = with_(s("workpools_workers_online", P, "0x60"), s("workpools_admissible_backlog", Q, "2x60"))
    alert_fired(tmp_path, stranded, "4m", [])
    alert_fired(tmp_path, stranded, "5m", [alert("WorkPoolNoWorkerOnline", "critical")])
    idle = with_(s("workpools_workers_online", P, "0x60"))  # nothing waits: workers may scale to zero
    alert_fired(tmp_path, idle, "30m", [])
    # Runs wait, but none could start now (due later, or held by a limit or a pause): no worker is needed yet.
    held = with_(
        s("workpools_workers_online", P, "0x60"),
        s("workpools_scheduled_runs", Q, "2x60"),
        s("workpools_admissible_backlog", Q, "0x60"),
    )
    alert_fired(tmp_path, held, "30m", [])


def test_three_reclaims_of_one_reason_in_15_minutes_are_a_spike(tmp_path: Path) -> None:
    lost = {**P, "reason": "WorkerLost"}
    spike = with_(s("workpools_reclaims_total", lost, "0x10 3x50"))
    alert_fired(tmp_path, spike, "12m", [alert("WorkPoolReclaimsSpiking", "warning", reason="WorkerLost")])
    alert_fired(tmp_path, spike, "30m", [])  # over once 15 minutes have passed
    trickle = with_(s("workpools_reclaims_total", lost, "0x10 1x20 2x30"))
    alert_fired(tmp_path, trickle, "12m", [])
    alert_fired(tmp_path, trickle, "32m", [])


def test_reconcile_errors_for_10_minutes(tmp_path: Path) -> None:
    failing = with_(s("workpools_reconcile_errors_total", P, "0+1x60"))
    alert_fired(tmp_path, failing, "9m", [])
    alert_fired(tmp_path, failing, "11m", [alert("WorkPoolReconcileErrors", "critical")])
    one_conflict = with_(s("workpools_reconcile_errors_total", P, "0 1x59"))  # retried, then fine
    alert_fired(tmp_path, one_conflict, "30m", [])
