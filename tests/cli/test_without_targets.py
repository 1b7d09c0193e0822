"""Builds that report no targets (`builder record -- make`, any tool without per-target
events) have no rates: `n/a` in text, `null` in JSON, an empty CSV cell; the averages of the
rates are over the builds that do report targets, and the summary says how many."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import BUILDER, HOUR, T0, Runner, process_env

# A make build an hour after c of tests/conftest.py::small_history: the session alone.
MAKE_BUILD = "\n".join(
    json.dumps(event)
    for event in (
        {"event": "build_started", "session": "m", "ts": T0 + 3 * HOUR, "tool": "make"},
        {"event": "build_finished", "session": "m", "ts": T0 + 3 * HOUR + 500, "success": True},
    )
).encode()

# Worked out by hand: a, b and c as in tests/cli/test_summary.py, whose rates m does not
# change; every build counts for the times: (1000 + 2000 + 3000 + 500) / 4 = 1625 ms, and
# 1000, 2000 | 3000, 500 is 1500 → 1750 ms (+16.7%). The hit rates 25 | 40, 50 go from 25 to
# 45 (counting m as 0 would give 25, 40 | 50, 0: Decreasing). m, the newest build, is not
# slower than the others: no regression.
MIXED_SUMMARY = """\
=== Build Telemetry Summary ===

Total Builds: 4
Successful: 3 (75.0%)
Failed: 1

Performance Metrics:
  Average Build Time: 1625 ms
  Fastest Build: 500 ms
  Slowest Build: 3000 ms

Cache Efficiency:
  Average Hit Rate: 38.3% (over 3 of 4 builds)
  Trend: Increasing

Parallelism:
  Average Utilization: 45.8% (over 3 of 4 builds)
  Targets/Second: 2.61 (over 3 of 4 builds)

Top Bottlenecks:
  1. //app:compile (avg: 1.5s)
  2. //app:test (avg: 0.7s)
  3. //app:link (avg: 0.4s)

