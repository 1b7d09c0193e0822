"""The CI gate: one build judged against rules, for ``builder telemetry check``.

The build checked is the newest (by start time) of the window that the filter's branch,
tool and labels take, whatever its outcome, or the one named; the filter's outcome
(``status``) chooses only the builds it is compared with. The rules it is judged by:

- ``outcome`` (always): broken when the build failed or was interrupted. A gate must not
  pass a build that did not build, however fast it failed.
- ``regression`` (always): SPEC §3's regression of that one build, its duration against the
  mean duration of the builds before it in the window (the filter's builds only); broken
  when duration / mean ≥ the threshold. Not judged when no earlier build took any time, nor
  for a failed or interrupted build (its time says nothing about its speed).
  When broken, it also says whether the build's cache hit rate was well below the earlier
  builds' mean (:data:`COLD_CACHE_POINTS` percentage points or more): a cold cache rather
  than slower targets.
- ``max-duration`` (when asked): broken when the build took longer than the limit.
- ``min-hit-rate`` (when asked): broken when the build's cache hit rate is under the minimum;
  not judged when the build reported no targets (its rate is unknown).

A rule that cannot be judged is not broken. Unlike the summary, which reports regressions
among the last three builds, only the build checked is judged: a gate run after a fast build
passes even when the build before it was slow.

The report renders as text (:func:`render_check`) and JSON (:func:`check_json`) here, beside
its values, as :mod:`telemetry.exporter` renders the other reports.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Final, Literal, TypeAlias

from telemetry.config import DEFAULT_REGRESSION_THRESHOLD, parse_number
from telemetry.errors import ConfigError, StorageError, TelemetryError
from telemetry.events import TIME_FORMAT
from telemetry.text import printable

if TYPE_CHECKING:
    import polars as pl

    from telemetry.storage import TelemetryStorage
    from telemetry.window import BuildStatus, Filter, Window

Verdict: TypeAlias = Literal["broken", "passed", "not-judged"]
RuleName: TypeAlias = Literal["outcome", "regression", "max-duration", "min-hit-rate"]

# How far under the earlier builds' mean hit rate (in percentage points) a regressed build's
# rate must be for the slowdown to be put down to a cold cache.
COLD_CACHE_POINTS: Final = 20.0
DURATION_FORMS: Final = "500ms, 90s, 5m, 1h or 1m30s"
# Whole numbers with units, largest first, each at most once: 1h30m, 1m30s, 2s500ms.
_DURATION: Final = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", re.ASCII)
_UNIT_MS: Final = (3_600_000, 60_000, 1_000, 1)
# Over 100 years: a limit no build reaches, and still an exact integer in JSON.
_MAX_DURATION_MS: Final = 100 * 365 * 86_400_000
# The most decimals a rate or ratio is shown with to keep it apart from its bound: past 17
# significant digits two different doubles always read apart.
_MAX_DIGITS: Final = 17


class NothingToCheck(TelemetryError):
    """No build in the window (that the filter takes) to check."""


@dataclass(slots=True, frozen=True)
class CheckedBuild:
    """The build a gate judged."""

    session_id: str
    start_time: datetime
    duration_ms: int
    # None when the build reported no targets.
    cache_hit_rate: float | None
    succeeded: bool
    interrupted: bool = False
    error: str | None = None  # why it failed, as it reported it


@dataclass(slots=True, frozen=True)
class OutcomeRule:
    """Whether the build succeeded: broken when it failed or was interrupted."""

    verdict: Verdict
    succeeded: bool
    interrupted: bool
    error: str | None
    reason: str | None = None

    name: ClassVar[RuleName] = "outcome"


@dataclass(slots=True, frozen=True)
class RegressionRule:
    """The build's duration against the mean of the ``baseline_builds`` before it."""

    verdict: Verdict
    threshold: float
    baseline_builds: int
    expected_ms: float | None  # the earlier builds' mean duration; None without any
    actual_ms: int
    ratio: float | None  # actual / expected; None when not judged
    # The earlier builds' mean hit rate (over those whose rate is known), and whether the
    # build's own was COLD_CACHE_POINTS or more under it; None when either rate is unknown.
    baseline_cache_hit_rate: float | None
    cold_cache: bool | None
    reason: str | None = None  # why it was not judged

    name: ClassVar[RuleName] = "regression"


