"""The bundled history, analysed by the product and by the independent reference in
tests/reference.py (plain Python over the JSON lines): every number must agree."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.exporter import render_recent, render_summary
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage
from tests import reference
from tests.conftest import FIXTURES

TODAY = "2026-11-20"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TelemetryStorage]]:
    folder = tmp_path_factory.mktemp("history")
    path = folder / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--today", TODAY, "--output", str(path)],
        check=True,
    )
    storage = TelemetryStorage(folder / "telemetry")
    result = ingest_file(storage, path)
    assert result.problems == ()
    yield path, storage


@pytest.fixture(scope="module")
def ref_sessions(history: tuple[Path, TelemetryStorage]) -> list[reference.RefSession]:
    with history[0].open() as handle:
        return reference.sessions_from_lines(handle)


def test_the_history_is_what_the_demo_promises(
    ref_sessions: list[reference.RefSession],
) -> None:
    assert len(ref_sessions) == 200
    assert sum(s.interrupted for s in ref_sessions) == 1
    assert 3 <= sum(not s.succeeded and not s.interrupted for s in ref_sessions) <= 6
    targets = {t for s in ref_sessions for t, _ in s.executed_runs}
    assert 120 <= len(targets) <= 180
    days = {s.start_ms // 86_400_000 for s in ref_sessions}
    assert len(days) >= 50
    assert reference.summary(ref_sessions)["regressions"]  # the slowdown at the end shows


def test_summary_text_matches_the_reference(
    history: tuple[Path, TelemetryStorage], ref_sessions: list[reference.RefSession]
) -> None:
    report = TelemetryAnalyzer(history[1]).summary()
    assert render_summary(report) == reference.summary_text(ref_sessions)


def test_summary_numbers_match_the_reference(
    history: tuple[Path, TelemetryStorage], ref_sessions: list[reference.RefSession]
) -> None:
    report = TelemetryAnalyzer(history[1]).summary(top=200)
    expected = reference.summary(ref_sessions)
    assert report.total_builds == expected["total"]
    assert report.successful == expected["successful"]
    assert report.average_build_ms == pytest.approx(expected["avg_duration_ms"], rel=1e-12)
    assert report.fastest_build_ms == expected["min_duration_ms"]
    assert report.slowest_build_ms == expected["max_duration_ms"]
    assert report.average_cache_hit_rate == pytest.approx(expected["avg_cache_hit_rate"], rel=1e-12)
    assert report.average_utilization == pytest.approx(expected["avg_utilization"], rel=1e-12)
    assert report.average_targets_per_second == pytest.approx(
        expected["avg_targets_per_second"], rel=1e-12
    )
    assert report.cache_trend == expected["cache_trend"]
    assert report.build_time_trend == expected["duration_trend"]
    assert [(b.target, pytest.approx(b.mean_ms)) for b in report.bottlenecks] == [
        (t, m) for t, m in expected["bottlenecks"]
    ]
    assert [
        (r.session_id, pytest.approx(r.ratio), pytest.approx(r.expected_ms), r.actual_ms)
        for r in report.regressions
    ] == [(sid, ratio, exp, act) for sid, _, ratio, exp, act in expected["regressions"]]


def test_every_session_matches_the_reference(
    history: tuple[Path, TelemetryStorage], ref_sessions: list[reference.RefSession]
) -> None:
    ours = TelemetryAnalyzer(history[1]).sessions().to_dicts()
    assert [s["session_id"] for s in ours] == [s.session_id for s in ref_sessions]
    for got, want in zip(ours, ref_sessions, strict=True):
        assert (
            got["duration_ms"],
            got["built"],
            got["cached"],
            got["failed"],
            got["skipped"],
            got["total_targets"],
            got["succeeded"],
            got["interrupted"],
        ) == (
            want.duration_ms,
            want.built,
            want.cached,
            want.failed,
            want.skipped,
            want.total_targets,
            want.succeeded,
            want.interrupted,
        ), want.session_id
        assert got["peak_concurrency"] == want.peak_concurrency, want.session_id
        assert got["cache_hit_rate"] == pytest.approx(want.cache_hit_rate, rel=1e-12)
        assert got["parallelism_utilization"] == pytest.approx(
            want.parallelism_utilization, rel=1e-12
        )
        assert got["targets_per_second"] == pytest.approx(want.targets_per_second, rel=1e-12)
        assert dict(got["labels"] or {}) == want.labels


def test_recent_matches_the_reference(
    history: tuple[Path, TelemetryStorage], ref_sessions: list[reference.RefSession]
) -> None:
    builds = TelemetryAnalyzer(history[1]).recent(10)
    newest = list(reversed(ref_sessions))[:10]
    assert [b.session_id for b in builds] == [s.session_id for s in newest]
    for build, want in zip(builds, newest, strict=True):
        assert build.duration_ms == want.duration_ms
        assert [(x.target, pytest.approx(x.mean_ms)) for x in build.bottlenecks] == (
            reference.top_bottlenecks(want)
        )
    text = render_recent(builds)
    assert text.startswith(
        f"Recent 10 Builds:\n\n1. [✓] {reference.format_utc(newest[0].start_ms)}"
    )


def test_recent_opens_only_the_newest_partitions(
    history: tuple[Path, TelemetryStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    from telemetry import snapshot

    storage = history[1]
    opened: list[Path] = []
    original = snapshot.readable

    def spy(dataset, files, **options):  # type: ignore[no-untyped-def]
        files = list(files)
        opened.extend(f.path for f in files)
        return original(dataset, files, **options)

    monkeypatch.setattr(snapshot, "readable", spy)
    TelemetryAnalyzer(storage).recent(1)
    days = {path.parent.name for path in opened}
    assert days == {f"date={TODAY}"}


def test_round_trip_export_equals_the_input_sessions(
    history: tuple[Path, TelemetryStorage], ref_sessions: list[reference.RefSession]
) -> None:
    from telemetry.exporter import sessions_json

    exported = json.loads(sessions_json(TelemetryAnalyzer(history[1]).sessions()))["sessions"]
    assert len(exported) == len(ref_sessions)
    for got, want in zip(exported, ref_sessions, strict=True):
        expected = {
            "sessionId": want.session_id,
            "startTime": reference.format_utc(want.start_ms),
            "endTime": reference.format_utc(want.end_ms),
            "durationMs": want.duration_ms,
            "totalTargets": want.total_targets,
            "built": want.built,
            "cached": want.cached,
            "failed": want.failed,
            "skipped": want.skipped,
            "cacheHitRate": round(want.cache_hit_rate, 2),
            "parallelismUtilization": round(want.parallelism_utilization, 2),
            "targetsPerSecond": round(want.targets_per_second, 2),
            "succeeded": want.succeeded,
            "interrupted": want.interrupted,
            "parallelism": want.parallelism,
            "tool": want.tool,
            "labels": want.labels,
        }
        assert {key: got[key] for key in expected} == expected
