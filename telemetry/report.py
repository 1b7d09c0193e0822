"""The HTML report: one self-contained file of charts over a window of builds, for
``builder telemetry report``.

What it shows, every number from one reading of the store (:meth:`TelemetryAnalyzer.targets`:
the window's builds and every target row of theirs, from one snapshot), over the builds the
store holds (the daily rollups keep no build's own times):

- the build time of every build over time, with SPEC §3's regression rule applied to each
  build (its duration against the mean of the builds before it) and the change points of
  :mod:`telemetry.changes` (when its optional extra is installed; the report says how to
  install it otherwise, and is drawn all the same);
- each build's cache hit rate over time, and the share of builds that succeeded per UTC day;
- the top bottlenecks by the mean duration of their executed runs and by their mean weighted
  time (:mod:`telemetry.weighted`);
- the time the cache saved (:mod:`telemetry.cache`), in all and by target;
- the newest build's timeline: its targets per worker, coloured by status.

The charts are Vega-Lite specifications made with altair, drawn in the browser by Vega; its
scripts are inlined (``vl-convert-python`` gives them, offline), so the file opens with no
network: about 0.9 MB of scripts and the data. The specifications are plain JSON in
``<script type="application/json">`` elements, with ``<``, ``>``, ``&`` and the line and
paragraph separators written as JSON escapes, so no text from a build (a target named
``</script>``) can end the element or start markup; what the page shows as HTML is escaped.
A Content-Security-Policy lets only the page's own two scripts run (by their hashes) and
no request leave the page.

altair and vl-convert-python are the optional ``report`` extra: without them
:class:`ReportMissing` says how to install it.

>>> analyzer = TelemetryAnalyzer(TelemetryStorage(".builder-cache/telemetry"))  # doctest: +SKIP
>>> write_report(render_html(report_data(analyzer)), Path("report.html"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from telemetry.analyzer import TelemetryAnalyzer, regressions
from telemetry.cache import CacheReport, cache_value, format_span
from telemetry.changes import ChangepointsMissing, ChangeReport, change_points
from telemetry.errors import TelemetryError
from telemetry.events import EXECUTED
from telemetry.exporter import format_duration, format_time
from telemetry.files import atomic_output
from telemetry.model import Bottleneck, Regression, WeightedBottleneck
from telemetry.text import printable
from telemetry.weighted import weighted_bottlenecks

if TYPE_CHECKING:
    import altair as alt

INSTALL: Final = "pip install 'builder-telemetry[report]'"
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
Progress = Callable[[int, int | None], None]

_EXECUTED: Final = sorted(EXECUTED)
_WIDTH: Final = 720
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The colours of a build's outcome and of a target's status (Vega's Tableau 10).
_OUTCOMES: Final = {"succeeded": "#4c78a8", "failed": "#e45756", "interrupted": "#f58518"}
_STATUSES: Final = {
    "built": "#4c78a8",
    "cached": "#54a24b",
    "failed": "#e45756",
    "skipped": "#bab0ac",
}
# What JSON inside an HTML <script> element must not hold raw (JSON escapes of the same
# characters): "</script" or "<!--" would end or change the element, "&" an entity in
# some readers, U+2028/2029 a line break to older JavaScript parsers.
_JSON_IN_HTML: Final = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


class ReportMissing(TelemetryError):
    """The report's libraries, an optional extra, are not installed."""


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


def require() -> None:
    """Check that the report's libraries are installed; :class:`ReportMissing` says how to
    install them when they are not."""
    _libraries()


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


# -- the page -----------------------------------------------------------------------------------


def render_html(data: ReportData, *, progress: Progress | None = None) -> str:
    """The report as one HTML page that needs nothing but itself.

    >>> render_html(report_data(analyzer)).startswith("<!DOCTYPE html>")  # doctest: +SKIP
    True
    """
    step = _stepper(progress)
    step(4)
    alt, _ = _libraries()
    charts = _charts(alt, data)
    sections = "\n".join(_section(title, note, name, spec) for title, note, name, spec in charts)
    specs = "\n".join(
        f'<script type="application/json" data-chart="{name}">{_json_in_html(spec)}</script>'
        for _, _, name, spec in charts
        if spec is not None
    )
    step(5)
    bundle = _scripts()
    policy = (
        "default-src 'none'; "
        # Vega compiles its expressions to functions: 'unsafe-eval' is for that alone.
        f"script-src {_hash(bundle)} {_hash(_LOADER)} 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:"
    )
    page = _PAGE.format(
        policy=html.escape(policy),
        style=_STYLE,
        bundle=bundle,
        scope=scope(data),
        figures=_figures_list(data),
        figures_json=_json_in_html(figures(data)),
        sections=sections,
        specs=specs,
        loader=_LOADER,
    )
    step(len(STEPS))
    return page


