"""The analyzer: every metric of the specification, as polars lazy queries over the store.

Per-session metrics are computed from the stored session rows; bottlenecks from the stored
target rows of the sessions in the window, or, for the whole days of the window that
compaction has rolled up, from the ``daily_targets`` rollup, which gives the same numbers from
a few rows per target and day. Partitions outside the window are never opened, and ``recent``
opens only the newest days it needs. A :class:`~telemetry.window.Filter` (branch, tool,
labels, outcome) is a condition of the sessions query, so only the days and the target rows
of the sessions it takes are read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from telemetry.config import DEFAULT_REGRESSION_THRESHOLD
from telemetry.errors import CorruptFileWarning, StorageError, TelemetryError
from telemetry.events import EXECUTED, TIME_FORMAT
from telemetry.model import (
    Bottleneck,
    BuildDetails,
    BuildReport,
    Regression,
    SummaryReport,
    TargetRun,
    Trend,
    build_report,
)
from telemetry.schema import SCHEMAS, SESSIONS_SCHEMA, Dataset
from telemetry.storage import Snapshot, StoredFile, TelemetryStorage, stem_of
from telemetry.window import Filter, Window

TREND_BAND: Final = 0.10
_EXECUTED: Final = sorted(EXECUTED)
_RETRIES: Final = 3
# How many of the builds a session id prefix matches an error names.
_NAMED: Final = 5


class BuildLookupError(TelemetryError):
    """No build, or more than one, has the session id (or the start of one) asked for."""


class _Changed(Exception):
    """Files listed together were removed before they were read: list them again."""


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
        """Every session in the window that the filter takes, with its derived metrics,
        oldest first."""
        frame = self._collect(
            "sessions", lambda lf: self._selected(lf).pipe(with_session_metrics), days=days
        )
        if frame is None:
            return _empty_sessions()
        return frame.sort("start_time", "session_id")

    # -- across sessions ----------------------------------------------------------------------

    def summary(self, *, top: int = 5) -> SummaryReport:
        """Totals, averages, trends, the top bottlenecks and the latest regressions."""
        sessions = self.sessions()
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
            bottlenecks=self.bottlenecks(sessions, top=top),
            build_time_trend=trend(sessions["duration_ms"]),
            regressions=regressions(sessions, threshold=self.regression_threshold),
            regression_threshold=self.regression_threshold,
        )

    def bottlenecks(
        self, sessions: pl.DataFrame | None = None, *, top: int = 5
    ) -> tuple[Bottleneck, ...]:
        """Targets ranked by the mean duration of their executed runs, ties by label."""
        sessions = self.sessions() if sessions is None else sessions
        if sessions.is_empty():
            return ()
        for _ in range(_RETRIES):
            # One listing for the rollups and the target rows, so a compaction beside us can
            # neither count a day twice nor leave it out; if it removed what was listed, the
            # listing is taken again.
            snapshot = self.storage.snapshot(days=_days_of(sessions))
            try:
                parts = self._runs_per_target(sessions, snapshot)
            except _Changed:
                continue
            break
        else:
            raise StorageError("the targets files kept changing while they were read; try again")
        if not parts:
            return ()
        frame = (
            pl.concat(parts)
            .group_by("target")
            .agg(pl.col("runs").sum(), pl.col("total_ms").sum())
            .filter(pl.col("runs") > 0)
            .with_columns(mean_ms=pl.col("total_ms") / pl.col("runs"))
            .sort(["mean_ms", "target"], descending=[True, False])
            .head(top)
        )
        return tuple(
            Bottleneck(r["target"], r["mean_ms"], r["runs"]) for r in frame.iter_rows(named=True)
        )

    def _runs_per_target(self, sessions: pl.DataFrame, snapshot: Snapshot) -> list[pl.DataFrame]:
        """Executed runs and their summed durations per target: from the rollups where they
        stand in for the target rows, and from the target rows elsewhere."""
        rolled = self._rolled_up(sessions, snapshot)
        parts = [] if rolled is None else [rolled.frame]
        targets = [
            f
            for f in snapshot.committed("targets", skip=rolled.stems if rolled else frozenset())
            if not rolled or f.day not in rolled.whole_days
        ]
        raw = self._executed_runs(
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
        counts = dict(sessions.group_by("date").len().iter_rows())
        whole = {day for day in counts if _whole_day(self.window, day)}
        if not whole:
            return None
        stored: dict[date, list[int | None]] = {}
        for f in snapshot.sessions:
            if f.day in whole:
                stored.setdefault(f.day, []).append(f.rows)
        days = {
            day
            for day, rows in stored.items()
            if None not in rows and sum(rows) == counts[day]  # type: ignore[arg-type]
        }
        listed = [f for f in snapshot.committed("daily_targets") if f.day in days]
        files = self.storage.readable("daily_targets", listed)
        if len(files) < len(listed) and not all(f.path.exists() for f in listed):
            raise _Changed
        while True:
            if not files:
                return None
            try:
                frame = (
                    scan(files, dataset="daily_targets")
                    .group_by(pl.col("target").cast(pl.String))
                    .agg(
                        runs=(pl.col("built") + pl.col("failed")).sum(),
                        total_ms=pl.col("executed_ms").sum(),
                    )
                    .collect()
                )
                break
            except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException):
                if not all(f.path.exists() for f in files):
                    raise _Changed from None
                # Damaged behind a sound footer: named, and its day's target rows answer.
                found = self.storage.damaged("daily_targets", files) or _refused(files)
                if not found:
                    return None  # no file to blame: the target rows answer for every day
                files = [f for f in files if f.path not in found]
        # Days whose only file is the compacted one: their target rows need no listing.
        whole_days = frozenset(f.day for f in files if len(stored[f.day]) == 1)
        return _Rolled(frozenset(stem_of(f) for f in files), frame, whole_days)

    def recent(self, count: int = 10) -> list[BuildReport]:
        """The newest ``count`` builds that the window and the filter take, newest first, each
        with its top bottlenecks."""
        sessions = self._newest_sessions(count)
        if sessions.is_empty():
            return []
        summed = self._executed_runs(
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
        prefix = pl.lit(session, dtype=pl.String)
        found = self._collect(
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
        return self._details(chosen.row(0, named=True))

    def newest_build(self) -> BuildDetails | None:
        """The newest build in the window that the filter takes, with every target; None
        when there is none."""
        newest = self._newest_sessions(1)
        return None if newest.is_empty() else self._details(newest.row(0, named=True))

    def _details(self, row: dict[str, Any]) -> BuildDetails:
        """A session row with its metrics, and its targets read from its own day alone."""
        session_id = row["session_id"]
        targets = self._collect(
            "targets",
            lambda lf: (
                lf.filter(pl.col("session_id") == pl.lit(session_id, dtype=pl.String))
                .with_columns(pl.col("target").cast(pl.String), pl.col("status").cast(pl.String))
                .sort(["duration_ms", "target", "start_time"], descending=[True, False, False])
            ),
            days=[row["date"]],
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

    def _newest_sessions(self, count: int) -> pl.DataFrame:
        """The newest ``count`` sessions, opening only as many day partitions as needed."""
        files = self.storage.files(
            "sessions", since=self.window.first_day, until=self.window.last_day
        )
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
            frame = self.sessions(days=taken)
            frames.append(frame)
            found += frame.height
            wanted *= 2
        return pl.concat(frames).sort("start_time", "session_id").tail(count)

    def _executed_runs(
        self,
        sessions: pl.DataFrame,
        query: Callable[[pl.LazyFrame], pl.LazyFrame],
        *,
        files: list[StoredFile] | None = None,
    ) -> pl.DataFrame | None:
        """``query`` over the executed (built or failed) target runs of ``sessions``, with
        ``target`` as text; only the day partitions of those sessions are opened (or only
        ``files``, which must stay: :class:`_Changed` is raised if any vanishes)."""
        ids = sessions["session_id"].implode()
        return self._collect(
            "targets",
            lambda lf: query(
                lf.filter(
                    pl.col("session_id").is_in(ids),
                    pl.col("status").cast(pl.String).is_in(_EXECUTED),
                ).with_columns(pl.col("target").cast(pl.String))
            ),
            days=_days_of(sessions),
            files=files,
        )

    def _collect(
        self,
        dataset: Dataset,
        query: Callable[[pl.LazyFrame], pl.LazyFrame],
        *,
        days: list[date] | None = None,
        files: list[StoredFile] | None = None,
    ) -> pl.DataFrame | None:
        """Run ``query`` over the readable files of ``dataset`` (or of ``files``); None when
        there are none.

        A file can vanish between listing and reading when retention or compaction runs
        beside us: the listing is then taken again (with ``files``, :class:`_Changed` tells
        the caller to), so a reader never fails or miscounts because of a writer. A file whose
        footer is sound but whose data is damaged is found, named in a warning and left out,
        so it never takes the rest of the history with it.
        """
        damaged: set[Path] = set()
        for _ in range(_RETRIES):
            since, until = self.window.first_day, self.window.last_day
            if files is not None:
                listed = files
            elif dataset == "targets":
                listed = self.storage.committed_targets(days=days, since=since, until=until)
            else:
                listed = self.storage.files(dataset, days=days, since=since, until=until)
            checked = self.storage.readable(dataset, listed)
            if len(checked) < len(listed) and not all(f.path.exists() for f in listed):
                if files is not None:
                    raise _Changed
                continue  # removed since we listed it: list again
            readable = [f for f in checked if f.path not in damaged]
            if not readable:
                return None
            try:
                frame = scan(readable, with_day=dataset == "sessions", dataset=dataset)
                return query(frame).collect()
            except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException):
                if not all(f.path.exists() for f in readable):
                    if files is not None:
                        raise _Changed from None
                    continue  # removed by retention since we listed it: list again
                found = self.storage.damaged(dataset, readable) or _refused(readable)
                if not found:
                    raise
                damaged |= found
        raise StorageError(f"the {dataset} files kept changing while they were read; try again")


def _refused(files: list[StoredFile]) -> set[Path]:
    """The files that polars alone cannot read (its reading of a footer is stricter than
    pyarrow's: a field name that is not UTF-8, say), each named in a warning."""
    refused = set()
    for stored in files:
        try:
            _scan_paths([stored], with_day=False).collect()
        except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as error:
            if stored.path.exists():
                refused.add(stored.path)
                reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
                warnings.warn(
                    f"skipping {stored.path}: not a complete Arrow IPC file ({reason})",
                    CorruptFileWarning,
                    stacklevel=4,
                )
    return refused


def scan(
    files: list[StoredFile], *, with_day: bool = False, dataset: Dataset | None = None
) -> pl.LazyFrame:
    """A lazy frame over stored files; ``with_day`` adds the partition day as ``date`` (the
    UTC day each session started, which is the partition its file is in).

    Paths are taken literally (no globbing, no Hive parsing), so a store under a folder named
    ``[x]`` or ``date=...`` reads like any other. Files written before a column was added
    to ``dataset`` (by default the sessions with ``with_day``, else the targets) read as
    nulls in it.
    """
    groups: dict[tuple[str, ...], list[StoredFile]] = {}
    for stored in files:
        groups.setdefault(stored.missing, []).append(stored)
    if len(groups) == 1 and () in groups:  # the usual case: every file has every column
        return _scan_paths(files, with_day=with_day)
    schema = SCHEMAS[dataset or ("sessions" if with_day else "targets")]
    types = pl.DataFrame(schema.empty_table()).schema
    frames = [
        _scan_paths(group, with_day=with_day).with_columns(
            pl.lit(None, dtype=types[name]).alias(name) for name in missing
        )
        for missing, group in groups.items()
    ]
    columns = [*schema.names, *(["date"] if with_day else [])]
    return pl.concat([frame.select(columns) for frame in frames], how="vertical_relaxed")


def _scan_paths(files: list[StoredFile], *, with_day: bool) -> pl.LazyFrame:
    # Absolute: polars would read a leading "~" as the home directory, Python does not.
    paths = [os.path.abspath(f.path) for f in files]
    frame = pl.scan_ipc(paths, glob=False, hive_partitioning=False)
    return frame.with_columns(date=pl.col("start_time").dt.date()) if with_day else frame


def with_session_metrics(sessions: pl.LazyFrame) -> pl.LazyFrame:
    """Add cache_hit_rate, parallelism_utilization and targets_per_second (SPEC §3); all
    three null for a session that reported no targets."""
    # A tool without per-target events (``record -- make``) says nothing of its cache or its
    # workers: a 0 there would read as a cold cache and pull every average down.
    unknown = pl.col("total_targets") == 0
    none = pl.lit(None, dtype=pl.Float64)
    attempted = pl.col("built") + pl.col("cached") + pl.col("failed")
    workers = pl.coalesce(pl.col("parallelism"), pl.col("peak_concurrency"))
    # In floating point: milliseconds times workers can pass the range of an int64.
    capacity = pl.col("duration_ms").cast(pl.Float64) * workers.cast(pl.Float64)
    return sessions.with_columns(
        cache_hit_rate=pl.when(unknown)
        .then(none)
        .when(attempted > 0)
        .then(100.0 * pl.col("cached") / attempted)
        .otherwise(0.0),
        parallelism_utilization=pl.when(unknown)
        .then(none)
        .when(capacity > 0)
        .then(100.0 * pl.col("executed_ms") / capacity)
        .otherwise(0.0),
        # total / (duration / 1000), written so that polars does not turn the division by
        # 1000 into a multiplication by 0.001, which rounds differently.
        targets_per_second=pl.when(unknown)
        .then(none)
        .when(pl.col("duration_ms") > 0)
        .then(pl.col("total_targets") * 1000.0 / pl.col("duration_ms"))
        .otherwise(0.0),
    )


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
    return sorted(sessions["date"].unique().to_list())


def _empty_sessions() -> pl.DataFrame:
    empty = pl.from_arrow(SESSIONS_SCHEMA.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return with_session_metrics(empty.with_columns(date=pl.lit(None, pl.Date)).lazy()).collect()


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
