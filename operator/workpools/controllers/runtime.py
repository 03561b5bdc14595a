"""What the handlers share for the operator's lifetime, built once at startup."""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from workpools.api.meta import ObjectKey
from workpools.cache.schedules import ScheduleStore
from workpools.cache.store import Store
from workpools.cache.wakeups import Wakeups
from workpools.client.transport import Transport
from workpools.clock import utc_now

FIELD_MANAGER = "workpools-operator"
"""Field manager of every write the operator makes; managedFields show exactly what it owns."""


@dataclass
class Runtime:
    transport: Transport
    store: Store
    wakeups: Wakeups
    clock: Callable[[], datetime.datetime] = utc_now
    deadlines: dict[ObjectKey, datetime.datetime] = field(default_factory=dict)
    """Per pool, the next moment time alone changes it (set by each pass, read by the timer)."""
    schedules: ScheduleStore = field(default_factory=ScheduleStore)
    schedule_wakeups: Wakeups | None = None
    """Per-schedule serial reconciliation (controllers/schedules.py); set at startup."""
    schedule_deadlines: dict[ObjectKey, datetime.datetime] = field(default_factory=dict)
    """Per schedule, its next scheduled time (read by the timer)."""
    instance: str = field(default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname())
