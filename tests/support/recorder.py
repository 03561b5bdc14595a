"""Records every FlowRun change in a namespace from a watch and checks the admission invariants
at each observed moment: slot holders never above a pool, queue or worker limit, no run bound to
two workers, and each run terminal at most once.

`RunInvariants` is the check itself, fed one object version at a time by any watch (the chaos
suite feeds it from a resumable `ResourceWatch`); `RunRecorder` feeds it from `kubectl get --watch`.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from typing import Any

from tests.support.kube import Kubectl

HOLDING = {"Pending", "Running", "Cancelling"}
TERMINAL = {"Completed", "Failed", "Crashed", "Cancelled"}


class RunInvariants:
    def __init__(self, limits: dict[tuple[str, str], int], *, key_label: str | None = None):
        """`limits`: ("pool", name) / ("queue", name) / ("worker", name) → the most slot holders
        allowed; with `key_label`, also ("key", "<pool>/<the run's value of that label>")."""
        self.limits = limits
        self.key_label = key_label
        self.violations: list[str] = []
        self.peak: Counter[tuple[str, str]] = Counter()
        self.states: dict[str, str] = {}
        self.terminal_entries: Counter[str] = Counter()
        self._holders: dict[str, tuple[str, str, str]] = {}
        self._keys: dict[str, str] = {}
        """Slot holder → its key, when it has a `key_label` label."""
        self._bound: dict[str, str] = {}
        self._lock = threading.Lock()

    def observe(self, body: dict[str, Any]) -> None:
        """One version of one FlowRun, in the API server's order."""
        with self._lock:
            self._observe(body)

    def _observe(self, body: dict[str, Any]) -> None:
        name, status, spec = body["metadata"]["name"], body.get("status") or {}, body["spec"]
        state, worker = status.get("state", ""), status.get("worker")
        previous = self.states.get(name)
        if state in TERMINAL and previous != state:
            self.terminal_entries[name] += 1
            if self.terminal_entries[name] > 1:
                self.violations.append(f"{name} reached a terminal state twice ({previous} → {state})")
        self.states[name] = state
        if state in HOLDING and worker:
            bound = self._bound.setdefault(name, worker)
            if bound != worker:
                self.violations.append(f"{name} bound to {bound} and then to {worker} without a reclaim")
            queue = spec.get("workQueue") or f"{spec['workPool']}-default"
            self._holders[name] = (spec["workPool"], queue, worker)
            value = (body["metadata"].get("labels") or {}).get(self.key_label or "")
            if value is not None:
                self._keys[name] = f"{spec['workPool']}/{value}"
        else:
            self._holders.pop(name, None)
            self._keys.pop(name, None)
            if state == "Scheduled":
                self._bound.pop(name, None)  # reclaimed: it may be bound anew
        usage: Counter[tuple[str, str]] = Counter()
        for pool, queue, holder in self._holders.values():
            usage["pool", pool] += 1
            usage["queue", queue] += 1
            usage["worker", holder] += 1
        for key in self._keys.values():
            usage["key", key] += 1
        for key, used in usage.items():
            self.peak[key] = max(self.peak[key], used)
            if key in self.limits and used > self.limits[key]:
                self.violations.append(f"{key[0]} {key[1]} has {used} slot holders, above its limit {self.limits[key]}")

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self.states)

    def holders(self) -> dict[str, tuple[str, str, str]]:
        """Slot holders now: run → (pool, queue, worker)."""
        with self._lock:
            return dict(self._holders)


class RunRecorder(RunInvariants):
    """`RunInvariants` fed by `kubectl get fr --watch` in a thread, from construction to `stop()`."""

    def __init__(self, kubectl: Kubectl, namespace: str, limits: dict[tuple[str, str], int]):
        super().__init__(limits)
        self._process = subprocess.Popen(
            [kubectl.binary, "get", "fr", "-n", namespace, "--watch", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=kubectl.env(),
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert self._process.stdout is not None
        for line in self._process.stdout:
            buffer += line
            try:
                body, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue  # an object spans several lines: read on
            buffer = buffer.lstrip()[end:]
            self.observe(body)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()
        self._thread.join(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()
