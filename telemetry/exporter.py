"""The exporter: reports as text for people, JSON for scripts, and sessions as files.

Text keeps the seed document's lines exactly, so ``grep`` in existing scripts keeps working.
Everything here returns strings or writes to a binary stream; nothing prints.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Final, Literal

from telemetry.errors import TelemetryError
from telemetry.events import EXECUTED, TIME_FORMAT
from telemetry.formats import EXPORT_FORMATS, Compression, ExportFormat
from telemetry.model import (
    Bottleneck,
    BuildDetails,
    BuildReport,
    BuildWeights,
    CriticalPath,
    SummaryReport,
    TargetRun,
    WeightedBottleneck,
)
from telemetry.progress import Progress, no_progress
from telemetry.text import json_for_terminal, printable, spreadsheet_text

if TYPE_CHECKING:  # the reports render without polars; only exports take its frames
    from collections.abc import Iterator

    import polars as pl

BINARY_FORMATS: Final = frozenset({"parquet", "arrow"})
# A text export renders its builds this many at a time, telling its progress after each.
_EXPORT_CHUNK: Final = 1_000

# The seed's keys first, in the seed's order; more keys follow.
SESSION_KEYS: Final = (
    "startTime",
    "durationMs",
    "totalTargets",
    "built",
    "cached",
    "failed",
    "cacheHitRate",
    "parallelismUtilization",
    "targetsPerSecond",
    "succeeded",
    "sessionId",
    "endTime",
    "skipped",
    "interrupted",
    "error",
    "parallelism",
    "tool",
    "host",
    "commit",
    "branch",
    "labels",
)
# After them, in JSON only, what a stored session row needs to be rebuilt exactly (``builder
# telemetry merge`` reads JSON exports): the times to the millisecond (the text keys are to
# the second), and the two facts the utilization is computed from. The CSV keeps the keys
# above, so a spreadsheet's columns do not move.
EXACT_KEYS: Final = ("startTimeMs", "endTimeMs", "executedMs", "peakConcurrency")
JSON_SESSION_KEYS: Final = (*SESSION_KEYS, *EXACT_KEYS)
_RATES: Final = frozenset({"cacheHitRate", "parallelismUtilization", "targetsPerSecond"})
_COLUMNS: Final = {
    "startTime": "start_time",
    "durationMs": "duration_ms",
    "totalTargets": "total_targets",
    "built": "built",
    "cached": "cached",
    "failed": "failed",
    "cacheHitRate": "cache_hit_rate",
    "parallelismUtilization": "parallelism_utilization",
    "targetsPerSecond": "targets_per_second",
    "succeeded": "succeeded",
    "sessionId": "session_id",
    "endTime": "end_time",
    "skipped": "skipped",
    "interrupted": "interrupted",
    "error": "error",
    "parallelism": "parallelism",
    "tool": "tool",
    "host": "host",
    "commit": "commit",
    "branch": "branch",
    "labels": "labels",
    "executedMs": "executed_ms",
    "peakConcurrency": "peak_concurrency",
}

_MILLISECOND: Final = timedelta(milliseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The Prometheus export's gauge families: name, session column, divisor, help. Prometheus
# names carry base units, so durations are seconds and the percentages ratios from 0 to 1.
_GAUGES: Final = (
    (
        "builder_build_duration_seconds",
        "duration_ms",
        1000,
        "Wall-clock time of the build, from build_started to build_finished.",
    ),
    ("builder_build_targets", "targets", 1, "The build's targets, by status."),
    (
        "builder_build_cache_hit_ratio",
        "cache_hit_rate",
        100,
        "Cache hits over the targets built, cached or failed (0 to 1).",
    ),
    (
        "builder_build_parallelism_utilization_ratio",
        "parallelism_utilization",
        100,
        "Time the executed targets ran over the build's duration times its workers (0 to 1).",
    ),
    (
        "builder_build_targets_per_second",
        "targets_per_second",
        1,
        "Targets finished per second of the build.",
    ),
    (
        "builder_build_succeeded",
        "succeeded",
        1,
        "1 when the build succeeded, 0 when it failed or was interrupted.",
    ),
)
_TARGET_STATUSES: Final = ("built", "cached", "failed", "skipped")
_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


# -- small formats ----------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """UTC, to the second: ``2025-10-27T14:23:15``."""
    return moment.strftime(TIME_FORMAT)


def format_duration(ms: float) -> str:
    """Seconds with one decimal from 100 ms up (``2.3s``), whole milliseconds below (``45ms``)."""
    return f"{ms / 1000:.1f}s" if ms >= 100 else f"{ms:.0f}ms"


def _rate(value: float | None, shown: str, after: str = "") -> str:
    """A rate formatted by ``shown`` and followed by ``after``, or ``n/a`` when it is
    unknown: a build that reported no targets has no rates."""
    return "n/a" if value is None else shown.format(value) + after


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


# -- summary ----------------------------------------------------------------------------------


def render_summary(report: SummaryReport, *, color: bool = False) -> str:
    """The seed's summary text, ending in a newline."""
    # The rates are means over the builds that reported targets; the count follows the seed's
    # text only when that is not every build, so a ``grep`` for the seed's line still matches.
    over = (
        f" (over {report.builds_with_targets} of {report.total_builds} builds)"
        if 0 < report.builds_with_targets < report.total_builds
        else ""
    )
    lines = [
        _paint("=== Build Telemetry Summary ===", _BOLD, color),
        "",
        f"Total Builds: {report.total_builds}",
        f"Successful: {report.successful} ({report.success_rate:.1f}%)",
        f"Failed: {report.failed}",
        "",
        "Performance Metrics:",
        f"  Average Build Time: {report.average_build_ms:.0f} ms",
        f"  Fastest Build: {report.fastest_build_ms} ms",
        f"  Slowest Build: {report.slowest_build_ms} ms",
        "",
        "Cache Efficiency:",
        f"  Average Hit Rate: {_rate(report.average_cache_hit_rate, '{:.1f}%', over)}",
        f"  Trend: {report.cache_trend}{_sparkline(report.cache_hit_rate_series)}",
        "",
        "Parallelism:",
        f"  Average Utilization: {_rate(report.average_utilization, '{:.1f}%', over)}",
        f"  Targets/Second: {_rate(report.average_targets_per_second, '{:.2f}', over)}",
        "",
    ]
    weighted = report.weighted_bottlenecks
    if weighted is not None:
        lines.append("Top Bottlenecks (by weighted time):")
        lines += [
            f"  {rank}. {printable(b.target)} (avg: {format_duration(b.mean_weighted_ms)} "
            f"weighted, {format_duration(b.mean_duration_ms)} elapsed)"
            for rank, b in enumerate(weighted, start=1)
        ]
    else:
        lines.append("Top Bottlenecks:")
        lines += [
            f"  {rank}. {printable(b.target)} (avg: {format_duration(b.mean_ms)})"
            for rank, b in enumerate(report.bottlenecks, start=1)
        ]
    if not (report.bottlenecks if weighted is None else weighted):
        lines.append("  (none)")
    lines += [
        "",
        f"Build Time Trend: {report.build_time_trend}{_sparkline(report.build_time_series)}",
    ]
    rolled = report.from_rollups
    if rolled is not None:
        # Said after the seed's lines, so a script that reads them reads them all the same.
        span = (
            rolled.first.isoformat()
            if rolled.first == rolled.last
            else f"{rolled.first.isoformat()} to {rolled.last.isoformat()}"
        )
        over = (
            "the trends and regressions are"
            if weighted is None
            else "the bottlenecks, trends and regressions are"
        )
        lines.append(
            f"(From daily rollups: {rolled.builds} builds of {rolled.days} "
            f"day{'' if rolled.days == 1 else 's'} past retention, {span}; {over} over the "
            f"builds still stored)"
        )
    if report.regressions:
        lines += ["", _paint("⚠️  Performance Regressions Detected:", _YELLOW, color)]
        lines += [
            f"  • {format_time(r.start_time)}: {r.ratio:.1f}x slower than average "
            f"(expected {format_duration(r.expected_ms)}, got {format_duration(r.actual_ms)})"
            for r in report.regressions
        ]
    return "\n".join(lines) + "\n"


