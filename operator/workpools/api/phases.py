"""The enumerations stored in status fields (phases, condition status): standard library only.

The CLI offers them as argument choices without importing pydantic or the models. `CrdEnum` is
the enum base the models' schemas expect: a member prints as its value, and its JSON schema has
no title (as `kube_custom_resource.schema.Enum`, which the models used before).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import GetJsonSchemaHandler
    from pydantic_core import CoreSchema


class CrdEnum(enum.Enum):
    """An enum whose values are stored as they are; its schema is the values alone (no title)."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        json_schema = handler.resolve_ref_schema(handler(core_schema))
        json_schema.pop("title", None)
        return json_schema


class ConditionStatus(str, CrdEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class PoolPhase(str, CrdEnum):
    READY = "Ready"
    NOT_READY = "NotReady"
    PAUSED = "Paused"


class QueuePhase(str, CrdEnum):
    READY = "Ready"
    NOT_READY = "NotReady"
    PAUSED = "Paused"


class WorkerPhase(str, CrdEnum):
    ONLINE = "Online"
    OFFLINE = "Offline"
