"""The collector: aggregation into session and target rows, threads, and never failing a build."""

from __future__ import annotations

import threading
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.collector import TelemetryCollector, peak_concurrency
from telemetry.errors import StorageError, TelemetryWarning
from telemetry.storage import TelemetryStorage

T0 = 1761575000000


class ListSink:
    def __init__(self) -> None:
        self.batches: list[tuple[pa.RecordBatch, pa.RecordBatch]] = []

    def write(self, sessions: pa.RecordBatch, targets: pa.RecordBatch) -> None:
        self.batches.append((sessions, targets))


def test_a_build_becomes_one_session_row_and_target_rows() -> None:
    sink = ListSink()
    collector = TelemetryCollector(sink)
    collector.build_started("b", ts=T0, parallelism=4, labels={"branch": "main"})
    collector.target_started("b", "//a", ts=T0 + 10, worker=1)
    collector.target_finished("b", "//a", ts=T0 + 110, status="built")
    collector.target_finished("b", "//b", ts=T0 + 120, status="cached")
    collector.target_finished(
        "b", "//c", ts=T0 + 500, status="failed", duration_ms=300, error="oops"
    )
    assert sink.batches == []  # nothing is written before the build finishes
    collector.build_finished("b", ts=T0 + 1000, success=False)
    [(session, targets)] = sink.batches
    assert session.to_pylist()[0] == {
        "session_id": "b",
        "start_time": datetime(2025, 10, 27, 14, 23, 20, tzinfo=UTC),
        "end_time": datetime(2025, 10, 27, 14, 23, 21, tzinfo=UTC),
        "duration_ms": 1000,
        "succeeded": False,
        "interrupted": False,
        "error": "target //c failed",
        "total_targets": 3,
        "built": 1,
        "cached": 1,
        "failed": 1,
        "skipped": 0,
        "executed_ms": 400,
        "peak_concurrency": 1,
        "parallelism": 4,
        "tool": None,
        "host": None,
        "commit": None,
        "branch": None,
        "labels": [("branch", "main")],
    }
    rows = targets.to_pydict()
    assert [t.timestamp() * 1000 - T0 for t in rows["start_time"]] == [10, 120, 200]
    assert [t.timestamp() * 1000 - T0 for t in rows["end_time"]] == [110, 120, 500]
    assert rows["target"] == ["//a", "//b", "//c"]
    assert rows["status"] == ["built", "cached", "failed"]
    assert rows["duration_ms"] == [100, 0, 300]
    assert rows["worker"] == [1, None, None]
    assert rows["error"] == [None, None, "oops"]
    assert targets.schema.field("target").type == pa.dictionary(pa.int32(), pa.string())


def test_repeated_starts_pair_first_in_first_out() -> None:
    sink = ListSink()
    collector = TelemetryCollector(sink)
    collector.build_started("b", ts=T0)
    collector.target_started("b", "//t", ts=T0)
    collector.target_started("b", "//t", ts=T0 + 50)
    collector.target_finished("b", "//t", ts=T0 + 100, status="built")
    collector.target_finished("b", "//t", ts=T0 + 130, status="built")
    collector.build_finished("b", ts=T0 + 200, success=True)
    assert sink.batches[0][1].column("duration_ms").to_pylist() == [100, 80]


