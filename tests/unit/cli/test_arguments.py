"""The CLI's arguments and messages, without a server.

Aspects: every verb has --help with a one-line summary and an example, and spec-changing verbs
say which field they patch; usage errors are one line and exit 2; common options are accepted
before or after the verb; values of --at, --parameter and reorder targets; errors from the
client library become one line naming the object and namespace.
"""

from __future__ import annotations

import argparse
import datetime

import pytest

from tests.builders import T0
from workpools.cli.main import build_parser, describe, noun_in, parse_parameter, parse_target, parse_time
from workpools.client import errors
from workpools.core.waiting import DEFAULT_WINDOW

VERBS = {
    "pool": [
        "ls",
        "inspect",
        "create",
        "pause",
        "resume",
        "set-concurrency-limit",
        "clear-concurrency-limit",
        "delete",
        "preview",
        "slots",
    ],
    "queue": [
        "ls",
        "inspect",
        "create",
        "pause",
        "resume",
        "set-priority",
        "set-concurrency-limit",
        "clear-concurrency-limit",
        "delete",
        "reorder",
    ],
    "worker": ["ls", "delete", "start"],
    "run": ["create", "ls", "inspect", "why", "cancel"],
}
PATCHING = {
    ("pool", "pause"): "spec.paused",
    ("pool", "resume"): "spec.paused",
    ("pool", "set-concurrency-limit"): "spec.concurrencyLimit",
    ("pool", "clear-concurrency-limit"): "spec.concurrencyLimit",
    ("queue", "pause"): "spec.paused",
    ("queue", "resume"): "spec.paused",
    ("queue", "set-priority"): "spec.priority",
    ("queue", "set-concurrency-limit"): "spec.concurrencyLimit",
    ("queue", "clear-concurrency-limit"): "spec.concurrencyLimit",
    ("queue", "reorder"): "spec.priority",
    ("run", "cancel"): "spec.cancel",
}


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("noun", "verb"), [(noun, verb) for noun, verbs in VERBS.items() for verb in verbs])
def test_every_verb_has_help_with_a_summary_and_an_example(
    noun: str, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, noun, verb)
    summary = text.split("\n\n")[1]
    assert summary.strip()
    assert summary[0].isupper()
    assert f"example:\n  workpools {noun} {verb}" in text
    field = PATCHING.get((noun, verb))
    if field is not None:
        assert "Safe alongside GitOps: only patches" in text
        assert field in text


def test_nouns_list_their_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    for noun, verbs in VERBS.items():
        text = _help(capsys, noun)
        assert all(verb in text for verb in verbs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: NOUN"),
        (["pool"], "the following arguments are required: VERB"),
        (["pool", "set-concurrency-limit", "etl", "many"], "'many' is not a whole number"),
        (["pool", "ls", "-o", "xml"], "invalid choice: 'xml'"),
        (["queue", "reorder", "etl", "high"], "'high' is not QUEUE=PRIORITY"),
        (["queue", "set-priority", "etl", "high", "0"], "'0' must be 1 or more"),
        (["run", "ls", "--state", "Done"], "invalid choice: 'Done'"),
        (["run", "why", "r", "--window", "soon"], "'soon' is not a number of minutes"),
        (["run", "why", "r", "--window", "0"], "'0' must be more than 0"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert message in err
    assert "--help" in err


def test_common_options_go_before_or_after_the_verb() -> None:
    parser = build_parser()
    before = parser.parse_args(["-n", "team-a", "-o", "json", "--context", "c", "pool", "ls"])
    after = parser.parse_args(["pool", "ls", "-n", "team-a", "-o", "json", "--context", "c"])
    default = parser.parse_args(["pool", "ls"])
    for args in (before, after):
        assert (args.namespace, args.output, args.context) == ("team-a", "json", "c")
    assert (default.namespace, default.output, default.context, default.kubeconfig) == (None, "table", None, None)


def test_run_create_collects_parameters() -> None:
    args = build_parser().parse_args(["run", "create", "etl", "-p", "a=1", "--parameter", "b=x", "--at", "now"])
    assert dict(args.parameters) == {"a": 1, "b": "x"}
    assert args.at is not None
    assert args.queue is None


def test_run_why_window_in_minutes() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "why", "r", "--window", "2.5"]).window == 2.5
    assert parser.parse_args(["run", "why", "r"]).window is None  # the client's default, which --help names
    assert datetime.timedelta(minutes=10) == DEFAULT_WINDOW


def test_worker_start_options() -> None:
    args = build_parser().parse_args(
        ["worker", "start", "--pool", "etl", "--queue", "a", "--queue", "b", "--limit", "2"]
    )
    assert (args.pool, args.queues, args.limit, args.worker_entry) == ("etl", ["a", "b"], 2, True)


