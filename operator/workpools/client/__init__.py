"""The client library: typed, async access to pools, queues, workers and runs.

    from workpools.client import WorkpoolsClient, errors

    async with await WorkpoolsClient.connect(namespace="team-a") as client:
        await client.heartbeat("etl", "worker-1", interval=10)

`transport.py` is the only module that imports the kubernetes client; everything above it
speaks our models and our errors (`errors.py`).
"""

from workpools.client import errors
from workpools.client.heartbeats import Heartbeat
from workpools.client.workpools import WorkpoolsClient

__all__ = ["Heartbeat", "WorkpoolsClient", "errors"]
