"""`builder telemetry check`: one build judged for CI, on hand-made histories whose every
number is worked out in the comments, and on the demo history against numbers computed here
from its JSON export with exact fractions."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from telemetry.gate import (
    CheckedBuild,
    GateReport,
    MaxDurationRule,
    MinHitRateRule,
    OutcomeRule,
    RegressionRule,
    check,
    parse_duration,
)
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Filter
from tests.conftest import FIXTURES, HOUR, T0, Runner, _event

# T0 is 2025-10-27T14:23:20Z; the builds below start an hour apart.


def _build(
    session: str,
    hour: int,
    duration: int,
    *,
    built: int = 2,
    cached: int = 2,
    skipped: int = 0,
    ended: str = "succeeded",
    error: str | None = None,
    **fields: object,
) -> list[str]:
    """A build ``hour`` hours after T0 that took ``duration`` ms, with ``built`` executed
    targets (10 ms each), ``cached`` cache hits and ``skipped`` targets; ``ended``
    succeeded, failed (with ``error``) or interrupted."""
    start = T0 + hour * HOUR
    events = [_event("build_started", session, start, parallelism=2, **fields)]
    for i in range(built):
        events.append(
            _event(
                "target_finished",
                session,
                start + 10,
                target=f"//built:{i}",
                status="built",
                duration_ms=10,
            )
        )
    for status, count in (("cached", cached), ("skipped", skipped)):
        events += [
            _event("target_finished", session, start + 1, target=f"//{status}:{i}", status=status)
            for i in range(count)
        ]
    if ended == "interrupted":
        # No end event: the build runs to its last event, a target skipped when stopped.
        events.append(
            _event("target_finished", session, start + duration, target="//stop", status="skipped")
        )
    else:
        finished: dict[str, object] = {"success": ended == "succeeded"}
        if error is not None:
            finished["error"] = error
        events.append(_event("build_finished", session, start + duration, **finished))
    return events


def _store(cli: Runner, *builds: list[str]) -> None:
    stored = cli(
        "telemetry", "ingest", "-", stdin="\n".join(line for b in builds for line in b).encode()
    )
    assert stored.code == 0, stored.stderr


def _time(hour: int) -> str:
    return datetime.fromtimestamp((T0 + hour * HOUR) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# Three builds of 1000, 1200 and 800 ms, then one of 1200 ms: 1200 / mean(1000, 1200, 800)
# = 1200 / 1000 = 1.20x, under 1.5. Every build hits the cache for 2 of its 4 targets: 50%.
STEADY = (
    _build("s1", 0, 1000),
    _build("s2", 1, 1200),
    _build("s3", 2, 800),
    _build("s4", 3, 1200),
)
# Three builds of 1000 ms, then one of 2000 ms: 2000 / 1000 = 2.00x, at least 1.5. The
# newest hits the cache as often as the others (50% against a mean of 50%): not cold.
REGRESSED = (
    _build("ci-1001", 0, 1000),
    _build("ci-1002", 1, 1000),
    _build("ci-1003", 2, 1000),
    _build("ci-2004", 3, 2000),
)


def test_a_steady_history_passes(cli: Runner) -> None:
    _store(cli, *STEADY)
    done = cli("telemetry", "check")
    assert (done.code, done.stderr) == (0, "")
    assert done.stdout == (
        f"PASS build s4 ({_time(3)}, 1.2s): passed outcome (succeeded), regression "
        "(1.20x the mean of the 3 builds before it, under 1.5x)\n"
    )


def test_a_regressed_newest_build_fails_naming_the_rule(cli: Runner) -> None:
    _store(cli, *REGRESSED)
    done = cli("telemetry", "check")
    assert (done.code, done.stderr) == (1, "")
    assert done.stdout == (
        "FAIL regression: build ci-2004 took 2.00x the mean of the 3 builds before it "
        "(expected 1s, got 2s; threshold 1.5x); its cache hit rate was 50.0% against a mean "
        "of 50.0% before it: not a cold cache\n"
    )


def test_only_the_build_checked_is_judged_not_the_last_three(cli: Runner) -> None:
    """The seed's `summary | grep "Performance Regressions"` failed CI for two builds after a
    slow one: with 10 or more builds the summary lists regressions among the last three.

    Ten builds of 1000 ms, one of 3000 ms (3.0x), two of 1000 ms. The summary reports the
    3000 ms build; the newest is 1000 / ((11 * 1000 + 3000) / 12) = 12/14 = 0.857x.
    """
    _store(
        cli,
        *(_build(f"b{i:02d}", i, 1000) for i in range(10)),
        _build("b10", 10, 3000),
        _build("b11", 11, 1000),
        _build("b12", 12, 1000),
    )
    assert "Performance Regressions" in cli("telemetry", "summary").stdout
    done = cli("telemetry", "check")
    assert done.code == 0
    assert done.stdout.startswith("PASS build b12 ")
    assert "(0.86x the mean of the 12 builds before it, under 1.5x)" in done.stdout


def test_the_threshold_comes_from_the_environment_and_the_flag_beats_it(cli: Runner) -> None:
    _store(cli, *REGRESSED)
    # 2.00x is under 2.5: passed.
    relaxed = cli("telemetry", "check", env={"BUILDER_TELEMETRY_REGRESSION_THRESHOLD": "2.5"})
    assert relaxed.code == 0
    assert "(2.00x the mean of the 3 builds before it, under 2.5x)" in relaxed.stdout
    strict = cli("telemetry", "check", "--threshold", "2")
    assert strict.code == 1
    assert "threshold 2x" in strict.stdout


@pytest.mark.parametrize(
    ("limit", "verdict"),
    [
        # One build of 1200 ms.
        ("500ms", "FAIL max-duration: build one took 1.2s, over the limit of 500ms by 700ms\n"),
        ("1s", "FAIL max-duration: build one took 1.2s, over the limit of 1s by 200ms\n"),
        (
            "1s200ms",
            "passed outcome (succeeded), max-duration (within 1.2s)",
        ),  # exactly the limit is within it
        ("90s", "passed outcome (succeeded), max-duration (within 1m30s)"),
        ("5m", "passed outcome (succeeded), max-duration (within 5m)"),
        ("1m30s", "passed outcome (succeeded), max-duration (within 1m30s)"),
        ("1h", "passed outcome (succeeded), max-duration (within 1h)"),
    ],
)
def test_the_sla_rule_takes_a_duration_with_units(cli: Runner, limit: str, verdict: str) -> None:
    _store(cli, _build("one", 0, 1200))
    done = cli("telemetry", "check", "--max-duration", limit)
    if verdict.startswith("FAIL"):
        assert (done.code, done.stdout) == (1, verdict)
    else:
        # The only build has no earlier one to be compared with: the regression rule is not
        # judged, and breaks nothing.
        assert done.code == 0
        assert done.stdout == (
            f"PASS build one ({_time(0)}, 1.2s): {verdict}; not judged: regression "
            "(no earlier build to compare with)\n"
        )


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("90s", 90_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1m30s", 90_000),
        ("1h30m", 5_400_000),
        ("2s500ms", 2_500),
    ],
)
def test_durations_are_read_in_milliseconds(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


def test_the_minimum_hit_rate_breaks_passes_or_is_not_judged(cli: Runner) -> None:
    # low: 1 hit of 1 + 3 attempted = 25%. bare: no targets (a `record -- make`): unknown.
    # skips: only skipped targets, so none attempted: 0% (SPEC §3).
    _store(
        cli,
        _build("low", 0, 1000, built=3, cached=1),
        _build("bare", 1, 1000, built=0, cached=0),
        _build("skips", 2, 1000, built=0, cached=0, skipped=2),
    )
    low = cli("telemetry", "check", "--session", "low", "--min-hit-rate", "30")
    assert (low.code, low.stdout) == (
        1,
        "FAIL min-hit-rate: build low had a cache hit rate of 25.0%, under the minimum of 30%\n",
    )
    exactly = cli("telemetry", "check", "--session", "low", "--min-hit-rate", "25%")
    assert exactly.code == 0
    assert "min-hit-rate (25.0%, at least 25%)" in exactly.stdout
    bare = cli("telemetry", "check", "--session", "bare", "--min-hit-rate", "30")
    # bare: 1000 / 1000 = 1.00x of low.
    assert (bare.code, bare.stdout) == (
        0,
        f"PASS build bare ({_time(1)}, 1s): passed outcome (succeeded), regression "
        "(1.00x the mean of the build before it, under 1.5x); not judged: min-hit-rate "
        "(the build reported no targets, so its cache hit rate is unknown)\n",
    )
    skips = cli("telemetry", "check", "--min-hit-rate", "0.5")
    assert skips.code == 1
    assert skips.stdout == (
        "FAIL min-hit-rate: build skips had a cache hit rate of 0.0%, under the minimum of 0.5%\n"
    )


def test_an_older_build_is_named_by_its_whole_id(cli: Runner) -> None:
    _store(cli, *REGRESSED)
    # ci-1003 against ci-1001 and ci-1002 only: 1000 / 1000.
    older = cli("telemetry", "check", "--session", "ci-1003")
    assert (older.code, older.stdout) == (
        0,
        f"PASS build ci-1003 ({_time(2)}, 1s): passed outcome (succeeded), regression "
        "(1.00x the mean of the 2 builds before it, under 1.5x)\n",
    )
    # The first build has none before it.
    first = cli("telemetry", "check", "--session", "ci-1001")
    assert first.code == 0
    assert "not judged: regression (no earlier build to compare with)" in first.stdout
    # A gate never guesses: the first characters of one id (ci-2004) or of several name none.
    for start in ("ci-2", "ci-100"):
        prefix = cli("telemetry", "check", "--session", start)
        assert (prefix.code, prefix.stdout) == (1, "")
        assert prefix.stderr.startswith(f"Error: no build '{start}' in ")
        assert "; check --session takes a whole session id (builder" in prefix.stderr
        assert prefix.stderr.count("\n") == 1


def test_a_filter_chooses_the_build_and_its_baseline(cli: Runner) -> None:
    # main: 1000, 1000, 1000, then 1400 (the newest build); feature: 200, 200 between them.
    # Unfiltered: 1400 / mean(1000, 200, 1000, 200, 1000) = 1400 / 680 = 2.06x: broken.
    # On main alone: 1400 / 1000 = 1.40x: passed. On feature: its newest, f2, 200 / 200.
    _store(
        cli,
        _build("m1", 0, 1000, branch="main"),
        _build("f1", 1, 200, branch="feature"),
        _build("m2", 2, 1000, branch="main"),
        _build("f2", 3, 200, branch="feature"),
        _build("m3", 4, 1000, branch="main"),
        _build("m4", 5, 1400, branch="main"),
    )
    everything = cli("telemetry", "check")
    assert everything.code == 1
    assert everything.stdout.startswith(
        "FAIL regression: build m4 took 2.06x the mean of the 5 builds before it "
        "(expected 680ms, got 1.4s; threshold 1.5x)"
    )
    main = cli("telemetry", "check", "--branch", "main")
    assert (main.code, main.stdout) == (
        0,
        f"PASS build m4 ({_time(5)}, 1.4s): passed outcome (succeeded), regression "
        "(1.40x the mean of the 3 builds before it, under 1.5x)\n",
    )
    feature = cli("telemetry", "check", "--branch", "feature")
    assert (feature.code, feature.stdout) == (
        0,
        f"PASS build f2 ({_time(3)}, 200ms): passed outcome (succeeded), regression "
        "(1.00x the mean of the build before it, under 1.5x)\n",
    )
    # A build the filter does not take cannot be named.
    other = cli("telemetry", "check", "--branch", "feature", "--session", "m4")
    assert other.code == 1 and other.stderr.startswith("Error: no build 'm4' in ")
    none = cli("telemetry", "check", "--branch", "release")
    assert (none.code, none.stdout) == (1, "")
    assert none.stderr.startswith("Error: no build to check: no builds in ")
    assert none.stderr.endswith(" match the selected filters.\n")


def test_a_regression_says_whether_the_cache_was_cold(cli: Runner) -> None:
    # warm: 3 hits of 4 (75%) in 1000 ms each; cold: 0 of 4 (0%) in 2000 ms: 2.00x, and 0%
    # is 75 points under the mean of 75%: a cold cache. make: no targets, 2000 ms.
    warm = [_build(f"w{i}", i, 1000, built=1, cached=3) for i in range(3)]
    _store(cli, *warm, _build("cold", 3, 2000, built=4, cached=0))
    done = cli("telemetry", "check")
    assert (done.code, done.stdout) == (
        1,
        "FAIL regression: build cold took 2.00x the mean of the 3 builds before it "
        "(expected 1s, got 2s; threshold 1.5x); its cache hit rate was 0.0% against a mean "
        "of 75.0% before it: a cold cache rather than slower targets\n",
    )
    # 3000 / mean(1000, 1000, 1000, 2000) = 3000 / 1250 = 2.40x; no targets, no rate.
    _store(cli, _build("make", 4, 3000, built=0, cached=0))
    unknown = cli("telemetry", "check")
    assert unknown.stdout == (
        "FAIL regression: build make took 2.40x the mean of the 4 builds before it "
        "(expected 1.2s, got 3s; threshold 1.5x); its cache hit rate is unknown (it reported "
        "no targets)\n"
    )


def test_a_baseline_without_time_or_without_targets(cli: Runner) -> None:
    # Two builds of 0 ms: a mean of 0 is no measure to be slower than. Then a make build
    # (no targets) of 1000 ms and one with targets of 3000 ms: 3000 / mean(0, 0, 1000) =
    # 9.00x, with no hit rate before it to compare its own with.
    _store(cli, _build("z1", 0, 0, built=0, cached=0), _build("z2", 1, 0, built=0, cached=0))
    zero = cli("telemetry", "check", "--session", "z2", "--format", "json")
    [outcome, rule] = json.loads(zero.stdout)["rules"]
    assert (outcome["rule"], outcome["verdict"]) == ("outcome", "passed")
    assert (zero.code, rule["verdict"], rule["reason"]) == (
        0,
        "not-judged",
        "the earlier builds took no time",
    )
    _store(cli, _build("make", 2, 1000, built=0, cached=0), _build("t", 3, 3000))
    done = cli("telemetry", "check")
    assert done.stdout == (
        "FAIL regression: build t took 9.00x the mean of the 3 builds before it (expected "
        "333ms, got 3s; threshold 1.5x); no build before it reported targets to compare its "
        "cache hit rate with\n"
    )


def test_every_broken_rule_has_its_line_and_json_has_every_number(cli: Runner) -> None:
    _store(cli, *REGRESSED)
    done = cli("telemetry", "check", "--max-duration", "1500ms", "--min-hit-rate", "60")
    assert done.code == 1
    assert done.stdout.splitlines()[1:] == [
        "FAIL max-duration: build ci-2004 took 2s, over the limit of 1.5s by 500ms",
        "FAIL min-hit-rate: build ci-2004 had a cache hit rate of 50.0%, under the minimum of 60%",
    ]
    as_json = cli(
        "telemetry", "check", "--max-duration", "1h", "--min-hit-rate", "60", "--format", "json"
    )
    assert as_json.code == 1
    assert json.loads(as_json.stdout) == {
        "passed": False,
        "build": {
            "sessionId": "ci-2004",
            "startTime": _time(3),
            "durationMs": 2000,
            "cacheHitRate": 50.0,
            "succeeded": True,
            "interrupted": False,
            "error": None,
        },
        "rules": [
            {
                "rule": "outcome",
                "verdict": "passed",
                "succeeded": True,
                "interrupted": False,
                "error": None,
                "reason": None,
            },
            {
                "rule": "regression",
                "verdict": "broken",
                "threshold": 1.5,
                "ratio": 2.0,
                "expectedMs": 1000.0,
                "actualMs": 2000,
                "baselineBuilds": 3,
                "baselineCacheHitRate": 50.0,
                "coldCache": False,
                "reason": None,
            },
            {
                "rule": "max-duration",
                "verdict": "passed",
                "limitMs": 3_600_000,
                "actualMs": 2000,
                "reason": None,
            },
            {
                "rule": "min-hit-rate",
                "verdict": "broken",
                "minimum": 60.0,
                "actual": 50.0,
                "reason": None,
            },
        ],
    }


def test_a_session_id_reaches_the_terminal_escaped(cli: Runner) -> None:
    _store(cli, _build("ok", 0, 1000), _build("evil\x1b[2J\u202e", 1, 3000))
    done = cli("telemetry", "check")
    assert done.stdout.startswith("FAIL regression: build evil\\x1b[2J\\u202e took 3.00x ")
    assert (
        json.loads(cli("telemetry", "check", "--format", "json").stdout)["build"]["sessionId"]
        == "evil\x1b[2J\u202e"
    )


# Four nightly builds of about a minute (60, 62, 58, 63 s), then a failed one of 5 minutes.
NIGHTLY = (
    _build("nightly-1", 0, 60_000),
    _build("nightly-2", 1, 62_000),
    _build("nightly-3", 2, 58_000),
    _build("nightly-4", 3, 63_000),
    _build(
        "nightly-5",
        4,
        300_000,
        ended="failed",
        error="ninja: build stopped: subcommand failed.\nFAILED: //app:\x1b[2Jlink",
    ),
)


def test_the_newest_build_is_checked_whatever_its_outcome(cli: Runner) -> None:
    """--status chooses the builds the newest is compared with, never which build is
    checked: a failed newest build cannot vanish behind --status succeeded."""
    _store(cli, *NIGHTLY)
    # The error on one line, its escape character escaped.
    failed = (
        "FAIL outcome: build nightly-5 failed: ninja: build stopped: subcommand failed. "
        "FAILED: //app:\\x1b[2Jlink\n"
    )
    for status in ((), ("--status", "succeeded"), ("--status", "failed")):
        done = cli("telemetry", "check", *status)
        assert (done.code, done.stdout, done.stderr) == (1, failed, "")
    # The regression rule is not judged: 300 s / 60.75 s = 4.94x says nothing of speed.
    report = json.loads(cli("telemetry", "check", "--format", "json").stdout)
    assert report["build"] | {"startTime": None} == {
        "sessionId": "nightly-5",
        "startTime": None,
        "durationMs": 300_000,
        "cacheHitRate": 50.0,
        "succeeded": False,
        "interrupted": False,
        "error": "ninja: build stopped: subcommand failed.\nFAILED: //app:\x1b[2Jlink",
    }
    outcome, regression = report["rules"]
    assert outcome == {
        "rule": "outcome",
        "verdict": "broken",
        "succeeded": False,
        "interrupted": False,
        "error": "ninja: build stopped: subcommand failed.\nFAILED: //app:\x1b[2Jlink",
        "reason": None,
    }
    assert (regression["verdict"], regression["ratio"], regression["reason"]) == (
        "not-judged",
        None,
        "the build failed: its time says nothing of its speed",
    )
    # A limit is still judged: 300 s is over 4m by 1m.
    limited = cli("telemetry", "check", "--max-duration", "4m")
    assert limited.stdout == failed + (
        "FAIL max-duration: build nightly-5 took 5m, over the limit of 4m by 1m\n"
    )
    # --session names the build; nightly-4 against nightly-1..3: 63 / 60 = 1.05x.
    named = cli("telemetry", "check", "--session", "nightly-4", "--status", "succeeded")
    assert (named.code, named.stdout) == (
        0,
        f"PASS build nightly-4 ({_time(3)}, 1m3s): passed outcome (succeeded), regression "
        "(1.05x the mean of the 3 builds before it, under 1.5x)\n",
    )


def test_status_chooses_the_builds_compared_with(cli: Runner) -> None:
    # s1 1000, f2 failed fast in 100, s3 1000, then s4 1400 (succeeded). Against every
    # earlier build: 1400 / mean(1000, 100, 1000) = 1400 / 700 = 2.00x, broken; against the
    # ones that succeeded: 1400 / 1000 = 1.40x, passed; against the failed one: 14.00x.
    _store(
        cli,
        _build("s1", 0, 1000),
        _build("f2", 1, 100, ended="failed"),
        _build("s3", 2, 1000),
        _build("s4", 3, 1400),
    )
    every = cli("telemetry", "check")
    assert every.code == 1
    assert every.stdout.startswith("FAIL regression: build s4 took 2.00x the mean of the 3 ")
    succeeded = cli("telemetry", "check", "--status", "succeeded")
    assert (succeeded.code, succeeded.stdout) == (
        0,
        f"PASS build s4 ({_time(3)}, 1.4s): passed outcome (succeeded), regression (1.40x the "
        "mean of the 2 builds before it, under 1.5x)\n",
    )
    failed = cli("telemetry", "check", "--status", "failed")
    assert failed.stdout.startswith("FAIL regression: build s4 took 14.00x the mean of the build ")
    # A failed build without an error of its own says it failed, no more.
    f2 = cli("telemetry", "check", "--session", "f2")
    assert (f2.code, f2.stdout) == (1, "FAIL outcome: build f2 failed\n")


def test_an_interrupted_build_does_not_pass_on_its_short_time(cli: Runner) -> None:
    # Three builds of 1000 ms, then one interrupted after 610 ms: 0.61x, but it did not build.
    _store(
        cli,
        *(_build(f"b{i}", i, 1000) for i in range(3)),
        _build("i4", 3, 610, ended="interrupted"),
    )
    done = cli("telemetry", "check")
    assert (done.code, done.stdout) == (1, "FAIL outcome: build i4 was interrupted\n")
    [outcome, regression] = json.loads(cli("telemetry", "check", "--format", "json").stdout)[
        "rules"
    ]
    assert (outcome["verdict"], outcome["interrupted"]) == ("broken", True)
    assert (regression["verdict"], regression["reason"]) == (
        "not-judged",
        "the build was interrupted: its time says nothing of its speed",
    )


@pytest.mark.parametrize(
    ("durations", "args", "code", "line"),
    [
        # 60,040 ms and the 1m limit both read "1m": the exact milliseconds.
        (
            [60_040],
            ("--max-duration", "1m"),
            1,
            "FAIL max-duration: build b1 took 60040ms, over the limit of 60000ms by 40ms",
        ),
        # 61,000 ms reads 1m1s: the spans are apart already.
        (
            [61_000],
            ("--max-duration", "1m"),
            1,
            "FAIL max-duration: build b1 took 1m1s, over the limit of 1m by 1s",
        ),
        # 14,996 / 10,000 = 1.4996: "1.50x ... under 1.5x" would read as equal.
        (
            [10_000, 14_996],
            (),
            0,
            f"PASS build b2 ({_time(1)}, 15s): passed outcome (succeeded), regression (1.4996x "
            "the mean of the build before it, under 1.5000x)",
        ),
        # 15,041 / 10,000 = 1.5041 ≥ 1.504: "1.50x ... threshold 1.504x" would read as under.
        (
            [10_000, 15_041],
            ("--threshold", "1.504"),
            1,
            "FAIL regression: build b2 took 1.5041x the mean of the build before it (expected "
            "10s, got 15s; threshold 1.5040x); its cache hit rate was 50.0% against a mean of "
            "50.0% before it: not a cold cache",
        ),
        # 14,900 / 10,000 = 1.49: apart already.
        (
            [10_000, 14_900],
            (),
            0,
            f"PASS build b2 ({_time(1)}, 14.9s): passed outcome (succeeded), regression (1.49x "
            "the mean of the build before it, under 1.5x)",
        ),
        # 2 hits of 4 = 50.0% against a minimum of 50.00001%, which :g writes 50: two more
        # decimals read the same (50.000), two more apart.
        (
            [1000],
            ("--min-hit-rate", "50.00001"),
            1,
            "FAIL min-hit-rate: build b1 had a cache hit rate of 50.00000%, under the minimum "
            "of 50.00001%",
        ),
    ],
)
def test_a_line_never_reads_as_equal_values(
    cli: Runner, durations: list[int], args: tuple[str, ...], code: int, line: str
) -> None:
    _store(cli, *(_build(f"b{i + 1}", i, ms) for i, ms in enumerate(durations)))
    done = cli("telemetry", "check", *args)
    assert (done.code, done.stdout) == (code, line + "\n")


def test_a_rate_just_under_the_minimum_reads_under_it(cli: Runner) -> None:
    # 1249 hits of 2500 = 49.96%, which .1f writes 50.0, against a minimum of 50: two more
    # decimals.
    _store(cli, _build("big", 0, 1000, built=1251, cached=1249))
    done = cli("telemetry", "check", "--min-hit-rate", "50")
    assert (done.code, done.stdout) == (
        1,
        "FAIL min-hit-rate: build big had a cache hit rate of 49.960%, under the minimum of "
        "50.000%\n",
    )


def test_the_library_answers_the_same_report(storage: TelemetryStorage) -> None:
    ingest_jsonl(storage, [line for build in STEADY for line in build])
    report = check(storage, session="s3", filter=Filter(), max_duration_ms=500, min_hit_rate=50.0)
    # s3: 800 / mean(1000, 1200) = 800 / 1100.
    assert report == GateReport(
        build=CheckedBuild(
            "s3", datetime.fromtimestamp((T0 + 2 * HOUR) / 1000, UTC), 800, 50.0, True
        ),
        rules=(
            OutcomeRule("passed", True, False, None),
            RegressionRule("passed", 1.5, 2, 1100.0, 800, 800 / 1100, 50.0, False),
            MaxDurationRule("broken", 500, 800),
            MinHitRateRule("passed", 50.0, 50.0),
        ),
    )
    assert not report.passed
    assert report.broken == (MaxDurationRule("broken", 500, 800),)


def test_an_empty_store_is_an_error(cli: Runner, tmp_path: Path) -> None:
    done = cli("telemetry", "check")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: no build to check: no telemetry data yet in {tmp_path / 'telemetry'}. Run a "
        "build with telemetry enabled, or store events with `builder telemetry ingest FILE`.\n"
    )


def test_an_unknown_session_is_an_error(cli: Runner) -> None:
    _store(cli, *STEADY)
    done = cli("telemetry", "check", "--session", "nope")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr.startswith("Error: no build 'nope' in ")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--max-duration",
            "300",
            "Error: --max-duration must be a duration with a unit: 500ms, 90s, 5m, 1h or 1m30s, "
            "got '300'\n",
        ),
        ("--max-duration", "5 m", None),
        ("--max-duration", "1.5m", None),
        ("--max-duration", "5M", None),
        ("--max-duration", "30s1m", None),
        ("--max-duration", "\u0665m", None),  # an Arabic-Indic 5
        ("--max-duration", "", None),
        (
            "--max-duration",
            "0s",
            "Error: --max-duration must be a duration from 1ms to 100 years (500ms, 90s, 5m, "
            "1h or 1m30s), got '0s'\n",
        ),
        (
            "--min-hit-rate",
            "101",
            "Error: --min-hit-rate must be a percentage from 0 to 100 (e.g. 80), got '101'\n",
        ),
        ("--min-hit-rate", "-1", None),
        ("--min-hit-rate", "nan", None),
        ("--min-hit-rate", "high", None),
        (
            "--min-hit-rate",
            "8_0",  # Python reads 80
            "Error: --min-hit-rate must be a percentage from 0 to 100 (e.g. 80), got '8_0'\n",
        ),
        ("--threshold", "1_5", None),  # Python reads 15
        (
            "--threshold",
            "1",
            "Error: --threshold must be a number greater than 1 (e.g. 1.5), got '1'\n",
        ),
        ("--threshold", "fast", None),
        ("--threshold", "inf", None),
        (
            "--session",
            "",
            "Error: --session must be a session id, got ''\n",
        ),
    ],
)
def test_a_bad_option_value_is_a_usage_error(
    cli: Runner, option: str, value: str, message: str | None
) -> None:
    _store(cli, *STEADY)
    done = cli("telemetry", "check", f"{option}={value}")
    assert (done.code, done.stdout) == (2, "")
    if message is None:
        assert done.stderr.startswith(f"Error: {option} must be ")
        assert done.stderr.count("\n") == 1
    else:
        assert done.stderr == message


# -- the demo history ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("demo") / "history.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(FIXTURES / "generate.py"),
            "--today",
            "2026-11-20",
            "--output",
            str(path),
        ],
        check=True,
    )
    yield path


def _rate(session: dict[str, int]) -> Fraction | None:
    """SPEC §3's cache hit rate from an export's counts, exactly."""
    if session["totalTargets"] == 0:
        return None
    attempted = session["built"] + session["cached"] + session["failed"]
    return Fraction(100 * session["cached"], attempted) if attempted else Fraction(0)


def test_the_demo_historys_newest_build_is_judged_as_computed_here(
    cli: Runner, demo_history: Path
) -> None:
    assert cli("telemetry", "ingest", str(demo_history)).code == 0
    exported = cli("telemetry", "export", "--format", "json")
    sessions = json.loads(exported.stdout)["sessions"]  # oldest first
    *before, newest = sessions
    expected = Fraction(sum(s["durationMs"] for s in before), len(before))
    ratio = newest["durationMs"] / expected
    rate = _rate(newest)
    known = [r for r in map(_rate, before) if r is not None]
    mean_rate = sum(known, Fraction(0)) / len(known)
    assert rate is not None and rate <= mean_rate - 20  # the demo ends with cold caches
    assert ratio >= Fraction(3, 2)  # ... and slow builds

    done = cli("telemetry", "check", "--format", "json")
    assert done.code == 1
    report = json.loads(done.stdout)
    assert report["build"]["sessionId"] == newest["sessionId"]
    assert report["build"]["durationMs"] == newest["durationMs"]
    [outcome, regression] = report["rules"]
    assert (outcome["rule"], outcome["verdict"]) == ("outcome", "passed")
    assert regression["verdict"] == "broken"
    assert regression["baselineBuilds"] == len(before) == 199
    assert regression["expectedMs"] == pytest.approx(float(expected), rel=1e-12)
    assert regression["ratio"] == pytest.approx(float(ratio), rel=1e-12)
    assert regression["baselineCacheHitRate"] == pytest.approx(float(mean_rate), rel=1e-12)
    assert regression["coldCache"] is True

    limit_ms = 10_000  # --max-duration 10s
    over = newest["durationMs"] - limit_ms
    text = cli("telemetry", "check", "--max-duration", "10s", "--min-hit-rate", "50")
    assert text.code == 1
    assert text.stdout == (
        f"FAIL regression: build {newest['sessionId']} took {float(ratio):.2f}x the mean of "
        f"the {len(before)} builds before it (expected {float(expected) / 1000:.1f}s, got "
        f"{newest['durationMs'] / 1000:.1f}s; threshold 1.5x); its cache hit rate was "
        f"{float(rate):.1f}% against a mean of {float(mean_rate):.1f}% before it: a cold "
        "cache rather than slower targets\n"
        f"FAIL max-duration: build {newest['sessionId']} took "
        f"{newest['durationMs'] / 1000:.1f}s, over the limit of 10s by {over / 1000:.1f}s\n"
        f"FAIL min-hit-rate: build {newest['sessionId']} had a cache hit rate of "
        f"{float(rate):.1f}%, under the minimum of 50%\n"
    )
