"""`builder telemetry regressions`: robust per-target regressions (median and MAD of executed
runs, a minimum effect as a ratio and in milliseconds) and the builds the summary flags,
explained. Every expected number is worked out by hand in the comments."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import ConfigError
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.target_regressions import (
    FlaggedBuild,
    Run,
    TargetRegression,
    ThresholdError,
    Thresholds,
    age,
    number,
    render_text,
    target_regressions,
)
from tests.conftest import HOUR, T0, Runner, _event

START = datetime(2025, 10, 27, 14, 23, 20, tzinfo=UTC)  # T0


def at(hour: int) -> datetime:
    return START + timedelta(hours=hour)


def build(session: str, hour: int, *runs: tuple[str, int, str], idle: int = 0) -> list[str]:
    """One build ``hour`` hours after T0 whose targets run one after the other, each
    (status, ms, target) with its duration_ms; it ends 100 ms (and ``idle`` ms more) after
    the last one, so it lasts Σ ms + 100 + idle."""
    ts = T0 + hour * HOUR
    lines = [_event("build_started", session, ts, parallelism=1)]
    for status, ms, target in runs:
        ts += ms
        lines.append(
            _event("target_finished", session, ts, target=target, status=status, duration_ms=ms)
        )
    lines.append(_event("build_finished", session, ts + 100 + idle, success=True))
    return lines


LIBS = ("//lib:core", "//lib:util", "//lib:net", "//lib:log", "//lib:json")


def libs(status: str, ms: int) -> list[tuple[str, int, str]]:
    return [(status, ms, lib) for lib in LIBS]


def doubled() -> list[str]:
    """Ten builds an hour apart (b01 at T0): the five libraries executed in b01 (600 ms
    each) and cached after; //app:compile steady; //app:lint noisy; //app:test 400 ms, then
    800 ms in the newest three.

    //app:test: baseline b01-b07 = 400 410 390 405 395 400 410: sorted 390 395 400 400 405
      410 410, median 400; |x-400| = 0 10 10 5 5 0 10, sorted 0 0 5 5 10 10 10: MAD 5.
      recent b08-b10 = 800 810 790: median 800. Ratio 800/400 = 2.00, +400 ms, and
      800 > 400 + 3·1.4826·5 = 422.239: regressed.
    //app:lint: baseline 200 600 200 600 200 600 400: median 400, every |x-400| is 200 but
      one 0: MAD 200. recent 700 600 650: median 650. Ratio 1.625 and +250 ms pass, but
      650 < 400 + 3·1.4826·200 = 1289.56: noise, not a regression.
    //app:compile: baseline 300 310 290 300 305 295 300 median 300; recent 300 310 305
      median 305: ratio 1.017.
    The libraries ran once: no baseline. So 8 targets, 3 checked.

    Build durations (Σ + 100): b01 3000+300+200+400+100 = 4000, b02 1420, b03 980, b04 1405,
    b05 1000, b06 1395, b07 1210, b08 300+700+800+100 = 1900, b09 1820, b10 1845. The summary
    checks the newest 3 (10 builds): b08 1900 / (11410/7 = 1630) = 1.17, b09 1820 / (13310/8
    = 1663.75) = 1.09, b10 1845 / (15130/9 = 1681.1) = 1.10: none flagged.
    """
    compile_ms = (300, 310, 290, 300, 305, 295, 300, 300, 310, 305)
    lint_ms = (200, 600, 200, 600, 200, 600, 400, 700, 600, 650)
    test_ms = (400, 410, 390, 405, 395, 400, 410, 800, 810, 790)
    lines: list[str] = []
    for i in range(10):
        lines += build(
            f"b{i + 1:02}",
            i,
            *libs("built", 600) if i == 0 else libs("cached", 0),
            ("built", compile_ms[i], "//app:compile"),
            ("built", lint_ms[i], "//app:lint"),
            ("built", test_ms[i], "//app:test"),
        )
    return lines


def clean_rebuild() -> list[str]:
    """Nine builds an hour apart (c01 at T0): c01 and c09 execute everything (five libraries
    of 600 ms, compile, lint and test); c02-c08 hit the cache for the libraries.

    Durations: c01 3000+300+400+400+100 = 4200, c02-c08 1200, c09 3000+310+390+410+100 =
    4210. The summary checks c09 (9 builds: the newest one): the mean before it is
    (4200 + 7·1200)/8 = 1575, 4210/1575 = 2.673: flagged.
    c09 executed 8 targets; the earlier builds 8, 3, 3, 3, 3, 3, 3, 3: median 3. Its hit
    rate 0/8 = 0%; earlier 0% and seven 5/8 = 62.5%: median 62.5%. Its executed time
    3000+310+390+410 = 4110 ms; earlier 4100 and seven 1100: median 1100, so 3010 ms more,
    over half of the 4210 − 1575 = 2635 ms it lost. Compile, lint and test have 8 earlier
    runs each (judged: 310 against median 300, 390 against 400, 410 against 400, none
    slower); the libraries one each (not judged): only 3 of 8 judged, too few to tell.
    Per target: compile, lint and test, newest 3 = c07 c08 c09 against c01-c06 (6 runs):
    ratios 1.0; the libraries have 2 runs. 3 checked, none regressed.
    """
    lines = build(
        "c01",
        0,
        *libs("built", 600),
        ("built", 300, "//app:compile"),
        ("built", 400, "//app:lint"),
        ("built", 400, "//app:test"),
    )
    for i in range(1, 8):
        lines += build(
            f"c0{i + 1}",
            i,
            *libs("cached", 0),
            ("built", 300, "//app:compile"),
            ("built", 400, "//app:lint"),
            ("built", 400, "//app:test"),
        )
    lines += build(
        "c09",
        8,
        *libs("built", 600),
        ("built", 310, "//app:compile"),
        ("built", 390, "//app:lint"),
        ("built", 410, "//app:test"),
    )
    return lines


def slower_target() -> list[str]:
    """s1-s6 run //app:a for 1000 ms and //app:b for 200 ms (1300 ms builds); s7 runs //app:a
    for 2500 ms (2800 ms): 2800/1300 = 2.154, flagged. It executed 2 targets as every build
    before it did (hit rate 0%, as before): no more ran. //app:a against its 6 earlier runs
    (median 1000, MAD 0): 2.50x, +1500 ms; //app:b 200 against 200. Per target, //app:a's
    newest 3 (s5 s6 s7) have only s1-s4 before them: 4 runs, too few to judge."""
    lines: list[str] = []
    for i in range(7):
        a_ms = 2500 if i == 6 else 1000
        lines += build(f"s{i + 1}", i, ("built", a_ms, "//app:a"), ("built", 200, "//app:b"))
    return lines


def stored(storage: TelemetryStorage, lines: list[str]) -> TelemetryAnalyzer:
    result = ingest_jsonl(storage, lines)
    assert not result.problems
    return TelemetryAnalyzer(storage)


def ingest(cli: Runner, lines: list[str]) -> None:
    done = cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode())
    assert done.code == 0, done.stderr


TEST_REGRESSION = TargetRegression(
    target="//app:test",
    ratio=2.0,
    added_ms=400.0,
    median_ms=800.0,
    baseline_median_ms=400.0,
    baseline_mad_ms=5.0,
    baseline_runs=7,
    runs=(Run("b08", at(7), 800), Run("b09", at(8), 810), Run("b10", at(9), 790)),
)


# -- the library ------------------------------------------------------------------------------


def test_a_target_that_doubled_inside_cached_builds_is_found(storage: TelemetryStorage) -> None:
    analyzer = stored(storage, doubled())
    report = target_regressions(analyzer)
    assert report.regressions == (TEST_REGRESSION,)
    assert (report.builds, report.targets, report.checked) == (10, 8, 3)
    assert report.flagged_builds == ()
    # The summary's mean-based check misses it (see doubled()).
    assert analyzer.summary().regressions == ()


def test_noise_within_the_mad_is_not_a_regression_until_the_bound_narrows(
    storage: TelemetryStorage,
) -> None:
    analyzer = stored(storage, doubled())
    # //app:lint: 650 against 400 + k·1.4826·200: k = 1 gives 696.52 (not above), k = 0.5
    # gives 548.26 (above): ratio 1.625, +250 ms.
    one = target_regressions(analyzer, thresholds=Thresholds(mads=1.0))
    assert [r.target for r in one.regressions] == ["//app:test"]
    half = target_regressions(analyzer, thresholds=Thresholds(mads=0.5))
    assert [(r.target, r.ratio, r.added_ms, r.baseline_mad_ms) for r in half.regressions] == [
        ("//app:test", 2.0, 400.0, 5.0),  # most milliseconds added first
        ("//app:lint", 1.625, 250.0, 200.0),
    ]


def test_recent_and_baseline_choose_the_runs_compared(storage: TelemetryStorage) -> None:
    analyzer = stored(storage, doubled())
    # --baseline 5: b03-b07 = 390 405 395 400 410, median 400; |x-400| 10 5 5 0 10: MAD 5.
    [five] = target_regressions(analyzer, thresholds=Thresholds(baseline=5)).regressions
    assert (five.baseline_runs, five.baseline_median_ms, five.baseline_mad_ms) == (5, 400.0, 5.0)
    # --recent 2: b09 b10 = 810 790, median 800; before them b01-b08, sorted 390 395 400 400
    # 405 410 410 800: median (400+405)/2 = 402.5; |x-402.5| sorted 2.5 2.5 2.5 7.5 7.5 7.5
    # 12.5 397.5: MAD 7.5. Ratio 800/402.5 = 1.988, +397.5 ms, above 402.5 + 3·1.4826·7.5.
    [two] = target_regressions(analyzer, thresholds=Thresholds(recent=2)).regressions
    assert two.runs == (Run("b09", at(8), 810), Run("b10", at(9), 790))
    assert (two.median_ms, two.baseline_median_ms, two.baseline_mad_ms) == (800.0, 402.5, 7.5)
    assert (two.baseline_runs, two.added_ms, two.ratio) == (8, 397.5, 800 / 402.5)


def test_cached_runs_are_left_out(storage: TelemetryStorage) -> None:
    # //x:gen built 400 ms in g1-g6, 800 ms in g7 and g8, cached in g9 and g10, built 800 ms
    # in g11. Its newest 3 executed runs are g7 g8 g11 (median 800) against g1-g6 (median
    # 400, MAD 0): 2.00x, +400 ms. Were the cache hits runs of 0 ms, the newest 3 would be
    # g9 g10 g11 (median 0), and nothing would be found.
    lines: list[str] = []
    for i in range(11):
        status, ms = ("cached", 0) if i in (8, 9) else ("built", 800 if i >= 6 else 400)
        lines += build(f"g{i + 1}", i, (status, ms, "//x:gen"), ("built", 100, "//x:other"))
    report = target_regressions(stored(storage, lines))
    assert report.regressions == (
        TargetRegression(
            target="//x:gen",
            ratio=2.0,
            added_ms=400.0,
            median_ms=800.0,
            baseline_median_ms=400.0,
            baseline_mad_ms=0.0,
            baseline_runs=6,
            runs=(Run("g7", at(6), 800), Run("g8", at(7), 800), Run("g11", at(10), 800)),
        ),
    )


def threshold_cases() -> list[str]:
    """Eight builds (t1-t8): //t:ratio 400 ms in t1-t5, then 580 (ratio 580/400 = 1.45,
    +180 ms); //t:ms 100 then 190 (ratio 1.9, +90 ms); //t:samples 200 in t1-t4, then 500 in
    t5-t7 and not in t8 (4 runs before its newest 3: ratio 2.5, +300 ms). Every MAD is 0."""
    lines: list[str] = []
    for i in range(8):
        runs = [
            ("built", 580 if i >= 5 else 400, "//t:ratio"),
            ("built", 190 if i >= 5 else 100, "//t:ms"),
        ]
        if i < 7:
            runs.append(("built", 500 if i >= 4 else 200, "//t:samples"))
        lines += build(f"t{i + 1}", i, *runs)
    return lines


@pytest.mark.parametrize(
    ("thresholds", "found"),
    [
        (Thresholds(), []),
        (Thresholds(ratio=1.45), [("//t:ratio", 1.45, 180.0, 5)]),
        (Thresholds(ratio=1.46), []),
        (Thresholds(min_ms=90), [("//t:ms", 1.9, 90.0, 5)]),
        (Thresholds(min_ms=91), []),
        (Thresholds(min_samples=4), [("//t:samples", 2.5, 300.0, 4)]),
    ],
    ids=["defaults", "ratio-met", "ratio-missed", "ms-met", "ms-missed", "samples"],
)
def test_each_threshold_decides(
    storage: TelemetryStorage, thresholds: Thresholds, found: list[tuple[str, float, float, int]]
) -> None:
    report = target_regressions(stored(storage, threshold_cases()), thresholds=thresholds)
    assert [(r.target, r.ratio, r.added_ms, r.baseline_runs) for r in report.regressions] == found
    # //t:samples has 4 runs before its newest 3: checked only when 4 are enough.
    assert report.checked == (3 if thresholds.min_samples == 4 else 2)


def test_the_target_glob(storage: TelemetryStorage) -> None:
    analyzer = stored(storage, doubled())
    apps = target_regressions(analyzer, target="//app:t*")
    assert (apps.regressions, apps.targets, apps.checked) == ((TEST_REGRESSION,), 1, 1)
    lib = target_regressions(analyzer, target="//lib:*")
    assert (lib.regressions, lib.targets, lib.checked) == ((), 5, 0)
    assert render_text(lib) == (
        "No target regressed: no target matching //lib:* has the 5 executed runs before its "
        "newest 3 that a baseline needs.\n"
    )
    none = target_regressions(analyzer, target="//APP:*")  # case matters
    assert (none.targets, render_text(none)) == (
        0,
        "No target regressed: no target matching //APP:* was executed in these builds.\n",
    )


def test_a_clean_rebuild_of_targets_without_a_history_cannot_be_told(
    storage: TelemetryStorage,
) -> None:
    analyzer = stored(storage, clean_rebuild())
    [flagged] = analyzer.summary().regressions  # the seed's check flags it
    report = target_regressions(analyzer)
    assert (report.regressions, report.checked) == ((), 3)
    assert report.flagged_builds == (
        FlaggedBuild(
            session_id="c09",
            start_time=at(8),
            ratio=4210 / 1575,
            expected_ms=1575.0,
            actual_ms=4210,
            executed=8,
            usual_executed=3.0,
            executed_ms=4110,
            usual_executed_ms=1100.0,
            cache_hit_rate=0.0,
            usual_cache_hit_rate=62.5,
            judged_targets=3,
            slower_targets=(),
        ),
    )
    assert flagged.session_id == "c09"
    # Everything but the history holds: its hit rate fell, 3010 > 2635 / 2, none slower.
    assert report.flagged_builds[0].verdict == "cannot-tell"
    assert not report.flagged_builds[0].explained_by_cache_misses


def clean_rebuilds(count: int = 13) -> list[str]:
    """Builds an hour apart (c01 at T0) of the five libraries (600 ms each), compile (300
    ms), lint (400 ms) and test (400 ms); the libraries are built in c01 c03 c05 c07 c09
    and c13, and hit the cache in the others. c13 runs compile, lint and test for 310, 390
    and 410 ms; c14 (with count 14) hits the cache for the libraries and runs test for
    3200 ms.

    Durations: 3000+300+400+400+100 = 4200 with the libraries built, 1200 without; c13
    3000+310+390+410+100 = 4210; c14 300+400+3200+100 = 4000. The summary checks c11, c12,
    c13 (and c14): c11 1200 / (5·4200+5·1200)/10 = 0.44, c12 1200 / (28200/11) = 0.47,
    c13 4210 / (5·4200+7·1200)/12 = 4210 / 2450 = 1.718: flagged; c14 4000 / ((29400 +
    4210)/13 = 33610/13) = 52000/33610 = 1.547: flagged.

    c13: it executed 8 targets, the earlier 8 (five times) and 3 (seven times): median 3;
    hit rate 0% against 0% (five) and 62.5% (seven): median 62.5%, 62.5 points lower;
    executed time 4110 ms against 4100 (five) and 1100 (seven): median 1100, 3010 ms more,
    over half of the 4210 − 2450 = 1760 ms it lost. Every target has at least 5 earlier
    runs (the libraries exactly 5: c01 c03 c05 c07 c09, median 600, MAD 0; the others 12):
    8 of 8 judged, none slower (600 = 600; 310, 390, 410 against 300, 400, 400). Explained.
    c14: earlier 13 builds: executed 8 (six) and 3 (seven): median 3; hit rate median 62.5;
    executed time 4100 (six) and 1100 (seven): median 1100; it ran 3 targets for 3900 ms,
    hit 5/8 = 62.5%. //app:test: 12 runs of 400 and one of 410 before it: median 400, MAD
    0; 3200 is 8.00x, +2800 ms: slower. compile 300 and lint 400 against medians of 300
    and 400 (c13's 310 and 390 are one of 13 each): not slower. 3 of 3 judged.
    """
    lines: list[str] = []
    for i in range(count):
        rebuilt = i in (0, 2, 4, 6, 8, 12)
        compile_ms, lint_ms, test_ms = (310, 390, 410) if i == 12 else (300, 400, 400)
        if i == 13:
            test_ms = 3200
        lines += build(
            f"c{i + 1:02}",
            i,
            *libs("built" if rebuilt else "cached", 600 if rebuilt else 0),
            ("built", compile_ms, "//app:compile"),
            ("built", lint_ms, "//app:lint"),
            ("built", test_ms, "//app:test"),
        )
    return lines


EXPLAINED_C13 = FlaggedBuild(
    session_id="c13",
    start_time=at(12),
    ratio=4210 / 2450,
    expected_ms=2450.0,
    actual_ms=4210,
    executed=8,
    usual_executed=3.0,
    executed_ms=4110,
    usual_executed_ms=1100.0,
    cache_hit_rate=0.0,
    usual_cache_hit_rate=62.5,
    judged_targets=8,
    slower_targets=(),
)


def test_a_clean_rebuild_of_targets_with_a_history_is_explained_by_cache_misses(
    storage: TelemetryStorage,
) -> None:
    report = target_regressions(stored(storage, clean_rebuilds()))
    assert report.flagged_builds == (EXPLAINED_C13,)
    assert report.flagged_builds[0].verdict == "cache-misses"
    assert report.flagged_builds[0].explained_by_cache_misses


def test_more_than_one_flagged_build_each_with_its_verdict(storage: TelemetryStorage) -> None:
    report = target_regressions(stored(storage, clean_rebuilds(14)))
    c13, c14 = report.flagged_builds  # oldest first
    assert c13 == EXPLAINED_C13  # c14 after it changes nothing of it
    assert c14 == FlaggedBuild(
        session_id="c14",
        start_time=at(13),
        ratio=4000 / (33610 / 13),
        expected_ms=33610 / 13,
        actual_ms=4000,
        executed=3,
        usual_executed=3.0,
        executed_ms=3900,
        usual_executed_ms=1100.0,
        cache_hit_rate=62.5,
        usual_cache_hit_rate=62.5,
        judged_targets=3,
        slower_targets=(
            TargetRegression(
                target="//app:test",
                ratio=8.0,
                added_ms=2800.0,
                median_ms=3200.0,
                baseline_median_ms=400.0,
                baseline_mad_ms=0.0,
                baseline_runs=13,
                runs=(Run("c14", at(13), 3200),),
            ),
        ),
    )
    assert (c13.verdict, c14.verdict) == ("cache-misses", "slower-targets")


def new_code() -> list[str]:
    """n1-n6 run //t:a for 1000 ms (1100 ms builds); n7 runs it and two new targets of
    3000 ms each: 7100 ms, 7100/1100 = 6.45x, flagged. Nothing is cached, before or now
    (hit rate 0% and usually 0%): no cache missed. It executed 3 targets (usually 1) for
    7000 ms (usually 1000); only //t:a (6 earlier runs, 1000 against 1000) can be judged."""
    lines: list[str] = []
    for i in range(6):
        lines += build(f"n{i + 1}", i, ("built", 1000, "//t:a"))
    lines += build(
        "n7", 6, ("built", 1000, "//t:a"), ("built", 3000, "//t:new1"), ("built", 3000, "//t:new2")
    )
    return lines


def test_new_code_with_no_cache_miss_is_not_explained_by_cache_misses(
    storage: TelemetryStorage,
) -> None:
    [n7] = target_regressions(stored(storage, new_code())).flagged_builds
    assert (n7.ratio, n7.executed, n7.usual_executed, n7.judged_targets) == (7100 / 1100, 3, 1, 1)
    assert (n7.cache_hit_rate, n7.usual_cache_hit_rate) == (0.0, 0.0)
    assert (n7.executed_ms, n7.usual_executed_ms, n7.slower_targets) == (7000, 1000.0, ())
    assert (n7.verdict, n7.explained_by_cache_misses) == ("not-cache-misses", False)
    assert render_text(target_regressions(TelemetryAnalyzer(storage))).endswith(
        "    Not explained by cache misses: its hit rate is not 10 points or more below the "
        "usual.\n"
    )


def idle_time() -> list[str]:
    """i1-i6 run //t:a for 1200 ms and //t:c for 300 ms, and hit the cache for //t:b: 1600
    ms builds, hit rate 1/3 = 33.3%, 1500 ms executed. i7 also rebuilds //t:b (50 ms) and
    then waits 4750 ms: 1200+300+50+100+4750 = 6400 ms, 4.0x the mean 1600, flagged. Its
    hit rate 0% is 33.3 points below the usual, //t:a and //t:c (6 earlier runs each) are
    2 of its 3 targets and ran as usual, but its executed time 1550 ms is only 50 ms above
    the usual 1500, not most of the 6400 − 1600 = 4800 ms it lost."""
    lines: list[str] = []
    for i in range(7):
        b = ("built", 50, "//t:b") if i == 6 else ("cached", 0, "//t:b")
        lines += build(
            f"i{i + 1}",
            i,
            ("built", 1200, "//t:a"),
            ("built", 300, "//t:c"),
            b,
            idle=4750 if i == 6 else 0,
        )
    return lines


def test_a_slowdown_outside_the_targets_is_not_explained_by_cache_misses(
    storage: TelemetryStorage,
) -> None:
    [i7] = target_regressions(stored(storage, idle_time())).flagged_builds
    assert (i7.ratio, i7.expected_ms, i7.actual_ms, i7.slowdown_ms) == (4.0, 1600, 6400, 4800)
    assert (i7.executed, i7.usual_executed, i7.judged_targets) == (3, 2.0, 2)
    assert (i7.cache_hit_rate, i7.usual_cache_hit_rate) == (0.0, 100 / 3)
    assert (i7.executed_ms, i7.usual_executed_ms, i7.extra_executed_ms) == (1550, 1500.0, 50.0)
    assert (i7.verdict, i7.explained_by_cache_misses) == ("not-cache-misses", False)
    assert render_text(target_regressions(TelemetryAnalyzer(storage))).endswith(
        "    Not explained by cache misses: its targets took only 50ms more executed time than "
        "usual, not most of the 4.8s it lost.\n"
    )


def test_a_flagged_build_with_no_judged_target_cannot_be_told(
    storage: TelemetryStorage,
) -> None:
    # z1-z6 hit the cache for //t:x and //t:y (100 ms builds, hit rate 100%, 0 ms
    # executed); z7 builds both for 1000 ms each: 2100 ms, 21x. Its hit rate fell 100
    # points and its 2000 ms of executed time are more than half of the 2000 ms it lost,
    # but neither target ever ran before: 0 of 2 judged.
    lines: list[str] = []
    for i in range(7):
        status, ms = ("built", 1000) if i == 6 else ("cached", 0)
        lines += build(f"z{i + 1}", i, (status, ms, "//t:x"), (status, ms, "//t:y"))
    [z7] = target_regressions(stored(storage, lines)).flagged_builds
    assert (z7.ratio, z7.executed, z7.judged_targets, z7.slower_targets) == (21.0, 2, 0, ())
    assert (z7.cache_hit_rate, z7.usual_cache_hit_rate) == (0.0, 100.0)
    assert (z7.executed_ms, z7.usual_executed_ms) == (2000, 0.0)
    assert (z7.verdict, z7.explained_by_cache_misses) == ("cannot-tell", False)
    assert render_text(target_regressions(TelemetryAnalyzer(storage))).endswith(
        "    0 of its 2 executed targets had enough earlier runs to judge; none ran slower\n"
        "    Cannot tell whether cache misses explain it: too few of its targets have a "
        "history to tell.\n"
    )


def test_a_flagged_build_with_no_earlier_hit_rate_cannot_be_told(
    storage: TelemetryStorage,
) -> None:
    # e1-e6 report no targets (100 ms builds: no hit rate, nothing usual); e7 builds //t:x
    # for 1000 ms: 1100 ms, 11x. With no usual hit rate to compare, it cannot be told.
    lines: list[str] = []
    for i in range(6):
        lines += build(f"e{i + 1}", i)
    lines += build("e7", 6, ("built", 1000, "//t:x"))
    [e7] = target_regressions(stored(storage, lines)).flagged_builds
    assert (e7.ratio, e7.usual_executed, e7.usual_executed_ms, e7.usual_cache_hit_rate) == (
        11.0,
        None,
        None,
        None,
    )
    assert (e7.executed, e7.executed_ms, e7.cache_hit_rate, e7.verdict) == (
        1,
        1000,
        0.0,
        "cannot-tell",
    )
    assert render_text(target_regressions(TelemetryAnalyzer(storage))).endswith(
        "    1 target executed for 1.0s (usually n/a for n/a), cache hit rate 0.0% (usually "
        "n/a)\n"
        "    0 of its 1 executed target had enough earlier runs to judge; none ran slower\n"
        "    Cannot tell: no cache hit rate to compare (no targets reported, in it or before "
        "it).\n"
    )


def test_a_session_id_stored_twice_counts_its_runs_once_at_its_first_place(
    tmp_path: Path,
) -> None:
    # Two stores merged by copying their day folders: "x" is stored in both, at hour 5 here
    # and at hour 48 there, each with one run of //t:a of 800 ms; r1-r5 ran it for 400 ms.
    # The analyzer reads x's two rows once each; both count at the first x's place (hour
    # 5), in the order stored: 400 ×5, 800, 800. --recent 2: 800 800 against 400 ×5 (MAD
    # 0): 2.00x, +400 ms, over 5 runs (not 6 or 7, as rows counted twice would give).
    here, there = TelemetryStorage(tmp_path / "here"), TelemetryStorage(tmp_path / "there")
    lines = [line for i in range(5) for line in build(f"r{i + 1}", i, ("built", 400, "//t:a"))]
    stored(here, lines + build("x", 5, ("built", 800, "//t:a")))
    stored(there, build("x", 48, ("built", 800, "//t:a")))
    for dataset in ("sessions", "targets"):
        for folder in (there.dir / dataset).iterdir():
            shutil.copytree(folder, here.dir / dataset / folder.name)
    analyzer = TelemetryAnalyzer(here)
    assert analyzer.sessions()["session_id"].to_list() == ["r1", "r2", "r3", "r4", "r5", "x", "x"]
    report = target_regressions(analyzer, thresholds=Thresholds(recent=2))
    assert report.regressions == (
        TargetRegression(
            target="//t:a",
            ratio=2.0,
            added_ms=400.0,
            median_ms=800.0,
            baseline_median_ms=400.0,
            baseline_mad_ms=0.0,
            baseline_runs=5,
            runs=(Run("x", at(5), 800), Run("x", at(5), 800)),
        ),
    )
    # The second x (900 ms against the mean (5·500 + 900)/6 = 566.7 of the builds before
    # it: 1.59x) is flagged. It executed one target (its own count) for 800 ms, but its
    # run counts at the first x's place: nothing of it is judged, nothing twice.
    [flagged] = report.flagged_builds
    assert (flagged.start_time, flagged.executed, flagged.executed_ms) == (at(48), 1, 800)
    assert (flagged.judged_targets, flagged.slower_targets) == (0, ())


def test_a_build_whose_target_ran_slower_is_not_explained_by_cache_misses(
    storage: TelemetryStorage,
) -> None:
    report = target_regressions(stored(storage, slower_target()))
    assert (report.regressions, report.checked) == ((), 0)
    [build7] = report.flagged_builds
    assert build7.slower_targets == (
        TargetRegression(
            target="//app:a",
            ratio=2.5,
            added_ms=1500.0,
            median_ms=2500.0,
            baseline_median_ms=1000.0,
            baseline_mad_ms=0.0,
            baseline_runs=6,
            runs=(Run("s7", at(6), 2500),),
        ),
    )
    assert (build7.executed, build7.usual_executed, build7.judged_targets) == (2, 2.0, 2)
    assert (build7.executed_ms, build7.usual_executed_ms) == (2700, 1200.0)
    assert (build7.cache_hit_rate, build7.usual_cache_hit_rate) == (0.0, 0.0)
    assert build7.verdict == "slower-targets"
    assert not build7.explained_by_cache_misses


def test_an_empty_store(storage: TelemetryStorage) -> None:
    report = target_regressions(TelemetryAnalyzer(storage))
    assert (report.builds, report.targets, report.checked) == (0, 0, 0)
    assert (report.regressions, report.flagged_builds) == ((), ())


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"recent": 0}, "recent must be a whole number of at least 1, got 0"),
        ({"min_samples": 0}, "min_samples must be a whole number of at least 1, got 0"),
        ({"baseline": 4}, "baseline (4) must be at least min_samples (5)"),
        ({"ratio": 1.0}, "ratio must be a number greater than 1 (e.g. 1.5), got 1.0"),
        ({"ratio": float("nan")}, "ratio must be a number greater than 1"),
        ({"min_ms": -1.0}, "min_ms must be a number of milliseconds, 0 or more"),
        ({"mads": float("inf")}, "mads must be a number, 0 or more"),
        ({"within": timedelta(seconds=59)}, "within must be at least a minute"),
    ],
)
def test_unusable_thresholds_name_the_parameters(given: dict[str, object], message: str) -> None:
    # The library speaks of its own parameters; the command turns them into its flags.
    with pytest.raises(ConfigError) as raised:
        Thresholds(**given)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)
    assert "--" not in str(raised.value)


