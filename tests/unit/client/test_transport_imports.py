"""The transport imports the asyncio client without the synchronous package's dependencies.

`kubernetes/__init__.py` imports the synchronous client's config, stream and watch modules (and
requests, oauthlib, websocket-client with them); `kubernetes.aio` needs none of it, and a CLI
command paid a third of its start-up for it. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SYNCHRONOUS_ONLY = ("requests", "oauthlib", "requests_oauthlib", "websocket")


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_transport_loads_none_of_the_synchronous_clients_dependencies() -> None:
    loaded = run(
        f"import sys, workpools.client.transport\nprint(sorted(m for m in {SYNCHRONOUS_ONLY!r} if m in sys.modules))"
    )
    assert loaded == "[]"


def test_the_synchronous_client_can_still_be_imported_afterwards() -> None:
    """kopf imports `kubernetes.config` and `kubernetes.client` names; the CRD generator `kubernetes.config`."""
    assert (
        run(
            "import workpools.client.transport\n"
            "import kubernetes.config\n"
            "from kubernetes.client import V1ObjectMeta\n"
            "import workpools.api.crds\n"
            "print(V1ObjectMeta.__name__, callable(kubernetes.config.load_kube_config))"
        )
        == "V1ObjectMeta True"
    )


def test_a_kubernetes_package_imported_before_is_left_as_it_is() -> None:
    assert run("import kubernetes, workpools.client.transport\nprint(kubernetes.__version__ != '')") == "True"
