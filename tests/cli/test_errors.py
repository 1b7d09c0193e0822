"""Bad input ends in one `Error:` line and a non-zero status, never a traceback.

These run the installed `builder` command and `python -m telemetry` as real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Runner, small_history


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
    environment |= {"BUILDER_TELEMETRY_DIR": str(tmp_path / "t")} | env
    return subprocess.run(
        args, capture_output=True, text=True, env=environment, timeout=60, check=False
    )


# The console script installed beside this interpreter (the venv's bin/).
BUILDER = str(Path(sys.executable).with_name("builder"))


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["telemetry"],
            {"BUILDER_TELEMETRY_MAX_SESSIONS": "abc"},
            "Error: BUILDER_TELEMETRY_MAX_SESSIONS must be a whole number from 1 to "
            "1000000000, got 'abc'",
        ),
        (
            ["telemetry", "summary"],
            {"BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "x"},
            "Error: BUILDER_TELEMETRY_REGRESSION_THRESHOLD must be a number greater than 1",
        ),
        (["telemetry", "export", "--format", "xml"], {}, "Error: Invalid value for '--format'"),
        (["telemetry", "summary", "--since", "yesterday-ish"], {}, "Error: --since must be"),
        (
            ["telemetry", "ingest", "/nonexistent/events.jsonl"],
            {},
            "Error: /nonexistent/events.jsonl does not exist",
        ),
        (["telemetry", "frobnicate"], {}, "Error: No such command 'frobnicate'"),
        (["telemetry", "summary", "--threshold", "0.9"], {}, "Error: --threshold must be"),
    ],
)
def test_one_error_line_no_traceback(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = _run([BUILDER, *args], tmp_path, **env)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    env = {"BUILDER_TELEMETRY_RETENTION_DAYS": "100000"}
    assert (
        _run(
            [sys.executable, "-m", "telemetry", "telemetry", "ingest", str(events)], tmp_path, **env
        ).returncode
        == 0
    )
    by_module = _run([sys.executable, "-m", "telemetry", "telemetry", "recent", "1"], tmp_path)
    by_script = _run([BUILDER, "telemetry", "recent", "1"], tmp_path)
    assert by_module.stdout == by_script.stdout
    assert by_module.stdout.startswith("Recent 1 Build:\n\n1. [✗] 2025-10-27T16:23:20 - 3000ms")


def test_help_works_and_lists_the_commands(tmp_path: Path) -> None:
    result = _run([BUILDER, "telemetry", "--help"], tmp_path)
    assert result.returncode == 0
    for command in ("summary", "recent", "export", "clear", "ingest"):
        assert command in result.stdout


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    _run(
        [BUILDER, "telemetry", "ingest", str(events)],
        tmp_path,
        BUILDER_TELEMETRY_RETENTION_DAYS="100000",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
    env["BUILDER_TELEMETRY_DIR"] = str(tmp_path / "t")
    piped = subprocess.run(
        f"'{BUILDER}' telemetry export | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert piped.stdout == '{\n  "sessi'
    assert "Traceback" not in piped.stderr and "Error" not in piped.stderr


def test_clear_removes_everything_without_asking_when_not_a_tty(small_cli: Runner) -> None:
    result = small_cli("telemetry", "clear")
    assert result.code == 0
    assert result.stdout.startswith("Removed 3 builds from ")
    assert small_cli("telemetry", "summary").stdout.startswith("No telemetry data yet.")
    again = small_cli("telemetry", "clear")
    assert again.code == 0 and again.stdout.startswith("No telemetry data in ")


def test_dir_flag_beats_the_environment(small_cli: Runner, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    assert small_cli("telemetry", "--dir", str(other), "summary").stdout.startswith(
        "No telemetry data yet."
    )
    assert "Total Builds: 3" in small_cli("telemetry", "summary").stdout


def test_corrupt_file_warning_is_one_line_on_stderr(small_cli: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "telemetry" / "sessions" / "date=2025-10-27" / "broken-n1.arrow"
    bad.write_bytes(b"garbage")
    result = small_cli("telemetry", "summary")
    assert result.code == 0 and "Total Builds: 3" in result.stdout
    assert result.stderr.startswith(f"Warning: skipping {bad}: not a complete Arrow IPC file")
    assert result.stderr.count("\n") == 1
