"""Manifests as a user writes them, for the integration and e2e tests."""

from __future__ import annotations

from typing import Any

API_VERSION = "workpools.dev/v1alpha1"


def pool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "WorkPool", "metadata": {"name": name}, "spec": spec}


def queue(name: str, pool: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkQueue",
        "metadata": {"name": name},
        "spec": {"workPool": pool, **spec},
    }


def run(name: str, pool: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "FlowRun",
        "metadata": {"name": name},
        "spec": {"workPool": pool, **spec},
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)
