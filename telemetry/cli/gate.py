"""``builder telemetry check``: the CI gate over one build (:mod:`telemetry.gate`).

Importing this module registers the command with ``builder telemetry``, with the examples
its help ends with; :mod:`telemetry.cli.commands` imports it once its own options are
declared.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from telemetry.cli.commands import (
    EXAMPLES,
    BranchOption,
    ReportFormatOption,
    SinceOption,
    ToolOption,
    UntilOption,
    WithLabelOption,
    _config,
    _filter,
    _window,
    telemetry_app,
)

EXAMPLES["telemetry", "check"] = (
    "builder telemetry check --session b --max-duration 10m --threshold 2.5 "
    "--dir ci-store/telemetry",
    "builder telemetry check --session a --min-hit-rate 20 --format json --dir ci-store/telemetry",
)


@telemetry_app.command("check")
def check(
    ctx: typer.Context,
    threshold: Annotated[
        str | None,
        typer.Option(
            metavar="RATIO",
            help="Fail when the build took this many times the mean of the builds before it "
            "[env: BUILDER_TELEMETRY_REGRESSION_THRESHOLD; default: 1.5]",
        ),
    ] = None,
    max_duration: Annotated[
        str | None,
        typer.Option(
            "--max-duration",
            metavar="DURATION",
            help="Fail when the build took longer: 500ms, 90s, 5m, 1h, 1m30s.",
        ),
    ] = None,
    min_hit_rate: Annotated[
        str | None,
        typer.Option(
            "--min-hit-rate",
            metavar="PERCENT",
            help="Fail when the build's cache hit rate is under PERCENT (0 to 100); not judged "
            "for a build that reported no targets.",
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session",
            metavar="ID",
            help="Check this build: its whole session id [default: the newest build, by "
            "start time]",
            show_default=False,
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: Annotated[
        Literal["succeeded", "failed"] | None,
        typer.Option(
            "--status",
            help="Compare the build only with the earlier builds that succeeded, or failed "
            "(interrupted ones too); the build checked is the newest whatever its outcome.",
        ),
    ] = None,
) -> None:
    """Judge the newest build (or --session's) for CI: exit 1 with one FAIL line per rule
    it breaks, 0 with one PASS line otherwise.

    The build checked is the one that started last among those the window, --branch,
    --tool and --label take, whatever its outcome; in a store that several jobs share, name
    the job's own build with --session. Two rules are always judged: the outcome (a failed
    or interrupted build fails) and the regression (the build's duration against the mean of
    the builds before it in the window, not judged for a failed build);
    --max-duration and --min-hit-rate add their rules. A rule that cannot be judged (no
    earlier build; no targets, so no hit rate) breaks nothing. The filters choose the build
    and the builds it is compared with; --status chooses only the latter. No build to check,
    or a --session that names none, is an error (exit status 1)."""
    from dataclasses import replace

    from telemetry import gate
    from telemetry.cli import reports

    if session == "":
        raise reports.OptionError("--session must be a session id, got ''")
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    found = _config(ctx, threshold=threshold)
    with reports.option_value():
        limit = None if max_duration is None else gate.parse_duration(max_duration)
        minimum = None if min_hit_rate is None else gate.parse_percentage(min_hit_rate)
        asked = reports.window(since, until)
    stored = reports.storage(found)
    try:
        report = gate.check(
            stored,
            session=session,
            window=asked,
            filter=only,
            threshold=found.regression_threshold,
            max_duration_ms=limit,
            min_hit_rate=minimum,
        )
    except gate.NothingToCheck:
        said = reports.no_builds(stored, asked, replace(only, status=None))
        raise gate.NothingToCheck(f"no build to check: {said[0].lower()}{said[1:]}") from None
    if format == "json":
        reports.out_json(gate.check_json(report))
    else:
        reports.out(gate.render_check(report))
    if not report.passed:
        raise typer.Exit(1)
