"""The HTML report (telemetry/report/, builder telemetry report): the numbers it embeds,
worked out by hand on a small history; text from builds that cannot get out of its JSON;
stdout; and the errors (an empty store, a filter that takes nothing, a bad option, the extra
missing).

The browser's view of the same page is tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.ingest import ingest_jsonl
from telemetry.report import html_report
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, HOUR, T0, Runner, _event, process_env

DAY = 24 * HOUR
INSTALL = "pip install 'builder-telemetry[report]'"


def report_history() -> list[str]:
    """Four builds; every figure the report shows is worked out from them by hand below.

    r1 (T0, 2 workers): compile [0,1000) w0, test [0,400) w1, gen [400,600) w1; 1200 ms.
    r2 (T0+1h): compile and gen cached, test [0,500) w0; 600 ms.
    r3 (T0+2h): compile [0,1400) w0, test failed [0,300) w1, gen cached; 1500 ms, failed.
    r4 (T0+1d, the next UTC day): compile cached at +10, test [0,400) w0, gen cached at
    +20; 500 ms.
    """
    r1, r2, r3, r4 = T0, T0 + HOUR, T0 + 2 * HOUR, T0 + DAY
    compile_, test, gen = "//app:compile", "//app:test", "//lib:gen"
    return [
        _event("build_started", "r1", r1, parallelism=2, branch="main", commit="c1"),
        _event("target_started", "r1", r1, target=compile_, worker=0),
        _event("target_started", "r1", r1, target=test, worker=1),
        _event("target_finished", "r1", r1 + 400, target=test, status="built"),
        _event("target_started", "r1", r1 + 400, target=gen, worker=1),
        _event("target_finished", "r1", r1 + 600, target=gen, status="built"),
        _event("target_finished", "r1", r1 + 1000, target=compile_, status="built"),
        _event("build_finished", "r1", r1 + 1200, success=True),
        _event("build_started", "r2", r2, branch="main", commit="c2"),
        _event("target_finished", "r2", r2 + 10, target=compile_, status="cached"),
        _event("target_finished", "r2", r2 + 10, target=gen, status="cached"),
        _event("target_started", "r2", r2, target=test, worker=0),
        _event("target_finished", "r2", r2 + 500, target=test, status="built"),
        _event("build_finished", "r2", r2 + 600, success=True),
        _event("build_started", "r3", r3, branch="main", commit="c3"),
        _event("target_started", "r3", r3, target=compile_, worker=0),
        _event("target_started", "r3", r3, target=test, worker=1),
        _event("target_finished", "r3", r3 + 300, target=test, status="failed", error="assert"),
        _event("target_finished", "r3", r3 + 5, target=gen, status="cached"),
        _event("target_finished", "r3", r3 + 1400, target=compile_, status="built"),
        _event("build_finished", "r3", r3 + 1500, success=False),
        _event("build_started", "r4", r4, branch="feature", commit="c4"),
        _event("target_finished", "r4", r4 + 10, target=compile_, status="cached"),
        _event("target_started", "r4", r4, target=test, worker=0),
        _event("target_finished", "r4", r4 + 400, target=test, status="built"),
        _event("target_finished", "r4", r4 + 20, target=gen, status="cached"),
        _event("build_finished", "r4", r4 + 500, success=True),
    ]


class _Page(HTMLParser):
    """The page's JSON elements (the figures and each chart's specification), its
    executable scripts and the tags it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.json: dict[str, Any] = {}
        self.scripts = 0
        self.tags: list[str] = []
        self._into: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "script" and found.get("type") == "application/json":
            self._into = found.get("data-chart") or found.get("id") or "?"
        elif tag == "script":
            self.scripts += 1

    def handle_data(self, data: str) -> None:
        if self._into is not None:
            self.json[self._into] = json.loads(data)
            self._into = None


def parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    return parsed


