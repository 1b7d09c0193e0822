"""The analyzer checked against a second, independent route: DuckDB SQL over the stored files.

Every expected number here is computed in SQL straight from SPEC.md §3, reading the Arrow IPC
files through pyarrow datasets. Per-session counts, executed time and peak concurrency are
derived from the *targets* table; only session_id, start_time, duration_ms, succeeded and
parallelism are taken from the session rows. Nothing of ``telemetry.analyzer`` is used to get
an expected value.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest

from telemetry.analyzer import SummaryReport, TelemetryAnalyzer
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Window

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "data-fixtures" / "generate.py"
TODAY = "2026-11-20"
BUILDS = 200
THRESHOLD = 1.5
TOP = 10
RECENT = 5
REL = 1e-9
WITHOUT_TARGETS = 24
WINDOW_SINCE = "2026-10-15"
WINDOW_UNTIL = "2026-11-01"
# The same window written out by hand: since at 00:00 UTC, until the end of that whole day.
WINDOW_BOUNDS = (datetime(2026, 10, 15, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))

# Per-session metrics of the sessions whose start_time lies in [$since, $until) (a NULL bound
# is open). Every query below appends its final SELECT to this.
SESSION_METRICS = """
WITH win AS (
    SELECT session_id, start_time, duration_ms, succeeded, parallelism
    FROM sessions
    WHERE ($since::TIMESTAMPTZ IS NULL OR start_time >= $since::TIMESTAMPTZ)
      AND ($until::TIMESTAMPTZ IS NULL OR start_time < $until::TIMESTAMPTZ)
),
tgt AS (
    SELECT session_id, target, status, start_time, end_time, duration_ms
    FROM targets
    WHERE session_id IN (SELECT session_id FROM win)
),
executed AS (
    SELECT * FROM tgt WHERE status IN ('built', 'failed')
),
counts AS (
    SELECT
        session_id,
        count(*) FILTER (WHERE status = 'built') AS built,
        count(*) FILTER (WHERE status = 'cached') AS cached,
        count(*) FILTER (WHERE status = 'failed') AS failed,
        count(*) FILTER (WHERE status = 'skipped') AS skipped,
        count(*) AS total_targets,
        coalesce(sum(duration_ms) FILTER (WHERE status IN ('built', 'failed')), 0)
            AS executed_ms
    FROM tgt
    GROUP BY session_id
),
steps AS (
    -- +1 when an executed target starts, -1 when it ends; empty intervals never run.
    SELECT session_id, epoch_ms(start_time) AS t, 1 AS step
    FROM executed WHERE start_time < end_time
    UNION ALL
    SELECT session_id, epoch_ms(end_time) AS t, -1 AS step
    FROM executed WHERE start_time < end_time
),
running AS (
    -- At equal times ends (-1) sort before starts (+1): touching intervals do not overlap.
    SELECT
        session_id,
        sum(step) OVER (
            PARTITION BY session_id ORDER BY t, step
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS open_now
    FROM steps
),
peaks AS (
    SELECT session_id, max(open_now) AS peak FROM running GROUP BY session_id
),
joined AS (
    SELECT
        w.session_id,
        epoch_ms(w.start_time) AS start_ms,
        w.duration_ms,
        w.succeeded,
        coalesce(c.built, 0) AS built,
        coalesce(c.cached, 0) AS cached,
        coalesce(c.failed, 0) AS failed,
        coalesce(c.skipped, 0) AS skipped,
        coalesce(c.total_targets, 0) AS total_targets,
        coalesce(c.executed_ms, 0) AS executed_ms,
        coalesce(w.parallelism, coalesce(p.peak, 0)) AS workers,
        row_number() OVER (ORDER BY w.start_time, w.session_id) AS pos,
        count(*) OVER () AS n
    FROM win AS w
    LEFT JOIN counts AS c USING (session_id)
    LEFT JOIN peaks AS p USING (session_id)
),
metrics AS (
    -- A session without a single target row has no rates (NULL); one whose targets were
    -- all skipped has them (its hit rate is 0).
    SELECT
        *,
        CASE WHEN total_targets = 0 THEN NULL
            WHEN built + cached + failed > 0
            THEN 100 * cached::DOUBLE / (built + cached + failed) ELSE 0.0
        END AS cache_hit_rate,
        CASE WHEN total_targets = 0 THEN NULL
            WHEN duration_ms * workers > 0
            THEN 100 * executed_ms::DOUBLE / (duration_ms * workers) ELSE 0.0
        END AS parallelism_utilization,
        CASE WHEN total_targets = 0 THEN NULL
            WHEN duration_ms > 0
            THEN total_targets::DOUBLE / (duration_ms / 1000.0::DOUBLE) ELSE 0.0
        END AS targets_per_second
    FROM joined
),
rated AS (
    -- The sessions with a hit rate, numbered among themselves for its trend.
    SELECT
        cache_hit_rate,
        row_number() OVER (ORDER BY pos) AS rated_pos,
        count(*) OVER () AS rated_n
    FROM metrics
    WHERE cache_hit_rate IS NOT NULL
)
"""

PER_SESSION = (
    SESSION_METRICS
    + """
SELECT session_id, built, cached, failed, skipped, total_targets,
       cache_hit_rate, parallelism_utilization, targets_per_second
FROM metrics ORDER BY pos
"""
)

# Older ⌊n/2⌋ against the newer rest; ±10% of the old mean; Stable for n < 2 or old mean 0.
TREND_MACRO = """
CREATE OR REPLACE TEMP MACRO trend_label(old_mean, new_mean) AS
    CASE
        WHEN old_mean IS NULL OR new_mean IS NULL OR old_mean = 0 THEN 'Stable'
        WHEN (new_mean - old_mean) / old_mean > 0.10::DOUBLE THEN 'Increasing'
        WHEN (new_mean - old_mean) / old_mean < -0.10::DOUBLE THEN 'Decreasing'
        ELSE 'Stable'
    END
"""

TOTALS = (
    SESSION_METRICS
    + """
SELECT
    count(*) AS total_builds,
    count(*) FILTER (WHERE succeeded) AS successful,
    count(*) FILTER (WHERE NOT succeeded) AS failed,
    100 * (count(*) FILTER (WHERE succeeded))::DOUBLE / count(*) AS success_rate,
    avg(duration_ms) AS average_build_ms,
    min(duration_ms) AS fastest_build_ms,
    max(duration_ms) AS slowest_build_ms,
    -- avg and count skip NULLs: the means of the rates are over the sessions that have them.
    count(cache_hit_rate) AS builds_with_targets,
    avg(cache_hit_rate) AS average_cache_hit_rate,
    avg(parallelism_utilization) AS average_utilization,
    avg(targets_per_second) AS average_targets_per_second,
    trend_label(
        (SELECT avg(cache_hit_rate) FROM rated WHERE rated_pos <= rated_n // 2),
        (SELECT avg(cache_hit_rate) FROM rated WHERE rated_pos > rated_n // 2)
    ) AS cache_trend,
    trend_label(
        avg(duration_ms::DOUBLE) FILTER (WHERE pos <= n // 2),
        avg(duration_ms::DOUBLE) FILTER (WHERE pos > n // 2)
    ) AS build_time_trend
FROM metrics
"""
)

BOTTLENECKS = (
    SESSION_METRICS
    + """
SELECT target, avg(duration_ms) AS mean_ms, count(*) AS runs
FROM executed
GROUP BY target
ORDER BY mean_ms DESC, target
LIMIT $top
"""
)

REGRESSIONS = (
    SESSION_METRICS
    + """,
history AS (
    SELECT
        *,
        avg(duration_ms::DOUBLE) OVER (
            ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS expected_ms
    FROM metrics
)
SELECT session_id, start_ms, duration_ms / expected_ms AS ratio, expected_ms,
       duration_ms AS actual_ms
FROM history
WHERE pos > n - (CASE WHEN n >= 10 THEN 3 ELSE 1 END)
  AND expected_ms > 0
  AND duration_ms / expected_ms >= $threshold
ORDER BY pos
"""
)

RECENT_BOTTLENECKS = """
WITH newest AS (
    SELECT session_id, row_number() OVER (ORDER BY start_time DESC, session_id DESC) AS rank
    FROM sessions
    QUALIFY rank <= $count
),
per_target AS (
    SELECT session_id, target, avg(duration_ms) AS mean_ms, count(*) AS runs
    FROM targets
    WHERE status IN ('built', 'failed')
      AND session_id IN (SELECT session_id FROM newest)
    GROUP BY session_id, target
),
ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY session_id ORDER BY mean_ms DESC, target) AS place
    FROM per_target
)
SELECT n.session_id, r.target, r.mean_ms, r.runs
FROM newest AS n
LEFT JOIN ranked AS r ON r.session_id = n.session_id AND r.place <= 3
ORDER BY n.rank, r.place
"""


@dataclass(slots=True, frozen=True)
class Store:
    storage: TelemetryStorage
    con: duckdb.DuckDBPyConnection


def _history(root: Path) -> list[str]:
    history = root / "history.jsonl"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--output", str(history), "--today", TODAY],
        check=True,
    )
    return history.read_text().splitlines()


def _without_targets(history: list[str]) -> list[str]:
    """Builds that report no targets (as ``record -- make`` stores them) a minute after
    some of the history's builds, and two whose every target was skipped."""
    rng = random.Random(12)
    started = [json.loads(line) for line in history if '"build_started"' in line]
    # Whole milliseconds only: a few of the history's times are RFC 3339 text or fractions.
    starts = sorted(event["ts"] for event in started if isinstance(event["ts"], int))
    events: list[dict[str, object]] = []
    for n, start in enumerate(rng.sample(starts, WITHOUT_TARGETS)):
        session, begin = f"make-{n}", start + 60_000
        end = begin + rng.randint(300, 9000)
        events.append({"event": "build_started", "session": session, "ts": begin, "tool": "make"})
        events.append(
            {"event": "build_finished", "session": session, "ts": end, "success": n % 5 != 0}
        )
    for n, start in enumerate(rng.sample(starts, 2)):
        session, begin = f"skipped-{n}", start + 120_000
        events.append({"event": "build_started", "session": session, "ts": begin})
        for target in ("//a:x", "//a:y", "//a:z"):
            events.append({"event": "target_finished", "session": session, "ts": begin + 700,
                           "target": target, "status": "skipped"})  # fmt: skip
        events.append(
            {"event": "build_finished", "session": session, "ts": begin + 800, "success": False}
        )
    return [json.dumps(event) for event in events]


def _open(root: Path, lines: list[str], builds: int) -> Iterator[Store]:
    """``lines`` ingested once, and DuckDB views over the stored files."""
    storage = TelemetryStorage(root / "telemetry")  # no retention: no max_sessions/days
    result = ingest_jsonl(storage, lines)
    assert result.sessions == builds and not result.problems

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in ("sessions", "targets"):
        dataset = ds.dataset(storage.dir / name, format="ipc", partitioning="hive")
        con.register(name, dataset)
    con.execute(TREND_MACRO)
    yield Store(storage, con)
    con.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The generated 200-build history."""
    root = tmp_path_factory.mktemp("duckdb-route")
    yield from _open(root, _history(root), BUILDS)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The generated history with builds that report no targets among its own."""
    root = tmp_path_factory.mktemp("duckdb-route-mixed")
    history = _history(root)
    yield from _open(root, history + _without_targets(history), BUILDS + WITHOUT_TARGETS + 2)


def _query(con: duckdb.DuckDBPyConnection, sql: str, **params: object) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _bounds(window: tuple[datetime, datetime] | None) -> dict[str, object]:
    since, until = window if window is not None else (None, None)
    return {"since": since, "until": until}


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _assert_summary_matches(
    store: Store,
    report: SummaryReport,
    window: tuple[datetime, datetime] | None,
    threshold: float = THRESHOLD,
) -> None:
    con = store.con
    bounds = _bounds(window)
    [totals] = _query(con, TOTALS, **bounds)
    assert totals["total_builds"] > 0

    assert report.total_builds == totals["total_builds"]
    assert report.successful == totals["successful"]
    assert report.failed == totals["failed"]
    assert report.success_rate == pytest.approx(totals["success_rate"], rel=REL)
    assert report.average_build_ms == pytest.approx(totals["average_build_ms"], rel=REL)
    assert report.fastest_build_ms == totals["fastest_build_ms"]
    assert report.slowest_build_ms == totals["slowest_build_ms"]
    assert report.builds_with_targets == totals["builds_with_targets"]
    assert report.average_cache_hit_rate == pytest.approx(totals["average_cache_hit_rate"], rel=REL)
    assert report.cache_trend == totals["cache_trend"]
    assert report.average_utilization == pytest.approx(totals["average_utilization"], rel=REL)
    assert report.average_targets_per_second == pytest.approx(
        totals["average_targets_per_second"], rel=REL
    )
    assert report.build_time_trend == totals["build_time_trend"]

    expected_bottlenecks = _query(con, BOTTLENECKS, top=TOP, **bounds)
    assert len(expected_bottlenecks) == TOP
    assert [b.target for b in report.bottlenecks] == [r["target"] for r in expected_bottlenecks]
    assert [b.runs for b in report.bottlenecks] == [r["runs"] for r in expected_bottlenecks]
    assert [b.mean_ms for b in report.bottlenecks] == pytest.approx(
        [r["mean_ms"] for r in expected_bottlenecks], rel=REL
    )

    assert report.regression_threshold == threshold
    expected_regressions = _query(con, REGRESSIONS, threshold=threshold, **bounds)
    got = report.regressions
    assert [r.session_id for r in got] == [r["session_id"] for r in expected_regressions]
    assert [_epoch_ms(r.start_time) for r in got] == [r["start_ms"] for r in expected_regressions]
    assert [r.actual_ms for r in got] == [r["actual_ms"] for r in expected_regressions]
    assert [r.ratio for r in got] == pytest.approx(
        [r["ratio"] for r in expected_regressions], rel=REL
    )
    assert [r.expected_ms for r in got] == pytest.approx(
        [r["expected_ms"] for r in expected_regressions], rel=REL
    )


def _assert_sessions_match(store: Store, builds: int) -> None:
    expected = {row["session_id"]: row for row in _query(store.con, PER_SESSION, **_bounds(None))}
    frame = TelemetryAnalyzer(store.storage).sessions()
    got = {row["session_id"]: row for row in frame.iter_rows(named=True)}

    assert len(expected) == builds
    assert frame.height == builds
    assert set(got) == set(expected)
    for session_id, want in expected.items():
        row = got[session_id]
        for column in ("built", "cached", "failed", "skipped", "total_targets"):
            assert row[column] == want[column], (session_id, column)
        for column in ("cache_hit_rate", "parallelism_utilization", "targets_per_second"):
            if want[column] is None:  # unknown: the session has no target rows
                assert row[column] is None, (session_id, column)
            else:
                assert row[column] == pytest.approx(want[column], rel=REL), (session_id, column)


def test_per_session_metrics_match_sql(store: Store) -> None:
    _assert_sessions_match(store, BUILDS)


def test_summary_matches_sql(store: Store) -> None:
    report = TelemetryAnalyzer(store.storage).summary(top=TOP)

    assert report.total_builds == BUILDS
    # The generated history ends with three slow cold builds: all three must be reported.
    assert len(report.regressions) == 3
    _assert_summary_matches(store, report, None)


def test_recent_bottlenecks_match_sql(store: Store) -> None:
    rows = _query(store.con, RECENT_BOTTLENECKS, count=RECENT)
    expected: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        tops = expected.setdefault(row["session_id"], [])
        if row["target"] is not None:
            tops.append(row)

    reports = TelemetryAnalyzer(store.storage).recent(RECENT)

    assert [r.session_id for r in reports] == list(expected)
    assert len(reports) == RECENT
    for report in reports:
        want = expected[report.session_id]
        assert [b.target for b in report.bottlenecks] == [w["target"] for w in want]
        assert [b.runs for b in report.bottlenecks] == [w["runs"] for w in want]
        assert [b.mean_ms for b in report.bottlenecks] == pytest.approx(
            [w["mean_ms"] for w in want], rel=REL
        )


def test_windowed_summary_matches_sql(store: Store) -> None:
    window = Window.parse(WINDOW_SINCE, WINDOW_UNTIL)
    assert (window.since, window.until) == WINDOW_BOUNDS
    report = TelemetryAnalyzer(store.storage, window=window).summary(top=TOP)

    assert 10 <= report.total_builds < BUILDS
    _assert_summary_matches(store, report, WINDOW_BOUNDS)


def test_windowed_regressions_at_a_lower_threshold_match_sql(store: Store) -> None:
    # No build of the window is 1.5x slower than those before it; at 1.1 one of the window's
    # last three is, so the windowed regression path is compared on a non-empty answer too.
    window = Window.parse(WINDOW_SINCE, WINDOW_UNTIL)
    report = TelemetryAnalyzer(store.storage, window=window, regression_threshold=1.1).summary(
        top=TOP
    )

    assert report.regressions
    _assert_summary_matches(store, report, WINDOW_BOUNDS, threshold=1.1)


def test_builds_without_targets_have_no_rates_as_in_sql(mixed: Store) -> None:
    _assert_sessions_match(mixed, BUILDS + WITHOUT_TARGETS + 2)
    unknown = TelemetryAnalyzer(mixed.storage).sessions().filter(pl.col("cache_hit_rate").is_null())
    assert sorted(unknown["session_id"]) == sorted(f"make-{n}" for n in range(WITHOUT_TARGETS))


def test_rates_are_averaged_over_the_builds_with_targets_as_in_sql(mixed: Store) -> None:
    report = TelemetryAnalyzer(mixed.storage).summary(top=TOP)

    assert (report.total_builds, report.builds_with_targets) == (
        BUILDS + WITHOUT_TARGETS + 2,
        BUILDS + 2,
    )
    _assert_summary_matches(mixed, report, None)


def test_windowed_rates_are_averaged_over_the_builds_with_targets_as_in_sql(
    mixed: Store,
) -> None:
    window = Window.parse(WINDOW_SINCE, WINDOW_UNTIL)
    report = TelemetryAnalyzer(mixed.storage, window=window).summary(top=TOP)

    assert 0 < report.builds_with_targets < report.total_builds
    _assert_summary_matches(mixed, report, WINDOW_BOUNDS)
