"""Argo CD health checks on objects captured from the real control plane.

Each object is taken straight from the API server: from the response of the very write that put
it in the state under test (create, spec patch, or status patch as admin), or as the operator left
it. States the operator does not produce yet are written through the status subresource; the
CRD's rules still apply to them, so FlowRuns walk the state machine one legal move at a time.
The scripts then run in the same Lua 5.1 sandbox as the unit tests (Argo CD's, see there).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl, KubectlError
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.unit.argocd.test_health_lua import ARGOCD, Health, evaluate, patch_data

ROOT = Path(__file__).resolve().parents[2]
API = "workpools.dev/v1alpha1"


def timestamp(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: str, reason: str, message: str, generation: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": timestamp(),
    }


def create(kubectl: Kubectl, namespace: str, kind: str, name: str, **spec: Any) -> Any:
    """The object as the API server stored it on creation (no status yet)."""
    manifest = {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}
    return json.loads(kubectl("create", "-n", namespace, "-f", "-", "-o", "json", input=yaml.safe_dump(manifest)))


def patch(kubectl: Kubectl, namespace: str, resource: str, name: str, body: dict[str, Any], *, status: bool) -> Any:
    """A merge patch (of the status subresource, as admin, if `status`); the stored result."""
    args = ["patch", resource, name, "-n", namespace, "--type=merge", "-p", json.dumps(body), "-o", "json"]
    if status:
        args.append("--subresource=status")
    return json.loads(kubectl(*args))


def status_patch(kubectl: Kubectl, namespace: str, resource: str, name: str, **status: Any) -> Any:
    return patch(kubectl, namespace, resource, name, {"status": status}, status=True)


def spec_patch(kubectl: Kubectl, namespace: str, resource: str, name: str, **spec: Any) -> Any:
    return patch(kubectl, namespace, resource, name, {"spec": spec}, status=False)


def observed_by_operator(kubectl: Kubectl, namespace: str, name: str, generation: int, phase: str) -> Any:
    def probe() -> Any:
        pool = kubectl.get("wp", name, namespace)
        status = pool.get("status", {})
        done = status.get("observedGeneration") == generation and status.get("phase") == phase
        return pool if done else None

    return wait_for(probe, what=f"the operator to observe WorkPool {name} at generation {generation} ({phase})")


def test_workpool(installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    created = create(installed, namespace, "WorkPool", "etl", concurrencyLimit=2)
    assert "status" not in created
    assert evaluate(created) == Health("Progressing", "Waiting for the operator to observe generation 1")

    fresh = observed_by_operator(installed, namespace, "etl", 1, "NotReady")
    assert evaluate(fresh) == Health(
        "Healthy", "No worker online yet; runs wait in their queues until a worker starts"
    ), "a pool without workers must not block sync waves"
    # Nothing for ignoreResourceUpdates to hide: kopf keeps no bookkeeping on our objects.
    assert not [k for k in fresh["metadata"].get("annotations", {}) if "kopf" in k]
    assert "kopf" not in fresh["status"]

    edited = spec_patch(installed, namespace, "wp", "etl", description="Nightly ETL")
    assert (edited["metadata"]["generation"], edited["status"]["observedGeneration"]) == (2, 1)
    assert evaluate(edited) == Health("Progressing", "Waiting for the operator to observe generation 2")
    assert evaluate(observed_by_operator(installed, namespace, "etl", 2, "NotReady")).status == "Healthy"

    spec_patch(installed, namespace, "wp", "etl", paused=True)
    paused = observed_by_operator(installed, namespace, "etl", 3, "Paused")
    assert evaluate(paused) == Health("Suspended", "WorkPool is paused (spec.paused): no runs are admitted from it")

    # Ready and Invalid are not the operator's to produce yet (no worker accounting, no template
    # checks): written as admin on a second pool, captured from the write's own response.
    create(installed, namespace, "WorkPool", "ml")
    observed_by_operator(installed, namespace, "ml", 1, "NotReady")
    ready = status_patch(
        installed,
        namespace,
        "wp",
        "ml",
        phase="Ready",
        workers={"online": 1, "total": 1},
        conditions=[condition("Ready", "True", "Ready", "1 of 1 workers online")],
    )
    assert evaluate(ready) == Health("Healthy", "1 of 1 workers online")
    invalid = status_patch(
        installed,
        namespace,
        "wp",
        "ml",
        conditions=[condition("Invalid", "True", "TemplateInvalid", "variable {{ image }} is not declared")],
    )
    assert evaluate(invalid) == Health("Degraded", "variable {{ image }} is not declared")


def test_workqueue(installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    create(installed, namespace, "WorkPool", "etl")
    default = wait_for(
        lambda: (q := installed.try_get("wq", "etl-default", namespace)) and q.get("status", {}).get("phase") and q,
        what="the operator's default queue with a phase",
    )
    assert evaluate(default) == Health(
        "Healthy", "No worker online yet; runs wait in this queue until a worker serving it starts"
    )

    created = create(installed, namespace, "WorkQueue", "etl-critical", workPool="etl", priority=2)
    assert evaluate(created) == Health("Progressing", "Waiting for the operator to observe generation 1")

    def queue_status(**status: Any) -> Any:
        return status_patch(installed, namespace, "wq", "etl-critical", **status)

    not_ready = queue_status(
        observedGeneration=1,
        phase="NotReady",
        effectivePriority=2,
        conditions=[condition("Ready", "False", "NoOnlineWorker", "no online worker serves this queue")],
    )
    assert evaluate(not_ready) == Health(
        "Healthy", "No worker online yet; runs wait in this queue until a worker serving it starts"
    )
    conflict = queue_status(
        phase="Ready",
        effectivePriority=3,
        conditions=[
            condition("Ready", "True", "WorkerOnline", "served by 1 online worker"),
            condition("PriorityConflict", "True", "PriorityTaken", "priority 2 is held by queue etl-hot; runs at 3"),
        ],
    )
    assert evaluate(conflict) == Health(
        "Healthy", "served by 1 online worker; priority 2 is held by queue etl-hot; runs at 3"
    )

    edited = spec_patch(installed, namespace, "wq", "etl-critical", paused=True)
    assert evaluate(edited) == Health("Progressing", "Waiting for the operator to observe generation 2")
    paused = queue_status(
        observedGeneration=2,
        phase="Paused",
        conditions=[condition("Paused", "True", "Paused", "spec.paused is true", generation=2)],
    )
    assert evaluate(paused) == Health("Suspended", "WorkQueue is paused (spec.paused): no runs are admitted from it")

    create(installed, namespace, "WorkQueue", "orphan", workPool="gone")
    orphan = status_patch(
        installed,
        namespace,
        "wq",
        "orphan",
        observedGeneration=1,
        phase="NotReady",
        conditions=[condition("PoolNotFound", "True", "PoolNotFound", "WorkPool gone does not exist")],
    )
    assert evaluate(orphan) == Health("Degraded", "WorkPool gone does not exist")


def online(kubectl: Kubectl, namespace: str, name: str) -> Any:
    """Worker `name` heartbeating now, judged Online (an interval of an hour keeps it Online)."""
    return status_patch(
        kubectl,
        namespace,
        "wkr",
        name,
        lastHeartbeatTime=timestamp(),
        observedGeneration=1,
        phase="Online",
        conditions=[condition("Ready", "True", "WorkerOnline", "heartbeat is recent")],
    )


def test_worker(installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    create(installed, namespace, "WorkPool", "etl")
    created = create(installed, namespace, "Worker", "w-1", workPool="etl", heartbeatIntervalSeconds=3600)
    assert evaluate(created) == Health("Progressing", "Waiting for the operator to observe generation 1")

    assert evaluate(online(installed, namespace, "w-1")) == Health("Healthy", "Online; 0 runs assigned")

    # Offline for real: the operator judges liveness on its own clock, so a worker beating every
    # second falls silent and is judged, rather than an Offline status written by hand.
    create(installed, namespace, "Worker", "w-2", workPool="etl", heartbeatIntervalSeconds=1)
    last = timestamp()
    status_patch(installed, namespace, "wkr", "w-2", lastHeartbeatTime=last)

    def stored_when(**wanted: Any) -> Any:
        worker = installed.get("wkr", "w-2", namespace)
        status = worker.get("status", {})
        return worker if all(status.get(k) == v for k, v in wanted.items()) else None

    offline = wait_for(lambda: stored_when(phase="Offline", observedGeneration=1), what="w-2 judged Offline")
    assert evaluate(offline) == Health("Degraded", f"Offline: last heartbeat at {last} (expected every 1s)")

    draining = spec_patch(installed, namespace, "wkr", "w-2", draining=True)
    assert evaluate(draining) == Health("Progressing", "Waiting for the operator to observe generation 2")
    stopped = wait_for(lambda: stored_when(phase="Offline", observedGeneration=2), what="generation 2 observed")
    assert evaluate(stopped) == Health(
        "Suspended", f"Offline after draining (stopped deliberately); last heartbeat at {last}"
    )

    create(installed, namespace, "Worker", "stray", workPool="gone")
    stray = status_patch(
        installed,
        namespace,
        "wkr",
        "stray",
        observedGeneration=1,
        phase="Online",
        conditions=[condition("PoolNotFound", "True", "PoolNotFound", "WorkPool gone does not exist")],
    )
    assert evaluate(stray) == Health("Degraded", "WorkPool gone does not exist")


class Run:
    """One FlowRun walked through the state machine by status writes, as admin."""

    def __init__(self, kubectl: Kubectl, namespace: str, name: str) -> None:
        self.kubectl, self.namespace, self.name = kubectl, namespace, name
        # Scheduled a day ahead: an operator that admits runs leaves this one alone.
        self.created = create(
            kubectl, namespace, "FlowRun", name, workPool="etl", scheduledTime=timestamp(timedelta(days=1))
        )

    def to(self, state: str, **status: Any) -> Any:
        status.setdefault("stateName", state)  # as the operator and workers write it
        return status_patch(self.kubectl, self.namespace, "fr", self.name, state=state, **status)

    def scheduled(self) -> Any:
        return self.to(
            "Scheduled",
            observedGeneration=1,
            conditions=[condition("Admitted", "False", "NotYetScheduled", "scheduled for tomorrow")],
        )

    def pending(self) -> Any:
        return self.to(
            "Pending",
            worker="w-1",
            slot={"acquiredAt": timestamp(), "queue": "etl-default"},
            conditions=[condition("Admitted", "True", "Admitted", "bound to worker w-1")],
        )

    def running(self) -> Any:
        return self.to("Running", startTime=timestamp())

    def started(self) -> Any:
        """Scheduled, then Pending on w-1, then Running."""
        self.scheduled()
        self.pending()
        return self.running()


def test_flowrun(installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    create(installed, namespace, "WorkPool", "etl")
    create(installed, namespace, "Worker", "w-1", workPool="etl", heartbeatIntervalSeconds=3600)
    online(installed, namespace, "w-1")

    done = Run(installed, namespace, "done")
    assert evaluate(done.created) == Health("Progressing", "Waiting for the operator to observe generation 1")
    assert evaluate(done.scheduled()) == Health("Progressing", "Scheduled: scheduled for tomorrow")
    assert evaluate(done.pending()) == Health("Progressing", "Pending on worker w-1")
    assert evaluate(done.running()) == Health("Progressing", "Running on worker w-1")
    completed = done.to("Completed", endTime=timestamp(), slot=None)
    assert evaluate(completed) == Health("Healthy", "Completed on worker w-1")
    with pytest.raises(KubectlError, match="cannot move from Completed to Running"):
        done.to("Running")

    failed = Run(installed, namespace, "failed")
    failed.started()
    result = failed.to("Failed", endTime=timestamp(), slot=None, message="exit code 3")
    assert evaluate(result) == Health("Degraded", "Failed on worker w-1: exit code 3")

    crashed = Run(installed, namespace, "crashed")
    crashed.scheduled()
    crashed.pending()
    result = crashed.to("Crashed", slot=None, message="the process could not start")
    assert evaluate(result) == Health("Degraded", "Crashed on worker w-1: the process could not start")

    late = Run(installed, namespace, "late")
    late.scheduled()
    result = late.to(
        "Scheduled",
        stateName="Late",
        conditions=[condition("Admitted", "False", "NoOnlineWorker", "no Online worker serves queue etl-default")],
    )
    assert evaluate(result) == Health("Progressing", "Scheduled (Late): no Online worker serves queue etl-default")
    assert evaluate(late.to("Cancelled", stateName=None)) == Health("Healthy", "Cancelled")

    cancelling = Run(installed, namespace, "cancelling")
    cancelling.started()
    asked = spec_patch(installed, namespace, "fr", "cancelling", cancel=True)
    assert evaluate(asked) == Health(
        "Progressing", "Running on worker w-1 (Waiting for the operator to observe generation 2)"
    )
    result = cancelling.to("Cancelling", observedGeneration=2)
    health = evaluate(result)  # "... since <time>" once the operator has stamped status.cancellingSince
    assert health.status == "Progressing"
    assert health.message.startswith("Cancelling on worker w-1")
    # message=None: the operator may have written its own "cancellation requested" message meanwhile.
    done = cancelling.to("Cancelled", slot=None, message=None)
    assert evaluate(done) == Health("Healthy", "Cancelled on worker w-1")

    paused = Run(installed, namespace, "paused")
    paused.started()
    result = paused.to("Paused", stateName="Suspended", slot=None)
    assert evaluate(result) == Health("Suspended", "Paused (Suspended) on worker w-1")


def test_argocd_cm_patch_applies_to_a_configmap(installed: Kubectl, namespace: str, tmp_path: Path) -> None:
    """The documented `kubectl patch` works, and the API server keeps every key and script intact."""
    installed("create", "configmap", "argocd-cm", "-n", namespace)
    patch_file = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    patch_file["metadata"]["namespace"] = namespace  # never touch a real Argo CD's settings
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump(patch_file))
    installed(
        "patch",
        "configmap",
        "argocd-cm",
        "-n",
        namespace,
        "--type",
        "merge",
        "--patch-file",
        str(tmp_path / "patch.yaml"),
    )
    assert installed.get("configmap", "argocd-cm", namespace)["data"] == patch_data()


def test_application_patches_render_with_kustomize(kubectl: Kubectl, tmp_path: Path) -> None:
    """The Application's kustomize patches, merged into examples/ as Argo CD does, give the waves."""
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    source = app["spec"]["source"]
    work = tmp_path / "examples"
    shutil.copytree(ROOT / source["path"], work, ignore=shutil.ignore_patterns("argocd"))
    kustomization = yaml.safe_load((work / "kustomization.yaml").read_text())
    kustomization["patches"] = [*kustomization.get("patches", []), *source["kustomize"]["patches"]]
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))

    rendered = list(yaml.safe_load_all(kubectl("kustomize", str(work))))
    waves = {
        (o["kind"], o["metadata"]["name"]): o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave")
        for o in rendered
    }
    assert waves[("WorkPool", "demo")] == "1"
    assert {waves[("WorkQueue", q)] for q in ("demo-critical", "demo-standard", "demo-batch")} == {"2"}
    assert waves[("Namespace", "workpools-demo")] is None
