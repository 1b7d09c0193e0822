"""`builder telemetry show [SESSION]`: one build in full, its targets slowest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import T0, Runner

# Worked out from small_history() (see tests/test_analyzer.py): c started at T0 + 2 h, ran
# 3000 ms on 4 workers; compile failed after 3000 ms on worker 0, one cache hit, two targets
# skipped. The three that took 0 ms go by label.
SHOW_C = """\
=== Build c ===

Started: 2025-10-27T16:23:20
Finished: 2025-10-27T16:23:23
Duration: 3000ms
Status: failed
Error: Compilation failed for //app:compile

Tool: n/a
Host: n/a
Branch: n/a
Commit: n/a
Labels: (none)

Targets: 4 (0 built, 1 cached, 1 failed, 2 skipped)
Cache Hit Rate: 50.0%
Workers: 4
Utilization: 25.0%
Targets/Second: 1.33
Weighted Time: 3000ms (span 3000ms)
Effective Parallelism: 1.00x
Underused: 3000ms of 3000ms (100.0%) with fewer than 4 targets running
Critical Path: n/a (no target reported its dependencies)

Targets, slowest first:
  1. [failed] //app:compile - 3000ms, weighted 3000ms (worker 0)
     Error: boom
  2. [skipped] //app:link - 0ms
  3. [skipped] //app:test - 0ms
  4. [cached] //lib:util - 0ms
"""


def _events(*events: dict[str, object]) -> bytes:
    return "\n".join(json.dumps(e) for e in events).encode()


def _build_d(session: str = "d-0123") -> bytes:
    """A build with every field: a host, a commit, a branch, two labels, no worker count;
    x ran [0, 900) on worker 0, y failed over [100, 600) on worker 1, z was a cache hit."""
    d = T0 + 10 * 3_600_000
    return _events(
        {
            "event": "build_started",
            "session": session,
            "ts": d,
            "tool": "make",
            "host": "ci-7",
            "commit": "0123abc",
            "branch": "main",
            "labels": {"pipeline": "nightly", "ci": "true"},
        },
        {"event": "target_started", "session": session, "ts": d, "target": "//x",
         "worker": 0},
        {"event": "target_started", "session": session, "ts": d + 100, "target": "//y",
         "worker": 1},
        {"event": "target_finished", "session": session, "ts": d + 600, "target": "//y",
         "status": "failed", "error": "y.c:3: error: one\n  two"},
        {"event": "target_finished", "session": session, "ts": d + 650, "target": "//z",
         "status": "cached"},
        {"event": "target_finished", "session": session, "ts": d + 900, "target": "//x",
         "status": "built"},
        {"event": "build_finished", "session": session, "ts": d + 1000, "success": False,
         "error": "1 target failed"},
    )  # fmt: skip


# 3 targets in 1000 ms: 1 hit of 3 attempted; 900 + 500 ms executed, at most 2 at once.
SHOW_D = """\
=== Build d-0123 ===

Started: 2025-10-28T00:23:20
Finished: 2025-10-28T00:23:21
Duration: 1000ms
Status: failed
Error: 1 target failed

Tool: make
Host: ci-7
Branch: main
Commit: 0123abc
Labels: ci=true, pipeline=nightly

Targets: 3 (1 built, 1 cached, 1 failed, 0 skipped)
Cache Hit Rate: 33.3%
Workers: 2 (not reported: the most targets running at once)
Utilization: 70.0%
Targets/Second: 3.00
Weighted Time: 900ms (span 900ms)
Effective Parallelism: 1.56x
Underused: 500ms of 1000ms (50.0%) with fewer than 2 targets running
Critical Path: n/a (no target reported its dependencies)

Targets, slowest first:
  1. [built] //x - 900ms, weighted 650ms (worker 0)
  2. [failed] //y - 500ms, weighted 250ms (worker 1)
     Error: y.c:3: error: one two
  3. [cached] //z - 0ms
