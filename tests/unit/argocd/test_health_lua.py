"""The Argo CD health checks (examples/argocd/health/*.lua), run by a real Lua 5.1 interpreter.

Argo CD runs them in gopher-lua (Lua 5.1 semantics) with only the base, table and a safe os
library (argo-cd util/lua/lua.go). `evaluate` rebuilds that sandbox on lupa's Lua 5.1: no string
library (not even string methods), no math, io or debug, and a fresh state per evaluation, so a
script that would fail in Argo CD fails here. The ConfigMap patch that ships the scripts, and the
Application, are checked here too; tests/integration/test_argocd_health.py runs the same scripts
on objects captured from the real control plane.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lupa.lua51
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workpools.api import crds, meta

ROOT = Path(__file__).resolve().parents[3]
ARGOCD = ROOT / "examples" / "argocd"
KINDS = ("WorkPool", "WorkQueue", "Worker", "FlowRun", "FlowSchedule")
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
"""What Argo CD accepts from a script (util/lua/lua.go isValidHealthStatusCode)."""

SANDBOX = """
debug.setmetatable("", nil)
string, math, io, debug, coroutine, python = nil, nil, nil, nil, nil, nil
os = {time = os.time, date = os.date}
for _, name in ipairs({"string", "math", "io", "debug", "coroutine", "python"}) do
  package.loaded[name] = nil
end
package.loaded.os = os
"""
"""Argo CD's Lua environment without useOpenLibs: base, package, table and os.time/os.date."""


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def run_lua(source: str, obj: Mapping[str, Any]) -> Health:
    """Run `source` the way Argo CD runs a health script: `obj` global, fresh sandboxed state."""
    lua = lupa.lua51.LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute(SANDBOX)
    lua.globals().obj = lua.table_from(dict(obj), recursive=True)
    result = lua.execute(source)
    assert lupa.lua51.lua_type(result) == "table", f"a health script must return a table, not {result!r}"
    status, message = result["status"], result["message"]
    assert status in ARGO_STATUSES, f"Argo CD would report an invalid status {status!r} as Unknown"
    assert isinstance(message, str), f"message must be a string, got {message!r}"
    return Health(status, message)


def script(kind: str) -> str:
    return (ARGOCD / "health" / f"{kind.lower()}.lua").read_text()


def evaluate(obj: Mapping[str, Any]) -> Health:
    """The health Argo CD would give `obj`, by the script for its kind."""
    return run_lua(script(obj["kind"]), obj)


# -- objects as the API server returns them ----------------------------------------------------

NOW = "2026-01-01T12:00:00Z"


def condition(type_: str, status: str = "True", reason: str = "Reason", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW}


def obj(
    kind: str,
    *,
    generation: int | None = 1,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "x", "namespace": "ns", "uid": "u-1", "creationTimestamp": NOW}
    if generation is not None:
        metadata["generation"] = generation
    built: dict[str, Any] = {"apiVersion": "workpools.dev/v1alpha1", "kind": kind, "metadata": metadata}
    built["spec"] = {"workPool": "p"} if spec is None else spec
    if status is not None:
        built["status"] = status
    return built


