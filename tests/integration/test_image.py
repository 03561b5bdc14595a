"""The operator image, run the way the Deployment runs it.

`tools/image/build.sh` builds the image from the repo's Dockerfile with buildah (its Python base is made
locally with debootstrap: no container registry is reachable here) and `tools/image/podman.sh` runs it
against the control plane: host network, the ServiceAccount's token, the image's own non-root user,
read-only root filesystem with a tmpfs /tmp, no capabilities, no privilege escalation. The image is
built FROM scratch (no shell, no package manager, no pip) and must stay within 150 MB. The session's
operator process is paused meanwhile, so whatever reconciles the pool is the container.

Skipped, saying why, where buildah or podman is not installed or the tests do not run as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kube import Kubectl
from tests.support.objects import pool
from tests.support.operator import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, OperatorProcess
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools/image/build.sh"
PODMAN = ROOT / "tools/image/podman.sh"
IN_CONTAINER_KUBECONFIG = "/var/run/workpools/kubeconfig"
MAX_IMAGE_BYTES = 150 * 1000 * 1000

_missing = [tool for tool in ("buildah", "podman") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.skipif(
        bool(_missing),
        reason=f"{' and '.join(_missing)} not installed: building and running the operator image needs Debian's "
        "buildah and podman (apt-get install buildah podman runc debootstrap)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="building and running the image needs root (rootful buildah/podman)"),
]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", str(PODMAN), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@pytest.fixture(scope="module")
def image() -> str:
    """The image reference, built (or reused from buildah's layer cache) by tools/image/build.sh."""
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=540, check=False)
    if result.returncode != 0:
        pytest.fail(f"tools/image/build.sh exited {result.returncode}:\n{result.stderr[-6000:]}")
    return result.stdout.strip().splitlines()[-1]


def _token_kubeconfig(kubectl: Kubectl, path: Path) -> Path:
    """The operator ServiceAccount's token (TokenRequest API) and the cluster's CA inline: a container
    sees only this file, not the host paths an admin kubeconfig may point at."""
    token = kubectl("create", "token", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=1h").strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json"))
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": OPERATOR_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": OPERATOR_ACCOUNT, "context": {"cluster": cluster["name"], "user": OPERATOR_ACCOUNT}}],
        "current-context": OPERATOR_ACCOUNT,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    os.chown(path, 10001, 10001)  # the image's user, as the kubelet makes a projected token readable
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _inspect(name: str, template: str) -> str:
    return podman("inspect", "--format", template, name).stdout.strip()


@pytest.fixture
def container(image: str, installed: Kubectl, operator: OperatorProcess, tmp_path: Path) -> Iterator[str]:
    """The operator, running from the image, cluster-wide as its ServiceAccount; yields the container's name."""
    kubeconfig = _token_kubeconfig(installed, tmp_path / "kubeconfig")
    name = f"workpools-operator-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    operator.stop()  # one operator at a time: the container must be the one that reconciles
    try:
        podman(
            "run", "--detach", "--name", name,
            "--network", "host",
            "--read-only", "--tmpfs", "/tmp",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--volume", f"{kubeconfig}:{IN_CONTAINER_KUBECONFIG}:ro",
            "--env", f"KUBECONFIG={IN_CONTAINER_KUBECONFIG}",
            "--env", f"WORKPOOLS_HEALTH_ENDPOINT=http://127.0.0.1:{port}/healthz",
            # Host network: the default 9090 may be another process's (an operator run by hand).
            "--env", f"WORKPOOLS_METRICS_PORT={_free_port()}",
            image,
        )  # fmt: skip

        def healthy() -> bool:
            state = _inspect(name, "{{.State.Status}}")
            assert state == "running", f"container {state}:\n{podman('logs', name, check=False).stderr[-4000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout=90, what="the containerised operator's health endpoint")
        yield name
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)
        operator.start()


def test_image_is_small_non_root_and_matches_the_deployment(image: str) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    assert config["Config"]["Entrypoint"] == ["workpools-operator"]
    assert config["Size"] <= MAX_IMAGE_BYTES, f"image is {config['Size'] / 1e6:.0f} MB"

    # Nothing to run but the operator's Python: no shell, no package manager, no pip.
    probe = podman(
        "run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python", image, "-c",
        "import importlib.util, os, shutil;"
        "print([p for p in ('/bin/sh', '/usr/bin/sh', '/bin/bash', '/usr/bin/dpkg', '/usr/bin/apt-get')"
        " if os.path.lexists(p)], [c for c in ('sh', 'bash', 'dash', 'busybox', 'pip', 'pip3') if shutil.which(c)],"
        " importlib.util.find_spec('pip'))",
    )  # fmt: skip
    assert probe.stdout.strip() == "[] [] None"

    deployment = yaml.safe_load((ROOT / "manifests/operator/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert f"localhost/{pod['containers'][0]['image']}" == image, "the Deployment names another tag than build.sh"


def test_operator_from_the_image_reconciles_a_pool(installed: Kubectl, container: str, namespace: str) -> None:
    # The image has no shell or coreutils: its Python is the probe.
    exec_id = podman("exec", container, "python", "-c", "import os; print(os.getuid())")
    assert exec_id.stdout.strip() == "10001"
    write = podman("exec", container, "python", "-c", "open('/usr/local/probe', 'w')", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    shell = podman("exec", container, "sh", "-c", "true", check=False)
    assert shell.returncode != 0
    assert "not found" in shell.stderr

    installed.apply(pool("etl", type="process", concurrencyLimit=3), namespace=namespace)
    status = wait_for(
        lambda: (
            installed.get("wp", "etl", namespace).get("status", {}).get("observedGeneration") == 1
            and installed.get("wp", "etl", namespace)["status"]
        ),
        what="the pool's status, written by the containerised operator",
    )
    assert status["phase"] == "NotReady"
    assert status["slots"] == {"active": 0, "limit": 3, "open": 3, "summary": "0/3"}

    # Stopped as the kubelet stops it: SIGTERM, then a clean exit well inside the grace period.
    started = time.monotonic()
    podman("stop", "--time", "30", container)
    assert time.monotonic() - started < 20
    assert _inspect(container, "{{.State.ExitCode}}") == "0"
    result = podman("logs", container)
    logs = result.stdout + result.stderr
    assert "Signal SIGTERM is received. Operator is stopping." in logs
    assert "Traceback" not in logs
