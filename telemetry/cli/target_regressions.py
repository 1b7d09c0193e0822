"""``builder telemetry regressions``: the targets whose newest executed runs got slower
against a robust baseline of their earlier runs (:mod:`telemetry.target_regressions`), and
the builds the summary flags, explained.

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

EXAMPLES[("telemetry", "regressions")] = (
    "builder telemetry regressions",
    "builder telemetry regressions --target '//app:*' --since 14d",
    "builder telemetry regressions --ratio 2 --min-ms 500 --within 7d --format json",
)
# The library's names for its thresholds, as this command's flags.
_FLAGS = {
    "recent": "--recent",
    "baseline": "--baseline",
    "min_samples": "--min-samples",
    "ratio": "--ratio",
    "min_ms": "--min-ms",
    "within": "--within",
}


@telemetry_app.command("regressions")
def regressions(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Option(
            metavar="PATTERN",
            help="Only targets whose name matches this glob, e.g. '//app:*'.",
        ),
    ] = None,
    recent: Annotated[
        int,
        typer.Option(
            min=1, max=_MAX_COUNT, metavar="N", help="How many of each target's newest runs."
        ),
    ] = 3,
    baseline: Annotated[
        int,
        typer.Option(
            min=1,
            max=_MAX_COUNT,
            metavar="N",
            help="Compared with up to N executed runs of the target before them.",
        ),
    ] = 20,
    min_samples: Annotated[
        int,
        typer.Option(
            min=1,
            max=_MAX_COUNT,
            metavar="N",
            help="A target is judged only with at least N runs before its newest.",
        ),
    ] = 5,
    ratio: Annotated[
        str,
        typer.Option(
            metavar="RATIO",
            help="Regressed from this median ratio up (newest runs to the runs before).",
        ),
    ] = "1.5",
    min_ms: Annotated[
        str,
        typer.Option(
            metavar="MS", help="Regressed only when the median grew by at least MS milliseconds."
        ),
    ] = "100",
    within: Annotated[
        str | None,
        typer.Option(
            metavar="AGE",
            help="Judge a target only when its newest runs are of builds that started at most "
            "AGE (90m, 24h, 7d) before the newest build. Default: any age.",
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
    """Targets whose newest executed runs got slower: each target's newest N runs (cached
    ones left out) against the median and median absolute deviation (MAD) of its runs
    before them. A target regressed when it has enough earlier runs, its median grew by the
    ratio and by the milliseconds given, and beyond 3 scaled MADs of its earlier runs. Then
    the builds the summary flags as regressions, each with its executed targets and cache
    hit rate against the earlier builds: explained by cache misses only when its hit rate
    fell, its targets that have a history ran at their usual durations, and its extra
    executed time covers most of its slowdown."""
    from telemetry.cli import reports
    from telemetry.cli.commands import _config, _filter, _window
    from telemetry.cli.messages import err
    from telemetry.target_regressions import (
        ThresholdError,
        Thresholds,
        age,
        number,
        render_text,
        target_regressions,
        to_json,
    )

    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    with reports.option_value():
        try:
            limits = Thresholds(
                recent=recent,
                baseline=baseline,
                min_samples=min_samples,
                ratio=number(ratio, option="--ratio"),
                min_ms=number(min_ms, option="--min-ms"),
                within=None if within is None else age(within, option="--within"),
            )
        except ThresholdError as error:
            raise reports.OptionError(error.said(_FLAGS)) from None
        if target == "":
            from telemetry.errors import ConfigError

            raise ConfigError("--target needs a glob of target names, e.g. '//app:*'")
    asked = reports.analyzer(_config(ctx), since, until, only)
    report = target_regressions(asked, target=target, thresholds=limits)
    if format == "json":
        reports.out_json(to_json(report))
        if report.builds == 0:
            err(reports.no_builds(asked.storage, asked.window, asked.filter))
    elif report.builds == 0:
        reports.out(reports.no_builds(asked.storage, asked.window, asked.filter) + "\n")
    else:
        reports.out_report(render_text(report))