def dataset(page: _Page, chart: str, name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = page.json[chart]["datasets"][name]
    return data


@pytest.fixture
def report_store(storage: TelemetryStorage) -> TelemetryStorage:
    stored = ingest_jsonl(storage, report_history())
    assert stored.sessions == 4 and not stored.problems
    return storage


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> _Page:
    """The report of report_history(), made once for the tests that read it."""
    storage = TelemetryStorage(tmp_path_factory.mktemp("report") / "telemetry")
    ingest_jsonl(storage, report_history())
    return parse(html_report(TelemetryAnalyzer(storage)))


def test_the_figures_are_the_hand_worked_ones(page: _Page) -> None:
    figures = page.json["figures"]
    # Durations 1200, 600, 1500, 500: mean 3800 / 4 = 950; r3 failed: 3 of 4 succeeded.
    assert figures["builds"] == 4
    assert (figures["successful"], figures["failed"]) == (3, 1)
    assert figures["successRate"] == 75.0
    assert figures["averageBuildMs"] == 950.0
    assert (figures["fastestBuildMs"], figures["slowestBuildMs"]) == (500, 1500)
    assert (figures["firstStart"], figures["lastStart"]) == (
        "2025-10-27T14:23:20",
        "2025-10-28T14:23:20",
    )
    # Hit rates cached / (built + cached + failed): r1 0/3, r2 2/3, r3 1/3, r4 2/3.
    rates = [Fraction(0), Fraction(200, 3), Fraction(100, 3), Fraction(200, 3)]
    assert figures["averageCacheHitRate"] == pytest.approx(float(sum(rates) / 4))  # 41.67
    assert figures["buildsWithTargets"] == 4
    # SPEC's regressions are of the latest build only (fewer than 10): r4, 500 against
    # (1200 + 600 + 1500) / 3 = 1100, is none. Of every build, only r3 regressed:
    # 1500 / ((1200 + 600) / 2) = 1.67 >= 1.5.
    assert figures["regressions"] == []
    assert figures["regressedBuilds"] == 1
    # Cache value: medians of the executed runs, compile (1000, 1400) 1200, gen (200) 200;
    # compile's 2 hits save 2400, gen's 3 save 600: 3000 ms. Executed time: compile 2400,
    # test 400 + 500 + 300 + 400 = 1600, gen 200: 4200 ms; share 3000 / 7200.
    assert figures["cacheSavedMs"] == 3000.0
    assert figures["cacheSavedShare"] == pytest.approx(float(Fraction(3000, 7200) * 100))
    # Over target runs: 5 hits of 5 + 7 executed runs.
    assert figures["cacheHitRateOverRuns"] == pytest.approx(float(Fraction(500, 12)))
    assert figures["unvaluedHits"] == 0
    # Four builds are too few for a change point (5 on either side of one).
    assert figures["changePoints"] == 0
    assert figures["newestBuild"] == "r4"


def test_the_build_time_chart_has_every_build_with_its_regression(page: _Page) -> None:
    builds = dataset(page, "chart-build-time", "builds")
    assert [b["sessionId"] for b in builds] == ["r1", "r2", "r3", "r4"]
    assert [b["durationMs"] for b in builds] == [1200, 600, 1500, 500]
    assert [b["outcome"] for b in builds] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert [b["commit"] for b in builds] == ["c1", "c2", "c3", "c4"]
    assert [b["branch"] for b in builds] == ["main", "main", "main", "feature"]
    assert [b["started"] for b in builds] == [
        "2025-10-27T14:23:20",
        "2025-10-27T15:23:20",
        "2025-10-27T16:23:20",
        "2025-10-28T14:23:20",
    ]
    assert [b["startTime"] for b in builds] == [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + DAY]
    # The mean of the builds before: none, 1200, 900, 1100.
    assert [b["expectedMs"] for b in builds] == [None, 1200.0, 900.0, 1100.0]
    assert [b["ratio"] for b in builds] == pytest.approx([None, 0.5, 1500 / 900, 500 / 1100])
    assert [b["regressed"] for b in builds] == [False, False, True, False]
    assert "changes" not in page.json["chart-build-time"]["datasets"]  # no change point


def test_the_hit_rates_and_the_success_per_day(page: _Page) -> None:
    hits = dataset(page, "chart-hit-rate", "hitRates")
    assert [h["cacheHitRate"] for h in hits] == pytest.approx([0.0, 200 / 3, 100 / 3, 200 / 3])
    days = dataset(page, "chart-success", "days")
    # 2025-10-27: r1, r2 succeeded, r3 failed; 2025-10-28: r4 succeeded.
    assert [(d["day"], d["builds"], d["succeeded"], d["failed"]) for d in days] == [
        ("2025-10-27", 3, 2, 1),
        ("2025-10-28", 1, 1, 0),
    ]
    assert [d["successRate"] for d in days] == pytest.approx([200 / 3, 100.0])


def test_the_bottlenecks_by_mean_duration_and_by_weighted_time(page: _Page) -> None:
    # Executed runs: compile 1000, 1400; test 400, 500, 300 (failed), 400; gen 200.
    assert dataset(page, "chart-bottlenecks", "targets") == [
        {"target": "//app:compile", "meanMs": 1200.0, "runs": 2},
        {"target": "//app:test", "meanMs": 400.0, "runs": 4},
        {"target": "//lib:gen", "meanMs": 200.0, "runs": 1},
    ]
    # Weighted: r1 [0,400) compile and test 200 each, [400,600) compile and gen 100 each,
    # [600,1000) compile alone 400: compile 700, test 200, gen 100. r2 test alone 500.
    # r3 [0,300) compile and test 150 each, then compile alone 1100: compile 1250, test 150.
    # r4 test alone 400. Means: compile 1950 / 2, test 1250 / 4, gen 100.
    assert dataset(page, "chart-weighted", "targets") == [
        {"target": "//app:compile", "meanWeightedMs": 975.0, "meanDurationMs": 1200.0, "runs": 2},
        {"target": "//app:test", "meanWeightedMs": 312.5, "meanDurationMs": 400.0, "runs": 4},
        {"target": "//lib:gen", "meanWeightedMs": 100.0, "meanDurationMs": 200.0, "runs": 1},
    ]


def test_the_cache_time_saved_by_target(page: _Page) -> None:
    # test was never a hit: it saved nothing and is not drawn.
    assert dataset(page, "chart-cache-saved", "targets") == [
        {
            "target": "//app:compile",
            "savedMs": 2400.0,
            "cachedRuns": 2,
            "executedRuns": 2,
            "medianMs": 1200.0,
            "hitRate": 50.0,
        },
        {
            "target": "//lib:gen",
            "savedMs": 600.0,
            "cachedRuns": 3,
            "executedRuns": 1,
            "medianMs": 200.0,
            "hitRate": 75.0,
        },
    ]


def test_the_newest_builds_timeline(page: _Page) -> None:
    # r4: test on worker 0 over [0,400); the two hits, with no worker, at +10 and +20.
    assert dataset(page, "chart-timeline", "timeline") == [
        {
            "target": "//app:test",
            "status": "built",
            "lane": "worker 0",
            "laneOrder": 0,
            "startMs": 0,
            "endMs": 400,
            "durationMs": 400,
            "error": "",
        },
        {
            "target": "//app:compile",
            "status": "cached",
            "lane": "no worker",
            "laneOrder": -1,
            "startMs": 10,
            "endMs": 10,
            "durationMs": 0,
            "error": "",
        },
        {
            "target": "//lib:gen",
            "status": "cached",
            "lane": "no worker",
            "laneOrder": -1,
            "startMs": 20,
            "endMs": 20,
            "durationMs": 0,
            "error": "",
        },
    ]


def test_the_page_holds_its_scripts_and_nothing_fetched(page: _Page) -> None:
    charts = [key for key in page.json if key.startswith("chart-")]
    assert len(charts) == 7
    # Vega's bundle and the loader; the charts are data, not code.
    assert page.scripts == 2
    assert not {"link", "iframe", "img", "object", "embed"} & set(page.tags)


def test_progress_is_told_each_step_done_of_all(report_store: TelemetryStorage) -> None:
    from telemetry.report import STEPS, render_html, report_data

    told: list[tuple[int, int | None]] = []
    data = report_data(TelemetryAnalyzer(report_store), progress=lambda *seen: told.append(seen))
    render_html(data, progress=lambda *seen: told.append(seen))
    assert len(STEPS) == 6
    assert told == [(0, 6), (1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]


def step_history() -> list[str]:
    """24 builds an hour apart on branch main: s00 to s11 take 1000 or 1010 ms in turn,
    s12 to s23 take 3000 or 3030 ms: the build time changed at s12."""
    lines = []
    for n in range(24):
        duration = (1000, 1010)[n % 2] if n < 12 else (3000, 3030)[n % 2]
        session, start = f"s{n:02d}", T0 + n * HOUR
        lines += [
            _event("build_started", session, start, branch="main", commit=f"c{n:02d}"),
            _event("build_finished", session, start + duration, success=True),
        ]
    return lines


def test_a_change_point_is_marked_at_the_first_build_after_it(storage: TelemetryStorage) -> None:
    ingest_jsonl(storage, step_history())
    parsed = parse(html_report(TelemetryAnalyzer(storage)))
    # The medians of six 1000s and six 1010s, and of six 3000s and six 3030s.
    assert dataset(parsed, "chart-build-time", "changes") == [
        {
            "sessionId": "s12",
            "startTime": T0 + 12 * HOUR,
            "started": "2025-10-28T02:23:20",
            "commit": "c12",
            "branch": "main",
            "beforeMedianMs": 1005.0,
            "afterMedianMs": 3015.0,
            "change": pytest.approx((3015 - 1005) / 1005),
        }
    ]
    assert parsed.json["figures"]["changePoints"] == 1
    # No target: the charts of targets give way to a sentence each.
    assert set(parsed.json) == {"figures", "chart-build-time", "chart-success"}


HOSTILE_TARGET = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
HOSTILE_BRANCH = "<!--<script>\u2028\u2029&amp;"
HOSTILE_SESSION = "<b>s</b>\u202e"


def hostile_history() -> list[str]:
    """One build whose target, branch, commit, labels, error and session id attack a page."""
    s = HOSTILE_SESSION
    return [
        _event(
            "build_started",
            s,
            T0,
            branch=HOSTILE_BRANCH,
            commit="<svg onload=alert(1)>",
            labels={"<x>": "</script>"},
        ),
        _event("target_started", s, T0, target=HOSTILE_TARGET, worker=0),
        _event(
            "target_finished",
            s,
            T0 + 700,
            target=HOSTILE_TARGET,
            status="failed",
            error="</script><script>alert(2)</script>",
        ),
        _event("build_finished", s, T0 + 800, success=False, error="<script>alert(3)</script>"),
    ]


def test_text_from_builds_cannot_get_out_of_the_page_s_json(storage: TelemetryStorage) -> None:
    ingest_jsonl(storage, hostile_history())
    text = html_report(TelemetryAnalyzer(storage))
    # No markup of theirs in the page (its head holds only Vega's scripts, whose code
    # writes such tags): the JSON holds < > & as escapes.
    body = text.partition("</head>")[2]
    for raw in ("<script>window", "<script>alert", "<img", "<svg", "<b>", "<x>", "<!--"):
        assert raw not in body
    for separator in ("\u2028", "\u2029", "\u202e"):
        assert separator not in text
    parsed = parse(text)
    assert parsed.scripts == 2  # none added by a name
    assert not {"img", "b", "svg"} & set(parsed.tags)
    # The JSON reads back as the names, with what a terminal must not get raw escaped
    # (the bidirectional override and the separators) as every report escapes it.
    [bottleneck] = dataset(parsed, "chart-bottlenecks", "targets")
    assert bottleneck["target"] == HOSTILE_TARGET
    [build] = dataset(parsed, "chart-build-time", "builds")
    assert build["branch"] == "<!--<script>\\u2028\\u2029&amp;"
    assert build["sessionId"] == "<b>s</b>\\u202e"
    assert build["commit"] == "<svg onload=alert(1)>"
    assert build["labels"] == "<x>=</script>"
    [bar] = dataset(parsed, "chart-timeline", "timeline")
    assert bar["error"] == "</script><script>alert(2)</script>"
    # In the page's own text, the session id is HTML-escaped.
    assert "&lt;b&gt;s&lt;/b&gt;\\u202e" in text


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def report_cli(cli: Runner) -> Runner:
    stored = cli("telemetry", "ingest", "-", stdin="\n".join(report_history()).encode())
    assert stored.code == 0, stored.stderr
    return cli


def test_the_command_writes_report_html_here(report_cli: Runner, tmp_path: Path) -> None:
    done = report_cli("telemetry", "report")
    assert (done.code, done.stderr) == (0, "")
    assert done.stdout == (
        "Wrote report.html: 4 builds started from 2025-10-27T14:23:20 to "
        "2025-10-28T14:23:20 (UTC).\n"
    )
    written = parse((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert written.json["figures"]["builds"] == 4


def test_output_dash_is_stdout_and_the_window_and_filters_choose(report_cli: Runner) -> None:
    done = report_cli("telemetry", "report", "--output", "-", "--branch", "main")
    assert (done.code, done.stderr) == (0, "")
    assert done.stdout.startswith("<!DOCTYPE html>")
    figures = parse(done.stdout).json["figures"]
    assert (figures["builds"], figures["successful"]) == (3, 2)  # r1, r2, r3
    # The window before the command's name is its window too: r2 and r3.
    before = report_cli(
        "telemetry", "--since", "2025-10-27T15:00", "--until", "2025-10-27", "report", "-o", "-"
    )
    assert before.code == 0, before.stderr
    assert parse(before.stdout).json["figures"]["builds"] == 2


def test_an_empty_store_writes_nothing_and_says_why(cli: Runner, tmp_path: Path) -> None:
    done = cli("telemetry", "report")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: no report written: no telemetry data yet in {tmp_path / 'telemetry'}. Run a "
        "build with telemetry enabled, or store events with `builder telemetry ingest FILE`.\n"
    )
    assert not (tmp_path / "report.html").exists()


def test_a_filter_that_takes_no_build_is_an_error(report_cli: Runner, tmp_path: Path) -> None:
    done = report_cli("telemetry", "report", "--tool", "gradle")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: no report written: no builds in {tmp_path / 'telemetry'} match the selected "
        "filters.\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--top", "0"], "Error: Invalid value for '--top': '0' is not a whole number from 1 to "
                         "1000000.\n"),
        (["--since", "yesterday"], "Error: --since must be a date (2025-10-27), a UTC time "
                                   "(2025-10-27T14:23:15) or an age (7d, 12h, 2w), got "
                                   "'yesterday'\n"),
    ],
)  # fmt: skip
def test_a_bad_option_value_is_one_error_and_exit_2(
    report_cli: Runner, args: list[str], error: str
) -> None:
    done = report_cli("telemetry", "report", *args)
    assert (done.code, done.stdout, done.stderr) == (2, "", error)


