"""The operator as a real process, logged in as its ServiceAccount (the RBAC that manifests/ ships)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kube import Kubectl
from tests.support.waiting import wait_for

OPERATOR_NAMESPACE = "workpools-system"
OPERATOR_ACCOUNT = "workpools-operator"
ROOT = Path(__file__).resolve().parent.parent.parent


def install(kubectl: Kubectl) -> Kubectl:
    """manifests/ applied server-side (the operator Deployment scaled to zero: the tests run it)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "tools/local-install"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=workpool-operator",
        "--timeout=60s",
    )
    return kubectl


def service_account_kubeconfig(
    kubectl: Kubectl, namespace: str, account: str, path: Path, *, token: str | None = None
) -> Path:
    """A kubeconfig that authenticates as `namespace/account` with a token from the TokenRequest API
    (or with `token`, e.g. one bound to a pod)."""
    token = token or kubectl("create", "token", account, "-n", namespace, "--duration=24h").strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class OperatorProcess:
    """`python -m workpools`, started and stopped like the Deployment would (SIGTERM), or killed."""

    kubeconfig: Path
    log_path: Path
    namespaces: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=_free_port)
    metrics_port: int = field(default_factory=_free_port)
    leader_election: str = ""
    """A replica identity (POD_NAME) to run with WORKPOOLS_LEADER_ELECTION=true; empty: standalone."""

    def start(self, *, wait: bool = True) -> None:
        """Start the process; wait until it operates (its health endpoint answers) unless `wait` is False."""
        election = (
            {"WORKPOOLS_LEADER_ELECTION": "true", "POD_NAME": self.leader_election, "POD_NAMESPACE": OPERATOR_NAMESPACE}
            if self.leader_election
            else {}
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "WORKPOOLS_HEALTH_ENDPOINT": f"http://127.0.0.1:{self.port}/healthz",
            "WORKPOOLS_METRICS_PORT": str(self.metrics_port),
            "WORKPOOLS_NAMESPACES": ",".join(self.namespaces),
            "PYTHONUNBUFFERED": "1",
            **election,  # after os.environ: a POD_NAME of the test's own environment must not win
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workpools"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            wait_for(self.healthy, timeout=60, what="the operator's health endpoint")

    def healthy(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"operator exited:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> str:
        """The Prometheus exposition text, as a scraper gets it."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text
