"""A/B comparison: the builds of two groups (``--a KEY=VALUE``, ``--b KEY=VALUE``) side by
side, with how sure the difference is.

Each group is chosen by what its builds say of themselves: ``branch``, ``tool``, ``host`` or
``commit`` by that column, any other key by a label (``builder record --label``,
``BUILDER_*`` settings). For build time, cache hit rate and parallelism utilization it gives
each group's count, median and mean; the change of B against A (build time: the ratio of the
medians − 1; the rates, already percentages: the difference of the medians in points, which
a cold cache at 0% leaves defined); a percentile bootstrap confidence interval of that change;
and the two-sided p-value of the Mann–Whitney U test. A change is significant when its
interval excludes 0.

The bootstrap resamples each group independently, with a fixed seed, so one store always
gives the same answer. A resample's median depends only on which order statistics of the
sorted values it picks, and the k-th smallest of n uniform draws is Beta(k, n − k + 1)
distributed: so each resample's median is drawn with one or two random numbers, not n, and
the same distribution as drawing n values (``tests/test_compare.py`` holds it to an
enumeration of every resample). Ten thousand resamples of groups of any size take a few
hundredths of a second.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from telemetry.errors import ConfigError, TelemetryError
from telemetry.text import printable

if TYPE_CHECKING:
    import polars as pl

    from telemetry.analyzer import TelemetryAnalyzer

# The keys that choose builds by a column of theirs; any other key is a label.
COLUMNS: Final = ("branch", "tool", "host", "commit")
RESAMPLES: Final = 10_000
SEED: Final = 20251027
CONFIDENCE: Final = 0.95
# A median and its bootstrap need two builds at the least; below WEAK_BELOW on a side the
# percentile interval is known to be too narrow, so the verdict says the comparison is weak.
MIN_BUILDS: Final = 2
WEAK_BELOW: Final = 10
# The exact Mann–Whitney distribution is counted when there are no ties and at most this
# many pairs (well under a tenth of a second); else the normal approximation is used.
EXACT_PAIRS: Final = 2_500
# How many of the builds in both groups an error names.
_NAMED: Final = 5

Metric: TypeAlias = Literal["build_time", "cache_hit_rate", "parallelism_utilization"]
Unit: TypeAlias = Literal["ratio", "points"]
Test: TypeAlias = Literal["exact", "normal"]
_METRICS: Final[tuple[tuple[Metric, str, Unit], ...]] = (
    ("build_time", "duration_ms", "ratio"),
    ("cache_hit_rate", "cache_hit_rate", "points"),
    ("parallelism_utilization", "parallelism_utilization", "points"),
)


class CompareError(TelemetryError):
    """The two groups cannot be compared: too few builds, or builds in both."""


class NothingToCompare(CompareError):
    """The window (and filter) takes no build at all."""


@dataclass(slots=True, frozen=True)
class Group:
    """What a group's builds must all say (``KEY=VALUE`` pairs, every one of them).

    >>> Group.parse(["tool=ninja", "ci=true"], option="--a").describe()
    'tool=ninja, ci=true'
    """

    pairs: tuple[tuple[str, str], ...]
    option: str = "--a"

    @classmethod
    def parse(cls, texts: Iterable[str], *, option: str) -> Group:
        """The group of a command line's ``--a`` (or ``--b``) options; a label's value may be
        empty, as one recorded with ``--label KEY=`` is, a column's may not."""
        pairs: list[tuple[str, str]] = []
        for text in texts:
            key, equals, value = text.partition("=")
            if not equals or not key:
                raise ConfigError(f"{option} must be KEY=VALUE, e.g. tool=ninja, got {text!r}")
            if key in COLUMNS and value == "":
                raise ConfigError(f"{option} {key}= needs a name, got an empty one")
            for known, before in pairs:
                if known == key and before != value:
                    raise ConfigError(
                        f"{option} gives {key} twice ({before!r} and {value!r}): a build has "
                        f"one; choose one of them"
                    )
            if (key, value) not in pairs:
                pairs.append((key, value))
        if not pairs:
            raise ConfigError(f"{option} needs at least one KEY=VALUE, e.g. {option} tool=ninja")
        return cls(tuple(pairs), option)

    def describe(self) -> str:
        """The pairs as typed, escaped for a terminal."""
        return ", ".join(printable(f"{key}={value}") for key, value in self.pairs)

    def condition(self) -> pl.Expr:
        """Whether a session row is in the group (false where it lacks what is asked)."""
        import polars as pl

        conditions = [
            (pl.col(key) if key in COLUMNS else pl.col("labels").map.get(key))
            == pl.lit(value, dtype=pl.String)
            for key, value in self.pairs
        ]
        return pl.all_horizontal(conditions).fill_null(False)


