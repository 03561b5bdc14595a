"""The worker-restriction policy (manifests/policy/) says what api/states.py says a worker may do.

The policy is CEL in YAML, written for people to read; these tests keep its lists of worker moves
and slot-holding states equal to the state machine's, so a new worker move cannot be forgotten
there. What the policy does is tested on a real API server (tests/integration/test_worker_restriction.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workpools.api.states import ALLOWED, SLOT_HOLDING, StateType, Writer

POLICY = Path(__file__).resolve().parents[3] / "manifests" / "policy" / "worker_restriction.yaml"


@pytest.fixture(scope="module")
def variables() -> dict[str, str]:
    policy: dict[str, Any] = next(d for d in yaml.safe_load_all(POLICY.read_text()) if d["kind"].endswith("Policy"))
    return {v["name"]: v["expression"] for v in policy["spec"]["variables"]}


def strings(cel_list: str) -> list[str]:
    return re.findall(r"'([^']*)'", cel_list)


def test_the_policy_allows_a_worker_exactly_the_worker_moves_of_the_state_machine(variables: dict[str, str]) -> None:
    moves = {tuple(move.split(" → ")) for move in strings(variables["workerMoves"])}
    assert moves == {(old, new) for (old, new), who in ALLOWED.items() if Writer.WORKER in who and old is not None}


def test_the_policy_lets_a_worker_write_without_a_move_only_in_slot_holding_states(variables: dict[str, str]) -> None:
    assert set(strings(variables["slotHolding"])) == {StateType(s) for s in SLOT_HOLDING}
