"""``builder telemetry cache``: the time the cache saved, per target, per build and over a
window, and the targets behind a falling hit rate (:mod:`telemetry.cache`).

Importing this module registers the command on ``builder telemetry``, with its examples.
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

EXAMPLES["telemetry", "cache"] = (
    "builder telemetry cache",
    "builder telemetry cache --since 30d --top 5",
    "builder telemetry cache --branch main --format json",
)


@telemetry_app.command()
def cache(
    ctx: typer.Context,
    top: Annotated[
        int,
        typer.Option(
            min=1, max=_MAX_COUNT, metavar="N", help="How many targets to show in each list."
        ),
    ] = 10,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="ID",
            help="One build's time saved and its cache hits with their values: a session id "
            "or enough of its first characters.",
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """The time the cache saved: over the builds, per target (with its hit rate) and per
    build, each cache hit valued at the median duration of its target's executed runs in the
    builds chosen, less the time the hit itself took (never below 0); a target never
    executed there is counted, not valued. When the hit rate of the newer half of the builds
    fell below the older half's by more than 10% of it (the summary's trend band), the
    targets that added the most misses come first."""
    from telemetry import cache as value
    from telemetry.cli import reports
    from telemetry.cli.messages import err

    if session == "":
        raise reports.OptionError("--session must be a session id or its first characters, got ''")
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    asked = reports.analyzer(_config(ctx), since, until, only)
    if session is not None:
        build = value.build_cache_value(asked, session)
        if format == "json":
            reports.out_json(value.build_cache_json(build, top=top))
        else:
            reports.out_report(value.render_build_cache(build, top=top))
        return
    report = value.cache_value(asked)
    if format == "json":
        reports.out_json(value.cache_json(report, top=top))
        if report.builds == 0:
            err(reports.no_builds(asked.storage, asked.window, asked.filter))
    elif report.builds == 0:
        reports.out(reports.no_builds(asked.storage, asked.window, asked.filter) + "\n")
    else:
        reports.out_report(value.render_cache(report, top=top))
