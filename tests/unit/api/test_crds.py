"""The committed crds/ are exactly what the models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workpools.api import crds

ROOT = Path(__file__).resolve().parents[3]


def test_committed_crds_match_the_models() -> None:
    assert crds.main([str(ROOT / "crds"), "--check"]) == 0, "run `python -m workpools.api.crds` and commit crds/"


def test_drift_is_detected(tmp_path: Path) -> None:
    crds.main([str(tmp_path)])
    first = next(tmp_path.glob("workpools.dev_*.yaml"))
    first.write_text(first.read_text().replace("maxLength: 1024", "maxLength: 2048"))
    assert crds.main([str(tmp_path), "--check"]) == 1


def _nodes(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [schema]
    for child in schema.get("properties", {}).values():
        found += _nodes(child)
    if isinstance(schema.get("items"), dict):
        found += _nodes(schema["items"])
    return found


@pytest.mark.parametrize(
    "crd",
    crds.KINDS and [crds.custom_resource_definition(k) for k in crds.KINDS],
    ids=lambda crd: crd["spec"]["names"]["kind"],
)
def test_schemas_use_only_structural_openapi(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for node in _nodes(schema):
        assert not {"$ref", "$defs", "anyOf", "allOf", "oneOf", "const", "title", "uniqueItems"} & node.keys(), node
        assert node.get("additionalProperties") is not True, node
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), node


def test_every_kind_shares_the_category_and_has_a_status_subresource() -> None:
    for kind in crds.KINDS:
        crd = crds.custom_resource_definition(kind)
        assert crd["spec"]["names"]["categories"] == ["workpools-all"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
        assert crd["spec"]["names"]["shortNames"]


def test_the_category_is_no_kinds_name() -> None:
    # kubectl expands a category before it resolves a resource name: a category named like a
    # plural would make `kubectl get <plural>` list every kind (issue 15).
    names = set()
    for kind in crds.KINDS:
        crd_names = crds.custom_resource_definition(kind)["spec"]["names"]
        names |= {crd_names["plural"], crd_names["singular"], crd_names["kind"].lower(), *crd_names["shortNames"]}
    assert crds.CATEGORY not in names


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda kind: kind.KIND)
def test_age_ends_the_default_columns_and_wide_ones_say_why(kind: Any) -> None:
    columns = crds.custom_resource_definition(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [c["name"] for c in columns if not c.get("priority")]
    wide = [c["name"] for c in columns if c.get("priority")]
    assert default[-1] == "Age"
    assert [c["name"] for c in columns] == default + wide
    assert wide[-1] == "Message"  # the Ready condition's message, or a run's status.message


def test_no_date_column_shows_a_time_that_may_be_in_the_future() -> None:
    # kubectl prints a future time in a `date` column as <invalid>: runs are often scheduled ahead.
    columns = crds.custom_resource_definition(crds.FlowRun)["spec"]["versions"][0]["additionalPrinterColumns"]
    scheduled = next(c for c in columns if c["name"] == "Scheduled")
    assert scheduled["type"] == "string"
