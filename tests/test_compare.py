"""A/B comparison (telemetry/compare.py and `builder telemetry compare`): hand-made groups
whose verdict is certain, medians and means by hand, the bootstrap interval against the
exact bootstrap distribution (counted with binomials and by enumerating every resample,
never with the sampler under test), the Mann–Whitney p-values by hand, and the errors."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import statistics
from collections import Counter
from fractions import Fraction

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.compare import (
    RESAMPLES,
    SEED,
    CompareError,
    Comparison,
    Group,
    MetricComparison,
    Sample,
    bootstrap_interval,
    compare,
    mann_whitney,
    render,
    resampled_medians,
)
from telemetry.errors import ConfigError
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import HOUR, T0, Runner, _event

# -- hand-made histories ----------------------------------------------------------------------


def _build(
    session: str,
    start: int,
    duration: int,
    *,
    built: int = 1,
    cached: int = 1,
    labels: dict[str, str] | None = None,
    says: dict[str, str] | None = None,
) -> list[str]:
    """A build of ``duration`` ms on 2 workers: ``built`` targets that each ran the whole
    build and ``cached`` cache hits, so its hit rate is 100·cached/(built + cached) and its
    utilization 100·built·duration/(duration·2) = 50·built. No targets at all: no rates.
    ``says`` adds fields of build_started (tool, branch, host, commit)."""
    lines = [
        _event("build_started", session, start, parallelism=2, labels=labels or {}, **(says or {}))
    ]
    end = start + duration
    for i in range(built):
        lines.append(
            _event(
                "target_finished",
                session,
                end,
                target=f"//t:b{i}",
                status="built",
                duration_ms=duration,
            )
        )
    for i in range(cached):
        lines.append(_event("target_finished", session, end, target=f"//t:c{i}", status="cached"))
    lines.append(_event("build_finished", session, end, success=True))
    return lines


A_TIMES = [2000 + 100 * i for i in range(11)]  # 2000 .. 3000: median 2500, mean 2500
B_TIMES = [1000 + 50 * i for i in range(11)]  # 1000 .. 1500: median 1250, mean 1250
A_SAYS = {"tool": "make", "branch": "main", "host": "ws-1", "commit": "aaaa111"}
B_SAYS = {"tool": "ninja", "branch": "fast-link", "host": "ws-2", "commit": "bbbb222"}


def certain_history() -> list[str]:
    """Group A (label exp=base, tool make, branch main, host ws-1, commit aaaa111): 11 builds
    of 2000..3000 ms, 1 built + 1 cached each (hit rate 50%, utilization 50%). Group B
    (exp=fast, ninja, fast-link, ws-2, bbbb222): 11 builds of 1000..1500 ms, 2 built + 6
    cached each (hit rate 75%, utilization 100%). Every B build is faster than every A one.
    The groups' builds alternate in time, an hour apart."""
    lines: list[str] = []
    for i, (a, b) in enumerate(zip(A_TIMES, B_TIMES, strict=True)):
        lines += _build(f"a{i}", T0 + 2 * i * HOUR, a, labels={"exp": "base"}, says=A_SAYS)
        lines += _build(
            f"b{i}",
            T0 + (2 * i + 1) * HOUR,
            b,
            built=2,
            cached=6,
            labels={"exp": "fast"},
            says=B_SAYS,
        )
    return lines


def same_history() -> list[str]:
    """Groups exp=one and exp=two with the same 11 build times, 1000..2000 ms."""
    lines: list[str] = []
    for i in range(11):
        lines += _build(f"one{i}", T0 + 2 * i * HOUR, 1000 + 100 * i, labels={"exp": "one"})
        lines += _build(f"two{i}", T0 + (2 * i + 1) * HOUR, 1000 + 100 * i, labels={"exp": "two"})
    return lines


def _store(storage: TelemetryStorage, lines: list[str]) -> TelemetryAnalyzer:
    result = ingest_jsonl(storage, lines)
    assert not result.problems
    return TelemetryAnalyzer(storage)


