"""Reports in a locale whose encoding cannot hold their marks (Latin-1, ASCII) fall back to
plain ASCII ones, never to an internal error; build text there is escaped, JSON stays JSON.

PYTHONIOENCODING gives a process the encoding such a locale gives it, without the locale
having to be installed; one test also runs in the real locale where the machine has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BUILDER, T0, process_env, small_history

# tests/cli/test_recent.py's SMALL_RECENT, with the ASCII marks written in by hand.
ASCII_RECENT = """\
Recent 3 Builds:

1. [FAIL] 2025-10-27T16:23:20 - 3000ms (cache: 50.0%)
   Error: Compilation failed for //app:compile
   Top bottlenecks:
     * //app:compile: 3000ms

2. [OK] 2025-10-27T15:23:20 - 2000ms (cache: 40.0%)
   Top bottlenecks:
     * //app:test: 1100ms
     * //app:compile: 1000ms
     * //app:link: 600ms

3. [OK] 2025-10-27T14:23:20 - 1000ms (cache: 25.0%)
   Top bottlenecks:
     * //app:compile: 400ms
     * //app:test: 300ms
     * //app:link: 200ms
"""
# Build c took 3000 ms against the 1500 ms mean of a and b before it.
ASCII_REGRESSIONS = """
!!  Performance Regressions Detected:
  * 2025-10-27T16:23:20: 2.0x slower than average (expected 1.5s, got 3.0s)
"""


def _run(
    args: list[str], store: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[bytes]:
    environment = process_env(store, **env)
    for name in ("LC_ALL", "LC_CTYPE", "LANG", "PYTHONUTF8", "PYTHONIOENCODING"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [BUILDER, *args],
        input=stdin.encode(),
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    done = _run(["telemetry", "ingest", "-"], tmp_path / "t", stdin="\n".join(small_history()))
    assert done.returncode == 0, done.stderr
    return tmp_path / "t"


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_reports_fall_back_to_ascii_marks(store: Path, encoding: str) -> None:
    recent = _run(["telemetry", "recent"], store, PYTHONIOENCODING=encoding)
    assert (recent.returncode, recent.stderr) == (0, b"")
    assert recent.stdout.decode("ascii") == ASCII_RECENT
    summary = _run(["telemetry", "summary", "--top", "1"], store, PYTHONIOENCODING=encoding)
    assert (summary.returncode, summary.stderr) == (0, b"")
    assert summary.stdout.decode("ascii").endswith(
        "Top Bottlenecks:\n  1. //app:compile (avg: 1.5s)\n\nBuild Time Trend: Increasing\n"
        + ASCII_REGRESSIONS
    )


def test_in_a_real_latin_1_locale(store: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.stdout.encoding)"],
        env={"PATH": os.environ["PATH"], "LC_ALL": "en_US.ISO-8859-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.stdout.strip() != "iso8859-1":
        pytest.skip(
            "the en_US.ISO-8859-1 locale is not installed (localedef -i en_US -f ISO-8859-1)"
        )
    for args in (["telemetry", "recent"], ["telemetry", "recent", "--since", "2025-10-27"]):
        result = _run(args, store, LC_ALL="en_US.ISO-8859-1")
        assert (result.returncode, result.stdout.decode("latin-1")) == (0, ASCII_RECENT)


def test_the_c_locale_is_utf_8_to_python(store: Path) -> None:
    # Python 3.7+ reads the C and POSIX locales as UTF-8 (PEP 538, PEP 540): the marks stay.
    plain = _run(["telemetry", "recent", "1"], store, LC_ALL="C")
    assert plain.returncode == 0
    assert plain.stdout.decode().startswith("Recent 1 Build:\n\n1. [✗] 2025-10-27T16:23:20")


def test_build_text_is_escaped_not_taken_for_a_mark(tmp_path: Path) -> None:
    target = "//app:✓ü"
    events = [
        {"event": "build_started", "session": "s", "ts": T0},
        {"event": "target_finished", "session": "s", "ts": T0 + 500, "target": target,
         "status": "built", "duration_ms": 500},
        {"event": "build_finished", "session": "s", "ts": T0 + 600, "success": True},
    ]  # fmt: skip
    store = tmp_path / "t"
    _run(["telemetry", "ingest", "-"], store, stdin="\n".join(json.dumps(e) for e in events))
    text = _run(["telemetry", "recent"], store, PYTHONIOENCODING="latin-1")
    assert text.returncode == 0
    assert text.stdout.decode("latin-1").endswith(
        "1. [OK] 2025-10-27T14:23:20 - 600ms (cache: 0.0%)\n"
        "   Top bottlenecks:\n"
        "     * //app:\\u2713ü: 500ms\n"
    )
    for args in (
        ["telemetry", "recent", "--format", "json"],
        ["telemetry", "summary", "--format", "json"],
    ):
        latin = _run(args, store, PYTHONIOENCODING="latin-1")
        assert latin.returncode == 0 and b"\\u2713" in latin.stdout
        assert json.loads(latin.stdout.decode("latin-1")) == json.loads(_run(args, store).stdout)
