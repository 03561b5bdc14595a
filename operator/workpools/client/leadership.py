"""Leader election on a coordination.k8s.io Lease: only the holder runs the operator.

The algorithm is client-go's: a candidate takes the Lease when it is missing, or when its record
has not changed for `lease_seconds` as measured on the candidate's own clock (never trusting
another machine's timestamps); the holder renews it every `retry_seconds` and gives up (stopping
its work) when it cannot renew for `renew_seconds`. Since `renew_seconds < lease_seconds`, the
old leader has stopped before anyone may take over: two admitters never act at once.

"Stopped" must hold whatever the leader's requests are doing (hung on a dead connection, or the
whole process frozen and resumed): every write of the work it runs first checks a fence
(`transport.WRITE_FENCE`) that closes `renew_seconds` after the start of the last successful
renewal, on the monotonic clock; writes time out after `transport.WRITE_TIMEOUT`, and
`renew_seconds + WRITE_TIMEOUT <= lease_seconds`, so the last write is over before a successor
may start.

(kubernetes.aio ships a leader election too, but in kubernetes 37.0.2 its LeaseLock passes
`pretty=True` where the generated client now requires a string, so creating the Lease fails.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from workpools.client import errors
from workpools.client.transport import WRITE_FENCE, WRITE_TIMEOUT, Transport
from workpools.clock import utc_now

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
    _renewed_at: float = float("-inf")
    """Monotonic time at which the last successful acquisition or renewal started."""

    def __post_init__(self) -> None:
        if self.renew_seconds + WRITE_TIMEOUT > self.lease_seconds:
            raise ValueError("renew_seconds + the write timeout must not exceed lease_seconds")

    @property
    def valid_until(self) -> float:
        """Monotonic time after which this process may no longer act as the leader."""
        return self._renewed_at + self.renew_seconds

    def check_fence(self) -> None:
        """Raise `Fenced` once leadership may have passed on (installed as the work's write fence)."""
        if time.monotonic() >= self.valid_until:
            raise errors.Fenced(f"{self.identity} no longer holds Lease {self.namespace}/{self.lease}")

    async def lead(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait to be elected, run `work` while leading; return when it ends or leadership is lost."""
        while True:  # a follower: try again every retry period until elected
            with contextlib.suppress(errors.WorkpoolsError):
                if await self._try_acquire_or_renew():
                    break
            await asyncio.sleep(self.retry_seconds)
        logger.info("%s holds Lease %s/%s: operating", self.identity, self.namespace, self.lease)
        fence = WRITE_FENCE.set(self.check_fence)  # the work's tasks inherit it
        try:
            working = asyncio.create_task(work(), name="leading")
        finally:
            WRITE_FENCE.reset(fence)
        try:
            while not working.done():
                left = self.valid_until - time.monotonic()
                if left <= 0:
                    logger.error(
                        "%s could not renew its Lease for %ss: stepping down", self.identity, self.renew_seconds
                    )
                    return
                done, _ = await asyncio.wait([working], timeout=min(self.retry_seconds, left))
                if not done and time.monotonic() < self.valid_until:
                    await self._renew_before(self.valid_until)
        finally:
            working.cancel()
            await asyncio.gather(working, return_exceptions=True)

    async def _renew_before(self, deadline: float) -> None:
        """One renewal attempt, abandoned at `deadline` (a hung request must not keep us leading)."""
        try:
            await asyncio.wait_for(self._try_acquire_or_renew(), timeout=max(0.0, deadline - time.monotonic()))
        except (TimeoutError, errors.WorkpoolsError) as error:  # retried until the deadline passes
            logger.warning("renewing the Lease failed: %s", error or type(error).__name__)

    async def _try_acquire_or_renew(self) -> bool:
        started = time.monotonic()
        now = utc_now()
        lease = await self.transport.read_lease(self.namespace, self.lease)
        mine = {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds, "renewTime": now}
        if lease is None:
            return self._won(
                started,
                await self.transport.write_lease(
                    self.namespace,
                    self.lease,
                    {**mine, "acquireTime": now, "leaseTransitions": 0},
                    resource_version=None,
                ),
            )
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:  # it changed: its holder is alive (or it changed hands)
            self._observed, self._observed_at = record, time.monotonic()
        holder = spec.get("holderIdentity")
        version = lease["metadata"]["resourceVersion"]
        if holder == self.identity:
            return self._won(
                started,
                await self.transport.write_lease(
                    self.namespace, self.lease, {**spec, **mine}, resource_version=version
                ),
            )
        if holder and time.monotonic() - self._observed_at < self.lease_seconds:
            return False  # someone else leads and renews
        transitions = (spec.get("leaseTransitions") or 0) + 1
        return self._won(
            started,
            await self.transport.write_lease(
                self.namespace,
                self.lease,
                {**mine, "acquireTime": now, "leaseTransitions": transitions},
                resource_version=version,
            ),
        )

    def _won(self, started: float, written: bool) -> bool:
        if written:
            self._renewed_at = started
        return written
