"""The loop end to end: apply a WorkPool, the operator writes its status, kubectl shows it."""

from __future__ import annotations

from tests.support.kube import Kubectl
from tests.support.objects import pool
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for


def test_applied_pool_gets_status_and_printer_columns(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    installed.apply(pool("etl", type="process", concurrencyLimit=3), namespace=namespace)

    status = wait_for(
        lambda: (
            installed.get("wp", "etl", namespace).get("status", {}).get("phase")
            and installed.get("wp", "etl", namespace)["status"]
        ),
        what="the pool's status",
    )
    assert status["phase"] == "NotReady"
    assert status["observedGeneration"] == 1
    assert status["defaultQueue"] == "etl-default"
    assert status["slots"] == {"active": 0, "limit": 3, "open": 3, "summary": "0/3"}

    table = installed("get", "wp", "etl", "-n", namespace)
    header, row = table.splitlines()
    assert header.split() == ["NAME", "TYPE", "STATUS", "WORKERS", "SLOTS", "QUEUES", "AGE"]
    assert row.split()[:6] == ["etl", "process", "NotReady", "0", "0/3", "1"]
