"""Every metric of the specification on a history small enough to work out by hand."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from telemetry.analyzer import (
    BuildLookupError,
    TelemetryAnalyzer,
    regressions,
    trend,
    trend_series,
)
from telemetry.errors import ConfigError
from telemetry.ingest import ingest_jsonl
from telemetry.model import TargetRun
from telemetry.storage import TelemetryStorage
from telemetry.window import Filter, Window
from tests.conftest import HOUR, T0, small_history


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


# -- filters ----------------------------------------------------------------------------------

BRANCHES = {"a": "main", "b": "feature/x", "c": "main"}


def _on_branches(lines: list[str]) -> list[str]:
    """small_history with a and c built on main, b on feature/x."""
    out = []
    for line in lines:
        event = json.loads(line)
        if event["event"] == "build_started":
            event["branch"] = BRANCHES[event["session"]]
            event["commit"] = event["session"] * 40
        out.append(json.dumps(event))
    return out


@pytest.fixture
def branched(storage: TelemetryStorage) -> TelemetryStorage:
    assert ingest_jsonl(storage, _on_branches(small_history())).sessions == 3
    return storage


def test_a_branch_filter_limits_every_number(branched: TelemetryStorage) -> None:
    report = TelemetryAnalyzer(branched, filter=Filter(branch="main")).summary()
    # a and c only (see test_summary_by_hand for each build's numbers).
    assert (report.total_builds, report.successful, report.failed) == (2, 1, 1)
    assert report.average_cache_hit_rate == (25 + 50) / 2
    assert report.average_utilization == (45 + 25) / 2
    assert report.average_targets_per_second == pytest.approx((4 + 4 / 3) / 2)
    # compile ran 400 (a) and 3000 (c, failed); test and link ran in a alone.
    assert [(b.target, b.mean_ms, b.runs) for b in report.bottlenecks] == [
        ("//app:compile", 1700.0, 2),
        ("//app:test", 300.0, 1),
        ("//app:link", 200.0, 1),
    ]
    # c against a alone: 3000 / 1000.
    [regression] = report.regressions
    assert (regression.session_id, regression.ratio, regression.expected_ms) == ("c", 3.0, 1000)


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        (Filter(branch="feature/x"), ["b"]),
        (Filter(branch="release"), []),
        (Filter(tool="ninja"), ["a"]),
        (Filter(tool="bazel"), ["b"]),
        (Filter(labels=(("ci", "true"),)), ["a"]),
        (Filter(labels=(("ci", "false"),)), []),
        (Filter(labels=(("ci", "true"), ("other", "x"))), []),  # every label must match
        (Filter(status="succeeded"), ["a", "b"]),
        (Filter(status="failed"), ["c"]),
        (Filter(branch="main", status="succeeded"), ["a"]),
        (Filter(branch="main", tool="ninja", labels=(("ci", "true"),)), ["a"]),
        (Filter(), ["a", "b", "c"]),
    ],
)
def test_filters_take_the_builds_that_match_all_they_ask(
    branched: TelemetryStorage, only: Filter, expected: list[str]
) -> None:
    analyzer = TelemetryAnalyzer(branched, filter=only)
    assert analyzer.sessions()["session_id"].to_list() == expected
    assert [b.session_id for b in analyzer.recent(10)] == expected[::-1]
    assert analyzer.summary().total_builds == len(expected)


def test_an_interrupted_build_is_a_failed_one(storage: TelemetryStorage) -> None:
    killed = [
        _line("build_started", "k", T0, tool="ninja"),
        _line("target_started", "k", T0 + 100, target="//x"),
    ]
    ingest_jsonl(storage, small_history() + killed)
    failed = TelemetryAnalyzer(storage, filter=Filter(status="failed")).sessions()
    assert failed["session_id"].to_list() == ["k", "c"]  # k started at T0, before c
    succeeded = TelemetryAnalyzer(storage, filter=Filter(status="succeeded")).sessions()
    assert succeeded["session_id"].to_list() == ["a", "b"]


def test_recent_with_a_filter_reaches_back_past_the_days_it_leaves_out(
    storage: TelemetryStorage,
) -> None:
    # One ninja build a day for 6 days, then 30 bazel builds on each of the next 3 days:
    # the newest ninja builds lie behind 90 newer builds and three day partitions.
    day = 24 * HOUR
    events = []
    for n in range(6):
        at = T0 + n * day
        events += [
            _line("build_started", f"n{n}", at, tool="ninja"),
            _line("build_finished", f"n{n}", at + 100 + n, success=True),
        ]
    for n in range(90):
        at = T0 + (6 + n // 30) * day + n * 1000
        events += [
            _line("build_started", f"z{n:02d}", at, tool="bazel"),
            _line("build_finished", f"z{n:02d}", at + 50, success=True),
        ]
    assert ingest_jsonl(storage, events).sessions == 96
    builds = TelemetryAnalyzer(storage, filter=Filter(tool="ninja")).recent(4)
    assert [(b.session_id, b.duration_ms) for b in builds] == [
        ("n5", 105),
        ("n4", 104),
        ("n3", 103),
        ("n2", 102),
    ]


def test_a_filter_is_read_from_the_command_line_or_refused() -> None:
    only = Filter.parse(branch="main", tool="ninja", labels=["ci=true", "empty="])
    assert only == Filter("main", "ninja", (("ci", "true"), ("empty", "")), None)
    assert Filter.parse().takes_all and not only.takes_all
    for labels in (["ci"], ["=true"]):
        with pytest.raises(ConfigError, match="--label must be KEY=VALUE"):
            Filter.parse(labels=labels)
    with pytest.raises(ConfigError, match="--status must be one of succeeded, failed"):
        Filter(status="broken")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--branch needs a name"):
        Filter(branch="")


# -- one build --------------------------------------------------------------------------------


def test_one_build_in_full(branched: TelemetryStorage) -> None:
    build = TelemetryAnalyzer(branched).build("b")
    assert (build.session_id, build.duration_ms, build.succeeded, build.tool) == (
        "b",
        2000,
        True,
        "bazel",
    )
    assert (build.branch, build.commit, build.labels) == ("feature/x", "b" * 40, {})
    assert (build.total_targets, build.built, build.cached, build.failed, build.skipped) == (
        5,
        3,
        2,
        0,
        0,
    )
    assert (build.cache_hit_rate, build.parallelism_utilization, build.targets_per_second) == (
        40.0,
        67.5,
        2.5,
    )
    assert (build.parallelism, build.peak_concurrency) == (None, 2)
    b = datetime(2025, 10, 27, 15, 23, 20, tzinfo=UTC)

    def at(ms: int) -> datetime:
        return b + timedelta(milliseconds=ms)

    # Slowest first; the two cache hits took 0 ms and go by label.
    assert build.targets == (
        TargetRun("//app:test", "built", at(500), at(1600), 1100, 1, None),
        TargetRun("//app:compile", "built", at(0), at(1000), 1000, 0, None),
        TargetRun("//app:link", "built", at(1400), at(2000), 600, 0, None),
        TargetRun("//lib:extra", "cached", at(1700), at(1700), 0, None, None),
        TargetRun("//lib:util", "cached", at(5), at(5), 0, None, None),
    )


def test_a_failed_targets_error_is_kept(branched: TelemetryStorage) -> None:
    build = TelemetryAnalyzer(branched).build("c")
    assert build.error == "Compilation failed for //app:compile"
    assert [(t.target, t.status, t.duration_ms, t.error) for t in build.targets] == [
        ("//app:compile", "failed", 3000, "boom"),
        ("//app:link", "skipped", 0, None),
        ("//app:test", "skipped", 0, None),
        ("//lib:util", "cached", 0, None),
    ]


def _builds(storage: TelemetryStorage, *ids: str) -> None:
    events = []
    for n, session in enumerate(ids):
        events += [
            _line("build_started", session, T0 + n * HOUR),
            _line("build_finished", session, T0 + n * HOUR + 10, success=True),
        ]
    ingest_jsonl(storage, events)


def test_a_prefix_names_one_build_and_a_whole_id_wins(storage: TelemetryStorage) -> None:
    _builds(storage, "ci-1", "ci-12", "ci-13", "dev-7")
    analyzer = TelemetryAnalyzer(storage)
    assert analyzer.build("ci-1").session_id == "ci-1"  # not ci-12 nor ci-13
    assert analyzer.build("ci-12").session_id == "ci-12"
    assert analyzer.build("d").session_id == "dev-7"
    with pytest.raises(BuildLookupError) as several:
        analyzer.build("ci-")
    assert str(several.value) == (
        f"'ci-' matches 3 builds in {storage.dir}: ci-13, ci-12, ci-1; give more of the session id"
    )
    with pytest.raises(BuildLookupError) as none:
        analyzer.build("x")
    assert str(none.value) == (
        f"no build 'x' in {storage.dir}; builder telemetry recent lists the newest builds "
        f"with their session ids"
    )


def test_an_error_names_five_of_many_builds_newest_first(storage: TelemetryStorage) -> None:
    _builds(storage, *(f"b{n}" for n in range(7)))
    with pytest.raises(
        BuildLookupError, match=r"'b' matches 7 builds in .*: b6, b5, b4, b3, b2, \.\.\.;"
    ):
        TelemetryAnalyzer(storage).build("b")


def test_the_filters_choose_among_the_builds_a_prefix_matches(branched: TelemetryStorage) -> None:
    on_main = TelemetryAnalyzer(branched, filter=Filter(branch="main"))
    assert on_main.newest_build().session_id == "c"  # type: ignore[union-attr]
    with pytest.raises(BuildLookupError, match=r"no build 'b' in .* among the builds selected"):
        on_main.build("b")
    succeeded = TelemetryAnalyzer(branched, filter=Filter(branch="main", status="succeeded"))
    assert succeeded.newest_build().session_id == "a"  # type: ignore[union-attr]
    window = Window.parse(None, "2025-10-27T15:00:00Z")
    assert TelemetryAnalyzer(branched, window=window).newest_build().session_id == "a"  # type: ignore[union-attr]
    assert TelemetryAnalyzer(branched, filter=Filter(tool="make")).newest_build() is None


def test_no_build_in_an_empty_store(storage: TelemetryStorage) -> None:
    assert TelemetryAnalyzer(storage).newest_build() is None
    with pytest.raises(BuildLookupError):
        TelemetryAnalyzer(storage).build("a")


def test_an_id_stored_for_two_builds_is_told_apart_by_time(tmp_path: Path) -> None:
    # Two machines' stores merged by copying their day folders: one id, two builds.
    here, there = TelemetryStorage(tmp_path / "here"), TelemetryStorage(tmp_path / "there")
    _builds(here, "x", "x-2")
    ingest_jsonl(
        there,
        [
            _line("build_started", "x", T0 + 48 * HOUR),
            _line("build_finished", "x", T0 + 48 * HOUR + 10, success=True),
        ],
    )
    for dataset in ("sessions", "targets"):
        for folder in (there.dir / dataset).iterdir():
            shutil.copytree(folder, here.dir / dataset / folder.name)
    with pytest.raises(BuildLookupError) as twice:
        TelemetryAnalyzer(here).build("x")
    assert str(twice.value) == (
        f"'x' is the session id of 2 builds in {here.dir}, started 2025-10-29T14:23:20, "
        f"2025-10-27T14:23:20; choose one with --since and --until"
    )
    window = Window.parse("2025-10-28", None)
    assert TelemetryAnalyzer(here, window=window).build("x").start_time == datetime(
        2025, 10, 29, 14, 23, 20, tzinfo=UTC
    )


def test_every_target_row_of_the_builds_taken(branched: TelemetryStorage) -> None:
    sessions, rows = TelemetryAnalyzer(branched, filter=Filter(branch="main")).targets()
    assert sessions["session_id"].to_list() == ["a", "c"]
    # The hand-made history's rows of a and c (tests/conftest.py::small_history), a's first.
    assert rows["session_id"].to_list() == ["a"] * 4 + ["c"] * 4
    assert sorted(rows.select("session_id", "target", "status", "duration_ms").rows()) == [
        ("a", "//app:compile", "built", 400),
        ("a", "//app:link", "built", 200),
        ("a", "//app:test", "built", 300),
        ("a", "//lib:util", "cached", 0),
        ("c", "//app:compile", "failed", 3000),
        ("c", "//app:link", "skipped", 0),
        ("c", "//app:test", "skipped", 0),
        ("c", "//lib:util", "cached", 0),
    ]
    assert rows.filter(pl.col("status") == "failed")["error"].to_list() == ["boom"]
    assert rows.schema["target"] == pl.String and rows.schema["status"] == pl.String


def test_no_target_rows_without_builds(storage: TelemetryStorage) -> None:
    sessions, rows = TelemetryAnalyzer(storage).targets()
    assert sessions.is_empty() and rows.is_empty()
    assert rows.columns == ["session_id", "target", "status", "start_time", "end_time",
                            "duration_ms", "worker", "error"]  # fmt: skip


def test_a_session_id_stored_for_two_builds_has_its_target_rows_once(tmp_path: Path) -> None:
    # Two stores merged by copying their day folders: build "x" on two days, one target each.
    here, there = TelemetryStorage(tmp_path / "here"), TelemetryStorage(tmp_path / "there")
    for storage, start, target in ((here, T0, "//one"), (there, T0 + 48 * HOUR, "//two")):
        ingest_jsonl(
            storage,
            [
                _line("build_started", "x", start),
                _line(
                    "target_finished", "x", start + 5, target=target, status="built", duration_ms=5
                ),
                _line("build_finished", "x", start + 10, success=True),
            ],
        )
    for dataset in ("sessions", "targets"):
        for folder in (there.dir / dataset).iterdir():
            shutil.copytree(folder, here.dir / dataset / folder.name)
    sessions, rows = TelemetryAnalyzer(here).targets()
    assert sessions["session_id"].to_list() == ["x", "x"]
    assert sorted(rows["target"].to_list()) == ["//one", "//two"]  # each stored row once


def test_target_rows_of_some_columns_and_statuses(branched: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(branched, filter=Filter(branch="main"))
    _, rows = analyzer.targets(columns=["duration_ms", "status"], statuses=["built", "failed"])
    assert rows.columns == ["session_id", "duration_ms", "status"]
    # a's three built targets and c's failed compile (tests/conftest.py::small_history).
    assert sorted(rows.rows()) == [
        ("a", 200, "built"),
        ("a", 300, "built"),
        ("a", 400, "built"),
        ("c", 3000, "failed"),
    ]
    _, ids = analyzer.targets(columns=["session_id"], statuses=["skipped"])
    assert ids.rows() == [("c",), ("c",)]
    with pytest.raises(ValueError, match="no column 'label'"):
        analyzer.targets(columns=["label"])


@pytest.mark.parametrize(
    ("values", "points", "expected"),
    [
        ([], 20, ()),
        ([5], 20, (5.0,)),
        ([3, 1, 2], 3, (3.0, 1.0, 2.0)),  # no more values than points: the values
        # 7 values in 3 runs: position p goes to run 3p // 7, so p 0-2 (3p < 7), 3-4, 5-6:
        # means (1+2+3)/3, (4+5)/2, (6+7)/2.
        ([1, 2, 3, 4, 5, 6, 7], 3, (2.0, 4.5, 6.5)),
        # 10 values in 4 runs: 4p // 10 puts p 0-2, 3-4, 5-7, 8-9 together.
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 4, (20.0, 45.0, 70.0, 95.0)),
    ],
)
def test_a_trend_series_is_the_means_of_consecutive_runs(
    values: list[int], points: int, expected: tuple[float, ...]
) -> None:
    assert trend_series(pl.Series(values, dtype=pl.Int64), points) == expected


def test_the_summary_gives_its_trends_series_only_when_asked(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "t")
    ingest_jsonl(storage, small_history())
    plain = TelemetryAnalyzer(storage).summary()
    assert (plain.build_time_series, plain.cache_hit_rate_series) == ((), ())
    # Builds a, b, c: 1000, 2000, 3000 ms; hit rates 1/4, 2/5, 1/2 of executed or cached.
    asked = TelemetryAnalyzer(storage).summary(trend_points=2)
    # Runs by 2p // 3: p = 0 and 1 (a, b) in run 0, p = 2 (c) in run 1.
    assert asked.build_time_series == (1500.0, 3000.0)
    assert asked.cache_hit_rate_series == (32.5, 50.0)  # (25 + 40) / 2, 50
