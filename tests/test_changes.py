"""Change points (telemetry/changes.py and `builder telemetry changes`): hand-made histories
with steps planted at known builds, stored through the real ingest and run through the real
PELT of ruptures; every expected build and number is known by construction or worked out by
hand below (the medians and means of noisy series by the standard library, the noise by
numpy, the best segmentation by an exhaustive search: second routes)."""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.changes import (
    ChangepointsMissing,
    ChangeReport,
    Settings,
    change_points,
    noise_of,
    render_text,
)
from telemetry.errors import ConfigError
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from telemetry.window import Filter, Window
from tests.conftest import HOUR, T0, Runner, _event

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="ruptures has no release for Python 3.14 yet"
)

MISSING = (
    "Error: change-point detection needs the changepoints extra: "
    "pip install 'builder-telemetry[changepoints]'\n"
)


def _build(
    session: str,
    hour: int,
    duration_ms: int,
    *,
    runs: tuple[tuple[str, str, int], ...] = (),
    **fields: object,
) -> list[str]:
    """One build starting ``hour`` hours after T0 (2025-10-27T14:23:20) and lasting
    ``duration_ms``, with its target ``runs`` as (target, status, duration_ms)."""
    start = T0 + hour * HOUR
    lines = [_event("build_started", session, start, **fields)]
    for target, status, ms in runs:
        lines.append(
            _event(
                "target_finished", session, start + 1, target=target, status=status, duration_ms=ms
            )
        )
    lines.append(_event("build_finished", session, start + duration_ms, success=True))
    return lines


def _store(storage: TelemetryStorage, builds: list[list[str]]) -> TelemetryStorage:
    result = ingest_jsonl(storage, [line for build in builds for line in build])
    assert result.sessions == len(builds) and not result.problems
    return storage


def _ingest(cli: Runner, builds: list[list[str]]) -> None:
    lines = "\n".join(line for build in builds for line in build)
    stored = cli("telemetry", "ingest", "-", stdin=lines.encode())
    assert stored.code == 0, stored.stderr


def _at(hour: int) -> datetime:
    return datetime.fromtimestamp((T0 + hour * HOUR) / 1000, UTC)


def _commit(number: int) -> str:
    return f"{number:02d}" * 20


def _noisy(seed: int, *levels: tuple[int, int]) -> list[int]:
    """Durations around each (mean ms, count) level in turn, N(mean, 50 ms), seeded."""
    draw = random.Random(seed)
    return [round(draw.gauss(mean, 50)) for mean, count in levels for _ in range(count)]


def _history(durations: list[int]) -> list[list[str]]:
    """Builds b01, b02, ... an hour apart with these durations, build bNN at commit NN...
    on main, labelled ci=true."""
    return [
        _build(f"b{i:02d}", i - 1, ms, commit=_commit(i), branch="main", labels={"ci": "true"})
        for i, ms in enumerate(durations, start=1)
    ]


# -- a planted step ---------------------------------------------------------------------------
#
# Exact history: b01..b15 take 1000, 1020, 980, 1010, 990 ms (three times), b16..b30 the same
# plus 1000 ms. Before: sorted 980×3, 990×3, 1000×3, 1010×3, 1020×3, median (8th) 1000, mean
# 15000/15 = 1000; after: median 2000, mean 2000; change (2000 − 1000)/1000 = +100%. The first
# build after the step is b16, started at T0 + 15 h = 2025-10-28T05:23:20, commit 1616161...
STEP = [1000, 1020, 980, 1010, 990] * 3 + [2000, 2020, 1980, 2010, 1990] * 3


def test_a_planted_step_is_found_at_the_first_slow_build(storage: TelemetryStorage) -> None:
    durations = _noisy(3, (1000, 15), (2000, 15))
    report = change_points(TelemetryAnalyzer(_store(storage, _history(durations))))
    assert (report.builds, report.points, report.looked) == (30, 30, True)
    [found] = report.changes
    assert (found.index, found.session_id, found.start_time) == (15, "b16", _at(15))
    assert (found.commit, found.branch, found.labels) == (_commit(16), "main", {"ci": "true"})
    before, after = durations[:15], durations[15:]
    assert (found.before.points, found.after.points) == (15, 15)
    assert found.before.median_ms == statistics.median(before)
    assert found.after.median_ms == statistics.median(after)
    assert found.before.mean_ms == pytest.approx(statistics.fmean(before), abs=1e-9)
    assert found.after.mean_ms == pytest.approx(statistics.fmean(after), abs=1e-9)
    expected = (statistics.median(after) - statistics.median(before)) / statistics.median(before)
    assert found.change == pytest.approx(expected, abs=1e-12)