def test_an_unwritable_output_is_one_error(report_cli: Runner, tmp_path: Path) -> None:
    done = report_cli("telemetry", "report", "--output", str(tmp_path / "missing" / "r.html"))
    assert done.code == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: cannot write ") and done.stderr.count("\n") == 1


def _run_without(module: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """builder telemetry report in a new interpreter in which ``module`` cannot be imported."""
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from telemetry.cli import main\n"
        f"main(['telemetry', 'report', *{list(args)!r}])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=process_env(store),
        cwd=store.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_the_extra_the_error_says_how_to_install_it(report_store: TelemetryStorage) -> None:
    for missing in ("altair", "vl_convert"):
        done = _run_without(missing, report_store.dir)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == (
            "Error: the HTML report needs the report extra (altair and vl-convert-python); "
            f"install it with: {INSTALL}\n"
        )
    assert not (report_store.dir.parent / "report.html").exists()


def test_without_ruptures_the_report_says_change_points_are_unavailable(
    report_store: TelemetryStorage,
) -> None:
    done = _run_without("ruptures", report_store.dir, "--output", "-")
    assert (done.returncode, done.stderr) == (0, "")
    unavailable = (
        "change-point detection needs the changepoints extra: "
        "pip install 'builder-telemetry[changepoints]'"
    )
    figures = parse(done.stdout).json["figures"]
    assert figures["changePoints"] is None
    assert figures["changePointsUnavailable"] == unavailable
    shown = unavailable.replace("'", "&#x27;")  # as HTML escapes it
    assert f"Change points are unavailable: {shown}." in done.stdout
    assert figures["builds"] == 4  # the rest is drawn all the same


def test_the_console_script_writes_the_report(report_store: TelemetryStorage) -> None:
    """The installed command, as a person runs it: a file they can open."""
    out = report_store.dir.parent / "site" / "index.html"
    out.parent.mkdir()
    done = subprocess.run(
        [BUILDER, "telemetry", "report", "-o", str(out)],
        env=process_env(report_store.dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"Wrote {out}: 4 builds")
    assert parse(out.read_text(encoding="utf-8")).json["figures"]["successRate"] == 75.0


def test_a_terminal_as_stdout_gets_no_page(report_store: TelemetryStorage) -> None:
    """A megabyte of HTML is no output for a person: refused, one error, nothing written."""
    controller, terminal = os.openpty()
    try:
        done = subprocess.run(
            [BUILDER, "telemetry", "report", "--output", "-"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=process_env(report_store.dir),
            text=True,
            timeout=120,
            check=False,
        )
        os.set_blocking(controller, False)
        try:
            screen = os.read(controller, 65536)
        except BlockingIOError:
            screen = b""
    finally:
        os.close(terminal)
        os.close(controller)
    assert (done.returncode, screen) == (1, b"")
    assert done.stderr == (
        "Error: the report is an HTML page of about a megabyte and stdout is a terminal; write "
        "it to a file with --output PATH, or redirect stdout\n"
    )
