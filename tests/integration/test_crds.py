"""The generated CRDs on a real API server: accepted, documented, and listed together."""

from __future__ import annotations

from typing import Any

from tests.support.kube import Kubectl
from tests.support.waiting import wait_for
from workpools.api.meta import API_VERSION, CATEGORY


def test_crds_are_established_with_their_short_names(installed: Kubectl) -> None:
    names = installed("get", "crd", "-o", "name")
    for plural in ("workpools", "workqueues", "workers", "flowruns", "flowschedules"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{plural}.workpools.dev" in names
    resources = installed("api-resources", "--api-group=workpools.dev", "-o", "wide")
    for short in ("wp", "wq", "wkr", "fr", "fs"):
        assert f" {short} " in resources


def test_kubectl_explain_shows_the_field_docs(installed: Kubectl) -> None:
    # The API server publishes a new CRD's OpenAPI a few seconds after it is established.
    spec = wait_for(lambda: installed("explain", "workpool.spec", check=False), what="OpenAPI for WorkPool")
    assert "concurrencyLimit" in spec
    assert "Maximum runs holding a slot at once; null or absent means unlimited." in spec
    field = installed("explain", "workqueue.spec.priority")
    assert "Lower runs first" in field


def _one_of_each_kind(namespace: str) -> list[dict[str, Any]]:
    meta = {"name": "p", "namespace": namespace}
    return [
        {"apiVersion": API_VERSION, "kind": "WorkPool", "metadata": meta, "spec": {"paused": True}},
        {"apiVersion": API_VERSION, "kind": "WorkQueue", "metadata": {**meta, "name": "q"}, "spec": {"workPool": "p"}},
        {"apiVersion": API_VERSION, "kind": "Worker", "metadata": {**meta, "name": "w"}, "spec": {"workPool": "p"}},
        {"apiVersion": API_VERSION, "kind": "FlowRun", "metadata": {**meta, "name": "r"}, "spec": {"workPool": "p"}},
    ]


def test_the_plural_lists_its_kind_only_and_the_category_all_four(installed: Kubectl, namespace: str) -> None:
    installed.apply(*_one_of_each_kind(namespace))
    mine = {
        "workpool.workpools.dev/p",
        "workqueue.workpools.dev/q",
        "worker.workpools.dev/w",
        "flowrun.workpools.dev/r",
    }

    def listed(resource: str) -> set[str]:
        return set(installed("get", resource, "-n", namespace, "-o", "name").split())

    for plural, kind in (
        ("workpools", "workpool"),
        ("workqueues", "workqueue"),
        ("workers", "worker"),
        ("flowruns", "flowrun"),
    ):
        names = listed(plural)  # an operator running in the session may add the default queue p-default
        assert {name.split(".")[0] for name in names} == {kind}, (plural, names)
        assert names & mine
    everything = listed(CATEGORY)
    assert mine <= everything
    assert {name.split(".")[0] for name in everything} == {"workpool", "workqueue", "worker", "flowrun"}


def test_the_category_names_no_resource_of_the_cluster(installed: Kubectl) -> None:
    """Not even a built-in one: kubectl would expand the category instead of listing that resource."""
    names: set[str] = set()
    for line in installed("api-resources", "--no-headers", "-o", "wide").splitlines():
        fields = line.split()
        names.add(fields[0].split(".")[0])  # the plural
        kind_at = next(i for i, f in enumerate(fields) if f in {"true", "false"}) + 1  # after NAMESPACED
        names.add(fields[kind_at].lower())  # the singular, as kubectl accepts it
        if kind_at == 4:  # NAME SHORTNAMES APIVERSION NAMESPACED KIND: short names are present
            names.update(fields[1].split(","))
    assert {"workpools", "pods", "wp", "workpool"} <= names  # the parse found ours and the built-ins
    assert CATEGORY not in names
