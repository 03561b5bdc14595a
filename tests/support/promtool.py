"""promtool (built from the Go module proxy by tools/prometheus/build.sh) and the monitoring files
of manifests/monitoring/, in the shapes promtool reads.

`promtool test rules` evaluates rules and PromQL on series given as `input_series`, on a simulated
clock that starts at 0: the unit tests write those series by hand, the integration test from
scrapes of the running operator. An expression is checked by the label sets it returns, through
`count by (<labels>) (<expr>)`, whose value is 1 per label set whatever the expression's values.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
MONITORING = ROOT / "manifests" / "monitoring"
DASHBOARD = MONITORING / "workpools-dashboard.json"
RULES = MONITORING / "prometheusrule.yaml"
Labels = Mapping[str, str]


@functools.cache
def binary() -> Path:
    """promtool, built by tools/prometheus/build.sh if needed (the checker alone: the server is not needed here)."""
    out = subprocess.run(
        ["bash", str(ROOT / "tools/prometheus/build.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROMETHEUS_BINARIES": "promtool"},
    ).stdout
    return Path(out.strip().splitlines()[-1]) / "promtool"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary()), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule's spec.groups: a Prometheus rules file's `groups`."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    return groups


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in rule_groups() for rule in group["rules"] if "alert" in rule}


@dataclass(frozen=True)
class Query:
    panel: str
    legend: str
    expr: str

    @property
    def legend_labels(self) -> tuple[str, ...]:
        """The labels its legend shows ({{pool}}/{{queue}}): each returned series must carry them."""
        return tuple(sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", self.legend)) | {"namespace"}))


def dashboard_queries(*, namespace: str = ".*", rate_interval: str = "5m") -> list[Query]:
    """Every panel query, with the dashboard's variables as Grafana would fill them in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        Query(
            panel["title"],
            target["legendFormat"],
            target["expr"]
            .replace("$namespace", namespace)
            .replace("$pool", ".*")
            .replace("$__rate_interval", rate_interval),
        )
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def series_line(name: str, labels: Labels) -> str:
    inner = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def count_by(labels: Iterable[str], expr: str) -> str:
    return f"count by ({', '.join(labels)}) ({expr})"


def firing(labels: Sequence[str] = ("alertname", "namespace", "pool", "queue", "reason", "severity")) -> str:
    """The alerts firing, one sample per alert and label set (ALERTS is written by the rule evaluation)."""
    return count_by(labels, 'ALERTS{alertstate="firing"}')


def expr_test(expr: str, eval_time: str, expected: Iterable[Labels]) -> dict[str, Any]:
    """A promql_expr_test: `expr` returns exactly these label sets, each with value 1."""
    return {
        "expr": expr,
        "eval_time": eval_time,
        "exp_samples": [{"labels": series_line("", labels) if labels else "{}", "value": 1} for labels in expected],
    }


def test_rules(
    workdir: Path, input_series: Sequence[Mapping[str, str]], expr_tests: Sequence[Mapping[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` with the PrometheusRule's groups loaded, series at a 1-minute interval."""
    (workdir / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": list(input_series), "promql_expr_test": list(expr_tests)}],
    }
    (workdir / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return run("test", "rules", "tests.yaml", cwd=workdir)
