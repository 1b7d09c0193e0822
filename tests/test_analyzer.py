"""Every metric of the specification on a history small enough to work out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from telemetry.analyzer import TelemetryAnalyzer, regressions, trend
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Window
from tests.conftest import HOUR, T0


def test_per_session_metrics_by_hand(small_store: TelemetryStorage) -> None:
    sessions = TelemetryAnalyzer(small_store).sessions()
    got = sessions.select(
        "session_id",
        "duration_ms",
        "total_targets",
        "built",
        "cached",
        "failed",
        "skipped",
        "cache_hit_rate",
        "parallelism_utilization",
        "targets_per_second",
        "succeeded",
    ).rows()
    # a: 4 targets (3 built, 1 cached) in 1000 ms on 2 workers running 400+300+200 ms.
    # b: 5 targets (3 built, 2 cached) in 2000 ms, no worker count: peak 2 running at once
    #    (compile [0,1000) and test [500,1600); link [1400,2000) overlaps test only), 2700 ms.
    # c: 4 targets (1 failed, 1 cached, 2 skipped) in 3000 ms on 4 workers, 3000 ms executed.
    assert got == [
        ("a", 1000, 4, 3, 1, 0, 0, 25.0, 45.0, 4.0, True),
        ("b", 2000, 5, 3, 2, 0, 0, 40.0, 67.5, 2.5, True),
        ("c", 3000, 4, 0, 1, 1, 2, 50.0, 25.0, pytest.approx(4 / 3), False),
    ]
    assert sessions["peak_concurrency"].to_list() == [2, 2, 1]


def test_summary_by_hand(small_store: TelemetryStorage) -> None:
    report = TelemetryAnalyzer(small_store).summary()
    assert (report.total_builds, report.successful, report.failed) == (3, 2, 1)
    assert report.success_rate == pytest.approx(200 / 3)
    assert report.average_build_ms == 2000
    assert (report.fastest_build_ms, report.slowest_build_ms) == (1000, 3000)
    assert report.average_cache_hit_rate == pytest.approx((25 + 40 + 50) / 3)
    assert report.average_utilization == pytest.approx((45 + 67.5 + 25) / 3)
    assert report.average_targets_per_second == pytest.approx((4 + 2.5 + 4 / 3) / 3)
    # Older ⌊3/2⌋ = 1 session against the newer 2: hit rate 25 → 45, duration 1000 → 2500.
    assert report.cache_trend == "Increasing"
    assert report.build_time_trend == "Increasing"
    # compile ran 400, 1000 and 3000 (failed runs count); test 300 and 1100; link 200, 600.
    assert [(b.target, b.mean_ms, b.runs) for b in report.bottlenecks] == [
        ("//app:compile", pytest.approx(4400 / 3), 3),
        ("//app:test", 700.0, 2),
        ("//app:link", 400.0, 2),
    ]
    # Fewer than 10 builds: only the newest is checked, 3000 against mean(1000, 2000).
    [regression] = report.regressions
    assert regression.session_id == "c"
    assert regression.start_time == datetime(2025, 10, 27, 16, 23, 20, tzinfo=UTC)
    assert (regression.ratio, regression.expected_ms, regression.actual_ms) == (2.0, 1500, 3000)


def test_top_and_threshold(small_store: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(small_store, regression_threshold=2.5)
    report = analyzer.summary(top=1)
    assert [b.target for b in report.bottlenecks] == ["//app:compile"]
    assert report.regressions == ()


def test_recent_newest_first_with_bottlenecks(small_store: TelemetryStorage) -> None:
    builds = TelemetryAnalyzer(small_store).recent(2)
    assert [b.session_id for b in builds] == ["c", "b"]
    assert [(x.target, x.mean_ms) for x in builds[1].bottlenecks] == [
        ("//app:test", 1100),
        ("//app:compile", 1000),
        ("//app:link", 600),
    ]
    assert builds[0].error == "Compilation failed for //app:compile"
    assert [(x.target, x.mean_ms) for x in builds[0].bottlenecks] == [("//app:compile", 3000)]


def test_window_limits_every_number(small_store: TelemetryStorage) -> None:
    window = Window.parse("2025-10-27T15:00:00Z", "2025-10-27T16:00:00Z")
    report = TelemetryAnalyzer(small_store, window=window).summary()
    assert report.total_builds == 1
    assert report.average_build_ms == 2000
    assert [(b.target, b.mean_ms) for b in report.bottlenecks] == [
        ("//app:test", 1100),
        ("//app:compile", 1000),
        ("//app:link", 600),
    ]


def test_empty_store(storage: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(storage)
    report = analyzer.summary()
    assert report.total_builds == 0 and report.bottlenecks == () and report.regressions == ()
    assert analyzer.recent(5) == []
    assert analyzer.sessions().is_empty()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "Stable"),
        ([5.0], "Stable"),
        ([10.0, 11.0], "Stable"),  # exactly +10% is not above +10%
        ([10.0, 11.5], "Increasing"),
        ([10.0, 8.9], "Decreasing"),
        ([0.0, 50.0], "Stable"),  # a zero old mean
        ([10.0, 10.0, 10.0, 12.0, 12.0], "Increasing"),  # old 2: mean 10; new 3: mean 34/3
        ([10.0, 30.0, 10.0, 10.0, 10.0], "Decreasing"),  # old 20, new 10
    ],
)
def test_trend(values: list[float], expected: str) -> None:
    assert trend(pl.Series(values, dtype=pl.Float64)) == expected


def _sessions(durations: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session_id": [f"s{i}" for i in range(len(durations))],
            "start_time": [datetime(2025, 1, 1, i, tzinfo=UTC) for i in range(len(durations))],
            "duration_ms": durations,
        }
    )


def test_regressions_check_last_three_when_ten_or_more() -> None:
    # 9 builds of 100 ms, then 300 (3.0x of 100), 100 (100 vs mean 120: no), 400
    # (400 vs mean (900 + 300 + 100) / 11 = 118.18: 3.38x).
    durations = [100] * 9 + [300, 100, 400]
    found = regressions(_sessions(durations), threshold=1.5)
    assert [(r.session_id, r.actual_ms) for r in found] == [("s9", 300), ("s11", 400)]
    assert found[0].ratio == 3.0 and found[0].expected_ms == 100
    assert found[1].expected_ms == pytest.approx(1300 / 11)
    assert found[1].ratio == pytest.approx(400 / (1300 / 11))


def test_regressions_check_only_the_last_when_fewer_than_ten() -> None:
    # The 300 ms build is a 3x regression, but it is not the newest build.
    assert regressions(_sessions([100, 300, 100]), threshold=1.5) == ()
    # Exactly at the threshold counts: 150 against 100.
    [found] = regressions(_sessions([100, 150]), threshold=1.5)
    assert found.ratio == 1.5
    assert regressions(_sessions([100]), threshold=1.5) == ()


def test_utilization_does_not_overflow() -> None:
    from telemetry.analyzer import with_session_metrics

    frame = pl.DataFrame(
        {
            "built": [1],
            "cached": [0],
            "failed": [0],
            "total_targets": [1],
            "duration_ms": [200_000_000_000_000],
            "executed_ms": [1_000],
            "parallelism": pl.Series([2**31 - 1], dtype=pl.Int32),
            "peak_concurrency": pl.Series([1], dtype=pl.Int32),
        }
    )
    [utilization] = with_session_metrics(frame.lazy()).collect()["parallelism_utilization"]
    assert utilization == pytest.approx(100 * 1_000 / (2e14 * (2**31 - 1)), rel=1e-12)


def _line(kind: str, session: str, ts: int, **fields: object) -> str:
    return json.dumps({"event": kind, "session": session, "ts": ts, **fields})


# A build from a tool without per-target events (`builder record -- make`): the session
# alone, 500 ms, an hour after c.
M = T0 + 3 * HOUR
MAKE_BUILD = [
    _line("build_started", "m", M, tool="make"),
    _line("build_finished", "m", M + 500, success=True),
]
# Two targets reported, both skipped, in 400 ms: nothing attempted.
S = T0 + 4 * HOUR
SKIPPED_BUILD = [
    _line("build_started", "s", S),
    _line("target_finished", "s", S + 400, target="//app:x", status="skipped"),
    _line("target_finished", "s", S + 400, target="//app:y", status="skipped"),
    _line("build_finished", "s", S + 400, success=False),
]


def test_a_build_without_targets_has_no_rates_and_one_with_skipped_targets_has(
    storage: TelemetryStorage,
) -> None:
    ingest_jsonl(storage, MAKE_BUILD + SKIPPED_BUILD)
    got = (
        TelemetryAnalyzer(storage)
        .sessions()
        .select(
            "session_id",
            "total_targets",
            "cache_hit_rate",
            "parallelism_utilization",
            "targets_per_second",
        )
        .rows()
    )
    # s: hit rate 0 of 0 attempts is 0; no worker count and nothing executed, so no
    # capacity: 0; 2 targets in 0.4 s: 5 a second.
    assert got == [("m", 0, None, None, None), ("s", 2, 0.0, 0.0, 5.0)]


def test_the_rates_are_averaged_over_the_builds_that_report_targets(
    small_store: TelemetryStorage,
) -> None:
    ingest_jsonl(small_store, MAKE_BUILD)
    report = TelemetryAnalyzer(small_store).summary()
    assert (report.total_builds, report.builds_with_targets) == (4, 3)
    # a, b and c as in test_summary_by_hand; m has no rates to count.
    assert report.average_cache_hit_rate == pytest.approx((25 + 40 + 50) / 3)
    assert report.average_utilization == pytest.approx((45 + 67.5 + 25) / 3)
    assert report.average_targets_per_second == pytest.approx((4 + 2.5 + 4 / 3) / 3)
    # Hit rates 25 | 40, 50: 25 → 45, Increasing (m counted as 0 would make it
    # 25, 40 | 50, 0: 32.5 → 25, Decreasing).
    assert report.cache_trend == "Increasing"
    # Every build has a duration: 1000, 2000 | 3000, 500: 1500 → 1750, +16.7%.
    assert report.build_time_trend == "Increasing"
    assert report.average_build_ms == 6500 / 4


def test_no_build_with_targets_leaves_the_rates_unknown(storage: TelemetryStorage) -> None:
    ingest_jsonl(storage, MAKE_BUILD)
    report = TelemetryAnalyzer(storage).summary()
    assert (report.total_builds, report.builds_with_targets) == (1, 0)
    assert report.average_cache_hit_rate is None
    assert report.average_utilization is None
    assert report.average_targets_per_second is None
    assert report.cache_trend == "Stable"
    [build] = TelemetryAnalyzer(storage).recent(1)
    assert (build.cache_hit_rate, build.parallelism_utilization, build.targets_per_second) == (
        None,
        None,
        None,
    )
