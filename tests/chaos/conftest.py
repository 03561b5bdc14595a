"""Every test here is marked `chaos`: each starts its own control plane (never the session's) and
injects faults with Toxiproxy (tools/toxiproxy/build.sh builds it on first use)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a scenario's table past pytest's capture: CI logs must show it, pass or fail."""

    def show(table: str) -> None:
        with capsys.disabled():
            print("\n" + table, flush=True)

    return show
