"""Cache value (telemetry.cache, `builder telemetry cache`): the time the cache saved, per
target, per build and over a window, each hit valued at its target's median executed
duration; and the targets behind a falling hit rate. Every number of the hand-made histories
is worked out by hand below; the demo history's are computed again from its events with the
standard library (tests/reference.py reads the events, the medians are
statistics.median's)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from telemetry.analyzer import BuildLookupError, TelemetryAnalyzer
from telemetry.cache import (
    BuildValue,
    CachedTarget,
    HitRateShift,
    TargetValue,
    build_cache_value,
    cache_value,
)
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Filter, Window
from tests import reference
from tests.conftest import FIXTURES, HOUR, REPO, T0, Runner, _event
from tests.test_docs import console_examples, python_examples, script_examples

# -- the hand-made histories ------------------------------------------------------------------


def _at(hours: int) -> datetime:
    """When the build ``hours`` after the first of a history started (T0: 14:23:20)."""
    return datetime.fromtimestamp(T0 / 1000, UTC) + timedelta(hours=hours)


def valued_history() -> list[str]:
    """Four builds an hour apart (b1 at 2025-10-27T14:23:20), durations given as duration_ms:

    b1 (main): compile built 1000, test built 400, gen cached, link skipped
    b2 (dev):  compile FAILED 3000, test cached, link skipped
    b3 (main): compile built 2000, test built 1200, gen cached
    b4 (main): compile cached, test cached
    """
    b1, b2, b3, b4 = T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR

    def run(session: str, ts: int, target: str, status: str, ms: int | None = None) -> str:
        fields: dict[str, object] = {"target": target, "status": status}
        if ms is not None:
            fields["duration_ms"] = ms
        return _event("target_finished", session, ts + 5000, **fields)

    return [
        _event("build_started", "b1", b1, branch="main"),
        run("b1", b1, "//app:compile", "built", 1000),
        run("b1", b1, "//app:test", "built", 400),
        run("b1", b1, "//lib:gen", "cached"),
        run("b1", b1, "//app:link", "skipped"),
        _event("build_finished", "b1", b1 + 6000, success=True),
        _event("build_started", "b2", b2, branch="dev"),
        run("b2", b2, "//app:compile", "failed", 3000),
        run("b2", b2, "//app:test", "cached"),
        run("b2", b2, "//app:link", "skipped"),
        _event("build_finished", "b2", b2 + 6000, success=False),
        _event("build_started", "b3", b3, branch="main"),
        run("b3", b3, "//app:compile", "built", 2000),
        run("b3", b3, "//app:test", "built", 1200),
        run("b3", b3, "//lib:gen", "cached"),
        _event("build_finished", "b3", b3 + 6000, success=True),
        _event("build_started", "b4", b4, branch="main"),
        run("b4", b4, "//app:compile", "cached"),
        run("b4", b4, "//app:test", "cached"),
        _event("build_finished", "b4", b4 + 6000, success=True),
    ]


def falling_history() -> list[str]:
    """Five builds with targets, s1..s5 an hour apart, then s0, a build that reported none
    (`record -- make`), newest. B = built (100 ms), C = cached:

            s1 s2 | s3 s4 s5
    //p:v    C  C |  B  B  C
    //p:w    B  B |  C  C  C
    //p:x    C  C |  B  B  B
    //p:y    B  C |  B  B  C
    //p:z    -  - |  -  B  B
    """
    grid = {
        "//p:v": "CCBBC",
        "//p:w": "BBCCC",
        "//p:x": "CCBBB",
        "//p:y": "BCBBC",
        "//p:z": "---BB",
    }
    lines = []
    for i in range(5):
        session, start = f"s{i + 1}", T0 + i * HOUR
        lines.append(_event("build_started", session, start))
        for target, row in grid.items():
            if row[i] != "-":
                status = "built" if row[i] == "B" else "cached"
                fields: dict[str, object] = {"target": target, "status": status}
                if status == "built":
                    fields["duration_ms"] = 100
                lines.append(_event("target_finished", session, start + 500, **fields))
        lines.append(_event("build_finished", "s" + str(i + 1), start + 1000, success=True))
    s0 = T0 + 5 * HOUR
    lines += [
        _event("build_started", "s0", s0),
        _event("build_finished", "s0", s0 + 1000, success=True),
    ]
    return lines


def grid_history(grid: dict[str, str], *, start: int = T0) -> list[str]:
    """One build an hour apart per column of ``grid`` (g1, g2, ...), each running the
    targets of its rows: B built (100 ms), C cached, - not run."""
    lines = []
    for i in range(len(next(iter(grid.values())))):
        session, begun = f"g{i + 1}", start + i * HOUR
        lines.append(_event("build_started", session, begun))
        for target, row in grid.items():
            if row[i] == "B":
                fields: dict[str, object] = {"status": "built", "duration_ms": 100}
            elif row[i] == "C":
                fields = {"status": "cached"}
            else:
                continue
            lines.append(_event("target_finished", session, begun + 500, target=target, **fields))
        lines.append(_event("build_finished", session, begun + 1000, success=True))
    return lines


@pytest.fixture
def valued(storage: TelemetryStorage) -> TelemetryStorage:
    assert ingest_jsonl(storage, valued_history()).sessions == 4
    return storage


@pytest.fixture
def falling(storage: TelemetryStorage) -> TelemetryStorage:
    assert ingest_jsonl(storage, falling_history()).sessions == 6
    return storage


# -- the library ------------------------------------------------------------------------------


def test_each_hit_is_valued_at_its_targets_median_executed_duration(
    valued: TelemetryStorage,
) -> None:
    report = cache_value(TelemetryAnalyzer(valued))
    # compile: executed 1000 (b1), 3000 (b2, failed: executed all the same), 2000 (b3): an
    #   odd count, median 2000; one hit (b4): saved 2000; hit rate 1/4 = 25%; 6000 ms run.
    # test: executed 400 (b1), 1200 (b3): an even count, median (400 + 1200) / 2 = 800; two
    #   hits (b2, b4): saved 1600; hit rate 2/4 = 50%; 1600 ms run.
    # gen: cached twice (b1, b3), never executed: no median, its hits are not valued.
    # link: only skipped, neither a hit nor a miss: not listed.
    assert report.targets == (
        TargetValue("//app:compile", 3, 1, 25.0, 6000, 2000.0, 2000.0),
        TargetValue("//app:test", 2, 2, 50.0, 1600, 800.0, 1600.0),
        TargetValue("//lib:gen", 0, 2, 100.0, 0, None, None),
    )
    # 5 executed, 5 cached: 50%; saved 2000 + 1600 = 3600 of 3600 + 7600 ms of target time
    # = 9/28; the two hits of gen are counted, not valued.
    assert (report.builds, report.executed, report.cached, report.hit_rate) == (4, 5, 5, 50.0)
    assert (report.saved_ms, report.executed_ms, report.unvalued) == (3600.0, 7600, 2)
    assert report.saved_share == pytest.approx(100 * 9 / 28, rel=1e-15)
    # Per build, oldest first: b1 and b3 hit gen alone (unvalued), b2 test (800), b4 compile
    # and test (2000 + 800); the builds add up to the window's 3600.
    assert report.per_build == (
        BuildValue("b1", _at(0), 1, 1, 0.0),
        BuildValue("b2", _at(1), 1, 0, 800.0),
        BuildValue("b3", _at(2), 1, 1, 0.0),
        BuildValue("b4", _at(3), 2, 0, 2800.0),
    )


def test_a_filter_values_the_hits_over_the_builds_it_takes(valued: TelemetryStorage) -> None:
    report = cache_value(TelemetryAnalyzer(valued, filter=Filter(branch="main")))
    # b1, b3, b4 (b2 is on dev): compile executed 1000 and 2000, an even count now, median
    # 1500, one hit; test 400 and 1200, median 800, one hit; gen cached twice, not valued.
    assert report.targets == (
        TargetValue("//app:compile", 2, 1, 100 / 3, 3000, 1500.0, 1500.0),
        TargetValue("//app:test", 2, 1, 100 / 3, 1600, 800.0, 800.0),
        TargetValue("//lib:gen", 0, 2, 100.0, 0, None, None),
    )
    assert (report.builds, report.executed, report.cached) == (3, 4, 4)
    # saved 2300 of 2300 + 4600: a third.
    assert (report.saved_ms, report.executed_ms, report.unvalued) == (2300.0, 4600, 2)
    assert report.saved_share == pytest.approx(100 / 3, rel=1e-15)
    assert [b.saved_ms for b in report.per_build] == [0.0, 0.0, 2300.0]


def test_a_window_values_the_hits_over_its_own_builds(valued: TelemetryStorage) -> None:
    # b3 and b4 alone: compile executed once (2000), test once (1200).
    window = Window(since=_at(2))
    report = cache_value(TelemetryAnalyzer(valued, window=window))
    assert [(t.target, t.median_ms, t.saved_ms) for t in report.targets] == [
        ("//app:compile", 2000.0, 2000.0),
        ("//app:test", 1200.0, 1200.0),
        ("//lib:gen", None, None),
    ]
    assert (report.saved_ms, report.unvalued) == (3200.0, 1)


def test_the_hit_rate_is_not_falling_when_the_newer_half_hits_more(
    valued: TelemetryStorage,
) -> None:
    change = cache_value(TelemetryAnalyzer(valued)).change
    # older b1, b2: 5 runs (b1 compile, test, gen; b2 compile, test), 2 hits (gen, test): 40%;
    # newer b3, b4: 5 runs, 3 hits (b3 gen; b4 compile, test): 60%.
    # compile: older 0 hits in 2, newer 1 miss in 2: 1 − (2/2)·2 = −1; test: 1 − (1/2)·2 = 0;
    # gen: 0 − 0 = 0: no target added misses.
    assert (change.older_builds, change.newer_builds) == (2, 2)
    assert (change.older_hit_rate, change.newer_hit_rate, change.falling) == (40.0, 60.0, False)
    assert change.targets == ()


def test_the_targets_that_added_the_most_misses_come_first(falling: TelemetryStorage) -> None:
    change = cache_value(TelemetryAnalyzer(falling)).change
    # The builds that reported targets, s1..s5: the older ⌊5/2⌋ = 2 and the newer 3 (s0, with
    # no targets, is in neither: counted, it would make the halves s1-s3 and s4, s5, s0).
    # Older: 8 runs, 5 hits (s1: v, x; s2: v, x, y) = 62.5%.
    # Newer: 14 runs, 5 hits (s3: w; s4: w; s5: v, w, y) = 5/14.
    # Misses added = newer misses − (older misses / older runs) · newer runs:
    #   x: 3 − 0 = 3; v: 2 − 0 = 2; z: 2, all of them (the older half never ran it);
    #   y: 2 − (1/2)·3 = 0.5; w: 0 − (2/2)·3 = −3 (it improved: not listed).
    # v and z tie at 2: by label. Together 3 + 2 + 2 + 0.5 − 3 = 4.5 = 9 misses − 4.5 predicted.
    assert (change.older_builds, change.newer_builds) == (2, 3)
    assert change.older_hit_rate == 62.5
    assert change.newer_hit_rate == pytest.approx(100 * 5 / 14, rel=1e-15)
    assert change.falling
    assert change.targets == (
        HitRateShift("//p:x", 2, 100.0, 3, 0.0, 3.0),
        HitRateShift("//p:v", 2, 100.0, 3, 100 / 3, 2.0),
        HitRateShift("//p:z", 0, None, 2, 0.0, 2.0),
        HitRateShift("//p:y", 2, 50.0, 3, 100 / 3, 0.5),
    )


def test_a_hit_is_valued_less_the_time_it_took(storage: TelemetryStorage) -> None:
    """A hit restored from a remote cache takes time of its own: it saved the median less
    that, and never less than nothing."""

    def run(session: str, ts: int, target: str, status: str, ms: int) -> str:
        return _event(
            "target_finished", session, ts + 5000, target=target, status=status, duration_ms=ms
        )

    h = [T0 + i * HOUR for i in range(5)]
    lines = [
        _event("build_started", "h0", h[0]),
        run("h0", h[0], "//t", "built", 1000),
        run("h0", h[0], "//u", "built", 400),
        _event("build_finished", "h0", h[0] + 6000, success=True),
        _event("build_started", "h1", h[1]),
        run("h1", h[1], "//t", "built", 3000),
        _event("build_finished", "h1", h[1] + 6000, success=True),
        _event("build_started", "h2", h[2]),
        run("h2", h[2], "//t", "built", 2000),
        _event("build_finished", "h2", h[2] + 6000, success=True),
        _event("build_started", "h3", h[3]),
        run("h3", h[3], "//t", "cached", 900),
        run("h3", h[3], "//u", "cached", 0),
        _event("build_finished", "h3", h[3] + 6000, success=True),
        _event("build_started", "h4", h[4]),
        run("h4", h[4], "//t", "cached", 2500),
        _event("build_finished", "h4", h[4] + 6000, success=True),
    ]
    assert ingest_jsonl(storage, lines).sessions == 5
    analyzer = TelemetryAnalyzer(storage)
    report = cache_value(analyzer)
    # //t: executed 1000, 3000, 2000: median 2000. Hits: h3's took 900 ms, saving 2000 − 900
    #   = 1100; h4's took 2500, longer than the median: it saved 0, not −500. 2 of 5: 40%.
    # //u: executed 400 once: median 400; h3's hit took 0 ms: 400. 1 of 2: 50%.
    assert report.targets == (
        TargetValue("//t", 3, 2, 40.0, 6000, 2000.0, 1100.0),
        TargetValue("//u", 1, 1, 50.0, 400, 400.0, 400.0),
    )
    # 1100 + 400 = 1500 saved, of 1500 + 6400 without the cache.
    assert (report.saved_ms, report.executed_ms) == (1500.0, 6400)
    assert report.saved_share == pytest.approx(100 * 1500 / 7900, rel=1e-15)
    assert [(b.session_id, b.cached, b.saved_ms) for b in report.per_build] == [
        ("h0", 0, 0.0),
        ("h1", 0, 0.0),
        ("h2", 0, 0.0),
        ("h3", 2, 1500.0),
        ("h4", 1, 0.0),
    ]
    h3 = build_cache_value(analyzer, "h3")
    assert h3.build == BuildValue("h3", _at(3), 2, 0, 1500.0)
    assert h3.targets == (
        CachedTarget("//t", 2000.0, 3, 900, 1100.0),
        CachedTarget("//u", 400.0, 1, 0, 400.0),
    )
    assert build_cache_value(analyzer, "h4").targets == (CachedTarget("//t", 2000.0, 3, 2500, 0.0),)


def test_a_session_id_stored_for_two_builds_counts_its_rows_once(tmp_path: Path) -> None:
    """Two stores merged by copying their day folders, both holding a build "same": its
    target rows are counted once, at its first build (where the analyzer puts them)."""
    here, there = TelemetryStorage(tmp_path / "here"), TelemetryStorage(tmp_path / "there")

    def build(session: str, start: int, status: str, ms: int | None = None) -> list[str]:
        fields: dict[str, object] = {"target": "//t", "status": status}
        if ms is not None:
            fields["duration_ms"] = ms
        return [
            _event("build_started", session, start),
            _event("target_finished", session, start + 5, **fields),
            _event("build_finished", session, start + 10_000, success=True),
        ]

    # "same" with 1 hit on day 1; "same" again (3001 ms built) and "other" (1000 ms built)
    # two days later.
    ingest_jsonl(here, build("same", T0, "cached"))
    ingest_jsonl(
        there,
        build("same", T0 + 48 * HOUR, "built", 3001)
        + build("other", T0 + 49 * HOUR, "built", 1000),
    )
    for dataset in ("sessions", "targets"):
        for folder in (there.dir / dataset).iterdir():
            shutil.copytree(folder, here.dir / dataset / folder.name)
    report = cache_value(TelemetryAnalyzer(here))
    # //t executed 3001 and 1000: median 2000.5; one hit, at the first "same".
    assert (report.builds, report.executed, report.cached) == (3, 2, 1)
    assert report.saved_ms == 2000.5
    # Per build the hit counts once, at the first "same": the builds add up to the window's.
    assert [(b.session_id, b.cached, b.saved_ms) for b in report.per_build] == [
        ("same", 1, 2000.5),
        ("same", 0, 0.0),
        ("other", 0, 0.0),
    ]
    assert sum(b.saved_ms for b in report.per_build) == report.saved_ms
    # The halves: the older ⌊3/2⌋ = 1 build, the first "same", holds both of its stored rows
    # (its hit and the second build's run): 2 runs, 1 hit = 50%; the newer 2 builds hold
    # other's run: 1 run, 0 hits. 3 runs in all, each once. //t: 1 − (1/2)·1 = 0.5 added.
    change = report.change
    assert (change.older_builds, change.newer_builds) == (1, 2)
    assert (change.older_hit_rate, change.newer_hit_rate, change.falling) == (50.0, 0.0, True)
    assert change.targets == (HitRateShift("//t", 2, 50.0, 1, 0.0, 0.5),)


def test_a_drop_within_the_trend_band_is_not_a_fall(cli: Runner) -> None:
    """Falling is a drop beyond the summary's trend band (10% of the older rate), so that
    the two never disagree."""
    # Ten targets t0..t9 over g1..g4: the older g1, g2 hit 5 of 10 each (50%); the newer g3
    # hits 5 and g4 4 (t4 built): 9 of 20 = 45%, (45 − 50) / 50 = −10%: not beyond the band.
    # The builds' own rates 50, 50 | 50, 40: the summary's trend −10% too, Stable.
    grid = {f"//p:t{i}": "CCCC" if i < 4 else ("CCCB" if i == 4 else "BBBB") for i in range(10)}
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(grid_history(grid)).encode())
    assert stored.code == 0, stored.stderr
    text = cli("telemetry", "cache").stdout
    assert text.endswith(
        "\nHit rate: 50.0% in the older 2 builds, 45.0% in the newer 2: not falling (within "
        "the ±10% band of the summary's trends)\n"
    )
    summary = cli("telemetry", "summary").stdout
    assert summary.split("Cache Efficiency:\n")[1].split("\n")[1] == "  Trend: Stable"
    change = json.loads(cli("telemetry", "cache", "--format", "json").stdout)["hitRateChange"]
    # t4 still added a miss (1 − 0·2 = 1), listed in the JSON though the rate did not fall.
    assert (change["falling"], change["newerHitRate"]) == (False, 45.0)
    assert [(t["target"], t["missesAdded"]) for t in change["targets"]] == [("//p:t4", 1.0)]


def test_a_fall_of_the_mix_alone_says_so(cli: Runner) -> None:
    """No target's own rate fell: the newer builds ran more of the targets that miss."""
    # Older g1: A1 A2 A3 cached, B1 built; g2: A1 A2 A3 cached, B2 built: 8 runs, 6 hits,
    # 75%. Newer g3, g4: A1 cached, B1 and B2 built: 6 runs, 2 hits, 33.3%: falling.
    # Misses added: A1 0 − 0 = 0; B1 2 − (1/1)·2 = 0; B2 the same; A2, A3 not run: 0.
    grid = {
        "//a:1": "CCCC",
        "//a:2": "CC--",
        "//a:3": "CC--",
        "//b:1": "B-BB",
        "//b:2": "-BBB",
    }
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(grid_history(grid)).encode())
    assert stored.code == 0, stored.stderr
    text = cli("telemetry", "cache").stdout
    assert text.endswith(
        "\nHit rate: 75.0% in the older 2 builds, 33.3% in the newer 2: falling\n"
        "Behind the fall (misses added in the newer builds):\n"
        "  no target's own rate fell: the mix of targets run changed\n"
    )