def _group(*pairs: str, option: str = "--a") -> Group:
    return Group.parse(pairs, option=option)


# -- the exact bootstrap, a second route --------------------------------------------------------


def _median_distribution(values: list[int]) -> list[tuple[Fraction, Fraction]]:
    """The exact bootstrap distribution of the median of an odd number n of distinct values:
    the resample's median is at most the j-th smallest (1-based) when at least (n + 1)/2 of
    its n draws are, each with probability j/n, a binomial tail."""
    n = len(values)
    k = (n + 1) // 2

    def at_most(j: int) -> Fraction:
        p = Fraction(j, n)
        return sum(
            (math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(k, n + 1)), Fraction(0)
        )

    ordered = sorted(values)
    return [(Fraction(x), at_most(j + 1) - at_most(j)) for j, x in enumerate(ordered)]


def _exact_interval(a: list[int], b: list[int]) -> tuple[float, float]:
    """The 95% percentile interval of median(B*)/median(A*) − 1 over the exact bootstrap
    distribution, as the sampler's order statistics 250 and 9749 (of 10,000) estimate it:
    the smallest change whose cumulative probability passes 250/10,000, and the smallest
    reaching 9,750/10,000. Each of those two probabilities is asserted to lie inside its
    change's jump of the distribution function, more than 2 standard deviations of the
    estimate (√(0.025·0.975/10,000) = 0.00156) from either end: the fixed-seed Monte Carlo
    lands on that change not by the luck of its seed."""
    ratios: dict[Fraction, Fraction] = {}
    for x, p in _median_distribution(a):
        for y, q in _median_distribution(b):
            change = y / x - 1
            ratios[change] = ratios.get(change, Fraction(0)) + p * q
    cumulative = Fraction(0)
    ends: list[float] = []
    wanted = [Fraction(251, 10_000), Fraction(9_750, 10_000)]
    sd = math.sqrt(0.025 * 0.975 / RESAMPLES)
    for change, p in sorted(ratios.items()):
        before, cumulative = cumulative, cumulative + p
        while wanted and cumulative >= wanted[0]:
            assert float(wanted[0] - before) > 2 * sd and float(cumulative - wanted[0]) > 2 * sd
            ends.append(float(change))
            wanted.pop(0)
    return ends[0], ends[1]


def test_resampled_medians_follow_every_resample_counted() -> None:
    """The order-statistic sampler against every one of the n^n resamples of 3 and of 4
    values (even n: the mean of the middle two), 100,000 draws each: each median's
    frequency within 0.006 of its exact probability (over 4 standard deviations)."""
    for values in ([1.0, 2.0, 4.0], [1.0, 2.0, 4.0, 8.0]):
        n = len(values)
        exact = Counter(statistics.median(r) for r in itertools.product(values, repeat=n))
        draws = 100_000
        seen = Counter(resampled_medians(values, rng=random.Random(7), count=draws))
        assert set(seen) <= set(exact)
        for median, count in exact.items():
            assert seen[median] / draws == pytest.approx(count / n**n, abs=0.006), median
    # n = 4: 10 distinct medians (1, 1.5, 2, 2.5, 3, 4, 4.5, 5, 6, 8), e.g. P(1) = 13/256:
    # at least three draws of 1 (4·3 + 1 resamples).
    assert Counter(statistics.median(r) for r in itertools.product([1, 2, 4, 8], repeat=4))[1] == 13


def test_interval_is_the_exact_bootstrap_percentiles() -> None:
    a = [float(x) for x in A_TIMES]
    b = [float(x) for x in B_TIMES]
    low, high = bootstrap_interval(a, b, lambda x, y: y / x - 1, rng=random.Random(SEED))
    expected = _exact_interval(A_TIMES, B_TIMES)
    # By hand: the interval's ends are changes between order statistics of the groups,
    # 1100/2600 − 1 and 1300/2200 − 1.
    assert expected == pytest.approx((1100 / 2600 - 1, 1300 / 2200 - 1), rel=1e-12)
    assert (low, high) == pytest.approx(expected, rel=1e-12)
    assert low is not None and high is not None
    # and it lies within the changes any resample could give: 1000/3000 − 1 to 1500/2000 − 1
    assert 1000 / 3000 - 1 <= low <= high <= 1500 / 2000 - 1