@dataclass(slots=True, frozen=True)
class MaxDurationRule:
    """The build's duration against a limit."""

    verdict: Verdict
    limit_ms: int
    actual_ms: int
    reason: str | None = None

    name: ClassVar[RuleName] = "max-duration"


@dataclass(slots=True, frozen=True)
class MinHitRateRule:
    """The build's cache hit rate against a minimum (percentages)."""

    verdict: Verdict
    minimum: float
    actual: float | None
    reason: str | None = None

    name: ClassVar[RuleName] = "min-hit-rate"


Rule: TypeAlias = OutcomeRule | RegressionRule | MaxDurationRule | MinHitRateRule


@dataclass(slots=True, frozen=True)
class GateReport:
    """A build and the verdict of each rule it was judged by: the outcome rule, the
    regression rule, then those asked for."""

    build: CheckedBuild
    rules: tuple[Rule, ...]

    @property
    def broken(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.verdict == "broken")

    @property
    def passed(self) -> bool:
        """Whether no rule is broken (a rule not judged breaks nothing)."""
        return not self.broken


def check(
    storage: TelemetryStorage,
    *,
    session: str | None = None,
    window: Window | None = None,
    filter: Filter | None = None,
    threshold: float = DEFAULT_REGRESSION_THRESHOLD,
    max_duration_ms: int | None = None,
    min_hit_rate: float | None = None,
) -> GateReport:
    """Judge the newest build (by start time) of the window that ``filter``'s branch, tool
    and labels take, whatever its outcome, or the build whose session id is ``session``
    (the whole id, where ``show`` also takes its first characters; among those same
    builds), by the outcome
    and regression rules and the rules asked for. ``filter``'s status chooses only the
    earlier builds it is compared with. :class:`NothingToCheck` when there is no build;
    :class:`~telemetry.analyzer.BuildLookupError` when ``session`` names none, or several.

    >>> check(TelemetryStorage("store"), max_duration_ms=300_000).passed  # doctest: +SKIP
    True
    """
    from dataclasses import replace

    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.window import Filter, Window

    _validate(threshold, max_duration_ms, min_hit_rate)
    asked = filter or Filter()
    # Every outcome: the build checked is the newest whatever it came to.
    analyzer = TelemetryAnalyzer(
        storage, window=window, filter=replace(asked, status=None), regression_threshold=threshold
    )
    sessions = analyzer.sessions()
    named = None
    if session is not None:
        import polars as pl

        from telemetry.analyzer import BuildLookupError

        # A gate never guesses: the whole id, where show takes its first characters, so
        # that a job whose build was not stored is not judged by another job's build.
        if sessions.filter(pl.col("session_id") == session).is_empty():
            everything = (window is None or window == Window()) and asked.takes_all
            among = "" if everything else " among the builds selected"
            raise BuildLookupError(
                f"no build {session!r} in {storage.dir}{among}; check --session takes a "
                "whole session id (builder telemetry recent lists the newest builds with theirs)"
            )
        named = analyzer.build(session)
    if named is None:
        if sessions.is_empty():
            raise NothingToCheck(f"no build to check in {storage.dir}")
        position = sessions.height - 1
    else:
        found = (
            sessions.with_row_index("position")
            .filter(
                pl.col("session_id") == named.session_id,
                pl.col("start_time") == named.start_time,
            )
            .get_column("position")
        )
        if found.is_empty():  # retention or clear removed it between the two reads
            raise StorageError(
                f"build {named.session_id!r} left {storage.dir} while it was checked; try again"
            )
        position = int(found[0])
    return _judge(sessions, position, asked.status, threshold, max_duration_ms, min_hit_rate)


def _validate(threshold: float, max_duration_ms: int | None, min_hit_rate: float | None) -> None:
    if not math.isfinite(threshold) or threshold <= 1.0:
        raise ConfigError(f"the threshold must be a number greater than 1, got {threshold!r}")
    if max_duration_ms is not None and not 0 < max_duration_ms <= _MAX_DURATION_MS:
        raise ConfigError(
            f"the maximum duration must be from 1 ms to 100 years, got {max_duration_ms!r} ms"
        )
    if min_hit_rate is not None and not 0.0 <= min_hit_rate <= 100.0:
        raise ConfigError(
            f"the minimum hit rate must be a percentage from 0 to 100, got {min_hit_rate!r}"
        )