def html_report(
    analyzer: TelemetryAnalyzer, *, top: int = DEFAULT_TOP, progress: Progress | None = None
) -> str:
    """:func:`render_html` of :func:`report_data`."""
    return render_html(report_data(analyzer, top=top, progress=progress), progress=progress)


def write_report(text: str, path: Path) -> None:
    """Write the page to ``path`` whole or not at all: a temporary file beside it, renamed
    over it once written (an open report is never seen half-written)."""
    with atomic_output(path) as handle:
        handle.write(text.encode("utf-8"))


def figures(data: ReportData) -> dict[str, object]:
    """The report's headline numbers, unrounded, with camelCase keys as the JSON reports
    have them (also in the page, as JSON, for scripts)."""
    cache, changes = data.cache, data.changes.report
    first, last = data.started
    return {
        "builds": data.total,
        "firstStart": None if first is None else format_time(first),
        "lastStart": None if last is None else format_time(last),
        "successful": data.successful,
        "failed": data.total - data.successful,
        "successRate": data.success_rate,
        "averageBuildMs": data.average_build_ms,
        "fastestBuildMs": data.fastest_build_ms,
        "slowestBuildMs": data.slowest_build_ms,
        "averageCacheHitRate": data.average_cache_hit_rate,
        "buildsWithTargets": data.builds_with_targets,
        "regressionThreshold": data.regression_threshold,
        "regressedBuilds": int(data.builds["regressed"].sum()),
        "regressions": [
            {
                "sessionId": printable(r.session_id),
                "startTime": format_time(r.start_time),
                "ratio": r.ratio,
                "expectedMs": r.expected_ms,
                "actualMs": r.actual_ms,
            }
            for r in data.regressions
        ],
        "cacheSavedMs": cache.saved_ms,
        "cacheSavedShare": cache.saved_share,
        "cacheHitRateOverRuns": cache.hit_rate,
        "unvaluedHits": cache.unvalued,
        "changePoints": None if changes is None else len(changes.changes),
        "changePointsUnavailable": data.changes.unavailable,
        "newestBuild": None if data.newest is None else printable(data.newest["session_id"]),
    }


def _charts(alt: Any, data: ReportData) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """Each section of the page: its title, a note in HTML, the chart's element id and its
    Vega-Lite specification with its data (None: nothing to draw, the note says why)."""
    threshold = f"{data.regression_threshold:g}"
    sections: list[tuple[str, str, str, dict[str, Any] | None]] = [
        (
            "Build time",
            "Each point is a build (hover over one for its session, commit and branch). "
            f"A red triangle marks a build that took at least {threshold}x the mean of the "
            "builds before it; a dashed line, a change point: the first build after the build "
            f"time changed. {_changes_note(data.changes)}",
            "chart-build-time",
            _build_time_chart(alt, data),
        )
    ]
    known = data.builds.filter(pl.col("cache_hit_rate").is_not_null()).height
    sections.append(
        (
            "Cache hit rate",
            "Each build's hit rate: cached / (built + cached + failed) of its targets."
            if known
            else "No build reported targets: there is no hit rate to show.",
            "chart-hit-rate",
            _hit_rate_chart(alt, data) if known else None,
        )
    )
    sections.append(
        (
            "Success rate",
            f"The share of each UTC day's builds that succeeded (an interrupted build did not): "
            f"{data.successful} of {_plural(data.total, 'build')} in all.",
            "chart-success",
            _success_chart(alt, data),
        )
    )
    none_ran = "No target was executed in these builds."
    sections.append(
        (
            "Top bottlenecks by mean duration",
            "The targets whose executed runs (built or failed) took longest on average."
            if data.bottlenecks
            else none_ran,
            "chart-bottlenecks",
            _bars(alt, _bottleneck_rows(data.bottlenecks), "meanMs", "Mean duration (s)")
            if data.bottlenecks
            else None,
        )
    )
    sections.append(
        (
            "Top bottlenecks by mean weighted time",
            "Each run's time shared among the targets running beside it: the targets that "
            "held the builds up."
            if data.weighted
            else none_ran,
            "chart-weighted",
            _bars(alt, _weighted_rows(data.weighted), "meanWeightedMs", "Mean weighted time (s)")
            if data.weighted
            else None,
        )
    )
    saved = [t for t in data.cache.targets if t.saved_ms]
    sections.append(
        (
            "Cache time saved",
            f"The cache saved {_cache_line(data.cache)}. Each hit is valued at its target's "
            "median executed duration in these builds, less the time the hit took."
            if data.cache.cached
            else "No target was a cache hit in these builds.",
            "chart-cache-saved",
            _bars(alt, _saved_rows(saved[: data.top]), "savedMs", "Time saved (s)")
            if saved
            else None,
        )
    )
    sections.append(_timeline_section(alt, data))
    return sections


