"""Bad input is refused by the API server with a message a person understands (schema and CEL),
and what the schema cannot express becomes a condition plus one Warning event.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.kube import Kubectl, KubectlError
from tests.support.objects import condition, pool, queue
from tests.support.operator import OperatorProcess
from tests.support.waiting import wait_for

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "negative pool limit",
        pool("p", concurrencyLimit=-1),
        "spec.concurrencyLimit: Invalid value: -1: spec.concurrencyLimit in body should be greater than or equal to 0",
    ),
    (
        "non-integer pool limit",
        pool("p", concurrencyLimit=2.5),
        'spec.concurrencyLimit: Invalid value: "number": spec.concurrencyLimit in body must be of type integer',
    ),
    (
        "priority zero",
        queue("q", "p", priority=0),
        "spec.priority: Invalid value: 0: spec.priority in body should be greater than or equal to 1",
    ),
    ("negative priority", queue("q", "p", priority=-3), "spec.priority in body should be greater than or equal to 1"),
    ("empty description", pool("p", description=""), "spec.description in body should be at least 1 chars long"),
    (
        "over-long description",
        queue("q", "p", description="x" * 1025),
        "spec.description: Too long: may not be more than 1024",
    ),
    (
        "template without variables",
        pool("p", baseJobTemplate={"job_configuration": {"command": "true"}}),
        "spec.baseJobTemplate.variables: Required value",
    ),
    (
        "template without job_configuration",
        pool("p", baseJobTemplate={"variables": {}}),
        "spec.baseJobTemplate.job_configuration: Required value",
    ),
    (
        "pool name too long for its default queue",
        pool("p" * 56),
        "a WorkPool name must be at most 55 characters, so that its default queue `<pool>-default` is a valid name",
    ),
    (
        "queue without a pool",
        {"apiVersion": "workpools.dev/v1alpha1", "kind": "WorkQueue", "metadata": {"name": "q"}, "spec": {}},
        "spec.workPool: Required value",
    ),
    ("unknown field", pool("p", concurrencyLimt=3), ".spec.concurrencyLimt: field not declared in schema"),
]


@pytest.mark.parametrize(("manifest", "message"), [(m, msg) for _, m, msg in REFUSED], ids=[c for c, _, _ in REFUSED])
def test_the_api_server_refuses_with_a_clear_message(
    installed: Kubectl, namespace: str, manifest: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError) as refused:
        installed.apply(manifest, namespace=namespace)
    assert message in refused.value.stderr


def test_a_queue_cannot_move_to_another_pool(installed: Kubectl, namespace: str) -> None:
    installed.apply(queue("q", "a"), namespace=namespace)
    with pytest.raises(KubectlError) as refused:
        installed.apply(queue("q", "b"), namespace=namespace)
    assert "workPool is immutable; create a new object to move it to another pool" in refused.value.stderr


def test_unknown_fields_are_pruned_for_clients_that_do_not_validate(installed: Kubectl, namespace: str) -> None:
    # kubectl validates strictly (above); a client that does not gets the field pruned, never stored.
    installed(
        "apply",
        "--validate=false",
        "-n",
        namespace,
        "-f",
        "-",
        input='{"apiVersion": "workpools.dev/v1alpha1", "kind": "WorkPool", "metadata": {"name": "p"},'
        ' "spec": {"concurrencyLimt": 3}}',
    )
    assert installed.get("wp", "p", namespace)["spec"] == {}


def test_an_undeclared_template_variable_is_invalid_and_warned_once(
    installed: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    template = {
        "job_configuration": {"command": "run {{ flow }} --retries {{ retries }}"},
        "variables": {"properties": {"flow": {"type": "string"}}},
    }
    installed.apply(pool("bad", baseJobTemplate=template), pool("good"), namespace=namespace)

    invalid = wait_for(
        lambda: (c := condition(installed.get("wp", "bad", namespace), "Invalid")) and c["status"] == "True" and c,
        what="the Invalid condition",
    )
    assert invalid["message"] == "baseJobTemplate uses {{ retries }} but variables.properties does not declare it"
    warnings = wait_for(
        lambda: [e for e in installed.events(namespace, "bad") if e["type"] == "Warning"], what="a Warning event"
    )
    assert [(e["reason"], e["message"]) for e in warnings] == [("TemplateInvalid", invalid["message"])]
    wait_for(
        lambda: installed.get("wp", "good", namespace).get("status", {}).get("phase"),
        equals="NotReady",
        what="the other pool still served",
    )

    template["variables"]["properties"]["retries"] = {"type": "integer", "default": 0}
    installed.apply(pool("bad", baseJobTemplate=template), namespace=namespace)
    wait_for(
        lambda: (condition(installed.get("wp", "bad", namespace), "Invalid") or {}).get("status"),
        equals="False",
        what="the condition to clear once fixed",
    )
