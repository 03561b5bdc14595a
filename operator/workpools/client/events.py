"""Posting Kubernetes Events (core/v1) about our objects, so `kubectl describe` shows them."""

from __future__ import annotations

import datetime

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
    """Create one Event about an object; the caller keeps `message` to one short line."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await transport.create(
        EVENTS,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
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
        },
    )
