"""DuckDB over the store (telemetry.duckdb), with a real DuckDB: the views answer the numbers
of the analyzer's summary and of an independent computation from the events
(tests/reference.py, or by hand); the rates are the analyzer's to the last bit; damaged,
uncommitted and older files are handled as every reader of the store handles them; and a
query run while maintenance changes the store answers as of one moment."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import arro3.core
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import given
from hypothesis import strategies as st

import telemetry.duckdb as sql
import telemetry.schema as schema
from pipelines.compaction import compact
from telemetry import integrity, layout
from telemetry.analyzer import TelemetryAnalyzer, with_session_metrics
from telemetry.errors import CorruptFileWarning
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Window
from tests import reference
from tests.conftest import FIXTURES, T0, small_history, small_history_on
from tests.test_damaged_files import _blocks_at
from tests.test_metrics import _SESSION_TYPES, _session_rows
from tests.test_properties import SETTINGS, Plan, _stream, builds

DAY = 86_400_000
LATER = datetime(2027, 1, 1, tzinfo=UTC)
RATES = ("cache_hit_rate", "parallelism_utilization", "targets_per_second")
COUNTS = ("duration_ms", "total_targets", "built", "cached", "failed", "skipped")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(autouse=True, params=["pyarrow", "arro3"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test reads through pyarrow, as any process that has loaded it does, and through
    arro3, as `builder telemetry sql` does (it never loads pyarrow: its subprocess test is
    test_the_command_loads_neither_pyarrow_nor_numpy)."""
    monkeypatch.setattr(integrity, "without_pyarrow", lambda: request.param == "arro3")
    return str(request.param)


def _rows(store: Path | TelemetryStorage, text: str, **window: Any) -> list[tuple[Any, ...]]:
    answer = sql.query(store, text, **window)
    return list(zip(*(column.to_pylist() for column in answer.columns), strict=True))


