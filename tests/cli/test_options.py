"""Options where people type them: `--dir` after any command's name as well as before it,
`--since`/`--until` before the command's name, and `builder telemetry --since 7d` as the
summary of that window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Runner, small_history

# The commands that take a window and filters before their name (but the last).
READERS = "summary, recent, export, show, check, cache, flaky, changes, report, trace"

SINCE = "2025-10-27T15:00"  # builds b and c of the small history


@pytest.fixture
def elsewhere(cli: Runner, tmp_path: Path) -> Path:
    """The small history stored under another folder than the default one."""
    store = tmp_path / "elsewhere"
    stored = cli(
        "telemetry", "ingest", "-", "--dir", str(store), stdin="\n".join(small_history()).encode()
    )
    assert stored.stdout == "Stored 3 builds from 25 events.\n", stored.stderr
    return store


@pytest.mark.parametrize(
    "args",
    [
        ["recent", "1"],  # without the parser
        ["recent", "1", "--format", "json"],
        ["summary"],
        ["summary", "--top", "2"],  # through the parser
        ["recent", "2", "--since", SINCE],
        ["export", "--format", "csv"],
        ["verify"],
    ],
)
def test_dir_after_the_command_is_dir_before_it(
    cli: Runner, elsewhere: Path, args: list[str]
) -> None:
    before = cli("telemetry", "--dir", str(elsewhere), *args)
    after = cli("telemetry", *args, "--dir", str(elsewhere))
    assert before.code == 0 and "No telemetry data" not in before.stdout + before.stderr
    assert after == before
    # The default store is empty: the option was read, not ignored.
    assert cli("telemetry", *args) != before


def test_ingest_clear_and_compact_take_dir_after_their_name(cli: Runner, elsewhere: Path) -> None:
    compacted = cli("telemetry", "compact", "--dir", str(elsewhere))
    assert compacted.stdout.startswith(f"Compacted 1 day in {elsewhere}: 3 builds")
    cleared = cli("telemetry", "clear", "--dir", str(elsewhere))
    assert cleared.stdout == f"Removed 3 builds from {elsewhere}.\n"


def test_the_dir_nearest_the_command_wins(cli: Runner, elsewhere: Path, tmp_path: Path) -> None:
    result = cli("telemetry", "--dir", str(tmp_path / "nothing"), "recent", "--dir", str(elsewhere))
    assert result.stdout.startswith("Recent 3 Builds:")


def test_bare_telemetry_with_a_window_is_that_summary(small_cli: Runner) -> None:
    bare = small_cli("telemetry", "--since", SINCE, "--until", "2025-10-27T16:00")
    assert bare.code == 0 and "Total Builds: 1\n" in bare.stdout
    assert bare == small_cli(
        "telemetry", "summary", "--since", SINCE, "--until", "2025-10-27T16:00"
    )


@pytest.mark.parametrize("command", ["recent", "export"])
def test_a_window_before_the_command_is_the_commands(small_cli: Runner, command: str) -> None:
    before = small_cli("telemetry", "--since", SINCE, command, "--format", "json")
    after = small_cli("telemetry", command, "--since", SINCE, "--format", "json")
    assert before == after
    assert len(json.loads(before.stdout)["builds" if command == "recent" else "sessions"]) == 2


def test_the_window_after_the_command_wins(small_cli: Runner) -> None:
    result = small_cli("telemetry", "--since", "2030-01-01", "recent", "--since", SINCE)
    assert result.stdout.startswith("Recent 2 Builds:")


@pytest.mark.parametrize("command", ["ingest", "clear", "compact", "verify"])
def test_a_window_before_a_command_without_one_is_refused(small_cli: Runner, command: str) -> None:
    result = small_cli("telemetry", "--until", "7d", command)
    assert (result.code, result.stdout, result.stderr) == (
        2,
        "",
        f"Error: --until goes with {READERS}, regressions, sql and compare, not with {command}\n",
    )
    assert "Total Builds: 3" in small_cli("telemetry").stdout  # nothing was cleared


def test_a_window_before_sql_is_its_window(small_cli: Runner) -> None:
    count = "select count(*) from sessions"
    before = small_cli("telemetry", "--since", SINCE, "sql", count)
    after = small_cli("telemetry", "sql", count, "--since", SINCE)
    assert (before.code, before.stdout) == (0, after.stdout)
    assert after.stdout.splitlines()[-1].strip() == "2"
    refused = small_cli("telemetry", "--tool", "ninja", "sql", count)
    assert (refused.code, refused.stderr) == (
        2,
        f"Error: --tool goes with {READERS} and regressions, not with sql\n",
    )


def test_a_status_before_compare_is_its_own_and_a_branch_is_refused(small_cli: Runner) -> None:
    # small_history: a (ninja, succeeded), b (bazel, succeeded), c (no tool, failed); the
    # groups by tool have one build each, too few, whichever way --status is given.
    before = small_cli("telemetry", "--status", "succeeded", "compare", "--a", "tool=ninja",
                       "--b", "tool=bazel")  # fmt: skip
    after = small_cli("telemetry", "compare", "--a", "tool=ninja", "--b", "tool=bazel",
                      "--status", "succeeded")  # fmt: skip
    assert (before.code, before.stdout, before.stderr) == (after.code, after.stdout, after.stderr)
    assert before.code == 1 and before.stderr.startswith("Error: ")
    refused = small_cli("telemetry", "--branch", "main", "compare", "--a", "tool=ninja",
                        "--b", "tool=bazel")  # fmt: skip
    assert (refused.code, refused.stderr) == (
        2,
        f"Error: --branch goes with {READERS} and regressions, not with compare\n",
    )


def test_dir_after_recent_is_read_without_the_parser(elsewhere: Path) -> None:
    from telemetry.cli.fast import _report

    assert _report(["recent", "1", "--dir", str(elsewhere)]) == 0
    assert _report(["summary", f"--dir={elsewhere}", "--format", "json"]) == 0
    assert _report(["recent", "--dir"]) is None  # the parser says what is missing
