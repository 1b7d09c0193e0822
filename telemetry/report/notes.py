"""The report's words: which builds it is of (:func:`scope`), its headline figures (in the
page's HTML, and as JSON for scripts: :func:`figures`) and the sentences the charts' notes
share with them, the text from builds escaped for the page."""

from __future__ import annotations

import html

from telemetry.cache import CacheReport, format_span
from telemetry.exporter import format_duration, format_time
from telemetry.report.data import Changes, ReportData
from telemetry.text import printable


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


def _html(text: str) -> str:
    """Text from a build, shown in the page: escaped for a terminal's reader too (the
    controls and bidirectional overrides made visible), then for HTML."""
    return html.escape(printable(text))


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


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
