"""Behaviour in a real terminal (a pseudo-terminal): colour, NO_COLOR and TERM=dumb, clear's
question, and text from builds, which reaches a terminal only escaped."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import subprocess
import termios
import time
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import BUILDER, process_env, small_history


def _in_terminal(
    args: list[str], tmp_path: Path, answer: bytes = b"", **env: str
) -> tuple[int, str]:
    """Run builder with a pseudo-terminal as stdin and stdout; returns (status, screen).
    The terminal passes output on as written (no CR added before LF), so the screen holds
    exactly the bytes builder wrote. ``answer`` is typed once a question is on the screen."""
    environment = process_env(tmp_path / "t", **({"TERM": "xterm"} | env))
    controller, terminal = os.openpty()
    modes = termios.tcgetattr(terminal)
    modes[1] &= ~termios.OPOST
    termios.tcsetattr(terminal, termios.TCSANOW, modes)
    process = subprocess.Popen(
        [BUILDER, *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        close_fds=True,
    )
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
            if answer and screen.endswith(b"[y/N]: "):
                os.write(controller, answer)
                answer = b""
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=60), screen.decode()


def _store(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(small_history()))
    subprocess.run(
        [BUILDER, "telemetry", "ingest", str(events)],
        env=process_env(tmp_path / "t"),
        check=True,
        capture_output=True,
    )


def test_colour_in_a_terminal_and_never_with_no_color(tmp_path: Path) -> None:
    _store(tmp_path)
    code, coloured = _in_terminal(["telemetry", "recent", "1"], tmp_path)
    assert code == 0
    assert "\x1b[31m✗\x1b[0m" in coloured
    code, plain = _in_terminal(["telemetry", "recent", "1"], tmp_path, NO_COLOR="1")
    assert code == 0
    assert "\x1b[" not in plain and "[✗] 2025-10-27T16:23:20 - 3000ms" in plain


def test_no_colour_on_a_dumb_terminal(tmp_path: Path) -> None:
    # Editors' shell buffers and some CI logs say TERM=dumb: escape codes would show as text.
    _store(tmp_path)
    for args in (["telemetry", "recent", "1"], ["telemetry", "summary", "--top", "1"]):
        code, screen = _in_terminal(args, tmp_path, TERM="dumb")
        assert code == 0 and "\x1b[" not in screen
    assert screen.startswith("=== Build Telemetry Summary ===\n")


def test_clear_asks_in_a_terminal(tmp_path: Path) -> None:
    _store(tmp_path)
    code, screen = _in_terminal(["telemetry", "clear"], tmp_path, answer=b"n\n")
    assert code == 1
    assert screen == (
        f"Remove all telemetry data in {tmp_path / 't'} (3 builds)? [y/N]: n\n"
        f"Nothing removed from {tmp_path / 't'}.\n"
    )
    assert any((tmp_path / "t" / "sessions").iterdir())
    code, screen = _in_terminal(["telemetry", "clear"], tmp_path, answer=b"y\n")
    assert code == 0 and "Removed 3 builds" in screen
    assert not (tmp_path / "t" / "sessions").exists()


# -- text from builds -------------------------------------------------------------------------

T0 = 1761575000000  # 2025-10-27T14:23:20Z
# A right-to-left override, isolates and marks that reorder what a person reads, a clear-screen
# escape sequence, an Arabic letter mark, a byte-order mark, a zero-width space and a tag.
TARGETS = ("//a\u202e:b", "//c\u2066d\u2069\u200f")
ERROR = "boom \x1b[2J\u061c\ufeff\u200b\U000e0041"
SESSION, BRANCH, LABELS = "s\u202e1", "fix\u202e/evil", {"who": "\u202eevil"}
# The same texts as a terminal shows them, written out by hand.
SHOWN_TARGETS = ("//a\\u202e:b", "//c\\u2066d\\u2069\\u200f")
SHOWN_ERROR = "boom \\x1b[2J\\u061c\\ufeff\\u200b\\U000e0041"
JSON_ERROR = "boom \\u001b[2J\\u061c\\ufeff\\u200b\\udb40\\udc41"
# Controls, format characters, line and paragraph separators, lone surrogates.
UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def _store_hostile(tmp_path: Path) -> None:
    events = [
        {"event": "build_started", "session": SESSION, "ts": T0, "branch": BRANCH,
         "labels": LABELS},
        {"event": "target_started", "session": SESSION, "ts": T0, "target": TARGETS[0]},
        {"event": "target_finished", "session": SESSION, "ts": T0 + 600, "target": TARGETS[0],
         "status": "built"},
        {"event": "target_started", "session": SESSION, "ts": T0 + 600, "target": TARGETS[1]},
        {"event": "target_finished", "session": SESSION, "ts": T0 + 900, "target": TARGETS[1],
         "status": "built"},
        {"event": "build_finished", "session": SESSION, "ts": T0 + 1000, "success": False,
         "error": ERROR},
    ]  # fmt: skip
    subprocess.run(
        [BUILDER, "telemetry", "ingest", "-"],
        input="".join(json.dumps(e) + "\n" for e in events).encode(),
        env=process_env(tmp_path / "t"),
        check=True,
        capture_output=True,
    )


def _piped(args: list[str], tmp_path: Path) -> bytes:
    done = subprocess.run(
        [BUILDER, *args], env=process_env(tmp_path / "t"), capture_output=True, check=True
    )
    assert done.stderr == b""
    return done.stdout


def _unsafe(screen: str) -> set[str]:
    """What reached the terminal raw besides the line ends."""
    return {c for c in screen if unicodedata.category(c) in UNSAFE} - {"\n", "\r"}


@pytest.mark.torture
@pytest.mark.parametrize(
    "args",
    [["telemetry", "recent", "1"], ["telemetry", "recent", "1", "--since", "2025-10-27"]],
    ids=["without-the-parser", "through-the-parser"],
)
def test_recent_shows_build_text_escaped(tmp_path: Path, args: list[str]) -> None:
    _store_hostile(tmp_path)
    code, screen = _in_terminal(args, tmp_path, NO_COLOR="1")
    assert code == 0
    assert screen == (
        "Recent 1 Build:\n"
        "\n"
        "1. [✗] 2025-10-27T14:23:20 - 1000ms (cache: 0.0%)\n"
        f"   Error: {SHOWN_ERROR}\n"
        "   Top bottlenecks:\n"
        f"     • {SHOWN_TARGETS[0]}: 600ms\n"
        f"     • {SHOWN_TARGETS[1]}: 300ms\n"
    )


@pytest.mark.torture
@pytest.mark.parametrize(
    "args",
    [["telemetry", "summary"], ["telemetry", "summary", "--top", "5"]],
    ids=["without-the-parser", "through-the-parser"],
)
def test_summary_shows_build_text_escaped(tmp_path: Path, args: list[str]) -> None:
    _store_hostile(tmp_path)
    code, screen = _in_terminal(args, tmp_path, NO_COLOR="1")
    assert code == 0 and _unsafe(screen) == set()
    assert f"  1. {SHOWN_TARGETS[0]} (avg: 0.6s)\n  2. {SHOWN_TARGETS[1]} (avg: 0.3s)\n" in screen


@pytest.mark.torture
@pytest.mark.parametrize(
    ("args", "key", "value"),
    [
        (["telemetry", "summary", "--format", "json"], "target", TARGETS[0]),
        (["telemetry", "recent", "1", "--format", "json"], "target", TARGETS[0]),
        (["telemetry", "export"], "sessionId", SESSION),
        (["telemetry", "export", "--format", "json", "--since", "2025-10-27"], "error", ERROR),
    ],
    ids=["summary", "recent", "export", "export-error"],
)
def test_json_in_a_terminal_is_escaped_and_reads_as_the_same_values(
    tmp_path: Path, args: list[str], key: str, value: str
) -> None:
    _store_hostile(tmp_path)
    code, screen = _in_terminal(args, tmp_path)
    assert code == 0 and _unsafe(screen) == set()
    shown = {TARGETS[0]: "//a\\u202e:b", SESSION: "s\\u202e1", ERROR: JSON_ERROR}[value]
    assert f'"{key}": "{shown}"' in screen
    piped = _piped(args, tmp_path)
    assert json.loads(screen) == json.loads(piped)
    # Piped, the value is as stored: JSON escapes only what it must (ESC, not U+202E).
    assert f'"{key}": {json.dumps(value, ensure_ascii=False)}'.encode() in piped


@pytest.mark.torture
def test_export_to_a_terminal_is_escaped_and_to_a_pipe_or_file_exact(tmp_path: Path) -> None:
    _store_hostile(tmp_path)
    args = ["telemetry", "export", "--format", "csv"]
    code, screen = _in_terminal(args, tmp_path)
    assert code == 0 and _unsafe(screen) == set()
    [shown] = csv.DictReader(io.StringIO(screen, newline=""))
    assert (shown["sessionId"], shown["error"], shown["branch"], shown["labels"]) == (
        "s\\u202e1",
        SHOWN_ERROR,
        "fix\\u202e/evil",
        '{"who": "\\u202eevil"}',
    )
    piped = _piped(args, tmp_path)
    [exact] = csv.DictReader(io.StringIO(piped.decode(), newline=""))
    assert (exact["sessionId"], exact["error"], exact["branch"], exact["labels"]) == (
        SESSION,
        ERROR,
        BRANCH,
        json.dumps(LABELS, ensure_ascii=False),
    )
    text = {"sessionId", "error", "branch", "labels"}
    assert {k: v for k, v in shown.items() if k not in text} == {
        k: v for k, v in exact.items() if k not in text
    }
    # --output writes a file, exact even when stdout is a terminal.
    for fmt in ("csv", "json"):
        written = tmp_path / f"sessions.{fmt}"
        code, screen = _in_terminal(
            ["telemetry", "export", "--format", fmt, "--output", str(written)], tmp_path
        )
        assert (code, screen) == (0, "")
        assert written.read_bytes() == _piped(["telemetry", "export", "--format", fmt], tmp_path)
    assert SESSION.encode() in written.read_bytes()


@pytest.mark.torture
def test_errors_quote_build_text_escaped(tmp_path: Path) -> None:
    code, screen = _in_terminal(["record", "no\u202esuch\x1b[2J"], tmp_path)
    assert (code, screen) == (127, "Error: no\\u202esuch\\x1b[2J: command not found\n")


# The small history's builds a, b, c took 1000, 2000 and 3000 ms, with cache hit rates of
# 25% (1 cached of 4 executed or cached), 40% (2 of 5) and 50% (1 of 2): both rise, and
# each series, scaled from its lowest to its highest value over eight heights, is the lowest
# bar, the bar of (2000 - 1000) / 2000 * 7 = 3.5 -> 4 (the fifth), and the highest; the hit
# rates' middle value is at (40 - 25) / 25 * 7 = 4.2 -> 4 too.
SPARKS = "\u2581\u2585\u2588"


@pytest.mark.parametrize(
    "args",
    [["telemetry"], ["telemetry", "summary"], ["telemetry", "summary", "--by", "weighted"]],
)
def test_a_terminals_summary_shows_the_trends_as_sparklines(
    tmp_path: Path, args: list[str]
) -> None:
    _store(tmp_path)
    code, screen = _in_terminal(args, tmp_path)
    assert code == 0
    lines = screen.splitlines()
    assert f"  Trend: Increasing  {SPARKS}" in lines
    assert f"Build Time Trend: Increasing  {SPARKS}" in lines
    # Decoration only: the same report as piped, but for the two bars.
    piped = _piped(args, tmp_path).decode()
    assert re.sub(r"\x1b\[[0-9;]*m", "", screen.replace(f"  {SPARKS}", "")) == piped
    assert "Increasing  " not in piped


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_sparklines_where_there_is_no_decoration(tmp_path: Path, env: dict[str, str]) -> None:
    _store(tmp_path)
    code, screen = _in_terminal(["telemetry", "summary"], tmp_path, **env)
    assert code == 0
    assert screen == _piped(["telemetry", "summary"], tmp_path).decode()


def test_a_latin_1_terminal_gets_sparklines_in_ascii(tmp_path: Path) -> None:
    _store(tmp_path)
    code, screen = _in_terminal(["telemetry", "summary"], tmp_path, PYTHONIOENCODING="latin-1")
    assert code == 0
    # The lowest, fifth and highest of the eight heights "_.-:=+*#".
    assert "Build Time Trend: Increasing  _=#" in screen.splitlines()
    assert "  Trend: Increasing  _=#" in screen.splitlines()
