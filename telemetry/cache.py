"""Cache value: the time the cache saved, per target, per build and over a window, and the
targets behind a falling hit rate.

A cache hit is valued at what the target costs when it runs, less what the hit itself took
(restoring from a remote cache takes time): max(0, the median duration of the target's
executed runs (built or failed) in the window − the hit's own duration), the median as polars
computes it (the middle value, or the mean of the two middle values of an even count). A
target cached in the window but never executed in it has no such cost: its hits are counted
as *unvalued*, never guessed.
Skipped runs are neither hits nor misses (SPEC §3's hit rate), and a target that was only
ever skipped is left out.

"Why is our hit rate down" is answered as SPEC §3's trends split a window: the builds that
reported targets, in time order, the older ⌊n/2⌋ and the newer rest. Per target, the misses it
added are its misses in the newer half above what its older-half miss rate predicts for its
newer-half runs (all of them, for a target the older half never ran): the targets that added
the most are the ones responsible. The hit rates here are over target runs (cached /
(cached + executed), every run counting once), the rate the misses added are counted in. The
rate *fell* when the newer half's is below the older half's by more than the summary's trend
band (:data:`telemetry.analyzer.TREND_BAND`, 10% of the older rate), so that a change the
summary calls stable is not called a fall here.

A session id names one build; one stored for two builds (day folders copied together by
hand) has each of its target rows counted once, at its first build (as
:meth:`TelemetryAnalyzer.targets` gives them).

Every number is read from one snapshot (:meth:`TelemetryAnalyzer.targets`); the builds are
those the store still holds (the daily rollups keep no per-build cache hits).

>>> report = cache_value(TelemetryAnalyzer(TelemetryStorage("store")))  # doctest: +SKIP
>>> report.saved_ms  # doctest: +SKIP
1234567.5
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import polars as pl

from telemetry.analyzer import TREND_BAND, BuildLookupError, TelemetryAnalyzer
from telemetry.events import EXECUTED
from telemetry.exporter import format_duration, format_time
from telemetry.text import printable

_EXECUTED: Final = sorted(EXECUTED)
_CACHED: Final = "cached"
# What the analysis reads of the target rows (besides session_id): the executed runs and the
# hits, never the skipped ones, nor the columns it does not use.
_COLUMNS: Final = ("target", "status", "duration_ms")
_STATUSES: Final = (*_EXECUTED, _CACHED)
_T = TypeVar("_T")


@dataclass(slots=True, frozen=True)
class TargetValue:
    """One target over the window: its runs, hit rate and the time its hits saved."""

    target: str
    executed: int  # built or failed runs
    cached: int
    hit_rate: float  # 100 · cached / (cached + executed)
    executed_ms: int  # Σ durations of the executed runs
    # None when the target never executed in the window: its hits cannot be valued.
    median_ms: float | None
    saved_ms: float | None  # Σ over its hits of max(0, median_ms − the hit's duration)


@dataclass(slots=True, frozen=True)
class BuildValue:
    """One build: its cache hits and the time they saved, each valued at its target's median
    executed duration over the window less the hit's own duration (never below 0)."""

    session_id: str
    start_time: datetime
    cached: int
    unvalued: int  # hits of targets never executed in the window
    saved_ms: float


@dataclass(slots=True, frozen=True)
class HitRateShift:
    """One target's hit rate in the older and the newer half of the window, and the misses
    it added in the newer half above what its older-half rate predicts."""

    target: str
    older_runs: int  # cached + executed, in the older half
    older_hit_rate: float | None  # None when it did not run in the older half
    newer_runs: int
    newer_hit_rate: float | None
    misses_added: float


@dataclass(slots=True, frozen=True)
class HitRateChange:
    """The hit rate over target runs in the older ⌊n/2⌋ and the newer rest of the builds that
    reported targets, and the targets that added misses, most first (ties by label)."""

    older_builds: int
    newer_builds: int
    older_hit_rate: float | None  # None when the half ran no target
    newer_hit_rate: float | None
    targets: tuple[HitRateShift, ...]

    @property
    def falling(self) -> bool:
        """Whether the newer half's hit rate is below the older half's by more than the
        summary's trend band (:data:`~telemetry.analyzer.TREND_BAND` of the older rate), as
        the summary's trends call a change ``Decreasing``."""
        older, newer = self.older_hit_rate, self.newer_hit_rate
        return bool(older and newer is not None and (newer - older) / older < -TREND_BAND)