# Eight heights, lowest first: a sparkline's bars (U+2581 to U+2588).
SPARKS: Final = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


def sparkline(values: Sequence[float]) -> str:
    """``values`` as a row of bars, the lowest value the lowest bar and the highest the
    highest, the others in proportion between (at the nearest of the eight heights, a half
    rounded up); a row of middle bars when all are equal. Values that are not finite numbers
    are left out.

    >>> sparkline([0.0, 7.0, 3.5, 1.0])
    '▁█▅▂'
    """
    finite = [v for v in values if math.isfinite(v)]
    low, high = min(finite, default=0.0), max(finite, default=0.0)
    if high == low:
        return SPARKS[3] * len(finite)
    top = len(SPARKS) - 1
    return "".join(SPARKS[int((v - low) / (high - low) * top + 0.5)] for v in finite)


def _sparkline(values: Sequence[float]) -> str:
    """A trend's sparkline after its word, when the report has two points or more
    (a terminal's summary asks for them; piped text has none)."""
    return "  " + sparkline(values) if len(values) >= 2 else ""


def summary_json(report: SummaryReport) -> str:
    """The summary's numbers, unrounded, as a JSON object; a rate no build reported is
    ``null``."""
    return _dumps(
        {
            "totalBuilds": report.total_builds,
            "successful": report.successful,
            "failed": report.failed,
            "successRate": report.success_rate,
            "averageBuildTimeMs": report.average_build_ms,
            "fastestBuildMs": report.fastest_build_ms,
            "slowestBuildMs": report.slowest_build_ms,
            "averageCacheHitRate": report.average_cache_hit_rate,
            "cacheHitRateTrend": report.cache_trend,
            "averageParallelismUtilization": report.average_utilization,
            "averageTargetsPerSecond": report.average_targets_per_second,
            "buildsWithTargets": report.builds_with_targets,
            **_bottlenecks_json(report),
            "buildTimeTrend": report.build_time_trend,
            "regressionThreshold": report.regression_threshold,
            "regressions": [
                {
                    "sessionId": r.session_id,
                    "startTime": format_time(r.start_time),
                    "ratio": r.ratio,
                    "expectedMs": r.expected_ms,
                    "actualMs": r.actual_ms,
                }
                for r in report.regressions
            ],
        }
        | _rolled_json(report)
    )


