"""The reference worker as a user runs it (a real process with the worker Role's credentials):
executing, failing, cancelling, draining on SIGTERM, and restarting without running a run twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl
from tests.support.objects import pool, run
from tests.support.operator import OperatorProcess
from tests.support.toxiproxy import Proxy, Toxiproxy, via_proxy
from tests.support.waiting import wait_for

TEMPLATE = {
    "job_configuration": {"command": "sh -c 'sleep {{ seconds }}; echo done {{ seconds }}'"},
    "variables": {"properties": {"seconds": {"type": "number", "default": 0}}, "required": []},
}

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(worker_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[StartWorker]:
    """`python -m workpools.worker` processes with the worker's kubeconfig; all stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, name: str = "w1", kubeconfig: Path = worker_kubeconfig) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "workpools.worker", "-n", namespace, "--name", name, *args],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def cut_off(worker_kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[Proxy, Path]]:
    """A Toxiproxy proxy between one worker and kube-apiserver, and the kubeconfig that goes through it."""
    server = yaml.safe_load(worker_kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with Toxiproxy.start(tmp_path) as toxiproxy:
        proxy = toxiproxy.proxy("worker", int(server.rsplit(":", 1)[1]))
        yield proxy, via_proxy(worker_kubeconfig, proxy, tmp_path / "proxied.kubeconfig")


def status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.get("fr", name, namespace).get("status", {})
    return found


def test_runs_execute_from_the_template_and_failures_report_exit_code_and_stderr(
    installed: Kubectl, operator: OperatorProcess, namespace: str, start_worker: StartWorker
) -> None:
    installed.apply(pool("p", baseJobTemplate=TEMPLATE), namespace=namespace)
    installed.apply(
        run("ok", "p", parameters={"seconds": 1}),
        run("fails", "p", command="sh -c 'echo first >&2; echo boom >&2; exit 3'"),
        run("undeclared", "p", parameters={"retries": 2}),
        namespace=namespace,
    )
    start_worker("--pool", "p", "--heartbeat-interval", "5")
    wait_for(lambda: status(installed, namespace, "ok").get("state"), equals="Completed", what="ok Completed")
    failed = wait_for(
        lambda: (s := status(installed, namespace, "fails")).get("state") == "Failed" and s, what="fails Failed"
    )
    assert failed["message"] == "exit code 3; last lines of stderr:\nfirst\nboom"
    bad = wait_for(
        lambda: (s := status(installed, namespace, "undeclared")).get("state") == "Failed" and s,
        what="undeclared Failed",
    )
    assert bad["message"] == (
        "cannot build the command: parameters not declared in the pool's baseJobTemplate.variables: retries"
    )
    done = status(installed, namespace, "ok")
    assert done["startTime"] <= done["endTime"]
    assert "slot" not in done


def test_a_failed_run_is_retried_as_its_next_attempt_on_the_same_worker(
    installed: Kubectl, operator: OperatorProcess, namespace: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    # Attempt 1 fails and attempt 2 succeeds; each writes its attempt number to a file of its own,
    # so an attempt executed twice (or both under one number) would show.
    log = tmp_path / "attempts"
    log.mkdir()
    command = f"sh -c 'touch {log}/$WORKPOOLS_FLOW_RUN_ATTEMPT-$$; test $WORKPOOLS_FLOW_RUN_ATTEMPT -ge 2'"
    installed.apply(pool("p"), run("flaky", "p", command=command, retries=2), namespace=namespace)
    start_worker("--pool", "p", "--heartbeat-interval", "5")
    done = wait_for(
        lambda: (s := status(installed, namespace, "flaky")).get("state") == "Completed" and s, what="Completed"
    )
    assert done["attempt"] == 2
    assert done["lastFailure"]["attempt"] == 1
    assert done["lastFailure"]["message"] == "exit code 1"
    assert sorted(p.name.split("-")[0] for p in log.iterdir()) == ["1", "2"]


def test_a_cancelled_run_is_stopped_and_marked_cancelled(
    installed: Kubectl, operator: OperatorProcess, namespace: str, start_worker: StartWorker
) -> None:
    installed.apply(
        pool("p", baseJobTemplate=TEMPLATE), run("long", "p", parameters={"seconds": 120}), namespace=namespace
    )
    start_worker("--pool", "p", "--heartbeat-interval", "5")
    wait_for(lambda: status(installed, namespace, "long").get("state"), equals="Running", what="Running")
    installed.apply(run("long", "p", parameters={"seconds": 120}, cancel=True), namespace=namespace)
    cancelled = wait_for(
        lambda: (s := status(installed, namespace, "long")).get("state") == "Cancelled" and s,
        timeout=20,
        what="Cancelled",
    )
    assert cancelled["message"] == "cancelled: the process was stopped"


def test_sigterm_drains_finishing_running_runs_and_handing_back_the_rest(
    installed: Kubectl, operator: OperatorProcess, namespace: str, start_worker: StartWorker
) -> None:
    installed.apply(pool("p", baseJobTemplate=TEMPLATE), namespace=namespace)
    installed.apply(
        run("short", "p", parameters={"seconds": 3}),
        run("stuck", "p", parameters={"seconds": 300}),
        namespace=namespace,
    )
    worker = start_worker("--pool", "p", "--heartbeat-interval", "5", "--grace", "6")
    wait_for(
        lambda: {status(installed, namespace, n).get("state") for n in ("short", "stuck")},
        equals={"Running"},
        what="both running",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert status(installed, namespace, "short")["state"] == "Completed"
    stuck = status(installed, namespace, "stuck")
    assert stuck["state"] == "Crashed"
    assert stuck["message"] == "worker w1 stopped before it finished (grace 6s)"
    assert installed.get("wkr", "w1", namespace)["spec"]["draining"] is True


def test_a_restarted_worker_never_runs_a_run_twice(
    installed: Kubectl, operator: OperatorProcess, namespace: str, start_worker: StartWorker
) -> None:
    installed.apply(
        pool("p", baseJobTemplate=TEMPLATE), run("once", "p", parameters={"seconds": 300}), namespace=namespace
    )
    first = start_worker("--pool", "p", "--heartbeat-interval", "30")
    wait_for(lambda: status(installed, namespace, "once").get("state"), equals="Running", what="Running")
    first.kill()  # a crash: no drain
    first.wait()
    start_worker("--pool", "p", "--heartbeat-interval", "30")
    crashed = wait_for(
        lambda: (s := status(installed, namespace, "once")).get("state") == "Crashed" and s, what="Crashed, not re-run"
    )
    assert crashed["message"] == "worker w1 restarted while it was running"


def alive(pid: int) -> bool:
    """Running or sleeping: a zombie (dead, not yet reaped by whoever inherited it) does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_worker_leaves_no_process_of_its_runs_behind(
    installed: Kubectl, operator: OperatorProcess, namespace: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    # The run's shell and the child it forks into the background: both must die with the worker,
    # or a run reclaimed after the worker's death would execute twice on the machine.
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    installed.apply(pool("p"), run("r", "p", command=f"sh -c '{script}'"), namespace=namespace)
    worker = start_worker("--pool", "p", "--heartbeat-interval", "30")
    wait_for(lambda: status(installed, namespace, "r").get("state"), equals="Running", what="Running")
    started = wait_for(lambda: len(lines := pids.read_text().split()) == 2 and lines if pids.exists() else None)
    assert all(alive(int(pid)) for pid in started)
    worker.kill()  # SIGKILL: no drain, no cleanup code of its own runs
    worker.wait()
    wait_for(lambda: not any(alive(int(pid)) for pid in started), timeout=10, what="the run's processes gone")


def test_a_worker_whose_connection_is_cut_reconnects_and_keeps_working(
    installed: Kubectl,
    operator: OperatorProcess,
    namespace: str,
    start_worker: StartWorker,
    cut_off: tuple[Proxy, Path],
) -> None:
    proxy, kubeconfig = cut_off
    installed.apply(pool("p", baseJobTemplate=TEMPLATE), run("before", "p"), namespace=namespace)
    worker = start_worker("--pool", "p", "--heartbeat-interval", "30", kubeconfig=kubeconfig)
    wait_for(lambda: status(installed, namespace, "before").get("state"), equals="Completed", what="the first run")
    for _ in range(3):  # its watch connection reset, the API server unreachable for a moment: three times
        proxy.disable()
        time.sleep(1)
        proxy.enable()
        time.sleep(1)
    assert worker.poll() is None, "the worker exited when its connection dropped"
    installed.apply(run("after", "p"), namespace=namespace)
    wait_for(lambda: status(installed, namespace, "after").get("state"), equals="Completed", what="a run after it")


def test_a_partitioned_worker_stops_its_runs_before_the_operator_may_reclaim_them(
    installed: Kubectl,
    operator: OperatorProcess,
    namespace: str,
    start_worker: StartWorker,
    cut_off: tuple[Proxy, Path],
) -> None:
    # Interval 2 s: the worker fences after 2.5 × 2 s without an accepted heartbeat and kills half a
    # margin later; the operator may reclaim only 4 × 2 s after the last heartbeat it saw (which can
    # be up to an interval before the cut). The process must be gone first.
    proxy, kubeconfig = cut_off
    pid_file = kubeconfig.with_name("pid")
    long_run = run("long", "p", command=f"sh -c 'echo $$ > {pid_file}; exec sleep 300'")
    installed.apply(pool("p"), long_run, namespace=namespace)
    start_worker("--pool", "p", "--heartbeat-interval", "2", kubeconfig=kubeconfig)
    wait_for(lambda: status(installed, namespace, "long").get("state"), equals="Running", what="Running")
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the run's pid"))
    proxy.disable()
    cut_at = time.monotonic()
    wait_for(lambda: not alive(pid), timeout=10, interval=0.05, what="the run stopped by its fenced worker")
    stopped_after = time.monotonic() - cut_at
    crashed = wait_for(
        lambda: (s := status(installed, namespace, "long")).get("state") == "Crashed" and s,
        timeout=20,
        interval=0.05,
        what="the operator reclaiming the run",
    )
    reclaimed_after = time.monotonic() - cut_at
    assert stopped_after < 2.5 * 2 + 0.5 + 0.5  # fenced at 2.5 intervals, killed half a margin later, + polling
    assert reclaimed_after > 3 * 2  # never before 4 intervals after the last beat seen, itself ≤ 1 before the cut
    assert stopped_after < reclaimed_after
    assert crashed["message"] == "worker w1 went offline while it was running"
    proxy.enable()  # healed: the worker is back, with nothing running twice
    wait_for(lambda: installed.get("wkr", "w1", namespace)["status"].get("phase"), equals="Online", what="Online")