"""


def test_show_a_build_by_its_id(small_cli: Runner) -> None:
    result = small_cli("telemetry", "show", "c")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == SHOW_C


def test_show_the_newest_build_by_default(small_cli: Runner) -> None:
    assert small_cli("telemetry", "show").stdout == SHOW_C


def test_show_every_field_and_the_target_errors(cli: Runner) -> None:
    assert cli("telemetry", "ingest", "-", stdin=_build_d()).code == 0
    result = cli("telemetry", "show", "d-")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == SHOW_D


def test_a_build_without_targets_has_no_rates(cli: Runner) -> None:
    make = _events(
        {"event": "build_started", "session": "m", "ts": T0, "tool": "make"},
        {"event": "build_finished", "session": "m", "ts": T0 + 500, "success": True},
    )
    assert cli("telemetry", "ingest", "-", stdin=make).code == 0
    assert cli("telemetry", "show", "m").stdout.split("\n\n", 3)[3] == (
        "Targets: 0 (0 built, 0 cached, 0 failed, 0 skipped)\n"
        "Cache Hit Rate: n/a\n"
        "Workers: n/a\n"
        "Utilization: n/a\n"
        "Targets/Second: n/a\n"
        "Weighted Time: n/a\n"
        "Effective Parallelism: n/a\n"
        "Underused: n/a\n"
        "Critical Path: n/a (no target reported its dependencies)\n"
        "\n"
        "Targets, slowest first:\n"
        "  (none)\n"
    )


def test_top_shows_the_slowest_targets(small_cli: Runner) -> None:
    shown = small_cli("telemetry", "show", "c", "--top", "2").stdout
    assert shown.endswith(
        "Targets, slowest 2 of 4:\n"
        "  1. [failed] //app:compile - 3000ms, weighted 3000ms (worker 0)\n"
        "     Error: boom\n"
        "  2. [skipped] //app:link - 0ms\n"
    )
    assert shown.startswith(SHOW_C.partition("Targets, slowest")[0])


def test_show_json(small_cli: Runner) -> None:
    result = small_cli("telemetry", "show", "b", "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    # b: 2000 ms, no worker count; test [500,1600) on worker 1, compile [0,1000) on 0,
    # link [1400,2000) on 0, two cache hits at +1700 and +5 that took nothing.
    assert json.loads(result.stdout) == {
        "startTime": "2025-10-27T15:23:20",
        "durationMs": 2000,
        "totalTargets": 5,
        "built": 3,
        "cached": 2,
        "failed": 0,
        "cacheHitRate": 40.0,
        "parallelismUtilization": 67.5,
        "targetsPerSecond": 2.5,
        "succeeded": True,
        "sessionId": "b",
        "endTime": "2025-10-27T15:23:22",
        "skipped": 0,
        "interrupted": False,
        "error": None,
        "parallelism": None,
        "tool": "bazel",
        "host": None,
        "commit": None,
        "branch": None,
        "labels": {},
        # T0 + 1 h to the millisecond; 1000 + 1100 + 600 ms executed, two at once at most.
        "startTimeMs": 1761578600000,
        "endTimeMs": 1761578602000,
        "executedMs": 2700,
        "peakConcurrency": 2,
        # Weighted: compile alone [0,500), with test [500,1000); test alone [1000,1400),
        # with link [1400,1600); link alone [1600,2000). Two ran over 500 + 200 ms of 2000.
        "weightedMs": 2000,
        "spanMs": 2000,
        "effectiveParallelism": 1.35,
        "workers": 2,
        "underusedMs": 1300,
        # No target of b reported its deps: its critical path is not known.
        "criticalPath": None,
        "targets": [
            {"target": "//app:test", "status": "built", "durationMs": 1100,
             "weightedMs": 750.0, "startOffsetMs": 500, "worker": 1, "error": None,
             "deps": None},
            {"target": "//app:compile", "status": "built", "durationMs": 1000,
             "weightedMs": 750.0, "startOffsetMs": 0, "worker": 0, "error": None,
             "deps": None},
            {"target": "//app:link", "status": "built", "durationMs": 600,
             "weightedMs": 500.0, "startOffsetMs": 1400, "worker": 0, "error": None,
             "deps": None},
            {"target": "//lib:extra", "status": "cached", "durationMs": 0,
             "weightedMs": 0.0, "startOffsetMs": 1700, "worker": None, "error": None,
             "deps": None},
            {"target": "//lib:util", "status": "cached", "durationMs": 0,
             "weightedMs": 0.0, "startOffsetMs": 5, "worker": None, "error": None,
             "deps": None},
        ],
    }  # fmt: skip


def test_show_json_is_the_exports_object_and_the_targets(small_cli: Runner) -> None:
    exported = json.loads(small_cli("telemetry", "export").stdout)["sessions"]
    for session in exported:
        shown = small_cli(
            "telemetry", "show", session["sessionId"], "--format", "json", "--top", "1"
        )
        build = json.loads(shown.stdout)
        assert len(build.pop("targets")) == 1
        for key in (
            "weightedMs",
            "spanMs",
            "effectiveParallelism",
            "workers",
            "underusedMs",
            "criticalPath",
        ):
            build.pop(key)  # show's own, after the export's keys
        assert list(build.items()) == list(session.items())  # the same keys in the same order
    # Rates with two decimals, as export writes them.
    assert (
        '\n  "cacheHitRate": 25.00,\n'
        in small_cli("telemetry", "show", "a", "--format", "json").stdout
    )


def test_a_prefix_names_one_build(cli: Runner) -> None:
    builds = b"\n".join(_build_d(session) for session in ("ci-1", "ci-12", "ci-13"))
    assert cli("telemetry", "ingest", "-", stdin=builds).code == 0
    # A whole id wins over the longer ids it begins.
    assert cli("telemetry", "show", "ci-1").stdout.startswith("=== Build ci-1 ===\n")
    assert cli("telemetry", "show", "ci-13").stdout.startswith("=== Build ci-13 ===\n")


def test_a_prefix_of_several_builds_is_an_error(cli: Runner, tmp_path: Path) -> None:
    builds = b"\n".join(_build_d(session) for session in ("ci-12", "ci-13"))
    assert cli("telemetry", "ingest", "-", stdin=builds).code == 0
    result = cli("telemetry", "show", "ci-1")
    store = f"{tmp_path}/telemetry"
    # The two start at the same time: the later id first.
    assert (result.code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: 'ci-1' matches 2 builds in {store}: ci-13, ci-12; give more of the session id\n",
    )


def test_no_such_build_is_an_error(small_cli: Runner, tmp_path: Path) -> None:
    result = small_cli("telemetry", "show", "zz", "--format", "json")
    assert (result.code, result.stdout, result.stderr) == (
        1,
        "",
        f"Error: no build 'zz' in {tmp_path}/telemetry; builder telemetry recent lists the "
        f"newest builds with their session ids\n",
    )
    # a is there, but not among the failed builds.
    failed = small_cli("telemetry", "show", "a", "--status", "failed")
    assert failed.code == 1
    assert failed.stderr.startswith(f"Error: no build 'a' in {tmp_path}/telemetry among the")


def test_an_empty_session_is_an_unusable_command_line(small_cli: Runner) -> None:
    result = small_cli("telemetry", "show", "")
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == "Error: SESSION must be a session id or its first characters, got ''\n"


def test_nothing_to_show(cli: Runner, tmp_path: Path) -> None:
    result = cli("telemetry", "show")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.startswith(f"No telemetry data yet in {tmp_path}/telemetry. ")
    as_json = cli("telemetry", "show", "--format", "json")
    assert (as_json.code, as_json.stdout) == (0, "")
    assert as_json.stderr == result.stdout


def test_the_filters_choose_the_newest_build_they_take(small_cli: Runner, tmp_path: Path) -> None:
    shown = small_cli("telemetry", "show", "--status", "succeeded").stdout
    assert shown.startswith("=== Build b ===\n")
    before = small_cli("telemetry", "--tool", "ninja", "show").stdout
    assert before.startswith("=== Build a ===\n")
    assert small_cli("telemetry", "show", "--label", "ci=true").stdout == before
    assert small_cli("telemetry", "show", "--until", "2025-10-27T15:00").stdout == before
    none = small_cli("telemetry", "show", "--tool", "make")
    assert (none.code, none.stdout) == (
        0,
        f"No builds in {tmp_path}/telemetry match the selected filters.\n",
    )


def test_text_from_builds_is_escaped(cli: Runner) -> None:
    hostile = _events(
        {"event": "build_started", "session": "h\x1b[2J", "ts": T0, "branch": "main\u202eniam",
         "labels": {"k\n": "v\x07"}},
        {"event": "target_finished", "session": "h\x1b[2J", "ts": T0 + 5, "target": "//t\r",
         "status": "failed", "duration_ms": 5, "error": "bad\x1b[31m"},
        {"event": "build_finished", "session": "h\x1b[2J", "ts": T0 + 10, "success": False,
         "error": "x\u2028y"},
    )  # fmt: skip
    assert cli("telemetry", "ingest", "-", stdin=hostile).code == 0
    shown = cli("telemetry", "show", "h").stdout
    assert all(line.isprintable() for line in shown.splitlines())
    assert "=== Build h\\x1b[2J ===\n" in shown
    assert "\nBranch: main\\u202eniam\n" in shown
    assert "\nLabels: k\\n=v\\x07\n" in shown
    assert "\nError: x y\n" in shown  # a line break in an error is a space, as in recent
    assert "  1. [failed] //t\\r - 5ms, weighted 5ms\n     Error: bad\\x1b[31m\n" in shown
    # Piped JSON holds the exact text.
    exact = json.loads(cli("telemetry", "show", "h", "--format", "json").stdout)
    assert (exact["sessionId"], exact["branch"], exact["targets"][0]["target"]) == (
        "h\x1b[2J",
        "main\u202eniam",
        "//t\r",
    )


def test_ranks_are_aligned_on_their_dot(cli: Runner) -> None:
    # Ten targets of 10, 20, ... 100 ms, each reported with its duration, all ending at 100:
    # over [10(m - 1), 10m) m of them run, so //tk's weighted time is 10 · Σ 1/m over
    # m = 11 − k ... 10 (//t10 29.3 ms, //t9 19.3, ..., //t1 1).
    events = [{"event": "build_started", "session": "t", "ts": T0}]
    events += [
        {"event": "target_finished", "session": "t", "ts": T0 + 100, "target": f"//t{n}",
         "status": "built", "duration_ms": 10 * n}
        for n in range(2, 11)
    ]  # fmt: skip
    events.append({"event": "target_finished", "session": "t", "ts": T0 + 100, "target": "//t1",
                   "status": "failed", "duration_ms": 10, "error": "no"})  # fmt: skip
    events.append({"event": "build_finished", "session": "t", "ts": T0 + 100, "success": False})
    assert cli("telemetry", "ingest", "-", stdin=_events(*events)).code == 0
    shown = cli("telemetry", "show", "t").stdout
    assert shown.endswith(
        "Targets, slowest first:\n"
        "   1. [built] //t10 - 100ms, weighted 29ms\n"
        "   2. [built] //t9 - 90ms, weighted 19ms\n"
        "   3. [built] //t8 - 80ms, weighted 14ms\n"
        "   4. [built] //t7 - 70ms, weighted 11ms\n"
        "   5. [built] //t6 - 60ms, weighted 8ms\n"
        "   6. [built] //t5 - 50ms, weighted 6ms\n"
        "   7. [built] //t4 - 40ms, weighted 5ms\n"
        "   8. [built] //t3 - 30ms, weighted 3ms\n"
        "   9. [built] //t2 - 20ms, weighted 2ms\n"
        "  10. [failed] //t1 - 10ms, weighted 1ms\n"
        "      Error: no\n"
    )


def _build_p(session: str = "p", gen: str = "//gen") -> bytes:
    """A diamond on 2 workers: gen [0,100); a [100,400) and b [100,600) wait for gen; link
    [600,900) waits for a, b and z, a cache hit at +650 that sent no start; the build ends
    at 1000."""
    p = T0 + 20 * 3_600_000

    def started(ts: int, target: str, worker: int, deps: list[str]) -> dict[str, object]:
        return {"event": "target_started", "session": session, "ts": p + ts, "target": target,
                "worker": worker, "deps": deps}  # fmt: skip

    def finished(ts: int, target: str, status: str = "built") -> dict[str, object]:
        return {"event": "target_finished", "session": session, "ts": p + ts, "target": target,
                "status": status}  # fmt: skip

    return _events(
        {"event": "build_started", "session": session, "ts": p, "parallelism": 2},
        started(0, gen, 0, []),
        finished(100, gen),
        started(100, "//a", 0, [gen]),
        started(100, "//b", 1, [gen]),
        finished(400, "//a"),
        finished(600, "//b"),
        started(600, "//link", 0, ["//a", "//b", "//z"]),
        finished(650, "//z", "cached"),
        finished(900, "//link"),
        {"event": "build_finished", "session": session, "ts": p + 1000, "success": True},
    )


# p: 5 targets in 1000 ms, 1 hit of 5 attempted; 100 + 300 + 500 + 300 = 1200 ms executed
# on 2 workers (60%). Weighted: gen alone [0,100), a and b [100,400) (150 each), b alone
# [400,600), link alone [600,900): 900 ms with a target running, span 900, 1200 / 900 =
# 1.33x; both workers busy only over [100,400): 700 ms underused. Critical path: link waited
# for b (ended 600, after a at 400; z did not run), b for gen: 100 + 500 + 300 = 900 ms.
SHOW_P = """\
Targets: 5 (4 built, 1 cached, 0 failed, 0 skipped)
Cache Hit Rate: 20.0%
Workers: 2
Utilization: 60.0%
Targets/Second: 5.00
Weighted Time: 900ms (span 900ms)
Effective Parallelism: 1.33x
Underused: 700ms of 1000ms (70.0%) with fewer than 2 targets running
Critical Path: 900ms of 1000ms (90.0%), 3 targets