def test_interleaved_sessions_and_close_marks_interrupted() -> None:
    sink = ListSink()
    collector = TelemetryCollector(sink)
    collector.build_started("x", ts=T0)
    collector.build_started("y", ts=T0 + 5)
    collector.target_finished("y", "//t", ts=T0 + 20, status="cached")
    collector.target_finished("x", "//t", ts=T0 + 30, status="built", duration_ms=30)
    collector.build_finished("y", ts=T0 + 40, success=True)
    assert collector.open_sessions == ["x"]
    assert collector.close() == 1
    by_id = {s.column("session_id")[0].as_py(): s.to_pylist()[0] for s, _ in sink.batches}
    assert by_id["y"]["duration_ms"] == 35 and by_id["y"]["cached"] == 1
    # Killed: a failed build whose duration runs to its last event.
    assert (by_id["x"]["interrupted"], by_id["x"]["succeeded"], by_id["x"]["duration_ms"]) == (
        True,
        False,
        30,
    )
    assert by_id["x"]["error"] == "interrupted"


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0),
        ([(0, 10), (10, 20)], 1),  # touching intervals do not overlap
        ([(0, 10), (5, 15), (9, 11)], 3),
        ([(0, 10), (5, 5)], 1),  # an empty run overlaps nothing
        ([(5, 5)], 0),
        ([(0, 100), (10, 20), (20, 30), (30, 40)], 2),
    ],
)
def test_peak_concurrency(intervals: list[tuple[int, int]], expected: int) -> None:
    starts = pa.array([s for s, _ in intervals], pa.int64())
    ends = pa.array([e for _, e in intervals], pa.int64())
    assert peak_concurrency(starts, ends) == expected


def test_many_threads_reporting_one_build(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path)
    collector = TelemetryCollector(storage)
    collector.build_started("big", ts=T0, parallelism=8)
    threads, per_thread = 8, 500

    def work(worker: int) -> None:
        for i in range(per_thread):
            name = f"//w{worker}:t{i}"
            ts = T0 + 1 + i * 10
            if i % 5 == 0:
                collector.target_finished("big", name, ts=ts, status="cached")
            else:
                collector.target_started("big", name, ts=ts, worker=worker)
                collector.target_finished("big", name, ts=ts + 7, status="built")

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    collector.build_finished("big", ts=T0 + per_thread * 10 + 10, success=True)
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    cached = threads * per_thread // 5
    assert (row["total_targets"], row["cached"], row["built"]) == (
        threads * per_thread,
        cached,
        threads * per_thread - cached,
    )
    assert row["executed_ms"] == 7 * (threads * per_thread - cached)
    assert row["peak_concurrency"] == threads  # every thread's target ran over [ts, ts+7)


class FailingSink:
    calls = 0

    def write(self, sessions: pa.RecordBatch, targets: pa.RecordBatch) -> None:
        self.calls += 1
        raise StorageError("disk full")


def test_storage_failure_is_reported_once_and_never_raised() -> None:
    sink = FailingSink()
    collector = TelemetryCollector(sink)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for session in ("one", "two"):
            collector.build_started(session, ts=T0)
            collector.build_finished(session, ts=T0 + 1, success=True)
    assert sink.calls == 2
    assert [str(w.message) for w in caught if w.category is TelemetryWarning] == [
        "telemetry could not store build 'one': disk full"
    ]


def test_a_bad_event_from_python_never_raises() -> None:
    messages: list[str] = []
    collector = TelemetryCollector(ListSink(), on_warning=messages.append)
    collector.target_finished("b", "//t", ts=T0, status="exploded")  # type: ignore[arg-type]
    assert len(messages) == 1 and "exploded" in messages[0]


def test_from_env_honours_the_switch_and_the_directory(tmp_path: Path) -> None:
    on = TelemetryCollector.from_env(
        {
            "BUILDER_TELEMETRY_DIR": str(tmp_path / "on"),
            "BUILDER_TELEMETRY_RETENTION_DAYS": "100000",
        }
    )
    off = TelemetryCollector.from_env(
        {"BUILDER_TELEMETRY_DIR": str(tmp_path / "off"), "BUILDER_TELEMETRY_ENABLED": "0"}
    )
    for collector in (on, off):
        collector.build_started("b", ts=T0)
        collector.build_finished("b", ts=T0 + 5, success=True)
    assert TelemetryStorage(tmp_path / "on").session_count() == 1
    assert not (tmp_path / "off").exists()


