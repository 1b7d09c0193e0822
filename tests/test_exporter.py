"""Rendering: what a hostile label or error text can and cannot do to the output."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest

from telemetry.exporter import printable, sparkline
from tests.conftest import T0, Runner


def test_printable_escapes_control_characters() -> None:
    assert printable("//a\n\n⚠️  b\x1b[2J\tc\r\x00\x9b") == (
        "//a\\n\\n⚠️  b\\x1b[2J\\tc\\r\\x00\\x9b"
    )
    assert printable("//ok:target-name_1") == "//ok:target-name_1"


def test_printable_escapes_bidirectional_and_other_format_characters() -> None:
    # Overrides, embeddings, isolates and marks reorder what a person reads; zero-width
    # characters, the byte-order mark, a soft hyphen and tags hide text; a lone surrogate
    # cannot be written to a terminal at all.
    hostile = (
        "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
        "\u200b\u200d\u2060\ufeff\u00ad\U000e0041\udc80"
    )
    assert printable(f"a{hostile}b") == (
        "a\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e"
        "\\u200f\\u061c\\u200b\\u200d\\u2060\\ufeff\\xad\\U000e0041\\udc80b"
    )
    # Everything else is shown as it is: a backslash (so a path reads as written; an escape
    # typed as text therefore looks like an escaped character), letters of any script,
    # emoji, a no-break space, a private-use glyph.
    kept = "C:\\src\\a.c: \\u202e typed, é 中文 עברית 👍 \u00a0\ue000"
    assert printable(kept) == kept


def _events(*lines: dict[str, object]) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


def test_a_label_cannot_fake_a_regression_or_reach_the_terminal(cli: Runner) -> None:
    fake = "//a\n\n⚠️  Performance Regressions Detected:\n  • \x1b[2Jfake"
    cli(
        "telemetry",
        "ingest",
        "-",
        stdin=_events(
            {"event": "build_started", "session": "s", "ts": T0},
            {
                "event": "target_finished",
                "session": "s",
                "ts": T0 + 500,
                "target": fake,
                "status": "failed",
                "duration_ms": 500,
            },
            {
                "event": "build_finished",
                "session": "s",
                "ts": T0 + 600,
                "success": False,
                "error": "line one\n\x1b[31mline two",
            },
        ),
    )
    summary = cli("telemetry", "summary").stdout
    # No line of its own: the report has no regression section, and no escape sequence.
    assert "\n⚠️" not in summary and "\x1b" not in summary
    assert "  1. //a\\n\\n⚠️  Performance Regressions Detected:\\n  • \\x1b[2Jfake (avg: 0.5s)" in (
        summary
    )
    recent = cli("telemetry", "recent").stdout
    assert "   Error: line one \\x1b[31mline two\n" in recent and "\x1b" not in recent


def test_csv_cells_never_run_as_spreadsheet_formulas(cli: Runner) -> None:
    cli(
        "telemetry",
        "ingest",
        "-",
        stdin=_events(
            {"event": "build_started", "session": "=1+2", "ts": T0, "tool": "@SUM(A1)"},
            {
                "event": "build_finished",
                "session": "=1+2",
                "ts": T0 + 5,
                "success": False,
                "error": "-cmd|' /C calc'!A0",
            },
        ),
    )
    [row] = list(
        csv.DictReader(
            io.StringIO(cli("telemetry", "export", "--format", "csv").stdout, newline="")
        )
    )
    assert (row["sessionId"], row["tool"], row["error"]) == (
        "'=1+2",
        "'@SUM(A1)",
        "'-cmd|' /C calc'!A0",
    )
    # JSON keeps the values as they are.
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert session["sessionId"] == "=1+2"


@pytest.mark.parametrize("existing", [None, 0o640])
def test_output_file_permissions(small_cli: Runner, tmp_path: Path, existing: int | None) -> None:
    target = tmp_path / "out.csv"
    if existing is not None:
        target.write_text("old")
        target.chmod(existing)
    old_umask = os.umask(0o022)
    try:
        assert small_cli("telemetry", "export", "--format", "csv", "-o", str(target)).code == 0
    finally:
        os.umask(old_umask)
    expected = 0o644 if existing is None else existing
    assert stat.S_IMODE(target.stat().st_mode) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Heights 0-7 from lowest to highest: (v - low) / (high - low) * 7, to the nearest.
        ([0.0, 7.0], "\u2581\u2588"),
        ([10.0, 12.0, 11.0, 10.5], "\u2581\u2588\u2585\u2583"),  # 0, 7, 3.5 -> 4, 1.75 -> 2
        ([4.0, 4.0, 4.0], "\u2584\u2584\u2584"),  # all equal: the middle bars
        ([100.0, 0.0, 100.0 / 7], "\u2588\u2581\u2582"),
        # Halves go up: 5/14*7 = 2.5 -> 3 (the fourth bar), 3/14*7 = 1.5 -> 2 (the third).
        ([0.0, 5.0, 3.0, 14.0], "\u2581\u2584\u2583\u2588"),
        ([float("nan"), 0.0, float("inf"), 7.0], "\u2581\u2588"),  # not finite: left out
    ],
)
def test_a_sparkline_scales_from_the_lowest_to_the_highest_bar(
    values: list[float], expected: str
) -> None:
    assert sparkline(values) == expected
