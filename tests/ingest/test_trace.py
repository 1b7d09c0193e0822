"""Chrome traces: a real Bazel profile, and a small hand-made trace worked out by hand."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES

PROFILE = FIXTURES / "bazel" / "clean.profile.json"


def test_a_real_bazel_profile(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "t")
    result = ingest_file(storage, PROFILE)
    assert (result.sessions, result.problems) == (1, ())
    # Second route: the complete events, straight from the file.
    trace = json.loads(PROFILE.read_text())
    complete = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    assert not [e for e in trace["traceEvents"] if e.get("ph") in ("B", "E")]
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert (row["built"], row["total_targets"], row["tool"]) == (
        len(complete),
        len(complete),
        "trace",
    )
    assert row["executed_ms"] == sum(round(e["dur"] / 1000) for e in complete)
    # The trace's clock starts at otherData.date (to the second).
    date = datetime.strptime(trace["otherData"]["date"], "%a %b %d %H:%M:%S %Z %Y")
    first = min(round(e["ts"] / 1000) for e in complete)
    assert row["start_time"] == datetime.fromtimestamp(
        (date.replace(tzinfo=UTC).timestamp() * 1000 + first) / 1000, UTC
    )
    server = [
        round(e["dur"] / 1000) for e in complete if e["name"] == "Executing genrule //app:server"
    ]
    report = TelemetryAnalyzer(storage).summary(top=50)
    assert {b.target: b.mean_ms for b in report.bottlenecks}[
        "Executing genrule //app:server"
    ] == server[0]


def test_a_hand_made_trace_of_begin_end_pairs(tmp_path: Path) -> None:
    # Thread 1 compiles a over [0, 4) ms and links over [5, 9); thread 2 compiles b over
    # [1, 3). Peak 2 at once; 10 ms of work in a 9 ms build; no date, so it ended when
    # the file was written.
    events = [
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "w1"}},
        {"ph": "B", "name": "compile a", "pid": 1, "tid": 1, "ts": 0},
        {"ph": "X", "name": "compile b", "pid": 1, "tid": 2, "ts": 1000, "dur": 2000},
        {"ph": "E", "pid": 1, "tid": 1, "ts": 4000},
        {"ph": "i", "name": "marker", "pid": 1, "tid": 1, "ts": 4500},
        {"ph": "B", "name": "link", "pid": 1, "tid": 1, "ts": 5000},
        {"ph": "E", "pid": 1, "tid": 1, "ts": 9000},
    ]
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(events))
    written = 1_761_575_000_000
    os.utime(path, ns=(written * 1_000_000, written * 1_000_000))
    storage = TelemetryStorage(tmp_path / "t")
    assert ingest_file(storage, path).sessions == 1
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert (
        row["total_targets"],
        row["built"],
        row["duration_ms"],
        row["executed_ms"],
        row["peak_concurrency"],
    ) == (3, 3, 9, 10, 2)
    assert row["start_time"] == datetime.fromtimestamp((written - 9) / 1000, UTC)
    assert row["parallelism_utilization"] == 100 * 10 / (9 * 2)
    # The same trace again is the same build.
    assert ingest_file(storage, path).duplicates == 1
