"""`kubectl`, as a user would run it, against the cluster under test."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubectlError(AssertionError):
    def __init__(self, args: list[str], stderr: str):
        super().__init__(f"kubectl {' '.join(args)} failed: {stderr.strip()}")
        self.stderr = stderr


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    binary: str = "kubectl"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [self.binary, *args], input=input, capture_output=True, text=True, env=self.env(), timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(list(args), result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def apply(
        self,
        *manifests: dict[str, Any] | str,
        namespace: str | None = None,
        server_side: bool = True,
        field_manager: str = "kubectl-user",
    ) -> str:
        """Apply YAML text or dicts, the way a user or GitOps tool would."""
        text = "\n---\n".join(m if isinstance(m, str) else yaml.safe_dump(m) for m in manifests)
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", f"--field-manager={field_manager}"]
        if namespace:
            args += ["-n", namespace]
        return self(*args, input=text)

    def get(self, resource: str, name: str, namespace: str) -> Any:
        return self.json("get", resource, name, "-n", namespace)

    def try_get(self, resource: str, name: str, namespace: str) -> Any | None:
        result = self("get", resource, name, "-n", namespace, "-o", "json", "--ignore-not-found")
        return json.loads(result) if result.strip() else None

    def events(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "events", "-n", namespace]
        if name:
            args += ["--field-selector", f"involvedObject.name={name}"]
        items: list[dict[str, Any]] = self.json(*args)["items"]
        return items
