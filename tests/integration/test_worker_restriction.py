"""Worker restriction on a real API server: a worker's credentials change only its own Worker, beat
only its own heartbeat, and move only the runs bound to it, only by the worker's moves
(manifests/policy/worker_restriction.yaml, a ValidatingAdmissionPolicy).

Aspects: the three attacks of issue 16 refused with a message a person understands (binding a run
of a paused pool to itself, crashing another worker's run, beating another worker's heartbeat);
a worker's own run and Worker limited to the worker's fields and moves; identities recorded at
registration (ServiceAccount token, pod-bound token: two pods of one ServiceAccount are two
identities) and copied onto runs at the grant; registration under a taken name refused; the
legitimate work of a worker and the operator's moves (grants, Offline, Crashed) unaffected.
Every write is a plain merge PATCH through the worker's own client, as a hostile worker would send.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import API_VERSION, pool, run
from tests.support.waiting import wait_for
from tests.support.worker_rbac import pod_worker_kubeconfig, worker_kubeconfig
from tests.support.workers import SimulatedWorker
from workpools.client import errors

pytestmark = pytest.mark.usefixtures("operator", "enforced")

DENIED = "ValidatingAdmissionPolicy 'workpools-worker-restriction' with binding 'workpools-worker-restriction' denied"
Workers = Callable[..., SimulatedWorker]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def user(namespace: str, account: str) -> str:
    return f"system:serviceaccount:{namespace}:{account}"


def refused(write: Callable[[], object]) -> str:
    """Make a write the policy must refuse (403 Forbidden); the policy's message."""
    with pytest.raises(errors.Forbidden) as error:
        write()
    assert DENIED in error.value.message, error.value.message
    assert error.value.status == 403
    return error.value.message.split(" denied request: ", 1)[1]


def state_of(kubectl: Kubectl, name: str, namespace: str) -> tuple[str | None, str | None]:
    status = kubectl.get("fr", name, namespace).get("status", {})
    return status.get("state"), status.get("worker")


