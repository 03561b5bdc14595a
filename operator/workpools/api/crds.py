"""Generate `crds/` from the models: `python -m workpools.api.crds [--check] [DIR]`.

The models are the single source of truth; this module turns pydantic's JSON schema into a
structural OpenAPI v3 schema the API server accepts, and adds what JSON schema cannot say
(status subresource, printer columns, short names, the shared category, selectable fields).
`--check` exits 1 when the committed files drift.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import yaml
from kube_custom_resource.schema import remove_fields, resolve_refs

from workpools.api.base import Resource
from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import FlowSchedule
from workpools.api.meta import CATEGORY, GROUP, VERSION
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue

KINDS: tuple[type[Resource], ...] = (WorkPool, WorkQueue, Worker, FlowRun, FlowSchedule)

Schema = dict[str, Any]


def _structural(node: Schema) -> Schema:
    """Rewrite the JSON-schema idioms pydantic emits into their structural CRD equivalents."""
    node = dict(node)
    any_of = node.get("anyOf")
    if any_of is not None and {"type": "null"} in any_of:
        # `X | None` → X with nullable: true (CRD schemas have no null type).
        (inner,) = [s for s in any_of if s != {"type": "null"}]
        del node["anyOf"]
        node = {**inner, **node, "nullable": True}
    if node.get("additionalProperties") is True:
        # A free-form object (dict[str, Any]) keeps whatever the user put in it.
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("required") == []:
        del node["required"]
    return node


def _walk(node: Schema, fn: Callable[[Schema], Schema]) -> Schema:
    node = fn(node)
    if "properties" in node:
        node["properties"] = {k: _walk(v, fn) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _walk(node["items"], fn)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _walk(node["additionalProperties"], fn)
    return node


def custom_resource_definition(model: type[Resource]) -> Schema:
    """The CRD of one kind, as a dict ready to apply."""
    # Refs inlined, titles dropped, and defaults too: a schema default would make the API server
    # rewrite stored objects; the models apply their defaults when they parse.
    schema = remove_fields(resolve_refs(model.model_json_schema()), "title", "default")  # type: ignore[no-untyped-call]
    envelope = ("apiVersion", "kind", "metadata")  # the API server owns their schema
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in envelope}
    schema["required"] = [k for k in schema.get("required", []) if k not in envelope]
    schema = _walk(schema, _structural)
    version: Schema = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
        # AGE ends the default columns; the `-o wide` ones (priority 1) come after it, as for pods.
        "additionalPrinterColumns": [
            *(c for c in model.PRINTER_COLUMNS if not c.get("priority")),
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            *(c for c in model.PRINTER_COLUMNS if c.get("priority")),
        ],
    }
    if model.SELECTABLE_FIELDS:
        version["selectableFields"] = [{"jsonPath": path} for path in model.SELECTABLE_FIELDS]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{model.PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": model.KIND,
                "singular": model.KIND.lower(),
                "plural": model.PLURAL,
                "shortNames": list(model.SHORT_NAMES),
                "categories": [CATEGORY],
            },
            "versions": [version],
        },
    }


def render() -> dict[str, str]:
    """File name → YAML text, for every file in `crds/` (the CRDs and their kustomization)."""
    files = {}
    for crd in map(custom_resource_definition, KINDS):
        name = f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"
        header = "# Generated from operator/workpools/api by `python -m workpools.api.crds`. Do not edit.\n"
        files[name] = header + yaml.safe_dump(crd, sort_keys=False, allow_unicode=True, width=120)
    files["kustomization.yaml"] = yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": sorted(n for n in files),
        },
        sort_keys=False,
    )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", nargs="?", default="crds", type=pathlib.Path)
    parser.add_argument("--check", action="store_true", help="fail if the directory differs from the models")
    args = parser.parse_args(argv)
    wanted = render()
    present = {p.name: p.read_text() for p in args.directory.glob("*.yaml")} if args.directory.is_dir() else {}
    if args.check:
        drift = sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
        if drift:
            print(
                f"crds/ is out of date with the models ({', '.join(drift)}); "
                "run `python -m workpools.api.crds` and commit the result",
                file=sys.stderr,
            )
            return 1
        return 0
    args.directory.mkdir(parents=True, exist_ok=True)
    for stale in present.keys() - wanted.keys():
        (args.directory / stale).unlink()
    for name, text in wanted.items():
        (args.directory / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
