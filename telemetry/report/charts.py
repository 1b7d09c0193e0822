"""The report's charts: each section of the page as its title, its note and its chart's
Vega-Lite specification with the chart's data, made with altair (passed in as ``alt``, so
that importing this module loads no altair)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from telemetry.exporter import format_time
from telemetry.model import Bottleneck, WeightedBottleneck
from telemetry.report.data import ReportData
from telemetry.report.notes import _cache_line, _changes_note, _html, _plural
from telemetry.text import printable

if TYPE_CHECKING:
    import altair as alt

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


def _outcome(row: dict[str, Any]) -> str:
    if row["interrupted"]:
        return "interrupted"
    return "succeeded" if row["succeeded"] else "failed"


def _epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds, as the events give them (in whole numbers: no float between)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)
