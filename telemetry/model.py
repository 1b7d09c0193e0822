"""What the analyzer answers, as plain values: the reports, one build in full, and a
stored session row as ``recent`` shows it.

Nothing here needs polars, so ``builder telemetry recent`` can answer without loading it
(:mod:`telemetry.recent`); the rates of a row are :func:`telemetry.metrics.rates`, the
row-by-row form of the analyzer's columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal, TypeAlias

from telemetry.metrics import rates

Trend: TypeAlias = Literal["Increasing", "Decreasing", "Stable"]
# What the summary ranks its bottlenecks by: the mean duration of each target's executed
# runs, or their mean weighted time (:mod:`telemetry.weighted`).
RankBy: TypeAlias = Literal["duration", "weighted"]
RECENT_BOTTLENECKS: Final = 3


@dataclass(slots=True, frozen=True)
class Bottleneck:
    """A target and the mean duration of its executed runs."""

    target: str
    mean_ms: float
    runs: int


@dataclass(slots=True, frozen=True)
class WeightedBottleneck:
    """A target and the means of its executed runs' weighted times and durations."""

    target: str
    mean_weighted_ms: float
    mean_duration_ms: float
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
class RolledDays:
    """The days a summary read from the daily rollups: days whose builds retention removed,
    which the rollups still count."""

    first: date
    last: date
    days: int
    builds: int


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
    # A build that reported no targets has no rates (see :func:`telemetry.metrics.rates`):
    # the three means are over the ``builds_with_targets`` that have them, and None when none
    # has.
    average_cache_hit_rate: float | None
    cache_trend: Trend
    average_utilization: float | None
    average_targets_per_second: float | None
    builds_with_targets: int
    bottlenecks: tuple[Bottleneck, ...]
    build_time_trend: Trend
    regressions: tuple[Regression, ...]
    regression_threshold: float
    # The window's days that only the rollups still hold: in the totals, averages and
    # bottlenecks; the trends and regressions are over the builds themselves.
    from_rollups: RolledDays | None = None
    # Set when the bottlenecks are ranked by mean weighted time (``summary --by weighted``):
    # they stand in for ``bottlenecks``, and are over the builds still stored.
    weighted_bottlenecks: tuple[WeightedBottleneck, ...] | None = None
    # The two trends as a few points each (:func:`telemetry.analyzer.trend_series`), for the
    # sparklines a terminal shows; empty unless asked for (``summary(trend_points=...)``).
    build_time_series: tuple[float, ...] = ()
    cache_hit_rate_series: tuple[float, ...] = ()


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
    skipped, over [start_time, end_time); ``deps``: the targets it waited for, by name, as
    its ``target_started`` said (None when not said)."""

    target: str
    status: str
    start_time: datetime
    end_time: datetime
    duration_ms: int
    worker: int | None
    error: str | None
    deps: tuple[str, ...] | None = None


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
    executed_ms: int  # Σ durations of the executed (built or failed) targets
    tool: str | None
    host: str | None
    commit: str | None
    branch: str | None
    labels: dict[str, str]
    targets: tuple[TargetRun, ...]


@dataclass(slots=True, frozen=True)
class BuildWeights:
    """One build's weighted figures (:mod:`telemetry.weighted`); the times are None, as its
    rates are, when the build reported no targets."""

    session_id: str
    weighted_ms: int | None  # Σ of its targets' weighted times: the time any target ran
    span_ms: int | None  # from the first executed target's start to the last one's end
    executed_ms: int | None  # Σ durations of its executed targets
    # executed_ms / span_ms, as Chromium's build summary reports it; None when nothing ran
    effective_parallelism: float | None
    workers: int  # its parallelism, else its peak concurrency
    # Of its wall time, with fewer targets running than workers; None also when it has no
    # workers (no worker count given, and nothing ran).
    underused_ms: int | None
    duration_ms: int  # its wall time
    targets: tuple[float, ...]  # each target's weighted time, in the order of its targets


@dataclass(slots=True, frozen=True)
class PathStep:
    """One target on a build's critical path (:mod:`telemetry.critical_path`)."""

    target: str
    status: str  # built or failed: a target that ran
    start_time: datetime
    end_time: datetime
    duration_ms: int
    # duration_ms / the build's wall time; None when the build took no time
    share: float | None


@dataclass(slots=True, frozen=True)
class CriticalPath:
    """The chain of targets that decided when a build ended, first to last; empty when no
    target ran. ``complete`` is False when it begins at a target whose dependencies were
    not reported, so that it may reach further back than it shows."""

    steps: tuple[PathStep, ...]
    duration_ms: int  # Σ durations of its steps
    build_ms: int  # the build's wall time
    share: float | None  # duration_ms / build_ms; None when the build took no time
    complete: bool


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
