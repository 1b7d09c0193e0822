"""What the analyzer answers, as plain values: the reports, one build in full, and the
per-build rates (SPEC §3) for a few builds at a time.

Nothing here needs polars, so ``builder telemetry recent`` can answer without loading it
(:mod:`telemetry.recent`); the analyzer computes the same rates over whole columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

Trend: TypeAlias = Literal["Increasing", "Decreasing", "Stable"]
RECENT_BOTTLENECKS: Final = 3


@dataclass(slots=True, frozen=True)
class Bottleneck:
    """A target and the mean duration of its executed runs."""

    target: str
    mean_ms: float
    runs: int


@dataclass(slots=True, frozen=True)
class Regression:
    """A build at least ``threshold`` times slower than the mean of the builds before it."""

    session_id: str
    start_time: datetime
    ratio: float
    expected_ms: float
    actual_ms: int


@dataclass(slots=True, frozen=True)
class SummaryReport:
    """The numbers of ``builder telemetry summary``."""

    total_builds: int
    successful: int
    failed: int
    success_rate: float
    average_build_ms: float
    fastest_build_ms: int
    slowest_build_ms: int
    # A build that reported no targets has no rates (see :func:`rates`): the three means are
    # over the ``builds_with_targets`` that have them, and None when none has.
    average_cache_hit_rate: float | None
    cache_trend: Trend
    average_utilization: float | None
    average_targets_per_second: float | None
    builds_with_targets: int
    bottlenecks: tuple[Bottleneck, ...]
    build_time_trend: Trend
    regressions: tuple[Regression, ...]
    regression_threshold: float


@dataclass(slots=True, frozen=True)
class BuildReport:
    """One build as ``builder telemetry recent`` shows it."""

    session_id: str
    start_time: datetime
    duration_ms: int
    succeeded: bool
    interrupted: bool
    error: str | None
    total_targets: int
    built: int
    cached: int
    failed: int
    skipped: int
    # None when the build reported no targets (``record -- make``): the rates are unknown.
    cache_hit_rate: float | None
    parallelism_utilization: float | None
    targets_per_second: float | None
    labels: dict[str, str]
    bottlenecks: tuple[Bottleneck, ...]


@dataclass(slots=True, frozen=True)
class TargetRun:
    """One target of one build as it was stored: executed (built or failed), cached or
    skipped, over [start_time, end_time)."""

    target: str
    status: str
    start_time: datetime
    end_time: datetime
    duration_ms: int
    worker: int | None
    error: str | None


@dataclass(slots=True, frozen=True)
class BuildDetails:
    """One build as ``builder telemetry show`` shows it: its stored fields, its rates, and
    every target, slowest first (ties by label)."""

    session_id: str
    start_time: datetime
    end_time: datetime
    duration_ms: int
    succeeded: bool
    interrupted: bool
    error: str | None
    total_targets: int
    built: int
    cached: int
    failed: int
    skipped: int
    # None when the build reported no targets: the rates are unknown.
    cache_hit_rate: float | None
    parallelism_utilization: float | None
    targets_per_second: float | None
    parallelism: int | None
    # The most executed targets running at once: the worker count when none was reported.
    peak_concurrency: int
    tool: str | None
    host: str | None
    commit: str | None
    branch: str | None
    labels: dict[str, str]
    targets: tuple[TargetRun, ...]


def rates(row: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    """A stored session row's cache hit rate, parallelism utilization and targets per second,
    computed as :func:`telemetry.analyzer.with_session_metrics` computes them; all three None
    when the build reported no targets.

    >>> rates({"built": 1, "cached": 3, "failed": 0, "total_targets": 4, "duration_ms": 2000,
    ...        "executed_ms": 1000, "parallelism": 2, "peak_concurrency": 1})
    (75.0, 25.0, 2.0)
    """
    if row["total_targets"] == 0:
        # A tool without per-target events: a rate of 0 would read as a cold cache and an
        # idle machine, and pull every average down.
        return None, None, None
    attempted = row["built"] + row["cached"] + row["failed"]
    hit_rate = 100.0 * row["cached"] / attempted if attempted > 0 else 0.0
    workers = row["parallelism"] if row["parallelism"] is not None else row["peak_concurrency"]
    # In floating point: milliseconds times workers can pass the range of an int64.
    capacity = float(row["duration_ms"]) * float(workers or 0)
    utilization = 100.0 * row["executed_ms"] / capacity if capacity > 0 else 0.0
    duration = row["duration_ms"]
    # total / (duration / 1000), written so that it rounds as polars computes it.
    per_second = row["total_targets"] * 1000.0 / duration if duration > 0 else 0.0
    return hit_rate, utilization, per_second


def build_report(row: Mapping[str, Any], runs: Iterable[tuple[str, int, int]]) -> BuildReport:
    """A stored session row as ``recent`` shows it, with its slowest targets from ``runs``:
    (target, summed duration of its executed runs, how many)."""
    means = sorted(
        ((-(total / count), target, total / count, count) for target, total, count in runs)
    )
    hit_rate, utilization, per_second = rates(row)
    return BuildReport(
        session_id=row["session_id"],
        start_time=row["start_time"],
        duration_ms=row["duration_ms"],
        succeeded=row["succeeded"],
        interrupted=row["interrupted"],
        error=row["error"],
        total_targets=row["total_targets"],
        built=row["built"],
        cached=row["cached"],
        failed=row["failed"],
        skipped=row["skipped"],
        cache_hit_rate=hit_rate,
        parallelism_utilization=utilization,
        targets_per_second=per_second,
        labels=dict(row["labels"] or {}),
        bottlenecks=tuple(
            Bottleneck(target, mean, count) for _, target, mean, count in means[:RECENT_BOTTLENECKS]
        ),
    )
