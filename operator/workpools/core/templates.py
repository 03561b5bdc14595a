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


class TemplateError(ValueError):
    """A run's command cannot be built from the pool's template and the run's parameters."""


def render(job_configuration: Mapping[str, Any], variables: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
    """The job configuration with every `{{ name }}` filled from `parameters`, then the defaults.

    Prefect's rules, strictly: every placeholder must be declared in `variables.properties`,
    every `required` variable must get a value, and parameters must be declared variables. A
    string that is exactly one placeholder takes the value as it is (a number stays a number).
    """
    declared = declared_variables(variables)
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise TemplateError(f"parameters not declared in the pool's baseJobTemplate.variables: {', '.join(unknown)}")
    undeclared = undeclared_variables(job_configuration, variables)
    if undeclared:
        raise TemplateError(f"the pool's baseJobTemplate uses undeclared variables: {', '.join(undeclared)}")
    properties = variables.get("properties") or {}
    values = {
        name: spec["default"] for name, spec in properties.items() if isinstance(spec, Mapping) and "default" in spec
    }
    values.update(parameters)
    missing = sorted(name for name in variables.get("required") or [] if name not in values)
    if missing:
        raise TemplateError(f"required variables without a value: {', '.join(missing)}")
    unset = sorted(placeholders(job_configuration) - set(values))
    if unset:
        raise TemplateError(f"variables without a value or default: {', '.join(unset)}")
    return _fill(job_configuration, values)


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, Mapping):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    return value
