"""``builder telemetry trace``: one build as a Chrome trace (:mod:`telemetry.chrome_trace`)
for Perfetto and chrome://tracing, written to a file or to stdout.

Loaded by :mod:`telemetry.cli.commands`, whose group the command joins here, with its
examples, before the help is written.
"""

from __future__ import annotations

from typing import Annotated

import typer

from telemetry.cli.commands import (
    EXAMPLES,
    BranchOption,
    SinceOption,
    StatusOption,
    ToolOption,
    UntilOption,
    WithLabelOption,
    _config,
    _filter,
    _plural,
    _window,
    telemetry_app,
)


@telemetry_app.command()
def trace(
    ctx: typer.Context,
    session: Annotated[
        str | None,
        typer.Argument(
            metavar="SESSION",
            help="A session id, or enough of its first characters to name one build "
            "[default: the newest build]",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Write the trace here; - for stdout [default: SESSION.trace.json here, "
            "the build's session id made safe as a file name]",
            show_default=False,
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """One build as a Chrome trace (Trace Event Format JSON) that Perfetto (ui.perfetto.dev,
    Open trace file) and chrome://tracing open: a track per worker, each target a slice
    coloured by its status, targets without a worker on a track of their own, and the
    critical path marked with arrows when the build's targets named their deps.

    The filters choose among the builds: with them and no SESSION, the newest build they
    take. A SESSION that matches no build, or several, is an error (exit status 1).
    """
    from pathlib import Path

    from telemetry import chrome_trace
    from telemetry.cli import reports
    from telemetry.errors import TelemetryError
    from telemetry.text import printable

    if output == "":
        raise reports.OptionError("--output must be a path, or - for stdout, got ''")
    if session == "":
        raise reports.OptionError(
            f"SESSION must be a session id or its first characters, got {session!r}"
        )
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    asked = reports.analyzer(_config(ctx), since, until, only)
    build = asked.newest_build() if session is None else asked.build(session)
    if build is None:
        raise TelemetryError(reports.no_builds(asked.storage, asked.window, asked.filter))
    from telemetry.critical_path import build_critical_path

    critical = build_critical_path(build)  # marked when the build's targets named their deps
    steps = None if critical is None else [step.target for step in critical.steps]
    document = chrome_trace.trace_document(build, critical_path=steps)
    if output == "-":
        reports.out(chrome_trace.trace_text(document))
        return
    path = Path(output or chrome_trace.trace_file_name(build.session_id))
    chrome_trace.write_trace(document, path)
    events = document["traceEvents"]
    slices = sum(1 for event in events if event["ph"] == "X")
    tracks = sum(1 for event in events if event["ph"] == "M" and event["name"] == "thread_name")
    reports.out(
        f"Wrote {printable(str(path))}: build {printable(build.session_id)}, "
        f"{_plural(slices, 'target')} on {_plural(tracks, 'track')}.\n"
    )


EXAMPLES["telemetry", "trace"] = (
    "builder telemetry trace",
    "builder telemetry trace --tool ninja --output build.json",
    "builder telemetry trace --branch main --output - | gzip > main.trace.json.gz",
)