def test_from_env_with_a_bad_variable_warns_and_records_nothing(tmp_path: Path) -> None:
    with pytest.warns(TelemetryWarning, match="BUILDER_TELEMETRY_MAX_SESSIONS"):
        collector = TelemetryCollector.from_env(
            {"BUILDER_TELEMETRY_DIR": str(tmp_path), "BUILDER_TELEMETRY_MAX_SESSIONS": "x"}
        )
    collector.build_started("b", ts=T0)
    collector.build_finished("b", ts=T0 + 5, success=True)
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_takes_what_the_protocol_takes(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path)
    collector = TelemetryCollector(storage)
    collector.build_started("f", ts=T0 + 0.4, labels={"jobs": 8, "ci": True})
    collector.target_finished(
        "f", "//t", ts="2025-10-27T14:23:20.300Z", status="built", duration_ms=99.6
    )
    collector.build_finished("f", ts=T0 + 1000.2, success=True)
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert (row["duration_ms"], row["executed_ms"], row["built"]) == (1000, 100, 1)
    assert dict(row["labels"]) == {"jobs": "8", "ci": "true"}


def test_the_python_api_never_raises_into_the_build() -> None:
    messages: list[str] = []
    sink = ListSink()
    collector = TelemetryCollector(sink, on_warning=messages.append)
    collector.build_started("b", ts=T0, labels=["not", "a", "mapping"])  # type: ignore[arg-type]
    collector.target_started("b", None, ts=T0)  # type: ignore[arg-type]
    collector.target_finished("b", "//t", ts=float("nan"), status="built")
    collector.build_finished("b", ts=T0 + 5, success=True)
    assert len(messages) == 1 and "labels must be an object" in messages[0]
    assert len(sink.batches) == 1  # the build itself is still recorded


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.target_started("b", "//x", ts=T0 + 1, worker=2**40), "worker must be"),
        (lambda c: c.target_started("b", "//x", ts=T0 + 1, worker="3"), "worker must be"),
        (
            lambda c: c.target_finished("b", "//x", ts=T0 + 2, status="built", duration_ms=10**20),
            "duration_ms must be",
        ),
        (
            lambda c: c.target_finished("b", "//x", ts=T0 + 2, status="failed", error=5),
            "error must be",
        ),
        (lambda c: c.build_started("b2", ts=T0, parallelism="8"), "parallelism must be"),
        (lambda c: c.build_started("b2", ts=T0, parallelism=0), "parallelism must be"),
        (lambda c: c.build_started("b2", ts=T0, tool=5), "tool must be"),
        (lambda c: c.build_finished("b2", ts=T0, success="false"), "success must be"),
        (lambda c: c.target_finished("b", "\ud800", ts=T0 + 2, status="built"), "surrogate"),
    ],
)
def test_a_bad_argument_is_refused_alone_and_the_build_is_kept(call: object, message: str) -> None:
    messages: list[str] = []
    sink = ListSink()
    collector = TelemetryCollector(sink, on_warning=messages.append)
    collector.build_started("b", ts=T0, parallelism=2)
    call(collector)  # type: ignore[operator]
    collector.target_finished("b", "//ok", ts=T0 + 10, status="built", duration_ms=5)
    collector.build_finished("b", ts=T0 + 20, success=True)
    collector.close()  # never raises, whatever came before
    assert len(messages) == 1 and message in messages[0], messages
    [session] = [s.to_pylist()[0] for s, _ in sink.batches if s["session_id"][0].as_py() == "b"]
    assert (session["built"], session["executed_ms"]) == (1, 5)


# -- the clock: a build from the future would be the newest day, and retention keeps those -----

NOW = datetime(2025, 10, 27, 14, 23, 20, tzinfo=UTC)  # T0
HOUR = 3_600_000
Y2099 = 4_070_908_800_000  # 2099-01-01T00:00:00Z


def _clocked(clock: object = lambda: NOW) -> tuple[TelemetryCollector, ListSink, list[str]]:
    sink, messages = ListSink(), []
    collector = TelemetryCollector(
        sink,
        on_warning=messages.append,
        warn_every_time=True,
        clock=clock,  # type: ignore[arg-type]
    )
    return collector, sink, messages


def _stored(sink: ListSink) -> list[str]:
    return [s["session_id"][0].as_py() for s, _ in sink.batches]


