"""``builder telemetry flaky``: the targets whose outcome flips between failed and built at
the same commit (:mod:`telemetry.flaky`), ranked, as text or JSON.

Loaded by :mod:`telemetry.cli.commands`, whose group the command joins here, with its
examples, before the help is written.
"""

from __future__ import annotations

from typing import Annotated

import typer

from telemetry.cli.commands import (
    _MAX_COUNT,
    EXAMPLES,
    BranchOption,
    ReportFormatOption,
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

# The library's defaults, said again here so that --help does not load polars to show them.
_MIN_RUNS = 5
_MIN_COMMITS = 1
_TOP = 10


@telemetry_app.command()
def flaky(
    ctx: typer.Context,
    since: SinceOption = None,
    until: UntilOption = None,
    min_runs: Annotated[
        int,
        typer.Option(
            min=2,
            max=_MAX_COUNT,
            metavar="N",
            help="Judge a target only with at least N executed runs at commits where it ran "
            "twice or more.",
        ),
    ] = _MIN_RUNS,
    min_commits: Annotated[
        int,
        typer.Option(
            min=1,
            max=_MAX_COUNT,
            metavar="N",
            help="Report a target only when it both failed and built at N commits or more.",
        ),
    ] = _MIN_COMMITS,
    top: Annotated[
        int,
        typer.Option(min=1, max=_MAX_COUNT, metavar="N", help="How many flaky targets to show."),
    ] = _TOP,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """Targets that both failed and built at the same commit, ranked by flip rate (changes
    of outcome between consecutive runs at a commit), then by how many commits.

    Only executed runs count (cache hits and skipped targets say nothing), and builds are
    compared by their commit: builds without one are left out, and the text says how many.
    """
    from telemetry import flaky as analysis
    from telemetry.cli import reports
    from telemetry.cli.messages import err

    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    asked = reports.analyzer(_config(ctx), since, until, only)
    report = analysis.flaky_targets(asked, min_runs=min_runs, min_commits=min_commits, top=top)
    if format == "json":
        reports.out_json(analysis.flaky_json(report))
        if report.builds == 0:
            err(reports.no_builds(asked.storage, asked.window, asked.filter))
    elif report.builds == 0:
        reports.out(reports.no_builds(asked.storage, asked.window, asked.filter) + "\n")
    else:
        reports.out_report(analysis.render_flaky(report, color=reports.color()))


EXAMPLES["telemetry", "flaky"] = (
    "builder telemetry flaky",
    "builder telemetry flaky --since 30d --label ci=true",
    "builder telemetry flaky --min-runs 10 --min-commits 2 --format json",
)
