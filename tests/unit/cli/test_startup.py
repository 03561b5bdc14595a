"""The CLI starts fast: parsing, `--help` and usage errors import no client, transport or model.

Measured speed is a benchmark (`benchmarks/cli.py`), not a test; what keeps it from regressing
is this: the modules that cost most of a start (the kubernetes client, aiohttp, pydantic and
what they pull in) are imported only once a command runs. Each check runs in a fresh
interpreter, since this test process has imported them all long ago.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workpools.cli import commands, main
from workpools.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("kubernetes", "aiohttp", "pydantic", "pydantic_core", "kube_custom_resource", "yaml", "asyncio")
"""Top-level packages a parse must not import (kubernetes, aiohttp and pydantic are most of a start)."""

PARSE = """
import workpools.cli.main as main
parser = main.build_parser()
for argv in {argvs!r}:
    try:
        parser.parse_args(argv)
    except SystemExit:
        pass
"""


def modules_after(code: str) -> set[str]:
    """The names in `sys.modules` after running `code` in a fresh interpreter."""
    report = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return set(modules)


def loaded_by(code: str) -> set[str]:
    """Top-level packages in `sys.modules` after running `code` in a fresh interpreter."""
    return {name.split(".")[0] for name in modules_after(code)}


def test_importing_the_cli_imports_no_client_transport_or_models() -> None:
    assert loaded_by("import workpools.cli.main") & set(HEAVY) == set()


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["pool", "--help"], ["worker", "start", "--help"], ["pool", "ls"], ["run", "ls", "--state", "Done"]],
    ids=" ".join,
)
def test_parsing_and_help_import_no_client_transport_or_models(argv: list[str]) -> None:
    assert loaded_by(PARSE.format(argvs=[argv])) & set(HEAVY) == set()


def test_running_a_command_does_import_them() -> None:
    """The checks above would notice a heavy import: the module that runs the verbs has them."""
    assert {"kubernetes", "aiohttp", "pydantic"} <= loaded_by("import workpools.cli.commands")


def test_running_a_command_does_not_import_the_crd_generator() -> None:
    """Only `api/crds.py` needs kube_custom_resource: it imports the synchronous kubernetes client,
    requests and oauthlib, so the models carry its configuration themselves (`api/base.py`)."""
    assert "kube_custom_resource" not in loaded_by("import workpools.cli.commands")


def test_the_runs_and_schedules_clients_are_imported_by_the_commands_that_use_them() -> None:
    """With them come core/'s admission, selection and slot rules and cronsim: not needed by `pool ls`."""
    deferred = {"workpools.client.runs", "workpools.client.schedules", "workpools.core.selection", "cronsim"}
    assert deferred & modules_after("import workpools.cli.commands") == set()


def _verb_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return dict(action.choices)

    return [
        (f"{noun} {verb}", parser)
        for noun, nouns in subparsers(build_parser()).items()
        for verb, parser in subparsers(nouns).items()
    ]


@pytest.mark.parametrize(("verb", "parser"), _verb_parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_verb_names_a_command_that_exists(verb: str, parser: argparse.ArgumentParser) -> None:
    """The parser names each verb's coroutine in `commands.py` (so it need not import it)."""
    handler = parser.get_default("handler")
    if parser.get_default("worker_entry"):
        assert handler is None, verb
        return
    assert isinstance(handler, str), verb
    assert inspect.iscoroutinefunction(getattr(commands, handler, None)), f"{verb}: commands.{handler}"


@pytest.mark.parametrize("before", [None, "/etc/ssl/my-ca.pem"])
def test_a_command_is_imported_without_the_collector_and_the_environment_is_left_as_it_was(
    before: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`main._quick_imports`: aiohttp's unused default TLS contexts get an empty CA bundle, for the
    import only; a user's SSL_CERT_FILE (or its absence) is what the command then runs with."""
    if before is None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    else:
        monkeypatch.setenv("SSL_CERT_FILE", before)
    with main._quick_imports():
        assert not gc.isenabled()
        assert os.environ["SSL_CERT_FILE"] == os.devnull
    assert gc.isenabled()
    assert os.environ.get("SSL_CERT_FILE") == before