def test_one_run_is_one_run(cli: Runner) -> None:
    # //p:n: cached in g1 (older half), built in g2 (newer): 1 newer run, 1 miss added.
    grid = {"//p:n": "CB"}
    assert cli("telemetry", "ingest", "-", stdin="\n".join(grid_history(grid)).encode()).code == 0
    text = cli("telemetry", "cache").stdout
    assert text.endswith(
        "Hit rate: 100.0% in the older 1 build, 0.0% in the newer 1: falling\n"
        "Behind the fall (misses added in the newer builds):\n"
        "  1. //p:n - 1.0 misses added (hit rate 100.0% -> 0.0%, 1 run)\n"
    )


def test_one_builds_hits_are_valued_most_first(valued: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(valued)
    b4 = build_cache_value(analyzer, "b4")
    # compile 2000 (median of 3 runs), test 800 (median of 2).
    assert b4.build == BuildValue("b4", _at(3), 2, 0, 2800.0)
    assert b4.targets == (
        CachedTarget("//app:compile", 2000.0, 3, 0, 2000.0),
        CachedTarget("//app:test", 800.0, 2, 0, 800.0),
    )
    b1 = build_cache_value(analyzer, "b1")
    assert b1.build == BuildValue("b1", _at(0), 1, 1, 0.0)
    assert b1.targets == (CachedTarget("//lib:gen", None, 0, 0, None),)
    with pytest.raises(BuildLookupError, match="matches 4 builds"):
        build_cache_value(analyzer, "b")
    # b2 is on dev: not among the builds the filter takes.
    with pytest.raises(BuildLookupError, match="no build 'b2'"):
        build_cache_value(TelemetryAnalyzer(valued, filter=Filter(branch="main")), "b2")


def test_an_empty_store_has_nothing_to_value(storage: TelemetryStorage) -> None:
    report = cache_value(TelemetryAnalyzer(storage))
    assert (report.builds, report.executed, report.cached, report.hit_rate) == (0, 0, 0, None)
    assert (report.saved_ms, report.executed_ms, report.unvalued) == (0.0, 0, 0)
    assert (report.saved_share, report.targets, report.per_build) == (None, (), ())
    change = report.change
    assert (change.older_builds, change.newer_builds, change.falling) == (0, 0, False)
    assert (change.older_hit_rate, change.newer_hit_rate, change.targets) == (None, None, ())


# -- the command ------------------------------------------------------------------------------

VALUED_TEXT = """\
=== Cache Value ===

Builds: 4
Target runs: 5 cached, 5 executed (hit rate: 50.0%)
Time saved: 3.6s (32.1% of the target time without the cache)
Time executing targets: 7.6s
Saved per build: 0.9s on average
Not valued: 2 cache hits of 1 target never executed in the window

Top targets by time saved:
  1. //app:compile - 2.0s saved (1 hit x 2.0s median, hit rate 25.0%)
  2. //app:test - 1.6s saved (2 hits x 0.8s median, hit rate 50.0%)

Hit rate: 40.0% in the older 2 builds, 60.0% in the newer 2: not falling
"""

# 5/14 = 35.7%; the falling section ranks as the library test above works out.
FALLING_TEXT_TAIL = """\
Hit rate: 62.5% in the older 2 builds, 35.7% in the newer 3: falling
Behind the fall (misses added in the newer builds):
  1. //p:x - 3.0 misses added (hit rate 100.0% -> 0.0%, 3 runs)
  2. //p:v - 2.0 misses added (hit rate 100.0% -> 33.3%, 3 runs)
"""

B4_TEXT = """\
=== Cache Value of Build b4 ===

Started: 2025-10-27T17:23:20
Cache hits: 2
Time saved: 2.8s

Cache hits, most valuable first:
  1. //app:compile - 2.0s (median of 3 runs)
  2. //app:test - 0.8s (median of 2 runs)
"""

B1_TEXT = """\
=== Cache Value of Build b1 ===

Started: 2025-10-27T14:23:20
Cache hits: 1
Time saved: 0ms
Not valued: 1 cache hit of targets never executed in the window

Cache hits, most valuable first:
  1. //lib:gen - not valued (never executed in the window)
"""


@pytest.fixture
def valued_cli(cli: Runner) -> Runner:
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(valued_history()).encode())
    assert stored.code == 0, stored.stderr
    return cli


