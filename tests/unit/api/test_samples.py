"""Every sample in examples/ (kubebuilder's `workpools.dev_v1alpha1_<kind>.yaml`) is a valid object of its kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workpools.api import crds

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((ROOT / "examples").glob("workpools.dev_v1alpha1_*.yaml"))


def test_there_is_a_sample_of_every_kind() -> None:
    kinds = {doc["kind"] for path in SAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc}
    # A Worker registers itself when it starts (`workpools worker start`); nobody writes one by hand.
    assert kinds == {model.KIND for model in crds.KINDS} - {"Worker"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_a_sample_parses_as_its_kind(path: Path) -> None:
    models = {model.KIND: model for model in crds.KINDS}
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            meta = doc["metadata"]
            meta.setdefault("name", meta.get("generateName", "") + "x")  # as the API server names it
            models[doc["kind"]].model_validate(doc)
