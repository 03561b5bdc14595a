"""A 429 (Too Many Requests) is sent again after the server's Retry-After, as client-go does.

The API server answers 429 before processing a request (API priority and fairness, or a watch
cache still initializing right after a CRD was installed: "storage is (re)initializing"); the
real server gives it only in moments that a test cannot pick, so a scripted ApiClient answers here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from workpools.client import errors, transport
from workpools.client.resources import WORKPOOLS
from workpools.client.transport import Transport


class Answer:
    def __init__(self, status: int, body: dict[str, Any], retry_after: str | None = None) -> None:
        self.status, self.data = status, json.dumps(body).encode()
        self.reason, self.headers = "", {"Retry-After": retry_after} if retry_after else {}

    async def read(self) -> bytes:
        return self.data

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def getheaders(self) -> dict[str, str]:
        return self.headers


class ScriptedApiClient:
    def __init__(self, *answers: Answer) -> None:
        self.answers, self.calls = list(answers), 0

    async def param_serialize(self, **request: Any) -> tuple[Any, ...]:
        return (request["method"], request["resource_path"])

    async def call_api(self, *request: Any, **options: Any) -> Answer:
        self.calls += 1
        return self.answers.pop(0)


BUSY = {"kind": "Status", "code": 429, "message": "storage is (re)initializing", "reason": "TooManyRequests"}
POOL = {"apiVersion": "workpools.dev/v1alpha1", "kind": "WorkPool", "metadata": {"name": "p"}}


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "TOO_MANY_REQUESTS_PAUSES", (0.0, 0.0, 0.0))


def test_a_read_answered_429_is_sent_again_until_it_is_served() -> None:
    api = ScriptedApiClient(Answer(429, BUSY, retry_after="1"), Answer(429, BUSY), Answer(200, POOL))
    got = asyncio.run(Transport(api).get(WORKPOOLS, "ns", "p"))  # type: ignore[arg-type]
    assert (got["metadata"]["name"], api.calls) == ("p", 3)


def test_429_for_longer_than_the_pauses_is_the_callers_error() -> None:
    api = ScriptedApiClient(*(Answer(429, BUSY) for _ in range(3)))
    with pytest.raises(errors.WorkpoolsError, match="storage is"):
        asyncio.run(Transport(api).get(WORKPOOLS, "ns", "p"))  # type: ignore[arg-type]
    assert api.calls == 3