@dataclass(slots=True, frozen=True)
class CacheReport:
    """The cache's value over a window: totals, every target by time saved (most first, then
    the unvalued ones; ties by label), every build (oldest first) and the hit rate's change."""

    builds: int
    executed: int  # executed target runs
    cached: int
    hit_rate: float | None  # over target runs; None when no target ran or was cached
    executed_ms: int
    saved_ms: float
    unvalued: int  # cache hits of targets never executed in the window
    targets: tuple[TargetValue, ...]
    per_build: tuple[BuildValue, ...]
    change: HitRateChange

    @property
    def saved_share(self) -> float | None:
        """The share (%) of the target time the window would have taken with no cache that
        the valued hits saved: saved / (saved + executed); None when both are 0."""
        whole = self.saved_ms + self.executed_ms
        return 100.0 * self.saved_ms / whole if whole else None


@dataclass(slots=True, frozen=True)
class CachedTarget:
    """One cache hit of a build, valued at its target's median executed duration over the
    window less the hit's own duration, never below 0 (None when the target never executed
    in the window)."""

    target: str
    median_ms: float | None
    executed: int  # the target's executed runs in the window, which the median is of
    hit_ms: int  # what the hit itself took
    saved_ms: float | None  # max(0, median_ms − hit_ms)


@dataclass(slots=True, frozen=True)
class BuildCacheValue:
    """One build's cache hits, most valuable first (ties by label; the unvalued last)."""

    build: BuildValue
    targets: tuple[CachedTarget, ...]


def cache_value(analyzer: TelemetryAnalyzer) -> CacheReport:
    """The cache's value over the analyzer's window and filter.

    >>> cache_value(TelemetryAnalyzer(TelemetryStorage("store"))).hit_rate  # doctest: +SKIP
    60.3
    """
    sessions, rows = analyzer.targets(columns=_COLUMNS, statuses=_STATUSES)
    medians = _medians(rows)
    hits = _hits(rows, medians)
    values = _per_target(medians, hits)
    per_build = _per_build(sessions, hits)
    totals = values.select(
        executed=pl.col("executed").sum(),
        cached=pl.col("cached").sum(),
        executed_ms=pl.col("executed_ms").sum(),
        saved_ms=pl.col("saved_ms").sum(),
        unvalued=pl.col("cached").filter(pl.col("median_ms").is_null()).sum(),
    ).row(0, named=True)
    executed, cached = int(totals["executed"] or 0), int(totals["cached"] or 0)
    return CacheReport(
        builds=sessions.height,
        executed=executed,
        cached=cached,
        hit_rate=_rate(cached, executed + cached),
        executed_ms=int(totals["executed_ms"] or 0),
        saved_ms=float(totals["saved_ms"] or 0.0),
        unvalued=int(totals["unvalued"] or 0),
        targets=tuple(
            TargetValue(
                target=r["target"],
                executed=r["executed"],
                cached=r["cached"],
                hit_rate=100.0 * r["cached"] / (r["cached"] + r["executed"]),
                executed_ms=r["executed_ms"],
                median_ms=r["median_ms"],
                saved_ms=r["saved_ms"],
            )
            for r in values.iter_rows(named=True)
        ),
        per_build=tuple(
            BuildValue(r["session_id"], r["start_time"], r["cached"], r["unvalued"], r["saved_ms"])
            for r in per_build.iter_rows(named=True)
        ),
        change=_change(sessions, rows),
    )


