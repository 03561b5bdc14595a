"""A watch that cannot resume ("410 Gone") lists again, and says what that LIST contains.

The API server sends the 410 only once the version to resume from was compacted, at a moment a
test cannot pick (tests/integration/test_transport.py runs the watch against the real server);
a scripted ApiClient answers here. What is under test: the second LIST's objects come as ADDED
again, and `on_listed` gets each LIST's (namespace, name) pairs, so the consumer can drop what a
LIST no longer contains (controllers/feeders.watch_directly).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from workpools.client.resources import WORKERS
from workpools.client.transport import Transport


def worker(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}, "spec": {"workPool": "p"}}


class Stream:
    """A WATCH answer's body: one line per event, then a read that never returns (a quiet watch)."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        self._lines: Iterator[dict[str, Any]] = iter(lines)
        self.content = self
        self.released = False

    async def readline(self, max_line_length: int = 0) -> bytes:
        line = next(self._lines, None)
        if line is None:
            await asyncio.Event().wait()
        return json.dumps(line).encode() + b"\n"

    def release(self) -> None:
        self.released = True


class Answer:
    def __init__(self, body: dict[str, Any] | None = None, stream: Stream | None = None) -> None:
        self.status, self.reason, self.data, self.response = 200, "", json.dumps(body).encode(), stream

    async def read(self) -> bytes:
        return self.data


class ScriptedApiClient:
    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)

    async def param_serialize(self, **request: Any) -> tuple[Any, ...]:
        return (request["method"], request["resource_path"], dict(request["query_params"]))

    async def call_api(self, *request: Any, **options: Any) -> Answer:
        return self.answers.pop(0)


def test_a_watch_too_old_to_resume_lists_again_and_says_what_each_list_contains() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    broken = Stream([gone])
    api = ScriptedApiClient(
        Answer({"items": [worker("a", "4"), worker("b", "5")], "metadata": {"resourceVersion": "5"}}),
        Answer(stream=broken),
        Answer({"items": [worker("a", "8")], "metadata": {"resourceVersion": "9"}}),  # b deleted in the gap
        Answer(stream=Stream([{"type": "MODIFIED", "object": worker("a", "10")}])),
    )
    lists: list[frozenset[tuple[str, str]]] = []

    async def scenario() -> list[tuple[str, str, str]]:
        events = Transport(api).watch(WORKERS, "ns", on_listed=lists.append)  # type: ignore[arg-type]
        seen = []
        async for kind, body in events:
            seen.append((kind, body["metadata"]["name"], body["metadata"]["resourceVersion"]))
            if kind == "MODIFIED":
                break
        await events.aclose()
        return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert seen == [("ADDED", "a", "4"), ("ADDED", "b", "5"), ("ADDED", "a", "8"), ("MODIFIED", "a", "10")]
    assert lists == [frozenset({("ns", "a"), ("ns", "b")}), frozenset({("ns", "a")})]
    assert broken.released
