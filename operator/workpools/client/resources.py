"""Where each of our kinds lives in the API (from api/meta's names: no model is imported, so a
command that reads one kind does not pay for building every model's schema)."""

from __future__ import annotations

from workpools.api import meta
from workpools.client.transport import ResourceType


def resource_type(kind: meta.Kind) -> ResourceType:
    return ResourceType(meta.GROUP, meta.VERSION, kind.plural, kind.kind)


WORKPOOLS = resource_type(meta.WORKPOOL)
WORKQUEUES = resource_type(meta.WORKQUEUE)
WORKERS = resource_type(meta.WORKER)
FLOWRUNS = resource_type(meta.FLOWRUN)
FLOWSCHEDULES = resource_type(meta.FLOWSCHEDULE)
