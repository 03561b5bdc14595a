"""Pieces every kind shares: the object metadata we read, slot counts, reference fields."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import pydantic
from pydantic import ConfigDict, Field

from workpools.api.meta import NAME_MAX, POOL_NAME_MAX
from workpools.api.phases import CrdEnum

if TYPE_CHECKING:
    from pydantic import GetJsonSchemaHandler
    from pydantic_core import CoreSchema

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""Queue, pool and worker names end up in label values, so they must be DNS labels."""


def camel_case(name: str) -> str:
    """`resource_version` → `resourceVersion`: the field aliases, as the API server spells them."""
    first, *rest = name.split("_")
    return "".join([first, *(part.capitalize() for part in rest)])


class Model(pydantic.BaseModel):
    """Base of every model: camelCase aliases, assignments validated, dumps by alias.

    The configuration `kube_custom_resource.schema.BaseModel` gave the models, without importing
    that package at run time (it pulls in the synchronous kubernetes client, requests and
    oauthlib). Its schema post-processing (refs inlined, titles and defaults dropped) is done by
    `crds.py`, the only place that needs it.
    """

    model_config = ConfigDict(
        alias_generator=camel_case,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        validate_assignment=True,
        # Build each model's validator on its first use, not at import: a CLI command uses one or
        # two of the kinds, and building all of them was most of what importing the models cost.
        defer_build=True,
    )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        json_schema = handler.resolve_ref_schema(handler(core_schema))
        if cls.model_config.get("extra") == "allow":  # extra fields allowed: keep Kubernetes from pruning them
            json_schema["x-kubernetes-preserve-unknown-fields"] = True
            json_schema.pop("additionalProperties", None)
        return json_schema


class ObjectMeta(Model):
    """The parts of metadata the operator reads; the schema never constrains metadata."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime.datetime | None = None
    deletion_timestamp: datetime.datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[dict[str, Any]] = Field(default_factory=list)


class Resource(Model):
    """Base of the four kinds: parses a whole object as read from the API server.

    The class variables are the CRD facts the schema cannot carry; `crds.py` reads them.
    """

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]]
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]]
    SELECTABLE_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields `kubectl get --field-selector` can filter on, served by the API server itself."""

    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta


class SlotStatus(Model):
    """Concurrency slots of a pool or queue: runs in Pending, Running or Cancelling."""

    active: int = Field(default=0, ge=0, description="Runs holding a slot (Pending, Running, Cancelling).")
    limit: int | None = Field(default=None, ge=0, description="The concurrency limit; null means unlimited.")
    open: int | None = Field(
        default=None, ge=0, description="Slots free for admission (limit - active, at least 0); null means unlimited."
    )
    summary: str = Field(default="0/∞", max_length=32, description="active/limit for `kubectl get` (∞ when unlimited).")


class LateAction(str, CrdEnum):
    RUN = "Run"
    CANCEL = "Cancel"


class LatePolicy(Model):
    """What happens to runs still waiting past their scheduled time (a queue's replaces its pool's)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.action) && self.action == 'Cancel') == has(self.afterSeconds)",
                    "message": "latePolicy.afterSeconds is required with action Cancel, and means nothing without it",
                }
            ]
        }
    )

    action: LateAction = Field(
        default=LateAction.RUN,
        description=(
            "Run (default, as Prefect: a late run is only labelled Late) or Cancel: runs still waiting afterSeconds "
            "past their scheduled time are Cancelled (stateName LateCancelled)."
        ),
    )
    after_seconds: int | None = Field(
        default=None, ge=1, le=31_536_000, description="With action Cancel: how late a waiting run may get."
    )
    skip_to_latest: bool = Field(
        default=False,
        description=(
            "Of the due runs waiting from one FlowSchedule (label workpools.dev/schedule), keep only the newest "
            "and cancel the older ones (stateName SkippedToLatest)."
        ),
    )


def immutable(message: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": message}]}


PoolRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=POOL_NAME_MAX,
        pattern=DNS_LABEL,
        description="Name of the WorkPool (same namespace). Immutable.",
        json_schema_extra=immutable("workPool is immutable; create a new object to move it to another pool"),
    ),
]

QueueName = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=DNS_LABEL)]

Description = Annotated[
    str,
    Field(min_length=1, max_length=1024, description="What this is for, in a sentence or two (1-1024 characters)."),
]

ConcurrencyLimit = Annotated[
    int | None,
    Field(ge=0, le=1_000_000, description="Maximum runs holding a slot at once; null or absent means unlimited."),
]


def to_json(model: pydantic.BaseModel, *, as_read: bool = False) -> dict[str, Any]:
    """The model as the API server stores it: camelCase keys, null fields omitted.

    `as_read`: only the fields that were present when the model was parsed (no defaults filled
    in), i.e. exactly what the server has. Diffing a desired status against that finds every
    field that still has to be written.
    """
    return pydantic.BaseModel.model_dump(model, mode="json", by_alias=True, exclude_none=True, exclude_unset=as_read)


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as Kubernetes writes times (microseconds kept when present)."""
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
