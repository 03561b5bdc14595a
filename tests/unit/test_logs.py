"""workpools.logs: JSON lines that log shippers can parse, and kopf's per-handler chatter kept down."""

from __future__ import annotations

import datetime
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from workpools import logs


def record(
    message: str = "pool %s admitted %d runs",
    args: tuple[Any, ...] = ("etl", 3),
    *,
    level: int = logging.INFO,
    name: str = "workpools.controllers.pools",
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    made.created = datetime.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=datetime.UTC).timestamp()
    made.__dict__.update(extra)
    return made


def formatted(rec: logging.LogRecord) -> dict[str, Any]:
    line = logs.JsonFormatter().format(rec)
    assert len(line.splitlines()) == 1, line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_record_is_one_json_object_with_time_level_logger_and_message() -> None:
    assert formatted(record()) == {
        "time": "2026-01-02T03:04:05.678+00:00",
        "level": "INFO",
        "logger": "workpools.controllers.pools",
        "message": "pool etl admitted 3 runs",
    }


def test_an_exception_is_included_as_its_traceback_text() -> None:
    try:
        raise RuntimeError("the API server went away")
    except RuntimeError:
        entry = formatted(record("reconcile failed", (), level=logging.ERROR, exc_info=sys.exc_info()))
    assert entry["level"] == "ERROR"
    assert entry["message"] == "reconcile failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: the API server went away")


def test_stack_info_is_included_when_asked_for() -> None:
    entry = formatted(record("here", (), stack_info="Stack (most recent call last):\n  File x"))
    assert entry["stack"] == "Stack (most recent call last):\n  File x"
    assert "exception" not in entry


def test_multiline_and_non_ascii_messages_stay_on_one_line() -> None:
    message = 'queue "a→b"\nsecond line\u2028third\ttab'
    assert formatted(record(message, ()))["message"] == message


def test_kopf_object_records_carry_the_object_reference() -> None:
    ref = {"apiVersion": "workpools.dev/v1alpha1", "kind": "WorkPool", "namespace": "ns", "name": "etl", "uid": "u"}
    entry = formatted(record("Handler succeeded.", (), name=logs.KOPF_OBJECTS, k8s_ref=ref, k8s_skip=True))
    assert entry["object"] == {"kind": "WorkPool", "namespace": "ns", "name": "etl"}
    assert entry["message"] == "Handler succeeded."


def test_unserialisable_arguments_are_rendered_not_fatal() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    assert formatted(record("got %r", (Opaque(),)))["message"] == "got <opaque>"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in logs.CHATTY}
    saved = (root.level, root.handlers[:])
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def configured_output(environ: dict[str, str], emit: Any) -> str:
    logs.configure(environ)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream := io.StringIO())
    emit()
    return stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_json_format_writes_parseable_lines_from_every_logger() -> None:
    def emit() -> None:
        logging.getLogger("workpools.controllers.pools").info("pool %s ready", "etl")
        logging.getLogger("kopf.reactor").warning("watch restarted")

    lines = configured_output({"WORKPOOLS_LOG_FORMAT": "json"}, emit).splitlines()
    assert [(e["logger"], e["level"], e["message"]) for e in map(json.loads, lines)] == [
        ("workpools.controllers.pools", "INFO", "pool etl ready"),
        ("kopf.reactor", "WARNING", "watch restarted"),
    ]


@pytest.mark.usefixtures("restore_logging")
def test_text_is_the_default_format() -> None:
    out = configured_output({}, lambda: logging.getLogger("workpools.x").info("hello"))
    assert out.endswith(" INFO workpools.x: hello\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "objects_info_shown", "objects_warning_shown", "own_info_shown"),
    [
        (None, False, True, True),  # default INFO: kopf's per-handler successes hidden, its warnings kept
        ("INFO", False, True, True),
        ("debug", True, True, True),  # DEBUG shows everything, kopf's chatter included
        ("ERROR", False, False, False),  # quieter than WARNING: kopf.objects is not louder than the rest
    ],
)
def test_kopf_and_probe_chatter_is_kept_at_warning_unless_debugging(
    level: str | None, objects_info_shown: bool, objects_warning_shown: bool, own_info_shown: bool
) -> None:
    def emit() -> None:
        logging.getLogger(logs.KOPF_OBJECTS).info("Handler 'workpool_event' succeeded.")
        logging.getLogger("aiohttp.access").info('"GET /healthz HTTP/1.1" 200')
        logging.getLogger(logs.KOPF_OBJECTS).warning("Handler 'workpool_event' failed temporarily.")
        logging.getLogger("workpools.controllers.startup").info("store primed")

    out = configured_output({"WORKPOOLS_LOG_LEVEL": level} if level else {}, emit)
    assert ("succeeded" in out) is objects_info_shown
    assert ("GET /healthz" in out) is objects_info_shown
    assert ("failed temporarily" in out) is objects_warning_shown
    assert ("store primed" in out) is own_info_shown


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WORKPOOLS_LOG_FORMAT": "yaml"}, "WORKPOOLS_LOG_FORMAT must be one of text, json, not 'yaml'"),
        ({"WORKPOOLS_LOG_LEVEL": "LOUD"}, "WORKPOOLS_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_a_bad_setting_fails_at_startup(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        logs.configure(environ)