def test_a_build_started_far_ahead_is_refused_whole_and_named_once() -> None:
    collector, sink, messages = _clocked()
    collector.target_finished("bad\x1b[2J", "//early", ts=T0, status="cached")  # goes with it
    collector.build_started("bad\x1b[2J", ts=Y2099, parallelism=2)
    collector.target_started("bad\x1b[2J", "//t", ts=Y2099 + 1)
    collector.target_finished("bad\x1b[2J", "//t", ts=Y2099 + 9, status="built")
    collector.target_finished("bad\x1b[2J", "//u", ts=T0 + 5, status="built")  # in time, too
    collector.build_finished("bad\x1b[2J", ts=Y2099 + 10, success=True)
    collector.build_started("ok", ts=T0)
    collector.build_finished("ok", ts=T0 + 10, success=True)
    collector.build_interrupted("bad\x1b[2J", ts=T0 + 20)
    assert collector.close() == 0
    assert _stored(sink) == ["ok"]
    assert messages == [
        "telemetry refused build 'bad\\x1b[2J' with all its events: it starts at "
        "2099-01-01T00:00:00, more than an hour ahead of this machine's clock; "
        "check the clock of the machine that ran it"
    ]


def test_an_event_dated_far_ahead_is_ignored_alone_and_its_build_is_kept() -> None:
    collector, sink, messages = _clocked()
    collector.build_started("b", ts=T0, parallelism=2)
    collector.target_started("b", "//late", ts=T0 + 2 * HOUR, worker=0)
    collector.target_finished("b", "//late", ts=T0 + 2 * HOUR + 5000, status="built")
    collector.target_finished("b", "//ok", ts=T0 + 10, status="built", duration_ms=5)
    collector.build_finished("b", ts="2099-01-01T00:00:00Z", success=True)
    collector.close()
    assert messages == [
        f"telemetry ignored {kind} of 'b': ts {when} is more than an hour ahead of this "
        "machine's clock; check the clock of the machine that sent it"
        for kind, when in [
            ("target_started", "2025-10-27T16:23:20"),
            ("target_finished", "2025-10-27T16:23:25"),
            ("build_finished", "2099-01-01T00:00:00"),
        ]
    ]
    # Its end was refused too: stored as interrupted at its last event, as a killed build.
    [(session, targets)] = sink.batches
    row = session.to_pylist()[0]
    assert (row["session_id"], row["interrupted"], row["duration_ms"]) == ("b", True, 10)
    assert (row["built"], row["executed_ms"], targets["target"].to_pylist()) == (1, 5, ["//ok"])


def test_up_to_an_hour_ahead_is_stored_and_the_clock_is_read_again() -> None:
    now = [NOW]
    collector, sink, messages = _clocked(lambda: now[0])

    def build(session: str, start: int) -> None:
        collector.build_started(session, ts=start)
        collector.target_finished(session, "//t", ts=start + 500, status="built")
        collector.build_finished(session, ts=start + 1000, success=True)

    build("a minute ahead", T0 + 60_000)
    build("just within the hour", T0 + HOUR - 1001)
    build("an hour ahead", T0 + HOUR)
    now[0] = NOW + timedelta(hours=2)  # the clock moved on: the same time is now in the past
    build("an hour ahead, later", T0 + HOUR)
    assert _stored(sink) == ["a minute ahead", "just within the hour", "an hour ahead, later"]
    assert [m.split(":")[0] for m in messages] == [
        "telemetry refused build 'an hour ahead' with all its events"
    ]


# -- a session id names one build, as in ingest ---------------------------------------------


def _finished_message(what: str, session: str = "ok") -> str:
    return (
        f"telemetry ignored {what} of {session!r}: that build already finished; give each "
        "build its own session id"
    )