def test_interval_of_one_value_each_is_that_change() -> None:
    assert bootstrap_interval(
        [4.0, 4.0, 4.0], [3.0, 3.0], lambda x, y: y / x - 1, rng=random.Random(1), resamples=50
    ) == (-0.25, -0.25)


# -- the rank test ----------------------------------------------------------------------------


def test_mann_whitney_exact_when_no_value_is_tied() -> None:
    # Every A below every B: of the C(6, 3) = 20 orderings one gives U = 0 and one U = 9, so
    # the two-sided p is 2/20.
    assert mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == (0.1, "exact")
    # A = 1, 2, 5 against B = 3, 4, 6, 7: U_A counts the pairs with A above, 5 > 3 and
    # 5 > 4: U = 2 of 12. Orderings with U ≤ 2 are the partitions of 0, 1 and 2 into at most
    # three parts of at most four: 1 + 1 + 2 = 4 of C(7, 3) = 35; p = 2·4/35.
    p, test = mann_whitney([1.0, 2.0, 5.0], [3.0, 4.0, 6.0, 7.0])
    assert test == "exact"
    assert p == pytest.approx(8 / 35, rel=1e-12)
    # Two of each, interleaved (U = 2 of 4, the middle): p is 1.
    assert mann_whitney([1.0, 4.0], [2.0, 3.0]) == (1.0, "exact")
    # 11 against 11, every A above every B: 2 of C(22, 11) = 705,432 orderings.
    p, test = mann_whitney([float(x) for x in A_TIMES], [float(x) for x in B_TIMES])
    assert test == "exact"
    assert p == pytest.approx(2 / 705_432, rel=1e-12)


def test_mann_whitney_normal_with_ties() -> None:
    """A = 1 2 2 3, B = 2 3 4 5 5. Mid-ranks: 1 → 1; the three 2s (2, 3, 4) → 3; the two 3s
    (5, 6) → 5.5; 4 → 7; the two 5s (8, 9) → 8.5. R_A = 1 + 3 + 3 + 5.5 = 12.5, U_A = 12.5 −
    4·5/2 = 2.5, mean m·n/2 = 10. Ties Σ(t³ − t) = 24 + 6 + 6 = 36, N = 9: variance
    20/12 · (10 − 36/72) = 15.8333, sd 3.97911. z = (7.5 − 0.5)/3.97911 = 1.75919; a normal
    table gives a two-sided p of 2·(1 − 0.96073) = 0.0785."""
    p, test = mann_whitney([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0, 5.0])
    assert test == "normal"
    assert p == pytest.approx(0.0785, abs=0.0002)
    # Every value the same: nothing tells the groups apart.
    assert mann_whitney([5.0, 5.0], [5.0, 5.0, 5.0]) == (1.0, "normal")


# -- the library ------------------------------------------------------------------------------


def test_b_faster_every_time(storage: TelemetryStorage) -> None:
    found = compare(_store(storage, certain_history()), _group("exp=base"), _group("exp=fast"))
    time = found.build_time
    assert (time.a.n, time.a.median, time.a.mean) == (11, 2500.0, 2500.0)
    assert (time.b.n, time.b.median, time.b.mean) == (11, 1250.0, 1250.0)
    assert time.change == pytest.approx(1250 / 2500 - 1)  # −50%
    assert (time.low, time.high) == pytest.approx(_exact_interval(A_TIMES, B_TIMES), rel=1e-12)
    assert time.significant
    assert time.p_value == pytest.approx(2 / 705_432, rel=1e-12)
    # Rates in points: every A build 50% / 50%, every B build 75% / 100%.
    hits, use = found.cache_hit_rate, found.parallelism_utilization
    assert (hits.a.median, hits.b.median, hits.change) == (50.0, 75.0, 25.0)
    assert (hits.low, hits.high) == (25.0, 25.0)
    assert (use.a.median, use.b.median, use.change) == (50.0, 100.0, 50.0)
    assert hits.significant and use.significant
    assert not found.weak
    # −57.69% and −40.91%: 58 and 41 as whole percent
    assert found.verdict() == "B is 50% faster (95% CI 41–58%), n=11/11"


