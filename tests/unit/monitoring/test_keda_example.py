"""examples/keda/: the KEDA ScaledObject scales the worker Deployment of the same folder, on a
query that names only series the operator exports, the admissible backlog among them, with a
threshold that is the workers' own --limit (one pod per that many runs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.monitoring.test_rules import exported_names
from workpools.controllers import metrics

KEDA = Path(__file__).resolve().parents[3] / "examples" / "keda"


def objects() -> dict[str, dict[str, Any]]:
    """The folder's kustomization resources, by kind (one of each)."""
    kustomization = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KEDA / name).read_text()):
            assert document["kind"] not in found, f"two {document['kind']}s"
            found[document["kind"]] = document
    return found


def trigger() -> dict[str, str]:
    (only,) = objects()["ScaledObject"]["spec"]["triggers"]
    assert only["type"] == "prometheus"
    metadata: dict[str, str] = only["metadata"]
    return metadata


def worker_flags() -> dict[str, str]:
    (container,) = objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["workpools", "worker", "start"]
    return dict(flag.removeprefix("--").split("=", 1) for flag in container["command"][3:])


def test_the_scaled_object_targets_the_worker_deployment_of_the_example() -> None:
    found = objects()
    target = found["ScaledObject"]["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == found["Deployment"]["metadata"]["name"]
    assert "replicas" not in found["Deployment"]["spec"], "KEDA owns the replica count"


def test_the_query_reads_the_admissible_backlog_of_the_workers_pool_and_only_exported_series() -> None:
    query = trigger()["query"]
    used = set(re.findall(r"\bworkpools_\w+", query))
    assert metrics.BacklogCollector.NAME in used
    assert used <= exported_names(), used - exported_names()
    pool = worker_flags()["pool"]
    namespace = yaml.safe_load((KEDA / "kustomization.yaml").read_text())["namespace"]
    for selector in re.findall(r"\{([^}]*)\}", query):
        assert f'pool="{pool}"' in selector, selector
        assert f'namespace="{namespace}"' in selector, selector


def test_one_worker_per_limit_of_runs_and_no_more_workers_than_the_pool_has_slots() -> None:
    limit = int(worker_flags()["limit"])
    assert float(trigger()["threshold"]) == limit
    spec = objects()["ScaledObject"]["spec"]
    pool = yaml.safe_load((KEDA.parent / "workpools.dev_v1alpha1_workpool.yaml").read_text())
    assert pool["metadata"]["name"] == worker_flags()["pool"]
    assert spec["maxReplicaCount"] == pool["spec"]["concurrencyLimit"] // limit


def test_pods_get_longer_to_stop_than_the_workers_grace() -> None:
    pod = objects()["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > float(worker_flags()["grace"])
