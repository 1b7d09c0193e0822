"""The analyzer: every metric of the specification, as polars lazy queries over the store.

Per-session metrics are computed from the stored session rows; bottlenecks from the stored
target rows of the sessions in the window, or, for the whole days of the window that
compaction has rolled up, from the ``daily_targets`` rollup, which gives the same numbers from
a few rows per target and day. Partitions outside the window are never opened, and ``recent``
opens only the newest days it needs. A :class:`~telemetry.window.Filter` (branch, tool,
labels, outcome) is a condition of the sessions query, so only the days and the target rows
of the sessions it takes are read. Every answer is read from one
:class:`~telemetry.snapshot.Snapshot`, so its numbers are of the same builds however
compaction and retention run beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import polars as pl

from telemetry.config import DEFAULT_REGRESSION_THRESHOLD
from telemetry.errors import StorageError, TelemetryError
from telemetry.events import EXECUTED, TIME_FORMAT
from telemetry.layout import PARTITION_KEY
from telemetry.metrics import with_session_metrics
from telemetry.model import (
    Bottleneck,
    BuildDetails,
    BuildReport,
    Regression,
    RolledDays,
    SummaryReport,
    TargetRun,
    Trend,
    build_report,
)
from telemetry.schema import DATASETS, SESSIONS_SCHEMA, Dataset
from telemetry.snapshot import Snapshot, SnapshotChanged, StoredFile
from telemetry.storage import TelemetryStorage
from telemetry.window import Filter, Window

if TYPE_CHECKING:
    import pyarrow as pa

TREND_BAND: Final = 0.10
_EXECUTED: Final = sorted(EXECUTED)
_RETRIES: Final = 3
# How many of the builds a session id prefix matches an error names.
_NAMED: Final = 5
# The target rows :meth:`TelemetryAnalyzer.targets` answers, labels as text.
_TARGET_COLUMNS: Final[dict[str, pl.DataType]] = {
    "session_id": pl.String(),
    "target": pl.String(),
    "status": pl.String(),
    "start_time": pl.Datetime("ms", "UTC"),
    "end_time": pl.Datetime("ms", "UTC"),
    "duration_ms": pl.Int64(),
    "worker": pl.Int32(),
    "error": pl.String(),
}


_T = TypeVar("_T")


class BuildLookupError(TelemetryError):
    """No build, or more than one, has the session id (or the start of one) asked for."""


@dataclass(slots=True, frozen=True)
class _Rolled:
    """What the daily rollups answer for a window's bottlenecks."""

    stems: frozenset[str]  # the compacted files whose target rows they stand in for
    frame: pl.DataFrame  # target, runs, total_ms
    whole_days: frozenset[date]  # days with no other file: their target rows are not listed


