"""The plain forms of `telemetry`, `summary`, `recent` and `sql` skip the full command-line
parser; they must say exactly what the parser's route says, errors included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Result, Runner, process_env


def _full(args: list[str], capsysbinary: pytest.CaptureFixture[bytes]) -> Result:
    from telemetry.cli.commands import main

    capsysbinary.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsysbinary.readouterr()
    code = exit_info.value.code
    return Result(code if isinstance(code, int) else 1, out.decode(), err.decode())


FORMS = [
    ["telemetry"],
    ["telemetry", "summary"],
    ["telemetry", "summary", "--format", "json"],
    ["telemetry", "summary", "--format=text"],
    ["telemetry", "recent"],
    ["telemetry", "recent", "2"],
    ["telemetry", "recent", "--format", "json", "1"],
    ["telemetry", "recent", "007"],
    ["telemetry", "sql", "select session_id, duration_ms from sessions order by 1"],
    ["telemetry", "sql", "--format=csv", "select target, count(*) from targets group by 1"],
    ["telemetry", "sql", "select * from sessions", "--format", "json"],
]


@pytest.mark.parametrize("args", FORMS)
def test_plain_reports_say_what_the_parser_says(
    small_cli: Runner, args: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    fast = small_cli(*args)
    assert fast.code == 0 and fast.stdout
    assert fast == _full(args, capsysbinary)


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        (FORMS[0], False),
        (FORMS[6], False),
        (FORMS[8], False),
        (["telemetry", "summary", "--top", "2"], True),
        (["telemetry", "sql", "--since", "2000-01-01", "select 1"], True),
    ],
)
def test_only_plain_forms_skip_loading_the_parser(
    small_store: object, args: list[str], parsed: bool
) -> None:
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('typer' in sys.modules, file=sys.stderr))\n"
        "from telemetry.cli import main\n"
        f"main({args!r})\n"
    )
    store = small_store.dir  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-c", code], env=process_env(store), capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout
    assert done.stderr == f"{parsed}\n"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["telemetry", "summary"], {"BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "fast"}),
        (["telemetry", "recent"], {"BUILDER_TELEMETRY_DIR": "/dev/null"}),
        (["telemetry", "recent", "1"], {"BUILDER_TELEMETRY_DIR": "nowhere"}),
        (["telemetry", "summary", "--format", "json"], {"BUILDER_TELEMETRY_DIR": "nowhere"}),
        (["telemetry", "sql", "select count(*) from targets"], {"BUILDER_TELEMETRY_DIR": "no"}),
        (["telemetry", "sql", "select nothing from sessions"], {}),
    ],
)
def test_plain_reports_fail_or_find_nothing_as_the_parser_does(
    cli: Runner,
    args: list[str],
    env: dict[str, str],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = cli(*args, env=env)
    assert fast == _full(args, capsysbinary)
    assert fast.stderr.count("\n") <= 1 and "Traceback" not in fast.stderr
    assert (fast.code == 0) == bool({"nowhere", "no"} & set(env.values()))  # no store: no error


def test_a_report_to_a_closed_pipe_ends_quietly(
    small_cli: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Gone:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

        def isatty(self) -> bool:
            return False

        def fileno(self) -> int:
            raise OSError("no descriptor")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert small_cli("telemetry", "recent").code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["recent", "--help"],
        ["recent", "0"],
        ["recent", "1000001"],
        ["recent", "1", "2"],
        ["recent", "--since", "7d"],
        ["summary", "--top", "3"],
        ["summary", "3"],
        ["recent", "--format", "csv"],
        ["recent", "--format"],
        ["--dir"],
        ["--dir", "--format", "recent"],
        ["export"],
        ["--format", "json"],
        ["recent", "١"],
        ["recent", "1" * 5000],  # more digits than Python reads as a number
        ["sql"],
        ["sql", "--help"],
        ["sql", "select 1", "select 2"],
        ["sql", "-- a comment first\nselect 1"],
        ["sql", "--since", "7d", "select 1"],
        ["sql", "select 1", "--format", "text"],
        ["sql", "select 1", "--format"],
    ],
)  # fmt: skip
def test_other_forms_are_left_to_the_parser(args: list[str]) -> None:
    from telemetry.cli.fast import _report

    assert _report(args) is None


def test_dir_option_is_read_on_the_fast_route(
    small_cli: Runner, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    other = tmp_path / "elsewhere"
    for args in (
        ["telemetry", "--dir", str(other), "recent"],
        ["telemetry", f"--dir={tmp_path / 'telemetry'}", "recent", "1"],
    ):
        assert small_cli(*args) == _full(args, capsysbinary)
    assert "No telemetry data yet" in small_cli("telemetry", "--dir", str(other)).stdout


def test_an_unreadable_dir_is_left_to_the_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from telemetry.cli.fast import _report

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert _report(["--dir", str(tmp_path), "recent"]) is None