def _close(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` with each float as equal to 12 digits."""
    return [
        tuple(pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for v in row)
        for row in rows
    ]


def _one(store: Path | TelemetryStorage, text: str, **window: Any) -> Any:
    [(value,)] = _rows(store, text, **window)
    return value


# -- the rates: the analyzer's, to the last bit -----------------------------------------------


@SETTINGS
@given(st.lists(_session_rows(), min_size=1, max_size=40))
def test_the_sessions_rates_are_the_analyzers(rows: list[dict[str, Any]]) -> None:
    """The SQL of the sessions view on any stored row, from none at all to the stored types'
    ends, is the analyzer's polars expression, bit for bit."""
    truth = with_session_metrics(pl.LazyFrame(rows, schema=_SESSION_TYPES)).collect()
    table = pl.DataFrame(rows, schema=_SESSION_TYPES).to_arrow()
    connection = duckdb.connect()
    got = connection.from_arrow(table).project(sql.RATES).fetchall()
    assert got == truth.select(RATES).rows()


@SETTINGS
@given(builds)
def test_any_history_reads_with_the_analyzers_rows_and_the_references(plans: list[Plan]) -> None:
    lines = _stream(plans)
    want = reference.sessions_from_lines(lines)
    with tempfile.TemporaryDirectory() as folder:
        storage = TelemetryStorage(Path(folder))
        assert ingest_jsonl(storage, lines).problems == ()
        columns = ("session_id", *COUNTS, *RATES)
        analyzed = TelemetryAnalyzer(storage).sessions().select(columns).rows()
        got = _rows(storage, f"select {', '.join(columns)} from sessions order by start_time")
    assert got == analyzed
    for row, ref in zip(got, want, strict=True):
        assert row[: len(COUNTS) + 1] == (
            ref.session_id,
            ref.duration_ms,
            ref.total_targets,
            ref.built,
            ref.cached,
            ref.failed,
            ref.skipped,
        )
        for value, exact in zip(row[len(COUNTS) + 1 :], _exact_rates(ref), strict=True):
            assert value == (None if exact is None else pytest.approx(exact, rel=1e-12, abs=0))


def _exact_rates(ref: reference.RefSession) -> tuple[float | None, ...]:
    return (ref.cache_hit_rate, ref.parallelism_utilization, ref.targets_per_second)


# -- the bundled history: the summary's numbers and the reference's -----------------------------


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("history")
    path = folder / "history.jsonl"
    generator = FIXTURES / "generate.py"
    command = [sys.executable, str(generator), "--today", "2026-11-20", "--output", str(path)]
    subprocess.run(command, check=True)
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, history: list[str]) -> TelemetryStorage:
    storage = TelemetryStorage(tmp_path_factory.mktemp("demo") / "telemetry", clock=lambda: LATER)
    assert ingest_jsonl(storage, history).problems == ()
    return storage


@pytest.fixture(scope="module")
def compacted(tmp_path_factory: pytest.TempPathFactory, demo: TelemetryStorage) -> Path:
    copy = tmp_path_factory.mktemp("compacted") / "telemetry"
    shutil.copytree(demo.dir, copy)
    assert compact(TelemetryStorage(copy, clock=lambda: LATER))
    return copy


TOTALS = """
    select count(*), count(*) filter (where succeeded), avg(duration_ms), min(duration_ms),
           max(duration_ms), count(cache_hit_rate), avg(cache_hit_rate),
           avg(parallelism_utilization), avg(targets_per_second)
    from sessions
"""
BOTTLENECKS = """
    select target, avg(duration_ms), count(*) from targets
    where status in ('built', 'failed')
    group by target order by 2 desc, target limit 5
"""


def test_the_totals_are_the_summarys_and_the_references(
    demo: TelemetryStorage, history: list[str]
) -> None:
    [got] = _rows(demo, TOTALS)
    report = TelemetryAnalyzer(demo).summary()
    assert got == (
        report.total_builds,
        report.successful,
        pytest.approx(report.average_build_ms, rel=1e-12),
        report.fastest_build_ms,
        report.slowest_build_ms,
        report.builds_with_targets,
        pytest.approx(report.average_cache_hit_rate, rel=1e-12),
        pytest.approx(report.average_utilization, rel=1e-12),
        pytest.approx(report.average_targets_per_second, rel=1e-12),
    )
    ref = reference.summary(reference.sessions_from_lines(history))
    assert got == (
        ref["total"],
        ref["successful"],
        pytest.approx(ref["avg_duration_ms"], rel=1e-12),
        ref["min_duration_ms"],
        ref["max_duration_ms"],
        ref["rated_builds"],
        pytest.approx(ref["avg_cache_hit_rate"], rel=1e-12),
        pytest.approx(ref["avg_utilization"], rel=1e-12),
        pytest.approx(ref["avg_targets_per_second"], rel=1e-12),
    )
    assert got[0] == 200


def test_every_target_event_is_one_row(demo: TelemetryStorage, history: list[str]) -> None:
    finished = sum(1 for line in history if json.loads(line)["event"] == "target_finished")
    assert _one(demo, "select count(*) from targets") == finished
    assert _one(demo, "select sum(total_targets) from sessions") == finished
    durations = sum(
        run[1] for s in reference.sessions_from_lines(history) for run in s.executed_runs
    )
    executed = "select sum(duration_ms) from targets where status in ('built', 'failed')"
    assert _one(demo, executed) == durations


def test_the_bottlenecks_are_the_summarys_and_the_references(
    demo: TelemetryStorage, history: list[str]
) -> None:
    got = _rows(demo, BOTTLENECKS)
    report = TelemetryAnalyzer(demo).summary()
    analyzed = [(b.target, b.mean_ms, b.runs) for b in report.bottlenecks]
    assert got == _close(analyzed)
    ref = reference.bottlenecks(reference.sessions_from_lines(history))[:5]
    assert [(t, m) for t, m, _ in got] == _close(ref)


def test_a_compacted_store_answers_the_same(demo: TelemetryStorage, compacted: Path) -> None:
    queries = [TOTALS, BOTTLENECKS, "select count(*), sum(duration_ms) from targets"]
    queries.append("select * from sessions order by start_time, session_id")
    for text in queries:  # a mean's last bits depend on the order it adds up
        assert _rows(compacted, text) == _close(_rows(demo, text))
    # The rollups add up to the target rows they stand for.
    rolled = "select sum(built), sum(cached), sum(failed), sum(skipped) from daily_targets"
    counted = "select sum(built), sum(cached), sum(failed), sum(skipped) from sessions"
    assert _rows(compacted, rolled) == _rows(demo, counted)
    assert _one(demo, "select count(*) from daily_targets") == 0


def test_a_window_keeps_the_builds_the_analyzer_keeps(demo: TelemetryStorage) -> None:
    """Bounds in the middle of days: the sessions that started in [since, until) and their
    targets (whose rows were partitioned by the day of their session)."""
    since, until = datetime(2026, 10, 15, 9, 30, tzinfo=UTC), datetime(2026, 11, 2, 17, tzinfo=UTC)
    report = TelemetryAnalyzer(demo, window=Window(since, until)).summary()
    window = {"since": since, "until": until}
    assert _one(demo, "select count(*) from sessions", **window) == report.total_builds
    ids = set(TelemetryAnalyzer(demo, window=Window(since, until)).sessions()["session_id"])
    assert 10 < len(ids) < 200
    sessions = _rows(demo, "select session_id, start_time from sessions", **window)
    assert {s for s, _ in sessions} == ids
    assert all(since <= started < until for _, started in sessions)
    targets = "select count(*), count(distinct session_id) from targets"
    expected = _one(demo, "select sum(total_targets) from sessions", **window)
    assert _rows(demo, targets, **window) == [(expected, len(ids) - _no_targets(demo, ids))]


def _no_targets(storage: TelemetryStorage, ids: set[str]) -> int:
    frame = TelemetryAnalyzer(storage).sessions()
    return frame.filter(pl.col("session_id").is_in(ids) & (pl.col("total_targets") == 0)).height


def test_dates_bound_whole_days(demo: TelemetryStorage) -> None:
    days = "select min(date), max(date), count(*) from sessions"
    window = {"since": date(2026, 11, 1), "until": date(2026, 11, 3)}
    count = TelemetryAnalyzer(demo, window=Window.parse("2026-11-01", "2026-11-03")).sessions()
    assert _rows(demo, days, **window) == [(date(2026, 11, 1), date(2026, 11, 3), count.height)]


def test_the_views_columns_and_types(demo: TelemetryStorage) -> None:
    connection = sql.connect(demo)
    described = {
        view: dict(
            connection.sql(f"select column_name, column_type from (describe {view})").fetchall()
        )
        for view in ("sessions", "targets", "daily_targets")
    }
    assert list(described["sessions"]) == [*schema.SESSIONS_SCHEMA.names, "date", *RATES]
    assert list(described["targets"]) == [*schema.TARGETS_SCHEMA.names, "date"]
    assert list(described["daily_targets"]) == [*schema.DAILY_TARGETS_SCHEMA.names, "date"]
    for view in described.values():
        assert view["date"] == "DATE"
    assert described["targets"]["target"] == described["targets"]["status"] == "VARCHAR"
    assert described["daily_targets"]["target"] == "VARCHAR"
    assert described["sessions"]["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert described["sessions"]["labels"] == "MAP(VARCHAR, VARCHAR)"
    assert [described["sessions"][rate] for rate in RATES] == ["DOUBLE"] * 3
    assert [name for (name,) in connection.sql("show tables").fetchall()] == [
        "daily_targets",
        "rollup_days",
        "rollup_targets",
        "sessions",
        "targets",
    ]
    from telemetry import rollups

    for view, rolled in (
        ("rollup_days", rollups.DAYS_SCHEMA),
        ("rollup_targets", rollups.TARGETS_SCHEMA),
    ):
        columns = connection.sql(f"select column_name from (describe {view})").fetchall()
        assert [name for (name,) in columns] == rolled.names
    # Times are shown in UTC, whatever the machine's zone.
    assert connection.sql("select current_setting('TimeZone')").fetchall() == [("UTC",)]


def test_filters_and_projections_reach_the_files(
    demo: TelemetryStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the files read through Arrow hold more rows than are read whole, a day's filter
    opens that day's files only: every other day's files are replaced by junk once the
    views are made, and the query still answers."""
    monkeypatch.setattr(sql, "_IN_MEMORY_ROWS", 0)
    copy = tmp_path / "telemetry"
    shutil.copytree(demo.dir, copy)
    day = "2026-11-02"
    want = _one(demo, f"select count(*) from targets where date = '{day}'")
    assert want > 0
    connection = sql.connect(copy)
    for path in copy.rglob("*.arrow"):
        if f"date={day}" not in str(path):
            path.write_bytes(b"junk")
    day_count = f"select count(*) from targets where date = '{day}'"
    assert connection.sql(day_count).fetchall() == [(want,)]
    [(_, plan)] = connection.sql(
        f"explain select target from targets where date = '{day}'"
    ).fetchall()
    scan = plan.split("ARROW_SCAN", 1)[1]
    assert f"\"date\" = DATE '{day}'" in scan
    assert "Projections: target" in scan


# -- stores with trouble, worked out by hand ----------------------------------------------------
#
# small_history() (tests/conftest.py): builds a, b, c of 1000, 2000 and 3000 ms with 4, 5 and
# 4 targets; their executed runs last 300+400+200, 1000+1100+600 and 3000 ms.


def _by_build(storage: TelemetryStorage) -> TelemetryStorage:
    """small_history() stored one build at a time: one file per build and dataset."""
    lines = small_history()
    for session in ("a", "b", "c"):
        mine = [line for line in lines if json.loads(line)["session"] == session]
        assert ingest_jsonl(storage, mine).sessions == 1
    return storage


def _file(storage: TelemetryStorage, dataset: str, session: str) -> Path:
    for path in sorted((storage.dir / dataset).rglob("*.arrow")):
        if session in ipc.open_file(path).read_all()["session_id"].to_pylist():
            return path
    raise AssertionError(f"no {dataset} file holds {session}")


PER_BUILD = "select session_id, count(*), sum(duration_ms) from targets group by 1 order by 1"


def test_the_hand_computed_numbers(storage: TelemetryStorage) -> None:
    _by_build(storage)
    assert _rows(storage, PER_BUILD) == [("a", 4, 900), ("b", 5, 2700), ("c", 4, 3000)]
    rates = f"select session_id, {', '.join(RATES)} from sessions order by 1"
    assert _rows(storage, rates) == [
        ("a", 25.0, 45.0, 4.0),
        ("b", 40.0, 67.5, 2.5),
        ("c", 50.0, 25.0, 4 / 3),
    ]


def test_an_empty_store_has_empty_views(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    for view in ("sessions", "targets", "daily_targets"):
        assert _one(missing, f"select count(*) from {view}") == 0
    assert not missing.exists()  # reading creates nothing


def test_a_damaged_footer_is_named_and_left_out(storage: TelemetryStorage) -> None:
    _by_build(storage)
    victim = _file(storage, "targets", "b")
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.warns(CorruptFileWarning, match=f"skipping {victim}"):
        assert _rows(storage, PER_BUILD) == [("a", 4, 900), ("c", 4, 3000)]


def test_damaged_data_behind_a_sound_footer_is_named_and_left_out(
    storage: TelemetryStorage,
) -> None:
    """Every compressed buffer of the record batch of b's targets file loses its frame's
    magic number: its footer is sound, so only reading its data finds it out.

    (Its dictionary batches are left whole: pyarrow 26's dataset scan, which DuckDB reads
    through, crashes the process on a damaged dictionary batch when it reads some columns.)
    """
    _by_build(storage)
    victim = _file(storage, "targets", "b")
    _damage_the_data(victim)
    every_column = "select * from targets order by session_id, target"
    with pytest.warns(CorruptFileWarning, match=f"skipping {victim}: damaged data"):
        rows = _rows(storage, every_column)
    assert [(s, t) for s, t, *_ in rows] == [
        ("a", "//app:compile"),
        ("a", "//app:link"),
        ("a", "//app:test"),
        ("a", "//lib:util"),
        ("c", "//app:compile"),
        ("c", "//app:link"),
        ("c", "//app:test"),
        ("c", "//lib:util"),
    ]
    # Through a filter DuckDB does not say which scan failed: it is found all the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptFileWarning)
        filtered = "select count(*) from targets where error is not null or worker >= 0"
        assert _one(storage, filtered) == 3  # a's compile and test, c's compile


def test_targets_without_their_sessions_file_are_not_counted(storage: TelemetryStorage) -> None:
    """A crash between a build's two renames leaves its targets file without the sessions
    file that commits it."""
    _by_build(storage)
    _file(storage, "sessions", "b").unlink()
    assert _rows(storage, PER_BUILD) == [("a", 4, 900), ("c", 4, 3000)]
    assert _one(storage, "select count(*) from sessions") == 2


def test_the_targets_of_a_damaged_sessions_file_are_not_counted(
    storage: TelemetryStorage,
) -> None:
    """Build b's sessions file damaged: its build is left out whole, targets too, as the
    analyzer leaves it out (the store reads as one without that file)."""
    _by_build(storage)
    damaged = _file(storage, "sessions", "b")
    damaged.write_bytes(damaged.read_bytes()[:-40])
    with pytest.warns(CorruptFileWarning, match=f"skipping {damaged}"):
        assert _rows(storage, PER_BUILD) == [("a", 4, 900), ("c", 4, 3000)]
    with pytest.warns(CorruptFileWarning):
        assert _one(storage, "select count(*) from sessions") == 2
    with pytest.warns(CorruptFileWarning):
        _, rows = TelemetryAnalyzer(storage).targets()
    assert rows.height == 8


def _damage_the_data(path: Path) -> None:
    """Take the zstd magic off the record batch of ``path``: its footer stays sound."""
    data = path.read_bytes()
    block, count = _blocks_at(data, 3)
    assert count == 1
    offset, metadata, _, body = struct.unpack_from("<qi4sq", data, block)
    end = offset + metadata + body
    assert ZSTD_MAGIC in data[offset:end]
    path.write_bytes(data[:offset] + data[offset:end].replace(ZSTD_MAGIC, b"\0\0\0\0") + data[end:])


def test_the_targets_of_a_sessions_file_with_damaged_data_are_not_counted(
    storage: TelemetryStorage, scanned: bool
) -> None:
    """Build b's sessions file damaged behind a sound footer: found when it is read (whole,
    or when the query fails on it), and its build left out whole, as the analyzer does."""
    _by_build(storage)
    damaged = _file(storage, "sessions", "b")
    _damage_the_data(damaged)
    with pytest.warns(CorruptFileWarning, match=f"skipping {damaged}: damaged data"):
        assert _rows(storage, COUNT_BOTH) == [(2, 8)]  # a and c: 4 targets each
    with pytest.warns(CorruptFileWarning):
        _, rows = TelemetryAnalyzer(storage).targets()
    assert rows.height == 8


def test_a_file_arro3_refuses_and_pyarrow_reads_is_read(storage: TelemetryStorage) -> None:
    """A null in a column declared not null: arro3 refuses the file, pyarrow reads it in
    full; it is read through pyarrow, never left out without a word."""
    _three_days(storage)
    [path] = (storage.dir / "targets" / "date=2025-10-28").glob("*.arrow")
    table = ipc.open_file(path).read_all()
    at = table.schema.get_field_index("duration_ms")
    durations = table.column(at).to_pylist()
    durations[0] = None
    table = table.set_column(at, table.schema.field(at), pa.array(durations, pa.int64()))
    with ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _rows(storage, "select date, count(*) from targets group by 1 order by 1") == [
            (date(2025, 10, 27), 13),
            (date(2025, 10, 28), 13),
            (date(2025, 10, 29), 13),
        ]


def test_an_error_after_the_first_rows_is_one_query_error(small_store: TelemetryStorage) -> None:
    """DuckDB fails after it began to answer (its rows reach arro3 through an Arrow stream):
    the failure is DuckDB's first line, as any other."""
    late = "select range, case when range > 5000000 then error('late') end from range(10000000)"
    with pytest.raises(sql.QueryError) as refused:
        sql.query(small_store, late)
    assert str(refused.value) == "Invalid Input Error: late"


def test_files_from_before_a_column_was_added_read_as_nulls(
    storage: TelemetryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 files, then a version that adds a nullable column to sessions and targets
    and writes its own files beside them (as tests/test_schema_evolution.py does)."""
    _by_build(storage)
    runner, cpu = pa.field("runner", pa.string()), pa.field("cpu_ms", pa.int64())
    sessions_v2 = _added(schema.SESSIONS_SCHEMA, runner)
    targets_v2 = _added(schema.TARGETS_SCHEMA, cpu)
    future = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", future)
    monkeypatch.setitem(schema.SCHEMAS, "sessions", sessions_v2)
    monkeypatch.setitem(schema.SCHEMAS, "targets", targets_v2)
    # As that version has them for reading without pyarrow (test_schema.py holds the two
    # equal in every version).
    monkeypatch.setitem(schema._ARRO3, "sessions", arro3.core.Schema.from_arrow(sessions_v2))
    monkeypatch.setitem(schema._ARRO3, "targets", arro3.core.Schema.from_arrow(targets_v2))
    monkeypatch.setitem(
        schema.ADDED_IN, "sessions", {**schema.ADDED_IN["sessions"], "runner": future}
    )
    monkeypatch.setitem(
        schema.ADDED_IN, "targets", {**schema.ADDED_IN["targets"], "cpu_ms": future}
    )
    # Build c rewritten by that version, with the new columns filled.
    for dataset, v2, field, value in (
        ("sessions", sessions_v2, runner, "linux-x64"),
        ("targets", targets_v2, cpu, 7),
    ):
        old = _file(storage, dataset, "c")
        table = ipc.open_file(old).read_all()
        table = table.append_column(field, pa.array([value] * table.num_rows, field.type))
        with ipc.new_file(old, v2) as writer:
            writer.write_table(table.cast(v2))
    assert _rows(storage, "select session_id, runner from sessions order by 1") == [
        ("a", None),
        ("b", None),
        ("c", "linux-x64"),
    ]
    assert _rows(storage, "select session_id, sum(cpu_ms) from targets group by 1 order by 1") == [
        ("a", None),
        ("b", None),
        ("c", 28),
    ]


def _added(base: pa.Schema, field: pa.Field) -> pa.Schema:
    """``base`` with ``field`` added by the version after this one."""
    future = str(schema.SCHEMA_VERSION + 1).encode()
    return pa.schema([*base, field], metadata=dict(base.metadata) | {schema.VERSION_KEY: future})


# -- maintenance beside a query -----------------------------------------------------------------


def _three_days(storage: TelemetryStorage) -> TelemetryStorage:
    """small_history() on three days, a day at a time: builds a0..c2."""
    for day in range(3):
        assert ingest_jsonl(storage, small_history_on(day), apply_retention=False).sessions == 3
    return storage


@pytest.fixture
def meanwhile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], object]], None]]:
    """Run an action once, after the next query's views are made and before it runs."""
    actions: list[Callable[[], object]] = []
    answer = sql._answer

    def interleaved(connection: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
        while actions:
            actions.pop()()
        return answer(connection, text)

    monkeypatch.setattr(sql, "_answer", interleaved)
    yield actions.append


COUNT_BOTH = "select (select count(*) from sessions), (select count(*) from targets)"


@pytest.fixture(params=[False, True], ids=["few-rows", "many-rows"])
def scanned(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, route: str) -> bool:
    """Whether the files read through Arrow are scanned as the query runs: through pyarrow,
    and through arro3 when they hold more rows than are read whole (when the views are
    made, as today's builds are read without pyarrow)."""
    if request.param:
        monkeypatch.setattr(sql, "_IN_MEMORY_ROWS", 0)
    return bool(request.param) or route == "pyarrow"


def _keeping_two_days(folder: Path) -> TelemetryStorage:
    """The three days, with a retention that keeps the last two."""
    day2 = datetime.fromtimestamp((T0 + 2 * DAY) / 1000, UTC)
    return _three_days(TelemetryStorage(folder, retention_days=1, clock=lambda: day2))


def test_a_day_retention_removes_beside_a_query_is_read_where_it_went(
    tmp_path: Path, meanwhile: Callable[[Callable[[], object]], None]
) -> None:
    """Retention moves the first day aside (for the readers that began before it): the
    query answers as the store was when it began, the next one as it is now."""
    storage = _keeping_two_days(tmp_path / "t")
    meanwhile(storage.apply_retention)
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]
    assert _rows(storage, COUNT_BOTH) == [(6, 26)]


def test_a_day_deleted_beside_a_query_is_read_anew(
    tmp_path: Path, meanwhile: Callable[[Callable[[], object]], None], scanned: bool
) -> None:
    """The day retention moved aside is deleted too, as once its hour is over: a query that
    scans the files runs again over the store as it is now; one that read them whole when
    its views were made answers as the store was then."""
    storage = _keeping_two_days(tmp_path / "t")

    def past_the_hour() -> None:
        assert storage.apply_retention().removed_days
        for aside in storage.dir.glob(f"*/{layout.TRASH_PREFIX}*"):
            shutil.rmtree(aside)

    meanwhile(past_the_hour)
    assert _rows(storage, COUNT_BOTH) == [(6, 26) if scanned else (9, 39)]
    assert _rows(storage, COUNT_BOTH) == [(6, 26)]  # and after it


def test_compaction_beside_a_query_counts_every_build_once(
    tmp_path: Path, meanwhile: Callable[[Callable[[], object]], None]
) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    meanwhile(lambda: compact(storage))
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]  # and after it
    assert _one(storage, "select sum(built + cached + failed + skipped) from daily_targets") == 39


def test_clear_beside_a_query_answers_the_empty_store(
    tmp_path: Path, meanwhile: Callable[[Callable[[], object]], None], scanned: bool
) -> None:
    """A scanning query runs again, over the empty store; one whose rows were read whole
    answers as the store was when it began."""
    storage = _three_days(TelemetryStorage(tmp_path / "t"))
    meanwhile(storage.clear)
    assert _rows(storage, COUNT_BOTH) == [(0, 0) if scanned else (9, 39)]
    assert _rows(storage, COUNT_BOTH) == [(0, 0)]


def test_files_deleted_before_the_views_are_made_take_a_new_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``clear`` between the snapshot and the views (which read today's files whole, in
    the arro3 route): the query answers the store as it is now, never half of it."""
    storage = _three_days(TelemetryStorage(tmp_path / "t"))
    views = sql._views
    cleared: list[bool] = []

    def clearing_first(*args: Any, **kwargs: Any) -> Any:
        if not cleared:
            cleared.append(True)
            storage.clear()
        return views(*args, **kwargs)

    monkeypatch.setattr(sql, "_views", clearing_first)
    assert _rows(storage, COUNT_BOTH) == [(0, 0)]
    assert cleared


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("selec 1", 'Parser Error: syntax error at or near "selec"'),
        ("select nope from targets", 'Binder Error: Referenced column "nope" not found'),
        ("select * from builds", "Catalog Error: Table with name builds does not exist!"),
        ("select cast('x' as int)", "Conversion Error: Could not convert string 'x' to INT32"),
    ],
)
def test_a_query_duckdb_refuses_is_its_first_line(
    small_store: TelemetryStorage, text: str, message: str
) -> None:
    with pytest.raises(sql.QueryError) as refused:
        sql.query(small_store, text)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_without_duckdb_the_error_says_how_to_install_it(
    small_store: TelemetryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)
    for call in (lambda: sql.connect(small_store), lambda: sql.query(small_store, "select 1")):
        with pytest.raises(sql.DuckDBMissing) as missing:
            call()
        assert str(missing.value) == (
            "DuckDB is not installed; install it with: pip install 'builder-telemetry[duckdb]'"
        )
