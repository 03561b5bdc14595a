"""Installing manifests/: it applies server-side, the operator pod is Pod Security "restricted"
(rule by rule, and by the API server's own admission), admin/edit/view users get the new kinds
through aggregation, and the operator's RBAC (its ClusterRole and its leader-election Role) is
exactly what the code needs, each verb with its reason.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl, KubectlError
from tests.support.waiting import wait_for
from tests.support.worker_rbac import worker_rbac

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "workpools"
GROUP = "workpools.dev"
KINDS = ("workpools", "workqueues", "workers", "flowruns", "flowschedules")
SYSTEM_NAMESPACE = "workpools-system"
OPERATOR_ACCOUNT = "workpools-operator"
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{OPERATOR_ACCOUNT}"
POLICY_FILE = "manifests/policy/worker_restriction.yaml"
POLICY = "workpools-worker-restriction"
SPECIAL_VERBS = ("use", "bind", "escalate", "impersonate", "approve", "admit")
"""Verbs beyond the API's own that an authorizer may be asked about; `admit` exempts from the worker restriction."""

Obj = dict[str, Any]
PodSpec = dict[str, Any]


@pytest.fixture(scope="module")
def rendered(installed: Kubectl) -> list[Obj]:
    """`kubectl kustomize manifests/`: every object a user installs."""
    return [doc for doc in yaml.safe_load_all(installed("kustomize", str(ROOT / "manifests"))) if doc]


