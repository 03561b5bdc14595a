"""The generated CRDs on a real API server: accepted, documented, and listed together."""

from __future__ import annotations

from tests.support.kube import Kubectl
from tests.support.waiting import wait_for


def test_crds_are_established_with_their_short_names(installed: Kubectl) -> None:
    names = installed("get", "crd", "-o", "name")
    for plural in ("workpools", "workqueues", "workers", "flowruns"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{plural}.workpools.dev" in names
    resources = installed("api-resources", "--api-group=workpools.dev", "-o", "wide")
    for short in ("wp", "wq", "wkr", "fr"):
        assert f" {short} " in resources


def test_kubectl_explain_shows_the_field_docs(installed: Kubectl) -> None:
    # The API server publishes a new CRD's OpenAPI a few seconds after it is established.
    spec = wait_for(lambda: installed("explain", "workpool.spec", check=False), what="OpenAPI for WorkPool")
    assert "concurrencyLimit" in spec
    assert "Maximum runs holding a slot at once; null or absent means unlimited." in spec
    field = installed("explain", "workqueue.spec.priority")
    assert "Lower runs first" in field


def test_one_category_lists_all_four_kinds(installed: Kubectl, namespace: str) -> None:
    installed.apply(
        {
            "apiVersion": "workpools.dev/v1alpha1",
            "kind": "WorkPool",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"paused": True},
        }
    )
    listed = installed("get", "workpools", "-n", namespace, "-o", "name")
    assert "workpool.workpools.dev/p" in listed
