"""Toxiproxy, the fault injector of tests/chaos: a TCP proxy per client in front of kube-apiserver,
with toxics (latency, stalls, resets, bandwidth, data limits) and partitions switched on and off
through its HTTP API. TLS passes through as plain TCP; the apiserver's serving certificate names
IP:127.0.0.1, so a kubeconfig pointing at 127.0.0.1:<proxy port> verifies as before.

    with Toxiproxy.start(workdir) as toxiproxy:
        proxy = toxiproxy.proxy("operator", upstream_port)
        config = via_proxy(kubeconfig, proxy, workdir / "operator.kubeconfig")
        proxy.add("lag", "latency", latency=1000, jitter=1000)
        proxy.disable()   # a full partition: connections closed, new ones refused
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import yaml

from tools.controlplane.cluster import _die_with_parent, _free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
START_TIMEOUT = 20.0

Stream = Literal["upstream", "downstream"]
"""upstream: client → apiserver (requests); downstream: apiserver → client (responses, watch events)."""


def binary() -> Path:
    """toxiproxy-server, built from the Go module proxy by tools/toxiproxy/build.sh if needed."""
    out = subprocess.run(
        ["bash", str(ROOT / "tools/toxiproxy/build.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1]) / "toxiproxy-server"


class ToxiproxyError(AssertionError):
    pass


@dataclass
class Toxiproxy:
    """One toxiproxy-server on a free 127.0.0.1 port, dying with this process (even on SIGKILL)."""

    process: subprocess.Popen[bytes]
    port: int
    proxies: dict[str, Proxy] = field(default_factory=dict)

    @classmethod
    def start(cls, workdir: Path, *, seed: int = 1) -> Self:
        """`seed` fixes which connections a toxic with toxicity < 1 hits, given the same connections."""
        port = _free_port()
        with (workdir / "toxiproxy.log").open("ab") as log:
            process = subprocess.Popen(
                [str(binary()), "-host", "127.0.0.1", "-port", str(port), "-seed", str(seed)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads of ours around the fork)
            )
        server = cls(process, port)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if process.poll() is not None:
                    raise ToxiproxyError(f"toxiproxy-server exited with {process.returncode}; see {workdir}")
                try:
                    server.request("GET", "/proxies")
                    return server
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        except BaseException:
            server.stop()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            error.close()
            raise ToxiproxyError(f"toxiproxy {method} {path} → {error.code}: {detail}") from None
        return json.loads(text) if text else None

    def proxy(self, name: str, upstream_port: int) -> Proxy:
        """A new proxy listening on a free 127.0.0.1 port, forwarding to 127.0.0.1:`upstream_port`."""
        port = _free_port()
        self.request(
            "POST",
            "/proxies",
            {"name": name, "listen": f"127.0.0.1:{port}", "upstream": f"127.0.0.1:{upstream_port}", "enabled": True},
        )
        self.proxies[name] = Proxy(self, name, port)
        return self.proxies[name]

    def heal(self) -> None:
        """Every proxy enabled and without toxics (toxiproxy's /reset)."""
        self.request("POST", "/reset")
        for proxy in self.proxies.values():
            proxy.added.clear()


@dataclass
class Proxy:
    server: Toxiproxy
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    added: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The toxics added through this object, by name (what `reroll` adds again)."""

    def add(
        self, toxic: str, kind: str, *, stream: Stream = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> None:
        """Add toxic `toxic` of `kind` (latency, timeout, reset_peer, bandwidth, limit_data, slow_close,
        slicer) with its attributes (latency/jitter/timeout in ms, rate in KB/s, bytes); `toxicity` is
        the share of connections it hits (decided per connection when it opens or the toxic is added)."""
        body = {"name": toxic, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        self.server.request("POST", f"/proxies/{self.name}/toxics", body)
        self.added[toxic] = body

    def remove(self, toxic: str) -> None:
        self.server.request("DELETE", f"/proxies/{self.name}/toxics/{toxic}")
        self.added.pop(toxic, None)

    def reroll(self, *toxics: str) -> None:
        """Each open connection draws anew whether a toxic hits it. Through the update endpoint, not a
        remove and add: removing a `timeout` toxic closes every connection of the proxy (its Cleanup),
        hit or not, which would turn a 5 % fault into a cut of everything."""
        for toxic in toxics:
            body = self.added[toxic]
            update = {"attributes": body["attributes"], "toxicity": body["toxicity"]}
            self.server.request("POST", f"/proxies/{self.name}/toxics/{toxic}", update)

    def clear(self) -> None:
        """Remove every toxic of this proxy."""
        for toxic in self.server.request("GET", f"/proxies/{self.name}/toxics"):
            with contextlib.suppress(ToxiproxyError):  # gone meanwhile
                self.remove(toxic["name"])

    def disable(self) -> None:
        """A full partition: open connections are closed, new ones refused."""
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": False})

    def enable(self) -> None:
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": True})


def via_proxy(kubeconfig: Path, proxy: Proxy, path: Path) -> Path:
    """A copy of `kubeconfig` (JSON or YAML) whose clusters point at `proxy` instead of the apiserver."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = proxy.url
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def rerolling(proxy: Proxy, *toxics: str, every: float) -> Iterator[None]:
    """Re-draw `toxics` every `every` seconds while inside. Clients keep connections alive, so a
    toxic with toxicity 0.05 would otherwise hit the few connections open when it was added and
    none after; re-drawn, it hits about that share of the connections in every period. A re-draw
    interrupts a toxic in progress: make `every` longer than a stall should last."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            proxy.reroll(*toxics)

    thread = threading.Thread(target=loop, name=f"reroll {proxy.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