def _judge(
    sessions: pl.DataFrame,
    position: int,
    status: BuildStatus | None,
    threshold: float,
    max_duration_ms: int | None,
    min_hit_rate: float | None,
) -> GateReport:
    """The rules over the build at ``position`` of ``sessions`` (oldest first) and the
    builds before it of outcome ``status`` (all when None)."""
    import polars as pl

    row = sessions.row(position, named=True)
    build = CheckedBuild(
        session_id=row["session_id"],
        start_time=row["start_time"],
        duration_ms=row["duration_ms"],
        cache_hit_rate=row["cache_hit_rate"],
        succeeded=row["succeeded"],
        interrupted=row["interrupted"],
        error=row["error"],
    )
    before = sessions.head(position)
    if status is not None:
        before = before.filter(pl.col("succeeded") == (status == "succeeded"))
    earlier = before.select(
        builds=pl.len(),
        expected=pl.col("duration_ms").mean(),
        hit_rate=pl.col("cache_hit_rate").mean(),  # over the builds whose rate is known
    )
    baseline = earlier.row(0, named=True)
    rules: list[Rule] = [
        OutcomeRule(
            "passed" if build.succeeded else "broken",
            build.succeeded,
            build.interrupted,
            build.error,
        ),
        _regression(
            build, threshold, baseline["builds"], baseline["expected"], baseline["hit_rate"]
        ),
    ]
    if max_duration_ms is not None:
        over = build.duration_ms > max_duration_ms
        rules.append(
            MaxDurationRule("broken" if over else "passed", max_duration_ms, build.duration_ms)
        )
    if min_hit_rate is not None:
        rate = build.cache_hit_rate
        if rate is None:
            rules.append(
                MinHitRateRule(
                    "not-judged",
                    min_hit_rate,
                    None,
                    "the build reported no targets, so its cache hit rate is unknown",
                )
            )
        else:
            under = rate < min_hit_rate
            rules.append(MinHitRateRule("broken" if under else "passed", min_hit_rate, rate))
    return GateReport(build, tuple(rules))


def _regression(
    build: CheckedBuild,
    threshold: float,
    builds: int,
    expected: float | None,
    hit_rate: float | None,
) -> RegressionRule:
    """SPEC §3's regression rule for ``build`` and the ``builds`` before it: their mean
    duration ``expected`` and mean hit rate ``hit_rate``."""
    cold = (
        None
        if hit_rate is None or build.cache_hit_rate is None
        else build.cache_hit_rate <= hit_rate - COLD_CACHE_POINTS
    )

    def rule(verdict: Verdict, ratio: float | None, reason: str | None = None) -> RegressionRule:
        return RegressionRule(
            verdict, threshold, builds, expected, build.duration_ms, ratio, hit_rate, cold, reason
        )

    if not build.succeeded:
        did = "was interrupted" if build.interrupted else "failed"
        return rule("not-judged", None, f"the build {did}: its time says nothing of its speed")
    if builds == 0 or expected is None:
        return rule("not-judged", None, "no earlier build to compare with")
    if expected == 0:
        return rule("not-judged", None, "the earlier builds took no time")
    ratio = build.duration_ms / expected
    return rule("broken" if ratio >= threshold else "passed", ratio)


# -- the options' values ----------------------------------------------------------------------


def parse_duration(text: str, *, source: str = "--max-duration") -> int:
    """Milliseconds of a duration with its units: ``500ms``, ``90s``, ``5m``, ``1h``,
    ``1m30s`` (whole numbers, largest unit first); a bare number is refused, since nobody
    can tell whether ``300`` means seconds or milliseconds.

    >>> parse_duration("1m30s"), parse_duration("500ms")
    (90000, 500)
    """
    found = _DURATION.fullmatch(text.strip())
    if found is None or not any(found.groups()):
        raise ConfigError(
            f"{source} must be a duration with a unit: {DURATION_FORMS}, got {text!r}"
        )
    ms = sum(int(n) * unit for n, unit in zip(found.groups(), _UNIT_MS, strict=True) if n)
    if not 0 < ms <= _MAX_DURATION_MS:
        raise ConfigError(
            f"{source} must be a duration from 1ms to 100 years ({DURATION_FORMS}), got {text!r}"
        )
    return ms


