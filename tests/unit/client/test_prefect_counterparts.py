"""Every function of Prefect's `models.workers` has a documented counterpart (issue 15).

The README's table names each one; each client call it names exists with that name, and each
CLI command it names is a verb of `workpools`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from workpools.cli.main import build_parser
from workpools.client.runs import RunsClient
from workpools.client.specs import SpecsClient
from workpools.client.workpools import WorkpoolsClient

README = Path(__file__).resolve().parents[3] / "README.md"

PREFECT_FUNCTIONS = (
    # prefect.server.models.workers, in the order of its reference
    "create_work_pool",
    "read_work_pool",
    "read_work_pool_by_name",
    "read_work_pools",
    "count_work_pools",
    "count_work_pool_active_slots",
    "count_work_pool_active_slots_bulk",
    "count_work_queue_active_slots",
    "count_work_queue_active_slots_bulk",
    "update_work_pool",
    "delete_work_pool",
    "get_scheduled_flow_runs",
    "create_work_queue",
    "bulk_update_work_queue_priorities",
    "read_work_queues",
    "count_work_queues",
    "read_work_queue",
    "read_work_queue_by_name",
    "update_work_queue",
    "delete_work_queue",
    "read_workers",
    "read_worker_by_name",
    "worker_heartbeat",
    "record_worker_heartbeat",
    "delete_worker",
    "count_work_pool_slot_holders",
    "get_work_pool_slot_holders",
    "count_work_pool_slot_holders_by_queue",
    "count_work_queue_slot_holders",
    "get_work_queue_slot_holders",
    "emit_work_pool_updated_event",
    "emit_work_pool_created_event",
    "emit_work_pool_deleted_event",
    "emit_work_pool_status_event",
)
CLIENTS = {"WorkpoolsClient": WorkpoolsClient, "SpecsClient": SpecsClient, "RunsClient": RunsClient}


def table_rows() -> list[list[str]]:
    text = README.read_text()
    section = text.split("### Prefect's `models.workers`, function by function", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def named_in(cell: str) -> set[str]:
    """The functions a first cell names; `_updated_event` after `emit_work_pool_created_event` is one too."""
    names = set(re.findall(r"`(\w+)`", cell))
    return {f"emit_work_pool{name}" if name.startswith("_") else name for name in names}


def test_every_prefect_function_has_a_row() -> None:
    documented = set().union(*(named_in(row[0]) for row in table_rows()))
    assert set(PREFECT_FUNCTIONS) - documented == set()


@pytest.mark.parametrize("name", [n for n in PREFECT_FUNCTIONS if not n.startswith(("emit_", "record_"))])
def test_the_client_offers_prefects_name(name: str) -> None:
    assert any(hasattr(client, name) for client in CLIENTS.values()), name


def test_every_client_call_in_the_table_exists() -> None:
    for row in table_rows():
        for owner, method in re.findall(r"`(\w+Client)\.(\w+)\(", row[3]):
            assert hasattr(CLIENTS[owner], method), f"{owner}.{method}"
        for method in re.findall(r"`\.(\w+)\(", row[3]):
            assert any(hasattr(client, method) for client in CLIENTS.values()), method


def test_every_cli_command_in_the_table_exists() -> None:
    parser = build_parser("workpools")
    for row in table_rows():
        for command in re.findall(r"`workpools ([^`]+)`", row[2]):
            noun, *verbs = command.replace("\\|", "|").split()
            for verb in " ".join(verbs).split("|"):
                words = verb.split()
                if words:  # parse only noun and verb: arguments are placeholders
                    assert_verb_exists(parser, noun, words[0])


def assert_verb_exists(parser: argparse.ArgumentParser, noun: str, verb: str) -> None:
    nouns = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verbs = next(a for a in nouns.choices[noun]._actions if isinstance(a, argparse._SubParsersAction))
    assert verb in verbs.choices, f"workpools {noun} {verb}"
