"""Flaky targets (telemetry/flaky.py and `builder telemetry flaky`): hand-made histories,
stored through the real ingest, with every expected number worked out by hand below."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import ConfigError
from telemetry.flaky import FlakyTarget, flaky_targets
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Filter
from tests.conftest import T0, Runner, _event

MINUTE = 60_000
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40

# A run is a status, or a failure with its error text: ("failed", "timeout").
Run = str | tuple[str, str]


def _build(
    session: str, minute: int, commit: str | None, runs: dict[str, Run | list[Run]], **extra: str
) -> list[str]:
    """One build starting ``minute`` minutes after T0 (2025-10-27T14:23:20), its targets
    finishing 1 s apart in the order given (a list runs a target several times)."""
    start = T0 + minute * MINUTE
    fields: dict[str, object] = {"tool": "ninja", **extra}
    if commit is not None:
        fields["commit"] = commit
    lines = [_event("build_started", session, start, **fields)]
    ts, failed = start, False
    for target, given in runs.items():
        for run in given if isinstance(given, list) else [given]:
            ts += 1000
            status, error = (run, None) if isinstance(run, str) else run
            failed = failed or status == "failed"
            more = {} if error is None else {"error": error}
            lines.append(
                _event("target_finished", session, ts, target=target, status=status, **more)
            )
    lines.append(_event("build_finished", session, ts + 1000, success=not failed))
    return lines


def _store(storage: TelemetryStorage, *builds: list[str]) -> TelemetryStorage:
    result = ingest_jsonl(storage, [line for build in builds for line in build])
    assert result.sessions == len(builds) and not result.problems
    return storage


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp((T0 + minute * MINUTE) / 1000, UTC)


# -- history 1: flaky, deterministic, cached/skipped and builds without commit ----------------
#
# build   commit  //app:flaky            //app:broken        //lib:gen
# b1  +0  C1      failed "timeout"       failed "syntax"     built
# b2 +10  C1      built                  failed              skipped
# b3 +20  C1      failed "conn reset"    failed              cached
# b4 +30  C1      built                  failed              built
# b5 +40  C2      built                  built               skipped
# b6 +50  C2      built                  built               built
# n1 +60  -       failed "nope"          built               failed
# n2 +70  -       built                  failed              built
#
# //app:flaky: C1 runs F,B,F,B (4 runs, 2 failed, 3 flips); C2 B,B (2 runs, 0 flips).
#   runs 6, failures 2, flips 3, flip rate 100·3/((4−1)+(2−1)) = 75.0%, commits 2, flaky
#   commits 1 (C1, newest build there b4 at +30), newest error "conn reset" of b3.
# //app:broken: C1 F,F,F,F; C2 B,B: never both at one commit, so not flaky (in time order
#   alone, F,F,F,F,B,B, it would have one flip). runs 6, judged.
# //lib:gen: executed runs C1 B,B (b2 skipped, b3 cached: not runs) and C2 B (one run, not
#   judged): 2 runs at judged commits, 0 flips. Counting skipped as a failure would make
#   C1 B,F,B (or B,F,B,B with the cache hit as a success) flaky.
# n1, n2 have no commit: left out (as one group, they would make //app:broken and //lib:gen
#   flaky and give //app:flaky the newest error "nope").
HISTORY_1 = (
    _build(
        "b1",
        0,
        C1,
        {
            "//app:flaky": ("failed", "timeout"),
            "//app:broken": ("failed", "syntax"),
            "//lib:gen": "built",
        },
    ),
    _build(
        "b2", 10, C1, {"//app:flaky": "built", "//app:broken": "failed", "//lib:gen": "skipped"}
    ),
    _build(
        "b3",
        20,
        C1,
        {"//app:flaky": ("failed", "conn reset"), "//app:broken": "failed", "//lib:gen": "cached"},
    ),
    _build("b4", 30, C1, {"//app:flaky": "built", "//app:broken": "failed", "//lib:gen": "built"}),
    _build("b5", 40, C2, {"//app:flaky": "built", "//app:broken": "built", "//lib:gen": "skipped"}),
    _build("b6", 50, C2, {"//app:flaky": "built", "//app:broken": "built", "//lib:gen": "built"}),
    _build(
        "n1",
        60,
        None,
        {"//app:flaky": ("failed", "nope"), "//app:broken": "built", "//lib:gen": "failed"},
    ),
    _build(
        "n2", 70, None, {"//app:flaky": "built", "//app:broken": "failed", "//lib:gen": "built"}
    ),
)

FLAKY_1 = FlakyTarget(
    target="//app:flaky",
    commits=2,
    flaky_commits=1,
    runs=6,
    failures=2,
    flips=3,
    flip_rate=75.0,
    newest_flaky_commit=C1,
    newest_flaky_time=_at(30),
    newest_error="conn reset",
    newest_error_session="b3",
)


def test_a_flip_at_one_commit_is_flaky_a_change_between_commits_is_not(
    storage: TelemetryStorage,
) -> None:
    report = flaky_targets(TelemetryAnalyzer(_store(storage, *HISTORY_1)))
    assert report.targets == (FLAKY_1,)
    # 8 builds, n1 and n2 without a commit, C1 and C2; //app:flaky and //app:broken have
    # 6 runs at judged commits (≥ 5), //lib:gen 2.
    assert (report.builds, report.builds_without_commit, report.commits) == (8, 2, 2)
    assert (report.judged_targets, report.flaky_targets) == (2, 1)
    assert (report.min_runs, report.min_commits) == (5, 1)


def test_cached_and_skipped_runs_are_not_runs(storage: TelemetryStorage) -> None:
    # With min_runs 2, //lib:gen (2 runs at C1, both built) is judged and not flaky.
    report = flaky_targets(TelemetryAnalyzer(_store(storage, *HISTORY_1)), min_runs=2)
    assert (report.judged_targets, report.flaky_targets) == (3, 1)
    assert report.targets == (FLAKY_1,)


def test_builds_without_a_commit_are_counted_and_left_out(storage: TelemetryStorage) -> None:
    # Only n1 and n2, and a build whose commit is empty: nothing can be compared.
    _store(storage, HISTORY_1[6], HISTORY_1[7], _build("e", 80, "", {"//app:flaky": "failed"}))
    report = flaky_targets(TelemetryAnalyzer(storage), min_runs=2)
    assert (report.builds, report.builds_without_commit, report.commits) == (3, 3, 0)
    assert (report.judged_targets, report.flaky_targets, report.targets) == (0, 0, ())


# -- history 2: thresholds and ranking ------------------------------------------------------
#
# build   commit  //t:two            //t:tie    //t:one   //t:five   //t:four
# b1  +0  C1      failed "e1"        failed     built     failed     failed
# b2 +10  C1      built              built      failed    built      built
# b3 +20  C1      built              failed     built     skipped    -
# b4 +30  C1      skipped            built      cached    skipped    -
# b5 +40  C2      built              built      built     built      built
# b6 +50  C2      failed "e6"        built      built     built      built
# b7 +60  C2      built              cached     built     built      -
# b8 +70  C3      failed "e8"        -          -         -          -
#
#              judged runs  failed  flips  Σ(n−1)       rate   flaky commits
# //t:two      3+3 = 6      2       1+2    2+2 = 4      75.0%  2 (C1, C2; newest C2, b7)
# //t:tie      4+2 = 6      2       3+0    3+1 = 4      75.0%  1 (C1, newest b4)
# //t:one      3+3 = 6      1       2+0    2+2 = 4      50.0%  1 (C1, newest b3)
# //t:five     2+3 = 5      1       1+0    1+2 = 3      33.3%  1 (C1, newest b2)
# //t:four     2+2 = 4      1       1+0    1+1 = 2      50.0%  1 (C1, newest b2)
# C3 has one run of //t:two: not judged, so its error "e8" is not the newest error of a
# flaky commit; that is "e6" (b6, at C2).
HISTORY_2 = (
    _build(
        "b1",
        0,
        C1,
        {
            "//t:two": ("failed", "e1"),
            "//t:tie": "failed",
            "//t:one": "built",
            "//t:five": "failed",
            "//t:four": "failed",
        },
    ),
    _build(
        "b2",
        10,
        C1,
        {
            "//t:two": "built",
            "//t:tie": "built",
            "//t:one": "failed",
            "//t:five": "built",
            "//t:four": "built",
        },
    ),
    _build(
        "b3",
        20,
        C1,
        {"//t:two": "built", "//t:tie": "failed", "//t:one": "built", "//t:five": "skipped"},
    ),
    _build(
        "b4",
        30,
        C1,
        {"//t:two": "skipped", "//t:tie": "built", "//t:one": "cached", "//t:five": "skipped"},
    ),
    _build(
        "b5",
        40,
        C2,
        {
            "//t:two": "built",
            "//t:tie": "built",
            "//t:one": "built",
            "//t:five": "built",
            "//t:four": "built",
        },
    ),
    _build(
        "b6",
        50,
        C2,
        {
            "//t:two": ("failed", "e6"),
            "//t:tie": "built",
            "//t:one": "built",
            "//t:five": "built",
            "//t:four": "built",
        },
    ),
    _build(
        "b7",
        60,
        C2,
        {"//t:two": "built", "//t:tie": "cached", "//t:one": "built", "//t:five": "built"},
    ),
    _build("b8", 70, C3, {"//t:two": ("failed", "e8")}),
)


# target, runs, failures, flips, flip rate, flaky commits
Row = tuple[str, int, int, int, float, int]


def _row(target: str, runs: int, failures: int, flips: int, rate: float, flaky: int) -> Row:
    return (target, runs, failures, flips, rate, flaky)


TWO = _row("//t:two", 6, 2, 3, 75.0, 2)
TIE = _row("//t:tie", 6, 2, 3, 75.0, 1)
ONE = _row("//t:one", 6, 1, 2, 50.0, 1)
FIVE = _row("//t:five", 5, 1, 1, 100 / 3, 1)
FOUR = _row("//t:four", 4, 1, 1, 50.0, 1)


def _rows(report_targets: tuple[FlakyTarget, ...]) -> list[Row]:
    return [
        (t.target, t.runs, t.failures, t.flips, t.flip_rate, t.flaky_commits)
        for t in report_targets
    ]


@pytest.mark.parametrize(
    ("options", "judged", "expected"),
    [
        # Ranked by flip rate, then flaky commits (//t:two before //t:tie, which its name
        # alone would put first), then name (//t:four before //t:one, both 50%, 1 commit).
        ({}, 4, [TWO, TIE, ONE, FIVE]),
        ({"min_runs": 6}, 3, [TWO, TIE, ONE]),
        ({"min_runs": 4}, 5, [TWO, TIE, FOUR, ONE, FIVE]),
        ({"min_commits": 2}, 4, [TWO]),
        ({"min_runs": 7}, 0, []),
    ],
)
def test_thresholds_and_ranking(
    storage: TelemetryStorage, options: dict[str, int], judged: int, expected: list[Row]
) -> None:
    report = flaky_targets(TelemetryAnalyzer(_store(storage, *HISTORY_2)), **options)
    assert _rows(report.targets) == expected
    assert (report.judged_targets, report.flaky_targets) == (judged, len(expected))
    assert (report.builds, report.builds_without_commit, report.commits) == (8, 0, 3)


def test_the_newest_flaky_commit_and_error(storage: TelemetryStorage) -> None:
    report = flaky_targets(TelemetryAnalyzer(_store(storage, *HISTORY_2)), top=2)
    two, tie = report.targets
    assert (two.commits, two.newest_flaky_commit, two.newest_flaky_time) == (2, C2, _at(60))
    assert (two.newest_error, two.newest_error_session) == ("e6", "b6")
    assert (tie.commits, tie.newest_flaky_commit, tie.newest_flaky_time) == (2, C1, _at(30))
    # //t:tie's failures carried no error text.
    assert (tie.newest_error, tie.newest_error_session) == (None, None)
    assert report.flaky_targets == 4  # the top 2 of 4


def test_a_retry_within_one_build_is_a_flip(storage: TelemetryStorage) -> None:
    # One build at C1 ran //t:retry twice: failed, then built on the retry. 2 runs, 1 flip,
    # 100·1/(2−1) = 100%.
    _store(storage, _build("r", 0, C1, {"//t:retry": [("failed", "boom"), "built"]}))
    [retry] = flaky_targets(TelemetryAnalyzer(storage), min_runs=2).targets
    assert (retry.runs, retry.failures, retry.flips, retry.flip_rate) == (2, 1, 1, 100.0)
    assert (retry.newest_error, retry.newest_error_session) == ("boom", "r")


def test_runs_within_a_build_are_in_the_order_they_ended(storage: TelemetryStorage) -> None:
    # One build at C1 reports //t:order three times, not in the order the runs ended:
    # failed "late" (ended at +3 s), built (+1 s), failed "early" (+2 s). In end order that
    # is B, F "early", F "late": 3 runs, 2 failed, 1 flip, 100·1/(3−1) = 50%, newest error
    # "late". In the stored order (F, B, F) it would be 2 flips, 100%, newest error "early".
    start = T0
    lines = [
        _event("build_started", "o", start, commit=C1),
        _event(
            "target_finished", "o", start + 3000, target="//t:order", status="failed", error="late"
        ),
        _event("target_finished", "o", start + 1000, target="//t:order", status="built"),
        _event(
            "target_finished", "o", start + 2000, target="//t:order", status="failed", error="early"
        ),
        _event("build_finished", "o", start + 4000, success=False),
    ]
    _store(storage, lines)
    _, rows = TelemetryAnalyzer(storage).targets()
    assert rows["status"].to_list() == ["failed", "built", "failed"]  # stored as sent
    [order] = flaky_targets(TelemetryAnalyzer(storage), min_runs=2).targets
    assert (order.runs, order.failures, order.flips, order.flip_rate) == (3, 2, 1, 50.0)
    assert (order.newest_error, order.newest_error_session) == ("late", "o")


def test_a_session_id_stored_for_two_builds_counts_its_runs_once(tmp_path: Path) -> None:
    # Two stores merged by copying their day folders: "x" is stored in both (at C1, +10 min
    # here, two days later there). The analyzer gives x's two rows once each, at the first
    # x's place. //t:x: b1 built, x failed "boom", x built: B,F,B at C1: 3 runs, 1 failed,
    # 2 flips, 100·2/(3−1) = 100%, its newest build there the first x (+10 min). Joined to
    # both x builds, each row would count twice: B,F,B,F,B, 5 runs, 4 flips.
    here, there = TelemetryStorage(tmp_path / "here"), TelemetryStorage(tmp_path / "there")
    _store(
        here,
        _build("b1", 0, C1, {"//t:x": "built"}),
        _build("x", 10, C1, {"//t:x": ("failed", "boom")}),
    )
    _store(there, _build("x", 48 * 60, C1, {"//t:x": "built"}))
    for dataset in ("sessions", "targets"):
        for folder in (there.dir / dataset).iterdir():
            shutil.copytree(folder, here.dir / dataset / folder.name)
    report = flaky_targets(TelemetryAnalyzer(here), min_runs=2)
    assert (report.builds, report.commits) == (3, 1)
    assert report.targets == (
        FlakyTarget(
            target="//t:x",
            commits=1,
            flaky_commits=1,
            runs=3,
            failures=1,
            flips=2,
            flip_rate=100.0,
            newest_flaky_commit=C1,
            newest_flaky_time=_at(10),
            newest_error="boom",
            newest_error_session="x",
        ),
    )


def test_the_filter_chooses_the_builds(storage: TelemetryStorage) -> None:
    # Only b1..b4 are on the branch "flaky": //app:flaky has 4 runs at C1, so it is judged
    # with min_runs 4 alone: 3 flips in 3 steps, 100%.
    builds = [
        [line.replace('"tool": "ninja"', '"tool": "ninja", "branch": "flaky"') for line in b]
        for b in HISTORY_1[:4]
    ]
    _store(storage, *builds, *HISTORY_1[4:])
    analyzer = TelemetryAnalyzer(storage, filter=Filter(branch="flaky"))
    [flaky] = flaky_targets(analyzer, min_runs=4).targets
    assert (flaky.target, flaky.runs, flaky.flips, flaky.flip_rate) == ("//app:flaky", 4, 3, 100.0)


def test_an_empty_store(storage: TelemetryStorage) -> None:
    report = flaky_targets(TelemetryAnalyzer(storage))
    assert (report.builds, report.builds_without_commit, report.commits) == (0, 0, 0)
    assert (report.judged_targets, report.flaky_targets, report.targets) == (0, 0, ())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_runs": 1}, "min_runs must be at least 2, got 1"),
        ({"min_commits": 0}, "min_commits must be at least 1, got 0"),
        ({"top": 0}, "top must be at least 1, got 0"),
    ],
)
def test_the_library_refuses_unusable_thresholds(
    storage: TelemetryStorage, options: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        flaky_targets(TelemetryAnalyzer(storage), **options)


# -- the command ------------------------------------------------------------------------------

TEXT_1 = f"""\
=== Flaky Targets ===

