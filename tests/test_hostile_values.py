"""Hostile values: labels, session ids and target names built to break out of a line or the
store directory, impossible timestamps, and a fuzz run over the command line's options.
Each is stored safely (and comes back exactly) or refused with one clear error; nothing is
written outside the store, and nothing crashes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telemetry.recent
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import Runner

T0 = 1761575000000
HOSTILE = [
    "line\nbreak",
    "carriage\rreturn",
    "\x1b[31mred\x1b[0m",
    "nul\x00byte",
    "../../../../etc/passwd",
    "/absolute/path",
    "..",
    "x" * 10_000,
    "tab\tand\u2028separator",
    "date=2025-01-01",
]


def _build(session: str, target: str, labels: dict[str, str]) -> bytes:
    events = [
        {"event": "build_started", "session": session, "ts": T0, "labels": labels},
        {"event": "target_started", "session": session, "ts": T0, "target": target},
        {"event": "target_finished", "session": session, "ts": T0 + 5, "target": target,
         "status": "built"},
        {"event": "build_finished", "session": session, "ts": T0 + 10, "success": True},
    ]  # fmt: skip
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def _outside(tmp_path: Path) -> set[Path]:
    store = tmp_path / "telemetry"
    return {p for p in tmp_path.rglob("*") if store not in p.parents and p != store}


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_are_stored_exactly_and_stay_inside_the_store(
    cli: Runner, tmp_path: Path, value: str
) -> None:
    before = _outside(tmp_path)
    stored = cli("telemetry", "ingest", "-", stdin=_build(value, value, {value: value}))
    assert (stored.code, stored.stderr) == (0, ""), stored.stderr
    assert _outside(tmp_path) == before  # nothing written beside the store
    store = tmp_path / "telemetry"
    for path in store.rglob("*.arrow"):
        # File names come from the time and a random part, never from the data.
        assert path.parent.parent.parent == store
        assert path.parent.name == "date=2025-10-27"
    [session] = json.loads(cli("telemetry", "export").stdout)["sessions"]
    assert (session["sessionId"], session["labels"]) == (value, {value: value})
    report = json.loads(cli("telemetry", "summary", "--format", "json").stdout)
    assert [b["target"] for b in report["bottlenecks"]] == [value]
    # In text, a name can never start a line of its own: one line per build and target.
    recent = cli("telemetry", "recent", "1").stdout.splitlines()
    assert len(recent) == 5, recent


def test_both_routes_of_recent_show_bidirectional_controls_escaped(
    cli: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "//a\u202e:b\u2066"
    failed = _build("s", target, {}).replace(
        b'"success": true', b'"success": false, "error": "failed\\u200f\\u061c"'
    )
    assert cli("telemetry", "ingest", "-", stdin=failed).code == 0
    shown = cli("telemetry", "recent", "1").stdout
    assert shown.splitlines()[2:] == [
        "1. [✗] 2025-10-27T14:23:20 - 10ms (cache: 0.0%)",
        "   Error: failed\\u200f\\u061c",
        "   Top bottlenecks:",
        "     • //a\\u202e:b\\u2066: 5ms",
    ]
    monkeypatch.setattr(telemetry.recent, "MAX_ROWS", 0)  # the analyzer answers instead
    assert cli("telemetry", "recent", "1").stdout == shown


@pytest.mark.parametrize(
    ("ts", "error"),
    [
        (-1, "between 1970 and year 9999"),
        (253_402_300_800_000, "between 1970 and year 9999"),
        ("NaN", "not valid JSON"),
        ("1e400", "must be a finite number"),
        ('"0001-01-01T00:00:00Z"', "between 1970 and year 9999"),
        ('"next tuesday"', "RFC 3339"),
    ],
)
def test_impossible_timestamps_are_one_clear_error(
    cli: Runner, tmp_path: Path, ts: object, error: str
) -> None:
    line = f'{{"event":"build_started","session":"s","ts":{ts}}}\n'.encode()
    result = cli("telemetry", "ingest", "-", stdin=line)
    assert result.code == 1
    assert error in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "telemetry" / "sessions").exists()


@pytest.mark.parametrize("ts", [0, 253_402_300_799_999, '"9999-12-31T23:59:59Z"'])
def test_the_first_and_last_storable_moments_are_stored(
    cli: Runner, tmp_path: Path, ts: object
) -> None:
    events = [
        f'{{"event":"build_started","session":"s","ts":{ts}}}',
        f'{{"event":"build_finished","session":"s","ts":{ts},"success":true}}',
    ]
    # Stored by a machine whose clock says it is the last second of year 9999 (a time
    # further ahead of the clock than an hour is refused).
    end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    result = ingest_jsonl(TelemetryStorage(tmp_path / "telemetry"), events, clock=lambda: end)
    assert (result.sessions, result.problems) == (1, ())
    assert cli("telemetry", "recent", "1").code == 0
    assert len(json.loads(cli("telemetry", "export").stdout)["sessions"]) == 1


# -- a fuzz run over the command line ---------------------------------------------------------

WORDS = [
    "summary", "recent", "export", "ingest", "verify", "clear", "--format", "--top",
    "--threshold", "--since", "--until", "--dir", "--output", "--repair", "--profile",
    "--help", "-", "json", "csv", "parquet", "arrow", "text", "auto", "jsonl", "ninja-log",
    "chrome-trace", "bazel-bep", "turbo-summary", "0", "-1", "3", "1e309", "nan", "9" * 40,
    "2025-10-27", "2025-13-01", "7d", "-5d", "12h", "2025-10-27T14:00", "--yes", "",
]  # fmt: skip
# Free text, kept inside the scratch folder: nothing absolute, nothing above it.
free_text = st.text(max_size=12).filter(
    lambda t: not t.startswith(("/", "~")) and ".." not in t and "\x00" not in t
)


@contextlib.contextmanager
def _scratch(history: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ["BUILDER_TELEMETRY_DIR"] = str(Path(folder) / "telemetry")
        os.environ["BUILDER_TELEMETRY_RETENTION_DAYS"] = "100000"
        (Path(folder) / "events.jsonl").write_bytes(history)
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def _main(args: list[str], stdin: bytes = b"") -> tuple[int, str]:
    from telemetry.cli import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stdout, sys.stderr = out, err
    try:
        main(args)
        code: object = 0
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    err.flush()
    assert isinstance(err.buffer, io.BytesIO)
    return (code if isinstance(code, int) else 1), err.buffer.getvalue().decode()


@settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(WORDS) | free_text | st.just("events.jsonl"), max_size=6))
def test_any_command_line_is_carried_out_or_refused_with_one_error(words: list[str]) -> None:
    with _scratch(_build("b", "//t", {"k": "v"})) as folder:
        _main(["telemetry", "ingest", "events.jsonl"])
        code, err = _main(["telemetry", *words])
        assert code in (0, 1, 2), (words, code, err)
        assert "Traceback" not in err
        if code != 0:  # one error, in one line (a usage error comes after the usage)
            assert len([line for line in err.splitlines() if line.startswith("Error")]) == 1
        # Nothing moved the process, and unless it was cleared the stored build is there.
        assert Path.cwd() == folder
        if "clear" not in words:
            store = TelemetryStorage(folder / "telemetry")
            assert store.session_ids() == {"b"}, words