def build_cache_value(analyzer: TelemetryAnalyzer, session: str) -> BuildCacheValue:
    """One build's cache hits, each valued at its target's median executed duration over the
    analyzer's window less the hit's own duration. ``session`` is a session id or its first
    characters, as :meth:`TelemetryAnalyzer.build` finds it (:class:`BuildLookupError` when
    no build or several match).

    >>> build_cache_value(TelemetryAnalyzer(TelemetryStorage("store")), "ci-0042")  # doctest: +SKIP
    """
    found = analyzer.build(session).session_id
    sessions, rows = analyzer.targets(columns=_COLUMNS, statuses=_STATUSES)
    chosen = sessions.filter(pl.col("session_id") == found)
    if chosen.is_empty():  # removed (``clear``) between the two reads
        raise BuildLookupError(
            f"build {found!r} is no longer in {analyzer.storage.dir}; "
            "builder telemetry recent lists the newest builds"
        )
    medians = _medians(rows)
    hits = _hits(rows, medians)
    build = _per_build(chosen, hits).row(0, named=True)
    mine = (
        hits.filter(pl.col("session_id") == found)
        .join(medians.select("target", "executed"), on="target", how="left")
        .with_columns(pl.col("executed").fill_null(0))
        .sort(
            ["saved_ms", "target"], descending=[True, False], nulls_last=True, maintain_order=True
        )
    )
    return BuildCacheValue(
        build=BuildValue(
            build["session_id"],
            build["start_time"],
            build["cached"],
            build["unvalued"],
            build["saved_ms"],
        ),
        targets=tuple(
            CachedTarget(r["target"], r["median_ms"], r["executed"], r["hit_ms"], r["saved_ms"])
            for r in mine.iter_rows(named=True)
        ),
    )


# -- the queries ------------------------------------------------------------------------------


def _medians(rows: pl.DataFrame) -> pl.DataFrame:
    """Per target that executed: its executed runs, their total and median duration."""
    return (
        rows.lazy()
        .filter(pl.col("status").is_in(_EXECUTED))
        .group_by("target")
        .agg(
            executed=pl.len().cast(pl.Int64),
            executed_ms=pl.col("duration_ms").sum().cast(pl.Int64),
            median_ms=pl.col("duration_ms").median().cast(pl.Float64),
        )
        .collect()
    )


def _hits(rows: pl.DataFrame, medians: pl.DataFrame) -> pl.DataFrame:
    """Every cache hit (in the order of ``rows``): its session, target, own duration (0 when
    none was reported), its target's median and the time it saved, max(0, median − its own
    duration); both None for a target never executed."""
    return (
        rows.lazy()
        .filter(pl.col("status") == _CACHED)
        .select(
            "session_id",
            "target",
            hit_ms=pl.col("duration_ms").fill_null(0).cast(pl.Int64),
            # A lookup in the few targets' medians: cheaper than a join over every hit.
            median_ms=pl.col("target").replace_strict(
                medians["target"], medians["median_ms"], default=None, return_dtype=pl.Float64
            ),
        )
        .with_columns(saved_ms=(pl.col("median_ms") - pl.col("hit_ms")).clip(lower_bound=0.0))
        .collect()
    )


def _per_target(medians: pl.DataFrame, hits: pl.DataFrame) -> pl.DataFrame:
    """Per target that executed or was cached: runs, median executed duration, time saved;
    by time saved, most first, the unvalued last, ties by label."""
    cached = (
        hits.lazy()
        .group_by("target")
        .agg(
            cached=pl.len().cast(pl.Int64),
            # None for a target never executed: its hits are not valued.
            saved_ms=pl.when(pl.col("median_ms").is_not_null().any()).then(
                pl.col("saved_ms").sum()
            ),
        )
    )
    return (
        medians.lazy()
        .join(cached, on="target", how="full", coalesce=True)
        .select(
            "target",
            pl.col("executed", "executed_ms", "cached").fill_null(0).cast(pl.Int64),
            pl.col("median_ms"),
            pl.col("saved_ms").cast(pl.Float64),
        )
        .with_columns(
            # A target executed but never cached saved nothing; one never executed, unknown.
            saved_ms=pl.when(pl.col("median_ms").is_not_null()).then(
                pl.col("saved_ms").fill_null(0.0)
            )
        )
        .sort(["saved_ms", "target"], descending=[True, False], nulls_last=True)
        .collect()
    )