def test_two_steps_are_both_found_oldest_first(storage: TelemetryStorage) -> None:
    # 1 s for b01..b12, 2 s for b13..b24 (it started at b13), 1 s again from b25 (fixed).
    durations = _noisy(5, (1000, 12), (2000, 12), (1000, 12))
    report = change_points(TelemetryAnalyzer(_store(storage, _history(durations))))
    assert [(c.index, c.session_id) for c in report.changes] == [(12, "b13"), (24, "b25")]
    first, second = report.changes
    # Each segment runs from the change point before it to the next one.
    assert (first.before.points, first.after.points) == (12, 12)
    assert (second.before.points, second.after.points) == (12, 12)
    assert first.after == second.before
    assert first.before.median_ms == statistics.median(durations[:12])
    assert first.after.median_ms == statistics.median(durations[12:24])
    assert second.after.median_ms == statistics.median(durations[24:])


def test_noise_without_a_step_has_no_change_point(storage: TelemetryStorage) -> None:
    durations = _noisy(7, (1000, 40))
    report = change_points(TelemetryAnalyzer(_store(storage, _history(durations))))
    assert (report.points, report.looked, report.changes) == (40, True, ())
    assert render_text(report) == (
        "No change point in the build time of 40 builds (PELT, penalty 3).\n"
    )


