"""How the transport reads one line of a WATCH stream (`transport._event`).

The watch itself runs against the real API server (tests/integration/test_transport.py); the
ERROR event, which the server sends when the version to resume from was compacted (410 Gone), is
hard to provoke there, and it is what makes the watch start over from a fresh LIST.
"""

from __future__ import annotations

import json

import pytest
from kubernetes.aio.client.exceptions import ApiException

from workpools.client.transport import _event


def test_an_event_is_its_type_and_object() -> None:
    obj = {"metadata": {"name": "a", "resourceVersion": "7"}}
    assert _event(json.dumps({"type": "MODIFIED", "object": obj}).encode() + b"\n") == ("MODIFIED", obj)


def test_a_bookmark_is_an_event_too() -> None:
    line = json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}).encode()
    assert _event(line) == ("BOOKMARK", {"metadata": {"resourceVersion": "9"}})


def test_an_error_event_raises_its_status_code_with_the_server_message() -> None:
    status = {"kind": "Status", "status": "Failure", "message": "too old resource version: 5 (9)", "reason": "Expired"}
    line = json.dumps({"type": "ERROR", "object": {**status, "code": 410}}).encode()
    with pytest.raises(ApiException) as raised:
        _event(line)
    assert raised.value.status == 410
    assert json.loads(raised.value.body)["message"] == "too old resource version: 5 (9)"


def test_a_line_cut_short_is_a_decode_error_which_the_watch_takes_for_a_broken_connection() -> None:
    with pytest.raises(json.JSONDecodeError):
        _event(b'{"type": "ADDED", "object": {"metadata": {"na')