Build Time Trend: Increasing
"""


@pytest.fixture
def mixed_cli(small_cli: Runner) -> Runner:
    stored = small_cli("telemetry", "ingest", "-", stdin=MAKE_BUILD)
    assert stored.code == 0, stored.stderr
    return small_cli


def test_the_summary_averages_the_builds_with_targets_and_says_how_many(
    mixed_cli: Runner,
) -> None:
    result = mixed_cli("telemetry", "summary")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == MIXED_SUMMARY
    # Through the full parser too (a window sends it there).
    assert mixed_cli("telemetry", "summary", "--since", "2025-10-27").stdout == MIXED_SUMMARY


def test_the_seeds_lines_still_match_a_grep(mixed_cli: Runner) -> None:
    text = mixed_cli("telemetry", "summary").stdout
    for prefix in ("  Average Hit Rate: 38.3%", "  Average Utilization: 45.8%"):
        assert [line for line in text.splitlines() if line.startswith(prefix)] != []
    assert "  Targets/Second: 2.61" in text


def test_the_summary_json_has_the_same_numbers_and_the_count(mixed_cli: Runner) -> None:
    report = json.loads(mixed_cli("telemetry", "summary", "--format", "json").stdout)
    assert (report["totalBuilds"], report["buildsWithTargets"]) == (4, 3)
    assert report["averageCacheHitRate"] == pytest.approx(115 / 3)
    assert report["averageParallelismUtilization"] == pytest.approx(137.5 / 3)
    assert report["averageTargetsPerSecond"] == pytest.approx((4 + 2.5 + 4 / 3) / 3)
    assert report["cacheHitRateTrend"] == "Increasing"


def test_recent_shows_the_rate_as_unknown(mixed_cli: Runner) -> None:
    assert mixed_cli("telemetry", "recent", "2").stdout == (
        "Recent 2 Builds:\n"
        "\n"
        "1. [✓] 2025-10-27T17:23:20 - 500ms (cache: n/a)\n"
        "\n"
        "2. [✗] 2025-10-27T16:23:20 - 3000ms (cache: 50.0%)\n"
        "   Error: Compilation failed for //app:compile\n"
        "   Top bottlenecks:\n"
        "     • //app:compile: 3000ms\n"
    )
    [build] = json.loads(mixed_cli("telemetry", "recent", "1", "--format", "json").stdout)["builds"]
    assert (build["cacheHitRate"], build["parallelismUtilization"], build["targetsPerSecond"]) == (
        None,
        None,
        None,
    )


def test_exports_leave_the_rates_empty(mixed_cli: Runner, tmp_path: Path) -> None:
    text = mixed_cli("telemetry", "export").stdout
    assert '      "cacheHitRate": null,\n' in text
    last = json.loads(text)["sessions"][-1]
    assert last["sessionId"] == "m" and last["totalTargets"] == 0
    assert (last["cacheHitRate"], last["parallelismUtilization"], last["targetsPerSecond"]) == (
        None,
        None,
        None,
    )
    rows = list(
        csv.DictReader(
            io.StringIO(mixed_cli("telemetry", "export", "--format", "csv").stdout, newline="")
        )
    )
    assert [
        (r["cacheHitRate"], r["parallelismUtilization"], r["targetsPerSecond"]) for r in rows
    ] == [
        ("25.00", "45.00", "4.00"),
        ("40.00", "67.50", "2.50"),
        ("50.00", "25.00", "1.33"),
        ("", "", ""),
    ]
    parquet = tmp_path / "sessions.parquet"
    assert mixed_cli("telemetry", "export", "--format", "parquet", "-o", str(parquet)).code == 0
    assert pq.read_table(parquet).column("cache_hit_rate").to_pylist() == [25.0, 40.0, 50.0, None]


def test_no_build_with_targets_shows_n_a(cli: Runner) -> None:
    assert cli("telemetry", "ingest", "-", stdin=MAKE_BUILD).code == 0
    lines = cli("telemetry", "summary").stdout.splitlines()
    assert lines[11:18] == [
        "Cache Efficiency:",
        "  Average Hit Rate: n/a",
        "  Trend: Stable",
        "",
        "Parallelism:",
        "  Average Utilization: n/a",
        "  Targets/Second: n/a",
    ]
    report = json.loads(cli("telemetry", "summary", "--format", "json").stdout)
    assert (report["averageCacheHitRate"], report["buildsWithTargets"]) == (None, 0)


@pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("ninja") is None, reason="needs make and ninja"
)
def test_a_make_build_beside_ninja_builds(tmp_path: Path) -> None:
    """Recorded for real: make reports no targets, ninja two built, then the same two up to
    date (cached): the hit rates are 0 and 100 whatever the timings, their mean 50."""
    (tmp_path / "Makefile").write_text("out.txt:\n\techo made > out.txt\n")
    (tmp_path / "build.ninja").write_text(
        "rule write\n  command = echo $out > $out\nbuild a.txt: write\nbuild b.txt: write\n"
    )
    env = process_env(tmp_path / "t")
    for command in (["make"], ["ninja"], ["ninja"]):
        subprocess.run(
            [BUILDER, "record", "--", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )

    def builder(*args: str) -> str:
        done = subprocess.run(
            [BUILDER, *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout

    summary = builder("telemetry", "summary")
    assert "  Average Hit Rate: 50.0% (over 2 of 3 builds)\n" in summary
    assert re.search(r"^  Average Utilization: \d+\.\d% \(over 2 of 3 builds\)$", summary, re.M)
    assert re.search(r"^  Targets/Second: \d+\.\d\d \(over 2 of 3 builds\)$", summary, re.M)
    recent = builder("telemetry", "recent").splitlines()
    assert re.fullmatch(r"3\. \[✓\] \S+ - \d+ms \(cache: n/a\)", recent[-1]), recent
