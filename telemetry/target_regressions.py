"""Robust per-target regressions: which targets got slower, judged on their executed runs
only, against a median and median absolute deviation (MAD) of their earlier runs, with a
minimum effect both as a ratio and in milliseconds; and, for the builds the summary's
mean-based check flags, whether their targets got slower or more of them ran (cache misses).

The test, for one target: take its executed (built or failed) runs in the window, in the
order of their builds; the newest ``recent`` of them are compared with up to ``baseline``
runs before them. It has regressed when

- the baseline holds at least ``min_samples`` runs and its median is above 0 ms,
- median(recent) / median(baseline) ≥ ``ratio``,
- median(recent) − median(baseline) ≥ ``min_ms``, and
- median(recent) > median(baseline) + ``mads`` · 1.4826 · MAD(baseline);
- with ``within`` given, all of its recent runs are of builds that started at most
  ``within`` before the newest build of the window (a target that stopped running is left
  out, not judged on its last runs for ever).

Cached runs take no time and say nothing about how long a target takes, so they are left
out: a build that hit the cache more, or less, changes no target's numbers. 1.4826 scales
the MAD to the standard deviation of normally distributed durations, so ``mads = 3`` reads
as "three standard deviations", and a few wild runs in the baseline move neither its median
nor its MAD. When the MAD is 0 (most baseline runs took the same time), the bound is the
median itself, and the ratio and the minimum in milliseconds alone decide. A median of an
even number of runs is the mean of the two middle ones. Failed runs are executed runs
(they count, as everywhere else), so a target that failed fast for a while and was then
fixed can look slower than those quick failures.

A session id stored for two builds (day folders of two stores copied into one) has its
target rows read once: they count at the first of those builds' place.

A flagged build is explained by cache misses (:attr:`FlaggedBuild.verdict`) only when its
cache hit rate fell at least :data:`HIT_RATE_DROP` points below the earlier builds' median,
none of its judged targets ran slower, its executed targets' time above the earlier
builds' median covers more than half of its slowdown (its duration above the mean it was
flagged against), and more than half of its executed targets could be judged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import polars as pl

from telemetry.analyzer import regressions as build_regressions
from telemetry.config import parse_number
from telemetry.errors import ConfigError
from telemetry.events import EXECUTED, TIME_FORMAT
from telemetry.model import Regression
from telemetry.text import printable

if TYPE_CHECKING:
    from telemetry.analyzer import TelemetryAnalyzer

# The MAD of normally distributed values times this is their standard deviation (1/Φ⁻¹(3/4)).
MAD_SCALE: Final = 1.4826
_EXECUTED: Final = sorted(EXECUTED)
# A flagged build's cache hit rate must be this many percentage points below the usual for
# cache misses to explain it: a drop of a few points is the ordinary swing of a busy cache.
HIT_RATE_DROP: Final = 10.0
_AGE = re.compile(r"([0-9]+)(m|h|d)")
_AGE_UNITS: Final = {"m": "minutes", "h": "hours", "d": "days"}

# What a flagged build was, by the rule in the module's first lines.
Verdict: TypeAlias = Literal["slower-targets", "cache-misses", "not-cache-misses", "cannot-tell"]


class ThresholdError(ConfigError):
    """An unusable :class:`Thresholds` value. The message names the parameters
    (``recent``, ``min_samples``); :meth:`said` names them as a caller calls them."""

    def __init__(self, template: str, *parameters: str) -> None:
        self.template = template
        self.parameters = parameters
        super().__init__(self.said())

    def said(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each parameter called by its name in ``names`` (a command
        line's flags), or by its own."""
        return self.template.format(*((names or {}).get(p, p) for p in self.parameters))