def observed(kind: str, generation: int = 1, spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    """An object the operator has observed at `generation`, with `status` fields."""
    return obj(kind, generation=generation, spec=spec, status={"observedGeneration": generation, **status})


def case(kind: str, o: dict[str, Any], status: str, message: str, id: str) -> Any:
    return pytest.param(o, status, message, id=f"{kind}-{id}")


NO_WORKER = "No worker online yet; runs wait in their queues until a worker starts"
POOL = "WorkPool"
POOL_WINDOW = condition("LimitWindow", reason="WindowOpen", message="window night is open: limit 1")
POOL_CASES = [
    case(POOL, obj(POOL), "Progressing", "Waiting for the operator to observe generation 1", "no-status"),
    case(POOL, obj(POOL, status={}), "Progressing", "Waiting for the operator to observe generation 1", "empty-status"),
    case(
        POOL,
        obj(POOL, generation=3, status={"observedGeneration": 2, "phase": "Ready"}),
        "Progressing",
        "Waiting for the operator to observe generation 3",
        "stale",
    ),
    case(
        POOL, obj(POOL, generation=None), "Progressing", "Waiting for the operator to observe this WorkPool", "no-gen"
    ),
    case(POOL, observed(POOL, 2, phase="NotReady"), "Healthy", NO_WORKER, "observed-newer-generation"),
    case(
        POOL,
        observed(
            POOL, phase="Ready", conditions=[condition("Invalid", message="variable {{ image }} is not declared")]
        ),
        "Degraded",
        "variable {{ image }} is not declared",
        "invalid",
    ),
    case(
        POOL,
        observed(POOL, phase="Ready", conditions=[condition("Invalid", reason="TemplateInvalid")]),
        "Degraded",
        "Invalid: TemplateInvalid",
        "invalid-without-message",
    ),
    case(
        POOL,
        observed(POOL, phase="Paused", conditions=[condition("Invalid", message="bad template")]),
        "Degraded",
        "bad template",
        "invalid-beats-paused",
    ),
    case(
        POOL,
        observed(POOL, phase="NotReady", conditions=[condition("Invalid", "False")]),
        "Healthy",
        NO_WORKER,
        "invalid-false",
    ),
    case(
        POOL,
        observed(POOL, phase="Paused", conditions=[condition("Paused", reason="Paused")]),
        "Suspended",
        "WorkPool is paused (spec.paused): no runs are admitted from it",
        "paused",
    ),
    case(
        POOL,
        observed(POOL, phase="Ready", conditions=[condition("Ready", message="1 of 2 workers online")]),
        "Healthy",
        "1 of 2 workers online",
        "ready",
    ),
    case(POOL, observed(POOL, phase="Ready"), "Healthy", "Ready", "ready-without-condition"),
    case(
        POOL,
        observed(POOL, phase="Ready", conditions=[condition("Ready", message="1 of 2 workers online"), POOL_WINDOW]),
        "Healthy",
        "1 of 2 workers online; window night is open: limit 1",
        "limit-window-open",
    ),
    case(
        POOL,
        observed(POOL, phase="NotReady", workers={"online": 0, "total": 0}, conditions=[POOL_WINDOW]),
        "Healthy",
        NO_WORKER + "; window night is open: limit 1",
        "no-workers-limit-window-open",
    ),
    case(
        POOL,
        observed(POOL, phase="NotReady", workers={"online": 0, "total": 0}),
        "Healthy",
        NO_WORKER,
        "no-workers-yet",
    ),
    case(
        POOL,
        observed(POOL, phase="NotReady", workers={"online": 0, "total": 2}),
        "Healthy",
        "No worker online: all 2 registered workers are offline; runs wait in their queues",
        "all-workers-offline",
    ),
    case(POOL, observed(POOL), "Progressing", "Waiting for the operator to set the phase", "no-phase"),
]

QUEUE = "WorkQueue"
WINDOW = condition("LimitWindow", reason="WindowOpen", message="window night is open: limit 0")
QUEUE_NO_WORKER = "No worker online yet; runs wait in this queue until a worker serving it starts"
CONFLICT = condition("PriorityConflict", reason="PriorityTaken", message="priority 1 is held by queue hot; runs at 2")
QUEUE_CASES = [
    case(QUEUE, obj(QUEUE), "Progressing", "Waiting for the operator to observe generation 1", "no-status"),
    case(
        QUEUE,
        obj(QUEUE, generation=2, status={"observedGeneration": 1, "phase": "Ready"}),
        "Progressing",
        "Waiting for the operator to observe generation 2",
        "stale",
    ),
    case(
        QUEUE,
        observed(QUEUE, phase="NotReady", conditions=[condition("PoolNotFound", message="WorkPool p does not exist")]),
        "Degraded",
        "WorkPool p does not exist",
        "pool-not-found",
    ),
    case(
        QUEUE,
        observed(QUEUE, phase="Paused"),
        "Suspended",
        "WorkQueue is paused (spec.paused): no runs are admitted from it",
        "paused",
    ),
    case(QUEUE, observed(QUEUE, phase="NotReady"), "Healthy", QUEUE_NO_WORKER, "not-ready"),
    case(
        QUEUE,
        observed(QUEUE, phase="Ready", conditions=[condition("Ready", message="served by 1 online worker")]),
        "Healthy",
        "served by 1 online worker",
        "ready",
    ),
    case(
        QUEUE,
        observed(QUEUE, phase="Ready", conditions=[condition("Ready", message="served"), CONFLICT]),
        "Healthy",
        "served; priority 1 is held by queue hot; runs at 2",
        "ready-priority-conflict",
    ),
    case(
        QUEUE,
        observed(QUEUE, phase="Ready", conditions=[condition("Ready", message="served"), WINDOW]),
        "Healthy",
        "served; window night is open: limit 0",
        "limit-window-open",
    ),
    case(
        QUEUE,
        observed(
            QUEUE, phase="Ready", conditions=[condition("Ready", message="served"), {**WINDOW, "status": "False"}]
        ),
        "Healthy",
        "served",
        "limit-window-closed",
    ),
    case(
        QUEUE,
        observed(QUEUE, phase="Ready", lateRuns=3, conditions=[condition("Ready", message="served")]),
        "Healthy",
        "served; 3 late (more than 15s past their time)",
        "late-runs",
    ),
    case(
        QUEUE,
        observed(QUEUE, phase="NotReady", conditions=[{**CONFLICT, "status": "False"}]),
        "Healthy",
        QUEUE_NO_WORKER,
        "priority-conflict-false",
    ),
    case(
        QUEUE, observed(QUEUE, phase="Unheard"), "Progressing", "Waiting for the operator to set the phase", "odd-phase"
    ),
]

WORKER = "Worker"
WORKER_SPEC = {"workPool": "p", "heartbeatIntervalSeconds": 10}
WORKER_CASES = [
    case(WORKER, obj(WORKER), "Progressing", "Waiting for the operator to observe generation 1", "no-status"),
    case(
        WORKER,
        obj(WORKER, status={"lastHeartbeatTime": NOW}),
        "Progressing",
        "Waiting for the operator to observe generation 1",
        "first-heartbeat-only",
    ),
    case(
        WORKER,
        observed(WORKER, phase="Online", conditions=[condition("PoolNotFound", message="WorkPool p does not exist")]),
        "Degraded",
        "WorkPool p does not exist",
        "pool-not-found",
    ),
    case(
        WORKER,
        observed(WORKER, phase="Online", lastHeartbeatTime=NOW, assignedRuns=2),
        "Healthy",
        "Online; 2 runs assigned",
        "online",
    ),
    case(WORKER, observed(WORKER, phase="Online"), "Healthy", "Online; 0 runs assigned", "online-no-count"),
    case(
        WORKER,
        observed(WORKER, spec={"workPool": "p", "draining": True}, phase="Online", assignedRuns=1),
        "Healthy",
        "Online, draining (takes no new runs); 1 runs assigned",
        "draining",
    ),
    case(
        WORKER,
        observed(WORKER, phase="Offline", lastHeartbeatTime=NOW),
        "Degraded",
        f"Offline: last heartbeat at {NOW} (expected every 30s)",
        "offline",
    ),
    case(
        WORKER,
        observed(WORKER, spec=WORKER_SPEC, phase="Offline", lastHeartbeatTime=NOW),
        "Degraded",
        f"Offline: last heartbeat at {NOW} (expected every 10s)",
        "offline-own-interval",
    ),
    case(
        WORKER,
        observed(WORKER, phase="Offline"),
        "Degraded",
        "Offline: no heartbeat received (expected every 30s)",
        "offline-never-heartbeat",
    ),
    case(
        WORKER,
        observed(WORKER, spec={"workPool": "p", "draining": True}, phase="Offline", lastHeartbeatTime=NOW),
        "Suspended",
        f"Offline after draining (stopped deliberately); last heartbeat at {NOW}",
        "drained",
    ),
    case(WORKER, observed(WORKER), "Progressing", "Waiting for the operator to set the phase", "no-phase"),
]

RUN = "FlowRun"
NOT_YET = condition("Admitted", "False", "NoOnlineWorker", "no Online worker serves queue q")
RUN_CASES = [
    case(RUN, obj(RUN), "Progressing", "Waiting for the operator to observe generation 1", "no-status"),
    case(RUN, observed(RUN), "Progressing", "Waiting for the operator to queue the run", "observed-no-state"),
    case(RUN, observed(RUN, state="Scheduled"), "Progressing", "Scheduled", "scheduled"),
    case(
        RUN,
        observed(RUN, state="Scheduled", stateName="Late", conditions=[NOT_YET]),
        "Progressing",
        "Scheduled (Late): no Online worker serves queue q",
        "late-not-admitted",
    ),
    case(
        RUN,
        observed(RUN, state="Scheduled", stateName="Scheduled", conditions=[{**NOT_YET, "status": "True"}]),
        "Progressing",
        "Scheduled",
        "state-name-same-as-state",
    ),
    case(
        RUN,
        observed(RUN, state="Scheduled", stateName="AwaitingRetry"),
        "Progressing",
        "Scheduled (AwaitingRetry)",
        "retry",
    ),
    case(RUN, observed(RUN, state="Pending", worker="w-1"), "Progressing", "Pending on worker w-1", "pending"),
    case(
        RUN,
        observed(RUN, state="Running", worker="w-1", attempt=2),
        "Progressing",
        "Running, attempt 2 on worker w-1",
        "second-attempt",
    ),
    case(
        RUN,
        observed(RUN, spec={"retries": 2}, state="Failed", worker="w-1", attempt=2, message="exit code 1"),
        "Progressing",
        "Failed, attempt 2 on worker w-1: exit code 1 (a retry follows)",
        "failed-retry-left",
    ),
    case(
        RUN,
        observed(RUN, spec={"retries": 2}, state="Crashed", worker="w-1", attempt=3, message="lost"),
        "Degraded",
        "Crashed, attempt 3 on worker w-1: lost",
        "crashed-last-attempt",
    ),
    case(
        RUN,
        observed(RUN, spec={"retries": 2, "cancel": True}, state="Failed", message="exit code 1"),
        "Degraded",
        "Failed: exit code 1",
        "failed-cancel-requested",
    ),
    case(RUN, observed(RUN, state="Running", worker="w-1"), "Progressing", "Running on worker w-1", "running"),
    case(RUN, observed(RUN, state="Cancelling", worker="w-1"), "Progressing", "Cancelling on worker w-1", "cancelling"),
    case(
        RUN,
        observed(RUN, state="Cancelling", worker="w-1", cancellingSince="2026-01-01T12:00:00Z"),
        "Progressing",
        "Cancelling on worker w-1 since 2026-01-01T12:00:00Z",
        "cancelling-since",
    ),
    case(
        RUN,
        observed(RUN, state="Cancelled", stateName="Cancelled", message="worker w-1 did not report it stopped"),
        "Healthy",
        "Cancelled: worker w-1 did not report it stopped",
        "cancelled-by-timeout",
    ),
    case(
        RUN,
        obj(RUN, generation=2, status={"observedGeneration": 1, "state": "Running", "worker": "w-1"}),
        "Progressing",
        "Running on worker w-1 (Waiting for the operator to observe generation 2)",
        "stale-running",
    ),
    case(RUN, observed(RUN, state="Completed", worker="w-1"), "Healthy", "Completed on worker w-1", "completed"),
    case(
        RUN,
        obj(RUN, generation=2, status={"observedGeneration": 1, "state": "Completed"}),
        "Healthy",
        "Completed",
        "completed-then-edited",
    ),
    case(
        RUN,
        observed(RUN, state="Failed", worker="w-1", message="exit code 3"),
        "Degraded",
        "Failed on worker w-1: exit code 3",
        "failed",
    ),
    case(RUN, observed(RUN, state="Failed"), "Degraded", "Failed", "failed-without-message"),
    case(
        RUN,
        observed(RUN, state="Crashed", worker="w-1", message="worker w-1 went offline"),
        "Degraded",
        "Crashed on worker w-1: worker w-1 went offline",
        "crashed",
    ),
    case(RUN, observed(RUN, state="Cancelled"), "Healthy", "Cancelled", "cancelled"),
    case(
        RUN,
        observed(RUN, state="Paused", stateName="Suspended", worker="w-1"),
        "Suspended",
        "Paused (Suspended) on worker w-1",
        "paused",
    ),
    case(
        RUN,
        observed(RUN, state="Scheduled", conditions=[condition("PoolNotFound", message="WorkPool p does not exist")]),
        "Degraded",
        "WorkPool p does not exist",
        "pool-not-found",
    ),
    case(
        RUN,
        observed(RUN, state="Completed", conditions=[condition("PoolNotFound", message="WorkPool p does not exist")]),
        "Healthy",
        "Completed",
        "pool-gone-after-completion",
    ),
    case(
        RUN,
        observed(RUN, state="Running", worker="w-1", conditions=[condition("Invalid", message="bad parameters")]),
        "Degraded",
        "bad parameters",
        "invalid",
    ),
    case(RUN, observed(RUN, state="Bogus"), "Progressing", "Unknown state Bogus", "unknown-state"),
]


SCHEDULE = "FlowSchedule"
NEXT = condition("Ready", reason="Scheduled", message="next run at 2026-01-01T12:01:00Z")
SCHEDULE_CASES = [
    case(SCHEDULE, obj(SCHEDULE), "Progressing", "Waiting for the operator to observe generation 1", "no-status"),
    case(SCHEDULE, observed(SCHEDULE, conditions=[NEXT]), "Healthy", "next run at 2026-01-01T12:01:00Z", "scheduled"),
    case(
        SCHEDULE,
        observed(SCHEDULE, conditions=[condition("Invalid", message="schedule '0 0 30 2 *' cannot be evaluated")]),
        "Degraded",
        "schedule '0 0 30 2 *' cannot be evaluated",
        "invalid",
    ),
    case(
        SCHEDULE,
        observed(SCHEDULE, spec={"suspend": True}, conditions=[condition("Ready", "False", "Suspended")]),
        "Suspended",
        "FlowSchedule is suspended (spec.suspend): no runs are created",
        "suspended",
    ),
    case(
        SCHEDULE,
        observed(SCHEDULE, conditions=[condition("Ready", "False")]),
        "Progressing",
        "Waiting for the operator to schedule the next run",
        "not-ready",
    ),
]


@pytest.mark.parametrize(
    ("o", "status", "message"), POOL_CASES + QUEUE_CASES + WORKER_CASES + RUN_CASES + SCHEDULE_CASES
)
def test_health(o: dict[str, Any], status: str, message: str) -> None:
    assert evaluate(o) == Health(status, message)


# -- every nil guarded: any subset of a full object is judged, never a script error ------------

FULL = {
    "WorkPool": observed(
        POOL,
        phase="Ready",
        workers={"online": 1, "total": 2},
        slots={"active": 1, "limit": 4, "open": 3, "summary": "1/4"},
        conditions=[condition("Ready", message="1 of 2 workers online"), condition("Invalid"), condition("Paused")],
    ),
    "WorkQueue": observed(
        QUEUE,
        phase="Ready",
        lastPolled=NOW,
        conditions=[condition("Ready"), condition("PoolNotFound"), CONFLICT, condition("Paused")],
    ),
    "Worker": observed(
        WORKER,
        spec={"workPool": "p", "draining": True, "heartbeatIntervalSeconds": 10},
        phase="Online",
        lastHeartbeatTime=NOW,
        assignedRuns=1,
        conditions=[condition("Ready"), condition("Invalid"), condition("PoolNotFound")],
    ),
    "FlowRun": observed(
        RUN,
        state="Running",
        stateName="Late",
        worker="w-1",
        message="m",
        conditions=[NOT_YET, condition("Invalid"), condition("PoolNotFound")],
    ),
    "FlowSchedule": observed(
        SCHEDULE,
        spec={"schedule": "* * * * *", "suspend": True},
        lastScheduleTime=NOW,
        activeCount=1,
        conditions=[NEXT, condition("Invalid")],
    ),
}
CHOICES = {
    "phase": ("Ready", "NotReady", "Paused", "Online", "Offline", "Odd"),
    "state": ("Scheduled", "Pending", "Running", "Completed", "Failed", "Cancelling", "Cancelled", "Crashed", "Paused"),
    "status": ("True", "False", "Unknown"),
    "generation": (1, 2, 3),
    "observedGeneration": (1, 2, 3),
}
TERMINAL = {"Completed", "Failed", "Cancelled", "Crashed"}


def pruned(value: Any, key: str = "") -> st.SearchStrategy[Any]:
    """`value` with any keys dropped, list items dropped or emptied, and chosen leaves varied."""
    if isinstance(value, dict):
        return st.fixed_dictionaries({}, optional={k: pruned(v, k) for k, v in value.items()})
    if isinstance(value, list):
        return st.lists(st.one_of(st.just({}), *(pruned(item) for item in value)), max_size=len(value) + 1)
    if key in CHOICES and not isinstance(value, dict):
        return st.sampled_from(CHOICES[key])
    return st.just(value)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_partial_object_gets_a_health_never_a_script_error(kind: str, data: st.DataObject) -> None:
    o = {**data.draw(pruned(FULL[kind])), "kind": kind}
    health = evaluate(o)  # raises on a Lua error (Argo CD: Unknown) or an invalid result

    generation = o.get("metadata", {}).get("generation")
    seen = o.get("status", {}).get("observedGeneration")
    stale = seen is None or (generation is not None and seen < generation)
    state = o.get("status", {}).get("state")
    if kind != RUN and stale:
        assert health.status == "Progressing"
        assert health.message.startswith("Waiting for the operator to observe")
    if kind == RUN and state in TERMINAL:
        assert health.status in {"Healthy", "Degraded"}


def test_the_sandbox_has_no_string_library() -> None:
    """So the tests above would catch a script that works in plain Lua but not in Argo CD."""
    with pytest.raises(lupa.lua51.LuaError):
        run_lua('return {status = "Healthy", message = ("x"):upper()}', {})
    with pytest.raises(lupa.lua51.LuaError):
        run_lua('return {status = "Healthy", message = string.format("%d", 1)}', {})
    assert run_lua('return {status = "Healthy", message = "n=" .. 3}', {}) == Health("Healthy", "n=3")


def test_an_invalid_status_is_caught() -> None:
    with pytest.raises(AssertionError, match="invalid status"):
        run_lua('return {status = "Fine", message = ""}', {})


# -- the argocd-cm patch: generated from the scripts, keys as Argo CD expects ------------------


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("argocd_generate", ARGOCD / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def patch_data() -> dict[str, str]:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (patch["apiVersion"], patch["kind"], patch["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    data: dict[str, str] = patch["data"]
    return data


def test_committed_patch_is_what_the_generator_writes() -> None:
    generator = load_generator()
    assert (ARGOCD / "argocd-cm-patch.yaml").read_text() == generator.render(), (
        "examples/argocd/argocd-cm-patch.yaml is stale: run `python examples/argocd/generate.py`"
    )
    assert generator.main(["--check"]) == 0


def test_patch_embeds_each_script_verbatim_under_argo_cds_key() -> None:
    data = patch_data()
    for kind in KINDS:
        assert data[f"resource.customizations.health.{meta.GROUP}_{kind}"] == script(kind)
    assert not any(key.startswith("resource.customizations.useOpenLibs.") for key in data)
    assert "resource.customizations.ignoreResourceUpdates.all" not in data, "it would replace Argo CD's default"


def test_generator_agrees_with_the_api() -> None:
    generator = load_generator()
    assert generator.GROUP == meta.GROUP
    assert tuple(model.KIND for model in crds.KINDS) == generator.KINDS


def test_configmap_keys_are_valid() -> None:
    for key in patch_data():
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", key), key
        assert len(key) <= 253


def _schema_has(schema: dict[str, Any], pointer: str) -> bool:
    node = schema
    for segment in pointer.lstrip("/").split("/"):
        properties = node.get("properties", {})
        if segment not in properties:
            return False
        node = properties[segment]
    return True


def test_ignored_fields_exist_in_the_crds_and_are_never_health_inputs() -> None:
    data = patch_data()
    schemas = {model.KIND: crds.custom_resource_definition(model) for model in crds.KINDS}
    prefix = f"resource.customizations.ignoreResourceUpdates.{meta.GROUP}_"
    rules = {key.removeprefix(prefix): yaml.safe_load(value) for key, value in data.items() if key.startswith(prefix)}
    assert set(rules) == {"WorkPool", "WorkQueue", "Worker", "FlowSchedule"}
    for kind, rule in rules.items():
        assert set(rule) == {"jsonPointers"}
        schema = schemas[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for pointer in rule["jsonPointers"]:
            assert _schema_has(schema, pointer), f"{kind} has no field {pointer}"
            field = pointer.rsplit("/", 1)[-1]
            assert field not in {"phase", "conditions", "observedGeneration", "state"}, "health reads it"
    assert "/status/lastHeartbeatTime" in rules["Worker"]["jsonPointers"]
    assert "/status/lastPolled" in rules["WorkQueue"]["jsonPointers"]


def test_block_scalars_refuse_what_yaml_would_change() -> None:
    generator = load_generator()
    with pytest.raises(ValueError, match="trailing whitespace"):
        generator._block("hs = {} \n")
    with pytest.raises(ValueError, match="one newline"):
        generator._block("hs = {}")


# -- the Application ---------------------------------------------------------------------------


def test_application_syncs_examples_with_waves_pool_before_queue() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    assert source["path"] == "examples"
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    options = app["spec"]["syncPolicy"]["syncOptions"]
    assert {"ServerSideApply=true", "SkipDryRunOnMissingResource=true"} <= set(options)
    waves = {}
    for patch in source["kustomize"]["patches"]:
        body = yaml.safe_load(patch["patch"])
        assert patch["target"]["group"] == meta.GROUP
        assert body["kind"] == patch["target"]["kind"]
        waves[body["kind"]] = int(body["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    assert 0 < waves["WorkPool"] < waves["WorkQueue"]