def _bottlenecks_json(report: SummaryReport) -> dict[str, object]:
    """The ``bottlenecks``, ranked by mean duration; or by mean weighted time, then said so
    in ``bottlenecksBy`` before them."""
    if report.weighted_bottlenecks is None:
        return {"bottlenecks": [_bottleneck(b) for b in report.bottlenecks]}
    return {
        "bottlenecksBy": "weighted",
        "bottlenecks": [_weighted_bottleneck(b) for b in report.weighted_bottlenecks],
    }


def _rolled_json(report: SummaryReport) -> dict[str, object]:
    """The ``fromRollups`` key, only in a summary that read days from the daily rollups."""
    rolled = report.from_rollups
    if rolled is None:
        return {}
    return {
        "fromRollups": {
            "days": rolled.days,
            "builds": rolled.builds,
            "first": rolled.first.isoformat(),
            "last": rolled.last.isoformat(),
        }
    }


# -- recent -----------------------------------------------------------------------------------


def render_recent(builds: Sequence[BuildReport], *, color: bool = False) -> str:
    """The seed's recent-builds text, newest first, ending in a newline."""
    noun = "Build" if len(builds) == 1 else "Builds"
    lines = [_paint(f"Recent {len(builds)} {noun}:", _BOLD, color)]
    for rank, build in enumerate(builds, start=1):
        mark = _paint("✓", _GREEN, color) if build.succeeded else _paint("✗", _RED, color)
        lines += [
            "",
            f"{rank}. [{mark}] {format_time(build.start_time)} - {build.duration_ms}ms "
            f"(cache: {_rate(build.cache_hit_rate, '{:.1f}%')})",
        ]
        if not build.succeeded:
            lines.append(f"   Error: {printable(_one_line(_build_error(build)))}")
        if build.bottlenecks:
            lines.append("   Top bottlenecks:")
            lines += [f"     • {printable(b.target)}: {b.mean_ms:.0f}ms" for b in build.bottlenecks]
    return "\n".join(lines) + "\n"