# -- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", T0),
        ("+90s", T0 + datetime.timedelta(seconds=90)),
        ("+5m", T0 + datetime.timedelta(minutes=5)),
        ("+1h30m", T0 + datetime.timedelta(hours=1, minutes=30)),
        ("+2d", T0 + datetime.timedelta(days=2)),
        ("2026-02-01T08:00:00Z", datetime.datetime(2026, 2, 1, 8, tzinfo=datetime.UTC)),
        ("2026-02-01T08:00:00+02:00", datetime.datetime(2026, 2, 1, 6, tzinfo=datetime.UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime.datetime) -> None:
    assert parse_time(text, now=T0) == expected


def test_parse_time_without_a_zone_is_local_time() -> None:
    parsed = parse_time("2026-02-01T08:00:00", now=T0)
    assert parsed.utcoffset() is not None
    assert parsed.replace(tzinfo=None) == datetime.datetime(2026, 2, 1, 8)


@pytest.mark.parametrize("text", ["tomorrow", "+", "+5", "+5x", "+5m3", "5m"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time(text, now=T0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seconds=5", ("seconds", 5)),
        ("name=report", ("name", "report")),
        ('name="5"', ("name", "5")),
        ("flag=true", ("flag", True)),
        ("days=[1, 2]", ("days", [1, 2])),
        ("empty=", ("empty", "")),
        ("expr=a=b", ("expr", "a=b")),
    ],
)
def test_parse_parameter(text: str, expected: tuple[str, object]) -> None:
    assert parse_parameter(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=5"])
def test_parse_parameter_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_parameter(text)


def test_parse_target() -> None:
    assert parse_target("etl-high=3") == ("etl-high", 3)
    for bad in ("etl-high", "etl-high=0", "etl-high=x", "=2", "etl-high=-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_target(bad)


# -- error messages --------------------------------------------------------------------------------


def test_not_found_names_kind_object_and_namespace() -> None:
    error = errors.NotFound('workpools.workpools.dev "etl" not found', kind="WorkPool", namespace="team-a", name="etl")
    assert describe(error) == 'WorkPool "etl" not found in namespace "team-a"'
    pool_missing = errors.PoolNotFound.from_not_found(error)
    assert describe(pool_missing) == 'WorkPool "etl" not found in namespace "team-a"'


def test_not_found_in_another_pool() -> None:
    error = errors.NotFound("WorkQueue 'q' not found in WorkPool 'etl'", kind="WorkQueue", namespace="ns", name="q")
    assert describe(error) == 'WorkQueue "q" not found in WorkPool "etl" (namespace "ns")'


def test_already_exists() -> None:
    error = errors.AlreadyExists(
        'workpools.workpools.dev "etl" already exists', kind="WorkPool", namespace="ns", name="etl"
    )
    assert describe(error) == 'WorkPool "etl" already exists in namespace "ns"'


def test_invalid_keeps_the_servers_reason_on_one_line() -> None:
    error = errors.Invalid(
        'WorkPool.workpools.dev "etl" is invalid:\n  spec.concurrencyLimit: Invalid value: -1',
        kind="WorkPool",
        namespace="ns",
        name="etl",
    )
    assert describe(error) == 'WorkPool "etl" is invalid: spec.concurrencyLimit: Invalid value: -1'


def test_conflict_says_to_retry() -> None:
    error = errors.Conflict("the object has been modified", kind="WorkQueue", namespace="ns", name="q")
    assert describe(error).endswith("(it changed meanwhile; run the command again)")


@pytest.mark.parametrize(
    ("argv", "noun"),
    [
        (["pool", "ls"], "pool"),
        (["-n", "pool", "queue", "ls", "etl"], "queue"),
        (["--kubeconfig", "run", "-o", "json", "run", "ls"], "run"),
        (["--namespace=x", "worker", "ls", "etl"], "worker"),
        (["--help"], None),
        (["pools", "ls"], None),
    ],
)
def test_the_noun_is_the_first_word_that_is_no_option_value(argv: list[str], noun: str | None) -> None:
    assert noun_in(argv) == noun


@pytest.mark.parametrize(
    "argv",
    [
        ["pool", "ls"],
        ["-n", "ns", "queue", "set-priority", "etl", "etl-high", "1"],
        ["run", "create", "etl", "-p", "a=1", "--at", "+5m", "-o", "json"],
        ["worker", "ls", "etl", "--status", "Online"],
        ["schedule", "trigger", "nightly"],
    ],
)
def test_a_parser_built_for_the_noun_alone_parses_as_the_whole_one(argv: list[str]) -> None:
    whole, alone = build_parser().parse_args(argv), build_parser(only=noun_in(argv)).parse_args(argv)
    if hasattr(whole, "at"):  # a moment parsed from +5m: a little later the second time
        assert abs((alone.at - whole.at).total_seconds()) < 5
        whole.at = alone.at
    assert vars(alone) == vars(whole)