def parse_percentage(text: str, *, source: str = "--min-hit-rate") -> float:
    """A percentage from 0 to 100 (``80``, ``92.5``; a trailing ``%`` is allowed).

    >>> parse_percentage("92.5%")
    92.5
    """
    value = text.strip().removesuffix("%").strip()
    try:
        number = parse_number(value, source=source, example="80")
    except ConfigError:
        number = math.nan
    if not 0.0 <= number <= 100.0:  # also refuses nan
        raise ConfigError(f"{source} must be a percentage from 0 to 100 (e.g. 80), got {text!r}")
    return number + 0.0  # -0 is 0


def format_span(ms: float) -> str:
    """A duration as the options take it: ``450ms`` under a second, else whole units down to
    tenths of a second (``13.3s``, ``10s``, ``1m30s``, ``1h2m3.5s``).

    >>> format_span(450), format_span(13_309), format_span(90_000), format_span(3_723_500)
    ('450ms', '13.3s', '1m30s', '1h2m3.5s')
    """
    if ms < 999.5:
        return f"{ms:.0f}ms"
    hours, tenths = divmod(round(ms / 100), 36_000)
    minutes, tenths = divmod(tenths, 600)
    seconds = f"{tenths // 10}s" if tenths % 10 == 0 else f"{tenths / 10:.1f}s"
    parts = (f"{hours}h" if hours else "", f"{minutes}m" if minutes else "")
    return "".join(parts) + (seconds if tenths or not (hours or minutes) else "")


# -- text and JSON ----------------------------------------------------------------------------


def render_check(report: GateReport) -> str:
    """For people and ``grep``: one ``FAIL <rule>: ...`` line per broken rule, or one
    ``PASS ...`` line naming the rules judged (and those that could not be); ending in a
    newline."""
    build = report.build
    name = printable(build.session_id)
    if not report.passed:
        return "".join(f"FAIL {rule.name}: {_failure(rule, build)}\n" for rule in report.broken)
    passed = [f"{r.name} ({_passing(r)})" for r in report.rules if r.verdict == "passed"]
    skipped = [f"{r.name} ({r.reason})" for r in report.rules if r.verdict == "not-judged"]
    said = [f"passed {', '.join(passed)}"] if passed else []
    if skipped:
        said.append(f"not judged: {', '.join(skipped)}")
    when = build.start_time.strftime(TIME_FORMAT)
    return f"PASS build {name} ({when}, {format_span(build.duration_ms)}): {'; '.join(said)}\n"


def _failure(rule: Rule, build: CheckedBuild) -> str:
    name = printable(build.session_id)
    if isinstance(rule, OutcomeRule):
        if rule.interrupted:
            return f"build {name} was interrupted"
        said = " ".join((rule.error or "").split())  # one line
        return f"build {name} failed: {printable(said)}" if said else f"build {name} failed"
    if isinstance(rule, RegressionRule):
        assert rule.ratio is not None and rule.expected_ms is not None
        noun = "build" if rule.baseline_builds == 1 else f"{rule.baseline_builds} builds"
        ratio, threshold = _apart(rule.ratio, rule.threshold, 2, lambda r, t: r >= t)
        return (
            f"build {name} took {ratio}x the mean of the {noun} before it "
            f"(expected {format_span(rule.expected_ms)}, got {format_span(rule.actual_ms)}; "
            f"threshold {threshold}x){_cache(rule, build)}"
        )
    if isinstance(rule, MaxDurationRule):
        took, limit = format_span(rule.actual_ms), format_span(rule.limit_ms)
        if took == limit:  # 60,040 ms and 1m both read 1m: the exact milliseconds
            took, limit = f"{rule.actual_ms}ms", f"{rule.limit_ms}ms"
        over = format_span(rule.actual_ms - rule.limit_ms)
        return f"build {name} took {took}, over the limit of {limit} by {over}"
    assert rule.actual is not None
    rate, minimum = _apart(rule.actual, rule.minimum, 1, lambda r, m: r < m)
    return f"build {name} had a cache hit rate of {rate}%, under the minimum of {minimum}%"


