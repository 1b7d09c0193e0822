"""The line-by-line reading of JSON lines and the clock: no build can be stored dated so far
ahead that retention, which keeps the newest days, would remove real builds for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.ipc as ipc

from telemetry.ingest import ingest_jsonl
from telemetry.ingest.jsonl import IngestProblem
from telemetry.storage import TelemetryStorage
from tests.conftest import HOUR, T0, small_history

# The small history's builds start at T0, T0 + 1 h and T0 + 2 h; it is an hour later now.
NOW = datetime(2025, 10, 27, 17, 23, 20, tzinfo=UTC)
NOW_MS = T0 + 3 * HOUR


def _line(kind: str, session: str, ts: int, **fields: object) -> str:
    return json.dumps({"event": kind, "session": session, "ts": ts, **fields})


def _build(session: str, start: int) -> list[str]:
    return [
        _line("build_started", session, start),
        _line("target_started", session, start + 10, target="//t"),
        _line("target_finished", session, start + 500, target="//t", status="built"),
        _line("build_finished", session, start + 1000, success=True),
    ]


def _sessions(storage: TelemetryStorage) -> dict[str, tuple[int, int]]:
    """Each stored build's start (epoch ms) and target count, read from the files."""
    rows: dict[str, tuple[int, int]] = {}
    for stored in storage.files("sessions"):
        with ipc.open_file(stored.path) as reader:
            table = reader.read_all()
        starts = table["start_time"].cast(pa.int64()).to_pylist()
        for session, start, total in zip(
            table["session_id"].to_pylist(), starts, table["total_targets"].to_pylist(), strict=True
        ):
            rows[session] = (start, total)
    return rows


def test_a_build_started_far_ahead_is_skipped_whole_and_reported_once(
    storage: TelemetryStorage,
) -> None:
    ahead = _build("ahead\u202e", NOW_MS + 2 * HOUR)
    lines = [*small_history()[:8], *ahead, *small_history()[8:]]
    result = ingest_jsonl(storage, lines, clock=lambda: NOW)
    assert (result.sessions, result.interrupted, result.events) == (3, 0, 25)
    assert result.problems == (
        IngestProblem(
            9,
            "telemetry refused build 'ahead\\u202e' with all its events: it starts at "
            "2025-10-27T19:23:20, more than an hour ahead of this machine's clock; check the "
            "clock of the machine that ran it",
        ),
    )
    assert sorted(_sessions(storage)) == ["a", "b", "c"]


def test_an_event_dated_far_ahead_is_a_bad_line_and_its_build_is_kept(
    storage: TelemetryStorage,
) -> None:
    lines = _build("b", NOW_MS - HOUR)
    lines.insert(3, _line("target_finished", "b", NOW_MS + 2 * HOUR, target="//u", status="built"))
    result = ingest_jsonl(storage, lines, clock=lambda: NOW)
    assert (result.sessions, result.events) == (1, 4)
    [problem] = result.problems
    assert problem.line == 4
    assert problem.message.startswith(
        "telemetry ignored target_finished of 'b': ts 2025-10-27T19:23:20 is more than an hour "
        "ahead of this machine's clock; check the clock of the machine that sent it"
    )
    assert _sessions(storage) == {"b": (NOW_MS - HOUR, 1)}


def test_a_build_a_minute_ahead_is_stored_and_one_an_hour_ahead_is_not(
    storage: TelemetryStorage,
) -> None:
    lines = [
        *_build("a minute ahead", NOW_MS + 60_000),
        *_build("just within the hour", NOW_MS + HOUR - 1001),
        *_build("an hour ahead", NOW_MS + HOUR),
    ]
    result = ingest_jsonl(storage, lines, clock=lambda: NOW)
    assert [p.line for p in result.problems] == [9]
    assert _sessions(storage) == {
        "a minute ahead": (NOW_MS + 60_000, 1),
        "just within the hour": (NOW_MS + HOUR - 1001, 1),
    }
    # The same input an hour later: every build is stored.
    later = ingest_jsonl(storage, lines, clock=lambda: NOW + timedelta(hours=1))
    assert (later.sessions, later.duplicates, later.problems) == (1, 2, ())
