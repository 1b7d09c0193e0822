"""What the report shows, read once from the analyzer: :class:`ReportData` (frames of plain
columns, one row per point of a chart, and the analyses' own values) from
:func:`report_data`, and the steps a report is made in (:data:`STEPS`), told to ``progress``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import polars as pl

from telemetry.analyzer import TelemetryAnalyzer, regressions
from telemetry.cache import CacheReport, cache_value
from telemetry.changes import ChangepointsMissing, ChangeReport, change_points
from telemetry.events import EXECUTED
from telemetry.model import Bottleneck, Regression, WeightedBottleneck
from telemetry.progress import Progress as Progress
from telemetry.weighted import weighted_bottlenecks

DEFAULT_TOP: Final = 10
# The steps a report is made in, in order. ``progress``, the form the library's long
# operations take, is called with how many of them are done and their number: (0, 6) as the
# store is read, ..., (5, 6) as the scripts are bundled, (6, 6) once the page is whole.
STEPS: Final = (
    "reading builds",
    "weighted time",
    "cache value",
    "change points",
    "charts",
    "scripts",  # Vega's, bundled by vl-convert: a few seconds
)

_EXECUTED: Final = sorted(EXECUTED)


@dataclass(slots=True, frozen=True)
class Changes:
    """The change points of the build time, or why there are none to show."""

    report: ChangeReport | None  # None when the changepoints extra is not installed
    unavailable: str | None  # then: what is missing and how to install it


@dataclass(slots=True, frozen=True)
class ReportData:
    """What the report shows, as frames of plain columns (one row per point of a chart) and
    the analyses' own values."""

    builds: pl.DataFrame  # one row per build, oldest first: see :func:`_build_points`
    days: pl.DataFrame  # one row per UTC day with builds: builds, succeeded, success_rate
    successful: int
    # The means and extremes of the builds' durations and hit rates: None with no builds,
    # and the hit rate's also when no build reported targets (it is over those that did).
    average_build_ms: float | None
    fastest_build_ms: int | None
    slowest_build_ms: int | None
    average_cache_hit_rate: float | None
    builds_with_targets: int
    regression_threshold: float
    regressions: tuple[Regression, ...]  # SPEC §3's: the latest builds only, as the summary
    bottlenecks: tuple[Bottleneck, ...]
    weighted: tuple[WeightedBottleneck, ...]
    cache: CacheReport
    changes: Changes
    newest: dict[str, Any] | None  # the newest build's session row
    timeline: pl.DataFrame  # its targets: target, status, worker, start_ms, end_ms, ...
    top: int

    @property
    def total(self) -> int:
        return self.builds.height

    @property
    def started(self) -> tuple[datetime | None, datetime | None]:
        """When the first and the last build started (None, None with no builds)."""
        if self.builds.is_empty():
            return None, None
        times = self.builds["start_time"]
        return times[0], times[-1]

    @property
    def success_rate(self) -> float:
        return 100.0 * self.successful / self.total if self.total else 0.0


def report_data(
    analyzer: TelemetryAnalyzer,
    *,
    top: int = DEFAULT_TOP,
    progress: Progress | None = None,
) -> ReportData:
    """Everything the report shows of the analyzer's window and filter, read once.

    >>> report_data(TelemetryAnalyzer(TelemetryStorage("store"))).total  # doctest: +SKIP
    200
    """
    step = _stepper(progress)
    step(0)
    sessions, rows = analyzer.targets()
    read = _Read(analyzer, sessions, rows)
    step(1)
    weighted = weighted_bottlenecks(read, top=top)
    step(2)
    cache = cache_value(read)
    step(3)
    try:
        changes = Changes(change_points(read), None)
    except ChangepointsMissing as missing:
        changes = Changes(None, str(missing))
    newest = None if sessions.is_empty() else sessions.row(sessions.height - 1, named=True)
    stats = sessions.select(
        successful=pl.col("succeeded").sum(),
        average=pl.col("duration_ms").mean(),
        fastest=pl.col("duration_ms").min(),
        slowest=pl.col("duration_ms").max(),
        # A mean skips nulls: it is over the builds with targets (None when none has).
        hit_rate=pl.col("cache_hit_rate").mean(),
        with_targets=pl.col("cache_hit_rate").is_not_null().sum(),
    ).row(0, named=True)
    return ReportData(
        builds=_build_points(sessions, analyzer.regression_threshold),
        days=_days(sessions),
        successful=int(stats["successful"] or 0),
        average_build_ms=stats["average"],
        fastest_build_ms=stats["fastest"],
        slowest_build_ms=stats["slowest"],
        average_cache_hit_rate=stats["hit_rate"],
        builds_with_targets=int(stats["with_targets"] or 0),
        regression_threshold=analyzer.regression_threshold,
        regressions=regressions(sessions, threshold=analyzer.regression_threshold),
        bottlenecks=_bottlenecks(rows, top),
        weighted=weighted,
        cache=cache,
        changes=changes,
        newest=newest,
        timeline=_timeline(newest, rows),
        top=top,
    )


