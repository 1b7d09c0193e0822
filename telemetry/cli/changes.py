"""``builder telemetry changes``: when the build time, or a target's run time, changed, each
change named by the first build after it (:mod:`telemetry.changes`), as text or JSON.

Importing this module from :mod:`telemetry.cli.commands` registers the command.
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
    telemetry_app,
)

# The library's defaults, said again here so that --help loads neither polars nor it.
_MIN_POINTS = 5
_LEAST_POINTS = 2
_PENALTY = "3"

EXAMPLES[("telemetry", "changes")] = (
    "builder telemetry changes",
    "builder telemetry changes --target //app:test --since 30d",
    "builder telemetry changes --branch main --penalty 6 --format json",
)


@telemetry_app.command("changes")
def changes(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The run time of this target (its executed runs) instead of the build time.",
        ),
    ] = None,
    min_points: Annotated[
        int,
        typer.Option(
            min=_LEAST_POINTS,
            max=_MAX_COUNT,
            metavar="N",
            help="The fewest builds (or runs) on either side of a change.",
        ),
    ] = _MIN_POINTS,
    penalty: Annotated[
        str,
        typer.Option(
            metavar="K",
            help="What a change must gain to be reported: K times the noise variance of the "
            "log durations times ln n, over n points (above 0; higher finds fewer changes).",
        ),
    ] = _PENALTY,
    since: SinceOption = None,
    until: UntilOption = None,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """When it started: the change points of the build time (or of a target's run time,
    cached runs left out) over the builds in time order, found by PELT on the log durations,
    each named by the first build after the change with its commit, branch and labels, and
    the median before and after it.

    Needs the changepoints extra: pip install 'builder-telemetry[changepoints]'."""
    from telemetry.changes import Settings, change_points, number, render_text, to_json
    from telemetry.cli import reports
    from telemetry.cli.commands import _config, _filter, _window
    from telemetry.cli.messages import err

    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    with reports.option_value():
        settings = Settings(min_points=min_points, penalty=number(penalty, option="--penalty"))
        if target == "":
            from telemetry.errors import ConfigError

            raise ConfigError("--target needs a target's name, e.g. //app:test")
    asked = reports.analyzer(_config(ctx), since, until, only)
    report = change_points(asked, target=target, settings=settings)
    if format == "json":
        reports.out_json(to_json(report))
        if report.builds == 0:
            err(reports.no_builds(asked.storage, asked.window, asked.filter))
    elif report.builds == 0:
        reports.out(reports.no_builds(asked.storage, asked.window, asked.filter) + "\n")
    else:
        reports.out_report(render_text(report))
