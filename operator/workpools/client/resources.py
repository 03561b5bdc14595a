"""Where each of our kinds lives in the API, derived from the models."""

from __future__ import annotations

from workpools.api.base import Resource
from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import FlowSchedule
from workpools.api.meta import GROUP, VERSION
from workpools.api.worker import Worker
from workpools.api.workpool import WorkPool
from workpools.api.workqueue import WorkQueue
from workpools.client.transport import ResourceType


def resource_type(model: type[Resource]) -> ResourceType:
    return ResourceType(GROUP, VERSION, model.PLURAL, model.KIND)


WORKPOOLS = resource_type(WorkPool)
WORKQUEUES = resource_type(WorkQueue)
WORKERS = resource_type(Worker)
FLOWRUNS = resource_type(FlowRun)
FLOWSCHEDULES = resource_type(FlowSchedule)