def recent_json(builds: Sequence[BuildReport]) -> str:
    """The recent builds, newest first, as a JSON object ``{"builds": [...]}``."""
    return _dumps(
        {
            "builds": [
                {
                    "sessionId": b.session_id,
                    "startTime": format_time(b.start_time),
                    "durationMs": b.duration_ms,
                    "succeeded": b.succeeded,
                    "interrupted": b.interrupted,
                    "error": "interrupted" if b.interrupted else b.error,
                    "totalTargets": b.total_targets,
                    "built": b.built,
                    "cached": b.cached,
                    "failed": b.failed,
                    "skipped": b.skipped,
                    "cacheHitRate": b.cache_hit_rate,
                    "parallelismUtilization": b.parallelism_utilization,
                    "targetsPerSecond": b.targets_per_second,
                    "labels": b.labels,
                    "bottlenecks": [_bottleneck(x) for x in b.bottlenecks],
                }
                for b in builds
            ]
        }
    )


# -- show -------------------------------------------------------------------------------------


class _Omitted(enum.Enum):
    OMITTED = enum.auto()


# What ``show`` is not given: unlike None, which is a critical path not known.
OMITTED: Final = _Omitted.OMITTED


def render_build(
    build: BuildDetails,
    *,
    top: int | None = None,
    color: bool = False,
    weights: BuildWeights | None = None,
    critical_path: CriticalPath | Literal[_Omitted.OMITTED] | None = OMITTED,
) -> str:
    """One build for people and ``grep``: ``Key: value`` lines, then its targets slowest
    first (the ``top`` slowest when given), one line each, ending in a newline. With
    ``weights``, its weighted figures follow its rates, and each executed target's weighted
    time its duration. With ``critical_path`` (None: not known), its length follows them,
    and its targets, first to last, come before the build's."""
    status = (
        _paint("succeeded", _GREEN, color) if build.succeeded else _paint("failed", _RED, color)
    )
    lines = [
        _paint(f"=== Build {printable(build.session_id)} ===", _BOLD, color),
        "",
        f"Started: {format_time(build.start_time)}",
        f"Finished: {format_time(build.end_time)}",
        f"Duration: {build.duration_ms}ms",
        f"Status: {status}",
    ]
    if not build.succeeded:
        lines.append(f"Error: {printable(_one_line(_build_error(build)))}")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(build.labels.items()))
    lines += [
        "",
        f"Tool: {_known(build.tool)}",
        f"Host: {_known(build.host)}",
        f"Branch: {_known(build.branch)}",
        f"Commit: {_known(build.commit)}",
        f"Labels: {printable(labels) if labels else '(none)'}",
        "",
        f"Targets: {build.total_targets} ({build.built} built, {build.cached} cached, "
        f"{build.failed} failed, {build.skipped} skipped)",
        f"Cache Hit Rate: {_rate(build.cache_hit_rate, '{:.1f}%')}",
        f"Workers: {_workers(build)}",
        f"Utilization: {_rate(build.parallelism_utilization, '{:.1f}%')}",
        f"Targets/Second: {_rate(build.targets_per_second, '{:.2f}')}",
        *(_weight_lines(weights) if weights is not None else ()),
        *(_path_lines(critical_path, build, color) if critical_path is not OMITTED else ("",)),
    ]
    shown = build.targets if top is None else build.targets[:top]
    if len(shown) < len(build.targets):
        lines.append(f"Targets, slowest {len(shown)} of {len(build.targets)}:")
    else:
        lines.append("Targets, slowest first:")
    width = len(str(len(shown)))  # ranks aligned on their dot, errors under the status
    for rank, run in enumerate(shown, start=1):
        worker = "" if run.worker is None else f" (worker {run.worker})"
        mark = _paint(run.status, _RED, color) if run.status == "failed" else run.status
        weighted = (
            f", weighted {weights.targets[rank - 1]:.0f}ms"
            if weights is not None and run.status in EXECUTED
            else ""
        )
        lines.append(
            f"  {rank:>{width}}. [{mark}] {printable(run.target)} - {run.duration_ms}ms"
            f"{weighted}{worker}"
        )
        if run.error:
            lines.append(f"{' ' * (width + 4)}Error: {printable(_one_line(run.error))}")
    if not build.targets:
        lines.append("  (none)")
    return "\n".join(lines) + "\n"