def test_same_builds_no_significant_difference(storage: TelemetryStorage) -> None:
    found = compare(_store(storage, same_history()), _group("exp=one"), _group("exp=two"))
    time = found.build_time
    assert (time.a.median, time.b.median, time.change) == (1500.0, 1500.0, 0.0)
    times = [1000 + 100 * i for i in range(11)]
    low, high = _exact_interval(times, times)
    # By hand: 1200/1600 − 1 = −25% and 1600/1200 − 1 = +33%.
    assert (low, high) == pytest.approx((-0.25, 1 / 3), rel=1e-12)
    assert (time.low, time.high) == pytest.approx((low, high), rel=1e-12)
    assert not time.significant
    assert time.p_value == 1.0  # U = 60.5 of 121, the middle; ties: the normal route
    assert found.verdict() == "no significant difference (95% CI -25–+33%), n=11/11"


def test_a_slower_b_says_slower(storage: TelemetryStorage) -> None:
    found = compare(_store(storage, certain_history()), _group("exp=fast"), _group("exp=base"))
    # 2500/1250 − 1 = +100%; the interval is the other one's turned over: 2600/1100 − 1 =
    # +136% and 2200/1300 − 1 = +69%.
    expected = _exact_interval(B_TIMES, A_TIMES)
    assert expected == pytest.approx((2200 / 1300 - 1, 2600 / 1100 - 1), rel=1e-12)
    time = found.build_time
    assert (time.low, time.high) == pytest.approx(expected, rel=1e-12)
    assert found.verdict() == "B is 100% slower (95% CI 69–136%), n=11/11"


@pytest.mark.parametrize("key", ["tool", "branch", "host", "commit"])
def test_groups_chosen_by_a_column(storage: TelemetryStorage, key: str) -> None:
    analyzer = _store(storage, certain_history())
    found = compare(analyzer, _group(f"{key}={A_SAYS[key]}"), _group(f"{key}={B_SAYS[key]}"))
    assert (found.build_time.a.median, found.build_time.b.median) == (2500.0, 1250.0)
    assert found.verdict() == "B is 50% faster (95% CI 41–58%), n=11/11"


def test_every_pair_of_a_group_must_match(storage: TelemetryStorage) -> None:
    """A: tool make and label exp=base: the 11 A builds; B: exp=fast but branch main: none."""
    analyzer = _store(storage, certain_history())
    with pytest.raises(CompareError, match=r"group B \(--b exp=fast, branch=main\) has 0 builds"):
        compare(
            analyzer,
            _group("tool=make", "exp=base"),
            _group("exp=fast", "branch=main", option="--b"),
        )


def test_window_applies_to_both_groups(storage: TelemetryStorage) -> None:
    """From T0 + 10 h: builds a5..a10 (2500..3000 ms) and b5..b10 (1250..1500 ms)."""
    _store(storage, certain_history())
    from telemetry.window import Window

    since = Window.parse("2025-10-28T00:23:20", None)  # T0 + 10 h
    found = compare(
        TelemetryAnalyzer(storage, window=since), _group("exp=base"), _group("exp=fast")
    )
    time = found.build_time
    assert (time.a.n, time.b.n) == (6, 6)
    assert (time.a.median, time.b.median) == (2750.0, 1375.0)  # (2700 + 2800)/2, (1350 + 1400)/2
    assert found.weak
    assert found.verdict().endswith("n=6/6; weak: fewer than 10 builds in a group")