def _first_builds(sessions: pl.DataFrame) -> pl.DataFrame:
    """Each build of ``sessions`` with its place (``_order``, oldest first), and whether it
    is the first build of its session id (``_first``): a session id stored for two builds
    has its target rows once, at its first build, so only that build joins them."""
    return sessions.select(
        "session_id",
        "start_time",
        _order=pl.int_range(pl.len()),
        _first=pl.col("session_id").is_first_distinct(),
    )


def _per_build(sessions: pl.DataFrame, hits: pl.DataFrame) -> pl.DataFrame:
    """Per build of ``sessions``, oldest first: its hits, the unvalued ones, the time saved."""
    per_id = (
        hits.lazy()
        .group_by("session_id")
        .agg(
            cached=pl.len().cast(pl.Int64),
            unvalued=pl.col("median_ms").is_null().sum().cast(pl.Int64),
            saved_ms=pl.col("saved_ms").sum().cast(pl.Float64),
        )
    )
    builds = _first_builds(sessions).lazy()
    joined = (
        builds.filter("_first")
        .join(per_id, on="session_id", how="inner")
        .select("_order", "cached", "unvalued", "saved_ms")
    )
    return (
        builds.join(joined, on="_order", how="left")
        .sort("_order")
        .select(
            "session_id",
            "start_time",
            pl.col("cached", "unvalued").fill_null(0),
            pl.col("saved_ms").fill_null(0.0),
        )
        .collect()
    )


def _change(sessions: pl.DataFrame, rows: pl.DataFrame) -> HitRateChange:
    """The hit rate in the older ⌊n/2⌋ and the newer rest of the builds that reported
    targets (as SPEC §3's cache trend splits them), and per target the misses it added.
    A build's half is its place among them: the rows of a session id stored for two builds
    are in the half of its first build."""
    known = _first_builds(sessions.filter(pl.col("cache_hit_rate").is_not_null()))
    n = known.height
    places = known.filter("_first")
    hit = pl.col("status") == _CACHED
    new = ~pl.col("old")
    halves = (
        rows.lazy()
        .select(
            "target",
            "status",
            # Each row's half, by its build's place: a lookup, cheaper than a join.
            old=pl.col("session_id").replace_strict(
                places["session_id"], places["_order"] < n // 2, default=None
            ),
        )
        .drop_nulls("old")
        .group_by("target")
        .agg(
            older_runs=pl.col("old").sum().cast(pl.Int64),
            older_hits=(pl.col("old") & hit).sum().cast(pl.Int64),
            newer_runs=new.sum().cast(pl.Int64),
            newer_hits=(new & hit).sum().cast(pl.Int64),
        )
        .collect()
    )
    totals = halves.select(pl.all().exclude("target").sum()).row(0, named=True)
    shifts = [_shift(r) for r in halves.iter_rows(named=True)]
    added = sorted(
        (s for s in shifts if s.misses_added > 0), key=lambda s: (-s.misses_added, s.target)
    )
    return HitRateChange(
        older_builds=n // 2,
        newer_builds=n - n // 2,
        older_hit_rate=_rate(totals["older_hits"] or 0, totals["older_runs"] or 0),
        newer_hit_rate=_rate(totals["newer_hits"] or 0, totals["newer_runs"] or 0),
        targets=tuple(added),
    )


def _shift(row: dict[str, Any]) -> HitRateShift:
    older_runs, older_hits = row["older_runs"], row["older_hits"]
    newer_runs, newer_hits = row["newer_runs"], row["newer_hits"]
    newer_misses = newer_runs - newer_hits
    if older_runs:
        # newer misses − (older misses / older runs) · newer runs, over one division so that
        # a target whose rate held adds exactly 0.
        older_misses = older_runs - older_hits
        added = (newer_misses * older_runs - older_misses * newer_runs) / older_runs
    else:
        added = float(newer_misses)
    return HitRateShift(
        target=row["target"],
        older_runs=older_runs,
        older_hit_rate=_rate(older_hits, older_runs),
        newer_runs=newer_runs,
        newer_hit_rate=_rate(newer_hits, newer_runs),
        misses_added=added,
    )


