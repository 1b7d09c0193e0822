"""``builder telemetry compare``: two groups of builds side by side (:mod:`telemetry.compare`).

Importing this module registers the command with ``builder telemetry``, with the examples
its help ends with; :mod:`telemetry.cli.commands` imports it once its own options are
declared.
"""

from __future__ import annotations

from typing import Annotated

import typer

from telemetry.cli.commands import (
    EXAMPLES,
    ReportFormatOption,
    SinceOption,
    StatusOption,
    UntilOption,
    _config,
    _window,
    telemetry_app,
)

EXAMPLES["telemetry", "compare"] = (
    "builder telemetry compare --a BUILDER_PARALLEL=4 --b BUILDER_PARALLEL=8",
    "builder telemetry compare --a tool=make --b tool=ninja --since 30d --status succeeded",
    "builder telemetry compare --a branch=main --b branch=faster-link --format json",
)

_SIDE_HELP = (
    "A build of group {side}: branch=, tool=, host= or commit= NAME, or a label (from "
    "record --label, or a BUILDER_* setting), e.g. ci=true. Repeatable: all must match."
)


@telemetry_app.command("compare")
def compare(
    ctx: typer.Context,
    a: Annotated[
        list[str],
        typer.Option("--a", metavar="KEY=VALUE", help=_SIDE_HELP.format(side="A")),
    ],
    b: Annotated[
        list[str],
        typer.Option("--b", metavar="KEY=VALUE", help=_SIDE_HELP.format(side="B")),
    ],
    since: SinceOption = None,
    until: UntilOption = None,
    status: StatusOption = None,
    format: ReportFormatOption = "text",
) -> None:
    """Compare two groups of builds (A, the baseline, and B): build time, cache hit rate
    and parallelism utilization, each group's median and mean, the change of B against A
    with a 95% bootstrap confidence interval and a Mann-Whitney p-value, and a verdict.

    Build time changes by the ratio of the medians (B is 18% faster), the rates by the
    difference of the medians in points. A change is significant when its interval
    excludes 0. The window and --status apply to both groups. A build in both groups, or
    a group with fewer than 2 builds, is an error (exit status 1)."""
    from telemetry import compare as comparing
    from telemetry.cli import reports

    since, until = _window(ctx, since, until)
    with reports.option_value():
        group_a = comparing.Group.parse(a, option="--a")
        group_b = comparing.Group.parse(b, option="--b")
    only = reports.selection(status=status)
    found = _config(ctx)
    asked = reports.analyzer(found, since, until, only)
    try:
        comparison = comparing.compare(asked, group_a, group_b)
    except comparing.NothingToCompare:
        said = reports.no_builds(asked.storage, asked.window, asked.filter)
        raise comparing.NothingToCompare(
            f"no builds to compare: {said[0].lower()}{said[1:]}"
        ) from None
    if format == "json":
        reports.out_json(comparing.comparison_json(comparison))
    else:
        reports.out_report(comparing.render(comparison, color=reports.color()))