def build_json(
    build: BuildDetails,
    *,
    top: int | None = None,
    weights: BuildWeights | None = None,
    critical_path: CriticalPath | Literal[_Omitted.OMITTED] | None = OMITTED,
) -> str:
    """One build as a JSON object: the keys and values of its object in an export, then
    ``targets``, slowest first (the ``top`` slowest when given), each with its ``deps``.
    With ``weights``, its weighted figures come before ``targets``, and each target has its
    ``weightedMs``; with ``critical_path``, ``criticalPath`` follows them (``null``: not
    known)."""
    row = _session_row({name: getattr(build, name) for name in BuildDetails.__dataclass_fields__})
    shown = build.targets if top is None else build.targets[:top]
    targets = json.dumps(
        [
            _target(run, build.start_time, None if weights is None else weights.targets[i])
            for i, run in enumerate(shown)
        ],
        indent=2,
        ensure_ascii=False,
    )
    fields = _session_fields(row, "  ")
    if weights is not None:
        fields += [
            f'  "{key}": {json.dumps(value)}'
            for key, value in (
                ("weightedMs", weights.weighted_ms),
                ("spanMs", weights.span_ms),
                ("effectiveParallelism", _two_decimals(weights.effective_parallelism)),
                ("workers", weights.workers),
                ("underusedMs", weights.underused_ms),
            )
        ]
    if critical_path is not OMITTED:
        path = json.dumps(_path_json(critical_path, build.start_time), indent=2, ensure_ascii=False)
        fields.append('  "criticalPath": ' + path.replace("\n", "\n  "))
    fields.append('  "targets": ' + targets.replace("\n", "\n  "))
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _target(run: TargetRun, start: datetime, weighted_ms: float | None) -> dict[str, object]:
    weighted = {} if weighted_ms is None else {"weightedMs": weighted_ms}
    return {
        "target": run.target,
        "status": run.status,
        "durationMs": run.duration_ms,
        **weighted,
        # From the build's start, to the millisecond: where it lies on the build's timeline.
        "startOffsetMs": (run.start_time - start) // _MILLISECOND,
        "worker": run.worker,
        "error": run.error,
        "deps": None if run.deps is None else list(run.deps),
    }


def _path_json(path: CriticalPath | None, start: datetime) -> dict[str, object] | None:
    """The critical path as ``show --format json`` gives it: shares in percent with two
    decimals, as the rates of an export are."""
    if path is None:
        return None
    return {
        "durationMs": path.duration_ms,
        "percentOfBuild": _percent(path.share),
        "complete": path.complete,
        "targets": [
            {
                "target": step.target,
                "status": step.status,
                "durationMs": step.duration_ms,
                "percentOfBuild": _percent(step.share),
                "startOffsetMs": (step.start_time - start) // _MILLISECOND,
            }
            for step in path.steps
        ],
    }


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100.0 * share, 2)


