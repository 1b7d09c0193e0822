"""`builder telemetry [summary]`: the seed's text, exactly, and the same numbers as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Runner

# Worked out by hand from tests/conftest.py::small_history (see tests/test_analyzer.py).
SMALL_SUMMARY = """\
=== Build Telemetry Summary ===

Total Builds: 3
Successful: 2 (66.7%)
Failed: 1

Performance Metrics:
  Average Build Time: 2000 ms
  Fastest Build: 1000 ms
  Slowest Build: 3000 ms

Cache Efficiency:
  Average Hit Rate: 38.3%
  Trend: Increasing

Parallelism:
  Average Utilization: 45.8%
  Targets/Second: 2.61

Top Bottlenecks:
  1. //app:compile (avg: 1.5s)
  2. //app:test (avg: 0.7s)
  3. //app:link (avg: 0.4s)

Build Time Trend: Increasing

⚠️  Performance Regressions Detected:
  • 2025-10-27T16:23:20: 2.0x slower than average (expected 1.5s, got 3.0s)
"""


def test_summary_text_is_exact(small_cli: Runner) -> None:
    result = small_cli("telemetry", "summary")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == SMALL_SUMMARY


def test_bare_telemetry_is_the_summary(small_cli: Runner) -> None:
    assert small_cli("telemetry").stdout == SMALL_SUMMARY


def test_seed_grep_use_cases(small_cli: Runner) -> None:
    text = small_cli("telemetry", "summary").stdout
    assert [line for line in text.splitlines() if "Bottlenecks" in line] == ["Top Bottlenecks:"]
    assert "Performance Regressions" in text


def test_top_and_threshold_flags(small_cli: Runner) -> None:
    result = small_cli("telemetry", "summary", "--top", "1", "--threshold", "2.5")
    assert "  1. //app:compile (avg: 1.5s)\n\nBuild Time Trend" in result.stdout
    assert "Regressions" not in result.stdout


def test_flag_beats_environment(small_cli: Runner) -> None:
    env = {"BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "2.5"}
    assert "Regressions" not in small_cli("telemetry", "summary", env=env).stdout
    flagged = small_cli("telemetry", "summary", "--threshold", "1.5", env=env)
    assert "Regressions" in flagged.stdout


def test_window(small_cli: Runner, tmp_path: Path) -> None:
    result = small_cli(
        "telemetry", "summary", "--since", "2025-10-27T15:00:00Z", "--until", "2025-10-27T16:00"
    )
    assert "Total Builds: 1\n" in result.stdout
    assert "Average Build Time: 2000 ms" in result.stdout
    empty = small_cli("telemetry", "summary", "--since", "2030-01-01")
    assert (empty.code, empty.stdout) == (
        0,
        f"No builds in {tmp_path / 'telemetry'} in the selected time window.\n",
    )


def test_summary_json_has_the_same_numbers(small_cli: Runner) -> None:
    result = small_cli("telemetry", "summary", "--format", "json")
    report = json.loads(result.stdout)
    assert report["totalBuilds"] == 3
    assert (report["successful"], report["failed"]) == (2, 1)
    assert report["averageBuildTimeMs"] == 2000
    assert (report["fastestBuildMs"], report["slowestBuildMs"]) == (1000, 3000)
    assert report["averageCacheHitRate"] == pytest.approx(115 / 3)
    assert report["averageParallelismUtilization"] == pytest.approx(137.5 / 3)
    assert report["averageTargetsPerSecond"] == pytest.approx((4 + 2.5 + 4 / 3) / 3)
    assert report["cacheHitRateTrend"] == report["buildTimeTrend"] == "Increasing"
    assert [(b["target"], b["runs"]) for b in report["bottlenecks"]] == [
        ("//app:compile", 3),
        ("//app:test", 2),
        ("//app:link", 2),
    ]
    assert report["bottlenecks"][0]["meanDurationMs"] == pytest.approx(4400 / 3)
    assert report["regressions"] == [
        {
            "sessionId": "c",
            "startTime": "2025-10-27T16:23:20",
            "ratio": 2.0,
            "expectedMs": 1500.0,
            "actualMs": 3000,
        }
    ]


def test_empty_store_says_so(cli: Runner) -> None:
    result = cli("telemetry", "summary")
    assert result.code == 0
    assert result.stdout.startswith("No telemetry data yet in ")
    assert json.loads(cli("telemetry", "summary", "--format", "json").stdout)["totalBuilds"] == 0


def test_piped_output_has_no_colour(small_cli: Runner) -> None:
    assert "\x1b[" not in small_cli("telemetry", "summary").stdout


def test_a_store_with_nothing_readable_says_so(cli: Runner, tmp_path: Path) -> None:
    folder = tmp_path / "telemetry" / "sessions" / "date=2025-10-27"
    folder.mkdir(parents=True)
    (folder / "20251027T000000Z-0123456789ab-n1.arrow").write_bytes(b"broken")
    result = cli("telemetry", "summary")
    assert result.stdout == (
        f"No readable builds in {tmp_path / 'telemetry'} (see the warnings above).\n"
    )
    assert result.stderr.startswith("Warning: skipping ")


def test_a_store_with_only_empty_folders_has_no_data(cli: Runner, tmp_path: Path) -> None:
    folder = tmp_path / "telemetry" / "sessions" / "date=2025-10-27"
    folder.mkdir(parents=True)
    (folder / ".tmp-20251027T000000Z-0123456789ab.arrow.partial").write_bytes(b"half")
    result = cli("telemetry", "summary")
    assert (result.stdout.startswith("No telemetry data yet in "), result.stderr) == (True, "")