def _timeline_section(alt: Any, data: ReportData) -> tuple[str, str, str, dict[str, Any] | None]:
    newest, rows = data.newest, data.timeline
    title = "Newest build's timeline"
    if newest is None:
        return title, "No build.", "chart-timeline", None
    outcome = _outcome(newest)
    about = (
        f"{_html(newest['session_id'])}, started {format_time(newest['start_time'])}, "
        f"{newest['duration_ms']} ms, {outcome}"
        + (f", branch {_html(newest['branch'])}" if newest["branch"] else "")
        + (f", commit {_html(newest['commit'][:12])}" if newest["commit"] else "")
    )
    if rows.is_empty():
        return title, f"{about}: it reported no targets.", "chart-timeline", None
    instant = rows.filter(pl.col("end_ms") <= pl.col("start_ms")).height
    note = f"{about}. Its targets on each worker, coloured by status."
    if instant:
        took = _plural(instant, "target")
        note += f" No bar for the {took} that took no time (cache hits, most often)."
    return title, note, "chart-timeline", _timeline_chart(alt, rows)


# -- the charts ---------------------------------------------------------------------------------


def _build_time_chart(alt: Any, data: ReportData) -> dict[str, Any]:
    points = [
        {
            "sessionId": printable(r["session_id"]),
            "startTime": _epoch_ms(r["start_time"]),
            "started": format_time(r["start_time"]),
            "durationMs": r["duration_ms"],
            "outcome": r["outcome"],
            "cacheHitRate": r["cache_hit_rate"],
            "commit": printable(r["commit"] or ""),
            "branch": printable(r["branch"] or ""),
            "labels": printable(
                ", ".join(f"{k}={v}" for k, v in sorted((r["labels"] or {}).items()))
            ),
            "expectedMs": r["expected_ms"],
            "ratio": r["ratio"],
            "regressed": r["regressed"],
        }
        for r in data.builds.iter_rows(named=True)
    ]
    changes = data.changes.report
    rules = [
        {
            "sessionId": printable(c.session_id),
            "startTime": _epoch_ms(c.start_time),
            "started": format_time(c.start_time),
            "commit": printable(c.commit or ""),
            "branch": printable(c.branch or ""),
            "beforeMedianMs": c.before.median_ms,
            "afterMedianMs": c.after.median_ms,
            "change": c.change,
        }
        for c in (changes.changes if changes is not None else ())
    ]
    x = alt.X("startTime:T", title="Build started (UTC)", scale=alt.Scale(type="utc"))
    seconds = alt.Y("seconds:Q", title="Build time (s)")
    base = alt.Chart(alt.NamedData("builds")).transform_calculate(seconds="datum.durationMs / 1000")
    tooltip = [
        alt.Tooltip("sessionId:N", title="Session"),
        alt.Tooltip("started:N", title="Started (UTC)"),
        alt.Tooltip("durationMs:Q", title="Build time (ms)", format=","),
        alt.Tooltip("outcome:N", title="Outcome"),
        alt.Tooltip("commit:N", title="Commit"),
        alt.Tooltip("branch:N", title="Branch"),
        alt.Tooltip("labels:N", title="Labels"),
        alt.Tooltip("cacheHitRate:Q", title="Cache hit rate (%)", format=".1f"),
        alt.Tooltip("ratio:Q", title="x the mean before", format=".2f"),
    ]
    outcome = alt.Color(
        "outcome:N",
        title="Outcome",
        scale=alt.Scale(domain=list(_OUTCOMES), range=list(_OUTCOMES.values())),
    )
    layers = [
        base.mark_line(color="#c0c0c0", strokeWidth=1).encode(x=x, y=seconds),
        base.mark_circle(size=36, opacity=0.9).encode(
            x=x, y=seconds, color=outcome, tooltip=tooltip
        ),
    ]
    # A layer only when it has marks: Vega warns of the empty extent of an empty one.
    if data.builds["regressed"].any():
        layers.append(
            base.transform_filter("datum.regressed")
            .mark_point(shape="triangle-up", size=160, color="#d62728", strokeWidth=2)
            .encode(x=x, y=seconds, tooltip=tooltip)
        )
    datasets: dict[str, list[dict[str, Any]]] = {"builds": points}
    if rules:
        layers.append(
            alt.Chart(alt.NamedData("changes"))
            .mark_rule(color="#f58518", strokeDash=[6, 4], strokeWidth=2)
            .encode(
                x=x,
                tooltip=[
                    alt.Tooltip("sessionId:N", title="First build after the change"),
                    alt.Tooltip("started:N", title="Started (UTC)"),
                    alt.Tooltip("commit:N", title="Commit"),
                    alt.Tooltip("branch:N", title="Branch"),
                    alt.Tooltip("beforeMedianMs:Q", title="Median before (ms)", format=",.0f"),
                    alt.Tooltip("afterMedianMs:Q", title="Median after (ms)", format=",.0f"),
                    alt.Tooltip("change:Q", title="Change", format="+.0%"),
                ],
            )
        )
        datasets["changes"] = rules
    chart = alt.layer(*layers).properties(width=_WIDTH, height=280)
    return _spec(chart, datasets)