def test_the_text_shows_the_windows_value(valued_cli: Runner) -> None:
    result = valued_cli("telemetry", "cache")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == VALUED_TEXT


def test_the_text_names_the_targets_behind_a_falling_hit_rate(cli: Runner) -> None:
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(falling_history()).encode())
    assert stored.code == 0, stored.stderr
    result = cli("telemetry", "cache", "--top", "2")
    assert (result.code, result.stderr) == (0, "")
    # 6 builds; 22 runs (8 in the older half, 14 in the newer), 10 of them hits (s1: 2,
    # s2: 3, s3: 1, s4: 1, s5: 3) and 12 executed: 10/22 = 45.5%.
    assert result.stdout.startswith(
        "=== Cache Value ===\n\nBuilds: 6\nTarget runs: 10 cached, 12 executed (hit rate: 45.5%)\n"
    )
    assert result.stdout.endswith("\n\n" + FALLING_TEXT_TAIL)


def test_the_json_has_the_same_numbers(valued_cli: Runner) -> None:
    result = valued_cli("telemetry", "cache", "--format", "json", "--top", "1")
    assert (result.code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {
        "builds": 4,
        "cachedRuns": 5,
        "executedRuns": 5,
        "hitRate": 50.0,
        "savedMs": 3600.0,
        "executedMs": 7600,
        "savedShare": pytest.approx(100 * 9 / 28, rel=1e-15),
        "unvaluedHits": 2,
        "targets": [
            {
                "target": "//app:compile",
                "executedRuns": 3,
                "cachedRuns": 1,
                "hitRate": 25.0,
                "executedMs": 6000,
                "medianMs": 2000.0,
                "savedMs": 2000.0,
            }
        ],
        "hitRateChange": {
            "olderBuilds": 2,
            "newerBuilds": 2,
            "olderHitRate": 40.0,
            "newerHitRate": 60.0,
            "falling": False,
            "targets": [],
        },
        "perBuild": [
            {
                "sessionId": f"b{i + 1}",
                "startTime": f"2025-10-27T{14 + i}:23:20",
                "cachedRuns": cached,
                "unvaluedHits": unvalued,
                "savedMs": saved,
            }
            for i, (cached, unvalued, saved) in enumerate(
                [(1, 1, 0.0), (1, 0, 800.0), (1, 1, 0.0), (2, 0, 2800.0)]
            )
        ],
    }


def test_one_build_as_text_and_json(valued_cli: Runner) -> None:
    assert valued_cli("telemetry", "cache", "--session", "b4").stdout == B4_TEXT
    assert valued_cli("telemetry", "cache", "--session", "b1").stdout == B1_TEXT
    result = valued_cli("telemetry", "cache", "--session", "b4", "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {
        "sessionId": "b4",
        "startTime": "2025-10-27T17:23:20",
        "cachedRuns": 2,
        "unvaluedHits": 0,
        "savedMs": 2800.0,
        "targets": [
            {
                "target": "//app:compile",
                "medianMs": 2000.0,
                "executedRuns": 3,
                "hitMs": 0,
                "savedMs": 2000.0,
            },
            {
                "target": "//app:test",
                "medianMs": 800.0,
                "executedRuns": 2,
                "hitMs": 0,
                "savedMs": 800.0,
            },
        ],
    }


def test_the_filters_and_window_are_the_commands_own(valued_cli: Runner) -> None:
    # As the library test works out: on main, compile's median is 1500 over 2 runs.
    result = valued_cli("telemetry", "cache", "--branch", "main", "--format", "json")
    assert json.loads(result.stdout)["savedMs"] == 2300.0
    result = valued_cli("telemetry", "cache", "--since", "2025-10-27T16:00", "--format", "json")
    assert json.loads(result.stdout)["savedMs"] == 3200.0
    # b4 valued over b3 and b4 alone: compile 2000 (1 run) and test 1200 (1 run).
    result = valued_cli("telemetry", "cache", "--session", "b4", "--since", "2025-10-27T16:00")
    assert "Time saved: 3.2s\n" in result.stdout


def test_text_from_builds_is_escaped(cli: Runner) -> None:
    evil = "//x:\x1b[2Jevil\u202e"
    lines = [
        _event("build_started", "e1", T0),
        _event("target_finished", "e1", T0 + 500, target=evil, status="built", duration_ms=300),
        _event("build_finished", "e1", T0 + 1000, success=True),
        _event("build_started", "e2", T0 + HOUR),
        _event("target_finished", "e2", T0 + HOUR + 5, target=evil, status="cached"),
        _event("build_finished", "e2", T0 + HOUR + 1000, success=True),
    ]
    assert cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode()).code == 0
    shown = "//x:\\x1b[2Jevil\\u202e"
    text = cli("telemetry", "cache").stdout
    assert f"  1. {shown} - 0.3s saved (1 hit x 0.3s median, hit rate 50.0%)\n" in text
    assert "\x1b" not in text and "\u202e" not in text
    one = cli("telemetry", "cache", "--session", "e2").stdout
    assert f"  1. {shown} - 0.3s (median of 1 run)\n" in one
    # JSON keeps the exact value (a pipe is no terminal).
    assert (
        json.loads(cli("telemetry", "cache", "--format", "json").stdout)["targets"][0]["target"]
        == evil
    )


