"""Weighted time per build (telemetry/weighted.py), ``show``'s weighted figures and
``summary --by weighted``: hand-made builds worked out by hand, and a real ninja build's
log checked against Chromium's ``post_build_ninja_summary.py``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.exporter import render_summary, summary_json
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.model import RolledDays, WeightedBottleneck
from telemetry.storage import TelemetryStorage
from telemetry.weighted import (
    build_weights,
    weigh_build,
    weighted_bottlenecks,
    weighted_summary,
    with_weighted_ms,
)
from tests.conftest import BUILDER, FIXTURES, HOUR, T0, Runner, _event, ninjas, process_env

NINJA_LOG = FIXTURES / "ninja" / ".ninja_log"


def weighted_history() -> list[str]:
    """Four builds, an hour apart, every weighted time worked out by hand below.

    w1, parallelism 2, 1000 ms: A [0,600), B [0,300), C [300,600), D [600,900) built; E a
    cache hit at 650; F built in 0 ms at 950. A and B start together, A and C end together,
    B ends as C starts and A as D starts: touching runs do not overlap.

    w2, no parallelism (peak 3), 2000 ms: A [0,900), B [300,600), W [1500,1800) built; C
    failed over [300,1200); S skipped. Nothing runs over [1200,1500).

    w3: no targets at all (``record -- make``), 500 ms. w4: one cache hit, 100 ms.
    """
    w1, w2, w3, w4 = T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR

    def ran(session: str, at: int, target: str, begin: int, end: int, status: str) -> list[str]:
        return [
            _event("target_started", session, at + begin, target=target),
            _event("target_finished", session, at + end, target=target, status=status),
        ]

    return [
        _event("build_started", "w1", w1, parallelism=2, tool="ninja"),
        *ran("w1", w1, "A", 0, 600, "built"),
        *ran("w1", w1, "B", 0, 300, "built"),
        *ran("w1", w1, "C", 300, 600, "built"),
        *ran("w1", w1, "D", 600, 900, "built"),
        _event("target_finished", "w1", w1 + 650, target="E", status="cached"),
        _event("target_finished", "w1", w1 + 950, target="F", status="built", duration_ms=0),
        _event("build_finished", "w1", w1 + 1000, success=True),
        _event("build_started", "w2", w2, tool="bazel"),
        *ran("w2", w2, "A", 0, 900, "built"),
        *ran("w2", w2, "B", 300, 600, "built"),
        *ran("w2", w2, "C", 300, 1200, "failed"),
        *ran("w2", w2, "W", 1500, 1800, "built"),
        _event("target_finished", "w2", w2 + 1800, target="S", status="skipped"),
        _event("build_finished", "w2", w2 + 2000, success=False, error="C failed"),
        _event("build_started", "w3", w3, tool="make"),
        _event("build_finished", "w3", w3 + 500, success=True),
        _event("build_started", "w4", w4, tool="bazel"),
        _event("target_finished", "w4", w4 + 50, target="E", status="cached"),
        _event("build_finished", "w4", w4 + 100, success=True),
    ]


# Each target's weighted time, piece by piece (the runs open over each piece share it):
#
# w1: [0,300) A B: 150 each; [300,600) A C: 150 each; [600,900) D alone: 300; [900,1000)
#     nothing. A 150 + 150 = 300, B 150, C 150, D 300; E (cached) and F (0 ms) 0.
# w2: [0,300) A alone: 300; [300,600) A B C: 100 each; [600,900) A C: 150 each; [900,1200)
#     C alone: 300; [1200,1500) nothing; [1500,1800) W alone: 300.
#     A 300 + 100 + 150 = 550, B 100, C 100 + 150 + 300 = 550, W 300; S (skipped) 0.
WEIGHTED = {
    "w1": {"A": 300.0, "B": 150.0, "C": 150.0, "D": 300.0, "E": 0.0, "F": 0.0},
    "w2": {"A": 550.0, "B": 100.0, "C": 550.0, "W": 300.0, "S": 0.0},
    "w4": {"E": 0.0},
}
# Per build:
# - weighted = Σ of its targets' = the time any target ran: w1 900 (0 to 900); w2 1500
#   (0 to 1200, 1500 to 1800); w4 0.
# - span: first executed start to last executed end, the 0 ms run included as Chromium's
#   script includes it: w1 0 to 950 = 950; w2 0 to 1800 = 1800; w4 0.
# - executed: w1 600 + 300 + 300 + 300 + 0 = 1500; w2 900 + 300 + 900 + 300 = 2400.
# - effective parallelism = executed / span: w1 1500 / 950; w2 2400 / 1800 = 4/3; w4 none.
# - workers: w1 its parallelism 2; w2 its peak 3 ([300,600)); w4 0 (nothing ran).
# - underused = duration − time with ≥ workers running: w1 1000 − 600 ([0,600) two
#   running) = 400; w2 2000 − 300 ([300,600) three) = 1700; w4 unknown: no workers.
# - w3 reported no targets: every figure unknown, as its rates are.
BUILDS = {
    "w1": (900, 950, 1500, 1500 / 950, 2, 400),
    "w2": (1500, 1800, 2400, 2400 / 1800, 3, 1700),
    "w3": (None, None, None, None, 0, None),
    "w4": (0, 0, 0, None, 0, None),
}


@pytest.fixture
def weighted_store(storage: TelemetryStorage) -> TelemetryStorage:
    result = ingest_jsonl(storage, weighted_history())
    assert result.sessions == 4 and not result.problems
    return storage


@pytest.fixture
def weighted_cli(cli: Runner) -> Runner:
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(weighted_history()).encode())
    assert stored.code == 0, stored.stderr
    return cli


# -- the library ------------------------------------------------------------------------------


def test_each_targets_weighted_time(weighted_store: TelemetryStorage) -> None:
    _, targets = TelemetryAnalyzer(weighted_store).targets()
    weighted = with_weighted_ms(targets)
    assert weighted.columns == [*targets.columns, "weighted_ms"]
    found: dict[str, dict[str, float]] = {}
    for session, target, value in weighted.select("session_id", "target", "weighted_ms").rows():
        found.setdefault(session, {})[target] = value
    assert found == WEIGHTED


def test_each_builds_weighted_figures(weighted_store: TelemetryStorage) -> None:
    sessions, targets = TelemetryAnalyzer(weighted_store).targets()
    frame = build_weights(sessions, targets)
    assert frame["session_id"].to_list() == ["w1", "w2", "w3", "w4"]
    columns = [
        "weighted_ms",
        "span_ms",
        "executed_ms",
        "effective_parallelism",
        "workers",
        "underused_ms",
    ]
    assert {row[0]: row[1:] for row in frame.select("session_id", *columns).rows()} == BUILDS


def test_one_builds_weights_follow_its_targets(weighted_store: TelemetryStorage) -> None:
    build = TelemetryAnalyzer(weighted_store).build("w2")
    weights = weigh_build(build)
    # show lists the targets slowest first (ties by label): A, C (900), B, W (300), S (0).
    assert [t.target for t in build.targets] == ["A", "C", "B", "W", "S"]
    assert weights.targets == (550.0, 550.0, 100.0, 300.0, 0.0)
    figures = (
        weights.weighted_ms,
        weights.span_ms,
        weights.executed_ms,
        weights.effective_parallelism,
        weights.workers,
        weights.underused_ms,
    )
    assert figures == BUILDS["w2"]
    assert weights.duration_ms == 2000


def test_the_weighted_times_sum_to_the_busy_time_of_each_build() -> None:
    """A second route on random builds: each weighted time as a sum over milliseconds of
    1 / (runs open at that millisecond), with exact fractions."""
    from fractions import Fraction
    from random import Random

    chance = Random(15)
    rows = []
    for session in ("r1", "r2", "r3"):
        for n in range(12):
            begin = chance.randrange(0, 60)
            rows.append((session, f"t{n}", "built", begin, begin + chance.randrange(0, 25)))
    frame = pl.DataFrame(
        rows, schema=["session_id", "target", "status", "start_time", "end_time"], orient="row"
    )
    weighted = with_weighted_ms(frame)["weighted_ms"].to_list()
    for (session, _, _, begin, end), value in zip(rows, weighted, strict=True):
        expected = sum(
            Fraction(1, sum(1 for s, _, _, b, e in rows if s == session and b <= ms < e))
            for ms in range(begin, end)
        )
        assert value == pytest.approx(float(expected), abs=1e-6)


def test_the_window_ranks_targets_by_mean_weighted_time(
    weighted_store: TelemetryStorage,
) -> None:
    # Over the executed runs (w1 and w2): A (300 + 550) / 2 = 425, C (150 + 550) / 2 = 350,
    # D 300, W 300 (D before W by label), B (150 + 100) / 2 = 125, F 0. E and S never ran.
    # Mean durations: A (600 + 900) / 2 = 750, C (300 + 900) / 2 = 600, D, W, B 300, F 0.
    assert weighted_bottlenecks(TelemetryAnalyzer(weighted_store), top=10) == (
        WeightedBottleneck("A", 425.0, 750.0, 2),
        WeightedBottleneck("C", 350.0, 600.0, 2),
        WeightedBottleneck("D", 300.0, 300.0, 1),
        WeightedBottleneck("W", 300.0, 300.0, 1),
        WeightedBottleneck("B", 125.0, 300.0, 2),
        WeightedBottleneck("F", 0.0, 0.0, 1),
    )


def test_the_weighted_summary_is_the_summary_with_other_bottlenecks(
    weighted_store: TelemetryStorage,
) -> None:
    analyzer = TelemetryAnalyzer(weighted_store)
    plain, weighted = analyzer.summary(top=3), weighted_summary(analyzer, top=3)
    # By mean duration B (300) ranks third; by weighted time D (300) does.
    assert [b.target for b in plain.bottlenecks] == ["A", "C", "B"]
    assert [b.target for b in weighted.weighted_bottlenecks or ()] == ["A", "C", "D"]
    assert replace(weighted, weighted_bottlenecks=None) == plain
    assert "bottlenecksBy" not in json.loads(summary_json(plain))


def test_the_weighted_ranking_says_it_leaves_out_the_rolled_up_days(
    weighted_store: TelemetryStorage,
) -> None:
    # A rollup keeps no target's start and end: the weighted ranking is over the builds
    # still stored, as the trends and regressions are, and the rollups line says so.
    weighted = weighted_summary(TelemetryAnalyzer(weighted_store))
    rolled = RolledDays(date(2025, 10, 1), date(2025, 10, 2), 2, 7)
    assert render_summary(replace(weighted, from_rollups=rolled)).endswith(
        "Build Time Trend: Decreasing\n(From daily rollups: 7 builds of 2 days past retention, "
        "2025-10-01 to 2025-10-02; the bottlenecks, trends and regressions are over the "
        "builds still stored)\n"
    )
    plain = replace(weighted, from_rollups=rolled, weighted_bottlenecks=None)
    assert "; the trends and regressions are over the" in render_summary(plain)


def test_an_empty_window_ranks_nothing(storage: TelemetryStorage) -> None:
    assert weighted_bottlenecks(TelemetryAnalyzer(storage)) == ()
    assert weighted_summary(TelemetryAnalyzer(storage)).weighted_bottlenecks == ()


# -- a real ninja build, against Chromium's script --------------------------------------------

# What Chromium's post_build_ninja_summary.py (depot_tools) prints for
# data-fixtures/ninja/.ninja_log: for its last build, the incremental one, as run on the log;
# for the clean build before it, as run on the log's first ten lines (the script summarises
# the last build of a log). Its "weighted time" line is the span, first start to last end.
#
# Clean build:
#        0.3 weighted s to build d.o (0.9 s elapsed time)
#        0.4 weighted s to build gen.h, gen.c (1.2 s elapsed time)
#        0.6 weighted s to build c.o (1.8 s elapsed time)
#        0.8 weighted s to build lib.a (1.5 s elapsed time)
#        0.8 weighted s to build b.o (2.4 s elapsed time)
#        1.3 weighted s to build a.o (3.7 s elapsed time)
#        1.9 weighted s to build e.o (3.0 s elapsed time)
#        2.1 weighted s to build app (2.1 s elapsed time)
#   8.1 s weighted time (16.6 s elapsed time sum, 2.0x parallelism)
#   8 build steps completed, average of 0.99/s
# Incremental build (b.o touched):
#        1.5 weighted s to build lib.a (1.5 s elapsed time)
#        2.1 weighted s to build app (2.1 s elapsed time)
#        2.4 weighted s to build b.o (2.4 s elapsed time)
#   6.1 s weighted time (6.1 s elapsed time sum, 1.0x parallelism)
#   3 build steps completed, average of 0.50/s
CHROMIUM_PRINTED = [
    (
        {
            "d.o": ("0.3", "0.9"),
            "gen.h": ("0.4", "1.2"),
            "c.o": ("0.6", "1.8"),
            "lib.a": ("0.8", "1.5"),
            "b.o": ("0.8", "2.4"),
            "a.o": ("1.3", "3.7"),
            "e.o": ("1.9", "3.0"),
            "app": ("2.1", "2.1"),
        },
        ("8.1", "16.6", "2.0"),
    ),
    (
        {"lib.a": ("1.5", "1.5"), "app": ("2.1", "2.1"), "b.o": ("2.4", "2.4")},
        ("6.1", "6.1", "1.0"),
    ),
]
# The same script's weighted durations unrounded (each Target's WeightedDuration() after
# SummarizeEntries, times 1000), and its parallelism (elapsed time sum / span).
CHROMIUM_EXACT = [
    (
        {
            "gen.h": 402.6666666666667,
            "b.o": 809.6666666666667,
            "c.o": 601.3333333333333,
            "d.o": 302.66666666666663,
            "a.o": 1277.8333333333335,
            "lib.a": 753.4999999999999,
            "e.o": 1868.3333333333337,
            "app": 2105.0000000000005,
        },
        8121,
        2.0481467799532074,
    ),
    ({"b.o": 2410.0, "lib.a": 1541.9999999999998, "app": 2106.0}, 6059, 0.9998349562634098),
]


def _ninja_builds(
    storage: TelemetryStorage,
) -> list[tuple[dict[str, tuple[float, int]], tuple[int, int, float]]]:
    """Each build of the store, oldest first: its built targets' weighted times and
    durations, and its span, executed time and effective parallelism."""
    sessions, targets = TelemetryAnalyzer(storage).targets()
    weighted = with_weighted_ms(targets).filter(pl.col("status") == "built")
    figures = build_weights(sessions, targets)
    builds = []
    for session in sessions["session_id"]:
        runs = weighted.filter(pl.col("session_id") == session)
        builds.append(
            (
                {
                    t: (w, d)
                    for t, w, d in runs.select("target", "weighted_ms", "duration_ms").rows()
                },
                figures.filter(pl.col("session_id") == session)
                .select("span_ms", "executed_ms", "effective_parallelism")
                .row(0),
            )
        )
    return builds


def test_a_real_ninja_log_gives_chromiums_numbers(storage: TelemetryStorage) -> None:
    ingest_file(storage, NINJA_LOG)
    builds = _ninja_builds(storage)
    assert len(builds) == 2
    for (runs, (span, executed, parallelism)), (steps, total) in zip(
        builds, CHROMIUM_PRINTED, strict=True
    ):
        assert {t: (f"{w / 1000:.1f}", f"{d / 1000:.1f}") for t, (w, d) in runs.items()} == steps
        assert (f"{span / 1000:.1f}", f"{executed / 1000:.1f}", f"{parallelism:.1f}") == total
    for (runs, (span, _, parallelism)), (exact, exact_span, exact_parallelism) in zip(
        builds, CHROMIUM_EXACT, strict=True
    ):
        # Rounded to a millionth of a millisecond, as stored.
        assert {t: w for t, (w, _) in runs.items()} == pytest.approx(exact, abs=1e-6)
        assert span == exact_span
        assert parallelism == pytest.approx(exact_parallelism)


def test_a_real_ninja_log_in_show(cli: Runner) -> None:
    assert cli("telemetry", "ingest", str(NINJA_LOG)).code == 0
    shown = cli("telemetry", "show").stdout  # the newest: the incremental build
    # Executed 2410 + 1542 + 2106 = 6058 ms over the span [0, 6059): lib.a ended at 3952,
    # app started at 3953. Ingested from a log, the build is its span and has no worker
    # count: one target ran at a time, so it was never short of workers but for that 1 ms.
    assert (
        "Weighted Time: 6058ms (span 6059ms)\n"
        "Effective Parallelism: 1.00x\n"
        "Underused: 1ms of 6059ms (0.0%) with no target running\n"
    ) in shown
    assert "  1. [built] b.o - 2410ms, weighted 2410ms\n" in shown


@pytest.mark.parametrize("ninja", ninjas())
def test_a_recorded_ninja_build_weighs_as_its_log(tmp_path: Path, ninja: str) -> None:
    """``builder record -- ninja`` stores the times it read from the log the build wrote:
    the weighted figures of the recorded build and of that log ingested on its own agree."""
    out = tmp_path / "out"
    out.mkdir()
    for name in "abcde":
        (tmp_path / f"{name}.src").write_text(name)
    # The committed manifest with sleeps a tenth as long.
    manifest = (FIXTURES / "ninja" / "build.ninja").read_text()
    shorter = re.sub(r"secs = ([\d.]+)", lambda m: f"secs = {float(m[1]) / 10:.2f}", manifest)
    (out / "build.ninja").write_text(shorter)
    env = process_env(tmp_path / "recorded")
    env["PATH"] = f"{Path(ninja).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [BUILDER, "record", "--", ninja, "-C", str(out), "-j3"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    recorded = _ninja_builds(TelemetryStorage(tmp_path / "recorded"))
    ingested = TelemetryStorage(tmp_path / "ingested")
    ingest_file(ingested, out / ".ninja_log")
    logged = _ninja_builds(ingested)
    assert len(recorded) == len(logged) == 1
    (runs, (span, executed, parallelism)), (log_runs, log_figures) = recorded[0], logged[0]
    assert len(runs) == 8
    assert {t: d for t, (_, d) in runs.items()} == {t: d for t, (_, d) in log_runs.items()}
    assert {t: w for t, (w, _) in runs.items()} == pytest.approx(
        {t: w for t, (w, _) in log_runs.items()}, abs=1e-9
    )
    assert (span, executed) == log_figures[:2]
    assert parallelism == pytest.approx(log_figures[2])


# -- the command line -------------------------------------------------------------------------

SHOW_W1 = """\
=== Build w1 ===

