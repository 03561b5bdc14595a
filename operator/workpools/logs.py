"""The operator's logging: human-readable text (the default) or one JSON object per line.

    WORKPOOLS_LOG_FORMAT=text|json   (default text)
    WORKPOOLS_LOG_LEVEL=DEBUG|INFO|WARNING|ERROR   (default INFO)

kopf logs every handler success on `kopf.objects` at INFO, and the health endpoint logs every
probe on `aiohttp.access`; that chatter is kept at WARNING unless the level is DEBUG.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from typing import Any

FORMAT_ENV = "WORKPOOLS_LOG_FORMAT"
LEVEL_ENV = "WORKPOOLS_LOG_LEVEL"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KOPF_OBJECTS = "kopf.objects"
"""kopf's per-object logger (one INFO line per successful handler call)."""
CHATTY = (KOPF_OBJECTS, "aiohttp.access")
"""Loggers kept at WARNING unless debugging: kopf's handler successes, one line per probe request."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message; exception and stack when present.

    Records from kopf's per-object logger also carry `object` (kind, namespace, name). The output is
    ASCII (non-ASCII characters escaped), so a record is always exactly one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, Mapping):
            entry["object"] = {key: ref[key] for key in ("kind", "namespace", "name") if ref.get(key)}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # cached on the record, as logging does
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, not {log_format!r}")


def configure(environ: Mapping[str, str]) -> None:
    """Set up the root logger from the environment; a bad value fails here, before anything runs."""
    level = (environ.get(LEVEL_ENV) or "INFO").strip().upper()
    if level not in LEVELS:
        raise ValueError(f"{LEVEL_ENV} must be one of {', '.join(LEVELS)}, not {level!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter((environ.get(FORMAT_ENV) or "text").strip().lower()))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Every handler success and every probe request are noise at INFO; warnings and errors still show.
    quieter = max(logging.WARNING, logging.getLevelNamesMapping()[level])
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else quieter)