@dataclass(slots=True, frozen=True)
class Sample:
    """One group's values of a metric: how many builds have it, their median and mean
    (None when none has)."""

    n: int
    median: float | None
    mean: float | None


@dataclass(slots=True, frozen=True)
class MetricComparison:
    """One metric of both groups and the change of B against A: for ``unit`` ``ratio``
    B's median / A's median − 1 (−0.18: 18% less), for ``points`` B's median − A's median.
    ``change`` is None when a group has fewer than two values (or, for a ratio, A's median
    is 0), the interval when a resample's ratio is unbounded (A's resampled median 0)."""

    metric: Metric
    unit: Unit
    a: Sample
    b: Sample
    change: float | None
    low: float | None
    high: float | None
    p_value: float | None
    test: Test | None

    @property
    def significant(self) -> bool:
        """Whether the confidence interval excludes no change."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass(slots=True, frozen=True)
class Comparison:
    """Two groups of builds compared on build time, cache hit rate and utilization."""

    a: Group
    b: Group
    build_time: MetricComparison
    cache_hit_rate: MetricComparison
    parallelism_utilization: MetricComparison
    confidence: float
    resamples: int
    seed: int

    @property
    def metrics(self) -> tuple[MetricComparison, ...]:
        return (self.build_time, self.cache_hit_rate, self.parallelism_utilization)

    @property
    def weak(self) -> bool:
        """Whether a group has too few builds for the interval to be trusted."""
        return min(self.build_time.a.n, self.build_time.b.n) < WEAK_BELOW

    def verdict(self) -> str:
        """One line on build time: ``B is 18% faster (95% CI 12–23%), n=20/20``, or
        ``no significant difference (95% CI -5–+9%), n=12/14``."""
        time = self.build_time
        counts = f"n={time.a.n}/{time.b.n}"
        weak = f"; weak: fewer than {WEAK_BELOW} builds in a group" if self.weak else ""
        level = f"{self.confidence * 100:.0f}% CI"
        if time.change is None:
            return f"cannot compare build times: A's median build time is 0 ms, {counts}"
        if time.low is None or time.high is None:
            return f"cannot tell: A's resampled median build time reaches 0 ms, {counts}{weak}"
        if not time.significant:
            low, high = _percents(time.low, time.high, signed=True)
            return f"no significant difference ({level} {low}–{high}%), {counts}{weak}"
        word = "faster" if time.change < 0 else "slower"
        change, near, far = _percents(abs(time.change), *sorted((abs(time.low), abs(time.high))))
        return f"B is {change}% {word} ({level} {near}–{far}%), {counts}{weak}"


def compare(
    analyzer: TelemetryAnalyzer,
    a: Group,
    b: Group,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Comparison:
    """Compare the builds of groups ``a`` and ``b`` among those the analyzer's window (and
    filter) takes: :class:`CompareError` when a build is in both, or a group has fewer than
    :data:`MIN_BUILDS`.

    >>> compare(TelemetryAnalyzer(storage), Group.parse(["tool=bazel"], option="--a"),
    ...         Group.parse(["tool=ninja"], option="--b")).verdict()  # doctest: +SKIP
    'B is 18% faster (95% CI 12–23%), n=20/20'
    """
    import polars as pl

    sessions = analyzer.sessions()
    windowed = analyzer.window.since is not None or analyzer.window.until is not None
    during = " in the selected time window" if windowed else ""
    if sessions.is_empty():
        where = printable(str(analyzer.storage.dir))
        raise NothingToCompare(
            f"no builds in {where}{during} to compare; store some with "
            f"`builder record` or `builder telemetry ingest FILE`"
        )
    marked = sessions.with_columns(_in_a=a.condition(), _in_b=b.condition())
    both = marked.filter(pl.col("_in_a") & pl.col("_in_b"))["session_id"]
    if both.len():
        named = ", ".join(printable(s) for s in both.head(_NAMED).to_list())
        more = ", ..." if both.len() > _NAMED else ""
        raise CompareError(
            f"{_plural(both.len(), 'build')} ({named}{more}) {_is_are(both.len())} in both "
            f"groups (A: {a.describe()}; B: {b.describe()}); choose groups no build is in "
            f"twice, e.g. with another --b"
        )
    values = {side: _sorted_values(marked.filter(pl.col(f"_in_{side}"))) for side in "ab"}
    for side, group in (("A", a), ("B", b)):
        count = len(values[side.lower()]["duration_ms"])
        if count < MIN_BUILDS:
            raise CompareError(
                f"group {side} ({group.option} {group.describe()}) has "
                f"{_plural(count, 'build')}{during}; a comparison needs at least "
                f"{MIN_BUILDS} in each group (builder telemetry export lists the builds with "
                f"their labels)"
            )
    rng = random.Random(seed)
    found = {
        metric: _compare_metric(
            metric, unit, values["a"][column], values["b"][column], rng, resamples
        )
        for metric, column, unit in _METRICS
    }
    return Comparison(
        a=a,
        b=b,
        build_time=found["build_time"],
        cache_hit_rate=found["cache_hit_rate"],
        parallelism_utilization=found["parallelism_utilization"],
        confidence=CONFIDENCE,
        resamples=resamples,
        seed=seed,
    )


def _sorted_values(sessions: pl.DataFrame) -> dict[str, list[float]]:
    """Each metric's known values in a group's builds, ascending."""
    import polars as pl

    row = sessions.select(
        pl.col(column).drop_nulls().cast(pl.Float64).sort().implode() for _, column, _ in _METRICS
    ).row(0, named=True)
    return {column: list(row[column]) for _, column, _ in _METRICS}


def _compare_metric(
    metric: Metric,
    unit: Unit,
    a: Sequence[float],
    b: Sequence[float],
    rng: random.Random,
    resamples: int,
) -> MetricComparison:
    sample_a, sample_b = _sample(a), _sample(b)
    if len(a) < MIN_BUILDS or len(b) < MIN_BUILDS:
        return MetricComparison(metric, unit, sample_a, sample_b, None, None, None, None, None)
    assert sample_a.median is not None and sample_b.median is not None
    p_value, test = mann_whitney(a, b)
    if unit == "ratio" and sample_a.median == 0:
        return MetricComparison(metric, unit, sample_a, sample_b, None, None, None, p_value, test)
    change = _change(unit)
    low, high = bootstrap_interval(a, b, change, rng=rng, resamples=resamples)
    return MetricComparison(
        metric,
        unit,
        sample_a,
        sample_b,
        change(sample_a.median, sample_b.median),
        low,
        high,
        p_value,
        test,
    )


def _change(unit: Unit) -> Callable[[float, float], float]:
    if unit == "points":
        return lambda a, b: b - a

    def ratio(a: float, b: float) -> float:
        if a == 0:
            return 0.0 if b == 0 else math.inf
        return b / a - 1

    return ratio


def _sample(values: Sequence[float]) -> Sample:
    if not values:
        return Sample(0, None, None)
    return Sample(len(values), _median(values), math.fsum(values) / len(values))


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# -- the bootstrap ----------------------------------------------------------------------------


def resampled_medians(ordered: Sequence[float], *, rng: random.Random, count: int) -> list[float]:
    """The medians of ``count`` resamples (n draws with replacement) of ``ordered`` (sorted
    ascending): a resample's k-th smallest is ``ordered[floor(n · U)]`` where U, the k-th
    smallest of n uniform numbers, is Beta(k, n − k + 1); the next one up lies above it as
    the smallest of the other n − k, Beta(1, n − k) of the rest of the way.

    >>> resampled_medians([5.0], rng=random.Random(1), count=2)
    [5.0, 5.0]
    """
    n = len(ordered)
    k = (n + 1) // 2
    last = n - 1
    if n % 2:
        return [ordered[min(int(rng.betavariate(k, n - k + 1) * n), last)] for _ in range(count)]
    above = n - k
    medians = []
    for _ in range(count):
        lower = rng.betavariate(k, n - k + 1)
        # 1 − U^(1/m) is Beta(1, m); 1 − random() lies in (0, 1], so the power is defined.
        upper = lower + (1 - lower) * (1 - (1 - rng.random()) ** (1 / above))
        below, above_it = ordered[min(int(lower * n), last)], ordered[min(int(upper * n), last)]
        medians.append((below + above_it) / 2)
    return medians


def bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    change: Callable[[float, float], float],
    *,
    rng: random.Random,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float | None, float | None]:
    """The percentile bootstrap interval of ``change(median A, median B)``, each group
    (sorted ascending) resampled on its own: the resampled changes' order statistics at
    ⌊R·α/2⌋ and ⌈R·(1 − α/2)⌉ − 1 (0-based), no interpolation, so each end is a change some
    resample gave. An unbounded end (A's resampled median 0 in a ratio) is None.

    >>> bootstrap_interval([1.0, 1.0], [2.0, 2.0], lambda a, b: b / a - 1,
    ...                    rng=random.Random(1), resamples=100)
    (1.0, 1.0)
    """
    medians_a = resampled_medians(a, rng=rng, count=resamples)
    medians_b = resampled_medians(b, rng=rng, count=resamples)
    changes = sorted(change(x, y) for x, y in zip(medians_a, medians_b, strict=True))
    tail = (1 - confidence) / 2
    low = changes[math.floor(resamples * tail)]
    high = changes[math.ceil(resamples * (1 - tail)) - 1]
    return (
        low if math.isfinite(low) else None,
        high if math.isfinite(high) else None,
    )


# -- the rank test ----------------------------------------------------------------------------


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, Test]:
    """The two-sided p-value of the Mann–Whitney U test of ``a`` against ``b`` and how it was
    found: exactly (the count of the orderings as extreme) when no value is tied and there
    are at most :data:`EXACT_PAIRS` pairs, else by the normal approximation with the ties
    correction and a continuity correction of 0.5 (as ``scipy.stats.mannwhitneyu`` does).

    >>> mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    (0.1, 'exact')
    """
    m, n = len(a), len(b)
    ranked = sorted([*((x, 0) for x in a), *((y, 1) for y in b)])
    rank_sum_a = 0.0
    tie_term = 0
    start = 0
    while start < len(ranked):
        end = start
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[start][0]:
            end += 1
        size = end - start + 1
        mid_rank = (start + end) / 2 + 1
        rank_sum_a += mid_rank * sum(1 for _, side in ranked[start : end + 1] if side == 0)
        tie_term += size**3 - size
        start = end + 1
    u = rank_sum_a - m * (m + 1) / 2  # pairs (x, y) with x > y, a tie counting one half
    pairs = m * n
    if tie_term == 0 and pairs <= EXACT_PAIRS:
        counts = _u_counts(min(m, n), max(m, n))
        tail = sum(counts[: int(min(u, pairs - u)) + 1])
        return min(1.0, 2 * tail / math.comb(m + n, m)), "exact"
    total = m + n
    variance = pairs / 12 * ((total + 1) - tie_term / (total * (total - 1)))
    if variance <= 0:  # every value the same: nothing tells the groups apart
        return 1.0, "normal"
    z = (abs(u - pairs / 2) - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))), "normal"


def _u_counts(m: int, n: int) -> list[int]:
    """How many of the C(m + n, m) orderings of two groups of m and n distinct values give
    each U from 0 to m·n: the coefficients of the Gaussian binomial coefficient
    ∏ᵢ (1 − q^(n+i)) / (1 − q^i), i = 1..m.

    >>> _u_counts(2, 2)
    [1, 1, 2, 1, 1]
    """
    size = m * n + 1
    counts = [1] + [0] * (size - 1)
    for i in range(1, m + 1):
        shift = n + i
        for k in range(size - 1, shift - 1, -1):  # times (1 − q^shift)
            counts[k] -= counts[k - shift]
        for k in range(i, size):  # divided by (1 − q^i)
            counts[k] += counts[k - i]
    return counts


# -- rendering --------------------------------------------------------------------------------

_TITLES: Final[dict[Metric, str]] = {
    "build_time": "Build Time",
    "cache_hit_rate": "Cache Hit Rate",
    "parallelism_utilization": "Parallelism Utilization",
}
_JSON_KEYS: Final[dict[Metric, str]] = {
    "build_time": "buildTime",
    "cache_hit_rate": "cacheHitRate",
    "parallelism_utilization": "parallelismUtilization",
}


def render(comparison: Comparison, *, color: bool = False) -> str:
    """The comparison as text, ending in a newline."""
    title = "=== A/B Comparison ==="
    lines = [
        f"\x1b[1m{title}\x1b[0m" if color else title,
        "",
        f"A: {comparison.a.describe()} ({_plural(comparison.build_time.a.n, 'build')})",
        f"B: {comparison.b.describe()} ({_plural(comparison.build_time.b.n, 'build')})",
    ]
    level = f"{comparison.confidence * 100:.0f}% CI"
    for found in comparison.metrics:
        lines += ["", f"{_TITLES[found.metric]}:"]
        for side, sample in (("A", found.a), ("B", found.b)):
            lines.append(f"  {side}: {_sample_text(found, sample)}")
        lines.append(f"  Change: {_change_text(found, level)}")
    lines += ["", f"Verdict: {comparison.verdict()}"]
    return "\n".join(lines) + "\n"


def _sample_text(found: MetricComparison, sample: Sample) -> str:
    if sample.median is None or sample.mean is None:
        return "n/a (no build reported targets)"
    if found.unit == "ratio":
        return f"median {sample.median:.0f} ms, mean {sample.mean:.0f} ms (n={sample.n})"
    return f"median {sample.median:.1f}%, mean {sample.mean:.1f}% (n={sample.n})"


def _change_text(found: MetricComparison, level: str) -> str:
    p_value = "" if found.p_value is None else f", Mann-Whitney p{_p_text(found.p_value)}"
    if found.change is None:
        if found.a.n < MIN_BUILDS or found.b.n < MIN_BUILDS:
            return f"n/a (fewer than {MIN_BUILDS} builds with targets in a group)"
        # No ratio to A's median of 0, but the rank test still compares the two groups.
        return f"n/a (A's median is 0){p_value}"
    scale, suffix = (100, "%") if found.unit == "ratio" else (1, " points")
    change = f"{_signed(found.change * scale)}{suffix}"
    if found.low is None or found.high is None:
        interval = f"{level} n/a"
    else:
        low, high = _signed(found.low * scale), _signed(found.high * scale)
        interval = f"{level} {low} to {high}{suffix}"
    mark = ", significant" if found.significant else ""
    return f"{change} ({interval}){p_value}{mark}"


def comparison_json(comparison: Comparison) -> str:
    """The comparison's numbers, unrounded, as a JSON object (camelCase keys); a change is
    a fraction of A's median (``ratio``) or percentage points (``points``)."""
    import json

    def group(found: Group, n: int) -> dict[str, object]:
        return {"select": dict(found.pairs), "builds": n}

    def metric(found: MetricComparison) -> dict[str, object]:
        return {
            "unit": found.unit,
            "a": _sample_json(found.a),
            "b": _sample_json(found.b),
            "change": found.change,
            "ciLow": found.low,
            "ciHigh": found.high,
            "significant": found.significant,
            "pValue": found.p_value,
            "test": found.test,
        }

    document = {
        "a": group(comparison.a, comparison.build_time.a.n),
        "b": group(comparison.b, comparison.build_time.b.n),
        "confidence": comparison.confidence,
        "resamples": comparison.resamples,
        "seed": comparison.seed,
        **{_JSON_KEYS[found.metric]: metric(found) for found in comparison.metrics},
        "weak": comparison.weak,
        "verdict": comparison.verdict(),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _sample_json(sample: Sample) -> dict[str, object]:
    return {"n": sample.n, "median": sample.median, "mean": sample.mean}


def _percents(*fractions: float, signed: bool = False) -> list[str]:
    """Changes as whole percent, all to a tenth when one of them is under 1% (and not 0), so
    that none reads as 0 and they read alike.

    >>> _percents(-0.05, 0.09, signed=True), _percents(0.004, 0.002, 0.011)
    (['-5', '+9'], ['0.4', '0.2', '1.1'])
    """
    values = [fraction * 100 for fraction in fractions]
    digits = 1 if any(0 < abs(value) < 1 for value in values) else 0
    if signed:
        return [_signed(value, digits) for value in values]
    return [f"{value:.{digits}f}" for value in values]


def _signed(value: float, digits: int = 1) -> str:
    """``+2.5``, ``-0.3``; ``+0.0`` for what rounds to 0 (never ``-0.0``).

    >>> _signed(-1e-15), _signed(-0.04), _signed(12.345, 0)
    ('+0.0', '+0.0', '+12')
    """
    rounded = round(value, digits)
    return f"{rounded + 0.0 if rounded else 0.0:+.{digits}f}"


def _p_text(p: float) -> str:
    return "<0.0001" if p < 0.0001 else f"={p:.4f}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _is_are(count: int) -> str:
    return "is" if count == 1 else "are"


__all__ = [
    "CompareError",
    "Comparison",
    "Group",
    "MetricComparison",
    "NothingToCompare",
    "Sample",
    "bootstrap_interval",
    "compare",
    "comparison_json",
    "mann_whitney",
    "render",
    "resampled_medians",
]