def test_rates_over_the_builds_that_reported_targets(storage: TelemetryStorage) -> None:
    """A: 3 builds, one without targets (its rates unknown); B: 3 builds with targets."""
    lines = (
        _build("a0", T0, 3000, labels={"g": "a"})
        + _build("a1", T0 + HOUR, 3100, cached=3, labels={"g": "a"})  # hit 75%
        + _build("a2", T0 + 2 * HOUR, 3200, built=0, cached=0, labels={"g": "a"})
        + _build("b0", T0 + 3 * HOUR, 1000, labels={"g": "b"})
        + _build("b1", T0 + 4 * HOUR, 1100, labels={"g": "b"})
        + _build("b2", T0 + 5 * HOUR, 1200, labels={"g": "b"})
    )
    found = compare(_store(storage, lines), _group("g=a"), _group("g=b"))
    assert found.build_time.a.n == 3
    hits = found.cache_hit_rate
    # A's known hit rates 50 and 75: median and mean 62.5; B's 50, 50, 50
    assert (hits.a.n, hits.a.median, hits.a.mean) == (2, 62.5, 62.5)
    assert (hits.b.n, hits.b.median, hits.change) == (3, 50.0, -12.5)
    assert found.verdict().endswith("n=3/3; weak: fewer than 10 builds in a group")
    # Bounded by every resample: 1000/3200 − 1 to 1200/3000 − 1
    time = found.build_time
    assert time.low is not None and time.high is not None and time.change is not None
    assert 1000 / 3200 - 1 <= time.low <= time.change <= time.high <= 1200 / 3000 - 1


def test_a_rate_with_fewer_than_two_values_is_not_compared(storage: TelemetryStorage) -> None:
    lines = (
        _build("a0", T0, 3000, labels={"g": "a"})
        + _build("a1", T0 + HOUR, 3100, built=0, cached=0, labels={"g": "a"})
        + _build("b0", T0 + 2 * HOUR, 1000, labels={"g": "b"})
        + _build("b1", T0 + 3 * HOUR, 1100, labels={"g": "b"})
    )
    found = compare(_store(storage, lines), _group("g=a"), _group("g=b"))
    hits = found.cache_hit_rate
    assert (hits.a.n, hits.change, hits.low, hits.p_value) == (1, None, None, None)
    assert found.build_time.change == pytest.approx(1050 / 3050 - 1)


@pytest.mark.parametrize(
    ("a_times", "verdict"),
    [
        # A's median is 0 ms: no ratio to take
        ([0, 0, 100], "cannot compare build times: A's median build time is 0 ms, n=3/2"),
        # A's median 100 ms, but a resample with two of its 0s has median 0 (about 26% of
        # them): the interval's upper end is unbounded
        (
            [0, 100, 100],
            "cannot tell: A's resampled median build time reaches 0 ms, n=3/2; weak: fewer "
            "than 10 builds in a group",
        ),
    ],
)
def test_builds_of_no_time(storage: TelemetryStorage, a_times: list[int], verdict: str) -> None:
    lines = [
        line
        for i, duration in enumerate(a_times)
        for line in _build(f"a{i}", T0 + i * HOUR, duration, labels={"g": "a"})
    ]
    lines += _build("b0", T0 + 5 * HOUR, 50, labels={"g": "b"})
    lines += _build("b1", T0 + 6 * HOUR, 60, labels={"g": "b"})
    found = compare(_store(storage, lines), _group("g=a"), _group("g=b"))
    assert found.verdict() == verdict
    assert not found.build_time.significant


