"""Leader election on a coordination.k8s.io Lease: only the holder runs the operator.

The algorithm is client-go's: a candidate takes the Lease when it is missing, or when its record
has not changed for `lease_seconds` as measured on the candidate's own clock (never trusting
another machine's timestamps); the holder renews it every `retry_seconds` and gives up (stopping
its work) when it cannot renew for `renew_seconds`. Since `renew_seconds < lease_seconds`, the
old leader has stopped before anyone may take over: two admitters never act at once.

(kubernetes.aio ships a leader election too, but in kubernetes 37.0.2 its LeaseLock passes
`pretty=True` where the generated client now requires a string, so creating the Lease fails.)
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from workpools.client.transport import Transport

logger = logging.getLogger(__name__)


@dataclass
class Election:
    transport: Transport
    namespace: str
    lease: str
    identity: str
    lease_seconds: int = 15
    renew_seconds: float = 10
    retry_seconds: float = 2
    _observed: tuple[Any, ...] = ()
    _observed_at: float = 0.0

    async def lead(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait to be elected, run `work` while leading; return when it ends or leadership is lost."""
        while True:  # a follower: try again every retry period until elected
            if await self._try_acquire_or_renew():
                break
            await asyncio.sleep(self.retry_seconds)
        logger.info("%s holds Lease %s/%s: operating", self.identity, self.namespace, self.lease)
        working = asyncio.create_task(work(), name="leading")
        try:
            while not working.done():
                done, _ = await asyncio.wait([working], timeout=self.retry_seconds)
                if not done and not await self._renew_within_deadline():
                    logger.error(
                        "%s could not renew its Lease for %ss: stepping down", self.identity, self.renew_seconds
                    )
                    return
        finally:
            working.cancel()
            await asyncio.gather(working, return_exceptions=True)

    async def _renew_within_deadline(self) -> bool:
        deadline = time.monotonic() + self.renew_seconds
        while time.monotonic() < deadline:
            try:
                if await self._try_acquire_or_renew():
                    return True
            except Exception:  # an unreachable API server is retried until the deadline
                logger.warning("renewing the Lease failed", exc_info=True)
            await asyncio.sleep(self.retry_seconds)
        return False

    async def _try_acquire_or_renew(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        lease = await self.transport.read_lease(self.namespace, self.lease)
        mine = {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds, "renewTime": now}
        if lease is None:
            return await self.transport.write_lease(
                self.namespace, self.lease, {**mine, "acquireTime": now, "leaseTransitions": 0}, resource_version=None
            )
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:  # it changed: its holder is alive (or it changed hands)
            self._observed, self._observed_at = record, time.monotonic()
        holder = spec.get("holderIdentity")
        version = lease["metadata"]["resourceVersion"]
        if holder == self.identity:
            return await self.transport.write_lease(
                self.namespace, self.lease, {**spec, **mine}, resource_version=version
            )
        if holder and time.monotonic() - self._observed_at < self.lease_seconds:
            return False  # someone else leads and renews
        transitions = (spec.get("leaseTransitions") or 0) + 1
        return await self.transport.write_lease(
            self.namespace,
            self.lease,
            {**mine, "acquireTime": now, "leaseTransitions": transitions},
            resource_version=version,
        )