def test_the_same_history_gives_the_same_answer(storage: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(_store(storage, _history(_noisy(3, (1000, 15), (2000, 15)))))
    assert change_points(analyzer) == change_points(analyzer)


# -- spikes ----------------------------------------------------------------------------------
#
# 40 builds of about 1 s (N(1000, 50), seeded), b21..b40 30 % slower (×1.3), and four
# one-off slow builds, 3× their neighbours: b05, b12 (before the step), b30, b33 (after).
# A single slow build is no change: the one change is at b21 (index 20). Without the step,
# the spikes alone are no change either.
SPIKES = {4, 11, 29, 32}


def _spiky(step: float) -> list[int]:
    base = _noisy(11, (1000, 40))
    return [
        round(ms * (step if i >= 20 else 1) * (3 if i in SPIKES else 1))
        for i, ms in enumerate(base)
    ]


def test_spikes_are_not_changes(storage: TelemetryStorage) -> None:
    stepped = change_points(TelemetryAnalyzer(_store(storage, _history(_spiky(1.3)))))
    assert [(c.index, c.session_id) for c in stepped.changes] == [(20, "b21")]


def test_spikes_alone_are_no_change(storage: TelemetryStorage) -> None:
    report = change_points(TelemetryAnalyzer(_store(storage, _history(_spiky(1.0)))))
    assert (report.points, report.changes) == (40, ())


# -- the definition, by a second route -----------------------------------------------------
#
# The segmentation reported is the one of least cost plus a price per change point, each
# part at least min_points long (telemetry/changes.py's first lines): found here by trying
# every segmentation (dynamic programming over where the last part starts), with the cost
# written out from that definition.


def _best_segmentation(durations: list[int], min_points: int, penalty: float) -> list[int]:
    logs = [math.log1p(ms) for ms in durations]
    steps = [b - a for a, b in itertools.pairwise(logs)]
    middle = statistics.median(steps)
    sigma = max(1.4826 * statistics.median(abs(d - middle) for d in steps) / math.sqrt(2), 0.01)
    z = [y / sigma for y in logs]
    n = len(z)

    def cost(a: int, b: int) -> float:
        part = z[a:b]
        pulls = sum(math.exp(-((x - y) ** 2) / 8) for x in part for y in part)
        return len(part) - pulls / len(part)

    price = penalty * math.log(n) / 4

    @functools.cache
    def best(end: int) -> tuple[float, tuple[int, ...]]:
        """The least cost of z[:end] in parts of at least min_points, and its change points."""
        options: list[tuple[float, tuple[int, ...]]] = [(cost(0, end), ())]
        for start in range(min_points, end - min_points + 1):
            before, changes = best(start)
            options.append((before + price + cost(start, end), (*changes, start)))
        return min(options)

    return list(best(n)[1])


@pytest.mark.parametrize(
    ("durations", "expected"),
    [
        (_noisy(5, (1000, 12), (2000, 12), (1000, 12)), [12, 24]),
        (_spiky(1.3), [20]),
        (_noisy(7, (1000, 40)), []),
    ],
    ids=["two-steps", "spikes", "noise"],
)
def test_the_changes_are_the_least_costly_segmentation(
    storage: TelemetryStorage, durations: list[int], expected: list[int]
) -> None:
    assert _best_segmentation(durations, 5, 3.0) == expected
    report = change_points(TelemetryAnalyzer(_store(storage, _history(durations))))
    assert [c.index for c in report.changes] == expected


def test_the_noise_is_that_of_the_log_durations() -> None:
    # Seven differences: 0.1, -0.1, 0.1, -0.1, a step of 5.1, -0.1, 0.1. Sorted -0.1 ×3,
    # 0.1 ×3, 5.1: median 0.1. Their distances from it 0, 0.2, 0, 0.2, 5.0, 0.2, 0, sorted
    # 0 ×3, 0.2 ×3, 5.0: median 0.2 (the step left out). σ = 1.4826 × 0.2 / √2.
    logs = [0.0, 0.1, 0.0, 0.1, 0.0, 5.1, 5.0, 5.1]
    assert noise_of(logs) == pytest.approx(1.4826 * 0.2 / math.sqrt(2), rel=1e-12)
    # Durations repeated to the millisecond: no differences, the floor of 1 %.
    assert noise_of([math.log1p(1000)] * 10) == 0.01


# -- a target's runs, cached ones left out ----------------------------------------------------
#
# 24 builds of 5 s each (the build time never changes). //app:test hits the cache in every
# third build (b03, b06, ..., b24: 8 cached runs of 0 ms); its 16 executed runs are, in order,
# b01 b02 b04 b05 b07 b08 b10 b11 at 400, 410, 390, 400, 405, 395, 400, 400 ms and b13 b14
# b16 b17 b19 b20 b22 b23 at 800, 810, 790, 800, 805, 795, 800, 800 ms (b17's failed: still
# executed). Before: sorted 390 395 400 400 400 400 405 410, median (400+400)/2 = 400, mean
# 3200/8 = 400; after: median 800, mean 800. The change is at the 9th executed run (index 8),
# in b13 (T0 + 12 h = 2025-10-28T02:23:20), +100%. Were the cached runs points, there would
# be 24 of them and the step would lie at index 12.
# //lib:gen runs 300 ms in every build: no change.
FAST = [400, 410, 390, 400, 405, 395, 400, 400]
SLOW = [800, 810, 790, 800, 805, 795, 800, 800]


def _target_history() -> list[list[str]]:
    executed = iter(FAST + SLOW)
    builds = []
    for i in range(1, 25):
        if i % 3 == 0:
            test = ("//app:test", "cached", 0)
        else:
            ms = next(executed)
            test = ("//app:test", "failed" if i == 17 else "built", ms)
        runs = (test, ("//lib:gen", "built", 300))
        builds.append(_build(f"b{i:02d}", i - 1, 5000, runs=runs, commit=_commit(i)))
    return builds


def test_a_targets_executed_runs_are_its_series(storage: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(_store(storage, _target_history()))
    report = change_points(analyzer, target="//app:test")
    assert (report.target, report.builds, report.points) == ("//app:test", 24, 16)
    [found] = report.changes
    assert (found.index, found.session_id, found.start_time) == (8, "b13", _at(12))
    assert (found.before.points, found.before.median_ms, found.before.mean_ms) == (8, 400, 400)
    assert (found.after.points, found.after.median_ms, found.after.mean_ms) == (8, 800, 800)
    assert found.change == 1.0
    assert change_points(analyzer).changes == ()  # the builds' own time never changed
    steady = change_points(analyzer, target="//lib:gen")
    assert (steady.points, steady.changes) == (24, ())


def test_a_target_never_executed_is_said(storage: TelemetryStorage) -> None:
    analyzer = TelemetryAnalyzer(_store(storage, _target_history()))
    report = change_points(analyzer, target="//app:none")
    assert (report.points, report.changes) == (0, ())
    assert render_text(report) == (
        "No change point: //app:none was not executed in these 24 builds (cached runs are "
        "left out).\n"
    )


# -- the filters ------------------------------------------------------------------------------
#
# 40 builds alternating between main (odd: m01..m20) and dev (even: d01..d20). main's take
# 1 s until m10 and 2 s from m11 (build 21, T0 + 20 h = 2025-10-28T10:23:20); dev's always
# take 3 s. main alone: the step at m11. dev alone: nothing. Since m11 started: main's 10
# builds at 2 s, nothing.


def _branches() -> list[list[str]]:
    main = [1000, 1020, 980, 1010, 990] * 2 + [2000, 2020, 1980, 2010, 1990] * 2
    dev = [3000, 3020, 2980, 3010, 2990] * 4
    builds = []
    for i in range(20):
        builds.append(_build(f"m{i + 1:02d}", 2 * i, main[i], branch="main", labels={"ci": "true"}))
        builds.append(_build(f"d{i + 1:02d}", 2 * i + 1, dev[i], branch="dev"))
    return builds


def test_the_filters_choose_the_builds_of_the_series(storage: TelemetryStorage) -> None:
    stored = _store(storage, _branches())

    def found(only: Filter, window: Window | None = None) -> ChangeReport:
        return change_points(TelemetryAnalyzer(stored, window=window, filter=only))

    main = found(Filter.parse(branch="main"))
    assert (main.points, [c.session_id for c in main.changes]) == (20, ["m11"])
    assert (main.changes[0].before.median_ms, main.changes[0].after.median_ms) == (1000, 2000)
    labelled = found(Filter.parse(labels=["ci=true"]))
    assert [c.session_id for c in labelled.changes] == ["m11"]
    dev = found(Filter.parse(branch="dev"))
    assert (dev.points, dev.changes) == (20, ())
    since = found(Filter.parse(branch="main"), Window.parse("2025-10-28T10:23:20", None))
    assert (since.builds, since.changes) == (10, ())


def test_the_cli_takes_the_filters_before_or_after_the_command(cli: Runner) -> None:
    _ingest(cli, _branches())
    line = (
        "2025-10-28T10:23:20 m11 (branch main, labels ci=true): build time 1.0s -> 2.0s (+100%)\n"
    )
    header = (
        "1 change point in the build time of 20 builds (medians between change points; "
        "PELT, penalty 3):\n"
    )
    for args in (
        ["changes", "--branch", "main"],
        ["--branch", "main", "changes"],
        ["--label", "ci=true", "changes"],
    ):
        result = cli("telemetry", *args)
        assert (result.code, result.stdout, result.stderr) == (0, header + line, "")
    dev = cli("telemetry", "changes", "--branch", "dev")
    assert dev.stdout == "No change point in the build time of 20 builds (PELT, penalty 3).\n"
    since = cli("telemetry", "--since", "2025-10-28T10:23:20", "changes", "--branch", "main")
    assert since.stdout == ("No change point in the build time of 10 builds (PELT, penalty 3).\n")


# -- too few points, an empty store ----------------------------------------------------------


def test_too_few_points_are_not_looked_at(storage: TelemetryStorage) -> None:
    # b01..b09: 1 s, 1 s, 1 s, 1 s, 2 s ×5; nine builds, fewer than the ten (5 on either side
    # of a change) of the default --min-points 5.
    analyzer = TelemetryAnalyzer(_store(storage, _history([1000] * 4 + [2000] * 5)))
    report = change_points(analyzer)
    assert (report.points, report.looked, report.noise, report.changes) == (9, False, None, ())
    assert render_text(report) == (
        "No change point looked for: 9 builds, fewer than the 10 that --min-points 5 asks for "
        "(5 on either side of a change).\n"
    )
    targets = change_points(analyzer, target="//none", settings=Settings(min_points=2))
    assert (targets.points, targets.looked) == (0, False)


def test_an_empty_store_says_there_is_no_data(cli: Runner, tmp_path: Path) -> None:
    text = cli("telemetry", "changes")
    no_data = (
        f"No telemetry data yet in {tmp_path / 'telemetry'}. Run a build with telemetry "
        "enabled, or store events with `builder telemetry ingest FILE`.\n"
    )
    assert (text.code, text.stdout, text.stderr) == (0, no_data, "")
    as_json = cli("telemetry", "changes", "--format", "json")
    assert as_json.code == 0 and as_json.stderr == no_data
    report = json.loads(as_json.stdout)
    assert (report["builds"], report["points"], report["changePoints"]) == (0, 0, [])
    assert report["lookedForChanges"] is False


# -- the command line -------------------------------------------------------------------------


def test_the_text_names_the_first_build_after_the_step(cli: Runner) -> None:
    _ingest(cli, _history(STEP))
    result = cli("telemetry", "changes")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == (
        "1 change point in the build time of 30 builds (medians between change points; "
        "PELT, penalty 3):\n"
        "2025-10-28T05:23:20 b16 (commit 1616161, branch main, labels ci=true): build time "
        "1.0s -> 2.0s (+100%)\n"
    )


def test_the_json_has_every_number_of_the_step(cli: Runner) -> None:
    _ingest(cli, _history(STEP))
    # --min-points 15: 15 builds on either side, so the one change there can be is at b16.
    result = cli("telemetry", "changes", "--format", "json", "--min-points", "15")
    assert (result.code, result.stderr) == (0, "")
    # The noise by numpy: 1.4826 × the MAD of the differences of ln(1 + ms), over √2.
    differences = np.diff(np.log1p(np.array(STEP, dtype=float)))
    mad = np.median(np.abs(differences - np.median(differences)))
    noise = pytest.approx(1.4826 * mad / np.sqrt(2), rel=1e-12)
    assert json.loads(result.stdout) == {
        "series": "builds",
        "target": None,
        "builds": 30,
        "points": 30,
        "minPoints": 15,
        "penalty": 3.0,
        "noise": noise,
        "lookedForChanges": True,
        "changePoints": [
            {
                "index": 15,
                "sessionId": "b16",
                "startTime": "2025-10-28T05:23:20",
                "commit": _commit(16),
                "branch": "main",
                "labels": {"ci": "true"},
                "before": {"points": 15, "medianMs": 1000.0, "meanMs": 1000.0},
                "after": {"points": 15, "medianMs": 2000.0, "meanMs": 2000.0},
                "change": 1.0,
            }
        ],
    }


def test_a_targets_changes_on_the_command_line(cli: Runner) -> None:
    _ingest(cli, _target_history())
    text = cli("telemetry", "changes", "--target", "//app:test")
    assert (text.code, text.stderr) == (0, "")
    assert text.stdout == (
        "1 change point in the run time of //app:test over 16 executed runs (medians between "
        "change points; PELT, penalty 3):\n"
        "2025-10-28T02:23:20 b13 (commit 1313131): //app:test 0.4s -> 0.8s (+100%)\n"
    )
    report = json.loads(
        cli("telemetry", "changes", "--target", "//app:test", "--format", "json").stdout
    )
    assert (report["series"], report["target"], report["points"]) == ("target", "//app:test", 16)
    assert [(c["index"], c["sessionId"]) for c in report["changePoints"]] == [(8, "b13")]


def test_a_higher_penalty_and_fewer_points_on_the_command_line(cli: Runner) -> None:
    # Nine builds: 1 s ×4, then 2 s ×5 (from b05, T0 + 4 h = 2025-10-27T18:23:20). At the
    # default --min-points 5 nothing is looked at (10 needed); at 4, the step is found (its
    # parts, 4 and 5 builds, are at least 4 long), at --penalty 6 too.
    _ingest(cli, _history([1000] * 4 + [2000] * 5))
    assert cli("telemetry", "changes").stdout == (
        "No change point looked for: 9 builds, fewer than the 10 that --min-points 5 asks for "
        "(5 on either side of a change).\n"
    )
    found = cli("telemetry", "changes", "--min-points", "4", "--penalty", "6")
    assert found.stdout == (
        "1 change point in the build time of 9 builds (medians between change points; "
        "PELT, penalty 6):\n"
        "2025-10-27T18:23:20 b05 (commit 0505050, branch main, labels ci=true): build time "
        "1.0s -> 2.0s (+100%)\n"
    )
    # Each part's cost is below its length, so the whole history's is below 9: at a price
    # K · ln 9 / 4 above 9 (K = 17: 17 × 2.197 / 4 = 9.34) no change can pay for itself.
    priced = cli("telemetry", "changes", "--min-points", "4", "--penalty", "17")
    assert priced.stdout == "No change point in the build time of 9 builds (PELT, penalty 17).\n"


def test_text_from_builds_is_escaped(cli: Runner) -> None:
    builds = _history(STEP)
    builds[15] = _build(
        "b16\x1b[2J", 15, STEP[15], commit="\u202e1616", branch="main\nx", labels={"k": "v\x07"}
    )
    _ingest(cli, builds)
    lines = cli("telemetry", "changes").stdout.splitlines()
    assert lines[1] == (
        "2025-10-28T05:23:20 b16\\x1b[2J (commit \\u202e1616, branch main\\nx, labels "
        "k=v\\x07): build time 1.0s -> 2.0s (+100%)"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--penalty", "abc"], "Error: --penalty must be a number (e.g. 3), got 'abc'"),
        (["--penalty", "1_5"], "Error: --penalty must be a number (e.g. 3), got '1_5'"),
        (["--penalty", "0"], "Error: --penalty must be a number above 0 (e.g. 3), got 0.0"),
        (["--penalty", "-1"], "Error: --penalty must be a number above 0 (e.g. 3), got -1.0"),
        (["--penalty", "nan"], "Error: --penalty must be a number above 0 (e.g. 3), got nan"),
        (["--penalty", "inf"], "Error: --penalty must be a number above 0 (e.g. 3), got inf"),
        (["--min-points", "1"],
         "Error: Invalid value for '--min-points': '1' is not a whole number from 2 to 1000000."),
        (["--min-points", "x"],
         "Error: Invalid value for '--min-points': 'x' is not a whole number from 2 to 1000000."),
        (["--target", ""], "Error: --target needs a target's name, e.g. //app:test"),
        (["--format", "xml"],
         "Error: Invalid value for '--format': 'xml' is not one of text, json."),
    ],
)  # fmt: skip
def test_a_bad_option_value_is_one_error_and_exit_2(
    cli: Runner, args: list[str], error: str
) -> None:
    _ingest(cli, _history(STEP))
    result = cli("telemetry", "changes", *args)
    assert (result.code, result.stdout, result.stderr) == (2, "", error + "\n")


def test_settings_refuse_what_cannot_be_used() -> None:
    with pytest.raises(ConfigError, match="--min-points must be a whole number of at least 2"):
        Settings(min_points=1)
    with pytest.raises(ConfigError, match="--penalty must be a number above 0"):
        Settings(penalty=-3)


# -- without the extra ------------------------------------------------------------------------


@pytest.fixture
def without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library as if it were not installed: None in sys.modules makes its import fail."""
    monkeypatch.setitem(sys.modules, "ruptures", None)


@pytest.mark.usefixtures("without_the_library")
def test_without_the_extra_the_library_says_how_to_install_it(
    storage: TelemetryStorage,
) -> None:
    with pytest.raises(ChangepointsMissing) as raised:
        change_points(TelemetryAnalyzer(_store(storage, _history(STEP))))
    assert f"Error: {raised.value}\n" == MISSING


@pytest.mark.usefixtures("without_the_library")
def test_without_the_extra_the_command_is_one_error_line(cli: Runner) -> None:
    _ingest(cli, _history(STEP))
    for args in (["changes"], ["changes", "--target", "//app:test", "--format", "json"]):
        result = cli("telemetry", *args)
        assert (result.code, result.stdout, result.stderr) == (1, "", MISSING)