def _hit_rate_chart(alt: Any, data: ReportData) -> dict[str, Any]:
    known = data.builds.filter(pl.col("cache_hit_rate").is_not_null())
    rows = [
        {
            "sessionId": printable(r["session_id"]),
            "startTime": _epoch_ms(r["start_time"]),
            "started": format_time(r["start_time"]),
            "cacheHitRate": r["cache_hit_rate"],
        }
        for r in known.iter_rows(named=True)
    ]
    base = alt.Chart(alt.NamedData("hitRates")).encode(
        x=alt.X("startTime:T", title="Build started (UTC)", scale=alt.Scale(type="utc")),
        y=alt.Y("cacheHitRate:Q", title="Cache hit rate (%)", scale=alt.Scale(domain=[0, 100])),
    )
    chart = alt.layer(
        base.mark_line(color="#54a24b", strokeWidth=1, opacity=0.6),
        base.mark_circle(size=30, color="#54a24b").encode(
            tooltip=[
                alt.Tooltip("sessionId:N", title="Session"),
                alt.Tooltip("started:N", title="Started (UTC)"),
                alt.Tooltip("cacheHitRate:Q", title="Cache hit rate (%)", format=".1f"),
            ]
        ),
    ).properties(width=_WIDTH, height=220)
    return _spec(chart, {"hitRates": rows})


