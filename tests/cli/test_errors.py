"""Bad input ends in one `Error:` line and a non-zero status, never a traceback.

These run the installed `builder` command and `python -m telemetry` as real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BUILDER, Runner, process_env, small_history


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env=process_env(tmp_path / "t", **env),
        timeout=60,
        check=False,
    )


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


@pytest.mark.parametrize(
    ("shell", "message"),
    [
        ("telemetry summary --since 99999999999d", "Error: --since must lie between 1970"),
        ("telemetry summary --until 0001-01-01T00:00:00", "Error: --until must lie between"),
        ("telemetry recent 99999999999999999999", "Error: Invalid value for 'COUNT'"),
        ("telemetry summary --top 9223372036854775808", "Error: Invalid value for '--top'"),
        ("telemetry ingest - <&-", "Error: standard input is closed"),
        ("telemetry export >&-", "Error: standard output is closed"),
        ("telemetry summary >&-", "Error: standard output is closed"),
        ("telemetry recent 1 >&-", "Error: standard output is closed"),
        ("telemetry export --format parquet >&-", "Error: standard output is closed"),
        ("telemetry summary --format json >/dev/full", "Error: cannot write to standard output"),
        ("telemetry export -o .", "Error: . is a directory; give a file name to --output"),
        ("telemetry --dir /dev/null/t ingest -", "Error: could not"),
    ],
)
def test_hostile_invocations_are_one_line_errors(tmp_path: Path, shell: str, message: str) -> None:
    result = _run(["bash", "-c", f"'{BUILDER}' {shell}"], tmp_path)
    assert result.returncode not in (0, 70), result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1


def test_huge_retention_days_is_a_config_error(tmp_path: Path) -> None:
    result = _run([BUILDER, "telemetry"], tmp_path, BUILDER_TELEMETRY_RETENTION_DAYS="99999999999")
    assert result.stderr == (
        "Error: BUILDER_TELEMETRY_RETENTION_DAYS must be a whole number from 1 to 100000, "
        "got '99999999999'\n"
    )


def test_a_flag_replaces_a_bad_variable(tmp_path: Path) -> None:
    result = _run(
        [BUILDER, "telemetry", "summary", "--threshold", "2"],
        tmp_path,
        BUILDER_TELEMETRY_REGRESSION_THRESHOLD="abc",
    )
    assert result.returncode == 0 and result.stdout.startswith("No telemetry data yet in ")


def test_a_store_under_glob_and_partition_like_folders(tmp_path: Path) -> None:
    store = tmp_path / "we[i]rd" / "date=2020-01-01" / "t"
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    env = {"BUILDER_TELEMETRY_DIR": str(store), "BUILDER_TELEMETRY_RETENTION_DAYS": "100000"}
    assert _run([BUILDER, "telemetry", "ingest", str(events)], tmp_path, **env).returncode == 0
    summary = _run([BUILDER, "telemetry"], tmp_path, **env)
    assert summary.returncode == 0, summary.stderr
    assert "Total Builds: 3\n" in summary.stdout
    recent = _run([BUILDER, "telemetry", "recent", "1"], tmp_path, **env)
    assert "     • //app:compile: 3000ms" in recent.stdout


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


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_a_closed_pipe_ends_quietly_with_status_0(tmp_path: Path, fmt: str) -> None:
    # 2,000 builds export to far more than a pipe holds, so the writer meets EPIPE.
    lines = []
    for n in range(2000):
        start = 1761575000000 + n * 60_000
        lines += [
            json.dumps({"event": "build_started", "session": f"s{n}", "ts": start}),
            json.dumps(
                {"event": "build_finished", "session": f"s{n}", "ts": start + 5, "success": True}
            ),
        ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines))
    _run(
        [BUILDER, "telemetry", "ingest", str(events)],
        tmp_path,
        BUILDER_TELEMETRY_RETENTION_DAYS="100000",
    )
    piped = _run(
        [
            "bash",
            "-c",
            f"'{BUILDER}' telemetry export --format {fmt} | head -c 10 >/dev/null; "
            "echo ${PIPESTATUS[0]}",
        ],
        tmp_path,
    )
    assert (piped.stdout, piped.stderr) == ("0\n", "")


def test_clear_removes_everything_without_asking_when_not_a_tty(small_cli: Runner) -> None:
    result = small_cli("telemetry", "clear")
    assert result.code == 0
    assert result.stdout.startswith("Removed 3 builds from ")
    assert small_cli("telemetry", "summary").stdout.startswith("No telemetry data yet in ")
    again = small_cli("telemetry", "clear")
    assert again.code == 0 and again.stdout.startswith("No telemetry data in ")


def test_dir_flag_beats_the_environment(small_cli: Runner, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    assert small_cli("telemetry", "--dir", str(other), "summary").stdout.startswith(
        "No telemetry data yet in "
    )
    assert "Total Builds: 3" in small_cli("telemetry", "summary").stdout


def test_corrupt_file_warning_is_one_line_on_stderr(small_cli: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "telemetry" / "sessions" / "date=2025-10-27" / "broken-n1.arrow"
    bad.write_bytes(b"garbage")
    result = small_cli("telemetry", "summary")
    assert result.code == 0 and "Total Builds: 3" in result.stdout
    assert result.stderr.startswith(f"Warning: skipping {bad}: not a complete Arrow IPC file")
    assert result.stderr.count("\n") == 1


def test_a_tilde_in_the_directory_means_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    for args in (["--dir", "~/tele"], []):
        env = {"HOME": str(home)} | ({} if args else {"BUILDER_TELEMETRY_DIR": "~/tele"})
        result = _run([BUILDER, "telemetry", *args, "ingest", str(events)], tmp_path, **env)
        assert result.returncode == 0, result.stderr
        recent = _run([BUILDER, "telemetry", *args, "recent", "1"], tmp_path, **env)
        assert recent.stdout.startswith("Recent 1 Build:"), recent.stderr
    assert (home / "tele" / "sessions").is_dir()


def test_clear_with_standard_input_closed_does_not_ask(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    _run([BUILDER, "telemetry", "ingest", str(events)], tmp_path)
    result = _run(["bash", "-c", f"'{BUILDER}' telemetry clear <&-"], tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"Removed 3 builds from {tmp_path / 't'}.\n"