def _apart(
    value: float, bound: float, digits: int, holds: Callable[[float, float], bool]
) -> tuple[str, str]:
    """``value`` with ``digits`` decimals and ``bound`` as written (``1.5``), or, when the
    two read as the verdict does not hold (``1.50x``, under ``1.5x``; ``50.0%``, under
    ``50%``), both with two more decimals, as many times as it takes.

    >>> _apart(1.4996, 1.5, 2, lambda r, t: r < t), _apart(49.96, 50, 1, lambda r, m: r < m)
    (('1.4996', '1.5000'), ('49.960', '50.000'))
    """
    shown, limit = f"{value:.{digits}f}", f"{bound:g}"
    while not holds(float(shown), float(limit)) and digits < _MAX_DIGITS:
        digits += 2
        shown, limit = f"{value:.{digits}f}", f"{bound:.{digits}f}"
    return shown, limit


def _cache(rule: RegressionRule, build: CheckedBuild) -> str:
    """Whether a regressed build's cache was cold: information, not a rule of its own."""
    if build.cache_hit_rate is None:
        return "; its cache hit rate is unknown (it reported no targets)"
    if rule.cold_cache is None or rule.baseline_cache_hit_rate is None:
        return "; no build before it reported targets to compare its cache hit rate with"
    hit = f"its cache hit rate was {_percent(build.cache_hit_rate)} against a mean of "
    hit += f"{_percent(rule.baseline_cache_hit_rate)} before it"
    if rule.cold_cache:
        return f"; {hit}: a cold cache rather than slower targets"
    return f"; {hit}: not a cold cache"


def _passing(rule: Rule) -> str:
    if isinstance(rule, OutcomeRule):
        return "succeeded"
    if isinstance(rule, RegressionRule):
        assert rule.ratio is not None
        noun = "build" if rule.baseline_builds == 1 else f"{rule.baseline_builds} builds"
        ratio, threshold = _apart(rule.ratio, rule.threshold, 2, lambda r, t: r < t)
        return f"{ratio}x the mean of the {noun} before it, under {threshold}x"
    if isinstance(rule, MaxDurationRule):
        return f"within {format_span(rule.limit_ms)}"
    assert rule.actual is not None
    rate, minimum = _apart(rule.actual, rule.minimum, 1, lambda r, m: r >= m)
    return f"{rate}%, at least {minimum}%"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def check_json(report: GateReport) -> str:
    """The report as a JSON object: ``passed``, the build, and each rule with its verdict
    and the numbers behind it, unrounded (``null`` where unknown)."""
    build = report.build
    return (
        json.dumps(
            {
                "passed": report.passed,
                "build": {
                    "sessionId": build.session_id,
                    "startTime": build.start_time.strftime(TIME_FORMAT),
                    "durationMs": build.duration_ms,
                    "cacheHitRate": build.cache_hit_rate,
                    "succeeded": build.succeeded,
                    "interrupted": build.interrupted,
                    "error": build.error,
                },
                "rules": [_rule_json(rule) for rule in report.rules],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


def _rule_json(rule: Rule) -> dict[str, object]:
    head: dict[str, object] = {"rule": rule.name, "verdict": rule.verdict}
    if isinstance(rule, OutcomeRule):
        numbers: dict[str, object] = {
            "succeeded": rule.succeeded,
            "interrupted": rule.interrupted,
            "error": rule.error,
        }
    elif isinstance(rule, RegressionRule):
        numbers = {
            "threshold": rule.threshold,
            "ratio": rule.ratio,
            "expectedMs": rule.expected_ms,
            "actualMs": rule.actual_ms,
            "baselineBuilds": rule.baseline_builds,
            "baselineCacheHitRate": rule.baseline_cache_hit_rate,
            "coldCache": rule.cold_cache,
        }
    elif isinstance(rule, MaxDurationRule):
        numbers = {"limitMs": rule.limit_ms, "actualMs": rule.actual_ms}
    else:
        numbers = {"minimum": rule.minimum, "actual": rule.actual}
    return head | numbers | {"reason": rule.reason}


__all__ = [
    "CheckedBuild",
    "GateReport",
    "MaxDurationRule",
    "MinHitRateRule",
    "NothingToCheck",
    "OutcomeRule",
    "RegressionRule",
    "Rule",
    "check",
    "check_json",
    "format_span",
    "parse_duration",
    "parse_percentage",
    "render_check",
]
