"""FlowSchedules as last seen on the watch, and the runs each one owns (by controller owner reference)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from workpools.api.flowrun import FlowRun
from workpools.api.flowschedule import FlowSchedule
from workpools.api.meta import ObjectKey
from workpools.cache.store import key_of, not_newer


def owner_of(body: dict[str, Any]) -> ObjectKey | None:
    """The FlowSchedule that owns a run body, if any."""
    for ref in body["metadata"].get("ownerReferences") or ():
        if ref.get("kind") == FlowSchedule.KIND and ref.get("controller"):
            return ObjectKey(body["metadata"].get("namespace", ""), ref["name"])
    return None


@dataclass
class ScheduleStore:
    schedules: dict[ObjectKey, FlowSchedule] = field(default_factory=dict)
    runs: defaultdict[ObjectKey, dict[str, FlowRun]] = field(default_factory=lambda: defaultdict(dict))
    """Per schedule, its runs by name (only runs a schedule owns are kept here)."""

    def put(self, body: dict[str, Any]) -> set[ObjectKey]:
        """Record an added or modified FlowSchedule or FlowRun; returns the schedules to reconcile."""
        key = key_of(body)
        if body["kind"] == FlowSchedule.KIND:
            schedule, old = FlowSchedule.model_validate(body), self.schedules.get(key)
            if old is not None and not_newer(schedule.metadata.resource_version, old.metadata.resource_version):
                return set()
            self.schedules[key] = schedule
            return {key}
        owner = owner_of(body)
        if owner is None:
            return set()
        run, runs = FlowRun.model_validate(body), self.runs[owner]
        old_run = runs.get(key.name)
        if old_run is not None and not_newer(run.metadata.resource_version, old_run.metadata.resource_version):
            return set()
        runs[key.name] = run
        return {owner}

    def remove(self, body: dict[str, Any]) -> set[ObjectKey]:
        key = key_of(body)
        if body["kind"] == FlowSchedule.KIND:
            self.schedules.pop(key, None)
            return set()  # its runs go with it (garbage collection)
        owner = owner_of(body)
        if owner is None:
            return set()
        self.runs[owner].pop(key.name, None)
        if not self.runs[owner]:
            del self.runs[owner]
        return {owner}

    def runs_of(self, key: ObjectKey) -> list[FlowRun]:
        return list(self.runs.get(key, {}).values())