def test_a_zero_median_still_shows_the_rank_tests_p_value(storage: TelemetryStorage) -> None:
    """No ratio to A's median of 0, but the Mann–Whitney test compared the groups: its
    p-value is shown."""
    lines = [
        line
        for i, duration in enumerate([0, 0, 100])
        for line in _build(f"a{i}", T0 + i * HOUR, duration, labels={"g": "a"})
    ]
    lines += _build("b0", T0 + 5 * HOUR, 50, labels={"g": "b"})
    lines += _build("b1", T0 + 6 * HOUR, 60, labels={"g": "b"})
    found = compare(_store(storage, lines), _group("g=a"), _group("g=b"))
    # Ranks of 0, 0 | 50, 60 | 100: the two 0s tie at 1.5, so A's rank sum is 1.5 + 1.5 + 5
    # = 8 and U = 8 − 3·4/2 = 2 of 3·2 = 6 pairs. Tied: the normal approximation, variance
    # 6/12 · ((5 + 1) − (2³ − 2)/(5·4)) = 2.85, z = (|2 − 3| − 0.5)/√2.85, p = erfc(z/√2)
    # = 0.7671.
    p = math.erfc((abs(2 - 3) - 0.5) / math.sqrt(2.85) / math.sqrt(2))
    time = found.build_time
    assert (time.change, time.test) == (None, "normal")
    assert time.p_value == pytest.approx(p, rel=1e-12)
    assert "  Change: n/a (A's median is 0), Mann-Whitney p=0.7671\n" in render(found)


def test_same_store_same_answer(storage: TelemetryStorage) -> None:
    analyzer = _store(storage, same_history())
    first = compare(analyzer, _group("exp=one"), _group("exp=two"))
    assert compare(analyzer, _group("exp=one"), _group("exp=two")) == first


def test_group_parse_refuses_what_no_build_can_match() -> None:
    with pytest.raises(ConfigError, match=r"--a must be KEY=VALUE, e\.g\. tool=ninja, got 'ci'"):
        _group("ci")
    with pytest.raises(ConfigError, match=r"--b must be KEY=VALUE"):
        _group("=x", option="--b")
    with pytest.raises(ConfigError, match=r"--a tool= needs a name"):
        _group("tool=")
    with pytest.raises(ConfigError, match=r"--a gives tool twice \('make' and 'ninja'\)"):
        _group("tool=make", "tool=ninja")
    # a label may be empty, and a pair given twice is one
    assert _group("ci=", "ci=").pairs == (("ci", ""),)


def _made(change: float, low: float, high: float) -> Comparison:
    """A comparison of 200 builds each with the build-time change and interval given."""
    time = MetricComparison(
        "build_time", "ratio", Sample(200, 1000.0, 1000.0), Sample(200, 996.0, 996.0),
        change, low, high, 0.01, "normal",
    )  # fmt: skip
    rate = MetricComparison(
        "cache_hit_rate", "points", Sample(0, None, None), Sample(0, None, None),
        None, None, None, None, None,
    )  # fmt: skip
    return Comparison(
        _group("x=1"), _group("x=2", option="--b"), time, rate, rate, 0.95, RESAMPLES, SEED
    )


def test_small_changes_are_said_to_a_tenth() -> None:
    assert _made(-0.004, -0.006, -0.002).verdict() == (
        "B is 0.4% faster (95% CI 0.2–0.6%), n=200/200"
    )
    assert _made(0.02, 0.009, 0.031).verdict() == "B is 2.0% slower (95% CI 0.9–3.1%), n=200/200"
    assert _made(-0.0004, -0.004, 0.003).verdict() == (
        "no significant difference (95% CI -0.4–+0.3%), n=200/200"
    )
    text = render(_made(-1e-12, -0.0004, 0.0004))
    # never "-0.0": what rounds to 0 is +0.0
    assert "  Change: +0.0% (95% CI +0.0 to +0.0%), Mann-Whitney p=0.0100\n" in text
    assert "  A: n/a (no build reported targets)\n" in text
    assert "  Change: n/a (fewer than 2 builds with targets in a group)\n" in text


# -- the command ------------------------------------------------------------------------------