Started: 2025-10-27T14:23:20
Finished: 2025-10-27T14:23:21
Duration: 1000ms
Status: succeeded

Tool: ninja
Host: n/a
Branch: n/a
Commit: n/a
Labels: (none)

Targets: 6 (5 built, 1 cached, 0 failed, 0 skipped)
Cache Hit Rate: 16.7%
Workers: 2
Utilization: 75.0%
Targets/Second: 6.00
Weighted Time: 900ms (span 950ms)
Effective Parallelism: 1.58x
Underused: 400ms of 1000ms (40.0%) with fewer than 2 targets running
Critical Path: n/a (no target reported its dependencies)

Targets, slowest first:
  1. [built] A - 600ms, weighted 300ms
  2. [built] B - 300ms, weighted 150ms
  3. [built] C - 300ms, weighted 150ms
  4. [built] D - 300ms, weighted 300ms
  5. [cached] E - 0ms
  6. [built] F - 0ms, weighted 0ms
"""


def test_show_prints_the_weighted_figures(weighted_cli: Runner) -> None:
    # Utilization 100 · 1500 / (1000 · 2) = 75.0%; 6 targets in 1 s; 1 hit of 6 attempted.
    # Effective parallelism 1500 / 950 = 1.5789 → 1.58x; underused 400 / 1000 = 40.0%.
    result = weighted_cli("telemetry", "show", "w1")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == SHOW_W1


def test_show_a_build_whose_figures_are_unknown(weighted_cli: Runner) -> None:
    no_targets = weighted_cli("telemetry", "show", "w3").stdout
    assert "Weighted Time: n/a\nEffective Parallelism: n/a\nUnderused: n/a\n" in no_targets
    # Only a cache hit: nothing ran (0 ms, no span) and there is no worker to count.
    cached = weighted_cli("telemetry", "show", "w4").stdout
    assert "Weighted Time: 0ms (span 0ms)\nEffective Parallelism: n/a\nUnderused: n/a\n" in cached
    assert "  1. [cached] E - 0ms\n" in cached


def test_show_json_has_the_weighted_figures(weighted_cli: Runner) -> None:
    result = weighted_cli("telemetry", "show", "w2", "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    shown = json.loads(result.stdout)
    figures = ["weightedMs", "spanMs", "effectiveParallelism", "workers", "underusedMs"]
    assert list(shown)[-7:] == [*figures, "criticalPath", "targets"]
    assert [shown[key] for key in figures] == [1500, 1800, round(2400 / 1800, 2), 3, 1700]
    assert [(t["target"], t["durationMs"], t["weightedMs"]) for t in shown["targets"]] == [
        ("A", 900, 550.0),
        ("C", 900, 550.0),
        ("B", 300, 100.0),
        ("W", 300, 300.0),
        ("S", 0, 0.0),
    ]
    assert list(shown["targets"][0]) == [
        "target",
        "status",
        "durationMs",
        "weightedMs",
        "startOffsetMs",
        "worker",
        "error",
        "deps",
    ]
    unknown = json.loads(weighted_cli("telemetry", "show", "w3", "--format", "json").stdout)
    assert [unknown[key] for key in figures] == [None, None, None, 0, None]


def test_summary_by_weighted_time(weighted_cli: Runner) -> None:
    plain = weighted_cli("telemetry", "summary", "--top", "3")
    result = weighted_cli("telemetry", "summary", "--top", "3", "--by", "weighted")
    assert (result.code, result.stderr) == (0, "")
    # By mean duration: A 750 ms, C 600, B 300 (before D and W by label).
    by_duration = "Top Bottlenecks:\n  1. A (avg: 0.8s)\n  2. C (avg: 0.6s)\n  3. B (avg: 0.3s)\n"
    # By mean weighted time (see test_the_window_ranks_targets_by_mean_weighted_time): A
    # 425 ms of 750, C 350 of 600, D 300 of 300; the rest of the report as it was.
    by_weighted = (
        "Top Bottlenecks (by weighted time):\n"
        "  1. A (avg: 0.4s weighted, 0.8s elapsed)\n"
        "  2. C (avg: 0.3s weighted, 0.6s elapsed)\n"
        "  3. D (avg: 0.3s weighted, 0.3s elapsed)\n"
    )
    assert by_duration in plain.stdout
    assert result.stdout == plain.stdout.replace(by_duration, by_weighted)


def test_summary_by_duration_is_the_plain_summary(weighted_cli: Runner) -> None:
    for format in ("text", "json"):
        plain = weighted_cli("telemetry", "summary", "--format", format)
        by_duration = weighted_cli("telemetry", "summary", "--by", "duration", "--format", format)
        assert by_duration.stdout == plain.stdout
        assert "by weighted" not in plain.stdout and "bottlenecksBy" not in plain.stdout


def test_summary_by_weighted_time_as_json(weighted_cli: Runner) -> None:
    plain = json.loads(weighted_cli("telemetry", "summary", "--format", "json").stdout)
    result = weighted_cli("telemetry", "summary", "--by", "weighted", "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    report = json.loads(result.stdout)
    keys = list(plain)
    at = keys.index("bottlenecks")
    assert list(report) == [*keys[:at], "bottlenecksBy", *keys[at:]]
    assert report["bottlenecksBy"] == "weighted"
    assert report["bottlenecks"][:2] == [
        {"target": "A", "meanWeightedMs": 425.0, "meanDurationMs": 750.0, "runs": 2},
        {"target": "C", "meanWeightedMs": 350.0, "meanDurationMs": 600.0, "runs": 2},
    ]
    assert {k: v for k, v in report.items() if k not in ("bottlenecks", "bottlenecksBy")} == {
        k: v for k, v in plain.items() if k != "bottlenecks"
    }


def test_summary_by_an_unknown_ranking_is_an_unusable_command_line(weighted_cli: Runner) -> None:
    result = weighted_cli("telemetry", "summary", "--by", "cpu")
    assert result.code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and "'cpu'" in line and "duration, weighted" in line


def test_summary_by_weighted_time_of_an_empty_store(cli: Runner, tmp_path: Path) -> None:
    text = cli("telemetry", "summary", "--by", "weighted")
    assert (text.code, text.stderr) == (0, "")
    assert text.stdout.startswith("No telemetry data yet in ")
    result = cli("telemetry", "summary", "--by", "weighted", "--format", "json")
    assert result.code == 0
    assert json.loads(result.stdout)["bottlenecks"] == []
    assert result.stderr.startswith("No telemetry data yet in ")


def test_show_an_unknown_build_is_an_error(weighted_cli: Runner) -> None:
    result = weighted_cli("telemetry", "show", "nope")
    assert (result.code, result.stdout) == (1, "")
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: no build 'nope' in ")


def test_target_names_are_escaped(cli: Runner) -> None:
    events = [
        _event("build_started", "x", T0, parallelism=1),
        _event("target_started", "x", T0, target="\x1b[31mred"),
        _event("target_finished", "x", T0 + 100, target="\x1b[31mred", status="built"),
        _event("build_finished", "x", T0 + 100, success=True),
    ]
    assert cli("telemetry", "ingest", "-", stdin="\n".join(events).encode()).code == 0
    summary = cli("telemetry", "summary", "--by", "weighted").stdout
    assert "  1. \\x1b[31mred (avg: 0.1s weighted, 0.1s elapsed)\n" in summary
    assert "\x1b" not in summary + cli("telemetry", "show").stdout


def test_the_ninja_fixture_is_the_manifests_log() -> None:
    """The committed log is the one the committed manifest wrote: its commands, by their
    outputs, in both builds."""
    manifest = (FIXTURES / "ninja" / "build.ninja").read_text()
    outputs = {
        word
        for line in manifest.splitlines()
        if line.startswith("build ")
        for word in line[len("build ") :].split(":")[0].split()
    }
    logged = {line.split("\t")[3] for line in NINJA_LOG.read_text().splitlines()[1:]}
    assert logged == outputs
    # The format Chromium's script reads (it refuses any other).
    assert NINJA_LOG.read_text().startswith("# ninja log v5\n")


def test_an_interrupted_build_has_no_parallelism_nor_idle_time(cli: Runner) -> None:
    """A killed build's unfinished targets are not stored: A and B ran together over
    [20, 500) and C was still running when the build was killed at 600 ms, so its workers'
    business is unknown. A and B's weighted times are still each half of 480 ms."""
    lines = [
        _event("build_started", "int", T0, parallelism=2),
        _event("target_started", "int", T0 + 20, target="A"),
        _event("target_started", "int", T0 + 20, target="B"),
        _event("target_finished", "int", T0 + 500, target="A", status="built"),
        _event("target_finished", "int", T0 + 500, target="B", status="built"),
        _event("target_started", "int", T0 + 500, target="C"),
        _event("target_started", "int", T0 + 600, target="D"),
    ]
    assert cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode()).code == 0
    shown = cli("telemetry", "show", "int").stdout
    assert "Effective Parallelism: n/a\nUnderused: n/a\n" in shown
    assert "  1. [built] A - 480ms, weighted 240ms\n" in shown
    data = json.loads(cli("telemetry", "show", "int", "--format", "json").stdout)
    assert (data["effectiveParallelism"], data["underusedMs"]) == (None, None)