Builds: 8 builds at 2 commits
Left out: 2 builds without a commit (nothing to compare them with)
Judged: 2 targets with at least 5 runs at commits where they ran twice or more
Flaky: 1 target that failed and built at the same commit (1 commit or more)

1. //app:flaky
   Flip rate: 75.0% (3 flips in 6 runs, 2 failed)
   Flaky commits: 1 of 2, newest {C1} (2025-10-27T14:53:20)
   Newest error: conn reset
"""


def test_cli_text(cli: Runner, storage: TelemetryStorage) -> None:
    _store(storage, *HISTORY_1)
    shown = cli("telemetry", "flaky")
    assert (shown.code, shown.stderr) == (0, "")
    assert shown.stdout == TEXT_1


def test_cli_text_ranks_and_cuts_at_top(cli: Runner, storage: TelemetryStorage) -> None:
    _store(storage, *HISTORY_2)
    shown = cli("telemetry", "flaky", "--top", "2", "--min-runs", "4")
    assert (shown.code, shown.stderr) == (0, "")
    assert shown.stdout == (
        "=== Flaky Targets ===\n"
        "\n"
        "Builds: 8 builds at 3 commits\n"
        "Judged: 5 targets with at least 4 runs at commits where they ran twice or more\n"
        "Flaky: 5 targets that failed and built at the same commit (1 commit or more); "
        "the top 2 shown\n"
        "\n"
        "1. //t:two\n"
        "   Flip rate: 75.0% (3 flips in 6 runs, 2 failed)\n"
        f"   Flaky commits: 2 of 2, newest {C2} (2025-10-27T15:23:20)\n"
        "   Newest error: e6\n"
        "2. //t:tie\n"
        "   Flip rate: 75.0% (3 flips in 6 runs, 2 failed)\n"
        f"   Flaky commits: 1 of 2, newest {C1} (2025-10-27T14:53:20)\n"
    )


def test_cli_text_no_flaky_targets(cli: Runner, storage: TelemetryStorage) -> None:
    _store(storage, *HISTORY_2)
    shown = cli("telemetry", "flaky", "--min-commits", "3")
    assert (shown.code, shown.stderr) == (0, "")
    assert shown.stdout == (
        "=== Flaky Targets ===\n"
        "\n"
        "Builds: 8 builds at 3 commits\n"
        "Judged: 4 targets with at least 5 runs at commits where they ran twice or more\n"
        "\n"
        "No flaky targets.\n"
    )


def test_cli_text_when_no_build_has_a_commit(cli: Runner, storage: TelemetryStorage) -> None:
    _store(storage, HISTORY_1[6], HISTORY_1[7])
    shown = cli("telemetry", "flaky")
    assert (shown.code, shown.stderr) == (0, "")
    assert shown.stdout == (
        "=== Flaky Targets ===\n"
        "\n"
        "Builds: 2 builds at 0 commits\n"
        "Left out: 2 builds without a commit (nothing to compare them with)\n"
        "  builder record stores the commit of the git work tree it runs in; other tools "
        'send "commit" in build_started\n'
        "Judged: 0 targets with at least 5 runs at commits where they ran twice or more\n"
        "\n"
        "No flaky targets.\n"
    )


def test_cli_text_escapes_what_builds_sent(cli: Runner, storage: TelemetryStorage) -> None:
    name, error = "//t:\x1b[2Jred\u202e", "line one\nline two \x07"
    _store(
        storage,
        _build("x1", 0, "c\x1b1", {name: ("failed", error)}),
        _build("x2", 10, "c\x1b1", {name: "built"}),
    )
    shown = cli("telemetry", "flaky", "--min-runs", "2")
    assert shown.code == 0
    assert "1. //t:\\x1b[2Jred\\u202e\n" in shown.stdout
    assert "newest c\\x1b1 (2025-10-27T14:33:20)\n" in shown.stdout
    assert "   Newest error: line one line two \\x07\n" in shown.stdout
    assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout


def test_cli_json(cli: Runner, storage: TelemetryStorage) -> None:
    _store(storage, *HISTORY_1)
    shown = cli("telemetry", "flaky", "--format", "json", "--min-runs", "2")
    assert (shown.code, shown.stderr) == (0, "")
    assert json.loads(shown.stdout) == {
        "builds": 8,
        "buildsWithoutCommit": 2,
        "commits": 2,
        "minRuns": 2,
        "minCommits": 1,
        "judgedTargets": 3,
        "flakyTargets": 1,
        "targets": [
            {
                "target": "//app:flaky",
                "flipRate": 75.0,
                "flips": 3,
                "runs": 6,
                "failures": 2,
                "commits": 2,
                "flakyCommits": 1,
                "newestFlakyCommit": C1,
                "newestFlakyTime": "2025-10-27T14:53:20",
                "newestError": "conn reset",
                "newestErrorSession": "b3",
            }
        ],
    }


def test_cli_json_unrounded_rate(cli: Runner, storage: TelemetryStorage) -> None:
    _store(storage, *HISTORY_2)
    shown = cli("telemetry", "flaky", "--format", "json", "--min-commits", "1")
    rates = [t["flipRate"] for t in json.loads(shown.stdout)["targets"]]
    assert rates == [75.0, 75.0, 50.0, 100 / 3]


def test_cli_filters_and_window(cli: Runner, storage: TelemetryStorage) -> None:
    # --until 2025-10-27T14:43:20 keeps b1..b2 of history 2 (b3 starts at 14:43:20, the
    # end is open): every target has at most 2 runs at C1; //t:two F,B, //t:tie F,B,
    # //t:one B,F, //t:five F,B, //t:four F,B: 5 targets, each 1 flip in 1 step, 100%.
    _store(storage, *HISTORY_2)
    shown = cli(
        "telemetry", "flaky", "--until", "2025-10-27T14:43:20", "--min-runs", "2", "--tool", "ninja"
    )
    assert shown.code == 0, shown.stderr
    assert "Builds: 2 builds at 1 commit\n" in shown.stdout
    ranked = [line for line in shown.stdout.splitlines() if line[:1].isdigit()]
    assert ranked == ["1. //t:five", "2. //t:four", "3. //t:one", "4. //t:tie", "5. //t:two"]
    # No build of another tool: the filters' own message.
    other = cli("telemetry", "flaky", "--tool", "bazel")
    assert (other.code, other.stderr) == (0, "")
    assert other.stdout.startswith("No builds in ") and "match the selected filters" in other.stdout


def test_cli_empty_store(cli: Runner) -> None:
    shown = cli("telemetry", "flaky")
    assert (shown.code, shown.stderr) == (0, "")
    assert shown.stdout.startswith("No telemetry data yet in ")
    as_json = cli("telemetry", "flaky", "--format", "json")
    assert as_json.code == 0
    assert json.loads(as_json.stdout)["targets"] == []
    assert as_json.stderr.startswith("No telemetry data yet in ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--min-runs", "1"], "'--min-runs'"),
        (["--min-runs", "many"], "'--min-runs'"),
        (["--min-commits", "0"], "'--min-commits'"),
        (["--top", "0"], "'--top'"),
        (["--format", "xml"], "'--format'"),
        (["--since", "yesterday-ish"], "--since"),
        (["--label", "novalue"], "--label"),
    ],
)
def test_cli_bad_option_values(cli: Runner, args: list[str], says: str) -> None:
    shown = cli("telemetry", "flaky", *args)
    assert shown.code == 2
    assert shown.stdout == ""
    [line] = shown.stderr.splitlines()
    assert line.startswith("Error: ") and says in line
