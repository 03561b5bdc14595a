"""Names that identify the API: group, version, kinds, the shared category and object keys."""

from __future__ import annotations

from typing import NamedTuple

GROUP = "workpools.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: `kubectl get workpools-all` lists all four kinds at once. The category is named so that it is no
#: kind's plural, singular or short name, ours or a built-in one: kubectl expands a category before
#: it resolves a resource, so a category called `workpools` made `kubectl get workpools` list all four.
CATEGORY = "workpools-all"

#: Names of Kubernetes objects that also appear in label values are capped at 63 characters.
NAME_MAX = 63
#: A pool's default queue is `<pool>-default`, so a pool name leaves room for the suffix.
DEFAULT_QUEUE_SUFFIX = "-default"
POOL_NAME_MAX = NAME_MAX - len(DEFAULT_QUEUE_SUFFIX)

HEARTBEAT_INTERVAL_DEFAULT = 30
"""Prefect's default heartbeat interval (seconds), used when spec.heartbeatIntervalSeconds is absent."""


#: The label a FlowSchedule puts on the runs it creates, naming itself: the runs of one schedule
#: for a late policy's `skipToLatest` (core/late.py).
SCHEDULE_LABEL = f"{GROUP}/schedule"


class Kind(NamedTuple):
    """A kind of ours and its plural: the one place they are spelled (the models and the client's
    resource types take them from here, so the client needs no model to build a URL)."""

    kind: str
    plural: str


WORKPOOL = Kind("WorkPool", "workpools")
WORKQUEUE = Kind("WorkQueue", "workqueues")
WORKER = Kind("Worker", "workers")
FLOWRUN = Kind("FlowRun", "flowruns")
FLOWSCHEDULE = Kind("FlowSchedule", "flowschedules")


class ObjectKey(NamedTuple):
    """Where an object lives; the one way to key objects in maps and logs."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def default_queue_name(pool: str) -> str:
    return f"{pool}{DEFAULT_QUEUE_SUFFIX}"