def test_the_mean_weighted_times_are_exact_and_the_same_every_time(
    tmp_path: Path, storage: TelemetryStorage
) -> None:
    """Each target's mean is its shares' exact sum over its runs: the same answer whatever
    order polars' threads add the runs in (a float sum in that order changed in the last
    digits from one run to the next on the demo history)."""
    from decimal import Decimal

    history = tmp_path / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--output", str(history)],
        check=True,
        capture_output=True,
    )
    ingest_file(storage, history, apply_retention=False)
    analyzer = TelemetryAnalyzer(storage)
    _, rows = analyzer.targets(
        columns=["target", "status", "start_time", "end_time"], statuses=["built", "failed"]
    )
    shares = with_weighted_ms(rows)
    # Second route: Python's exact decimals over each run's share (whole millionths of a ms).
    runs: dict[str, list[float]] = {}
    for target, share in shares.select(pl.col("target").cast(pl.String), "weighted_ms").rows():
        runs.setdefault(target, []).append(share)
    exact = {
        target: float(sum(Decimal(f"{share:.6f}") for share in shares)) / len(shares)
        for target, shares in runs.items()
    }
    answers = {weighted_bottlenecks(analyzer, top=1000) for _ in range(20)}
    assert len(answers) == 1
    [ranked] = answers
    assert {b.target: b.mean_weighted_ms for b in ranked} == exact