def test_an_empty_store_says_so(cli: Runner, tmp_path: Path) -> None:
    where = tmp_path / "telemetry"
    no_data = (
        f"No telemetry data yet in {where}. Run a build with telemetry enabled, "
        "or store events with `builder telemetry ingest FILE`.\n"
    )
    result = cli("telemetry", "cache")
    assert (result.code, result.stdout, result.stderr) == (0, no_data, "")
    result = cli("telemetry", "cache", "--format", "json")
    assert (result.code, result.stderr) == (0, no_data)
    assert json.loads(result.stdout)["builds"] == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("--session", "nope"),
            1,
            "Error: no build 'nope' in {store}; builder telemetry recent lists the newest "
            "builds with their session ids\n",
        ),
        (
            ("--session", "b"),
            1,
            "Error: 'b' matches 4 builds in {store}: b4, b3, b2, b1; give more of the session id\n",
        ),
        (
            ("--session", ""),
            2,
            "Error: --session must be a session id or its first characters, got ''\n",
        ),
        (
            ("--top", "0"),
            2,
            "Error: Invalid value for '--top': '0' is not a whole number from 1 to 1000000.\n",
        ),
        (
            ("--format", "xml"),
            2,
            "Error: Invalid value for '--format': 'xml' is not one of text, json.\n",
        ),
        (
            ("--since", "yesterday-ish"),
            2,
            "Error: --since must be a date (2025-10-27), a UTC time (2025-10-27T14:23:15) or "
            "an age (7d, 12h, 2w), got 'yesterday-ish'\n",
        ),
    ],
)
def test_errors_are_one_line(
    valued_cli: Runner, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    result = valued_cli("telemetry", "cache", *args)
    assert (result.code, result.stdout) == (code, "")
    assert result.stderr == message.format(store=tmp_path / "telemetry")


# -- the demo history, by a second route ------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TelemetryStorage]:
    """The demo history (generated for 2026-11-20, as the docs' is) and a store of it."""
    folder = tmp_path_factory.mktemp("demo")
    history = folder / "history.jsonl"
    subprocess.run(
        [sys.executable, FIXTURES / "generate.py", "--today", "2026-11-20", "--output", history],
        check=True,
    )
    store = TelemetryStorage(folder / ".builder-cache" / "telemetry")
    ingest_file(store, history)
    return history, store


def _by_events(history: Path, since_ms: int | None = None) -> dict[str, object]:
    """The cache value of the demo's builds (from ``since_ms`` on), from its events alone:
    tests/reference.py derives each build and its executed runs' durations, the events give
    each build's cache hits, statistics.median the medians, fractions the halves."""
    lines = history.read_text().splitlines()
    builds = [
        s
        for s in reference.sessions_from_lines(lines)
        if since_ms is None or s.start_ms >= since_ms
    ]
    chosen = {s.session_id for s in builds}
    hits: dict[str, list[str]] = defaultdict(list)
    for event in map(json.loads, lines):
        if event["event"] == "target_finished" and event["status"] == "cached":
            hits[event["session"]].append(event["target"])
    runs: dict[str, list[int]] = defaultdict(list)
    for s in builds:
        for target, ms in s.executed_runs:
            runs[target].append(ms)
    # A hit is worth its target's median less its own duration: the demo's hits report
    # none (0 ms stored), so each is worth the median.
    cached = Counter(t for s in builds for t in hits[s.session_id])
    median = {t: statistics.median(ms) for t, ms in runs.items()}
    saved = {t: cached[t] * median[t] for t in median}  # 0 for a target never cached
    per_build = {
        s.session_id: sum(median[t] for t in hits[s.session_id] if t in median) for s in builds
    }
    # The halves: the builds that reported targets, oldest first.
    known = [s.session_id for s in builds if s.total_targets > 0]
    halves = (set(known[: len(known) // 2]), set(known[len(known) // 2 :]))
    tally = {t: [[0, 0], [0, 0]] for t in set(runs) | set(cached)}  # [runs, hits] per half
    for s in builds:
        for h, half in enumerate(halves):
            if s.session_id in half:
                for target, _ in s.executed_runs:
                    tally[target][h][0] += 1
                for target in hits[s.session_id]:
                    tally[target][h][0] += 1
                    tally[target][h][1] += 1
    added = {}
    for target, ((old_runs, old_hits), (new_runs, new_hits)) in tally.items():
        misses = new_runs - new_hits
        predicted = Fraction(old_runs - old_hits, old_runs) * new_runs if old_runs else 0
        if misses - predicted > 0:
            added[target] = misses - predicted
    assert chosen == set(per_build)
    return {
        "executed": sum(len(ms) for ms in runs.values()),
        "cached": sum(cached.values()),
        "executed_ms": sum(sum(ms) for ms in runs.values()),
        "saved": saved,
        "unvalued": sum(n for t, n in cached.items() if t not in median),
        "per_build": per_build,
        "builds": [s.session_id for s in builds],
        "added": sorted(added.items(), key=lambda item: (-item[1], item[0])),
    }


@pytest.mark.parametrize(
    "since", [None, "2026-11-01", "2026-11-10"], ids=["all", "november", "since-10th"]
)
def test_the_demo_history_by_a_second_route(
    demo: tuple[Path, TelemetryStorage], since: str | None
) -> None:
    history, store = demo
    window = Window.parse(since, None)
    expected = _by_events(
        history, None if window.since is None else int(window.since.timestamp() * 1000)
    )
    report = cache_value(TelemetryAnalyzer(store, window=window))
    assert [b.session_id for b in report.per_build] == expected["builds"]
    assert (report.executed, report.cached, report.executed_ms, report.unvalued) == (
        expected["executed"],
        expected["cached"],
        expected["executed_ms"],
        expected["unvalued"],
    )
    saved = expected["saved"]
    assert isinstance(saved, dict)
    assert {t.target: t.saved_ms for t in report.targets if t.saved_ms is not None} == saved
    assert report.saved_ms == pytest.approx(sum(saved.values()), rel=1e-12)
    per_build = expected["per_build"]
    assert isinstance(per_build, dict)
    assert {b.session_id: b.saved_ms for b in report.per_build} == pytest.approx(per_build)
    ranked = [t.target for t in report.targets if t.saved_ms is not None]
    assert ranked == sorted(saved, key=lambda t: (-saved[t], t))
    added = expected["added"]
    assert isinstance(added, list)
    assert [s.target for s in report.change.targets] == [t for t, _ in added]
    assert [s.misses_added for s in report.change.targets] == pytest.approx(
        [float(n) for _, n in added], rel=1e-12
    )
    change = report.change
    assert change.older_hit_rate is not None and change.newer_hit_rate is not None
    drop = (change.older_hit_rate - change.newer_hit_rate) / change.older_hit_rate
    if since == "2026-11-01":
        # November's builds: the hit rate went down a little (73.0% -> 71.9%), within the
        # summary's ±10% band: not a fall, though some targets added misses.
        assert 0 < drop <= 0.10 and not change.falling and len(change.targets) > 5
    elif since == "2026-11-10":
        # From the 10th: 79.4% -> 66.3%, a fall, with targets to name.
        assert drop > 0.10 and change.falling and len(change.targets) > 5


# -- docs/cache.md ----------------------------------------------------------------------------

DOC = REPO / "docs" / "cache.md"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDER_", "NO_COLOR"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize(
    ("command", "output"), console_examples(DOC), ids=[c for c, _ in console_examples(DOC)]
)
def test_the_docs_console_examples(
    demo: tuple[Path, TelemetryStorage], command: str, output: str
) -> None:
    """Run in the demo's folder, as docs/guide.md's are."""
    env = _env() | {"BUILDER_TELEMETRY_RETENTION_DAYS": "100000"}
    done = subprocess.run(
        ["bash", "-c", f"{command} 2>&1"],
        cwd=demo[0].parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout == output


@pytest.mark.parametrize(("script", "output"), script_examples(DOC))
def test_the_docs_scripts(tmp_path: Path, script: str, output: str) -> None:
    """Run as a reader would, in an empty folder."""
    env = _env() | {"BUILDER_TELEMETRY_DIR": str(tmp_path / "telemetry")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"exec 2>&1\n{script}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout == output


@pytest.mark.parametrize(("code", "output"), python_examples(DOC))
def test_the_docs_python_examples(
    demo: tuple[Path, TelemetryStorage],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
    output: str | None,
) -> None:
    monkeypatch.chdir(demo[0].parent)
    exec(compile(code, "docs/cache.md", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out == output