def _rate(hits: int, runs: int) -> float | None:
    return 100.0 * hits / runs if runs else None


# -- text and JSON ----------------------------------------------------------------------------


def format_span(ms: float) -> str:
    """A stretch of time for people: ``45ms`` and ``2.3s`` as the reports write durations,
    then ``4m 05s``, then ``2h 03m``.

    >>> format_span(245_000), format_span(7_390_000)
    ('4m 05s', '2h 03m')
    """
    if ms < 60_000:
        return format_duration(ms)
    seconds = round(ms / 1000)
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    minutes = round(ms / 60_000)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def render_cache(report: CacheReport, *, top: int = 10) -> str:
    """The window's cache value as text, ending in a newline: the totals, the ``top`` targets
    by time saved, and when the hit rate fell, the ``top`` targets behind it."""
    share = report.saved_share
    lines = [
        "=== Cache Value ===",
        "",
        f"Builds: {report.builds}",
        f"Target runs: {report.cached} cached, {report.executed} executed "
        f"(hit rate: {_percent(report.hit_rate)})",
        f"Time saved: {format_span(report.saved_ms)}"
        + ("" if share is None else f" ({share:.1f}% of the target time without the cache)"),
        f"Time executing targets: {format_span(report.executed_ms)}",
    ]
    if report.builds:
        lines.append(f"Saved per build: {format_span(report.saved_ms / report.builds)} on average")
    if report.unvalued:
        never = sum(1 for t in report.targets if t.median_ms is None)
        lines.append(
            f"Not valued: {_plural(report.unvalued, 'cache hit')} of "
            f"{_plural(never, 'target')} never executed in the window"
        )
    lines += ["", "Top targets by time saved:"]
    valued = [t for t in report.targets if t.saved_ms]
    if valued:
        lines += [
            f"  {rank}. {printable(t.target)} - {format_span(t.saved_ms or 0.0)} saved "
            f"({_plural(t.cached, 'hit')} x {format_duration(t.median_ms or 0.0)} median, "
            f"hit rate {t.hit_rate:.1f}%)"
            for rank, t in enumerate(valued[:top], start=1)
        ]
    else:
        lines.append("  (none)")
    lines += ["", _change_line(report.change)]
    if report.change.falling:
        lines.append("Behind the fall (misses added in the newer builds):")
        lines += [
            f"  {rank}. {printable(s.target)} - {s.misses_added:.1f} misses added "
            f"(hit rate {_percent(s.older_hit_rate, 'new')} -> {_percent(s.newer_hit_rate)}, "
            f"{_plural(s.newer_runs, 'run')})"
            for rank, s in enumerate(report.change.targets[:top], start=1)
        ] or ["  no target's own rate fell: the mix of targets run changed"]
    return "\n".join(lines) + "\n"


def _change_line(change: HitRateChange) -> str:
    if change.older_builds == 0:
        return "Hit rate change: needs at least 2 builds with targets"
    older, newer = change.older_hit_rate, change.newer_hit_rate
    if change.falling:
        said = "falling"
    elif older is not None and newer is not None and newer < older:
        said = f"not falling (within the ±{TREND_BAND:.0%} band of the summary's trends)"
    else:
        said = "not falling"
    return (
        f"Hit rate: {_percent(older)} in the older {_plural(change.older_builds, 'build')}, "
        f"{_percent(newer)} in the newer {change.newer_builds}: {said}"
    )