def _success_chart(alt: Any, data: ReportData) -> dict[str, Any]:
    rows = [
        {
            "day": r["day"].isoformat(),
            "dayStart": _epoch_ms(
                datetime(r["day"].year, r["day"].month, r["day"].day, tzinfo=UTC)
            ),
            "builds": r["builds"],
            "succeeded": r["succeeded"],
            "failed": r["builds"] - r["succeeded"],
            "successRate": r["success_rate"],
        }
        for r in data.days.iter_rows(named=True)
    ]
    chart = (
        alt.Chart(alt.NamedData("days"))
        .mark_bar(width={"band": 0.8})
        .encode(
            x=alt.X(
                "dayStart:T",
                title="Day (UTC)",
                timeUnit=alt.TimeUnitParams(unit="yearmonthdate", utc=True),
            ),
            y=alt.Y(
                "successRate:Q", title="Builds that succeeded (%)", scale=alt.Scale(domain=[0, 100])
            ),
            color=alt.condition(
                "datum.successRate < 100", alt.value("#e45756"), alt.value("#4c78a8")
            ),
            tooltip=[
                alt.Tooltip("day:N", title="Day (UTC)"),
                alt.Tooltip("builds:Q", title="Builds"),
                alt.Tooltip("succeeded:Q", title="Succeeded"),
                alt.Tooltip("failed:Q", title="Failed"),
                alt.Tooltip("successRate:Q", title="Success rate (%)", format=".1f"),
            ],
        )
        .properties(width=_WIDTH, height=200)
    )
    return _spec(chart, {"days": rows})


def _bars(alt: Any, rows: list[dict[str, Any]], field: str, title: str) -> dict[str, Any]:
    """Horizontal bars of ``field`` (in ms, drawn in seconds) per target, in the order of
    ``rows`` (ranked already, ties by label)."""
    tooltip = [alt.Tooltip("target:N", title="Target")] + [
        alt.Tooltip(f"{key}:Q", title=_TOOLTIPS[key][0], format=_TOOLTIPS[key][1])
        for key in rows[0]
        if key in _TOOLTIPS
    ]
    chart = (
        alt.Chart(alt.NamedData("targets"))
        .transform_calculate(seconds=f"datum.{field} / 1000")
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("seconds:Q", title=title),
            y=alt.Y("target:N", title=None, sort=None, axis=alt.Axis(labelLimit=380)),
            tooltip=tooltip,
        )
        .properties(width=_WIDTH - 300, height=alt.Step(22))
    )
    return _spec(chart, {"targets": rows})


_TOOLTIPS: Final = {
    "meanMs": ("Mean duration (ms)", ",.0f"),
    "meanWeightedMs": ("Mean weighted time (ms)", ",.0f"),
    "meanDurationMs": ("Mean duration (ms)", ",.0f"),
    "runs": ("Executed runs", ","),
    "savedMs": ("Time saved (ms)", ",.0f"),
    "cachedRuns": ("Cache hits", ","),
    "executedRuns": ("Executed runs", ","),
    "medianMs": ("Median executed (ms)", ",.0f"),
    "hitRate": ("Hit rate (%)", ".1f"),
}


def _bottleneck_rows(found: Sequence[Bottleneck]) -> list[dict[str, Any]]:
    return [{"target": printable(b.target), "meanMs": b.mean_ms, "runs": b.runs} for b in found]


def _weighted_rows(found: Sequence[WeightedBottleneck]) -> list[dict[str, Any]]:
    return [
        {
            "target": printable(b.target),
            "meanWeightedMs": b.mean_weighted_ms,
            "meanDurationMs": b.mean_duration_ms,
            "runs": b.runs,
        }
        for b in found
    ]


def _saved_rows(found: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "target": printable(t.target),
            "savedMs": t.saved_ms,
            "cachedRuns": t.cached,
            "executedRuns": t.executed,
            "medianMs": t.median_ms,
            "hitRate": t.hit_rate,
        }
        for t in found
    ]


