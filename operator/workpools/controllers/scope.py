"""Which namespaces this operator instance serves: all of them, or a fixed list."""

from __future__ import annotations

import os
from dataclasses import dataclass

NAMESPACES_ENV = "WORKPOOLS_NAMESPACES"
"""Comma-separated namespaces to serve; unset or empty: every namespace."""


@dataclass(frozen=True)
class Scope:
    namespaces: tuple[str, ...] = ()

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def list_namespaces(self) -> list[str | None]:
        """Namespaces to LIST in (None: one cluster-wide LIST)."""
        return [None] if self.clusterwide else list(self.namespaces)

    @classmethod
    def from_environment(cls) -> Scope:
        raw = os.environ.get(NAMESPACES_ENV, "")
        return cls(tuple(n.strip() for n in raw.split(",") if n.strip()))
