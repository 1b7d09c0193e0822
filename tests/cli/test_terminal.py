"""Behaviour in a real terminal (a pseudo-terminal): colour, NO_COLOR, and clear's question."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from tests.conftest import BUILDER, process_env, small_history


def _in_terminal(
    args: list[str], tmp_path: Path, answer: bytes = b"", **env: str
) -> tuple[int, str]:
    """Run builder with a pseudo-terminal as stdin and stdout; returns (status, screen)."""
    environment = process_env(tmp_path / "t", TERM="xterm", **env)
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        [BUILDER, *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        close_fds=True,
    )
    os.close(terminal)
    if answer:
        time.sleep(0.5)
        os.write(controller, answer)
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


def test_clear_asks_in_a_terminal(tmp_path: Path) -> None:
    _store(tmp_path)
    code, screen = _in_terminal(["telemetry", "clear"], tmp_path, answer=b"n\n")
    assert code == 1
    assert "Remove all telemetry data in" in screen and "(3 builds)?" in screen
    assert any((tmp_path / "t" / "sessions").iterdir())
    code, screen = _in_terminal(["telemetry", "clear"], tmp_path, answer=b"y\n")
    assert code == 0 and "Removed 3 builds" in screen
    assert not (tmp_path / "t" / "sessions").exists()
