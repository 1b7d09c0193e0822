"""When it started: change points in a history of durations, each named by the first build
after the change.

The series is the window's builds in time order (as the filter takes them), one point per
build, its duration; or, for one target, that target's executed (built or failed) runs in
the order of their builds, one point per run. Cached runs take no time and say nothing about
how long a target takes, so they are left out, as the other analyses leave them out.

The change points are those of PELT (Killick, Fearnhead and Eckley, 2012) as ``ruptures``
implements it, on the logarithms of the durations, with a penalty from the BIC scaled by the
noise of the series:

- each point is ``y = ln(1 + duration in ms)``: durations vary by ratios, so a step is a
  difference of logs and the noise is the same before and after it (the 1 keeps a 0 ms run a
  point);
- the noise ``σ`` is estimated from the differences of neighbouring points, which a step
  moves once while noise moves every one: ``σ = 1.4826 · MAD(Δy) / √2`` (the median absolute
  deviation of the differences from their median, scaled to a standard deviation, of one
  point rather than of a difference of two), at least :data:`NOISE_FLOOR`;
- the points are divided by ``σ``, ``z = (y − median y) / σ``, and a part of the series
  costs ``Σᵢ 1 − (1/len) Σᵢ Σⱼ exp(−(zᵢ − zⱼ)² / (2·REACH²))``, ruptures' ``rbf`` kernel
  cost with ``γ = 1 / (2·REACH²)``. For points within a few ``σ`` of each other this is
  ``Σ (zᵢ − mean z)² / REACH²``, least squares; a point further away (a spike, one slow
  build) weighs at most 1 however far it is, so a few spikes do not pay for a part of
  their own;
- the segmentation kept is the one of least total cost plus a price of ``K · ln n / REACH²``
  for each change point (``K`` the settings' ``penalty``, ``n`` the number of points), each
  part at least ``min_points`` points long: in least-squares terms a price of
  ``K · σ² · ln n``, at ``K = 2`` the BIC's ``ln n`` for each of the two parameters a change
  adds (its place and its new level).

ruptures' ``KernelCPD`` searches for it with PELT, in C (``ruptures.Pelt``, the same search
in Python, re-sums each part's cost at every step and took seconds for 1000 builds). With a
minimum part length, PELT's pruning can, rarely, settle for a segmentation that costs a
hair more than the least; it draws nothing at random: the same history always gives the
same answer. The default ``K = 3`` asks a little more than the BIC: on series of pure noise
it reports a change in fewer than one in a hundred (see docs/changes.md). A series of fewer
than ``2 · min_points`` points, which no change could split, is not looked at.

Each change point is reported with the median and mean of the points from the change point
before it (or the first point) to it, and from it to the next one (or the last point), and
the relative change of the medians: (after − before) / before.

The library is an optional extra (``pip install 'builder-telemetry[changepoints]'``),
imported when a detection runs; without it the person reading the report is told in one
line what is missing and how to install it. It prints nothing; anything it might warn is
dropped.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from telemetry.config import parse_number
from telemetry.errors import ConfigError, TelemetryError
from telemetry.events import EXECUTED, TIME_FORMAT
from telemetry.text import printable

if TYPE_CHECKING:
    from telemetry.analyzer import TelemetryAnalyzer

INSTALL: Final = "pip install 'builder-telemetry[changepoints]'"
DEFAULT_MIN_POINTS: Final = 5
DEFAULT_PENALTY: Final = 3.0
# A part of one point would let a single slow build be a change of its own.
LEAST_POINTS: Final = 2
# The least noise assumed, in natural-log units (about 1 %): a series whose neighbours
# hardly ever differ (durations repeated to the millisecond) still needs a scale.
NOISE_FLOOR: Final = 0.01
# How far from each other, in noise σ, two points still count as least squares do; beyond
# it, their pull levels off (the rbf kernel's bandwidth).
REACH: Final = 2.0
# 1.4826 · MAD estimates a normal distribution's standard deviation.
_MAD_TO_SIGMA: Final = 1.4826
_EXECUTED: Final = sorted(EXECUTED)
_BUILD_COLUMNS: Final = ("session_id", "start_time", "commit", "branch", "labels")


class ChangepointsMissing(TelemetryError):
    """The change-point library, an optional extra, is not installed."""


@dataclass(slots=True, frozen=True)
class Settings:
    """How change points are looked for (see the module's first lines).

    >>> Settings(penalty=4).min_points
    5
    """

    min_points: int = DEFAULT_MIN_POINTS  # on either side of a change
    penalty: float = DEFAULT_PENALTY  # K in K · σ² · ln n

    def __post_init__(self) -> None:
        if self.min_points < LEAST_POINTS:
            raise ConfigError(
                f"--min-points must be a whole number of at least {LEAST_POINTS}, "
                f"got {self.min_points}"
            )
        if not math.isfinite(self.penalty) or self.penalty <= 0:
            raise ConfigError(
                f"--penalty must be a number above 0 (e.g. {DEFAULT_PENALTY:g}), "
                f"got {self.penalty!r}"
            )

    @property
    def least_series(self) -> int:
        """The fewest points a change can split: ``min_points`` on either side."""
        return 2 * self.min_points


def number(text: str, *, option: str) -> float:
    """A number given as text on a command line; :class:`Settings` says which are usable.

    >>> number("4.5", option="--penalty")
    4.5
    """
    return parse_number(text, source=option, example=f"{DEFAULT_PENALTY:g}")


@dataclass(slots=True, frozen=True)
class Segment:
    """The points between two change points (or an end of the series)."""

    points: int
    median_ms: float
    mean_ms: float


@dataclass(slots=True, frozen=True)
class ChangePoint:
    """A change in the series: the first build after it, and the points before and after."""

    index: int  # of the first point after the change, 0 for the series' first
    session_id: str
    start_time: datetime
    commit: str | None
    branch: str | None
    labels: dict[str, str]
    before: Segment
    after: Segment

    @property
    def change(self) -> float | None:
        """(median after − median before) / median before; None when the median before is 0."""
        if self.before.median_ms == 0:
            return None
        return (self.after.median_ms - self.before.median_ms) / self.before.median_ms


@dataclass(slots=True, frozen=True)
class ChangeReport:
    """What ``builder telemetry changes`` shows."""

    settings: Settings
    target: str | None  # None: the builds' own durations
    builds: int  # in the window, as the filter takes them
    points: int  # in the series: builds, or the target's executed runs
    noise: float | None  # σ of the series' logs (0.05: about 5 %); None when not looked at
    changes: tuple[ChangePoint, ...]  # oldest first

    @property
    def looked(self) -> bool:
        """Whether the series had the points to look for a change in."""
        return self.points >= self.settings.least_series


def change_points(
    analyzer: TelemetryAnalyzer, *, target: str | None = None, settings: Settings | None = None
) -> ChangeReport:
    """The change points of the durations of the analyzer's builds, or of the executed runs
    of ``target`` (its exact name) in them, oldest first.

    >>> report = change_points(TelemetryAnalyzer(TelemetryStorage("store")))  # doctest: +SKIP
    >>> [(c.session_id, c.change) for c in report.changes]  # doctest: +SKIP
    [('ci-0412', 1.0)]
    """
    chosen = settings or Settings()
    _library()  # the extra is needed, whatever the history
    if target is None:
        sessions = analyzer.sessions()
        series = sessions.select(*_BUILD_COLUMNS, "duration_ms")
    else:
        sessions, rows = analyzer.targets()
        series = _runs_of(target, sessions, rows)
    noise: float | None = None
    found: list[int] = []
    if series.height >= chosen.least_series:
        logs = [math.log1p(max(ms, 0)) for ms in series["duration_ms"].cast(pl.Float64)]
        noise = noise_of(logs)
        found = _detect(logs, noise, chosen)
    return ChangeReport(
        settings=chosen,
        target=target,
        builds=sessions.height,
        points=series.height,
        noise=noise,
        changes=_described(series, found),
    )


def _runs_of(target: str, sessions: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The executed runs of ``target``, in the order of their builds, each with its build's
    columns (:data:`_BUILD_COLUMNS`) and its own ``duration_ms``."""
    builds = (
        sessions.select(*_BUILD_COLUMNS)
        # A session id stored for two builds: its target rows are read once, as the first's.
        .unique("session_id", keep="first", maintain_order=True)
    )
    return (
        rows.filter(pl.col("target") == target, pl.col("status").is_in(_EXECUTED))
        .select("session_id", "duration_ms")
        .join(builds, on="session_id", how="inner", maintain_order="left")
        .select(*_BUILD_COLUMNS, "duration_ms")
    )


def noise_of(logs: Sequence[float]) -> float:
    """σ of a series of logs from its neighbours' differences, robustly: 1.4826 · the median
    absolute deviation of the differences / √2, at least :data:`NOISE_FLOOR`.

    >>> # Differences ±0.1 and one step of 5.1: median 0.1, MAD 0.2, the step left out.
    >>> round(noise_of([0.0, 0.1, 0.0, 0.1, 0.0, 5.1, 5.0, 5.1]), 6)
    0.209671
    """
    differences = [after - before for before, after in itertools.pairwise(logs)]
    middle = statistics.median(differences)
    deviation = statistics.median(abs(d - middle) for d in differences)
    return max(_MAD_TO_SIGMA * deviation / math.sqrt(2), NOISE_FLOOR)


def _detect(logs: Sequence[float], noise: float, settings: Settings) -> list[int]:
    """The indices of the change points of ``logs`` that PELT finds, ascending: the first
    point of each part after the first."""
    import numpy as np

    middle = statistics.median(logs)
    scaled = np.array([(y - middle) / noise for y in logs], dtype=np.float64).reshape(-1, 1)
    penalty = settings.penalty * math.log(len(logs)) / REACH**2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pelt = _library().KernelCPD(
            kernel="rbf", min_size=settings.min_points, params={"gamma": 1 / (2 * REACH**2)}
        )
        ends = pelt.fit(scaled).predict(pen=penalty)
    # ruptures gives the end of each part, the last one the series' length.
    return [int(end) for end in ends[:-1]]


def _library() -> Any:
    """The ruptures module; or, when the extra is missing, :class:`ChangepointsMissing`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import ruptures  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:  # the library, or a dependency of its
            raise ChangepointsMissing(
                f"change-point detection needs the changepoints extra: {INSTALL}"
            ) from None
    return ruptures


def _described(series: pl.DataFrame, found: list[int]) -> tuple[ChangePoint, ...]:
    """Each change point of ``series`` with the first build after it and the segments on
    either side."""
    if not found:
        return ()
    index = pl.int_range(pl.len())
    part = pl.sum_horizontal(*[(index >= at).cast(pl.Int64) for at in found])
    duration = pl.col("duration_ms").cast(pl.Float64)
    parts = (
        series.group_by(part.alias("part"), maintain_order=True)
        .agg(points=pl.len(), median_ms=duration.median(), mean_ms=duration.mean())
        .sort("part")
    )
    segments = [
        Segment(points=p, median_ms=median, mean_ms=mean)
        for p, median, mean in parts.select("points", "median_ms", "mean_ms").iter_rows()
    ]
    changes = []
    for number, at in enumerate(found):
        first = series.row(at, named=True)
        changes.append(
            ChangePoint(
                index=at,
                session_id=first["session_id"],
                start_time=first["start_time"],
                commit=first["commit"],
                branch=first["branch"],
                labels=dict(first["labels"] or {}),
                before=segments[number],
                after=segments[number + 1],
            )
        )
    return tuple(changes)


# -- rendering ----------------------------------------------------------------------------------


def render_text(report: ChangeReport) -> str:
    """The report for people and ``grep``: what was looked at, then one line per change
    point, oldest first, naming the first build after it. Ends in a newline."""
    from telemetry.exporter import format_duration

    settings = report.settings
    how = f"PELT, penalty {settings.penalty:g}"
    if report.target is None:
        what, noun = "build time", "build"
        subject = f"the build time of {_plural(report.points, 'build')}"
    else:
        what, noun = printable(report.target), "executed run"
        subject = f"the run time of {what} over {_plural(report.points, 'executed run')}"
    if report.target is not None and report.points == 0:
        return (
            f"No change point: {what} was not executed in these "
            f"{_plural(report.builds, 'build')} (cached runs are left out).\n"
        )
    if not report.looked:
        return (
            f"No change point looked for: {_plural(report.points, noun)}, fewer than the "
            f"{settings.least_series} that --min-points {settings.min_points} asks for "
            f"({settings.min_points} on either side of a change).\n"
        )
    if not report.changes:
        return f"No change point in {subject} ({how}).\n"
    count = _plural(len(report.changes), "change point")
    lines = [f"{count} in {subject} (medians between change points; {how}):"]
    for found in report.changes:
        lines.append(
            f"{found.start_time.strftime(TIME_FORMAT)} {printable(found.session_id)}"
            f"{_about(found)}: {what} {format_duration(found.before.median_ms)} -> "
            f"{format_duration(found.after.median_ms)} ({_percent(found.change)})"
        )
    return "\n".join(lines) + "\n"


def _about(found: ChangePoint) -> str:
    """`` (commit 3f2a9c1, branch main, labels ci=true)``: what is known of the build."""
    said = []
    if found.commit:
        said.append(f"commit {printable(found.commit[:7])}")
    if found.branch:
        said.append(f"branch {printable(found.branch)}")
    if found.labels:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(found.labels.items()))
        said.append(f"labels {printable(labels)}")
    return f" ({', '.join(said)})" if said else ""


def _percent(change: float | None) -> str:
    return "from 0" if change is None else f"{change * 100:+.0f}%"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def to_json(report: ChangeReport) -> str:
    """The report's numbers, unrounded, as a JSON object."""
    settings = report.settings
    document = {
        "series": "builds" if report.target is None else "target",
        "target": report.target,
        "builds": report.builds,
        "points": report.points,
        "minPoints": settings.min_points,
        "penalty": settings.penalty,
        "noise": report.noise,
        "lookedForChanges": report.looked,
        "changePoints": [
            {
                "index": c.index,
                "sessionId": c.session_id,
                "startTime": c.start_time.strftime(TIME_FORMAT),
                "commit": c.commit,
                "branch": c.branch,
                "labels": c.labels,
                "before": _segment_json(c.before),
                "after": _segment_json(c.after),
                "change": c.change,
            }
            for c in report.changes
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _segment_json(segment: Segment) -> dict[str, object]:
    return {"points": segment.points, "medianMs": segment.median_ms, "meanMs": segment.mean_ms}


__all__ = [
    "INSTALL",
    "ChangePoint",
    "ChangeReport",
    "ChangepointsMissing",
    "Segment",
    "Settings",
    "change_points",
    "number",
    "render_text",
    "to_json",
]
