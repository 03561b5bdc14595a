"""Base job templates (core/templates.py): which `{{ variables }}` a template uses, and the command
a worker builds from it.

Aspects: what counts as a placeholder; which variables a template declares, and which it uses
without declaring (the pool's `Invalid` condition); `render`, Prefect's rules strictly: values
from the run's parameters, then the declared defaults; a string that is exactly one placeholder
takes the value as it is; nested mappings and lists; each way a run's command cannot be built,
named in the error.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from workpools.core import templates
from workpools.core.templates import TemplateError, render

VARIABLES = {
    "properties": {
        "flow": {"type": "string"},
        "retries": {"type": "integer", "default": 3},
        "image": {"type": "string", "default": "python:3.12"},
    },
    "required": ["flow"],
}


# --- placeholders, declared, undeclared -------------------------------------------------------


def test_placeholders_are_found_in_every_string_of_the_template() -> None:
    job = {
        "command": "run {{ flow }} --retries {{retries}}",
        "env": [{"name": "IMAGE", "value": "{{  image  }}"}],
        "labels": {"team": "{{ team_1 }}"},
        "replicas": 2,
    }
    assert templates.placeholders(job) == {"flow", "retries", "image", "team_1"}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{{ 1st }}", id="starts-with-a-digit"),
        pytest.param("{{ a.b }}", id="dotted"),
        pytest.param("{ flow }", id="single-braces"),
        pytest.param("{{ }}", id="empty"),
    ],
)
def test_only_a_name_between_double_braces_is_a_placeholder(text: str) -> None:
    assert templates.placeholders(text) == set()


def test_declared_variables_are_the_properties_of_the_variables_schema() -> None:
    assert templates.declared_variables(VARIABLES) == {"flow", "retries", "image"}
    assert templates.declared_variables({}) == set()
    assert templates.declared_variables({"properties": ["flow"]}) == set()  # not a JSON schema's properties


def test_undeclared_variables_are_the_placeholders_without_a_property_sorted() -> None:
    job = {"command": "{{ zone }} {{ flow }} {{ account }}"}
    assert templates.undeclared_variables(job, VARIABLES) == ["account", "zone"]
    assert templates.undeclared_variables(job, {}) == ["account", "flow", "zone"]
    assert templates.undeclared_variables({"command": "run {{ flow }}"}, VARIABLES) == []


# --- render: the command a worker runs --------------------------------------------------------


def test_render_fills_parameters_then_defaults() -> None:
    job = {"command": "run {{ flow }} --retries {{ retries }} --image={{image}}"}
    rendered = render(job, VARIABLES, {"flow": "etl", "retries": 5})  # image: its default
    assert rendered == {"command": "run etl --retries 5 --image=python:3.12"}


def test_a_string_that_is_exactly_one_placeholder_takes_the_value_as_it_is() -> None:
    job = {"retries": "{{ retries }}", "padded": "  {{ retries }} ", "args": "{{ flow }}", "text": "n={{ retries }}"}
    rendered = render(job, VARIABLES, {"flow": ["a", "b"]})
    assert rendered == {"retries": 3, "padded": 3, "args": ["a", "b"], "text": "n=3"}


def test_render_fills_nested_mappings_and_lists_and_keeps_other_values() -> None:
    job = {
        "command": ["run", "{{ flow }}"],
        "env": [{"name": "IMAGE", "value": "{{ image }}"}],
        "replicas": 2,
        "stream": True,
        "node": None,
    }
    expected = {
        "command": ["run", "etl"],
        "env": [{"name": "IMAGE", "value": "python:3.12"}],
        "replicas": 2,
        "stream": True,
        "node": None,
    }
    assert render(job, VARIABLES, {"flow": "etl"}) == expected
    assert job["command"] == ["run", "{{ flow }}"]  # the pool's template is left as it was


def test_a_template_without_placeholders_needs_no_variables() -> None:
    assert render({"command": "echo hi"}, {}, {}) == {"command": "echo hi"}
    assert render({"command": "echo hi"}, {"properties": None, "required": None}, {}) == {"command": "echo hi"}


def test_a_property_that_is_not_a_schema_object_has_no_default() -> None:
    variables = {"properties": {"flow": True}}  # JSON schema allows `true`: any value, no default
    assert render({"command": "run {{ flow }}"}, variables, {"flow": "etl"}) == {"command": "run etl"}
    with pytest.raises(TemplateError, match=re.escape("variables without a value or default: flow")):
        render({"command": "run {{ flow }}"}, variables, {})


@pytest.mark.parametrize(
    ("job", "variables", "parameters", "message"),
    [
        pytest.param(
            {"command": "run {{ flow }}"},
            VARIABLES,
            {"flow": "etl", "zone": "eu", "account": "a"},
            "parameters not declared in the pool's baseJobTemplate.variables: account, zone",
            id="undeclared-parameters",
        ),
        pytest.param(
            {"command": "run {{ flow }} {{ zone }} {{ account }}"},
            VARIABLES,
            {"flow": "etl"},
            "the pool's baseJobTemplate uses undeclared variables: account, zone",
            id="undeclared-placeholders",
        ),
        pytest.param(
            {"command": "run"},
            {**VARIABLES, "required": ["flow", "image", "bucket"]},
            {},
            "required variables without a value: bucket, flow",  # image has a default
            id="required-without-a-value",
        ),
        pytest.param(
            {"command": "run {{ flow }} {{ zone }} {{ account }}"},
            {"properties": {"flow": {}, "zone": {}, "account": {}}},
            {"flow": "etl"},
            "variables without a value or default: account, zone",
            id="placeholders-without-a-value",
        ),
    ],
)
def test_render_refuses_what_prefect_refuses(
    job: dict[str, Any], variables: dict[str, Any], parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError) as error:
        render(job, variables, parameters)
    assert str(error.value) == message
