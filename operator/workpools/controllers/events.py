"""Events the operator posts on the objects it reconciles (pools, queues, runs, schedules)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from workpools.api.base import Resource
from workpools.api.meta import API_VERSION
from workpools.client import errors, events
from workpools.core.statuses import Event

if TYPE_CHECKING:
    from workpools.controllers.runtime import Runtime

FIELD_MANAGER = "workpools-operator"
"""Field manager of every write the operator makes; managedFields show exactly what it owns."""

logger = logging.getLogger(__name__)


async def post_event(rt: Runtime, obj: Resource, event: Event) -> None:
    """Post `event` on `obj` as this operator instance; a failure is logged, never raised."""
    meta = obj.metadata
    try:
        await events.post_event(
            rt.transport,
            api_version=API_VERSION,
            kind=obj.KIND,
            namespace=meta.namespace or "",
            name=meta.name,
            uid=meta.uid,
            type=event.type.value,
            reason=event.reason,
            message=event.message,
            component=FIELD_MANAGER,
            instance=rt.instance,
            now=rt.clock(),
        )
    except errors.WorkpoolsError as error:
        # An event is information, not state: losing one must never block reconciliation.
        logger.warning("could not post event %s on %s/%s: %s", event.reason, meta.namespace, meta.name, error)
