"""``builder telemetry report``: one self-contained HTML file of charts over the builds
(:mod:`telemetry.report`), written to a file or to stdout.

Importing this module from :mod:`telemetry.cli.commands` registers the command, with its
examples.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from telemetry.cli.commands import (
    _MAX_COUNT,
    EXAMPLES,
    BranchOption,
    SinceOption,
    StatusOption,
    ToolOption,
    UntilOption,
    WithLabelOption,
    _config,
    _filter,
    _window,
    telemetry_app,
)

# The library's default, said again here so that --help loads neither polars nor it.
_TOP = 10
_STDOUT = "-"

EXAMPLES["telemetry", "report"] = (
    "builder telemetry report",
    "builder telemetry report --since 30d --output build-report.html",
    "builder telemetry report --branch main --output - > main.html",
)


@telemetry_app.command()
def report(
    ctx: typer.Context,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Where to write the HTML file (replaced whole once written); - for stdout.",
        ),
    ] = Path("report.html"),
    top: Annotated[
        int,
        typer.Option(
            min=1, max=_MAX_COUNT, metavar="N", help="How many targets each ranking shows."
        ),
    ] = _TOP,
    since: SinceOption = None,
    until: UntilOption = None,
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """Write one HTML file that opens in a browser with no network: the build time over
    time with regressions and change points marked, the cache hit rate over time, the
    success rate per day, the top bottlenecks by mean duration and by mean weighted time,
    the time the cache saved, and the newest build's timeline per worker. Hover over a
    build for its session, commit and branch.

    Needs the report extra: pip install 'builder-telemetry[report]'. Change points also
    need the changepoints extra; without it the report says so."""
    from telemetry import report as page
    from telemetry.cli import reports
    from telemetry.cli.progress import bar
    from telemetry.errors import TelemetryError
    from telemetry.text import printable

    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    to_stdout = str(output) == _STDOUT
    if to_stdout and reports.terminal():
        raise TelemetryError(
            "the report is an HTML page of about a megabyte and stdout is a terminal; "
            "write it to a file with --output PATH, or redirect stdout"
        )
    page.require()  # before reading the store: the extra is needed whatever it holds
    asked = reports.analyzer(_config(ctx), since, until, only)
    # A bar on stderr (when it is a terminal) of page.STEPS, erased before anything else
    # is written.
    with bar("report", "steps") as progress:
        data = page.report_data(asked, top=top, progress=progress)
        if data.total == 0:
            why = reports.no_builds(asked.storage, asked.window, asked.filter)
            raise TelemetryError(f"no report written: {why[:1].lower()}{why[1:]}")
        text = page.render_html(data, progress=progress)
    if to_stdout:
        with reports.writing():
            sys.stdout.buffer.write(text.encode("utf-8"))
            sys.stdout.buffer.flush()
        return
    page.write_report(text, output)
    reports.out(f"Wrote {printable(str(output))}: {page.scope(data)}\n")