def _path_lines(path: CriticalPath | None, build: BuildDetails, color: bool) -> list[str]:
    """The critical path's line among the figures, then (when it has targets) a blank line
    and its targets first to last, each with its share of the build and when it started;
    the caller's blank line follows."""
    if path is None:
        return ["Critical Path: n/a (no target reported its dependencies)", ""]
    if not path.steps:
        return ["Critical Path: none (no target ran)", ""]
    share = "" if path.share is None else f" ({100.0 * path.share:.1f}%)"
    count = len(path.steps)
    lines = [
        f"Critical Path: {path.duration_ms}ms of {path.build_ms}ms{share}, "
        f"{count} target{'' if count == 1 else 's'}",
        "",
        "Critical path, first to last:",
    ]
    width = len(str(count))
    for rank, step in enumerate(path.steps, start=1):
        mark = _paint(step.status, _RED, color) if step.status == "failed" else step.status
        part = "" if step.share is None else f" ({100.0 * step.share:.1f}%)"
        offset = (step.start_time - build.start_time) // _MILLISECOND
        lines.append(
            f"  {rank:>{width}}. [{mark}] {printable(step.target)} - {step.duration_ms}ms"
            f"{part} at {offset:+d}ms"
        )
    if not path.complete:
        lines.append(
            f"  (what {printable(path.steps[0].target)} waited for was not reported: the path "
            f"may begin before it)"
        )
    return [*lines, ""]


def _two_decimals(value: float | None) -> float | None:
    """A ratio as the rates of an export are given: to two decimals (SPEC §4)."""
    return None if value is None else round(value, 2)


def _weight_lines(weights: BuildWeights) -> list[str]:
    """The weighted figures of ``show``: n/a where the build reported no targets, nothing
    ran (effective parallelism) or it has no worker count (the underused time)."""
    known = weights.weighted_ms is not None
    span = f" (span {weights.span_ms}ms)" if known else ""
    if weights.underused_ms is None:
        underused = "n/a"
    else:
        share = (
            f" ({100.0 * weights.underused_ms / weights.duration_ms:.1f}%)"
            if weights.duration_ms > 0
            else ""
        )
        fewer = "no target" if weights.workers == 1 else f"fewer than {weights.workers} targets"
        underused = (
            f"{weights.underused_ms}ms of {weights.duration_ms}ms{share} with {fewer} running"
        )
    return [
        f"Weighted Time: {_rate(weights.weighted_ms, '{}ms', span)}",
        f"Effective Parallelism: {_rate(weights.effective_parallelism, '{:.2f}x')}",
        f"Underused: {underused}",
    ]


def _build_error(build: BuildDetails | BuildReport) -> str:
    return "interrupted" if build.interrupted else (build.error or "build failed")


def _known(text: str | None) -> str:
    return "n/a" if text is None else printable(text)


def _workers(build: BuildDetails) -> str:
    if build.parallelism is not None:
        return str(build.parallelism)
    if build.peak_concurrency:
        # What the utilization is measured against when the build gave no worker count.
        return f"{build.peak_concurrency} (not reported: the most targets running at once)"
    return "n/a"


# -- export -----------------------------------------------------------------------------------