class TelemetryAnalyzer:
    """Answers questions about the builds in a window of the store.

    >>> analyzer = TelemetryAnalyzer(TelemetryStorage(".builder-cache/telemetry"))
    >>> analyzer.summary().total_builds  # doctest: +SKIP
    147
    """

    def __init__(
        self,
        storage: TelemetryStorage,
        *,
        window: Window | None = None,
        filter: Filter | None = None,
        regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD,
    ) -> None:
        self.storage = storage
        self.window = window or Window()
        self.filter = filter or Filter()
        self.regression_threshold = regression_threshold

    # -- per session --------------------------------------------------------------------------

    def sessions(self, *, days: list[date] | None = None) -> pl.DataFrame:
        """Every session in the window (or in ``days`` of it) that the filter takes, with its
        derived metrics, oldest first."""
        return self._reading(lambda snapshot: self._sessions(snapshot, days), ("sessions",))

    def _sessions(self, snapshot: Snapshot, days: list[date] | None = None) -> pl.DataFrame:
        frame = self._collect(
            snapshot,
            "sessions",
            lambda lf: (
                self._selected(lf).pipe(with_session_metrics).sort("start_time", "session_id")
            ),
            days,
        )
        # One chunk: a mean is then summed in one order, however many files held the rows.
        return _empty_sessions() if frame is None else frame.rechunk()

    def targets(
        self,
        *,
        columns: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The window's sessions that the filter takes (as :meth:`sessions`) and every target
        row of theirs, both read from one snapshot: the target rows with ``target`` and
        ``status`` as text, in the order of their sessions (oldest first), then of the rows
        as stored. Every target row of every build is read: for the analyses that need
        each run (the daily rollups stand in for none of them). ``columns`` (``session_id``
        always among them) and ``statuses`` keep only those: a year of a team's target
        rows is millions, and what is not asked for is not read.

        A session id names one build (the protocol asks for that); one stored for two builds
        (day folders copied together by hand) has each of its rows once, at its first
        build's place."""
        chosen, kept = _target_columns(columns, statuses)
        return self._reading(lambda snapshot: self._targets(snapshot, chosen, kept))

    def _targets(
        self, snapshot: Snapshot, columns: list[str], statuses: list[str] | None
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        sessions = self._sessions(snapshot)
        empty = pl.DataFrame(schema={name: _TARGET_COLUMNS[name] for name in columns})
        if sessions.is_empty():
            return sessions, empty
        ids = sessions["session_id"].implode()

        def query(lf: pl.LazyFrame) -> pl.LazyFrame:
            taken = lf.filter(pl.col("session_id").is_in(ids))
            if statuses is not None:
                taken = taken.filter(pl.col("status").cast(pl.String).is_in(statuses))
            text = [name for name in ("target", "status") if name in columns]
            return taken.select(columns).with_columns(pl.col(text).cast(pl.String))

        rows = self._collect(snapshot, "targets", query, _days_of(sessions))
        if rows is None or rows.is_empty():
            return sessions, empty
        # A session id stored for two builds orders its rows once, at its first build.
        order = sessions.select("session_id", _order=pl.int_range(pl.len())).unique(
            "session_id", keep="first", maintain_order=True
        )
        ordered = (
            rows.with_columns(_row=pl.int_range(pl.len()))
            .join(order, on="session_id", how="inner")
            .sort("_order", "_row")
            .drop("_order", "_row")
        )
        return sessions, ordered.select(columns)

    # -- across sessions ----------------------------------------------------------------------

    def summary(self, *, top: int = 5, trend_points: int = 0) -> SummaryReport:
        """Totals, averages, trends, the top bottlenecks and the latest regressions, all
        read from one snapshot of the store; with ``trend_points``, the two trends as that
        many points at most (:func:`trend_series`), for sparklines."""
        return self._reading(lambda snapshot: self._summary(snapshot, top, trend_points))

    def summary_and_targets(
        self,
        *,
        top: int = 5,
        trend_points: int = 0,
        columns: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
    ) -> tuple[SummaryReport, pl.DataFrame]:
        """:meth:`summary` and the target rows of :meth:`targets`, read from one snapshot:
        for an answer that ranks the very builds the summary counts."""
        chosen, kept = _target_columns(columns, statuses)

        def read(snapshot: Snapshot) -> tuple[SummaryReport, pl.DataFrame]:
            report = self._summary(snapshot, top, trend_points)
            return report, self._targets(snapshot, chosen, kept)[1]

        return self._reading(read)

    def _summary(self, snapshot: Snapshot, top: int, trend_points: int = 0) -> SummaryReport:
        sessions = self._sessions(snapshot)
        report = self._report(sessions, snapshot, top)
        if trend_points <= 0:
            return report
        # Over the builds themselves, as the trends are (the rollups keep no builds).
        return replace(
            report,
            build_time_series=trend_series(sessions["duration_ms"], trend_points),
            cache_hit_rate_series=trend_series(
                sessions["cache_hit_rate"].drop_nulls(), trend_points
            ),
        )

    def _report(self, sessions: pl.DataFrame, snapshot: Snapshot, top: int) -> SummaryReport:
        rolled = self._rolled_days(sessions)
        if rolled is not None:
            return self._with_rollups(sessions, snapshot, top, *rolled)
        n = sessions.height
        if n == 0:
            return SummaryReport(
                total_builds=0,
                successful=0,
                failed=0,
                success_rate=0.0,
                average_build_ms=0.0,
                fastest_build_ms=0,
                slowest_build_ms=0,
                average_cache_hit_rate=None,
                cache_trend="Stable",
                average_utilization=None,
                average_targets_per_second=None,
                builds_with_targets=0,
                bottlenecks=(),
                build_time_trend="Stable",
                regressions=(),
                regression_threshold=self.regression_threshold,
            )
        row = sessions.select(
            successful=pl.col("succeeded").sum(),
            average_build_ms=pl.col("duration_ms").mean(),
            fastest=pl.col("duration_ms").min(),
            slowest=pl.col("duration_ms").max(),
            with_targets=(pl.col("total_targets") > 0).sum(),
            # A mean skips nulls: it is over the builds with targets (None when none has).
            hit_rate=pl.col("cache_hit_rate").mean(),
            utilization=pl.col("parallelism_utilization").mean(),
            tps=pl.col("targets_per_second").mean(),
        ).row(0, named=True)
        successful = int(row["successful"])
        return SummaryReport(
            total_builds=n,
            successful=successful,
            failed=n - successful,
            success_rate=100.0 * successful / n,
            average_build_ms=float(row["average_build_ms"]),
            fastest_build_ms=int(row["fastest"]),
            slowest_build_ms=int(row["slowest"]),
            average_cache_hit_rate=row["hit_rate"],
            cache_trend=trend(sessions["cache_hit_rate"].drop_nulls()),
            average_utilization=row["utilization"],
            average_targets_per_second=row["tps"],
            builds_with_targets=int(row["with_targets"]),
            bottlenecks=self._bottlenecks(sessions, snapshot, top),
            build_time_trend=trend(sessions["duration_ms"]),
            regressions=regressions(sessions, threshold=self.regression_threshold),
            regression_threshold=self.regression_threshold,
        )

    def _rolled_days(self, sessions: pl.DataFrame) -> tuple[pa.Table, pa.Table] | None:
        """The daily rollups of the window's days whose builds the store no longer holds
        (retention removed them): days the window takes whole, and only when no filter
        chooses builds (a rollup knows no branch, tool or label); None when there are none."""
        from telemetry import rollups

        if not self.filter.takes_all:
            return None
        since, until = self.window.since, self.window.until
        first = None if since is None else since.astimezone(UTC).date()
        last = None if until is None else (until - timedelta(milliseconds=1)).astimezone(UTC).date()
        read = rollups.read(self.storage.dir, since=first, until=last)
        if read.days.num_rows == 0:
            return None
        held = set(sessions[PARTITION_KEY].to_list())
        days = [
            day
            for day in read.days["date"].to_pylist()
            if day not in held and _whole_day(self.window, day)
        ]
        if not days:
            return None
        import pyarrow as pa
        import pyarrow.compute as pc

        chosen = pa.array(days, pa.date32())
        return (
            read.days.filter(pc.is_in(read.days["date"], chosen)),
            read.targets.filter(pc.is_in(read.targets["date"], chosen)),
        )

    def _with_rollups(
        self,
        sessions: pl.DataFrame,
        snapshot: Snapshot,
        top: int,
        days: pa.Table,
        targets: pa.Table,
    ) -> SummaryReport:
        """The summary of the builds the store holds and of the rolled-up days it no longer
        does: their sums and counts added up (the rollups keep them for that), the
        bottlenecks over both; the trends and regressions over the builds themselves."""
        rolled = pl.from_arrow(days)
        assert isinstance(rolled, pl.DataFrame)
        known = pl.col("total_targets") > 0
        held = sessions.select(
            builds=pl.len(),
            successful=pl.col("succeeded").sum(),
            duration=pl.col("duration_ms").sum(),
            fastest=pl.col("duration_ms").min(),
            slowest=pl.col("duration_ms").max(),
            with_targets=known.sum(),
            hit=pl.col("cache_hit_rate").sum(),
            utilization=pl.col("parallelism_utilization").sum(),
            tps=pl.col("targets_per_second").sum(),
        ).row(0, named=True)
        kept = rolled.select(
            builds=pl.col("builds").sum(),
            successful=pl.col("succeeded").sum(),
            duration=pl.col("duration_ms_sum").sum(),
            fastest=pl.col("duration_ms_min").min(),
            slowest=pl.col("duration_ms_max").max(),
            with_targets=pl.col("builds_with_targets").sum(),
            hit=pl.col("cache_hit_rate_sum").sum(),
            utilization=pl.col("parallelism_utilization_sum").sum(),
            tps=pl.col("targets_per_second_sum").sum(),
        ).row(0, named=True)

        def total(name: str) -> float:
            return float(held[name] or 0) + float(kept[name] or 0)

        n = int(total("builds"))
        successful = int(total("successful"))
        with_targets = int(total("with_targets"))

        def mean(name: str) -> float | None:
            return total(name) / with_targets if with_targets else None

        extremes = [v for v in (held["fastest"], kept["fastest"]) if v is not None]
        peaks = [v for v in (held["slowest"], kept["slowest"]) if v is not None]
        runs = pl.from_arrow(targets.select(["target", "executed_runs", "executed_ms_sum"]))
        assert isinstance(runs, pl.DataFrame)
        extra = runs.select(
            pl.col("target").cast(pl.String),
            runs=pl.col("executed_runs").cast(pl.Int64),
            total_ms=pl.col("executed_ms_sum").cast(pl.Int64),
        )
        listed = rolled["date"].to_list()
        return SummaryReport(
            total_builds=n,
            successful=successful,
            failed=n - successful,
            success_rate=100.0 * successful / n if n else 0.0,
            average_build_ms=total("duration") / n if n else 0.0,
            fastest_build_ms=int(min(extremes)) if extremes else 0,
            slowest_build_ms=int(max(peaks)) if peaks else 0,
            average_cache_hit_rate=mean("hit"),
            cache_trend=trend(sessions["cache_hit_rate"].drop_nulls()),
            average_utilization=mean("utilization"),
            average_targets_per_second=mean("tps"),
            builds_with_targets=with_targets,
            bottlenecks=self._bottlenecks(sessions, snapshot, top, extra=extra),
            build_time_trend=trend(sessions["duration_ms"]),
            regressions=regressions(sessions, threshold=self.regression_threshold),
            regression_threshold=self.regression_threshold,
            from_rollups=RolledDays(
                min(listed), max(listed), len(listed), int(kept["builds"] or 0)
            ),
        )

    def bottlenecks(
        self, sessions: pl.DataFrame | None = None, *, top: int = 5
    ) -> tuple[Bottleneck, ...]:
        """Targets ranked by the mean duration of their executed runs, ties by label: of the
        window's sessions, or of ``sessions`` (rows of :meth:`sessions`, whose target rows
        are read as the store holds them now)."""
        if sessions is None:
            return self._reading(
                lambda snapshot: self._bottlenecks(self._sessions(snapshot), snapshot, top)
            )
        given = sessions
        return self._reading(
            lambda snapshot: self._bottlenecks(given, snapshot, top), days=_days_of(given)
        )

    def _bottlenecks(
        self,
        sessions: pl.DataFrame,
        snapshot: Snapshot,
        top: int,
        *,
        extra: pl.DataFrame | None = None,
    ) -> tuple[Bottleneck, ...]:
        """The top bottlenecks of ``sessions`` (and of the runs per target ``extra`` adds:
        target, runs, total_ms)."""
        # One snapshot for the rollups and the target rows, so a compaction beside us can
        # neither count a day twice nor leave it out.
        parts = [] if sessions.is_empty() else self._runs_per_target(sessions, snapshot)
        if extra is not None and not extra.is_empty():
            parts.append(extra)
        if not parts:
            return ()
        frame = (
            pl.concat([part.lazy() for part in parts])
            .group_by("target")
            .agg(pl.col("runs").sum(), pl.col("total_ms").sum())
            .filter(pl.col("runs") > 0)
            .with_columns(mean_ms=pl.col("total_ms") / pl.col("runs"))
            .sort(["mean_ms", "target"], descending=[True, False])
            .head(top)
            .collect()
        )
        return tuple(
            Bottleneck(r["target"], r["mean_ms"], r["runs"]) for r in frame.iter_rows(named=True)
        )

    def _runs_per_target(self, sessions: pl.DataFrame, snapshot: Snapshot) -> list[pl.DataFrame]:
        """Executed runs and their summed durations per target: from the rollups where they
        stand in for the target rows, and from the target rows elsewhere."""
        rolled = self._rolled_up(sessions, snapshot)
        parts = [] if rolled is None else [rolled.frame]
        targets = snapshot.files(
            "targets",
            where=lambda f: (
                not rolled or (f.stem not in rolled.stems and f.day not in rolled.whole_days)
            ),
        )
        raw = self._executed_runs(
            snapshot,
            sessions,
            lambda runs: runs.group_by("target").agg(
                runs=pl.len().cast(pl.Int64), total_ms=pl.col("duration_ms").sum()
            ),
            files=targets,
        )
        if raw is not None:
            parts.append(raw)
        return parts

    def _rolled_up(self, sessions: pl.DataFrame, snapshot: Snapshot) -> _Rolled | None:
        """The executed runs and summed durations per target that the daily rollups hold for
        ``sessions``, with the name stems they cover; None when no rollup applies.

        A rollup covers its compacted sessions file. It stands in for that file's target rows
        only on a day the window takes whole and whose every stored session is in
        ``sessions`` (none skipped as unreadable, none stored since they were read).
        """
        counts = dict(sessions.group_by(PARTITION_KEY).len().iter_rows())
        whole = {day for day in counts if _whole_day(self.window, day)}
        if not whole:
            return None
        stored: dict[date, list[int | None]] = {}
        for f in snapshot.listed["sessions"]:
            if f.day in whole:
                stored.setdefault(f.day, []).append(f.rows)
        days = {
            day
            for day, rows in stored.items()
            if None not in rows and sum(rows) == counts[day]  # type: ignore[arg-type]
        }
        files = snapshot.files("daily_targets", where=lambda f: f.day in days)
        frame = snapshot.collect(
            "daily_targets",
            lambda rollups: rollups.group_by(pl.col("target").cast(pl.String)).agg(
                runs=(pl.col("built") + pl.col("failed")).sum(),
                total_ms=pl.col("executed_ms").sum(),
            ),
            files=files,
        )
        if frame is None:
            return None  # none, or none readable: the target rows answer for every day
        files = [f for f in files if f.path not in snapshot.left_out]
        # Days whose only file is the compacted one: their target rows need no listing.
        whole_days = frozenset(f.day for f in files if len(stored[f.day]) == 1)
        return _Rolled(frozenset(f.stem for f in files), frame, whole_days)

    def recent(self, count: int = 10) -> list[BuildReport]:
        """The newest ``count`` builds that the window and the filter take, newest first, each
        with its top bottlenecks."""
        return self._reading(lambda snapshot: self._recent(snapshot, count))

    def _recent(self, snapshot: Snapshot, count: int) -> list[BuildReport]:
        sessions = self._newest_sessions(snapshot, count)
        if sessions.is_empty():
            return []
        summed = self._executed_runs(
            snapshot,
            sessions,
            lambda runs: runs.group_by("session_id", "target").agg(
                total=pl.col("duration_ms").sum(), runs=pl.len()
            ),
        )
        per_session: dict[str, list[tuple[str, int, int]]] = {}
        for session, target, total, count_ in summed.iter_rows() if summed is not None else ():
            per_session.setdefault(session, []).append((target, total, count_))
        return [
            build_report(r, per_session.get(r["session_id"], ()))
            for r in sessions.reverse().iter_rows(named=True)
        ]

    # -- one build ----------------------------------------------------------------------------

    def build(self, session: str) -> BuildDetails:
        """The build whose session id is ``session``, else the one build whose id starts with
        it, with every target; :class:`BuildLookupError` when no build or several match.

        >>> TelemetryAnalyzer(TelemetryStorage("store")).build("ci-0013").tool  # doctest: +SKIP
        'bazel'
        """
        if not session:
            raise BuildLookupError("a session id (or its first characters) is needed, got ''")
        return self._reading(lambda snapshot: self._build(snapshot, session))

    def _build(self, snapshot: Snapshot, session: str) -> BuildDetails:
        prefix = pl.lit(session, dtype=pl.String)
        found = self._collect(
            snapshot,
            "sessions",
            lambda lf: (
                self._selected(lf)
                .filter(pl.col("session_id").str.starts_with(prefix))
                .pipe(with_session_metrics)
            ),
        )
        matches = _empty_sessions() if found is None else found
        # An id that is whole wins over the longer ids it begins (ci-1 over ci-12).
        exact = matches.filter(pl.col("session_id") == session)
        chosen = (exact if exact.height else matches).sort(
            "start_time", "session_id", descending=True
        )
        where = str(self.storage.dir)
        if chosen.is_empty():
            among = "" if self._takes_all() else " among the builds selected"
            raise BuildLookupError(
                f"no build {session!r} in {where}{among}; builder telemetry recent lists "
                f"the newest builds with their session ids"
            )
        if chosen.height > 1:
            if exact.height:
                started = chosen["start_time"].head(_NAMED)
                times = ", ".join(t.strftime(TIME_FORMAT) for t in started)
                raise BuildLookupError(
                    f"{session!r} is the session id of {chosen.height} builds in {where}, "
                    f"started {times}; choose one with --since and --until"
                )
            ids = chosen["session_id"].head(_NAMED).to_list()
            more = ", ..." if chosen.height > _NAMED else ""
            raise BuildLookupError(
                f"{session!r} matches {chosen.height} builds in {where}: "
                f"{', '.join(ids)}{more}; give more of the session id"
            )
        return self._details(snapshot, chosen.row(0, named=True))

    def newest_build(self) -> BuildDetails | None:
        """The newest build in the window that the filter takes, with every target; None
        when there is none."""

        def newest(snapshot: Snapshot) -> BuildDetails | None:
            found = self._newest_sessions(snapshot, 1)
            return None if found.is_empty() else self._details(snapshot, found.row(0, named=True))

        return self._reading(newest)

    def _details(self, snapshot: Snapshot, row: dict[str, Any]) -> BuildDetails:
        """A session row with its metrics, and its targets read from its own day alone."""
        session_id = row["session_id"]
        targets = self._collect(
            snapshot,
            "targets",
            lambda lf: (
                lf.filter(pl.col("session_id") == pl.lit(session_id, dtype=pl.String))
                .with_columns(pl.col("target").cast(pl.String), pl.col("status").cast(pl.String))
                .sort(["duration_ms", "target", "start_time"], descending=[True, False, False])
            ),
            [row[PARTITION_KEY]],
        )
        return BuildDetails(
            session_id=session_id,
            start_time=row["start_time"],
            end_time=row["end_time"],
            duration_ms=row["duration_ms"],
            succeeded=row["succeeded"],
            interrupted=row["interrupted"],
            error=row["error"],
            total_targets=row["total_targets"],
            built=row["built"],
            cached=row["cached"],
            failed=row["failed"],
            skipped=row["skipped"],
            cache_hit_rate=row["cache_hit_rate"],
            parallelism_utilization=row["parallelism_utilization"],
            targets_per_second=row["targets_per_second"],
            parallelism=row["parallelism"],
            peak_concurrency=row["peak_concurrency"],
            executed_ms=row["executed_ms"],
            tool=row["tool"],
            host=row["host"],
            commit=row["commit"],
            branch=row["branch"],
            labels=dict(row["labels"] or {}),
            targets=tuple(
                TargetRun(
                    target=t["target"],
                    status=t["status"],
                    start_time=t["start_time"],
                    end_time=t["end_time"],
                    duration_ms=t["duration_ms"],
                    worker=t["worker"],
                    error=t["error"],
                    deps=None if t["deps"] is None else tuple(t["deps"]),
                )
                for t in (targets.iter_rows(named=True) if targets is not None else ())
            ),
        )

    # -- reading ------------------------------------------------------------------------------

    def _selected(self, sessions: pl.LazyFrame) -> pl.LazyFrame:
        """The sessions in the window that the filter takes."""
        return _matching(_in_window(sessions, self.window), self.filter)

    def _takes_all(self) -> bool:
        return self.window == Window() and self.filter.takes_all

    def _newest_sessions(self, snapshot: Snapshot, count: int) -> pl.DataFrame:
        """The newest ``count`` sessions, opening only as many day partitions as needed."""
        files = snapshot.listed["sessions"]
        by_day: dict[date, int] = {}
        for stored in files:
            by_day[stored.day] = by_day.get(stored.day, 0) + (stored.rows or 1)
        newest_first = sorted(by_day, reverse=True)
        if not newest_first:
            return _empty_sessions()
        frames: list[pl.DataFrame] = []
        found = next_day = 0
        wanted = count
        while found < count and next_day < len(newest_first):
            # The next days that hold the builds still wanted, by the row counts in their
            # names; the window's ends and the filter leave some of them out, so each read
            # after a short one asks for twice as many. Each day is read once.
            taken: list[date] = []
            covered = 0
            while covered < wanted and next_day < len(newest_first):
                taken.append(newest_first[next_day])
                covered += by_day[newest_first[next_day]]
                next_day += 1
            frame = self._sessions(snapshot, taken)
            frames.append(frame)
            found += frame.height
            wanted *= 2
        return pl.concat(frames).sort("start_time", "session_id").tail(count)

    def _executed_runs(
        self,
        snapshot: Snapshot,
        sessions: pl.DataFrame,
        query: Callable[[pl.LazyFrame], pl.LazyFrame],
        *,
        files: list[StoredFile] | None = None,
    ) -> pl.DataFrame | None:
        """``query`` over the executed (built or failed) target runs of ``sessions``, with
        ``target`` as text; only the day partitions of those sessions are opened (or only
        ``files``)."""
        ids = sessions["session_id"].implode()
        return self._collect(
            snapshot,
            "targets",
            lambda lf: query(
                lf.filter(
                    pl.col("session_id").is_in(ids),
                    pl.col("status").cast(pl.String).is_in(_EXECUTED),
                ).with_columns(pl.col("target").cast(pl.String))
            ),
            _days_of(sessions),
            files=files,
        )

    def _collect(
        self,
        snapshot: Snapshot,
        dataset: Dataset,
        query: Callable[[pl.LazyFrame], pl.LazyFrame],
        days: list[date] | None = None,
        *,
        files: list[StoredFile] | None = None,
    ) -> pl.DataFrame | None:
        """Run ``query`` over the readable files of ``dataset`` in ``snapshot`` (those of
        ``days``, or ``files``); None when there are none."""
        if files is None:
            chosen = None if days is None else set(days)
            files = snapshot.files(
                dataset, where=None if chosen is None else lambda f: f.day in chosen
            )
        return snapshot.collect(dataset, query, files=files)

    def _reading(
        self,
        read: Callable[[Snapshot], _T],
        datasets: tuple[Dataset, ...] = DATASETS,
        *,
        days: list[date] | None = None,
    ) -> _T:
        """``read`` over one snapshot of the window's days (or of ``days``), so every number
        of an answer is of the same builds. Files that maintenance takes out meanwhile are
        still read where it put them (:meth:`Snapshot.collect`); when one was deleted for
        good (``clear``), a new snapshot is taken."""
        for _ in range(_RETRIES):
            snapshot = self.storage.snapshot(
                days=days,
                since=self.window.first_day,
                until=self.window.last_day,
                datasets=datasets,
                packs=True,
            )
            try:
                return read(snapshot)
            except SnapshotChanged:
                continue
        raise StorageError(
            f"the files in {self.storage.dir} kept changing while they were read; try again"
        )


def _target_columns(
    columns: Iterable[str] | None, statuses: Iterable[str] | None
) -> tuple[list[str], list[str] | None]:
    """The target columns (``session_id`` first among them) and statuses asked for."""
    chosen = list(_TARGET_COLUMNS) if columns is None else list(columns)
    unknown = sorted(set(chosen) - set(_TARGET_COLUMNS))
    if unknown:
        raise ValueError(f"targets have no column {unknown[0]!r}")
    if "session_id" not in chosen:
        chosen.insert(0, "session_id")
    return chosen, None if statuses is None else sorted(set(statuses))


def trend(values: pl.Series) -> Trend:
    """Compare the mean of the newer half with the older ⌊n/2⌋ (values in time order, none
    of them null: a rate's trend is over the sessions whose rate is known).

    >>> trend(pl.Series([10.0, 10.0, 12.0, 12.0]))
    'Increasing'
    """
    n = values.len()
    if n < 2:
        return "Stable"
    old = values.head(n // 2).mean()
    new = values.tail(n - n // 2).mean()
    if not isinstance(old, int | float) or not isinstance(new, int | float) or old == 0:
        return "Stable"
    change = (new - old) / old
    if change > TREND_BAND:
        return "Increasing"
    if change < -TREND_BAND:
        return "Decreasing"
    return "Stable"


def trend_series(values: pl.Series, points: int) -> tuple[float, ...]:
    """``values`` (in time order, none null) as at most ``points`` means: split into that many
    consecutive runs of builds as equal in size as can be (the value at position ``p`` of
    ``n`` is in run ``p·points // n``), each run's mean; the values themselves when there
    are no more than ``points``.

    >>> trend_series(pl.Series([1, 3, 5, 7, 9]), 2)
    (3.0, 8.0)
    """
    n = values.len()
    if n == 0 or points <= 0:
        return ()
    if n <= points:
        return tuple(float(v) for v in values.cast(pl.Float64))
    means = (
        values.cast(pl.Float64)
        .to_frame("value")
        .with_row_index("position")
        .group_by((pl.col("position").cast(pl.Int64) * points // n).alias("run"))
        .agg(pl.col("value").mean())
        .sort("run")
    )
    return tuple(means["value"].to_list())


def regressions(sessions: pl.DataFrame, *, threshold: float) -> tuple[Regression, ...]:
    """The latest builds (3 when there are ≥ 10, else 1) slower than ``threshold`` times the
    mean of the builds before them, oldest first."""
    n = sessions.height
    checked = 3 if n >= 10 else 1
    frame = (
        sessions.lazy()
        .select("session_id", "start_time", "duration_ms")
        .with_row_index("position")
        .with_columns(
            expected=(pl.col("duration_ms").cum_sum() - pl.col("duration_ms")) / pl.col("position")
        )
        .tail(checked)
        .filter(pl.col("position") > 0, pl.col("expected") > 0)
        .with_columns(ratio=pl.col("duration_ms") / pl.col("expected"))
        .filter(pl.col("ratio") >= threshold)
        .collect()
    )
    return tuple(
        Regression(r["session_id"], r["start_time"], r["ratio"], r["expected"], r["duration_ms"])
        for r in frame.iter_rows(named=True)
    )


def _matching(sessions: pl.LazyFrame, only: Filter) -> pl.LazyFrame:
    """The sessions ``only`` takes. A session that lacks what is asked (no branch recorded,
    no such label) is not taken."""
    conditions = []
    if only.branch is not None:
        conditions.append(pl.col("branch") == pl.lit(only.branch, dtype=pl.String))
    if only.tool is not None:
        conditions.append(pl.col("tool") == pl.lit(only.tool, dtype=pl.String))
    for key, value in only.labels:
        conditions.append(pl.col("labels").map.get(key) == pl.lit(value, dtype=pl.String))
    if only.status is not None:
        # An interrupted build did not succeed: it is failed, as the summary counts it.
        conditions.append(pl.col("succeeded") == (only.status == "succeeded"))
    return sessions.filter(*conditions) if conditions else sessions


def _in_window(frame: pl.LazyFrame, window: Window) -> pl.LazyFrame:
    if window.since is not None:
        frame = frame.filter(pl.col("start_time") >= window.since)
    if window.until is not None:
        frame = frame.filter(pl.col("start_time") < window.until)
    return frame


def _whole_day(window: Window, day: date) -> bool:
    """Whether ``window`` takes every session that started on ``day``."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return (window.since is None or window.since <= start) and (
        window.until is None or window.until >= start + timedelta(days=1)
    )


def _days_of(sessions: pl.DataFrame) -> list[date]:
    return sorted(sessions[PARTITION_KEY].unique().to_list())


def _empty_sessions() -> pl.DataFrame:
    empty = pl.from_arrow(SESSIONS_SCHEMA.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return with_session_metrics(
        empty.with_columns(pl.lit(None, pl.Date).alias(PARTITION_KEY)).lazy()
    ).collect()


__all__ = [
    "Bottleneck",
    "BuildDetails",
    "BuildLookupError",
    "BuildReport",
    "Regression",
    "SummaryReport",
    "TelemetryAnalyzer",
    "Trend",
]