def _timeline_chart(alt: Any, rows: pl.DataFrame) -> dict[str, Any]:
    bars = [
        {
            "target": printable(r["target"]),
            "status": r["status"],
            "lane": "no worker" if r["worker"] is None else f"worker {r['worker']}",
            # Workers in their order, those with none last.
            "laneOrder": -1 if r["worker"] is None else r["worker"],
            "startMs": r["start_ms"],
            "endMs": r["end_ms"],
            "durationMs": r["duration_ms"],
            "error": printable(r["error"] or ""),
        }
        for r in rows.iter_rows(named=True)
    ]
    lanes = {b["lane"]: b["laneOrder"] for b in bars}
    order = sorted(lanes, key=lambda lane: (lanes[lane] < 0, lanes[lane]))
    chart = (
        alt.Chart(alt.NamedData("timeline"))
        .transform_calculate(start="datum.startMs / 1000", end="datum.endMs / 1000")
        .mark_bar(stroke="#ffffff", strokeWidth=0.5)
        .encode(
            x=alt.X("start:Q", title="Seconds since the build started"),
            x2="end:Q",
            y=alt.Y("lane:N", title=None, sort=order),
            color=alt.Color(
                "status:N",
                title="Status",
                scale=alt.Scale(domain=list(_STATUSES), range=list(_STATUSES.values())),
            ),
            tooltip=[
                alt.Tooltip("target:N", title="Target"),
                alt.Tooltip("status:N", title="Status"),
                alt.Tooltip("lane:N", title="Worker"),
                alt.Tooltip("startMs:Q", title="Started (ms)", format=","),
                alt.Tooltip("durationMs:Q", title="Duration (ms)", format=","),
                alt.Tooltip("error:N", title="Error"),
            ],
        )
        .properties(width=_WIDTH - 40, height=alt.Step(24))
    )
    return _spec(chart, {"timeline": bars})


def _spec(chart: alt.TopLevelMixin, datasets: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The chart's Vega-Lite specification (validated by altair) with its named datasets
    added after the validation, which would otherwise walk every row."""
    spec: dict[str, Any] = chart.to_dict()
    spec["datasets"] = datasets
    return spec


# -- HTML ---------------------------------------------------------------------------------------


def _libraries() -> tuple[Any, Any]:
    """altair and vl_convert; or, when the extra is missing, :class:`ReportMissing`."""
    try:
        import altair
        import vl_convert
    except ImportError:  # a library, or a dependency of one
        raise ReportMissing(
            "the HTML report needs the report extra (altair and vl-convert-python); "
            f"install it with: {INSTALL}"
        ) from None
    return altair, vl_convert


@functools.cache
def _scripts() -> str:
    """Vega, Vega-Lite and vega-embed in one script (vl-convert bundles them offline), for
    the Vega-Lite version altair writes, or the nearest of the same major version that
    vl-convert has."""
    alt, vlc = _libraries()
    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    wanted = f"{major}.{minor}"
    known = list(vlc.get_vegalite_versions())
    same = sorted((v for v in known if v.split(".")[0] == major), key=_version_key)
    if wanted not in known and not same:
        raise ReportMissing(
            f"vl-convert-python has no Vega-Lite {major} (it has {', '.join(known)}), which "
            f"altair writes; install matching versions with: {INSTALL}"
        )
    chosen = wanted if wanted in known else same[-1]
    bundle: str = vlc.javascript_bundle(vl_version="v" + chosen.replace(".", "_"))
    if "</script" in bundle.lower() or "<!--" in bundle:
        raise ReportMissing(  # it would end its own element: not a bundle to inline
            f"this vl-convert-python's scripts cannot be inlined; install another with: {INSTALL}"
        )
    return bundle


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _json_in_html(value: object) -> str:
    """JSON for a ``<script type="application/json">`` element: nothing in it can end the
    element or be read as markup (see :data:`_JSON_IN_HTML`)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_IN_HTML)