@dataclass(slots=True, frozen=True)
class Thresholds:
    """What counts as a target regression (see the module's first lines).

    >>> Thresholds(ratio=2.0).min_samples
    5
    """

    recent: int = 3
    baseline: int = 20
    min_samples: int = 5
    ratio: float = 1.5
    min_ms: float = 100.0
    mads: float = 3.0
    within: timedelta | None = None  # None: the recent runs may be of any age

    def __post_init__(self) -> None:
        for parameter, count in (
            ("recent", self.recent),
            ("baseline", self.baseline),
            ("min_samples", self.min_samples),
        ):
            if count < 1:
                raise ThresholdError(
                    f"{{}} must be a whole number of at least 1, got {count}", parameter
                )
        if self.baseline < self.min_samples:
            raise ThresholdError(
                f"{{}} ({self.baseline}) must be at least {{}} ({self.min_samples}): a "
                "baseline of fewer runs could never be judged",
                "baseline",
                "min_samples",
            )
        if not math.isfinite(self.ratio) or self.ratio <= 1.0:
            raise ThresholdError(
                f"{{}} must be a number greater than 1 (e.g. 1.5), got {self.ratio!r}", "ratio"
            )
        if not math.isfinite(self.min_ms) or self.min_ms < 0:
            raise ThresholdError(
                f"{{}} must be a number of milliseconds, 0 or more (e.g. 100), got {self.min_ms!r}",
                "min_ms",
            )
        if not math.isfinite(self.mads) or self.mads < 0:
            raise ThresholdError(
                f"{{}} must be a number, 0 or more (e.g. 3), got {self.mads!r}", "mads"
            )
        if self.within is not None and self.within < timedelta(minutes=1):
            raise ThresholdError(
                f"{{}} must be at least a minute (e.g. 7d), got {self.within}", "within"
            )


def number(text: str, *, option: str) -> float:
    """A number given as text on a command line; :class:`Thresholds` says which are usable.

    >>> number("1.5", option="--ratio")
    1.5
    """
    return parse_number(text, source=option, example="1.5")


def age(text: str, *, option: str) -> timedelta:
    """An age given as text on a command line: whole minutes, hours or days.

    >>> age("7d", option="--within")
    datetime.timedelta(days=7)
    """
    found = _AGE.fullmatch(text.strip().lower())
    if found is None:
        raise ConfigError(
            f"{option} must be an age in whole minutes, hours or days (90m, 24h, 7d), got {text!r}"
        )
    count, unit = found.groups()
    try:
        return timedelta(**{_AGE_UNITS[unit]: int(count)})
    except OverflowError:
        raise ConfigError(f"{option} is too long an age, got {text!r}") from None


@dataclass(slots=True, frozen=True)
class Run:
    """One executed run of a target: the build it ran in, when that build started, and how
    long the run took."""

    session_id: str
    start_time: datetime
    duration_ms: int


@dataclass(slots=True, frozen=True)
class TargetRegression:
    """A target whose runs (``runs``, oldest first) took ``ratio`` times the median of the
    ``baseline_runs`` executed runs before them."""

    target: str
    ratio: float
    added_ms: float  # median_ms − baseline_median_ms
    median_ms: float
    baseline_median_ms: float
    baseline_mad_ms: float  # unscaled
    baseline_runs: int
    runs: tuple[Run, ...]


@dataclass(slots=True, frozen=True)
class FlaggedBuild:
    """A build the summary flags (at least its threshold times the mean duration of the
    builds before it), with what ran in it against the medians of the earlier builds that
    reported targets, and which of its targets ran slower than their own earlier runs."""

    session_id: str
    start_time: datetime
    ratio: float
    expected_ms: float
    actual_ms: int
    executed: int  # built + failed
    usual_executed: float | None  # None when no earlier build reported targets
    executed_ms: int  # Σ durations of its executed targets
    usual_executed_ms: float | None
    cache_hit_rate: float | None
    usual_cache_hit_rate: float | None
    judged_targets: int  # its executed targets with enough earlier runs to judge
    slower_targets: tuple[TargetRegression, ...]

    @property
    def slowdown_ms(self) -> float:
        """How much longer it took than the mean it was flagged against."""
        return self.actual_ms - self.expected_ms

    @property
    def extra_executed_ms(self) -> float | None:
        """Its executed targets' time above the usual; None when nothing is usual."""
        return None if self.usual_executed_ms is None else self.executed_ms - self.usual_executed_ms

    @property
    def verdict(self) -> Verdict:
        """What made it slow, as far as its targets tell (the rule in the module's first
        lines): ``cache-misses`` only when every part of that rule holds."""
        if self.slower_targets:
            return "slower-targets"
        if self.cache_hit_rate is None or self.usual_cache_hit_rate is None:
            return "cannot-tell"
        if self.cache_hit_rate > self.usual_cache_hit_rate - HIT_RATE_DROP:
            return "not-cache-misses"
        extra = self.extra_executed_ms
        if extra is None or 2 * extra <= self.slowdown_ms:
            return "not-cache-misses"
        if 2 * self.judged_targets <= self.executed:
            return "cannot-tell"
        return "cache-misses"

    @property
    def explained_by_cache_misses(self) -> bool:
        """Whether the :attr:`verdict` is ``cache-misses``."""
        return self.verdict == "cache-misses"


