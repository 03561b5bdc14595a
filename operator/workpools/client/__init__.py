"""The client library: typed, async access to pools, queues, workers and runs.

    from workpools.client import WorkpoolsClient, errors

    async with await WorkpoolsClient.connect(namespace="team-a") as client:
        await client.heartbeat("etl", "worker-1", interval=10)

`transport.py` is the only module that imports the kubernetes client; everything above it
speaks our models and our errors (`errors.py`). `errors` is plain Python; `Heartbeat` and
`WorkpoolsClient` are imported on first use, so that `from workpools.client import errors`
(the CLI's parser does it) costs no kubernetes client, aiohttp or pydantic import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from workpools.client import errors

if TYPE_CHECKING:
    from workpools.client.heartbeats import Heartbeat
    from workpools.client.workpools import WorkpoolsClient

__all__ = ["Heartbeat", "WorkpoolsClient", "errors"]

_LAZY = {"Heartbeat": "workpools.client.heartbeats", "WorkpoolsClient": "workpools.client.workpools"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