CERTAIN_TEXT = """\
=== A/B Comparison ===

A: exp=base (11 builds)
B: exp=fast (11 builds)

Build Time:
  A: median 2500 ms, mean 2500 ms (n=11)
  B: median 1250 ms, mean 1250 ms (n=11)
  Change: -50.0% (95% CI -57.7 to -40.9%), Mann-Whitney p<0.0001, significant

Cache Hit Rate:
  A: median 50.0%, mean 50.0% (n=11)
  B: median 75.0%, mean 75.0% (n=11)
  Change: +25.0 points (95% CI +25.0 to +25.0 points), Mann-Whitney p<0.0001, significant

Parallelism Utilization:
  A: median 50.0%, mean 50.0% (n=11)
  B: median 100.0%, mean 100.0% (n=11)
  Change: +50.0 points (95% CI +50.0 to +50.0 points), Mann-Whitney p<0.0001, significant

Verdict: B is 50% faster (95% CI 41–58%), n=11/11
"""


def _ingest(cli: Runner, lines: list[str]) -> None:
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode())
    assert stored.code == 0, stored.stderr


def test_cli_text(cli: Runner) -> None:
    _ingest(cli, certain_history())
    result = cli("telemetry", "compare", "--a", "exp=base", "--b", "exp=fast")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == CERTAIN_TEXT


def test_cli_no_difference(cli: Runner) -> None:
    _ingest(cli, same_history())
    result = cli("telemetry", "compare", "--a", "exp=one", "--b", "exp=two")
    assert result.code == 0
    assert result.stdout.endswith(
        "\nVerdict: no significant difference (95% CI -25–+33%), n=11/11\n"
    )
    assert "  Change: +0.0% (95% CI -25.0 to +33.3%), Mann-Whitney p=1.0000\n" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--a", "tool=make", "--b", "tool=ninja"),
        ("--a", "branch=main", "--b", "branch=fast-link"),
        ("--a", "host=ws-1", "--a", "exp=base", "--b", "commit=bbbb222"),
    ],
)
def test_cli_groups_by_column_and_label(cli: Runner, args: tuple[str, ...]) -> None:
    _ingest(cli, certain_history())
    result = cli("telemetry", "compare", *args)
    assert result.code == 0, result.stderr
    assert result.stdout.endswith("\nVerdict: B is 50% faster (95% CI 41–58%), n=11/11\n")


def test_cli_json(cli: Runner) -> None:
    _ingest(cli, certain_history())
    result = cli("telemetry", "compare", "--a", "exp=base", "--b", "exp=fast", "--format", "json")
    assert result.code == 0
    document = json.loads(result.stdout)
    assert document["a"] == {"select": {"exp": "base"}, "builds": 11}
    assert document["b"] == {"select": {"exp": "fast"}, "builds": 11}
    assert (document["confidence"], document["resamples"]) == (0.95, 10_000)
    time = document["buildTime"]
    assert time["unit"] == "ratio"
    assert time["a"] == {"n": 11, "median": 2500.0, "mean": 2500.0}
    assert time["change"] == pytest.approx(-0.5)
    assert (time["ciLow"], time["ciHigh"]) == pytest.approx((1100 / 2600 - 1, 1300 / 2200 - 1))
    assert (time["significant"], time["test"]) == (True, "exact")
    assert time["pValue"] == pytest.approx(2 / 705_432)
    hits = document["cacheHitRate"]
    assert (hits["unit"], hits["change"], hits["ciLow"], hits["ciHigh"]) == (
        "points",
        25.0,
        25.0,
        25.0,
    )
    assert document["parallelismUtilization"]["b"]["median"] == 100.0
    assert document["weak"] is False
    assert document["verdict"] == "B is 50% faster (95% CI 41–58%), n=11/11"


def test_cli_window(cli: Runner) -> None:
    _ingest(cli, certain_history())
    result = cli(
        "telemetry",
        "compare",
        "--a",
        "exp=base",
        "--b",
        "exp=fast",
        "--since",
        "2025-10-28T00:23:20",
    )
    assert result.code == 0
    assert "A: exp=base (6 builds)\nB: exp=fast (6 builds)\n" in result.stdout