Critical path, first to last:
  1. [built] //gen - 100ms (10.0%) at +0ms
  2. [built] //b - 500ms (50.0%) at +100ms
  3. [built] //link - 300ms (30.0%) at +600ms

Targets, slowest first:
  1. [built] //b - 500ms, weighted 350ms (worker 1)
  2. [built] //a - 300ms, weighted 150ms (worker 0)
  3. [built] //link - 300ms, weighted 300ms (worker 0)
  4. [built] //gen - 100ms, weighted 100ms (worker 0)
  5. [cached] //z - 0ms
"""


def test_show_the_critical_path_after_the_weighted_figures(cli: Runner) -> None:
    assert cli("telemetry", "ingest", "-", stdin=_build_p()).code == 0
    result = cli("telemetry", "show", "p")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.split("\n\n", 3)[3] == SHOW_P
    # --top keeps the slowest targets; the path is shown whole.
    top = cli("telemetry", "show", "p", "--top", "1").stdout
    assert (
        top.split("\n\n", 3)[3]
        == SHOW_P.replace("Targets, slowest first:", "Targets, slowest 1 of 5:").partition(
            "  2. [built] //a"
        )[0]
    )


def test_show_json_has_the_critical_path_and_each_targets_deps(cli: Runner) -> None:
    assert cli("telemetry", "ingest", "-", stdin=_build_p()).code == 0
    result = cli("telemetry", "show", "p", "--format", "json")
    assert (result.code, result.stderr) == (0, "")
    shown = json.loads(result.stdout)
    keys = list(shown)
    assert keys[keys.index("underusedMs") :] == ["underusedMs", "criticalPath", "targets"]
    assert shown["criticalPath"] == {
        "durationMs": 900,
        "percentOfBuild": 90.0,
        "complete": True,
        "targets": [
            {"target": "//gen", "status": "built", "durationMs": 100, "percentOfBuild": 10.0,
             "startOffsetMs": 0},
            {"target": "//b", "status": "built", "durationMs": 500, "percentOfBuild": 50.0,
             "startOffsetMs": 100},
            {"target": "//link", "status": "built", "durationMs": 300, "percentOfBuild": 30.0,
             "startOffsetMs": 600},
        ],
    }  # fmt: skip
    assert [(t["target"], t["deps"]) for t in shown["targets"]] == [
        ("//b", ["//gen"]),
        ("//a", ["//gen"]),
        ("//link", ["//a", "//b", "//z"]),
        ("//gen", []),
        ("//z", None),
    ]


def test_a_path_that_begins_at_a_target_of_unknown_deps_says_so(cli: Runner) -> None:
    # cc ran [0,400) but sent only its finish, with its duration; link [400,500) waited for
    # it. The build failed after 500 ms; link failed too (its name has a control character).
    events = _events(
        {"event": "build_started", "session": "u", "ts": T0},
        {"event": "target_finished", "session": "u", "ts": T0 + 400, "target": "//c\x1bc",
         "status": "built", "duration_ms": 400},
        {"event": "target_started", "session": "u", "ts": T0 + 400, "target": "//link",
         "deps": ["//c\x1bc"]},
        {"event": "target_finished", "session": "u", "ts": T0 + 500, "target": "//link",
         "status": "failed"},
        {"event": "build_finished", "session": "u", "ts": T0 + 500, "success": False},
    )  # fmt: skip
    assert cli("telemetry", "ingest", "-", stdin=events).code == 0
    shown = cli("telemetry", "show", "u").stdout
    assert (
        "Critical Path: 500ms of 500ms (100.0%), 2 targets\n"
        "\n"
        "Critical path, first to last:\n"
        "  1. [built] //c\\x1bc - 400ms (80.0%) at +0ms\n"
        "  2. [failed] //link - 100ms (20.0%) at +400ms\n"
        "  (what //c\\x1bc waited for was not reported: the path may begin before it)\n"
        "\n"
        "Targets, slowest first:\n"
    ) in shown
    assert all(line.isprintable() for line in shown.splitlines())
    path = json.loads(cli("telemetry", "show", "u", "--format", "json").stdout)["criticalPath"]
    assert (path["complete"], [t["target"] for t in path["targets"]]) == (
        False,
        ["//c\x1bc", "//link"],
    )


def test_deps_known_but_nothing_ran(cli: Runner) -> None:
    events = _events(
        {"event": "build_started", "session": "k", "ts": T0},
        {"event": "target_started", "session": "k", "ts": T0, "target": "//a", "deps": []},
        {"event": "target_finished", "session": "k", "ts": T0 + 3, "target": "//a",
         "status": "cached"},
        {"event": "build_finished", "session": "k", "ts": T0 + 5, "success": True},
    )  # fmt: skip
    assert cli("telemetry", "ingest", "-", stdin=events).code == 0
    assert (
        "\nCritical Path: none (no target ran)\n\nTargets" in cli("telemetry", "show", "k").stdout
    )
    shown = json.loads(cli("telemetry", "show", "k", "--format", "json").stdout)
    assert shown["criticalPath"] == {
        "durationMs": 0,
        "percentOfBuild": 0.0,
        "complete": True,
        "targets": [],
    }


def test_a_failed_step_is_red_on_a_terminal() -> None:
    from telemetry.critical_path import build_critical_path
    from telemetry.exporter import render_build
    from telemetry.model import BuildDetails, TargetRun

    start = datetime.fromtimestamp(T0 / 1000, UTC)
    run = TargetRun("//x", "failed", start, start + timedelta(milliseconds=10), 10, None, "no", ())
    build = BuildDetails(
        "r", start, start + timedelta(milliseconds=10), 10, False, False, None, 1, 0, 0, 1, 0,
        0.0, 100.0, 100.0, None, 1, 10, None, None, None, None, {}, (run,),
    )  # fmt: skip
    text = render_build(build, color=True, critical_path=build_critical_path(build))
    assert "  1. [\x1b[31mfailed\x1b[0m] //x - 10ms (100.0%) at +0ms\n" in text