def render_build_cache(value: BuildCacheValue, *, top: int | None = None) -> str:
    """One build's cache value as text, ending in a newline: its hits, most valuable first
    (the ``top`` most when given)."""
    build = value.build
    lines = [
        f"=== Cache Value of Build {printable(build.session_id)} ===",
        "",
        f"Started: {format_time(build.start_time)}",
        f"Cache hits: {build.cached}",
        f"Time saved: {format_span(build.saved_ms)}",
    ]
    if build.unvalued:
        lines.append(
            f"Not valued: {_plural(build.unvalued, 'cache hit')} of targets never executed "
            "in the window"
        )
    lines += ["", "Cache hits, most valuable first:"]
    shown = value.targets if top is None else value.targets[:top]
    lines += [
        f"  {rank}. {printable(t.target)} - {_hit_value(t)}"
        for rank, t in enumerate(shown, start=1)
    ] or ["  (none)"]
    return "\n".join(lines) + "\n"


def _hit_value(hit: CachedTarget) -> str:
    if hit.median_ms is None or hit.saved_ms is None:
        return "not valued (never executed in the window)"
    median = f"median of {_plural(hit.executed, 'run')}"
    if not hit.hit_ms:
        return f"{format_duration(hit.median_ms)} ({median})"
    return (
        f"{format_duration(hit.saved_ms)} ({format_duration(hit.median_ms)} {median}, less "
        f"the {format_duration(hit.hit_ms)} the hit took)"
    )


def cache_json(report: CacheReport, *, top: int | None = None) -> str:
    """The window's cache value as a JSON object, unrounded: the ``top`` targets by time
    saved and behind the change (all when None), and every build oldest first."""
    change = report.change
    return _dumps(
        {
            "builds": report.builds,
            "cachedRuns": report.cached,
            "executedRuns": report.executed,
            "hitRate": report.hit_rate,
            "savedMs": report.saved_ms,
            "executedMs": report.executed_ms,
            "savedShare": report.saved_share,
            "unvaluedHits": report.unvalued,
            "targets": [_target_json(t) for t in _head(report.targets, top)],
            "hitRateChange": {
                "olderBuilds": change.older_builds,
                "newerBuilds": change.newer_builds,
                "olderHitRate": change.older_hit_rate,
                "newerHitRate": change.newer_hit_rate,
                "falling": change.falling,
                "targets": [
                    {
                        "target": s.target,
                        "olderRuns": s.older_runs,
                        "olderHitRate": s.older_hit_rate,
                        "newerRuns": s.newer_runs,
                        "newerHitRate": s.newer_hit_rate,
                        "missesAdded": s.misses_added,
                    }
                    for s in _head(change.targets, top)
                ],
            },
            "perBuild": [_build_json(b) for b in report.per_build],
        }
    )


def build_cache_json(value: BuildCacheValue, *, top: int | None = None) -> str:
    """One build's cache value as a JSON object, its hits most valuable first."""
    return _dumps(
        _build_json(value.build)
        | {
            "targets": [
                {
                    "target": t.target,
                    "medianMs": t.median_ms,
                    "executedRuns": t.executed,
                    "hitMs": t.hit_ms,
                    "savedMs": t.saved_ms,
                }
                for t in _head(value.targets, top)
            ]
        }
    )


def _target_json(t: TargetValue) -> dict[str, object]:
    return {
        "target": t.target,
        "executedRuns": t.executed,
        "cachedRuns": t.cached,
        "hitRate": t.hit_rate,
        "executedMs": t.executed_ms,
        "medianMs": t.median_ms,
        "savedMs": t.saved_ms,
    }


def _build_json(b: BuildValue) -> dict[str, object]:
    return {
        "sessionId": b.session_id,
        "startTime": format_time(b.start_time),
        "cachedRuns": b.cached,
        "unvaluedHits": b.unvalued,
        "savedMs": b.saved_ms,
    }


def _head(items: Sequence[_T], top: int | None) -> Sequence[_T]:
    return items if top is None else items[:top]


def _dumps(document: dict[str, object]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _percent(value: float | None, unknown: str = "n/a") -> str:
    return unknown if value is None else f"{value:.1f}%"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


__all__ = [
    "BuildCacheValue",
    "BuildValue",
    "CacheReport",
    "CachedTarget",
    "HitRateChange",
    "HitRateShift",
    "TargetValue",
    "build_cache_json",
    "build_cache_value",
    "cache_json",
    "cache_value",
    "format_span",
    "render_build_cache",
    "render_cache",
]