@dataclass(slots=True, frozen=True)
class TargetRegressionReport:
    """What ``builder telemetry regressions`` shows."""

    thresholds: Thresholds
    pattern: str | None  # the glob on target names, None for every target
    builds: int  # in the window
    targets: int  # with an executed run in the window (matching the pattern)
    checked: int  # of those, with enough earlier runs to judge
    stale: int  # of those, left out: a recent run older than ``thresholds.within`` allows
    regressions: tuple[TargetRegression, ...]  # most milliseconds added first
    flagged_builds: tuple[FlaggedBuild, ...]  # oldest first
    regression_threshold: float  # the summary's, that flagged the builds


def target_regressions(
    analyzer: TelemetryAnalyzer,
    *,
    target: str | None = None,
    thresholds: Thresholds | None = None,
) -> TargetRegressionReport:
    """The targets of the analyzer's window whose newest executed runs regressed (those
    whose name matches the glob ``target``), and the builds its summary flags, explained.

    >>> report = target_regressions(TelemetryAnalyzer(TelemetryStorage("store")))  # doctest: +SKIP
    >>> [(r.target, r.ratio) for r in report.regressions]  # doctest: +SKIP
    [('//app:test', 2.0)]
    """
    limits = thresholds or Thresholds()
    sessions, rows = analyzer.targets()
    runs = _executed_runs(sessions, rows)
    names = runs["target"].unique().to_list()
    if target is not None:
        names = [name for name in names if fnmatchcase(name, target)]
    chosen = runs.filter(pl.col("target").is_in(pl.Series(names, dtype=pl.String).implode()))
    position = (pl.len() - 1 - pl.int_range(pl.len())).over("target")
    newest = chosen.with_columns(
        recent=position < limits.recent,
        baseline=(position >= limits.recent) & (position < limits.recent + limits.baseline),
    )
    stale = 0
    if limits.within is not None and not newest.is_empty():
        last: datetime = sessions["start_time"].max()  # type: ignore[assignment]
        try:
            cutoff = last - limits.within
        except OverflowError:  # older than the year 1: no run is
            cutoff = datetime.min.replace(tzinfo=last.tzinfo)
        old = (
            newest.filter("recent")
            .group_by("target")
            .agg(old=(pl.col("build_time") < cutoff).any())
            .filter("old")["target"]
        )
        stale = old.len()
        newest = newest.filter(~pl.col("target").is_in(old.implode()))
    judged = _judged(newest.lazy(), limits).collect()
    found = judged.filter("regressed").sort(
        ["added_ms", "target"], descending=[True, False], maintain_order=True
    )
    return TargetRegressionReport(
        thresholds=limits,
        pattern=target,
        builds=sessions.height,
        targets=len(names),
        checked=judged.height,
        stale=stale,
        regressions=_with_runs(found, newest.filter("recent")),
        flagged_builds=tuple(
            _flagged(sessions, runs, limits, flagged)
            for flagged in build_regressions(sessions, threshold=analyzer.regression_threshold)
        ),
        regression_threshold=analyzer.regression_threshold,
    )


