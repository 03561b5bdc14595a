"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

Used by the integration/e2e tests and the demo when no KUBECONFIG is given. Binaries come from
`build.sh` (built once from the Go module proxy, cached outside the clone). Everything listens
on 127.0.0.1 with free ports; RBAC is on; the admin kubeconfig (system:masters) is written to
`<workdir>/kubeconfig`.

    python -m tools.controlplane up      # start in the background, print `export KUBECONFIG=...`
    python -m tools.controlplane down    # stop it and remove its state
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 90.0
"""Seconds kube-apiserver may take to become ready (a cold start on 2 cores takes ~10 s)."""
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager")
"""In start order; stopped in reverse."""


def binaries() -> Path:
    """The directory holding kube-apiserver, kube-controller-manager, kubectl and etcd (built if needed)."""
    out = subprocess.run(["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the parent dies, even by SIGKILL."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue_certificates(pki: Path) -> None:
    """A CA, the apiserver's serving cert, client certs for admin and controller-manager, the SA key."""
    pki.mkdir(parents=True, exist_ok=True)
    days = "3650"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=workpools-local-ca",
        "-days",
        days,
        cwd=pki,
    )
    sans = "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    certs = {
        "apiserver": ("/CN=kube-apiserver", [sans, "extendedKeyUsage=serverAuth"]),
        "admin": ("/O=system:masters/CN=workpools-admin", ["extendedKeyUsage=clientAuth"]),
        "controller-manager": ("/CN=system:kube-controller-manager", ["extendedKeyUsage=clientAuth"]),
    }
    for name, (subject, extensions) in certs.items():
        ext_args = [arg for ext in extensions for arg in ("-addext", ext)]
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-subj",
            subject,
            "-days",
            days,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            *ext_args,
            cwd=pki,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
) -> Path:
    """A kubeconfig with one cluster, one user (client cert or bearer token) and one context."""
    credentials: dict[str, str] = {}
    if cert and key:
        credentials = {"client-certificate": str(cert), "client-key": str(key)}
    if token:
        credentials = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "workpools-local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "workpools-local", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """One local control plane rooted at `workdir`. Use as a context manager, or start()/stop()."""

    workdir: Path
    detach: bool = False
    """Keep running after this Python process exits (the `up` command); tests leave it False."""
    bin_dir: Path = field(default_factory=binaries)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    """Ports chosen at start() (etcd client/peer, apiserver): a restart listens on the same ones."""
    profiling: bool = False
    """Serve kube-apiserver's /debug/pprof (benchmarks/admission.py --profile-apiserver)."""

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _issue_certificates(self.pki)
        self.ports = {"etcd-client": _free_port(), "etcd-peer": _free_port(), "apiserver": _free_port()}
        try:
            self._start_etcd()
            self._start_apiserver()
            self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
            write_kubeconfig(
                self.kubeconfig,
                self.server,
                self.pki / "ca.crt",
                user="workpools-admin",
                cert=self.pki / "admin.crt",
                key=self.pki / "admin.key",
            )
            self._wait_ready()
            self._start_controller_manager()
            self._write_pids()
        except BaseException:
            self.stop()
            raise

    def version(self) -> str:
        return str(self._get("/version")["gitVersion"])

    def stop(self) -> None:
        """Stop every process (TERM, then KILL after 10 s). Safe to call twice."""
        for name in PROCESSES[::-1]:
            self._stop_process(name)

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again (same port, etcd and certificates); wait until ready."""
        self._stop_process("kube-apiserver")
        self._start_apiserver()
        self._wait_ready()
        self._write_pids()

    def restart_etcd(self) -> None:
        """Stop etcd and start it again on the same ports and data dir; wait until kube-apiserver is ready."""
        self._stop_process("etcd")
        self._start_etcd()
        self._wait_ready()
        self._write_pids()

    def _write_pids(self) -> None:
        """For `down` (`_stop_detached`): in start order, so it stops them in reverse."""
        pids = {name: self.processes[name].pid for name in PROCESSES if name in self.processes}
        (self.workdir / "pids").write_text(json.dumps(pids))

    def _stop_process(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Runs before exec in the child; we start no threads around it, so the usual hazard is moot.
                preexec_fn=os.setpgrp if self.detach else _die_with_parent,  # noqa: PLW1509
            )
        self.processes[name] = proc
        return proc

    def _start_etcd(self) -> None:
        client, peer = self.ports["etcd-client"], self.ports["etcd-peer"]
        self._spawn(
            "etcd",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",  # a throwaway test store: durability buys nothing, fsync costs a lot
            "--log-level=warn",
        )

    def _start_apiserver(self) -> None:
        port, pki = self.ports["apiserver"], self.pki
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd-client']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--profiling={str(self.profiling).lower()}",
        )

    def _start_controller_manager(self) -> None:
        pki = self.pki
        config = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            self.server,
            pki / "ca.crt",
            user="system:kube-controller-manager",
            cert=pki / "controller-manager.crt",
            key=pki / "controller-manager.key",
        )
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={config}",
            # Only what our objects need: ownerReference cascades, namespace deletion, and the
            # aggregation of our ClusterRoles into admin/edit/view.
            "--controllers=garbagecollector,namespace,clusterrole-aggregation",
            "--leader-elect=false",
            "--secure-port=0",
            # Each controller acts as its own ServiceAccount with its bootstrap role, as in a real cluster.
            "--use-service-account-credentials=true",
        )

    # -- readiness ---------------------------------------------------------------------------

    def _get(self, path: str) -> dict[str, object]:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        try:
            with urllib.request.urlopen(self.server + path, context=ctx, timeout=5) as response:
                body = response.read()
        except urllib.error.HTTPError as error:  # not ready yet (e.g. 500 from /readyz)
            error.close()
            raise
        return json.loads(body) if body.startswith(b"{") else {"body": body.decode()}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                self._get("/readyz")
                return
            except OSError as error:
                last_error = error
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready after {START_TIMEOUT:.0f}s: {last_error}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_detached(workdir: Path) -> None:
    """Stop what `up` started, one process at a time (controller-manager, apiserver, then etcd)."""
    pids_file = workdir / "pids"
    if pids_file.exists():
        for pid in reversed(list(json.loads(pids_file.read_text()).values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.controlplane", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "build"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("WORKPOOLS_DEVCLUSTER_DIR", ".devcluster")),
        help="state directory (default: .devcluster, or $WORKPOOLS_DEVCLUSTER_DIR)",
    )
    args = parser.parse_args(argv)
    workdir = args.dir.resolve()
    if args.command == "build":
        print(binaries())
        return 0
    _stop_detached(workdir)
    if args.command == "down":
        print(f"stopped the local control plane in {workdir}", file=sys.stderr)
        return 0
    plane = ControlPlane(workdir, detach=True)
    plane.start()
    print(f"kube-apiserver {plane.version()} ready at {plane.server}; logs in {workdir}", file=sys.stderr)
    print(f"export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:$PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
