"""One rule for exit statuses, told by `--help`: 2 for every unusable command line or option
value, 1 for a failure while working, 70 for an internal error; and errors in our words, not
in those of the validation library behind the parser."""

from __future__ import annotations

import pytest

from tests.conftest import Runner

RULE = (
    "Exit status: 0 success; 1 a failure while working (or skipped input lines); 2 an "
    "unusable command line or option value; 70 an internal error; record and build exit "
    "with the build's own status."
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["telemetry", "export", "--format", "xml"],
            "Error: Invalid value for '--format': 'xml' is not one of json, csv, parquet, arrow, "
            "prometheus, openmetrics.",
        ),
        (
            ["telemetry", "summary", "--since", "yesterday"],
            "Error: --since must be a date (2025-10-27), a UTC time (2025-10-27T14:23:15) or an "
            "age (7d, 12h, 2w), got 'yesterday'",
        ),
        (
            ["telemetry", "--until", "someday"],
            "Error: --until must be a date (2025-10-27), a UTC time (2025-10-27T14:23:15) or an "
            "age (7d, 12h, 2w), got 'someday'",
        ),
        (
            ["telemetry", "recent", "--since", "2025-10-28", "--until", "2025-10-27"],
            "Error: --since (2025-10-28) must be earlier than --until (2025-10-27)",
        ),
        (
            ["telemetry", "summary", "--threshold", "0.5"],
            "Error: --threshold must be a number greater than 1 (e.g. 1.5), got '0.5'",
        ),
        (
            ["telemetry", "recent", "0"],
            "Error: Invalid value for 'COUNT': '0' is not a whole number from 1 to 1000000.",
        ),
        (
            ["telemetry", "summary", "--top", "x"],
            "Error: Invalid value for '--top': 'x' is not a whole number from 1 to 1000000.",
        ),
        (
            ["telemetry", "recent", "--format", "yaml"],
            "Error: Invalid value for '--format': 'yaml' is not one of text, json.",
        ),
        (
            ["telemetry", "ingest", "-", "--max-line-bytes", "0"],
            "Error: Invalid value for '--max-line-bytes': '0' is not a whole number of at least 1.",
        ),
        (
            ["telemetry", "ingest", "-", "--format", "csv"],
            "Error: Invalid value for '--format': 'csv' is not one of auto, jsonl, "
            "turbo-summary, bazel-bep, chrome-trace, ninja-log.",
        ),
        (
            ["record", "--source", "make", "--", "true"],
            "Error: Invalid value for '--source': 'make' is not one of auto, ninja, none.",
        ),
        (["telemetry", "frobnicate"], "Error: No such command 'frobnicate'."),
    ],
)
def test_an_unusable_command_line_exits_2(cli: Runner, args: list[str], message: str) -> None:
    result = cli(*args)
    assert (result.code, result.stdout, result.stderr) == (2, "", message + "\n")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["telemetry", "summary"], {"BUILDER_TELEMETRY_MAX_SESSIONS": "abc"}),
        (["telemetry", "summary", "--top", "2"], {"BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "x"}),
        (["telemetry", "ingest", "no-such-file.jsonl"], {}),
    ],
)
def test_a_failure_while_working_exits_1(cli: Runner, args: list[str], env: dict[str, str]) -> None:
    result = cli(*args, env=env)
    assert result.code == 1 and result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1


def test_our_own_bug_exits_70(small_cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry import exporter

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(exporter, "render_summary", broken)
    for args in (["telemetry"], ["telemetry", "summary", "--top", "2"]):
        result = small_cli(*args)
        assert result.code == 70
        assert result.stderr.startswith("Error: internal error (RuntimeError: a bug); ")


@pytest.mark.parametrize("args", [[], ["telemetry"]])
def test_help_tells_the_rule(cli: Runner, args: list[str]) -> None:
    shown = " ".join(cli(*args, "--help").stdout.split())
    assert RULE in shown