def _executed_runs(sessions: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The executed target runs in the order of their builds, each with its build's position
    in the window (``build``) and start."""
    builds = (
        sessions.select("session_id", build_time="start_time")
        .with_row_index("build")
        # A session id stored twice: its target rows are read once, as the first build's.
        .unique("session_id", keep="first", maintain_order=True)
    )
    return (
        rows.filter(pl.col("status").is_in(_EXECUTED))
        .select("session_id", "target", "duration_ms")
        .join(builds, on="session_id", how="inner", maintain_order="left")
    )


def _judged(runs: pl.LazyFrame, limits: Thresholds) -> pl.LazyFrame:
    """Per target of ``runs`` (target, duration_ms, and whether each is ``recent`` or in
    the ``baseline``) that has a recent run and enough baseline runs to judge: its medians,
    MAD, ratio, milliseconds added and whether it ``regressed``."""
    duration = pl.col("duration_ms").cast(pl.Float64)
    before = duration.filter(pl.col("baseline"))
    median = pl.col("median_ms")
    usual = pl.col("baseline_median_ms")
    return (
        runs.group_by("target")
        .agg(
            median_ms=duration.filter(pl.col("recent")).median(),
            baseline_median_ms=before.median(),
            baseline_mad_ms=(before - before.median()).abs().median(),
            baseline_runs=pl.col("baseline").sum().cast(pl.Int64),
        )
        .filter(
            median.is_not_null(),
            pl.col("baseline_runs") >= limits.min_samples,
            usual > 0,
        )
        .with_columns(ratio=median / usual, added_ms=median - usual)
        .with_columns(
            regressed=(pl.col("ratio") >= limits.ratio)
            & (pl.col("added_ms") >= limits.min_ms)
            & (median > usual + limits.mads * MAD_SCALE * pl.col("baseline_mad_ms"))
        )
    )


def _with_runs(found: pl.DataFrame, recent: pl.DataFrame) -> tuple[TargetRegression, ...]:
    """The regressed targets of ``found``, in its order, each with its ``recent`` runs."""
    if found.is_empty():
        return ()
    evidence: dict[str, list[Run]] = {}
    kept = recent.filter(pl.col("target").is_in(found["target"].implode()))
    for session_id, name, duration_ms, started in kept.select(
        "session_id", "target", "duration_ms", "build_time"
    ).iter_rows():
        evidence.setdefault(name, []).append(Run(session_id, started, duration_ms))
    return tuple(
        TargetRegression(
            target=r["target"],
            ratio=r["ratio"],
            added_ms=r["added_ms"],
            median_ms=r["median_ms"],
            baseline_median_ms=r["baseline_median_ms"],
            baseline_mad_ms=r["baseline_mad_ms"],
            baseline_runs=r["baseline_runs"],
            runs=tuple(evidence[r["target"]]),
        )
        for r in found.iter_rows(named=True)
    )


def _flagged(
    sessions: pl.DataFrame, runs: pl.DataFrame, limits: Thresholds, flagged: Regression
) -> FlaggedBuild:
    """A build the summary flags: its executed targets and hit rate against the medians of
    the earlier builds that reported targets, and each of its targets' runs in it against up
    to ``limits.baseline`` executed runs of that target before it."""
    ordered = sessions.with_row_index("build")
    [build] = (
        ordered.filter(
            pl.col("session_id") == flagged.session_id,
            pl.col("start_time") == flagged.start_time,
        )
        .head(1)
        .iter_rows(named=True)
    )
    at = build["build"]
    earlier = ordered.filter(pl.col("build") < at, pl.col("total_targets") > 0).select(
        executed=(pl.col("built") + pl.col("failed")).median(),
        executed_ms=pl.col("executed_ms").median(),
        hit_rate=pl.col("cache_hit_rate").median(),
    )
    usual = earlier.row(0, named=True)
    position = (pl.len() - 1 - pl.int_range(pl.len())).over("target")
    before = (
        runs.filter(pl.col("build") < at)
        .filter(position < limits.baseline)
        .with_columns(recent=pl.lit(False), baseline=pl.lit(True))
    )
    this = runs.filter(pl.col("build") == at).with_columns(
        recent=pl.lit(True), baseline=pl.lit(False)
    )
    judged = (
        _judged(pl.concat([this, before]).lazy(), limits)
        .filter(pl.col("target").is_in(this["target"].implode()))
        .collect()
    )
    slower = judged.filter("regressed").sort(
        ["added_ms", "target"], descending=[True, False], maintain_order=True
    )
    executed = int(build["built"] + build["failed"])
    return FlaggedBuild(
        session_id=flagged.session_id,
        start_time=flagged.start_time,
        ratio=flagged.ratio,
        expected_ms=flagged.expected_ms,
        actual_ms=flagged.actual_ms,
        executed=executed,
        usual_executed=usual["executed"],
        executed_ms=int(build["executed_ms"]),
        usual_executed_ms=usual["executed_ms"],
        cache_hit_rate=build["cache_hit_rate"],
        usual_cache_hit_rate=usual["hit_rate"],
        judged_targets=judged.height,
        slower_targets=_with_runs(slower, this),
    )


# -- rendering ----------------------------------------------------------------------------------


def render_text(report: TargetRegressionReport) -> str:
    """The report for people and ``grep``: one line per regressed target, most milliseconds
    added first, its runs indented below it; then the builds the summary flags, explained.
    Ends in a newline."""
    limits = report.thresholds
    within = "" if limits.within is None else f" within {_age(limits.within)} of the newest build"
    how = (
        f"newest {limits.recent} executed runs{within} against up to {limits.baseline} before them"
    )
    matching = "" if report.pattern is None else f" matching {printable(report.pattern)}"
    if report.targets == 0:
        lines = [f"No target regressed: no target{matching} was executed in these builds."]
    elif report.checked == 0 and limits.within is not None:
        lines = [
            f"No target regressed: no target{matching} has its newest {limits.recent} executed "
            f"runs{within} and the {limits.min_samples} runs before them that a baseline needs."
        ]
    elif report.checked == 0:
        lines = [
            f"No target regressed: no target{matching} has the {limits.min_samples} executed "
            f"runs before its newest {limits.recent} that a baseline needs."
        ]
    elif not report.regressions:
        lines = [f"No target regressed ({_checked(report)}, {how})."]
    else:
        count = len(report.regressions)
        noun = "target" if count == 1 else "targets"
        lines = [f"{count} {noun} regressed ({_checked(report)}, {how}):"]
        for rank, found in enumerate(report.regressions, start=1):
            lines.append(f"  {rank}. {_regression(found)}")
            lines += [f"       {_run(run)}" for run in found.runs]
    if report.flagged_builds:
        lines += [
            "",
            f"Builds the summary flags as regressions "
            f"({report.regression_threshold:g}x the average or slower):",
        ]
        for build in report.flagged_builds:
            lines += _flagged_lines(build)
    return "\n".join(lines) + "\n"


def _checked(report: TargetRegressionReport) -> str:
    targets = "1 target" if report.checked == 1 else f"{report.checked} targets"
    if report.stale and report.thresholds.within is not None:
        return (
            f"{targets} checked, {report.stale} left out as not run within "
            f"{_age(report.thresholds.within)}"
        )
    return f"{targets} checked"


def _age(within: timedelta) -> str:
    """An age as ``--within`` takes it (7d, 36h, 90m); seconds when the library was given
    a part of a minute."""
    seconds = within.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _regression(found: TargetRegression) -> str:
    runs = "1 run" if found.baseline_runs == 1 else f"{found.baseline_runs} runs"
    return (
        f"{printable(found.target)}: {found.ratio:.2f}x slower, +{_ms(found.added_ms)} ms: "
        f"median {_ms(found.median_ms)} ms, before {_ms(found.baseline_median_ms)} ms "
        f"(MAD {_ms(found.baseline_mad_ms)} ms over {runs})"
    )


def _run(run: Run) -> str:
    return (
        f"{run.start_time.strftime(TIME_FORMAT)} {printable(run.session_id)}: {run.duration_ms} ms"
    )


def _flagged_lines(build: FlaggedBuild) -> list[str]:
    from telemetry.exporter import format_duration

    lines = [
        f"  • {build.start_time.strftime(TIME_FORMAT)} {printable(build.session_id)}: "
        f"{build.ratio:.1f}x slower than average (expected "
        f"{format_duration(build.expected_ms)}, got {format_duration(build.actual_ms)})",
        f"    {_plural(build.executed, 'target')} executed for "
        f"{format_duration(build.executed_ms)} (usually "
        f"{_maybe(build.usual_executed, '{:g}')} for "
        f"{_maybe(build.usual_executed_ms, format_duration)}), cache hit rate "
        f"{_maybe(build.cache_hit_rate, '{:.1f}%')} (usually "
        f"{_maybe(build.usual_cache_hit_rate, '{:.1f}%')})",
    ]
    slower = build.slower_targets
    judged = (
        f"{build.judged_targets} of its {_plural(build.executed, 'executed target')} "
        f"had enough earlier runs to judge"
    )
    if slower:
        lines.append(f"    {judged}; {len(slower)} ran slower:")
        lines += [f"      {_regression(found)}" for found in slower]
    else:
        lines.append(f"    {judged}; none ran slower")
    lines.append(f"    {_verdict(build)}")
    return lines


def _verdict(build: FlaggedBuild) -> str:
    """The :attr:`FlaggedBuild.verdict` in words, with the part of the rule that decided."""
    from telemetry.exporter import format_duration

    more = build.usual_executed is not None and build.executed > build.usual_executed
    lost = format_duration(build.slowdown_ms)
    extra = build.extra_executed_ms
    verdict = build.verdict
    if verdict == "slower-targets":
        if more:
            return "Not by cache misses alone: more targets ran, and some ran slower."
        return "Not explained by cache misses: its targets ran slower."
    if verdict == "cache-misses":
        return (
            f"Explained by cache misses: its hit rate fell, its judged targets ran as usual, "
            f"and its extra {format_duration(extra or 0)} of executed time is most of the "
            f"{lost} it lost."
        )
    if verdict == "cannot-tell" and (
        build.cache_hit_rate is None or build.usual_cache_hit_rate is None
    ):
        return (
            "Cannot tell: no cache hit rate to compare (no targets reported, in it or before it)."
        )
    if verdict == "cannot-tell":
        return (
            "Cannot tell whether cache misses explain it: too few of its targets have a "
            "history to tell."
        )
    # not-cache-misses
    if (build.cache_hit_rate or 0) > (build.usual_cache_hit_rate or 0) - HIT_RATE_DROP:
        return (
            f"Not explained by cache misses: its hit rate is not {HIT_RATE_DROP:g} points or "
            "more below the usual."
        )
    if extra is None or extra <= 0:
        took = "no more executed time than usual"
    else:
        took = f"only {format_duration(extra)} more executed time than usual"
    return (
        f"Not explained by cache misses: its targets took {took}, not most of the {lost} it lost."
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _maybe(value: float | None, shown: str | Callable[[float], str]) -> str:
    if value is None:
        return "n/a"
    return shown.format(value) if isinstance(shown, str) else shown(value)


def _ms(value: float) -> str:
    """Milliseconds as exactly as a median of whole ones needs (400, 402.5, 2.25)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def to_json(report: TargetRegressionReport) -> str:
    """The report's numbers, unrounded, as a JSON object."""
    limits = report.thresholds
    return (
        json.dumps(
            {
                "thresholds": {
                    "recent": limits.recent,
                    "baseline": limits.baseline,
                    "minSamples": limits.min_samples,
                    "ratio": limits.ratio,
                    "minMs": limits.min_ms,
                    "mads": limits.mads,
                    "withinMs": None
                    if limits.within is None
                    else limits.within // timedelta(milliseconds=1),
                },
                "targetPattern": report.pattern,
                "builds": report.builds,
                "targets": report.targets,
                "targetsChecked": report.checked,
                "targetsLeftOut": report.stale,
                "regressions": [_regression_json(r) for r in report.regressions],
                "regressionThreshold": report.regression_threshold,
                "flaggedBuilds": [
                    {
                        "sessionId": b.session_id,
                        "startTime": b.start_time.strftime(TIME_FORMAT),
                        "ratio": b.ratio,
                        "expectedMs": b.expected_ms,
                        "actualMs": b.actual_ms,
                        "executed": b.executed,
                        "usualExecuted": b.usual_executed,
                        "executedMs": b.executed_ms,
                        "usualExecutedMs": b.usual_executed_ms,
                        "cacheHitRate": b.cache_hit_rate,
                        "usualCacheHitRate": b.usual_cache_hit_rate,
                        "judgedTargets": b.judged_targets,
                        "slowerTargets": [_regression_json(r) for r in b.slower_targets],
                        "verdict": b.verdict,
                        "explainedByCacheMisses": b.explained_by_cache_misses,
                    }
                    for b in report.flagged_builds
                ],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


def _regression_json(found: TargetRegression) -> dict[str, object]:
    return {
        "target": found.target,
        "ratio": found.ratio,
        "addedMs": found.added_ms,
        "medianMs": found.median_ms,
        "baselineMedianMs": found.baseline_median_ms,
        "baselineMadMs": found.baseline_mad_ms,
        "baselineRuns": found.baseline_runs,
        "runs": [
            {
                "sessionId": run.session_id,
                "startTime": run.start_time.strftime(TIME_FORMAT),
                "durationMs": run.duration_ms,
            }
            for run in found.runs
        ],
    }


__all__ = [
    "HIT_RATE_DROP",
    "MAD_SCALE",
    "FlaggedBuild",
    "Run",
    "TargetRegression",
    "TargetRegressionReport",
    "ThresholdError",
    "Thresholds",
    "Verdict",
    "age",
    "number",
    "render_text",
    "target_regressions",
    "to_json",
]
