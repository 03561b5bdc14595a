"""`python -m workpools` (or `workpools-operator`): run the operator.

Serves every namespace, or those in $WORKPOOLS_NAMESPACES (comma-separated). The liveness and
readiness endpoint is http://0.0.0.0:8080/healthz (override with $WORKPOOLS_HEALTH_ENDPOINT);
Prometheus metrics are on port 9090 ($WORKPOOLS_METRICS_PORT, 0 = off). With
WORKPOOLS_LEADER_ELECTION=true, replicas elect one leader through a Lease and only it operates.
Logs are text, or JSON lines with WORKPOOLS_LOG_FORMAT=json; the level is $WORKPOOLS_LOG_LEVEL
(see workpools.logs).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import kopf

import workpools.controllers  # noqa: F401  (importing registers the handlers)
from workpools import logs
from workpools.client.leadership import Election
from workpools.client.transport import Transport
from workpools.controllers import metrics
from workpools.controllers.runtime import deletion_budget
from workpools.controllers.scope import Scope

LEADER_ELECTION_ENV = "WORKPOOLS_LEADER_ELECTION"
LEASE_NAME = "workpools-operator"
LEASE_ENV = "WORKPOOLS_LEASE_NAME"
"""Lease name override: instances sharded by namespace each elect their own leader."""

AGAIN_FIRST, AGAIN_MAX, AGAIN_RESET = 1.0, 30.0, 60.0
"""Pause before kopf is started again after a response cut mid-body: doubling from the first to the
most, back to the first after a run that lasted the reset's seconds."""

logger = logging.getLogger(__name__)


def main() -> None:
    try:
        logs.configure(os.environ)
        deletion_budget(os.environ)  # a bad rate stops the operator here, with a message
    except ValueError as error:
        raise SystemExit(f"workpools-operator: {error}") from None
    if port := int(os.environ.get(metrics.PORT_ENV, "9090")):
        metrics.serve(port)  # from the start, so a standby replica answers its liveness probe too
    scope = Scope.from_environment()
    operate = functools.partial(
        kopf.operator,
        standalone=True,  # kopf's peering only pauses; exclusivity comes from the Lease below
        clusterwide=scope.clusterwide,
        namespaces=scope.namespaces,
        liveness_endpoint=os.environ.get("WORKPOOLS_HEALTH_ENDPOINT", "http://0.0.0.0:8080/healthz"),
    )
    if os.environ.get(LEADER_ELECTION_ENV, "").lower() in ("1", "true", "yes"):
        asyncio.run(lead(operate))
        # Leadership ended (or was never safe to keep): exit, so the pod restarts as a follower.
        raise SystemExit(1)
    operate_until_done(operate)


def operate_until_done(operate: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the operator; start it again, after a pause, if it stopped on a response cut off mid-body.

    kopf retries a request that fails, but not a response body that breaks off while it is read
    (its API discovery at start-up, `kopf._cogs.clients.api.get`): the error ends `kopf.operator`.
    Starting again in-process is what a pod restart would do (everything is read afresh, as after
    any restart), without a crash in the pod's history for one reset connection.
    """
    pause = AGAIN_FIRST
    while True:
        began = time.monotonic()
        try:
            asyncio.run(operate())
        except aiohttp.ClientPayloadError as error:
            if time.monotonic() - began >= AGAIN_RESET:
                pause = AGAIN_FIRST
            logger.warning("stopped on a response cut off mid-body (%s); starting again in %.0fs", error, pause)
            time.sleep(pause)
            pause = min(AGAIN_MAX, 2 * pause)
        else:
            return


async def lead(operate: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the operator only while holding the Lease workpools-system/workpools-operator."""
    transport = await Transport.connect()
    try:
        election = Election(
            transport,
            namespace=os.environ.get("POD_NAMESPACE") or transport.namespace,
            lease=os.environ.get(LEASE_ENV) or LEASE_NAME,
            identity=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        )
        await election.lead(operate)
    finally:
        await transport.close()


if __name__ == "__main__":
    main()
