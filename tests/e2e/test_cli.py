"""The `workpools` CLI and `kubectl workpools`, run as a user runs them, against the real control plane.

Aspects: every verb's happy path and one error path (one line on stderr, exit 1; usage errors
exit 2); `-o json` and `-o yaml` parse; the namespace comes from the kubeconfig context unless
`-n` says otherwise, and `--context`/`$KUBECONFIG` are honoured; spec-changing verbs patch only
their own field (field manager `workpools-cli`) next to a GitOps apply; `pool slots` shows the
bars and the slot holders with state, worker and time held, once and with `--watch`; `pool
preview` shows the admission order; `kubectl workpools` finds the plugin on PATH.

Needs the console scripts installed (`.venv/bin/pip install -e .`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl
from tests.support.objects import condition, pool, queue, run
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for
from tests.support.workers import SimulatedWorker

Workers = Callable[..., SimulatedWorker]
BIN = Path(sys.executable).parent
"""Where pip put the console scripts: next to the interpreter running the tests."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Cli:
    """`workpools ...` in a test namespace, with the user's environment (KUBECONFIG, PATH)."""

    kubectl: Kubectl
    namespace: str

    def env(self) -> dict[str, str]:
        return {**self.kubectl.env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(self, *args: str, namespaced: bool = True, program: tuple[str, ...] = ("workpools",)) -> Result:
        argv = [*program, *args, *(["-n", self.namespace] if namespaced else [])]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=120, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    @contextlib.contextmanager
    def background(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """`workpools ...` left running (stdout and stderr piped); killed if still running at the end."""
        argv = ["workpools", *args, "-n", self.namespace]
        with subprocess.Popen(
            argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            try:
                yield process
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()

    def __call__(self, *args: str, **options: Any) -> str:
        """Run a command that must succeed; returns its stdout."""
        result = self.run(*args, **options)
        assert result.code == 0, f"workpools {' '.join(args)} exited {result.code}: {result.err}"
        assert result.err == "", result.err
        return result.out

    def fails(self, *args: str, code: int = 1, **options: Any) -> str:
        """Run a command that must fail with one line on stderr and no output; returns that line."""
        result = self.run(*args, **options)
        assert result.code == code, f"expected exit {code}, got {result.code}: {result.out}{result.err}"
        assert result.out == ""
        assert result.err.startswith("error: "), result.err
        assert result.err.count("\n") == 1, result.err
        assert "Traceback" not in result.err
        return result.err.strip()


@pytest.fixture(scope="module", autouse=True)
def console_scripts() -> None:
    for name in ("workpools", "kubectl-workpools"):
        assert (BIN / name).exists(), f"{BIN / name} is missing: run `{BIN}/pip install -e .`"


@pytest.fixture
def cli(installed: Kubectl, namespace: str) -> Cli:
    return Cli(installed, namespace)


def spec_of(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = kubectl.get(kind, name, namespace)["spec"]
    return spec


def owners(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, set[str]]:
    """Which spec fields each field manager owns."""
    found: dict[str, set[str]] = {}
    for entry in kubectl.json("get", kind, name, "-n", namespace, "--show-managed-fields")["metadata"]["managedFields"]:
        fields = entry.get("fieldsV1", {}).get("f:spec", {})
        found.setdefault(entry["manager"], set()).update(key.removeprefix("f:") for key in fields if key != ".")
    return found


# -- pools -----------------------------------------------------------------------------------------


def test_pool_verbs(cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    out = cli("pool", "create", "etl", "--concurrency-limit", "4", "--description", "Nightly ETL")
    assert out.strip() == 'WorkPool "etl" created; the operator adds its default queue "etl-default"'
    assert spec_of(installed, "wp", "etl", namespace) == {
        "type": "process",
        "description": "Nightly ETL",
        "concurrencyLimit": 4,
    }
    assert cli.fails("pool", "create", "etl") == f'error: WorkPool "etl" already exists in namespace "{namespace}"'

    wait_for(lambda: installed.try_get("wq", "etl-default", namespace), what="the default queue")
    listed = cli("pool", "ls")
    assert listed.splitlines()[0].split() == ["NAME", "TYPE", "STATUS", "WORKERS", "SLOTS", "QUEUES", "AGE"]
    assert re.search(r"^etl\s+process\s+\S+\s+0/0\s+0/4\s+\d+\s", listed, re.M), listed
    [item] = cli.run("pool", "ls", "-o", "json").json()
    assert (item["metadata"]["name"], item["spec"]["concurrencyLimit"]) == ("etl", 4)
    assert yaml.safe_load(cli("pool", "inspect", "etl", "-o", "yaml"))["spec"]["description"] == "Nightly ETL"
    wait_for(lambda: installed.get("wp", "etl", namespace).get("status", {}).get("queues"), equals=1)
    details = cli("pool", "inspect", "etl")
    assert re.search(r"^Concurrency limit:\s+4$", details, re.M)
    assert re.search(r"^Queues:\s+1 \(default: etl-default\)$", details, re.M)
    assert cli.fails("pool", "inspect", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    assert cli("pool", "pause", "etl").strip() == 'WorkPool "etl" paused (spec.paused=true)'
    wait_for(lambda: installed.get("wp", "etl", namespace).get("status", {}).get("phase"), equals="Paused")
    assert cli("pool", "resume", "etl").strip() == 'WorkPool "etl" resumed (spec.paused=false)'
    assert spec_of(installed, "wp", "etl", namespace)["paused"] is False
    assert cli.fails("pool", "pause", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    cli("pool", "set-concurrency-limit", "etl", "7")
    assert spec_of(installed, "wp", "etl", namespace)["concurrencyLimit"] == 7
    assert "is not a whole number" in cli.fails("pool", "set-concurrency-limit", "etl", "lots", code=2)
    cli("pool", "clear-concurrency-limit", "etl")
    assert "concurrencyLimit" not in spec_of(installed, "wp", "etl", namespace)

    assert cli("pool", "delete", "etl").strip() == 'WorkPool "etl" deleted'
    assert installed.try_get("wp", "etl", namespace) is None
    assert cli.fails("pool", "delete", "etl") == f'error: WorkPool "etl" not found in namespace "{namespace}"'


def test_spec_verbs_patch_only_their_field_next_to_gitops(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    """A GitOps tool applies the pool; the CLI pauses it and changes its limit, touching nothing else."""
    installed.apply(
        pool("etl", description="owned by git", concurrencyLimit=2),
        queue("etl-high", "etl", priority=1, description="owned by git"),
        namespace=namespace,
        field_manager="argocd-controller",
    )
    cli("pool", "pause", "etl")
    cli("pool", "set-concurrency-limit", "etl", "5")
    cli("queue", "pause", "etl", "etl-high")
    assert spec_of(installed, "wp", "etl", namespace) == {
        "description": "owned by git",
        "paused": True,
        "concurrencyLimit": 5,
    }
    pool_owners = owners(installed, "wp", "etl", namespace)
    assert pool_owners["workpools-cli"] == {"paused", "concurrencyLimit"}
    assert "description" in pool_owners["argocd-controller"]
    queue_owners = owners(installed, "wq", "etl-high", namespace)
    assert queue_owners["workpools-cli"] == {"paused"}
    assert {"priority", "description"} <= queue_owners["argocd-controller"]


def test_namespace_context_and_kubeconfig(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    installed.apply(pool("etl"), namespace=namespace)
    config = tmp_path / "kubeconfig"
    shutil.copy(installed.kubeconfig, config)
    installed("config", "set-context", "--current", f"--namespace={namespace}", f"--kubeconfig={config}")
    in_context = Cli(Kubectl(config, installed.binary), namespace)
    listed = in_context.run("pool", "ls", "-o", "json", namespaced=False).json()
    assert [p["metadata"]["name"] for p in listed] == ["etl"]  # the context's namespace
    assert "etl" not in cli("pool", "ls", "-n", "default", namespaced=False)  # -n wins
    assert "nope" in cli.fails("pool", "ls", "--context", "nope")
    missing = Cli(Kubectl(tmp_path / "absent", installed.binary), namespace)
    assert missing.fails("pool", "ls") == f"error: kubeconfig {tmp_path / 'absent'} ($KUBECONFIG) does not exist"


# -- queues ----------------------------------------------------------------------------------------


def test_queue_verbs(cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    installed.apply(pool("etl"), namespace=namespace)
    assert cli("queue", "create", "etl", "etl-high", "--priority", "1", "--concurrency-limit", "2").strip() == (
        'WorkQueue "etl-high" created in WorkPool "etl"'
    )
    cli("queue", "create", "etl", "etl-low", "--priority", "5", "--description", "bulk work")
    assert cli.fails("queue", "create", "nope", "q") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    def listed() -> list[list[str]] | None:
        rows = [line.split()[:2] for line in cli("queue", "ls", "etl").splitlines()[1:]]
        return rows if len(rows) == 3 and all(row[1] != "-" for row in rows) else None

    assert wait_for(listed, what="three resolved queues") == [["etl-high", "1"], ["etl-default", "2"], ["etl-low", "5"]]
    queues = cli.run("queue", "ls", "etl", "-o", "json").json()
    assert [q["status"]["effectivePriority"] for q in queues] == [1, 2, 5]
    assert re.search(r"^Description:\s+bulk work$", cli("queue", "inspect", "etl", "etl-low"), re.M)
    assert (
        cli.fails("queue", "inspect", "etl", "nope") == f'error: WorkQueue "nope" not found in namespace "{namespace}"'
    )
    assert cli.fails("queue", "ls", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    cli("queue", "pause", "etl", "etl-low")
    assert spec_of(installed, "wq", "etl-low", namespace)["paused"] is True
    cli("queue", "resume", "etl", "etl-low")
    assert spec_of(installed, "wq", "etl-low", namespace)["paused"] is False
    cli("queue", "set-concurrency-limit", "etl", "etl-low", "3")
    assert spec_of(installed, "wq", "etl-low", namespace)["concurrencyLimit"] == 3
    cli("queue", "clear-concurrency-limit", "etl", "etl-low")
    assert "concurrencyLimit" not in spec_of(installed, "wq", "etl-low", namespace)

    # set-priority writes one spec; the operator pushes the holder down in status only
    cli("queue", "set-priority", "etl", "etl-low", "1")
    assert spec_of(installed, "wq", "etl-high", namespace)["priority"] == 1
    wait_for(lambda: "1 (asks 1)" not in (t := cli("queue", "ls", "etl")) and "2 (asks 1)" in t and t, what="conflict")
    # asking again for the value it already requests writes nothing, and says why and what to do instead
    generation = installed.get("wq", "etl-high", namespace)["metadata"]["generation"]
    again = cli("queue", "set-priority", "etl", "etl-high", "1")
    assert again.startswith('WorkQueue "etl-high" already asks for priority 1 (spec.priority) and runs at priority 2')
    assert "queue etl-low holds 1, asked for later" in again
    assert "queue reorder etl etl-high=1" in again
    assert installed.get("wq", "etl-high", namespace)["metadata"]["generation"] == generation

    # reorder is Prefect's bulk action: it rewrites the specs it moves
    table = cli("queue", "reorder", "etl", "etl-high=1", "etl-low=2")
    assert [line.split() for line in table.splitlines()] == [
        ["QUEUE", "PRIORITY"],
        ["etl-high", "1"],
        ["etl-low", "2"],
        ["etl-default", "3"],
    ]
    assert {
        q: spec_of(installed, "wq", q, namespace).get("priority") for q in ("etl-high", "etl-low", "etl-default")
    } == {
        "etl-high": 1,
        "etl-low": 2,
        "etl-default": 3,
    }
    duplicate = cli.fails("queue", "reorder", "etl", "etl-high=4", "etl-low=4")
    assert duplicate == "error: Duplicate target priorities provided: priority 4 targeted by etl-high, etl-low"

    assert cli("queue", "delete", "etl", "etl-low").strip() == 'WorkQueue "etl-low" deleted'
    assert installed.try_get("wq", "etl-low", namespace) is None
    assert cli.fails("queue", "delete", "etl", "etl-low") == (
        f'error: WorkQueue "etl-low" not found in namespace "{namespace}"'
    )


# -- workers ---------------------------------------------------------------------------------------


def test_worker_verbs(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(pool("etl"), namespace=namespace)
    workers("etl", "w1", limit=2).beat()
    workers("etl", "w2", queues=["etl-default"]).beat()
    wait_for(
        lambda: all(
            installed.get("wkr", w, namespace).get("status", {}).get("phase") == "Online" for w in ("w1", "w2")
        ),
        what="both workers Online",
    )
    rows = [line.split() for line in cli("worker", "ls", "etl").splitlines()]
    assert rows[0] == ["NAME", "STATUS", "QUEUES", "LIMIT", "RUNS", "LAST", "HEARTBEAT", "AGE"]
    assert {row[0]: row[1:4] for row in rows[1:]} == {
        "w1": ["Online", "all", "2"],
        "w2": ["Online", "etl-default", "-"],
    }
    assert [
        w["metadata"]["name"] for w in cli.run("worker", "ls", "etl", "--status", "Offline", "-o", "json").json()
    ] == []
    assert cli.fails("worker", "ls", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    assert cli("worker", "delete", "etl", "w2").strip() == 'Worker "w2" deleted'
    assert installed.try_get("wkr", "w2", namespace) is None
    assert cli.fails("worker", "delete", "etl", "w2") == f'error: Worker "w2" not found in namespace "{namespace}"'


def test_worker_start_runs_a_worker_until_interrupted(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("etl"), namespace=namespace)
    argv = ["worker", "start", "--pool", "etl", "--name", "cli-worker", "--heartbeat-interval", "2"]
    with cli.background(*argv) as process:
        wait_for(
            lambda: (
                process.poll() is None
                and (installed.try_get("wkr", "cli-worker", namespace) or {}).get("status", {}).get("phase") == "Online"
            ),
            timeout=60,
            what="the started worker Online",
        )
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err


# -- runs ------------------------------------------------------------------------------------------


def test_run_verbs(cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str) -> None:
    installed.apply(pool("etl"), queue("etl-high", "etl", priority=1), namespace=namespace)
    out = cli(
        "run",
        "create",
        "etl",
        "--queue",
        "etl-high",
        "--name",
        "r1",
        "-p",
        "seconds=5",
        "-p",
        "label=nightly",
        "--command",
        "echo hi",
    )
    assert out.strip() == 'FlowRun "r1" created in etl/etl-high, scheduled now'
    assert spec_of(installed, "fr", "r1", namespace) == {
        "workPool": "etl",
        "workQueue": "etl-high",
        "parameters": {"seconds": 5, "label": "nightly"},
        "command": "echo hi",
    }
    later = cli.run("run", "create", "etl", "--at", "+2h", "-o", "json").json()
    assert later["metadata"]["name"].startswith("etl-")
    assert later["spec"]["scheduledTime"] > installed.get("fr", "r1", namespace)["metadata"]["creationTimestamp"]
    assert cli.fails("run", "create", "etl", "--queue", "nope") == (
        f'error: WorkQueue "nope" not found in namespace "{namespace}"'
    )
    assert cli.fails("run", "create", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    wait_for(lambda: installed.get("fr", "r1", namespace).get("status", {}).get("state"), equals="Scheduled")
    rows = [line.split() for line in cli("run", "ls", "--pool", "etl").splitlines()]
    assert rows[0] == ["NAME", "POOL", "QUEUE", "STATE", "WORKER", "SCHEDULED", "AGE"]
    assert [row[0] for row in rows[1:]] == [later["metadata"]["name"], "r1"]  # newest scheduled first
    assert [r["metadata"]["name"] for r in cli.run("run", "ls", "--queue", "etl-high", "-o", "json").json()] == ["r1"]
    assert [r["metadata"]["name"] for r in cli.run("run", "ls", "--queue", "etl-default", "-o", "json").json()] == [
        later["metadata"]["name"]
    ]
    assert "No FlowRuns found." in cli("run", "ls", "--state", "Running")
    details = cli("run", "inspect", "r1")
    assert re.search(r'^Parameters:\s+\{"label": "nightly", "seconds": 5\}$', details, re.M)
    assert cli.fails("run", "inspect", "nope") == f'error: FlowRun "nope" not found in namespace "{namespace}"'

    assert cli("run", "cancel", "r1").strip() == 'FlowRun "r1" cancellation requested (spec.cancel=true)'
    wait_for(lambda: installed.get("fr", "r1", namespace)["status"]["state"], equals="Cancelled", what="cancelled")
    assert owners(installed, "fr", "r1", namespace)["workpools-cli"] >= {"cancel"}
    assert "Cancelled" in cli("run", "ls", "--state", "Cancelled")
    assert cli.fails("run", "cancel", "nope") == f'error: FlowRun "nope" not found in namespace "{namespace}"'


# -- slots and preview -----------------------------------------------------------------------------


def test_pool_slots_show_holders_with_state_worker_and_time_held(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    installed.apply(
        pool("etl", concurrencyLimit=3),
        queue("etl-high", "etl", priority=1, concurrencyLimit=2),
        queue("etl-low", "etl", priority=2),
        namespace=namespace,
    )
    installed.apply(
        *[run(f"high-{i}", "etl", workQueue="etl-high") for i in range(3)],
        *[run(f"low-{i}", "etl", workQueue="etl-low") for i in range(2)],
        namespace=namespace,
    )
    w1 = workers("etl", "w1")
    w1.beat()

    def holders() -> list[str] | None:
        items = installed.json("get", "fr", "-n", namespace)["items"]
        held = sorted(i["metadata"]["name"] for i in items if i.get("status", {}).get("state") == "Pending")
        return held if len(held) == 3 else None

    held = wait_for(holders, what="three runs bound to w1")
    assert held == ["high-0", "high-1", "low-0"]  # the queue's limit, then priority order
    w1.move("high-0", "Running")

    def slots() -> str | None:  # once the pool's and queues' statuses have caught up (bookkeeping follows grants)
        text = cli("pool", "slots", "etl")
        caught_up = text.startswith("etl   [████████] 3/3   Ready, 1/1 workers online\n") and re.search(
            r"^  etl-high\s+1\s+\[████████\] 2/2$", text, re.M
        )
        return text if caught_up else None

    text = wait_for(slots, what="the pool Ready and full")
    print(text)  # the sample the README and the closing note show
    lines = text.splitlines()
    assert re.search(r"^  etl-high\s+1\s+\[████████\] 2/2$", text, re.M)
    assert re.search(r"^  etl-low\s+2\s+\[no limit\] 1/∞$", text, re.M)
    assert re.search(r"^  etl-default\s+3\s+\[no limit\] 0/∞$", text, re.M)
    assert re.search(r"^  high-0\s+etl-high\s+Running\s+w1\s+\d+s$", text, re.M), text
    assert re.search(r"^  high-1\s+etl-high\s+Pending\s+w1\s+\d+s$", text, re.M), text
    assert re.search(r"^  low-0\s+etl-low\s+Pending\s+w1\s+\d+s$", text, re.M), text
    assert "high-2" not in text
    assert "low-1" not in text

    status = cli.run("pool", "slots", "etl", "-o", "json").json()
    assert (status["activeSlots"], status["concurrencyLimit"]) == (3, 3)
    high = status["queues"][0]
    assert (high["name"], high["activeSlots"]) == ("etl-high", 2)
    assert {r["name"]: (r["state"], r["worker"]) for r in high["flowRuns"]} == {
        "high-0": ("Running", "w1"),
        "high-1": ("Pending", "w1"),
    }
    assert all(r["heldSeconds"] >= 0 and r["slotAcquiredAt"] for r in high["flowRuns"])
    every = cli.run("pool", "slots", "-o", "json").json()
    assert [p["pool"] for p in every] == ["etl"]

    plugin = cli("pool", "slots", "etl", program=(installed.binary, "workpools"))  # kubectl finds it on PATH
    assert plugin.splitlines()[0] == lines[0]
    assert cli.fails("pool", "slots", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'

    # the pool is full: the preview says so
    assert cli("pool", "preview", "etl").strip() == (
        "No runs would be handed out in that window: the pool has no open slot (3/3 in use)."
    )


def test_pool_slots_watch_redraws_until_interrupted(cli: Cli, installed: Kubectl, namespace: str) -> None:
    installed.apply(pool("etl"), namespace=namespace)
    with cli.background("pool", "slots", "etl", "--watch", "--interval", "0.3") as process:
        assert process.stdout is not None
        frames: list[str] = []
        for line in process.stdout:  # until a third frame starts: two whole frames seen
            if line.startswith("Every "):
                frames.append(line)
                if len(frames) == 3:
                    break
        process.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = process.communicate(timeout=30)
    assert err == ""
    assert process.returncode == 0
    assert len(frames) == 3, frames
    assert all(frame.startswith("Every 0.3s: workpools pool slots etl --watch") for frame in frames)


def test_pool_preview_shows_admission_order(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(
        pool("etl", concurrencyLimit=3),
        queue("etl-a", "etl", priority=2),
        queue("etl-b", "etl", priority=1, concurrencyLimit=1),
        namespace=namespace,
    )
    installed.apply(
        run("a-1", "etl", workQueue="etl-a"),
        run("b-1", "etl", workQueue="etl-b"),
        run("b-2", "etl", workQueue="etl-b"),  # over etl-b's limit
        namespace=namespace,
    )
    cli("run", "create", "etl", "--queue", "etl-a", "--name", "a-later", "--at", "+3h")
    wait_for(  # by name: on the way there a queue may hold another's priority for a moment
        lambda: {
            q["metadata"]["name"]: q["status"].get("effectivePriority")
            for q in cli.run("queue", "ls", "etl", "-o", "json").json()
        },
        equals={"etl-b": 1, "etl-a": 2, "etl-default": 3},
        what="priorities resolved",
    )
    rows = [line.split() for line in cli("pool", "preview", "etl").splitlines()]
    assert rows[0] == ["SCHEDULED", "WHEN", "RUN", "QUEUE", "PRIORITY"]
    assert [(row[-3], row[-2], row[-1]) for row in rows[1:]] == [("b-1", "etl-b", "1"), ("a-1", "etl-a", "2")]
    later = [r["name"] for r in cli.run("pool", "preview", "etl", "--hours", "4", "-o", "json").json()]
    assert later == ["b-1", "a-1", "a-later"]
    assert [r["name"] for r in cli.run("pool", "preview", "etl", "--limit", "1", "-o", "json").json()] == ["b-1"]
    assert cli.fails("pool", "preview", "nope") == f'error: WorkPool "nope" not found in namespace "{namespace}"'


def test_run_why_lists_every_rule_with_positions_and_an_estimate(
    cli: Cli, installed: Kubectl, operator: OperatorProcess, namespace: str, workers: Workers
) -> None:
    # etl-high runs one at a time; the pool runs one run per team at once.
    installed.apply(
        pool("etl", concurrencyLimitPerKey=[{"label": "team", "limit": 1}]),
        queue("etl-high", "etl", priority=1, concurrencyLimit=1),
        queue("etl-low", "etl", priority=2),
        namespace=namespace,
    )

    def labelled(name: str, queue_name: str, team: str | None = None) -> dict[str, Any]:
        body = run(name, "etl", workQueue=queue_name)
        if team is not None:
            body["metadata"]["labels"] = {"team": team}
        return body

    def state(name: str) -> str | None:
        found: str | None = installed.get("fr", name, namespace).get("status", {}).get("state")
        return found

    installed.apply(labelled("high-0", "etl-high"), labelled("low-a1", "etl-low", "a"), namespace=namespace)
    workers("etl", "w1").beat()
    wait_for(lambda: state("high-0") == state("low-a1") == "Pending", what="high-0 and low-a1 granted")
    installed.apply(labelled("high-1", "etl-high"), labelled("low-a2", "etl-low", "a"), namespace=namespace)

    def admitted_reason(name: str) -> str | None:
        found = condition(installed.get("fr", name, namespace), "Admitted")
        return found["reason"] if found else None

    wait_for(lambda: admitted_reason("high-1"), equals="QueueLimitReached", what="high-1 held by its queue")
    wait_for(lambda: admitted_reason("low-a2"), equals="KeyLimitReached", what="low-a2 held by its team's key")

    text = cli("run", "why", "high-1")
    print(text)  # the sample the README shows
    assert re.search(r"^State:\s+Scheduled$", text, re.M), text
    assert re.search(r"^Position:\s+1st of 2 admissible in pool etl, 1st of 1 in queue etl-high$", text, re.M), text
    assert re.search(r"^  QueueLimitReached\s+queue etl-high has no open slot \(limit 1\)$", text, re.M), text
    assert re.search(r"^Estimated start:\s+in \S+ \(range \S+–\S+\), from 2 grants in the last 10m$", text, re.M), text

    keyed = cli("run", "why", "low-a2")
    print(keyed)
    assert re.search(r"^Position:\s+2nd of 2 admissible in pool etl, 1st of 1 in queue etl-low$", keyed, re.M)
    assert re.search(
        r"^  KeyLimitReached\s+pool etl runs at most 1 at once per label team; team=a has no room$", keyed, re.M
    ), keyed

    data = cli.run("run", "why", "low-a2", "-o", "json", "--window", "30").json()
    assert data["position"] == {
        "pool": {"scope": "pool etl", "rank": 2, "ahead": 1, "admissible": 2},
        "queue": {"scope": "queue etl-low", "rank": 1, "ahead": 0, "admissible": 1},
    }
    assert [h["reason"] for h in data["heldBy"]] == ["KeyLimitReached"]
    estimate = data["estimate"]
    assert (estimate["grantsInWindow"], estimate["grantsNeeded"], estimate["windowSeconds"]) == (2, 2, 1800.0)
    assert 0 < estimate["rangeSeconds"][0] < estimate["inSeconds"] < estimate["rangeSeconds"][1]
    assert yaml.safe_load(cli("run", "why", "low-a2", "-o", "yaml"))["heldBy"][0]["reason"] == "KeyLimitReached"

    assert re.search(r"^Waiting:\s+no: admitted: bound to worker w1", cli("run", "why", "high-0"), re.M)
    assert cli.fails("run", "why", "nope") == f'error: FlowRun "nope" not found in namespace "{namespace}"'