def find(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def pod_template(rendered: list[Obj]) -> Obj:
    template: Obj = find(rendered, "Deployment", "workpools-operator")["spec"]["template"]
    return template


def kubectl_run(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with stderr kept (warnings land there even when the command succeeds)."""
    return subprocess.run(
        [kubectl.binary, *args], capture_output=True, text=True, env=kubectl.env(), timeout=120, check=False
    )


# -- the whole kustomization, server-side -------------------------------------------------------


def resource_name(obj: Obj) -> str:
    """How kubectl names an object in its output: `deployment.apps/x`, `namespace/x`."""
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


def test_the_whole_kustomization_applies_server_side_without_warnings(installed: Kubectl, rendered: list[Obj]) -> None:
    result = kubectl_run(installed, "apply", "--server-side", "--dry-run=server", "-k", str(ROOT / "manifests"))
    assert result.returncode == 0, result.stderr
    applied = {line.removesuffix(" serverside-applied (server dry run)") for line in result.stdout.splitlines()}
    assert applied == {resource_name(o) for o in rendered}
    # The namespace enforces "restricted"; Pod Security admission warns about workloads that would fail it.
    assert "PodSecurity" not in result.stderr
    assert "Warning" not in result.stderr, result.stderr
    kinds = {o["kind"] for o in rendered}
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= kinds


def test_the_metrics_service_reaches_the_operator_pods_metrics_port(rendered: list[Obj], pod_template: Obj) -> None:
    service = find(rendered, "Service", "workpools-operator-metrics")
    assert service["metadata"]["namespace"] == SYSTEM_NAMESPACE
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_template["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", 9090, "metrics")
    (container,) = pod_template["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["metrics"] == 9090


def test_the_disruption_budget_never_blocks_a_node_drain(rendered: list[Obj], pod_template: Obj) -> None:
    deployment = find(rendered, "Deployment", "workpools-operator")
    pdb = find(rendered, "PodDisruptionBudget", "workpools-operator")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_template["metadata"]["labels"].items()
    # One replica: any budget demanding an available pod would make every eviction of it fail.
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["maxUnavailable"] >= 1
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


# -- Pod Security "restricted", one rule at a time ---------------------------------------------
#
# The rules of https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and
# restricted), plus three of our own the profile does not have: a read-only root filesystem,
# resources, and probes. Each rule returns what is wrong (empty: the rule holds).

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
ALLOWED_CAPABILITY_ADDS = {"NET_BIND_SERVICE"}
ALLOWED_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def containers(spec: PodSpec) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]


def pod_context(spec: PodSpec) -> Obj:
    context: Obj = spec.get("securityContext") or {}
    return context


def context(container: Obj) -> Obj:
    found: Obj = container.get("securityContext") or {}
    return found


def effective(spec: PodSpec, container: Obj, key: str) -> Any:
    """A container's security setting, or the pod's when the container does not set it."""
    return context(container).get(key, pod_context(spec).get(key))


def runs_as_non_root(spec: PodSpec) -> list[str]:
    problems = []
    for c in containers(spec):
        if effective(spec, c, "runAsNonRoot") is not True:
            problems.append(f"{c['name']}: runAsNonRoot is not true (pod or container)")
        if effective(spec, c, "runAsUser") == 0:
            problems.append(f"{c['name']}: runAsUser is 0")
    return problems


def seccomp_runtime_default(spec: PodSpec) -> list[str]:
    return [
        f"{c['name']}: seccompProfile is {profile!r}, not RuntimeDefault (pod or container)"
        for c in containers(spec)
        if (profile := (effective(spec, c, "seccompProfile") or {}).get("type")) != "RuntimeDefault"
    ]


def no_privilege_escalation(spec: PodSpec) -> list[str]:
    return [
        f"{c['name']}: allowPrivilegeEscalation is not false"
        for c in containers(spec)
        if context(c).get("allowPrivilegeEscalation") is not False
    ]


def not_privileged(spec: PodSpec) -> list[str]:
    return [f"{c['name']}: privileged" for c in containers(spec) if context(c).get("privileged")]


def capabilities_dropped(spec: PodSpec) -> list[str]:
    problems = []
    for c in containers(spec):
        caps = context(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{c['name']}: capabilities.drop lacks ALL")
        if extra := set(caps.get("add") or []) - ALLOWED_CAPABILITY_ADDS:
            problems.append(f"{c['name']}: adds capabilities {sorted(extra)}")
    return problems


def no_host_namespaces(spec: PodSpec) -> list[str]:
    return [f"{key} is true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]


def no_host_ports(spec: PodSpec) -> list[str]:
    return [
        f"{c['name']}: hostPort {p['hostPort']}"
        for c in containers(spec)
        for p in c.get("ports", [])
        if p.get("hostPort")
    ]


def no_host_path(spec: PodSpec) -> list[str]:
    return [f"volume {v['name']} is a hostPath" for v in spec.get("volumes", []) if "hostPath" in v]


def volume_types_allowed(spec: PodSpec) -> list[str]:
    problems = []
    for volume in spec.get("volumes", []):
        types = set(volume) - {"name"}
        if not types or not types <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: type {sorted(types)} not allowed under restricted")
    return problems


def baseline_remainder(spec: PodSpec) -> list[str]:
    """The rest of baseline: sysctls, SELinux type, AppArmor, /proc mount, Windows host processes."""
    problems = [f"sysctl {s['name']}" for s in pod_context(spec).get("sysctls", [])]
    contexts = [("pod", pod_context(spec))] + [(c["name"], context(c)) for c in containers(spec)]
    for where, ctx in contexts:
        if (ctx.get("seLinuxOptions") or {}).get("type", "") not in ALLOWED_SELINUX_TYPES:
            problems.append(f"{where}: SELinux type {ctx['seLinuxOptions']['type']}")
        if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
            problems.append(f"{where}: AppArmor Unconfined")
        if ctx.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount {ctx['procMount']}")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{where}: Windows hostProcess")
    return problems


def read_only_root_filesystem(spec: PodSpec) -> list[str]:
    return [
        f"{c['name']}: readOnlyRootFilesystem is not true"
        for c in containers(spec)
        if context(c).get("readOnlyRootFilesystem") is not True
    ]


def resources_set(spec: PodSpec) -> list[str]:
    """Requests for CPU and memory, a memory limit. No CPU limit on purpose: throttling a control
    loop slows admission for every pool, while a memory leak must not take the node down.
    """
    problems = []
    for c in containers(spec):
        resources = c.get("resources") or {}
        for section, names in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
            missing = [n for n in names if n not in (resources.get(section) or {})]
            if missing:
                problems.append(f"{c['name']}: no {section} for {missing}")
    return problems


def probes_present(spec: PodSpec) -> list[str]:
    problems = []
    for c in spec.get("containers", []):
        ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{c['name']}: no {probe}")
            elif (port := (c[probe].get("httpGet") or {}).get("port")) is not None and port not in ports:
                problems.append(f"{c['name']}: {probe} probes undeclared port {port!r}")
    return problems


RULES: dict[str, Callable[[PodSpec], list[str]]] = {
    "runAsNonRoot": runs_as_non_root,
    "seccomp": seccomp_runtime_default,
    "allowPrivilegeEscalation": no_privilege_escalation,
    "privileged": not_privileged,
    "capabilities": capabilities_dropped,
    "hostNamespaces": no_host_namespaces,
    "hostPorts": no_host_ports,
    "hostPath": no_host_path,
    "volumeTypes": volume_types_allowed,
    "baselineRemainder": baseline_remainder,
    "readOnlyRootFilesystem": read_only_root_filesystem,
    "resources": resources_set,
    "probes": probes_present,
}


@pytest.mark.parametrize("rule", RULES)
def test_the_operator_pod_follows_the_rule(rule: str, pod_template: Obj) -> None:
    assert RULES[rule](pod_template["spec"]) == []


@dataclass(frozen=True)
class Breakage:
    """A change to the operator's pod spec that breaks `rule`; `psa` is what Pod Security
    admission says about it ("": nothing, the rule is ours, not the profile's).
    """

    rule: str
    change: Callable[[PodSpec], object]
    psa: str
    refused_before: str = ""
    """The API server's own refusal, if it can come before admission runs (a cluster setting)."""


def operator_container(spec: PodSpec) -> Obj:
    container: Obj = spec["containers"][0]
    return container


def operator_context(spec: PodSpec) -> Obj:
    ctx: Obj = operator_container(spec).setdefault("securityContext", {})
    return ctx


def make_privileged(spec: PodSpec) -> None:
    # The API refuses privileged together with allowPrivilegeEscalation: false, before admission.
    operator_context(spec).pop("allowPrivilegeEscalation", None)
    operator_context(spec)["privileged"] = True


BREAKAGES: dict[str, Breakage] = {
    "runAsNonRoot removed": Breakage("runAsNonRoot", lambda s: pod_context(s).pop("runAsNonRoot"), "runAsNonRoot"),
    "runAsUser 0": Breakage("runAsNonRoot", lambda s: pod_context(s).update(runAsUser=0), "runAsUser=0"),
    "seccomp removed": Breakage("seccomp", lambda s: pod_context(s).pop("seccompProfile"), "seccompProfile"),
    "seccomp Unconfined in the container": Breakage(
        "seccomp", lambda s: operator_context(s).update(seccompProfile={"type": "Unconfined"}), "seccompProfile"
    ),
    "privilege escalation allowed": Breakage(
        "allowPrivilegeEscalation",
        lambda s: operator_context(s).update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation != false",
    ),
    # kube-apiserver's default --allow-privileged=false (our local control plane) refuses it in
    # validation, before admission; with privileged pods allowed, Pod Security refuses it.
    "privileged": Breakage(
        "privileged",
        make_privileged,
        "privileged",
        refused_before="privileged: Forbidden: disallowed by cluster policy",
    ),
    "SYS_ADMIN added": Breakage(
        "capabilities",
        lambda s: operator_context(s)["capabilities"].update(add=["SYS_ADMIN"]),
        "unrestricted capabilities",
    ),
    "ALL not dropped": Breakage(
        "capabilities", lambda s: operator_context(s)["capabilities"].pop("drop"), "unrestricted capabilities"
    ),
    "hostNetwork": Breakage("hostNamespaces", lambda s: s.update(hostNetwork=True), "host namespaces"),
    "hostPID": Breakage("hostNamespaces", lambda s: s.update(hostPID=True), "host namespaces"),
    "hostPort": Breakage("hostPorts", lambda s: operator_container(s)["ports"][0].update(hostPort=8080), "hostPort"),
    "hostPath volume": Breakage(
        "hostPath", lambda s: s["volumes"].append({"name": "root", "hostPath": {"path": "/"}}), '"hostPath"'
    ),
    "nfs volume": Breakage(
        "volumeTypes",
        lambda s: s["volumes"].append({"name": "data", "nfs": {"server": "nfs.example", "path": "/"}}),
        "restricted volume types",
    ),
    "unsafe sysctl": Breakage(
        "baselineRemainder",
        lambda s: pod_context(s).update(sysctls=[{"name": "kernel.msgmax", "value": "65536"}]),
        "forbidden sysctls",
    ),
    "SELinux spc_t": Breakage(
        "baselineRemainder", lambda s: operator_context(s).update(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions"
    ),
    # Ours, beyond the profile: Pod Security admission lets these through.
    "writable root filesystem": Breakage(
        "readOnlyRootFilesystem", lambda s: operator_context(s).update(readOnlyRootFilesystem=False), ""
    ),
    "no resources": Breakage("resources", lambda s: operator_container(s).pop("resources"), ""),
    "no memory limit": Breakage("resources", lambda s: operator_container(s)["resources"].pop("limits"), ""),
    "no readiness probe": Breakage("probes", lambda s: operator_container(s).pop("readinessProbe"), ""),
}


@pytest.fixture(scope="module")
def restricted_namespace(installed: Kubectl) -> Iterator[str]:
    """A namespace enforcing "restricted", with the operator's ServiceAccount (the pod names it)."""
    name = f"psa-restricted-{uuid.uuid4().hex[:5]}"
    installed.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPERATOR_ACCOUNT, "namespace": name}},
    )
    yield name
    installed("delete", "namespace", name, "--wait=false")


def create_pod(kubectl: Kubectl, namespace: str, template: Obj, spec: PodSpec | None = None) -> str:
    """`kubectl create --dry-run=server` of a Pod made from the Deployment's template: all admission runs."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-pod-security-check", "labels": template["metadata"]["labels"]},
        "spec": spec if spec is not None else template["spec"],
    }
    return kubectl("create", "--dry-run=server", "-n", namespace, "-o", "name", "-f", "-", input=json.dumps(pod))


def test_pod_security_admission_admits_the_operator_pod(
    installed: Kubectl, restricted_namespace: str, pod_template: Obj
) -> None:
    assert create_pod(installed, restricted_namespace, pod_template).strip() == "pod/operator-pod-security-check"


def test_net_bind_service_is_the_one_capability_both_allow(
    installed: Kubectl, restricted_namespace: str, pod_template: Obj
) -> None:
    spec = copy.deepcopy(pod_template["spec"])
    operator_context(spec)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert capabilities_dropped(spec) == []
    create_pod(installed, restricted_namespace, pod_template, spec)


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_pod_spec_fails_its_rule_and_pod_security_agrees(
    breakage: str, installed: Kubectl, restricted_namespace: str, pod_template: Obj
) -> None:
    broken = BREAKAGES[breakage]
    spec = copy.deepcopy(pod_template["spec"])
    broken.change(spec)
    assert RULES[broken.rule](spec), f"rule {broken.rule} missed: {breakage}"
    if not broken.psa:  # our own rule: the profile admits it, which is why we check it ourselves
        create_pod(installed, restricted_namespace, pod_template, spec)
        return
    with pytest.raises(KubectlError) as rejected:
        create_pod(installed, restricted_namespace, pod_template, spec)
    if broken.refused_before and broken.refused_before in rejected.value.stderr:
        return
    assert 'violates PodSecurity "restricted:latest"' in rejected.value.stderr
    assert broken.psa in rejected.value.stderr


def test_every_rule_has_a_breakage_that_proves_it_can_fail() -> None:
    assert {b.rule for b in BREAKAGES.values()} == set(RULES)


def test_the_operator_namespace_enforces_restricted(rendered: list[Obj]) -> None:
    labels = find(rendered, "Namespace", SYSTEM_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# -- aggregated roles: admin/edit/view users -----------------------------------------------------

EDIT_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
VIEW_VERBS = ("get", "list", "watch")


def aggregated(kubectl: Kubectl, role: str, verb: str) -> bool:
    rules = kubectl.json("get", "clusterrole", role)["rules"] or []
    return all(
        any(GROUP in r.get("apiGroups", []) and kind in r.get("resources", []) and verb in r["verbs"] for r in rules)
        for kind in KINDS
    )


@pytest.fixture(scope="module")
def aggregation(installed: Kubectl) -> None:
    """The clusterrole-aggregation controller has folded our roles into admin, edit and view."""
    for role, verb in (("admin", "deletecollection"), ("edit", "deletecollection"), ("view", "watch")):
        wait_for(functools.partial(aggregated, installed, role, verb), what=f"aggregation into {role}")


def can(kubectl: Kubectl, user: str, verb: str, resource: str, namespace: str, *, subresource: str = "") -> bool:
    """`kubectl auth can-i`, impersonating `user` (the admin kubeconfig may impersonate)."""
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={user}"]
    if subresource:  # not `resource/status`: kubectl reads that as the object named "status"
        args.append(f"--subresource={subresource}")
    return kubectl(*args, check=False).strip() == "yes"


@dataclass(frozen=True, order=True)
class Access:
    verb: str
    resource: str  # `plural` or `plural/subresource`
    group: str = GROUP

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''}"


def allowed(
    kubectl: Kubectl, user: str, namespace: str, asked: Iterable[Access], groups: tuple[str, ...] = ()
) -> set[Access]:
    """What the authorizer allows `user` among `asked`: one SubjectAccessReview each, in one kubectl call."""
    asked = sorted(set(asked))
    reviews = []
    for access in asked:
        resource, _, subresource = access.resource.partition("/")
        attributes = {"verb": access.verb, "group": access.group, "resource": resource, "namespace": namespace}
        if subresource:
            attributes["subresource"] = subresource
        spec = {"user": user, "groups": [*groups, "system:authenticated"], "resourceAttributes": attributes}
        reviews.append(
            json.dumps({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        )
    out = kubectl("create", "-f", "-", "-o", 'jsonpath={.status.allowed}{"\\n"}', input="\n---\n".join(reviews))
    answers = [answer == "true" for answer in out.split()]
    assert len(answers) == len(asked), out
    return {access for access, yes in zip(asked, answers, strict=True) if yes}


def kind_access(verbs: Iterable[str], subresource: str = "") -> set[Access]:
    return {Access(verb, f"{kind}{'/' + subresource if subresource else ''}") for kind in KINDS for verb in verbs}


ROLE_ACCESS = {
    "admin": kind_access(EDIT_VERBS),
    "edit": kind_access(EDIT_VERBS),
    "view": kind_access(VIEW_VERBS),
}


@pytest.mark.usefixtures("aggregation")
@pytest.mark.parametrize("role", ROLE_ACCESS)
def test_a_namespace_role_grants_the_new_kinds_there_and_never_status(
    role: str, installed: Kubectl, namespace: str
) -> None:
    user = f"{role}-user"
    installed("create", "rolebinding", user, f"--clusterrole={role}", f"--user={user}", "-n", namespace)
    assert allowed(installed, user, namespace, kind_access(EDIT_VERBS)) == ROLE_ACCESS[role]
    assert allowed(installed, user, namespace, kind_access(EDIT_VERBS, "status")) == set()  # status is the operator's
    assert allowed(installed, user, "default", kind_access(EDIT_VERBS)) == set()  # the binding is per namespace
    # The same answers through `kubectl auth can-i`, as the user would ask.
    assert can(installed, user, "list", f"workpools.{GROUP}", namespace)
    assert can(installed, user, "create", f"workpools.{GROUP}", namespace) is (role != "view")
    assert not can(installed, user, "patch", f"workpools.{GROUP}", namespace, subresource="status")


@pytest.mark.usefixtures("aggregation")
def test_edit_users_create_pools_and_view_users_only_read_them(installed: Kubectl, namespace: str) -> None:
    installed("create", "rolebinding", "jane", "--clusterrole=edit", "--user=jane", "-n", namespace)
    installed("create", "rolebinding", "vera", "--clusterrole=view", "--user=vera", "-n", namespace)
    pool = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "WorkPool", "metadata": {"name": "etl"}, "spec": {}}
    installed("create", "-n", namespace, "--as=jane", "-f", "-", input=json.dumps(pool))
    assert [p["metadata"]["name"] for p in installed.json("get", "wp", "-n", namespace, "--as=vera")["items"]] == [
        "etl"
    ]
    with pytest.raises(KubectlError, match="forbidden"):
        installed(
            "create", "-n", namespace, "--as=vera", "-f", "-", input=json.dumps(pool | {"metadata": {"name": "x"}})
        )
    with pytest.raises(KubectlError, match="forbidden"):
        installed(
            "patch", "wp", "etl", "-n", namespace, "--as=jane", "--subresource=status", "--type=merge",
            "-p", '{"status": {"phase": "Ready"}}',
        )  # fmt: skip


# -- the operator's ClusterRole: every verb, and why ----------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    scope: str  # "cluster" (ClusterRole + ClusterRoleBinding), or the namespace of a RoleBinding
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''} ({self.scope})"


@dataclass(frozen=True)
class Reason:
    """Why the operator needs a grant, and where: each snippet must be in that file (whitespace
    ignored), so a verb whose code is gone shows up here as no longer justified.
    """

    why: str
    file: str  # under operator/workpools/, or under the repository for a path starting with manifests/
    snippets: tuple[str, ...]

    @property
    def path(self) -> Path:
        return ROOT / self.file if self.file.startswith("manifests/") else PACKAGE / self.file


def _watch_reasons(kind: str) -> dict[str, Reason]:
    """Why the operator watches and lists `kind`: its own watch for workers and runs, kopf's for the rest."""
    if kind in ("workers", "flowruns"):
        return {
            "watch": Reason(
                "Workers and runs are watched by the operator's own watch (events at work rate); they feed the store",
                "controllers/feeders.py",
                ("DIRECTLY_WATCHED = (WORKERS, FLOWRUNS)", "rt.transport.watch(resource, namespace, on_listed"),
            ),
            "list": Reason(
                "the operator's own watch starts with a paginated LIST, which primes the store before any pass",
                "controllers/startup.py",
                ("watch_directly(rt, resource, namespace, done)", "await asyncio.gather(*(done.wait()"),
            ),
        }
    return {
        "watch": Reason(
            "kopf watches the other kinds; the events feed the store",
            "controllers/feeders.py",
            (f'@kopf.on.event(GROUP, VERSION, "{kind}")',),
        ),
        "list": Reason(
            "the store is primed with a paginated LIST of every kind before any pass (kopf also LISTs)",
            "controllers/startup.py",
            ("for resource in (WORKPOOLS, WORKQUEUES, FLOWSCHEDULES):", "rt.transport.list_all(resource, namespace)"),
        ),
    }


def _operator_needs() -> dict[Grant, Reason]:
    needs: dict[Grant, Reason] = {}
    status_writes = {
        # Pools', queues' and workers' statuses are decided in pools.py and sent by writers.send_status.
        "workpools": ("controllers/pools.py", "rt.lane.submit_status(WORKPOOLS,"),
        "workqueues": ("controllers/pools.py", "rt.lane.submit_status(WORKQUEUES,"),
        "workers": ("controllers/pools.py", "write_status(rt, WORKERS,"),
        "flowruns": ("controllers/writers.py", "rt.transport.patch(FLOWRUNS,"),
        "flowschedules": ("controllers/schedules.py", "rt.transport.patch(FLOWSCHEDULES,"),
    }
    for kind in KINDS:
        for verb, reason in _watch_reasons(kind).items():
            needs[Grant("cluster", GROUP, kind, verb)] = reason
        needs[Grant("cluster", GROUP, f"{kind}/status", "patch")] = Reason(
            "every status is written through the status subresource, as a merge patch",
            status_writes[kind][0],
            (status_writes[kind][1],)
            if status_writes[kind][0] == "controllers/pools.py"
            else (status_writes[kind][1], "status=True,"),
        )
    needs[Grant("cluster", GROUP, "flowruns", "get")] = Reason(
        "a run whose status write failed ambiguously is read back before the pool is decided again",
        "controllers/writers.py",
        ("await rt.transport.get(FLOWRUNS, pool.namespace, name)",),
    )
    needs[Grant("cluster", GROUP, "workers", "get")] = Reason(
        "a silent worker is read directly (not from the watch cache) before it is judged Offline",
        "controllers/pools.py",
        ("await rt.transport.get(WORKERS, pool.namespace, name)",),
    )
    needs[Grant("cluster", GROUP, "workqueues", "create")] = Reason(
        "each pool's default queue", "controllers/pools.py", ("await rt.transport.create(WORKQUEUES,",)
    )
    needs[Grant("cluster", GROUP, "flowruns", "create")] = Reason(
        "a FlowSchedule's runs", "controllers/schedules.py", ("await rt.transport.create(FLOWRUNS,",)
    )
    needs[Grant("cluster", GROUP, "flowruns", "patch")] = Reason(
        "concurrencyPolicy Replace sets spec.cancel on the schedule's own active runs",
        "controllers/schedules.py",
        ('{"spec": {"cancel": True}},',),
    )
    needs[Grant("cluster", GROUP, "workers", "delete")] = Reason(
        "Workers offline longer than the pool's TTL are deleted",
        "controllers/pools.py",
        ("await rt.transport.delete(WORKERS,", "resource_version=meta.resource_version"),
    )
    # Also controllers/schedules.py: a FlowSchedule's finished runs beyond its history limits
    # (`await rt.transport.delete(FLOWRUNS,` ... `uid=meta.uid`); one Reason per grant is checked.
    needs[Grant("cluster", GROUP, "flowruns", "delete")] = Reason(
        "FlowRuns finished longer ago than the pool's finishedRunTTLSeconds are deleted, rate-limited",
        "controllers/pools.py",
        ("await rt.transport.delete(", "FLOWRUNS, meta.namespace", "resource_version=meta.resource_version"),
    )
    needs[Grant("cluster", GROUP, "flowruns", "admit")] = Reason(
        "not an API verb: whoever may admit runs is exempt from the worker restriction, so the operator keeps "
        "the moves it owns",
        POLICY_FILE,
        ("authorizer.group('workpools.dev').resource('flowruns')", ".check('admit').allowed()"),
    )
    needs[Grant("cluster", "", "events", "create")] = Reason(
        "lifecycle Events about our objects (core/v1 Events)", "client/events.py", ("await transport.create(EVENTS,",)
    )
    # Leader election: one Lease in the operator's own namespace (a Role there, not cluster-wide).
    for verb, call in (("get", "read"), ("create", "create"), ("update", "replace")):
        needs[Grant(SYSTEM_NAMESPACE, "coordination.k8s.io", "leases", verb)] = Reason(
            "the replicas elect a leader through the Lease workpools-system/workpools-operator",
            "client/transport.py",
            (f"self._coordination.{call}_namespaced_lease(",),
        )
    return needs


OPERATOR_NEEDS = _operator_needs()
"""Everything the operator may do. Adding a verb to its RBAC means adding it here, with a reason."""


def bound_to_operator(objects: list[Obj]) -> set[Grant]:
    """Every (scope, group, resource, verb) the rendered manifests grant the operator's ServiceAccount."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    grants: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == OPERATOR_ACCOUNT and s.get("namespace") == SYSTEM_NAMESPACE
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else namespace
        for rule in role.get("rules", []):
            assert not rule.get("resourceNames"), "resourceNames: extend this test to compare them"
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule["verbs"]:
                        grants.add(Grant(scope, group, resource, verb))
    return grants


def test_the_operator_is_granted_exactly_what_the_code_needs(rendered: list[Obj]) -> None:
    granted = bound_to_operator(rendered)
    unjustified = sorted(map(str, granted - OPERATOR_NEEDS.keys()))
    unused = sorted(map(str, OPERATOR_NEEDS.keys() - granted))
    assert unjustified == [], "granted without a reason in OPERATOR_NEEDS"
    assert unused == [], "needed by the code, not granted by manifests/rbac"
    assert not any("*" in (g.group, g.resource, g.verb) for g in granted)


@pytest.mark.parametrize("grant", sorted(OPERATOR_NEEDS), ids=str)
def test_the_code_that_justifies_each_grant_is_still_there(grant: Grant) -> None:
    reason = OPERATOR_NEEDS[grant]
    source = re.sub(r"\s+", "", reason.path.read_text())
    for snippet in reason.snippets:
        assert re.sub(r"\s+", "", snippet) in source, f"{grant}: {reason.why}; {snippet!r} is gone from {reason.file}"


@pytest.mark.parametrize("namespace", ["some-namespace", SYSTEM_NAMESPACE])
def test_the_api_server_grants_the_operator_exactly_that(installed: Kubectl, namespace: str) -> None:
    """The installed roles as the authorizer sees them: every needed verb allowed, every other denied."""
    verbs = {*EDIT_VERBS, *SPECIAL_VERBS}
    needed = {Access(g.verb, g.resource, g.group) for g in OPERATOR_NEEDS if g.scope in ("cluster", namespace)}
    resources = {(g.resource, g.group) for g in OPERATOR_NEEDS}
    resources |= {(r, "") for r in ("secrets", "pods", "configmaps", "namespaces", "serviceaccounts")}
    resources |= {("clusterroles", "rbac.authorization.k8s.io"), ("deployments", "apps")}
    asked = {Access(verb, resource, group) for resource, group in resources for verb in verbs}
    account_groups = ("system:serviceaccounts", f"system:serviceaccounts:{SYSTEM_NAMESPACE}")
    assert sorted(map(str, allowed(installed, OPERATOR_USER, namespace, asked, account_groups))) == sorted(
        map(str, needed)
    )


# -- the worker's ClusterRole and the worker restriction ----------------------------------------


WORKER_ACCOUNT = "worker"


def _worker_needs() -> dict[Access, Reason]:
    registration, process = "client/heartbeats.py", "worker/process.py"
    return {
        Access("get", "workpools"): Reason(
            "the pool's uid (a Worker is owned by its pool) and its baseJobTemplate",
            process,
            ("await self.transport.get(WORKPOOLS, self.namespace, self.pool)",),
        ),
        Access("get", "workers"): Reason(
            "registration reads the Worker", registration, ("await self._transport.get(WORKERS,",)
        ),
        Access("create", "workers"): Reason(
            "registration creates the Worker", registration, ("await self._transport.create(WORKERS,",)
        ),
        Access("patch", "workers"): Reason(
            "registration brings the spec up to date; a stopping worker drains",
            registration,
            ('{"spec": change}', '{"spec": {"draining": True}}'),
        ),
        Access("patch", "workers/status"): Reason(
            "the heartbeat", registration, ('{"status": {"lastHeartbeatTime": stamp}}', "status=True")
        ),
        Access("get", "flowruns"): Reason(
            "a run is read again before its end is reported",
            process,
            ("await self.transport.get(FLOWRUNS, self.namespace, name)",),
        ),
        Access("list", "flowruns"): Reason(
            "the watch of the runs bound to the worker starts with a LIST",
            process,
            ('field_selector=f"status.worker={self.name}"',),
        ),
        Access("watch", "flowruns"): Reason(
            "the worker watches the runs bound to it", process, ("self.transport.watch(FLOWRUNS",)
        ),
        Access("patch", "flowruns/status"): Reason(
            "the worker's moves of the runs bound to it",
            process,
            ("self.transport.patch(FLOWRUNS,", "status=True,"),
        ),
    }


WORKER_NEEDS = _worker_needs()
"""Everything a worker may do, in its namespace. A new verb in worker_role.yaml needs a reason here."""


def test_the_worker_role_grants_exactly_what_the_worker_needs(rendered: list[Obj]) -> None:
    role = find(rendered, "ClusterRole", "workpools-worker")
    granted = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames"), "resourceNames: extend this test to compare them"
        granted |= {Access(v, r, g) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert sorted(map(str, granted)) == sorted(map(str, WORKER_NEEDS))


@pytest.mark.parametrize("access", sorted(WORKER_NEEDS), ids=str)
def test_the_code_that_justifies_each_worker_grant_is_still_there(access: Access) -> None:
    reason = WORKER_NEEDS[access]
    source = re.sub(r"\s+", "", reason.path.read_text())
    for snippet in reason.snippets:
        assert re.sub(r"\s+", "", snippet) in source, f"{access}: {reason.why}; {snippet!r} is gone from {reason.file}"


def test_the_api_server_grants_a_worker_exactly_that_in_its_namespace(installed: Kubectl, namespace: str) -> None:
    installed.apply(worker_rbac(WORKER_ACCOUNT), namespace=namespace)
    worker = f"system:serviceaccount:{namespace}:{WORKER_ACCOUNT}"
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    asked = {Access(verb, access.resource) for access in WORKER_NEEDS for verb in (*EDIT_VERBS, *SPECIAL_VERBS)}
    asked |= kind_access((*EDIT_VERBS, *SPECIAL_VERBS)) | kind_access(EDIT_VERBS, "status")
    assert sorted(map(str, allowed(installed, worker, namespace, asked, groups))) == sorted(map(str, WORKER_NEEDS))
    assert allowed(installed, worker, "default", asked, groups) == set()  # bound in its namespace only
    # Asking who it is (registration) needs no grant of ours: every authenticated user may.
    who = Access("create", "selfsubjectreviews", "authentication.k8s.io")
    assert allowed(installed, worker, namespace, {who}, groups) == {who}


def test_the_worker_restriction_policy_is_installed_and_bound_everywhere(
    installed: Kubectl, rendered: list[Obj]
) -> None:
    policy = find(rendered, "ValidatingAdmissionPolicy", POLICY)
    binding = find(rendered, "ValidatingAdmissionPolicyBinding", POLICY)
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}  # every namespace, no params
    assert policy["spec"]["failurePolicy"] == "Fail"  # an error in the policy refuses rather than lets through
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == {"workers", "workers/status", "flowruns/status"}
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    # Served as applied (the API server enforces it: tests/integration/test_worker_restriction.py).
    assert (
        installed.json("get", "validatingadmissionpolicy", POLICY)["spec"]["validations"]
        == policy["spec"]["validations"]
    )
    assert installed.json("get", "validatingadmissionpolicybinding", POLICY)["spec"]["policyName"] == POLICY
