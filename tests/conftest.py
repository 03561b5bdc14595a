"""Fixtures for every test layer.

unit/         pure functions, no server: nothing here is used.
integration/  a real control plane (started locally, or $KUBECONFIG's cluster), the manifests
              installed, the operator running as its ServiceAccount, a namespace per test.
e2e/          the same cluster, driven through kubectl and the README's commands.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import worker_rbac
from tests.support.kube import Kubectl
from tests.support.operator import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    install,
    service_account_kubeconfig,
)
from tests.support.workers import SimulatedWorker
from tools.controlplane.cluster import ControlPlane, binaries

CLUSTER_LAYERS = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(f"tests/{layer}/" in item.nodeid for layer in CLUSTER_LAYERS):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _garbage_collected_after_cluster_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """A connection a cluster test leaves open is reported by that test (pytest turns the
    ResourceWarning into an error), not by whichever later test the collector happens to run in."""
    yield
    if request.node.get_closest_marker("integration") is not None:
        gc.collect()


@pytest.fixture(scope="session")
def kubectl(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """kubectl for the cluster under test: $KUBECONFIG's, or a local control plane started for the session."""
    bin_dir = binaries()  # kubectl of the pinned release, whatever is preinstalled
    given = os.environ.get("KUBECONFIG")
    plane: ControlPlane | None = None
    if given:
        kubeconfig = Path(given.split(os.pathsep)[0])
    else:
        plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), bin_dir=bin_dir)
        plane.start()
        kubeconfig = plane.kubeconfig
    kubectl = Kubectl(kubeconfig, binary=str(bin_dir / "kubectl"))
    version = kubectl.json("version")["serverVersion"]["gitVersion"]
    where = f"local control plane in {plane.workdir}" if plane else f"KUBECONFIG={kubeconfig}"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # CI logs must show which API server the tests ran against
        print(f"\nkube-apiserver {version} ({where})", flush=True)
    try:
        yield kubectl
    finally:
        if plane is not None:
            plane.stop()


@pytest.fixture(scope="session")
def installed(kubectl: Kubectl) -> Kubectl:
    """manifests/ applied server-side (the operator Deployment scaled to zero: the tests run it)."""
    return install(kubectl)


@pytest.fixture(scope="session")
def operator(installed: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator, running cluster-wide as its ServiceAccount: missing RBAC makes tests fail."""
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(installed, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, workdir / "kubeconfig")
    process = OperatorProcess(kubeconfig, workdir / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def namespace(installed: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (objects go with it, via the namespace controller)."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    installed("create", "namespace", name)
    yield name
    installed("delete", "namespace", name, "--wait=false")


@pytest.fixture
def worker_kubeconfig(installed: Kubectl, namespace: str, tmp_path: Path) -> Path:
    """Credentials of a worker in `namespace`: the shipped workpools-worker ClusterRole, bound there only."""
    return worker_rbac.worker_kubeconfig(installed, namespace, tmp_path / "worker.kubeconfig")


@pytest.fixture
def workers(worker_kubeconfig: Path, namespace: str) -> Iterator[Callable[..., SimulatedWorker]]:
    """Make simulated workers: `workers("pool", "w1", interval=1, limit=2)`; closed after the test."""
    made: list[SimulatedWorker] = []

    def make(pool: str, name: str, **options: Any) -> SimulatedWorker:
        made.append(SimulatedWorker(worker_kubeconfig, namespace, pool, name, **options))
        return made[-1]

    yield make
    for worker in made:
        worker.close()