def write_export(
    sessions: pl.DataFrame,
    fmt: ExportFormat,
    out: IO[bytes],
    *,
    terminal: bool = False,
    compress: Compression | None = None,
    progress: Progress | None = None,
) -> None:
    """Write sessions (oldest first, as :meth:`TelemetryAnalyzer.sessions` gives them);
    ``terminal`` escapes what a terminal must not receive raw, as the text reports do;
    ``compress="zstd"`` writes one zstd frame of the very bytes a text format would be.

    ``progress`` is told the builds rendered, a thousand at a time, of all of them; Parquet
    and Arrow are written in one call, so it hears of their start and end only."""
    if fmt in BINARY_FORMATS:
        if compress is not None:
            raise TelemetryError(
                f"{fmt} compresses inside the file; export it without --compress {compress} "
                "and without a .zst name"
            )
        told = progress or no_progress
        told(0, sessions.height)
        _write_binary(sessions, fmt, out)
        told(sessions.height, sessions.height)
        return
    if fmt == "json":
        text = sessions_json(sessions, terminal=terminal, progress=progress)
    elif fmt == "csv":
        text = sessions_csv(sessions, terminal=terminal, progress=progress)
    elif fmt in ("prometheus", "openmetrics"):
        text = sessions_prometheus(
            sessions, openmetrics=fmt == "openmetrics", terminal=terminal, progress=progress
        )
    else:
        raise TelemetryError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    data = text.encode()
    if compress == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    elif compress is not None:
        raise TelemetryError(f"unknown compression {compress!r}; the one there is: zstd")
    out.write(data)


def sessions_json(
    sessions: pl.DataFrame, *, terminal: bool = False, progress: Progress | None = None
) -> str:
    """``{"sessions": [...]}`` with the seed's keys first, :data:`EXACT_KEYS` last and rates
    with two decimals (``null`` for a build that reported no targets); with ``terminal``, the
    same values through :func:`json_for_terminal`; ``progress`` told the builds rendered."""
    if sessions.is_empty():
        (progress or no_progress)(0, 0)
        return '{\n  "sessions": []\n}\n'
    objects = [
        "    {\n" + ",\n".join(_session_fields(row, "      ")) + "\n    }"
        for chunk in _chunks(sessions, progress)
        for row in _session_rows(chunk)
    ]
    document = '{\n  "sessions": [\n' + ",\n".join(objects) + "\n  ]\n}\n"
    return json_for_terminal(document) if terminal else document


def _session_fields(row: Mapping[str, Any], indent: str) -> list[str]:
    """A session's ``"key": value`` lines, rates with two decimals as the seed writes them."""
    fields = []
    for key in JSON_SESSION_KEYS:
        value = row[key]
        if key in _RATES and value is not None:
            text = f"{value:.2f}"
        else:
            text = json.dumps(value, ensure_ascii=False)
        fields.append(f'{indent}"{key}": {text}')
    return fields


