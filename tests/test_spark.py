"""The Spark source (``builder-telemetry``) and Spark over the Parquet export, on a real local
Spark: their counts and sums equal the analyzer's summary and a second computation straight
from the events (tests/reference.py), on a history of several days stored a few builds per
file, compacted, damaged, and exported.

One Spark session serves the module; each question is one SQL statement. Without Java the
Spark tests are skipped (they fail under CI, which must run them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import CorruptFileWarning
from telemetry.ingest import ingest_jsonl
from telemetry.integrity import problem
from telemetry.storage import TelemetryStorage
from tests import reference
from tests.conftest import FIXTURES, local_spark, spark_unavailable

try:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import datasource as sds
except ImportError:
    spark_unavailable("pyspark is not installed (pip install -e '.[dev]')")

from pipelines.compaction import compact
from telemetry.parquet import sink_parquet
from telemetry.spark import FORMAT, TelemetryDataSource, spark_schema

TODAY = "2026-11-20"
LATER = datetime(2027, 1, 1, tzinfo=UTC)  # "now" for compaction: every day is closed
REL = 1e-12
# Two builds that reported no targets (``builder record -- make``): they have no rates.
WITHOUT_TARGETS = [
    ("make-1", datetime(2026, 11, 16, 12, tzinfo=UTC)),
    ("make-2", datetime(2026, 11, 19, 8, tzinfo=UTC)),
]


@dataclass(frozen=True)
class History:
    lines: list[str]
    sessions: list[reference.RefSession]
    store: Path  # stored a third of the builds at a time: up to three files per day


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    folder = tmp_path_factory.mktemp("history")
    generated = folder / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--builds", "30", "--days", "6",
         "--today", TODAY, "--output", str(generated)],
        check=True,
    )  # fmt: skip
    lines = generated.read_text().splitlines()
    for session, start in WITHOUT_TARGETS:
        ts = int(start.timestamp() * 1000)
        lines.append(json.dumps({"event": "build_started", "session": session, "ts": ts}))
        lines.append(json.dumps({"event": "build_finished", "session": session,
                                 "ts": ts + 4321, "success": True}))  # fmt: skip
    sessions = sorted({json.loads(line)["session"] for line in lines})
    store = folder / "telemetry"
    storage = TelemetryStorage(store)
    for part in range(3):
        chosen = set(sessions[part::3])
        batch = [line for line in lines if json.loads(line)["session"] in chosen]
        result = ingest_jsonl(storage, batch, apply_retention=False)
        assert result.sessions == len(chosen) and not result.problems
    return History(lines, reference.sessions_from_lines(lines), store)


@pytest.fixture(scope="module")
def compacted(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("compacted") / "telemetry"
    shutil.copytree(history.store, store)
    assert len(compact(TelemetryStorage(store, clock=lambda: LATER))) == 6
    return store


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    with local_spark("builder-telemetry tests") as session:
        yield session


# -- what every engine must answer ------------------------------------------------------------


def _source(spark: SparkSession, store: Path, dataset: str) -> DataFrame:
    # A load per query: Spark 4.1-4.3 keep the files a date condition planned with the
    # DataFrame and reuse them for its later queries without one (see docs/query.md).
    return spark.read.format(FORMAT).option("dataset", dataset).load(str(store))


def _answers(spark: SparkSession, sessions: DataFrame, targets: DataFrame) -> dict[str, Any]:
    """Every count, sum and mean asked of the builds, in one statement (each dataset read
    once: the statement scans each twice)."""
    sessions.cache().createOrReplaceTempView("s")
    targets.cache().createOrReplaceTempView("t")
    row = spark.sql("""
        SELECT
          (SELECT struct(count(*) AS builds, count_if(succeeded) AS successful,
                         sum(built) AS built, sum(cached) AS cached, sum(failed) AS failed,
                         sum(skipped) AS skipped, sum(total_targets) AS total_targets,
                         avg(duration_ms) AS mean_ms, count(cache_hit_rate) AS rated,
                         avg(cache_hit_rate) AS hit_rate,
                         avg(parallelism_utilization) AS utilization,
                         avg(targets_per_second) AS targets_per_second)
           FROM s) AS sessions,
          (SELECT struct(count(*) AS rows, count_if(status = 'built') AS built,
                         count_if(status = 'cached') AS cached,
                         count_if(status = 'failed') AS failed,
                         count_if(status = 'skipped') AS skipped)
           FROM t) AS targets,
          (SELECT collect_list(struct(target, mean_ms, runs)) FROM (
             SELECT target, avg(duration_ms) AS mean_ms, count(*) AS runs FROM t
             WHERE status IN ('built', 'failed') GROUP BY target)) AS bottlenecks,
          (SELECT collect_list(struct(session_id, date, cache_hit_rate,
                                      parallelism_utilization, targets_per_second))
           FROM s) AS rates
    """).first()
    assert row is not None
    return {
        "sessions": row["sessions"].asDict(),
        "targets": row["targets"].asDict(),
        "bottlenecks": {b["target"]: (b["mean_ms"], b["runs"]) for b in row["bottlenecks"]},
        "rates": {r["session_id"]: r.asDict() for r in row["rates"]},
    }


def _check(answers: dict[str, Any], history: History, storage: TelemetryStorage) -> None:
    """``answers`` are those of the events, and those of the analyzer of ``storage``."""
    ref = history.sessions
    summary = reference.summary(ref)
    want_sessions = {
        "builds": len(ref),
        "successful": sum(s.succeeded for s in ref),
        "built": sum(s.built for s in ref),
        "cached": sum(s.cached for s in ref),
        "failed": sum(s.failed for s in ref),
        "skipped": sum(s.skipped for s in ref),
        "total_targets": sum(s.total_targets for s in ref),
        "mean_ms": pytest.approx(summary["avg_duration_ms"], rel=REL),
        "rated": len(ref) - len(WITHOUT_TARGETS),
        "hit_rate": pytest.approx(summary["avg_cache_hit_rate"], rel=REL),
        "utilization": pytest.approx(summary["avg_utilization"], rel=REL),
        "targets_per_second": pytest.approx(summary["avg_targets_per_second"], rel=REL),
    }
    assert answers["sessions"] == want_sessions
    assert answers["targets"] == {
        "rows": want_sessions["total_targets"],
        **{status: want_sessions[status] for status in ("built", "cached", "failed", "skipped")},
    }
    runs: dict[str, int] = {}
    for session in ref:
        for target, _ in session.executed_runs:
            runs[target] = runs.get(target, 0) + 1
    assert answers["bottlenecks"] == {
        target: (pytest.approx(mean, rel=REL), runs[target])
        for target, mean in reference.bottlenecks(ref)
    }
    # The analyzer: the same summary, and each build's rates exactly.
    report = TelemetryAnalyzer(storage).summary(top=1000)
    got = answers["sessions"]
    assert (report.total_builds, report.successful, report.builds_with_targets) == (
        got["builds"], got["successful"], got["rated"])  # fmt: skip
    assert report.average_build_ms == pytest.approx(got["mean_ms"], rel=REL)
    assert report.average_cache_hit_rate == pytest.approx(got["hit_rate"], rel=REL)
    assert report.average_utilization == pytest.approx(got["utilization"], rel=REL)
    assert report.average_targets_per_second == pytest.approx(got["targets_per_second"], rel=REL)
    assert {b.target: (b.mean_ms, b.runs) for b in report.bottlenecks} == {
        target: (pytest.approx(mean, rel=REL), n)
        for target, (mean, n) in answers["bottlenecks"].items()
    }
    analyzed = TelemetryAnalyzer(storage).sessions()
    assert answers["rates"] == {
        row["session_id"]: {
            key: row[key]
            for key in ("session_id", "date", "cache_hit_rate", "parallelism_utilization",
                        "targets_per_second")
        }
        for row in analyzed.iter_rows(named=True)
    }  # fmt: skip
    for session in ref:  # and the events' own rates, to the last digits
        rates = answers["rates"][session.session_id]
        assert rates["date"] == datetime.fromtimestamp(session.start_ms / 1000, UTC).date()
        for key in ("cache_hit_rate", "parallelism_utilization", "targets_per_second"):
            expected = getattr(session, key)
            assert rates[key] == (None if expected is None else pytest.approx(expected, rel=REL))


# -- the source -------------------------------------------------------------------------------


def test_the_source_answers_as_the_events_and_the_analyzer(
    spark: SparkSession, history: History
) -> None:
    store = history.store
    assert len(list(store.glob("targets/*/*.arrow"))) > 6  # several files a day
    answers = _answers(spark, _source(spark, store, "sessions"), _source(spark, store, "targets"))
    _check(answers, history, TelemetryStorage(store))


def test_a_compacted_store_answers_the_same_and_its_rollups_agree(
    spark: SparkSession, history: History, compacted: Path
) -> None:
    # One compacted file a day (the files it replaced stay for an hour, for readers).
    assert len(list(compacted.glob("targets/*/*-day-*.arrow"))) == 6
    answers = _answers(
        spark, _source(spark, compacted, "sessions"), _source(spark, compacted, "targets")
    )
    _check(answers, history, TelemetryStorage(compacted))
    _source(spark, compacted, "daily_targets").createOrReplaceTempView("daily")
    rolled = spark.sql("""
        SELECT target, sum(executed_ms) / sum(built + failed) AS mean_ms,
               sum(built + failed) AS runs
        FROM daily GROUP BY target HAVING sum(built + failed) > 0
    """).collect()
    assert {r["target"]: (r["mean_ms"], r["runs"]) for r in rolled} == {
        target: (pytest.approx(mean, rel=REL), runs)
        for target, (mean, runs) in answers["bottlenecks"].items()
    }


def test_spark_over_the_parquet_export_answers_the_same(
    spark: SparkSession, history: History, tmp_path: Path
) -> None:
    written = sink_parquet(TelemetryStorage(history.store), tmp_path / "export")
    assert (written.sessions, written.days) == (len(history.sessions), 6)
    read = spark.read.parquet
    answers = _answers(
        spark, read(str(tmp_path / "export/sessions")), read(str(tmp_path / "export/targets"))
    )
    _check(answers, history, TelemetryStorage(history.store))


def test_the_schema_is_the_stores_with_labels_as_strings_and_the_day(
    spark: SparkSession, history: History
) -> None:
    targets = _source(spark, history.store, "targets")
    assert targets.schema == spark_schema("targets")
    assert targets.schema.simpleString() == (
        "struct<session_id:string,target:string,status:string,start_time:timestamp,"
        "end_time:timestamp,duration_ms:bigint,worker:int,error:string,deps:array<string>,"
        "date:date>"
    )
    sessions = _source(spark, history.store, "sessions").schema
    assert [f.name for f in sessions][-4:] == [
        "cache_hit_rate", "parallelism_utilization", "targets_per_second", "date"]  # fmt: skip
    assert sessions["labels"].dataType.simpleString() == "map<string,string>"


def test_days_outside_a_date_condition_are_never_planned(
    spark: SparkSession, history: History
) -> None:
    chosen = [date(2026, 11, 17), date(2026, 11, 18)]
    files = [p for day in chosen for p in history.store.glob(f"targets/date={day}/*.arrow")]
    everything = list(history.store.glob("targets/*/*.arrow"))
    assert 0 < len(files) < len(everything)
    ranged = _source(spark, history.store, "targets").where(
        "date >= '2026-11-17' AND date < '2026-11-19'"
    )
    assert ranged.rdd.getNumPartitions() == len(files)
    listed = _source(spark, history.store, "targets").where("date IN ('2026-11-17', '2026-11-18')")
    assert listed.rdd.getNumPartitions() == len(files)
    one = _source(spark, history.store, "targets").where("date = '2026-11-18'")
    assert one.rdd.getNumPartitions() == len(list(history.store.glob("targets/date=2026-11-18/*")))
    row = ranged.selectExpr("count(*) AS rows", "min(date) AS first", "max(date) AS last").first()
    assert row is not None
    started = {
        s.session_id: datetime.fromtimestamp(s.start_ms / 1000, UTC).date()
        for s in history.sessions
    }
    want = sum(s.total_targets for s in history.sessions if started[s.session_id] in chosen)
    assert (row["rows"], row["first"], row["last"]) == (want, *chosen)


def test_a_damaged_file_is_left_out(spark: SparkSession, history: History, tmp_path: Path) -> None:
    store = tmp_path / "telemetry"
    shutil.copytree(history.store, store)
    # A targets file cut short (its footer is gone: left out when planning), and a sessions
    # file whose data is overwritten behind a sound footer (left out by the executor).
    cut = sorted(store.glob("targets/*/*.arrow"))[0]
    cut_rows = int(cut.stem.rsplit("-n", 1)[1])
    cut.write_bytes(cut.read_bytes()[:-100])
    scribbled = sorted(store.glob("sessions/*/*.arrow"))[-1]
    scribbled_rows = int(scribbled.stem.rsplit("-n", 1)[1])
    data = bytearray(scribbled.read_bytes())
    middle = len(data) // 2
    data[middle - 32 : middle + 32] = b"\x5a" * 64
    scribbled.write_bytes(bytes(data))
    assert problem(scribbled, "sessions") is None
    assert problem(scribbled, "sessions", full=True) is not None
    sessions, targets = _source(spark, store, "sessions"), _source(spark, store, "targets")
    sessions.createOrReplaceTempView("s")
    targets.createOrReplaceTempView("t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptFileWarning)
        row = spark.sql(
            "SELECT (SELECT count(*) FROM s) AS builds, (SELECT count(*) FROM t) AS rows"
        ).first()
        report = TelemetryAnalyzer(TelemetryStorage(store)).summary()
    assert row is not None
    total_targets = sum(s.total_targets for s in history.sessions)
    assert (row["builds"], row["rows"]) == (
        len(history.sessions) - scribbled_rows, total_targets - cut_rows)  # fmt: skip
    assert report.total_builds == row["builds"]


# -- the reader, without Spark ----------------------------------------------------------------


def test_no_file_of_a_day_outside_the_conditions_is_opened(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's own steps, as Spark calls them, with every folder the process lists and
    every file it opens recorded: the folders of days outside the conditions' range are not
    listed, and no file of a day they leave out is opened."""
    import pyarrow.ipc

    listed: list[str] = []
    opened: list[str] = []
    scandir, open_fd, open_ipc = os.scandir, os.open, pyarrow.ipc.open_file

    def record(real: Any, into: list[str]) -> Any:
        def wrapper(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            into.append(os.fspath(path) if isinstance(path, str | os.PathLike) else "")
            return real(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "scandir", record(scandir, listed))
    monkeypatch.setattr(os, "open", record(open_fd, opened))
    monkeypatch.setattr(pyarrow.ipc, "open_file", record(open_ipc, opened))
    source = TelemetryDataSource({"path": str(history.store), "dataset": "targets"})
    reader = source.reader(source.schema())
    elsewhere = sds.GreaterThan(("duration_ms",), 0)
    conditions: list[sds.Filter] = [
        sds.GreaterThanOrEqual(("date",), date(2026, 11, 17)),
        sds.LessThan(("date",), date(2026, 11, 20)),
        sds.Not(sds.EqualTo(("date",), date(2026, 11, 18))),
        elsewhere,
    ]
    left = list(reader.pushFilters(conditions))
    assert len(left) == 1 and left[0] is elsewhere  # Spark checks the rest itself
    partitions = reader.partitions()
    rows = sum(batch.num_rows for p in partitions for batch in reader.read(p))
    kept = {"date=2026-11-17", "date=2026-11-19"}
    started = {
        s.session_id: datetime.fromtimestamp(s.start_ms / 1000, UTC).date().isoformat()
        for s in history.sessions
    }
    assert rows == sum(
        s.total_targets for s in history.sessions if f"date={started[s.session_id]}" in kept
    )

    def days(paths: list[str]) -> set[str]:
        return {part for path in paths for part in Path(path).parts if part.startswith("date=")}

    # Within the range, the 18th is listed (by name) but none of its files is opened.
    assert days(listed) == {*kept, "date=2026-11-18"}
    assert days(opened) == kept


def test_a_file_retention_moved_after_planning_is_still_read(
    history: History, tmp_path: Path
) -> None:
    store = tmp_path / "telemetry"
    shutil.copytree(history.store, store)
    source = TelemetryDataSource({"path": str(store), "dataset": "targets"})
    reader = source.reader(source.schema())
    partitions = reader.partitions()
    # Retention of one day as of 2026-11-20 removes the five days before it.
    removed = TelemetryStorage(
        store, retention_days=1, clock=lambda: datetime(2026, 11, 20, 12, tzinfo=UTC)
    ).apply_retention()
    assert not list(store.glob("targets/date=2026-11-15/*.arrow")), removed
    rows = sum(batch.num_rows for p in partitions for batch in reader.read(p))
    assert rows == sum(s.total_targets for s in history.sessions)


def test_an_unknown_dataset_is_refused_with_the_choices() -> None:
    from telemetry.errors import ConfigError

    with pytest.raises(ConfigError, match="choose one of sessions, targets, daily_targets"):
        TelemetryDataSource({"path": ".", "dataset": "builds"}).schema()
