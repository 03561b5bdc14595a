"""The transport imports the asyncio client without the synchronous package's dependencies.

`kubernetes/__init__.py` imports the synchronous client's config, stream and watch modules (and
requests, oauthlib, websocket-client with them); `kubernetes.aio` needs none of it, and a CLI
command paid a third of its start-up for it. `kubernetes/aio/__init__.py` imports the asyncio
client's dynamic client (urllib3 with it), leader election and stream packages, which the
transport does not use either. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SYNCHRONOUS_ONLY = ("requests", "oauthlib", "requests_oauthlib", "websocket")
UNUSED_ASYNCIO_PACKAGES = (
    "kubernetes.aio.dynamic",
    "kubernetes.aio.leaderelection",
    "kubernetes.aio.stream",
    "urllib3",
)


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


def test_the_transport_loads_none_of_the_asyncio_packages_it_does_not_use() -> None:
    loaded = run(
        "import sys, workpools.client.transport\n"
        f"print(sorted(m for m in {UNUSED_ASYNCIO_PACKAGES!r} if m in sys.modules))"
    )
    assert loaded == "[]"


DESERIALIZE_A_LEASE = """
import kubernetes, workpools.client.transport
from kubernetes.aio.client import ApiClient
lease = ApiClient().deserialize('{"spec": {"holderIdentity": "a"}}', "V1Lease", "application/json")
print(type(lease).__name__, lease.spec.holder_identity, kubernetes.aio.client.models.V1Lease is type(lease))
"""


def test_the_asyncio_client_finds_its_models_by_attribute() -> None:
    """The client deserializes answers (a Lease) by `getattr(kubernetes.aio.client.models, name)`."""
    assert run(DESERIALIZE_A_LEASE) == "V1Lease a True"


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