def sessions_csv(
    sessions: pl.DataFrame, *, terminal: bool = False, progress: Progress | None = None
) -> str:
    """One row per session with a header; RFC 4180 (CRLF, quotes where needed), an unknown
    rate as an empty cell. With ``terminal``, each text cell through :func:`printable` and
    the labels' JSON through :func:`json_for_terminal`: CSV has no escapes of its own, and a
    terminal is read, not parsed. ``progress`` is told the builds rendered."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(SESSION_KEYS)
    rows = (row for chunk in _chunks(sessions, progress) for row in _session_rows(chunk))
    for row in rows:
        cells = [_csv_value(key, row[key]) for key in SESSION_KEYS]
        if terminal:
            cells = [
                json_for_terminal(cell) if key == "labels" else printable(cell)
                for key, cell in zip(SESSION_KEYS, cells, strict=True)
            ]
        writer.writerow(cells)
    return buffer.getvalue()


def _session_rows(sessions: pl.DataFrame) -> list[dict[str, Any]]:
    return [_session_row(r) for r in sessions.iter_rows(named=True)]


def _chunks(sessions: pl.DataFrame, progress: Progress | None) -> Iterator[pl.DataFrame]:
    """``sessions`` :data:`_EXPORT_CHUNK` rows at a time, ``progress`` told the rows done
    once each is rendered (an empty frame: none, and the work is done)."""
    told = progress or no_progress
    total = sessions.height
    told(0, total)
    for start in range(0, total, _EXPORT_CHUNK):
        chunk = sessions.slice(start, _EXPORT_CHUNK)
        yield chunk
        told(start + chunk.height, total)


def _session_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """A stored session (its columns by name) under the keys of an export."""
    row = {key: r[column] for key, column in _COLUMNS.items()}
    row["startTime"] = format_time(r["start_time"])
    row["endTime"] = format_time(r["end_time"])
    row["startTimeMs"] = (r["start_time"] - _EPOCH) // _MILLISECOND
    row["endTimeMs"] = (r["end_time"] - _EPOCH) // _MILLISECOND
    row["labels"] = dict(r["labels"] or {})
    if r["interrupted"] and row["error"] is None:
        row["error"] = "interrupted"
    return row


def _csv_value(key: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in _RATES:
        return f"{value:.2f}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
    if isinstance(value, str):
        return spreadsheet_text(value)
    return str(value)


def sessions_prometheus(
    sessions: pl.DataFrame,
    *,
    openmetrics: bool = False,
    terminal: bool = False,
    progress: Progress | None = None,
) -> str:
    """Each build as gauges in the Prometheus text exposition format, one family after
    another, every sample labelled by ``session`` (and ``tool``, ``branch`` when the build
    gave them) and stamped with the build's start: integer milliseconds since the epoch, or
    with ``openmetrics``, seconds and a closing ``# EOF``. An unknown rate (the build
    reported no targets) has no sample. ``progress`` is told the builds read.

    >>> print(sessions_prometheus(sessions).splitlines()[2])  # doctest: +SKIP
    builder_build_duration_seconds{session="a",tool="ninja"} 1.0 1761575000000
    """
    builds = [
        _metric_build(r, openmetrics, terminal)
        for chunk in _chunks(sessions, progress)
        for r in chunk.iter_rows(named=True)
    ]
    lines = []
    for name, column, scale, text in _GAUGES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for labels, stamp, r in builds:
            if column == "targets":
                lines += [
                    f'{name}{{{labels},status="{status}"}} {r[status]} {stamp}'
                    for status in _TARGET_STATUSES
                ]
            elif r[column] is not None:
                lines.append(f"{name}{{{labels}}} {_metric_value(r[column], scale)} {stamp}")
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _metric_build(r: Mapping[str, Any], openmetrics: bool, terminal: bool) -> tuple[str, str, Any]:
    """A build's label set, its timestamp as the format writes it, and its columns."""
    pairs = [("session", r["session_id"]), ("tool", r["tool"]), ("branch", r["branch"])]
    labels = ",".join(
        f'{key}="{_label_value(printable(value) if terminal else value)}"'
        for key, value in pairs
        if value is not None
    )
    ms = (r["start_time"] - _EPOCH) // _MILLISECOND
    # Exact decimals: a float of seconds would round some milliseconds away.
    stamp = f"{ms // 1000}.{ms % 1000:03d}" if openmetrics else str(ms)
    return labels, stamp, r


def _label_value(value: str) -> str:
    r"""A label value as both formats quote it: backslash, double quote and line break
    escaped.

    >>> print(_label_value('C:\\out "x"\n'))
    C:\\out \"x\"\n
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric_value(value: float | bool, scale: int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    # repr is the shortest text that reads back as the same float
    return repr(value / scale) if scale != 1 else repr(value)


def _write_binary(sessions: pl.DataFrame, fmt: str, out: IO[bytes]) -> None:
    table = sessions.drop("date", strict=False).to_arrow()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out, compression="zstd")
    else:
        import pyarrow.ipc as ipc

        options = ipc.IpcWriteOptions(compression="zstd")
        with ipc.new_file(out, table.schema, options=options) as writer:
            writer.write_table(table)


def _bottleneck(b: Bottleneck) -> dict[str, object]:
    return {"target": b.target, "meanDurationMs": b.mean_ms, "runs": b.runs}


def _weighted_bottleneck(b: WeightedBottleneck) -> dict[str, object]:
    return {
        "target": b.target,
        "meanWeightedMs": b.mean_weighted_ms,
        "meanDurationMs": b.mean_duration_ms,
        "runs": b.runs,
    }


def _dumps(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())
