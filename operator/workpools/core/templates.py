"""Base job templates: which `{{ variables }}` a template uses, and whether it declares them.

Prefect's base job template is `{job_configuration, variables}`: `job_configuration` holds the
job with `{{ name }}` placeholders, `variables` is a JSON schema whose `properties` declare them.
The CRD schema checks the shape; what it cannot check (a placeholder with no declaration) is found
here and reported as the pool's `Invalid` condition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(value: Any) -> set[str]:
    """Every variable name used as `{{ name }}` anywhere in `value` (strings, lists, mappings)."""
    return {match.group(1) for text in _strings(value) for match in PLACEHOLDER.finditer(text)}


def declared_variables(variables: Mapping[str, Any]) -> set[str]:
    properties = variables.get("properties")
    return set(properties) if isinstance(properties, Mapping) else set()


def undeclared_variables(job_configuration: Mapping[str, Any], variables: Mapping[str, Any]) -> list[str]:
    """Placeholders of the job configuration that `variables.properties` does not declare, sorted."""
    return sorted(placeholders(job_configuration) - declared_variables(variables))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