@pytest.fixture
def enforced(installed: Kubectl, worker_kubeconfig: Path, namespace: str) -> None:
    """Wait until the API server enforces the policy (it picks up a new policy within a second or so)."""
    as_worker = Kubectl(worker_kubeconfig, binary=installed.binary)
    unregistered = {"apiVersion": API_VERSION, "kind": "Worker", "metadata": {"name": "x"}, "spec": {"workPool": "p"}}

    def denies() -> bool:
        try:
            as_worker("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(unregistered))
        except KubectlError as error:
            return DENIED in error.stderr
        return False

    wait_for(denies, timeout=10, what="the worker-restriction policy enforced")


@pytest.fixture
def intruder(installed: Kubectl, namespace: str, tmp_path: Path) -> Iterator[Workers]:
    """Workers of another identity in the same namespace, with the same role: ServiceAccount `intruder`."""
    kubeconfig = worker_kubeconfig(installed, namespace, tmp_path / "intruder.kubeconfig", account="intruder")
    made: list[SimulatedWorker] = []

    def make(pool_name: str, name: str, **options: Any) -> SimulatedWorker:
        made.append(SimulatedWorker(kubeconfig, namespace, pool_name, name, **options))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def bound_run(installed: Kubectl, namespace: str, name: str = "r", worker: str = "a") -> dict[str, Any]:
    """Create run `name` in pool p and wait until the operator has bound it to `worker`."""
    installed.apply(run(name, "p"), namespace=namespace)
    wait_for(lambda: state_of(installed, name, namespace), equals=("Pending", worker), what=f"{name} bound to {worker}")
    body: dict[str, Any] = installed.get("fr", name, namespace)
    return body


# -- the three attacks of issue 16 ---------------------------------------------------------------


def test_a_worker_cannot_bind_a_scheduled_run_to_itself(installed: Kubectl, namespace: str, workers: Workers) -> None:
    installed.apply(pool("p", paused=True, concurrencyLimit=1), namespace=namespace)
    a = workers("p", "a")
    a.beat()
    installed.apply(run("r", "p"), namespace=namespace)
    wait_for(lambda: state_of(installed, "r", namespace), equals=("Scheduled", None), what="r Scheduled")
    slot = {"acquiredAt": now(), "queue": "p-default"}
    grant = {"state": "Pending", "stateName": "Pending", "worker": "a", "slot": slot}
    me = {"username": user(namespace, "worker")}
    for status in (grant, {**grant, "workerIdentity": me}):  # naming itself as the bound identity changes nothing
        message = refused(lambda status=status: a.patch("fr", "r", {"status": status}, status=True))
        assert message == (
            f"FlowRun r is bound to no worker (no identity); "
            f"{user(namespace, 'worker')} may move only the runs bound to it"
        )
    assert state_of(installed, "r", namespace) == ("Scheduled", None)


def test_a_worker_cannot_move_a_run_bound_to_another_worker(
    installed: Kubectl, namespace: str, workers: Workers, intruder: Workers
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    a = workers("p", "a")
    a.beat()
    body = bound_run(installed, namespace)
    assert body["status"]["workerIdentity"] == {"username": user(namespace, "worker")}  # copied at the grant
    b = intruder("p", "b")
    b.beat()  # a worker of the pool in its own right, registered after r was bound
    crash = {"status": {"state": "Crashed", "stateName": "Crashed", "slot": None, "endTime": now()}}
    assert refused(lambda: b.patch("fr", "r", crash, status=True)) == (
        f"FlowRun r is bound to worker a ({user(namespace, 'worker')}); "
        f"{user(namespace, 'intruder')} may move only the runs bound to it"
    )
    assert state_of(installed, "r", namespace) == ("Pending", "a")
    # Its own worker's moves still land.
    a.move("r", "Running")
    a.move("r", "Completed")
    assert state_of(installed, "r", namespace) == ("Completed", "a")


def test_a_worker_cannot_beat_or_change_another_workers_worker(
    installed: Kubectl, namespace: str, workers: Workers, intruder: Workers
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    workers("p", "a").beat()
    b = intruder("p", "b")
    b.beat()
    owner, other = user(namespace, "worker"), user(namespace, "intruder")
    expected = f"Worker a belongs to {owner}; {other} may change only its own Worker"
    assert refused(lambda: b.patch("wkr", "a", {"status": {"lastHeartbeatTime": now()}}, status=True)) == expected
    assert refused(lambda: b.patch("wkr", "a", {"spec": {"draining": True}})) == expected
    # Registering under a's name through the client: refused before anything is written.
    with pytest.raises(errors.Forbidden, match=f"Worker a was registered by {owner}, and this process is {other}"):
        intruder("p", "a").beat()
    # Nor can it create a Worker in someone else's name.
    forged = {
        "apiVersion": API_VERSION,
        "kind": "Worker",
        "metadata": {"name": "c"},
        "spec": {"workPool": "p", "identity": {"username": owner}},
    }
    assert refused(lambda: b.create(forged)) == (
        f"a worker registers a Worker under its own identity: spec.identity must be {{username: {other}}}, not {owner}"
    )


# -- a worker's own objects: only the worker's fields and moves ----------------------------------


def test_a_worker_changes_only_the_heartbeat_of_its_own_worker(
    installed: Kubectl, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    a = workers("p", "a")
    a.beat()
    wait_for(lambda: installed.get("wkr", "a", namespace)["status"].get("phase"), equals="Online", what="a Online")
    forged = {"status": {"lastHeartbeatTime": now(), "phase": "Online", "conditions": []}}
    assert refused(lambda: a.patch("wkr", "a", forged, status=True)) == (
        "a worker may change only status.lastHeartbeatTime of its Worker, not conditions "
        "(phase, conditions and assignedRuns are the operator's)"
    )
    with pytest.raises(errors.Invalid, match=r"spec\.identity is immutable"):
        a.patch("wkr", "a", {"spec": {"identity": {"username": user(namespace, "intruder")}}})


OPERATORS_FIELDS = {
    "worker": {"worker": "b"},
    "workerIdentity": {"workerIdentity": {"username": "someone-else"}},
    "slot": {"slot": {"acquiredAt": "2020-01-01T00:00:00Z", "queue": "p-default"}},
    "conditions": {"conditions": []},
    "scheduledTime": {"scheduledTime": "2020-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("field", OPERATORS_FIELDS)
def test_a_worker_cannot_change_the_operators_fields_of_its_own_run(
    field: str, installed: Kubectl, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    a = workers("p", "a")
    a.beat()
    bound_run(installed, namespace)
    start = {"state": "Running", "stateName": "Running", "startTime": now(), **OPERATORS_FIELDS[field]}
    assert refused(lambda: a.patch("fr", "r", {"status": start}, status=True)) == (
        "a worker may change only state, stateName, startTime, endTime, message of a FlowRun (and drop status.slot "
        f"when the run stops holding it), not {field} "
        "(FlowRun r; worker, workerIdentity, slot and conditions are the operator's)"
    )
    assert state_of(installed, "r", namespace) == ("Pending", "a")


FORBIDDEN_MOVES = {
    # Moves of the state machine that are the operator's (the CRD refuses the others before the policy).
    ("Pending", "Scheduled"): "a worker cannot move a FlowRun from Pending to Scheduled",
    ("Pending", "Cancelling"): "a worker cannot move a FlowRun from Pending to Cancelling",
    ("Running", "Cancelling"): "a worker cannot move a FlowRun from Running to Cancelling",
    ("Completed", "Completed"): (
        "a worker writes a FlowRun only while it is Pending, Running, Cancelling, not Completed"
    ),
}


@pytest.mark.parametrize("case", FORBIDDEN_MOVES, ids=" → ".join)
def test_a_worker_makes_only_the_workers_moves_of_its_own_run(
    case: tuple[str, str], installed: Kubectl, namespace: str, workers: Workers
) -> None:
    first, move = case
    installed.apply(pool("p"), namespace=namespace)
    a = workers("p", "a")
    a.beat()
    bound_run(installed, namespace)
    for state in {"Pending": [], "Running": ["Running"], "Completed": ["Running", "Completed"]}[first]:
        a.move("r", state)
    message = refused(
        lambda: a.patch("fr", "r", {"status": {"state": move, "stateName": move, "message": "x"}}, status=True)
    )
    assert message.startswith(f"{FORBIDDEN_MOVES[case]} (FlowRun r); the bound worker moves Pending → Running, ")
    assert message.endswith(", the operator makes every other move")
    assert state_of(installed, "r", namespace) == (first, "a")


# -- identities ----------------------------------------------------------------------------------


def test_workers_in_pods_are_told_apart_by_their_bound_tokens(
    installed: Kubectl, namespace: str, tmp_path: Path, worker_kubeconfig: Path
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    account = user(namespace, "worker")
    pods = {
        pod: SimulatedWorker(
            pod_worker_kubeconfig(installed, namespace, pod, tmp_path / f"{pod}.kubeconfig"), namespace, "p", pod
        )
        for pod in ("worker-0", "worker-1")
    }
    unbound = SimulatedWorker(worker_kubeconfig, namespace, "p", "unbound")  # the same account, bound to no pod
    try:
        pods["worker-0"].beat()
        identity = {"username": account, "podName": "worker-0"}
        assert installed.get("wkr", "worker-0", namespace)["spec"]["identity"] == identity
        assert bound_run(installed, namespace, worker="worker-0")["status"]["workerIdentity"] == identity
        pods["worker-1"].beat()
        crash = {"status": {"state": "Crashed", "stateName": "Crashed", "endTime": now()}}
        for other, requester in ((pods["worker-1"], f"{account} (pod worker-1)"), (unbound, account)):
            assert refused(lambda other=other: other.patch("fr", "r", crash, status=True)) == (
                f"FlowRun r is bound to worker worker-0 ({account} (pod worker-0)); "
                f"{requester} may move only the runs bound to it"
            )
        beat = {"status": {"lastHeartbeatTime": now()}}
        assert refused(lambda: pods["worker-1"].patch("wkr", "worker-0", beat, status=True)) == (
            f"Worker worker-0 belongs to {account} (pod worker-0); "
            f"{account} (pod worker-1) may change only its own Worker"
        )
        pods["worker-0"].move("r", "Running")
        pods["worker-0"].move("r", "Completed")
        assert state_of(installed, "r", namespace) == ("Completed", "worker-0")
    finally:
        for worker in (*pods.values(), unbound):
            worker.close()


def test_a_worker_from_before_identities_is_claimed_only_by_an_admin(
    installed: Kubectl, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("p"), namespace=namespace)
    legacy = {"apiVersion": API_VERSION, "kind": "Worker", "metadata": {"name": "a"}, "spec": {"workPool": "p"}}
    installed("create", "-n", namespace, "-f", "-", input=json.dumps(legacy))  # an admin is not restricted
    with pytest.raises(errors.Forbidden, match=r"Worker a has no spec\.identity \(only an admin may claim it\)"):
        workers("p", "a").beat()
    claim = {"spec": {"identity": {"username": user(namespace, "worker")}}}
    installed("patch", "wkr", "a", "-n", namespace, "--type=merge", "-p", json.dumps(claim))
    workers("p", "a").beat()
    with pytest.raises(KubectlError, match=r"spec\.identity cannot be removed"):
        installed("patch", "wkr", "a", "-n", namespace, "--type=merge", "-p", '{"spec": {"identity": null}}')


# -- the operator is not restricted ---------------------------------------------------------------


def test_the_operator_still_makes_its_moves_on_a_restricted_workers_objects(
    installed: Kubectl, namespace: str, workers: Workers
) -> None:
    """Grant, Online, Offline and Crashed on the Worker and run of a worker the policy restricts."""
    installed.apply(pool("p"), namespace=namespace)
    a = workers("p", "a", interval=1)
    a.beat()
    bound_run(installed, namespace)
    a.move("r", "Running")
    # a stops beating: the operator marks it Offline and its run Crashed.
    wait_for(lambda: state_of(installed, "r", namespace), equals=("Crashed", "a"), timeout=20, what="r Crashed")
    assert installed.get("wkr", "a", namespace)["status"]["phase"] == "Offline"
    assert installed.get("fr", "r", namespace)["status"]["message"] == "worker a went offline while it was running"


def test_what_the_garbage_collector_does_to_a_worker_stays_allowed(
    installed: Kubectl, namespace: str, workers: Workers, intruder: Workers
) -> None:
    """The garbage collector holds no `admit`: it is restricted like a worker, so dropping an owner
    reference of another's Worker (orphaning it) stays allowed, and nothing more. Sent here by
    another worker, as the collector sends it (a JSON merge patch on the version it read)."""
    installed.apply(pool("p"), namespace=namespace)
    workers("p", "a").beat()
    b = intruder("p", "b")
    version = installed.get("wkr", "a", namespace)["metadata"]["resourceVersion"]
    owner, other = user(namespace, "worker"), user(namespace, "intruder")
    more = {"metadata": {"labels": {"x": "y"}, "ownerReferences": None}}
    expected = f"Worker a belongs to {owner}; {other} may change only its own Worker"
    assert refused(lambda: b.patch("wkr", "a", more)) == expected
    b.patch("wkr", "a", {"metadata": {"resourceVersion": version, "ownerReferences": None}})
    assert "ownerReferences" not in installed.get("wkr", "a", namespace)["metadata"]
