"""The HTML report in a real browser: the system's headless Chromium, driven by playwright
over the DevTools protocol, opens the file with the network off. Every chart must draw (an
SVG of real size with marks in it), no script may fail or log an error (a blocked script or
request would: the page's Content-Security-Policy reports it on the console), no request may
leave the file, and text from builds stays text. A screenshot of each page is kept as an
artefact (its path is printed; ``pytest -s`` shows it).

Skipped where no Chromium is installed, except in CI (``CI=true``), where that is a failure:
``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.report import html_report, write_report
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES
from tests.test_report import HOSTILE_TARGET, hostile_history, step_history


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser test", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
if CHROMIUM is None:
    _unavailable("no chromium to open the report in (apt-get install chromium)")
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:
    _unavailable("playwright is not installed (pip install -e '.[dev]')")

CHARTS = (
    "chart-build-time",
    "chart-hit-rate",
    "chart-success",
    "chart-bottlenecks",
    "chart-weighted",
    "chart-cache-saved",
    "chart-timeline",
)
# What each chart draws a mark for, at the least: a build, a day, a target, a target run.
_MARKS = "g.mark-symbol path, g.mark-rect path, g.mark-line path"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        # The system's browser: playwright downloads none of its own here.
        launched = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Visit:
    """A report opened in the browser: the page, and what it said and asked for."""

    page: Page
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _open(browser: Browser, report: Path) -> Visit:
    context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
    visit = Visit(context.new_page())
    visit.page.on(
        "console",
        lambda message: (
            visit.problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )
    visit.page.on("pageerror", lambda error: visit.problems.append(f"exception: {error}"))
    visit.page.on("request", lambda request: visit.requests.append(request.url))
    visit.page.goto(report.as_uri())
    # The page's loader marks the body once every chart has drawn or failed.
    visit.page.wait_for_selector("body[data-charts-done]", state="attached", timeout=60_000)
    return visit


def _charts(page: Page) -> list[dict[str, Any]]:
    charts: list[dict[str, Any]] = page.eval_on_selector_all(
        ".chart",
        """(boxes, marks) => boxes.map((box) => {
            const svg = box.querySelector("svg.marks");
            const size = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
            return {id: box.id, rendered: box.dataset.rendered === "true",
                    width: size.width, height: size.height,
                    marks: box.querySelectorAll(marks).length};
        })""",
        _MARKS,
    )
    return charts


def _screenshot(page: Page, folder: Path, name: str) -> Path:
    shot = folder / name
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the report: {shot}")
    return shot


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The report of the demo history (200 builds), and how many builds it has."""
    folder = tmp_path_factory.mktemp("demo-report")
    history = folder / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--today", "2026-11-20",
         "--output", str(history)],
        check=True,
    )  # fmt: skip
    storage = TelemetryStorage(folder / "telemetry", retention_days=100_000)
    stored = ingest_file(storage, history)
    report = folder / "report.html"
    write_report(html_report(TelemetryAnalyzer(storage)), report)
    return report, stored.sessions


def test_every_chart_draws_with_no_error_and_no_request(
    browser: Browser, demo_report: tuple[Path, int], tmp_path: Path
) -> None:
    report, builds = demo_report
    visit = _open(browser, report)
    shot = _screenshot(visit.page, tmp_path, "report.png")
    charts = _charts(visit.page)
    assert [c["id"] for c in charts] == list(CHARTS)
    for chart in charts:
        assert chart["rendered"], chart
        assert chart["width"] > 100 and chart["height"] > 50, chart
        assert chart["marks"] > 0, chart
    # A circle per build, at the least (a triangle more for each regression).
    circles = visit.page.locator("#chart-build-time g.mark-symbol path").count()
    assert circles >= builds == 200
    assert visit.problems == []
    assert visit.requests == [report.as_uri()]
    assert shot.stat().st_size > 10_000


def test_hostile_build_text_is_shown_as_text_and_runs_nothing(
    browser: Browser, tmp_path: Path
) -> None:
    storage = TelemetryStorage(tmp_path / "telemetry", retention_days=100_000)
    ingest_jsonl(storage, hostile_history())
    report = tmp_path / "hostile.html"
    write_report(html_report(TelemetryAnalyzer(storage)), report)
    visit = _open(browser, report)
    page = visit.page
    assert page.evaluate("() => window.pwned") is None  # no injected script ran
    assert page.locator("img").count() == 0
    assert all(c["rendered"] for c in _charts(page))
    # The name is drawn as the bar's label (cut to fit), as text.
    label = page.locator("#chart-bottlenecks svg.marks").text_content() or ""
    assert "</script><script>window.pwned" in label
    # Its tooltip shows it whole, as text, and adds no element of its own.
    page.locator("#chart-bottlenecks g.mark-rect path").first.hover()
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=10_000)
    assert HOSTILE_TARGET in (tooltip.text_content() or "")
    assert tooltip.locator("img, script").count() == 0
    _screenshot(page, tmp_path, "hostile.png")
    assert page.evaluate("() => window.pwned") is None
    assert visit.problems == []
    assert visit.requests == [report.as_uri()]


def test_a_change_point_is_drawn_as_a_rule(browser: Browser, tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "telemetry", retention_days=100_000)
    ingest_jsonl(storage, step_history())
    report = tmp_path / "step.html"
    write_report(html_report(TelemetryAnalyzer(storage)), report)
    visit = _open(browser, report)
    # Builds without targets: the build time and the success rate are all there is to draw.
    charts = _charts(visit.page)
    assert [(c["id"], c["rendered"]) for c in charts] == [
        ("chart-build-time", True),
        ("chart-success", True),
    ]
    # The dashed rule of the change (the axes' ticks and grid are rules too, not marks).
    rules = visit.page.locator("#chart-build-time g.mark-rule.role-mark line")
    assert rules.count() == 1
    _screenshot(visit.page, tmp_path, "step.png")
    assert visit.problems == []
    assert visit.requests == [report.as_uri()]
