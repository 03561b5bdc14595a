"""Leader election (client/leadership.py) with a scripted Lease store in place of the API server.

Aspects: a leader whose renewals hang stops its work, and its writes are fenced, before the Lease
may pass on (measured on the monotonic clock, whatever its requests are doing); a leader frozen and
resumed past its Lease writes nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from workpools.client import errors
from workpools.client.leadership import Election
from workpools.client.transport import WRITE_FENCE, WRITE_TIMEOUT


class LeaseStore:
    """One Lease in memory; `hang` makes every later request wait for ever (a dead connection)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.hang = False

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.Event().wait()

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._maybe_hang()
        return None if self.lease is None else {"metadata": {"resourceVersion": str(self.version)}, **self.lease}

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], *, resource_version: str | None
    ) -> bool:
        await self._maybe_hang()
        self.version += 1
        self.lease = {"spec": spec}
        return True


def election(store: LeaseStore, renew: float = 0.5) -> Election:
    return Election(
        store,  # type: ignore[arg-type]
        namespace="ns",
        lease="l",
        identity="me",
        lease_seconds=int(renew + WRITE_TIMEOUT) + 1,
        renew_seconds=renew,
        retry_seconds=0.1,
    )


def test_a_leader_whose_renewals_hang_stops_and_is_fenced_within_its_renew_deadline() -> None:
    store = LeaseStore()
    leader = election(store)
    stopped_at: list[float] = []

    async def work() -> None:
        # The operator's writes, each checking the fence first, until it refuses or we are cancelled.
        try:
            while True:
                fence = WRITE_FENCE.get()
                assert fence is not None
                fence()
                await asyncio.sleep(0.01)
        finally:
            stopped_at.append(time.monotonic())

    async def scenario() -> float:
        leading = asyncio.create_task(leader.lead(work))
        await asyncio.sleep(0.3)
        store.hang = True  # the API server stops answering: renewals hang, not fail
        hung_at = time.monotonic()
        await asyncio.wait_for(leading, timeout=5)
        return hung_at

    hung_at = asyncio.run(scenario())
    assert stopped_at, "the work was never stopped"
    assert stopped_at[0] - hung_at <= leader.renew_seconds + 0.2  # long before lease_seconds
    with pytest.raises(errors.Fenced):
        leader.check_fence()


def test_a_leader_frozen_past_its_deadline_writes_nothing_when_it_resumes() -> None:
    store = LeaseStore()
    leader = election(store)
    wrote: list[str] = []

    async def work() -> None:
        time.sleep(leader.renew_seconds + 0.1)  # frozen (SIGSTOP): no task ran, no renewal happened  # noqa: ASYNC251
        fence = WRITE_FENCE.get()
        assert fence is not None
        fence()  # raises: the first thing it does after resuming is refused
        wrote.append("grant")

    asyncio.run(leader.lead(work))
    assert wrote == []


def test_the_renew_deadline_leaves_room_for_the_last_write_before_the_lease_may_pass_on() -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        Election(None, namespace="ns", lease="l", identity="me", lease_seconds=10, renew_seconds=8)  # type: ignore[arg-type]
