"""Posting Kubernetes Events (core/v1) about our objects, so `kubectl describe` shows them."""

from __future__ import annotations

import datetime

from workpools.client import errors
from workpools.client.transport import EVENTS, Transport


async def post_event(
    transport: Transport,
    *,
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    uid: str | None,
    type: str,
    reason: str,
    message: str,
    component: str,
    instance: str,
    now: datetime.datetime,
) -> None:
    """Create one Event about an object; the caller keeps `message` to one short line.

    The Event is named `<object>.<nanoseconds since the epoch, hex>`, as client-go's recorder
    names them, so that the events of one object list in the order they were posted (a LIST
    returns them by name). `kubectl describe` sorts events by `lastTimestamp`, whose resolution is
    a second, and its sort keeps equal ones in listed order for short lists (Go's sort does an
    insertion sort up to 12 items): so a Created and a Paused posted within one second read in
    that order rather than at random (they did with generated names).
    """
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(name, now), "namespace": namespace},
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "type": type,
        "reason": reason,
        "message": message,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
    }
    try:
        await transport.create(EVENTS, namespace, body)
    except errors.AlreadyExists:  # two events of one object at the same instant: order them no longer
        body["metadata"] = {"generateName": f"{name}.", "namespace": namespace}
        await transport.create(EVENTS, namespace, body)


def event_name(name: str, now: datetime.datetime) -> str:
    """`<name>.<hex nanoseconds>`: sixteen hex digits until 2262, so names sort by time."""
    nanoseconds = (now - _EPOCH) // datetime.timedelta(microseconds=1) * 1000
    stem = name[: _NAME_MAX - 17].rstrip("-.")  # an Event's name is a DNS subdomain of at most 253
    return f"{stem}.{nanoseconds:016x}"


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NAME_MAX = 253
