"""The README's quick start, as a new user runs it: the demo on a fresh local control plane."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(bool(os.environ.get("KUBECONFIG")), reason="the demo's fresh-machine path has no KUBECONFIG")
def test_the_demo_runs_every_run_to_completion_within_the_limits(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["WORKPOOLS_DEVCLUSTER_DIR"] = str(tmp_path / "demo")
    try:
        result = subprocess.run(
            ["bash", "tools/demo.sh", "up", "--quiet", "--stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        subprocess.run(["bash", "tools/demo.sh", "down"], cwd=ROOT, env=env, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "== summary: 30/30 runs completed" in out
    for line in ("demo             4 / 4   ok", "demo-critical    2 / 2   ok", "demo-batch       1 / 1   ok"):
        assert line in out
    assert "EXCEEDED" not in out
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == "", "the demo left processes behind"