def test_a_session_id_reused_for_the_next_build_is_refused_not_mixed(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path)
    collector = TelemetryCollector(storage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collector.build_started("ok", ts=T0, parallelism=2)
        collector.target_started("ok", "//slow", ts=T0, worker=0)
        collector.target_finished("ok", "//slow", ts=T0 + 5000, status="built")
        collector.build_finished("ok", ts=T0 + 5000, success=True)
        # The next build, under the same id: 1 s long, with a 500 ms target of its own.
        collector.build_started("ok", ts=T0 + 10_000, parallelism=2)
        collector.target_started("ok", "//fast", ts=T0 + 10_000, worker=0)
        collector.target_finished("ok", "//fast", ts=T0 + 10_500, status="built")
        collector.build_finished("ok", ts=T0 + 11_000, success=False)
    # Reported once (the collector's warnings are), and the first build is stored as it was.
    assert [str(w.message) for w in caught if w.category is TelemetryWarning] == [
        _finished_message("build_started")
    ]
    analyzer = TelemetryAnalyzer(storage)
    [row] = analyzer.sessions().to_dicts()
    assert (row["session_id"], row["duration_ms"], row["total_targets"], row["built"]) == (
        "ok",
        5000,
        1,
        1,
    )
    assert row["succeeded"] is True
    assert [(b.target, b.mean_ms, b.runs) for b in analyzer.summary().bottlenecks] == [
        ("//slow", 5000, 1)
    ]


def test_every_event_of_a_finished_build_is_refused_and_named() -> None:
    sink = ListSink()
    messages: list[str] = []
    collector = TelemetryCollector(sink, on_warning=messages.append, warn_every_time=True)
    collector.build_started("ok", ts=T0)
    collector.target_finished("ok", "//t", ts=T0 + 10, status="cached")
    collector.build_finished("ok", ts=T0 + 20, success=True)
    collector.build_finished("ok", ts=T0 + 30, success=True)  # a second end
    # Both routes of the target calls: the inline one and the thorough one (RFC 3339 text).
    collector.target_started("ok", "//late", ts=T0 + 40)
    collector.target_finished("ok", "//late", ts=T0 + 50, status="built")
    collector.target_finished("ok", "//late", ts="2025-10-27T14:23:20.060Z", status="built")
    collector.build_started("ok", ts=T0 + 70)
    collector.build_interrupted("ok", ts=T0 + 80)
    assert collector.close() == 0
    assert messages == [
        _finished_message(what)
        for what in [
            "build_finished",
            "target_started",
            "target_finished",
            "target_finished",
            "build_started",
            "the interruption",
        ]
    ]
    # One build, 20 ms with its one cached target: no phantom 0 ms build after it.
    [(session, targets)] = sink.batches
    row = session.to_pylist()[0]
    assert (row["duration_ms"], row["total_targets"], row["cached"]) == (20, 1, 1)
    assert targets["target"].to_pylist() == ["//t"]


def test_a_second_build_started_of_an_open_build_is_refused() -> None:
    sink = ListSink()
    messages: list[str] = []
    collector = TelemetryCollector(sink, on_warning=messages.append, warn_every_time=True)
    collector.target_finished("b", "//early", ts=T0 - 5, status="cached")  # before its start
    collector.build_started("b", ts=T0, parallelism=4, tool="ninja")
    collector.build_started("b", ts=T0 + 100, parallelism=1, tool="make")
    collector.build_finished("b", ts=T0 + 300, success=True)
    assert messages == [
        "telemetry ignored build_started of 'b': that build was already started; give each "
        "build its own session id"
    ]
    [(session, _)] = sink.batches
    row = session.to_pylist()[0]
    # The first start holds: 300 ms from it, 4 workers, ninja.
    assert (row["duration_ms"], row["parallelism"], row["tool"], row["cached"]) == (
        300,
        4,
        "ninja",
        1,
    )


def test_builds_closed_as_interrupted_are_finished_too() -> None:
    sink = ListSink()
    messages: list[str] = []
    collector = TelemetryCollector(sink, on_warning=messages.append, warn_every_time=True)
    collector.build_started("killed", ts=T0)
    collector.build_interrupted("killed", ts=T0 + 50)
    collector.build_started("open", ts=T0)
    assert collector.close() == 1
    collector.build_finished("killed", ts=T0 + 60, success=True)
    collector.target_finished("open", "//t", ts=T0 + 70, status="built")
    assert messages == [
        _finished_message("build_finished", "killed"),
        _finished_message("target_finished", "open"),
    ]
    assert [(s["session_id"][0].as_py(), s["duration_ms"][0].as_py()) for s, _ in sink.batches] == [
        ("killed", 50),
        ("open", 0),
    ]