def _hash(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


def _html(text: str) -> str:
    """Text from a build, shown in the page: escaped for a terminal's reader too (the
    controls and bidirectional overrides made visible), then for HTML."""
    return html.escape(printable(text))


def _section(title: str, note: str, name: str, spec: dict[str, Any] | None) -> str:
    chart = f'<div class="chart" id="{name}"></div>' if spec is not None else ""
    return f'<section>\n<h2>{title}</h2>\n<p class="note">{note}</p>\n{chart}\n</section>'


def scope(data: ReportData) -> str:
    """Which builds the report is of, in a sentence: ``200 builds started from ... (UTC).``"""
    first, last = data.started
    if first is None or last is None:
        return "No builds."
    return (
        f"{_plural(data.total, 'build')} started from {format_time(first)} to "
        f"{format_time(last)} (UTC)."
    )


def _figures_list(data: ReportData) -> str:
    rows = [
        ("Builds", f"{data.total}"),
        (
            "Successful",
            f"{data.successful} ({data.success_rate:.1f}%), failed {data.total - data.successful}",
        ),
    ]
    average, fastest, slowest = data.average_build_ms, data.fastest_build_ms, data.slowest_build_ms
    if average is not None and fastest is not None and slowest is not None:
        rows.append(
            (
                "Build time",
                f"{format_duration(average)} on average (fastest {format_duration(fastest)}, "
                f"slowest {format_duration(slowest)})",
            )
        )
    rate, known = data.average_cache_hit_rate, data.builds_with_targets
    hit = (
        "n/a (no build reported targets)"
        if rate is None
        else f"{rate:.1f}% on average"
        + ("" if known == data.total else f" (of the {known} builds with targets)")
    )
    rows.append(("Cache hit rate", hit))
    rows.append(("Cache time saved", _cache_line(data.cache)))
    rows.append(("Regressions", _regressions_line(data)))
    rows.append(("Change points", _changes_note(data.changes)))
    return "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)


def _cache_line(cache: CacheReport) -> str:
    """``38m 17s (44.5% of the target time without the cache)``, and the hits not valued."""
    share = cache.saved_share
    line = format_span(cache.saved_ms) + (
        "" if share is None else f" ({share:.1f}% of the target time without the cache)"
    )
    if cache.unvalued:
        line += f"; {_plural(cache.unvalued, 'cache hit')} of targets never executed, not valued"
    return line


def _regressions_line(data: ReportData) -> str:
    """SPEC §3's regressions as the summary reports them: of the latest builds only."""
    checked = "the 3 latest builds" if data.total >= 10 else "the latest build"
    if not data.regressions:
        return f"none in {checked} (threshold {data.regression_threshold:g}x)"
    return "<br>".join(
        f"{format_time(r.start_time)} {_html(r.session_id)}: {r.ratio:.1f}x slower than "
        f"average (expected {format_duration(r.expected_ms)}, got "
        f"{format_duration(r.actual_ms)})"
        for r in data.regressions
    )


def _changes_note(changes: Changes) -> str:
    report = changes.report
    if report is None:
        return f"Change points are unavailable: {html.escape(changes.unavailable or '')}."
    if not report.looked:
        least = report.settings.least_series
        return f"Change points were not looked for: fewer than {least} builds."
    if not report.changes:
        return "No change point in the build time."
    return f"{_plural(len(report.changes), 'change point')} in the build time."


def _outcome(row: dict[str, Any]) -> str:
    if row["interrupted"]:
        return "interrupted"
    return "succeeded" if row["succeeded"] else "failed"


def _epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds, as the events give them (in whole numbers: no float between)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto; max-width: 920px;
       padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 4px; }
.scope, .note { color: #555; margin: 4px 0 10px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 16px 0; }
dt { font-weight: 600; }
dd { margin: 0; }
.chart { min-height: 40px; }
.failed { color: #b00020; }
"""

# Draws each chart from its JSON element; a chart that fails says so in the page and on the
# console. The <body> gets data-charts-done once every chart settled (for a test to wait on).
_LOADER: Final = """
const options = {renderer: "svg", actions: {export: true, source: false, compiled: false,
                 editor: false}};
const drawn = Array.from(document.querySelectorAll("script[data-chart]"), (element) => {
  const box = document.getElementById(element.dataset.chart);
  return vegaEmbed(box, JSON.parse(element.textContent), options).then(
    () => { box.dataset.rendered = "true"; },
    (error) => {
      box.className += " failed";
      box.textContent = "This chart could not be drawn: " + error;
      console.error(error);
    });
});
Promise.all(drawn).then(() => { document.body.dataset.chartsDone = "true"; });
"""

_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Build telemetry report</title>
<style>{style}</style>
<script>{bundle}</script>
</head>
<body>
<header>
<h1>Build telemetry report</h1>
<p class="scope">{scope}</p>
</header>
<dl>
{figures}
</dl>
{sections}
<script type="application/json" id="figures">{figures_json}</script>
{specs}
<script>{loader}</script>
</body>
</html>
"""


__all__ = [
    "DEFAULT_TOP",
    "INSTALL",
    "STEPS",
    "Changes",
    "ReportData",
    "ReportMissing",
    "figures",
    "html_report",
    "render_html",
    "report_data",
    "require",
    "scope",
    "write_report",
]