def test_a_threshold_error_in_a_callers_names() -> None:
    with pytest.raises(ThresholdError) as raised:
        Thresholds(baseline=3, min_samples=4)
    assert raised.value.said({"baseline": "--baseline", "min_samples": "--min-samples"}) == (
        "--baseline (3) must be at least --min-samples (4): a baseline of fewer runs could "
        "never be judged"
    )


@pytest.mark.parametrize("text", ["1_5", "1_000", "١.٥", "", "fast"])
def test_numbers_with_underscores_or_other_digits_are_refused(text: str) -> None:
    # float() reads "1_5" as 15 and "١.٥" (Arabic-Indic digits) as 1.5.
    with pytest.raises(ConfigError, match=r"^--ratio must be a number"):
        number(text, option="--ratio")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90m", timedelta(minutes=90)), ("24h", timedelta(days=1)), ("7D", timedelta(days=7))],
)
def test_ages(text: str, expected: timedelta) -> None:
    assert age(text, option="--within") == expected


@pytest.mark.parametrize("text", ["7", "1_0d", "7 days", "2w", "-1d", "1.5h", "٧d"])
def test_unusable_ages(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--within must be an age in whole minutes"):
        age(text, option="--within")


def removed() -> list[str]:
    """Twelve builds an hour apart (w01 at T0): //t:keep 100 ms in each; //t:gone 400 ms in
    w01-w07, 800 ms in w08-w10, and not in w11-w12 (removed while slow).

    //t:gone's newest 3 runs (w08-w10, at hours 7, 8, 9; median 800) against w01-w07 (400,
    MAD 0): 2.00x, +400 ms, regressed while no limit is set. The newest build, w12, starts
    at hour 11: within 2h (or 3h) its runs must be from hour 9 (8) on, and w08 (hour 7) is
    older, so it is left out; within 4h, hour 7 is the limit itself, and it is judged.
    //t:keep (w10-w12 against w01-w09, 100 against 100) is always checked.
    Durations 600 (w01-w07), 1000 (w08-w10), 200: the summary checks w10-w12, w10 1000 /
    ((7·600 + 2·1000)/9 = 688.9) = 1.45: none flagged.
    """
    lines: list[str] = []
    for i in range(12):
        runs = [("built", 100, "//t:keep")]
        if i < 10:
            runs.append(("built", 800 if i >= 7 else 400, "//t:gone"))
        lines += build(f"w{i + 1:02}", i, *runs)
    return lines


@pytest.mark.parametrize(
    ("within", "found", "checked", "stale"),
    [
        (None, ["//t:gone"], 2, 0),
        (timedelta(hours=2), [], 1, 1),
        (timedelta(hours=3), [], 1, 1),
        (timedelta(hours=4), ["//t:gone"], 2, 0),
    ],
)
def test_within_leaves_out_targets_that_stopped_running(
    storage: TelemetryStorage,
    within: timedelta | None,
    found: list[str],
    checked: int,
    stale: int,
) -> None:
    report = target_regressions(stored(storage, removed()), thresholds=Thresholds(within=within))
    assert [r.target for r in report.regressions] == found
    assert (report.targets, report.checked, report.stale) == (2, checked, stale)
    assert report.flagged_builds == ()


# -- the command ------------------------------------------------------------------------------

DOUBLED_TEXT = """\
1 target regressed (3 targets checked, newest 3 executed runs against up to 20 before them):
  1. //app:test: 2.00x slower, +400 ms: median 800 ms, before 400 ms (MAD 5 ms over 7 runs)
       2025-10-27T21:23:20 b08: 800 ms
       2025-10-27T22:23:20 b09: 810 ms
       2025-10-27T23:23:20 b10: 790 ms
"""

CLEAN_REBUILD_TEXT = """\
No target regressed (3 targets checked, newest 3 executed runs against up to 20 before them).

Builds the summary flags as regressions (1.5x the average or slower):
  • 2025-10-27T22:23:20 c09: 2.7x slower than average (expected 1.6s, got 4.2s)
    8 targets executed for 4.1s (usually 3 for 1.1s), cache hit rate 0.0% (usually 62.5%)
    3 of its 8 executed targets had enough earlier runs to judge; none ran slower
    Cannot tell whether cache misses explain it: too few of its targets have a history to tell.
"""

# See clean_rebuilds(): c13 explained, c14 slower. The libraries have 6 executed runs (3
# before their newest 3: not checked); compile, lint and test 14.
CLEAN_REBUILDS_TEXT = """\
No target regressed (3 targets checked, newest 3 executed runs against up to 20 before them).

Builds the summary flags as regressions (1.5x the average or slower):
  • 2025-10-28T02:23:20 c13: 1.7x slower than average (expected 2.5s, got 4.2s)
    8 targets executed for 4.1s (usually 3 for 1.1s), cache hit rate 0.0% (usually 62.5%)
    8 of its 8 executed targets had enough earlier runs to judge; none ran slower
    Explained by cache misses: its hit rate fell, its judged targets ran as usual, and its \
extra 3.0s of executed time is most of the 1.8s it lost.
  • 2025-10-28T03:23:20 c14: 1.5x slower than average (expected 2.6s, got 4.0s)
    3 targets executed for 3.9s (usually 3 for 1.1s), cache hit rate 62.5% (usually 62.5%)
    3 of its 3 executed targets had enough earlier runs to judge; 1 ran slower:
      //app:test: 8.00x slower, +2800 ms: median 3200 ms, before 400 ms (MAD 0 ms over 13 runs)
    Not explained by cache misses: its targets ran slower.
"""

SLOWER_TARGET_TEXT = """\
No target regressed: no target has the 5 executed runs before its newest 3 that a baseline \
needs.

Builds the summary flags as regressions (1.5x the average or slower):
  • 2025-10-27T20:23:20 s7: 2.2x slower than average (expected 1.3s, got 2.8s)
    2 targets executed for 2.7s (usually 2 for 1.2s), cache hit rate 0.0% (usually 0.0%)
    2 of its 2 executed targets had enough earlier runs to judge; 1 ran slower:
      //app:a: 2.50x slower, +1500 ms: median 2500 ms, before 1000 ms (MAD 0 ms over 6 runs)
    Not explained by cache misses: its targets ran slower.
"""


@pytest.mark.parametrize(
    ("history", "text"),
    [
        (doubled, DOUBLED_TEXT),
        (clean_rebuild, CLEAN_REBUILD_TEXT),
        (slower_target, SLOWER_TARGET_TEXT),
        (lambda: clean_rebuilds(14), CLEAN_REBUILDS_TEXT),
    ],
    ids=["doubled", "clean-rebuild", "slower-target", "clean-rebuilds"],
)
def test_text(cli: Runner, history: Callable[[], list[str]], text: str) -> None:
    ingest(cli, history())
    shown = cli("telemetry", "regressions")
    assert (shown.code, shown.stderr) == (0, "")
    assert shown.stdout == text


def test_the_clean_rebuild_is_what_the_summary_flags(cli: Runner) -> None:
    ingest(cli, clean_rebuild())
    summary = cli("telemetry", "summary").stdout
    assert summary.endswith(
        "⚠️  Performance Regressions Detected:\n"
        "  • 2025-10-27T22:23:20: 2.7x slower than average (expected 1.6s, got 4.2s)\n"
    )


def test_options_reach_the_detector(cli: Runner) -> None:
    ingest(cli, doubled())
    # As test_noise_within_the_mad_...: --ratio 1.6 and --min-ms 250 still take //app:test
    # (2.00x, +400) alone; --ratio 2.01 takes nothing.
    assert cli("telemetry", "regressions", "--ratio", "1.6", "--min-ms", "250").stdout == (
        DOUBLED_TEXT
    )
    assert cli("telemetry", "regressions", "--ratio", "2.01").stdout == (
        "No target regressed (3 targets checked, newest 3 executed runs against up to 20 "
        "before them).\n"
    )
    globbed = cli("telemetry", "regressions", "--target", "//app:[lt]*", "--recent", "2")
    assert globbed.stdout.splitlines()[:2] == [
        "1 target regressed (2 targets checked, newest 2 executed runs against up to 20 "
        "before them):",
        "  1. //app:test: 1.99x slower, +397.5 ms: median 800 ms, before 402.5 ms "
        "(MAD 7.5 ms over 8 runs)",
    ]
    # b01-b10 start 14:23:20 to 23:23:20 on 2025-10-27: --until 20:00 leaves b01-b06, whose
    # //app:test never doubled (and b04-b06 have 3 runs before them).
    assert cli("telemetry", "regressions", "--until", "2025-10-27T20:00").stdout == (
        "No target regressed: no target has the 5 executed runs before its newest 3 that a "
        "baseline needs.\n"
    )
    filtered = cli("telemetry", "regressions", "--tool", "ninja")  # the builds name no tool
    assert (filtered.code, filtered.stdout) == (
        0,
        f"No builds in {os.environ['BUILDER_TELEMETRY_DIR']} match the selected filters.\n",
    )


def test_json(cli: Runner) -> None:
    ingest(cli, doubled())
    shown = cli("telemetry", "regressions", "--format", "json")
    assert (shown.code, shown.stderr) == (0, "")
    assert json.loads(shown.stdout) == {
        "thresholds": {
            "recent": 3,
            "baseline": 20,
            "minSamples": 5,
            "ratio": 1.5,
            "minMs": 100.0,
            "mads": 3.0,
            "withinMs": None,
        },
        "targetPattern": None,
        "builds": 10,
        "targets": 8,
        "targetsChecked": 3,
        "targetsLeftOut": 0,
        "regressions": [
            {
                "target": "//app:test",
                "ratio": 2.0,
                "addedMs": 400.0,
                "medianMs": 800.0,
                "baselineMedianMs": 400.0,
                "baselineMadMs": 5.0,
                "baselineRuns": 7,
                "runs": [
                    {"sessionId": "b08", "startTime": "2025-10-27T21:23:20", "durationMs": 800},
                    {"sessionId": "b09", "startTime": "2025-10-27T22:23:20", "durationMs": 810},
                    {"sessionId": "b10", "startTime": "2025-10-27T23:23:20", "durationMs": 790},
                ],
            }
        ],
        "regressionThreshold": 1.5,
        "flaggedBuilds": [],
    }


def test_json_of_a_clean_rebuild(cli: Runner) -> None:
    ingest(cli, clean_rebuild())
    [flagged] = json.loads(cli("telemetry", "regressions", "--format", "json").stdout)[
        "flaggedBuilds"
    ]
    assert flagged == {
        "sessionId": "c09",
        "startTime": "2025-10-27T22:23:20",
        "ratio": 4210 / 1575,
        "expectedMs": 1575.0,
        "actualMs": 4210,
        "executed": 8,
        "usualExecuted": 3.0,
        "executedMs": 4110,
        "usualExecutedMs": 1100.0,
        "cacheHitRate": 0.0,
        "usualCacheHitRate": 62.5,
        "judgedTargets": 3,
        "slowerTargets": [],
        "verdict": "cannot-tell",
        "explainedByCacheMisses": False,
    }


def test_json_of_an_explained_build_and_within(cli: Runner) -> None:
    ingest(cli, clean_rebuilds())
    document = json.loads(
        cli("telemetry", "regressions", "--format", "json", "--within", "3h").stdout
    )
    # c13 at hour 12 is the newest: within 3h, runs from hour 9 on. compile, lint and test
    # ran in c11-c13 (hours 10-12): checked; the libraries' newest 3 runs (c07, c09, c13)
    # are older: left out, all five.
    assert document["thresholds"]["withinMs"] == 3 * 3600 * 1000
    assert (document["targets"], document["targetsChecked"], document["targetsLeftOut"]) == (
        8,
        3,
        5,
    )
    [flagged] = document["flaggedBuilds"]
    assert (flagged["sessionId"], flagged["verdict"], flagged["explainedByCacheMisses"]) == (
        "c13",
        "cache-misses",
        True,
    )


def test_within_on_the_command_line(cli: Runner) -> None:
    ingest(cli, removed())
    assert cli("telemetry", "regressions", "--within", "2h").stdout == (
        "No target regressed (1 target checked, 1 left out as not run within 2h, newest 3 "
        "executed runs within 2h of the newest build against up to 20 before them).\n"
    )
    shown = cli("telemetry", "regressions", "--within", "240m").stdout
    assert shown.splitlines()[:2] == [
        "1 target regressed (2 targets checked, newest 3 executed runs within 4h of the newest "
        "build against up to 20 before them):",
        "  1. //t:gone: 2.00x slower, +400 ms: median 800 ms, before 400 ms (MAD 0 ms over 7 runs)",
    ]
    # An age reaching before the year 1 leaves nothing out.
    longest = cli("telemetry", "regressions", "--within", "999999999d")
    assert (longest.code, longest.stderr) == (0, "")
    assert longest.stdout.startswith("1 target regressed (2 targets checked, newest 3 executed ")
    # Within 1 hour of w12 (hour 11) no target has its newest 3 runs.
    assert cli("telemetry", "regressions", "--within", "1h").stdout == (
        "No target regressed: no target has its newest 3 executed runs within 1h of the "
        "newest build and the 5 runs before them that a baseline needs.\n"
    )


def test_target_names_are_escaped(cli: Runner) -> None:
    name = "//app:test\x1b[2J\u202e"
    ingest(cli, [line.replace("//app:test", json.dumps(name)[1:-1]) for line in doubled()])
    shown = cli("telemetry", "regressions").stdout
    assert "  1. //app:test\\x1b[2J\\u202e: 2.00x slower" in shown
    assert "\x1b" not in shown and "\u202e" not in shown


def test_an_empty_store_says_so(cli: Runner) -> None:
    shown = cli("telemetry", "regressions")
    assert shown.code == 0 and shown.stderr == ""
    assert shown.stdout.startswith("No telemetry data yet in ")
    as_json = cli("telemetry", "regressions", "--format", "json")
    assert as_json.code == 0 and as_json.stderr.startswith("No telemetry data yet in ")
    document = json.loads(as_json.stdout)
    assert (document["builds"], document["regressions"], document["flaggedBuilds"]) == (0, [], [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratio", "abc"], "Error: --ratio must be a number (e.g. 1.5), got 'abc'"),
        (["--ratio", "1_5"], "Error: --ratio must be a number (e.g. 1.5), got '1_5'"),
        (["--min-ms", "1_000"], "Error: --min-ms must be a number (e.g. 1.5), got '1_000'"),
        (["--within", "7"], "Error: --within must be an age in whole minutes, hours or days"),
        (["--within", "1_0d"], "Error: --within must be an age in whole minutes, hours or"),
        (["--within", "0m"], "Error: --within must be at least a minute (e.g. 7d), got 0:00:00"),
        (["--min-samples", "0"], "Error: Invalid value for '--min-samples'"),
        (["--baseline", "2", "--min-samples", "3"], "Error: --baseline (2) must be at least"),
        (["--ratio", "1"], "Error: --ratio must be a number greater than 1 (e.g. 1.5), got 1.0"),
        (["--ratio", "nan"], "Error: --ratio must be a number greater than 1 (e.g. 1.5), got nan"),
        (["--min-ms", "-5"], "Error: --min-ms must be a number of milliseconds, 0 or more"),
        (["--min-ms", "fast"], "Error: --min-ms must be a number (e.g. 1.5), got 'fast'"),
        (["--recent", "0"], "Error: Invalid value for '--recent': '0' is not a whole number"),
        (["--baseline", "3"], "Error: --baseline (3) must be at least --min-samples (5)"),
        (["--min-samples", "x"], "Error: Invalid value for '--min-samples': 'x' is not"),
        (["--target", ""], "Error: --target needs a glob of target names"),
        (["--since", "yesterday"], "Error: --since must be a date"),
        (["--format", "csv"], "Error: Invalid value for '--format': 'csv' is not one of"),
    ],
)
def test_bad_option_values(cli: Runner, args: list[str], message: str) -> None:
    ingest(cli, doubled())
    shown = cli("telemetry", "regressions", *args)
    assert (shown.code, shown.stdout) == (2, "")
    assert shown.stderr.startswith(message)
    assert shown.stderr.count("\n") == 1 and shown.stderr.endswith("\n")


def test_a_bad_regression_threshold_in_the_environment(cli: Runner) -> None:
    ingest(cli, doubled())
    shown = cli("telemetry", "regressions", env={"BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "fast"})
    assert (shown.code, shown.stdout) == (1, "")
    assert shown.stderr == (
        "Error: BUILDER_TELEMETRY_REGRESSION_THRESHOLD must be a number greater than 1 "
        "(e.g. 1.5), got 'fast'\n"
    )