def test_cli_status_applies_to_both_groups(cli: Runner) -> None:
    """A failed build of 100 ms in group A: counted, unless --status succeeded."""
    failed = _build("a-failed", T0 + 40 * HOUR, 100, labels={"exp": "base"})
    failed[-1] = _event("build_finished", "a-failed", T0 + 40 * HOUR + 100, success=False)
    _ingest(cli, certain_history() + failed)
    every = cli("telemetry", "compare", "--a", "exp=base", "--b", "exp=fast")
    assert "A: exp=base (12 builds)\n" in every.stdout
    # A's median is now the mean of its 6th and 7th of 12: (2400 + 2500)/2
    assert "  A: median 2450 ms," in every.stdout
    result = cli(
        "telemetry", "compare", "--a", "exp=base", "--b", "exp=fast", "--status", "succeeded"
    )
    assert result.code == 0, result.stderr
    assert result.stdout == CERTAIN_TEXT


def test_cli_builds_in_both_groups(cli: Runner) -> None:
    _ingest(cli, certain_history())
    result = cli("telemetry", "compare", "--a", "tool=ninja", "--b", "exp=fast")
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: 11 builds (b0, b1, b2, b3, b4, ...) are in both groups (A: tool=ninja; "
        "B: exp=fast); choose groups no build is in twice, e.g. with another --b\n"
    )


def test_cli_too_few_builds(cli: Runner) -> None:
    _ingest(cli, certain_history() + _build("solo", T0 + 30 * HOUR, 900, labels={"exp": "solo"}))
    result = cli("telemetry", "compare", "--a", "exp=base", "--b", "exp=solo")
    assert result.code == 1
    assert result.stderr == (
        "Error: group B (--b exp=solo) has 1 build; a comparison needs at least 2 in each "
        "group (builder telemetry export lists the builds with their labels)\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--a", "ci", "--b", "ci=false"),
            "Error: --a must be KEY=VALUE, e.g. tool=ninja, got 'ci'",
        ),
        (
            ("--a", "ci=true", "--b", "=x"),
            "Error: --b must be KEY=VALUE, e.g. tool=ninja, got '=x'",
        ),
        (("--a", "branch=", "--b", "ci=x"), "Error: --a branch= needs a name, got an empty one"),
        (("--a", "ci=true", "--b", "ci=false", "--format", "xml"), "Error: Invalid value for"),
        (("--a", "ci=true", "--b", "ci=false", "--since", "yesterday"), "Error: --since must be"),
        (("--b", "ci=false"), "Error: Missing option '--a'"),
    ],
)
def test_cli_bad_option_value(cli: Runner, args: tuple[str, ...], error: str) -> None:
    _ingest(cli, certain_history())
    result = cli("telemetry", "compare", *args)
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(error)
    assert result.stderr.count("\n") == 1


def test_cli_empty_store(cli: Runner) -> None:
    result = cli("telemetry", "compare", "--a", "ci=true", "--b", "ci=false")
    assert result.code == 1
    assert re.fullmatch(
        r"Error: no builds to compare: no telemetry data yet in \S+\. Run a build with "
        r"telemetry enabled, or store events with `builder telemetry ingest FILE`\.\n",
        result.stderr,
    ), result.stderr


def test_cli_labels_are_escaped(cli: Runner) -> None:
    lines = [
        line
        for i in range(2)
        for line in _build(f"x{i}", T0 + i * HOUR, 1000, labels={"exp": "a\x1b[2Jb"})
    ]
    _ingest(cli, lines + same_history())
    result = cli("telemetry", "compare", "--a", "exp=a\x1b[2Jb", "--b", "exp=one")
    assert result.code == 0, result.stderr
    assert "A: exp=a\\x1b[2Jb (2 builds)\n" in result.stdout
    assert "\x1b" not in result.stdout