class _Read(TelemetryAnalyzer):
    """An analyzer that answers :meth:`sessions` and :meth:`targets` from the rows one
    snapshot gave: the analyses run over it all count the very same builds."""

    def __init__(
        self, asked: TelemetryAnalyzer, sessions: pl.DataFrame, rows: pl.DataFrame
    ) -> None:
        super().__init__(
            asked.storage,
            window=asked.window,
            filter=asked.filter,
            regression_threshold=asked.regression_threshold,
        )
        self._read_sessions = sessions
        self._read_rows = rows

    def sessions(self, *, days: list[date] | None = None) -> pl.DataFrame:
        if days is None:
            return self._read_sessions
        return self._read_sessions.filter(pl.col("start_time").dt.date().is_in(days))

    def targets(
        self,
        *,
        columns: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        rows = self._read_rows
        if statuses is not None:
            rows = rows.filter(pl.col("status").is_in(sorted(set(statuses))))
        if columns is not None:
            chosen = list(columns)
            rows = rows.select(chosen if "session_id" in chosen else ["session_id", *chosen])
        return self._read_sessions, rows


def _stepper(progress: Progress | None) -> Callable[[int], None]:
    """Tells ``progress`` that the first ``done`` of :data:`STEPS` are done."""

    def step(done: int) -> None:
        if progress is not None:
            progress(done, len(STEPS))

    return step


def _build_points(sessions: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """Per build, oldest first: its time, outcome, rate and what identifies it, and SPEC
    §3's regression rule applied to it: ``expected_ms``, the mean duration of the builds
    before it, and ``ratio`` = duration / that mean (None for the first build, or when the
    builds before it took no time); ``regressed`` when ratio ≥ ``threshold``."""
    position = pl.int_range(pl.len())
    expected = pl.when(position > 0).then(
        (pl.col("duration_ms").cum_sum() - pl.col("duration_ms")) / position
    )
    return (
        sessions.lazy()
        .with_columns(expected_ms=expected)
        .with_columns(
            ratio=pl.when(pl.col("expected_ms") > 0).then(
                pl.col("duration_ms") / pl.col("expected_ms")
            )
        )
        .select(
            "session_id",
            "start_time",
            "duration_ms",
            outcome=pl.when(pl.col("interrupted"))
            .then(pl.lit("interrupted"))
            .when(pl.col("succeeded"))
            .then(pl.lit("succeeded"))
            .otherwise(pl.lit("failed")),
            cache_hit_rate=pl.col("cache_hit_rate"),
            commit=pl.col("commit"),
            branch=pl.col("branch"),
            labels=pl.col("labels"),
            expected_ms=pl.col("expected_ms"),
            ratio=pl.col("ratio"),
            regressed=pl.col("ratio").fill_null(0.0) >= threshold,
        )
        .collect()
    )


def _days(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per UTC day with builds, in order: its builds, those that succeeded (an interrupted
    build did not) and the success rate (%)."""
    return (
        sessions.lazy()
        .group_by(day=pl.col("start_time").dt.date())
        .agg(builds=pl.len(), succeeded=pl.col("succeeded").sum())
        .with_columns(success_rate=100.0 * pl.col("succeeded") / pl.col("builds"))
        .sort("day")
        .collect()
    )


def _bottlenecks(rows: pl.DataFrame, top: int) -> tuple[Bottleneck, ...]:
    """SPEC §3's bottlenecks of the target rows: per target, the mean duration of its
    executed runs (their sum / their count, as the analyzer divides), ranked descending,
    ties by label."""
    ranked = (
        rows.lazy()
        .filter(pl.col("status").is_in(_EXECUTED))
        .group_by("target")
        .agg(runs=pl.len(), total_ms=pl.col("duration_ms").sum())
        .with_columns(mean_ms=pl.col("total_ms") / pl.col("runs"))
        .sort(["mean_ms", "target"], descending=[True, False])
        .head(top)
        .collect()
    )
    return tuple(
        Bottleneck(r["target"], r["mean_ms"], r["runs"]) for r in ranked.iter_rows(named=True)
    )


def _timeline(newest: dict[str, Any] | None, rows: pl.DataFrame) -> pl.DataFrame:
    """The newest build's target rows, each over [start_ms, end_ms) from the build's start,
    by worker (those with none last) then start."""
    if newest is None:
        return pl.DataFrame()
    began = pl.lit(newest["start_time"], dtype=pl.Datetime("ms", "UTC"))
    return (
        rows.lazy()
        .filter(pl.col("session_id") == pl.lit(newest["session_id"], dtype=pl.String))
        .select(
            "target",
            "status",
            "worker",
            start_ms=(pl.col("start_time") - began).dt.total_milliseconds(),
            end_ms=(pl.col("end_time") - began).dt.total_milliseconds(),
            duration_ms=pl.col("duration_ms"),
            error=pl.col("error"),
        )
        .sort(["worker", "start_ms", "target"], nulls_last=True)
        .collect()
    )
