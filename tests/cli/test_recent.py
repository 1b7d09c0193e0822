"""`builder telemetry recent [COUNT]`: the seed's layout, newest first."""

from __future__ import annotations

import json
import re

from tests.conftest import Runner

SMALL_RECENT = """\
Recent 3 Builds:

1. [✗] 2025-10-27T16:23:20 - 3000ms (cache: 50.0%)
   Error: Compilation failed for //app:compile
   Top bottlenecks:
     • //app:compile: 3000ms

2. [✓] 2025-10-27T15:23:20 - 2000ms (cache: 40.0%)
   Top bottlenecks:
     • //app:test: 1100ms
     • //app:compile: 1000ms
     • //app:link: 600ms

3. [✓] 2025-10-27T14:23:20 - 1000ms (cache: 25.0%)
   Top bottlenecks:
     • //app:compile: 400ms
     • //app:test: 300ms
     • //app:link: 200ms
"""


def test_recent_text_is_exact(small_cli: Runner) -> None:
    result = small_cli("telemetry", "recent")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == SMALL_RECENT


def test_recent_count(small_cli: Runner) -> None:
    result = small_cli("telemetry", "recent", "1")
    assert result.stdout.startswith("Recent 1 Build:\n\n1. [✗] 2025-10-27T16:23:20 - 3000ms")
    assert "2. " not in result.stdout


def test_first_ms_is_the_newest_builds_duration(small_cli: Runner) -> None:
    # The seed's SLA check: grep -oP '\d+(?=ms)' | head -1
    text = small_cli("telemetry", "recent", "1").stdout
    assert re.findall(r"\d+(?=ms)", text)[0] == "3000"


def test_interrupted_build_shows_error(cli: Runner) -> None:
    events = [
        {"event": "build_started", "session": "k", "ts": 1761575000000},
        {"event": "target_started", "session": "k", "ts": 1761575000100, "target": "//x"},
        {
            "event": "target_finished",
            "session": "k",
            "ts": 1761575000300,
            "target": "//x",
            "status": "built",
        },
        {"event": "target_started", "session": "k", "ts": 1761575000450, "target": "//y"},
    ]
    stdin = "\n".join(json.dumps(e) for e in events).encode()
    stored = cli("telemetry", "ingest", "-", stdin=stdin)
    assert stored.stdout == "Stored 1 build (1 interrupted) from 4 events.\n"
    assert cli("telemetry", "recent").stdout == (
        "Recent 1 Build:\n\n"
        "1. [✗] 2025-10-27T14:23:20 - 450ms (cache: 0.0%)\n"
        "   Error: interrupted\n"
        "   Top bottlenecks:\n"
        "     • //x: 200ms\n"
    )
    exported = json.loads(cli("telemetry", "export").stdout)["sessions"][0]
    assert (exported["interrupted"], exported["succeeded"], exported["durationMs"]) == (
        True,
        False,
        450,
    )


def test_recent_json(small_cli: Runner) -> None:
    builds = json.loads(small_cli("telemetry", "recent", "2", "--format", "json").stdout)["builds"]
    assert [b["sessionId"] for b in builds] == ["c", "b"]
    assert builds[1]["bottlenecks"][0] == {
        "target": "//app:test",
        "meanDurationMs": 1100.0,
        "runs": 1,
    }
    assert (builds[0]["cacheHitRate"], builds[0]["skipped"]) == (50.0, 2)


def test_zero_count_is_an_error(small_cli: Runner) -> None:
    result = small_cli("telemetry", "recent", "0")
    assert result.code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_empty_store(cli: Runner) -> None:
    result = cli("telemetry", "recent")
    assert (result.code, result.stdout.startswith("No telemetry data yet in ")) == (0, True)
