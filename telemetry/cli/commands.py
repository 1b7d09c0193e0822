"""Entry point: argument parsing, rendering and the mapping of errors to exit statuses.

Each command opens the library objects, makes one call, and renders what comes back. Expected
errors become one line ``Error: ...`` on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from telemetry.cli import reports
from telemetry.cli.fast import err as _err
from telemetry.cli.fast import show_warning
from telemetry.errors import TelemetryError

if TYPE_CHECKING:
    from telemetry.config import TelemetryConfig

app = typer.Typer(
    name="builder",
    help="Build telemetry: record builds, then find bottlenecks, cache trends and regressions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: no boxes or markup when piped, and rich is never imported.
    rich_markup_mode=None,
)
telemetry_app = typer.Typer(
    help="Analyse stored builds (with no command: the summary).",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(telemetry_app, name="telemetry")


_MAX_COUNT = reports.MAX_COUNT


class ReportFormat(StrEnum):
    text = "text"
    json = "json"


class InputFormatOption(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    turbo_summary = "turbo-summary"
    bazel_bep = "bazel-bep"
    chrome_trace = "chrome-trace"
    ninja_log = "ninja-log"


class ExportFormatOption(StrEnum):
    json = "json"
    csv = "csv"
    parquet = "parquet"
    arrow = "arrow"


@dataclass(slots=True)
class _State:
    dir: Path | None


DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Telemetry directory [env: BUILDER_TELEMETRY_DIR; default: .builder-cache/telemetry]",
        show_default=False,
        metavar="DIR",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        metavar="WHEN",
        help="Only builds started at or after WHEN: 2025-10-27, 2025-10-27T14:00, 7d, 12h.",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        metavar="WHEN", help="Only builds started before WHEN (a date includes that whole day)."
    ),
]
ReportFormatOption = Annotated[
    ReportFormat, typer.Option("--format", help="text for people, json for scripts.")
]


def _version(value: bool) -> None:
    if value:
        from telemetry import __version__

        reports.out(f"builder-telemetry {__version__}\n")
        raise typer.Exit()


@app.callback()
def builder(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Build telemetry: record builds, then find bottlenecks, cache trends and regressions."""


LabelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--label", "-l", metavar="KEY=VALUE", help="Label the build (repeatable), e.g. ci=true."
    ),
]


class TargetSource(StrEnum):
    auto = "auto"
    ninja = "ninja"
    none = "none"


SourceOption = Annotated[
    TargetSource,
    typer.Option(
        "--source",
        help="Where the targets come from: auto (ninja's log when the command is ninja), "
        "ninja (a command that runs ninja in its -C directory or here), none (the session "
        "only).",
    ),
]


@app.command(context_settings={"allow_interspersed_args": False})
def record(
    command: Annotated[
        list[str], typer.Argument(metavar="COMMAND", help="The build command and its arguments.")
    ],
    label: LabelOption = None,
    source: SourceOption = TargetSource.auto,
) -> None:
    """Run a build command and record it; exits with the build's own status.

    The build keeps its input, output and error; Ctrl-C and SIGTERM reach it. With
    BUILDER_TELEMETRY_ENABLED=0 the build runs and nothing is recorded.
    """
    from telemetry.record import record as run

    _finish(run(command, labels=_labels(label), source=source.value))


@app.command(context_settings={"allow_interspersed_args": False})
def build(
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="ARGS", help="Appended to the configured command."),
    ] = None,
    label: LabelOption = None,
    source: SourceOption = TargetSource.auto,
) -> None:
    """Run the build configured in pyproject.toml ([tool.builder] build = "...") or
    builder.toml (build = "..."), recorded like `builder record`."""
    from telemetry.record import build_command, configured_build
    from telemetry.record import record as run

    command, tool = build_command(configured_build(Path.cwd()), args or [])
    _finish(run(command, labels=_labels(label), tool=tool, source=source.value))


def _labels(pairs: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"a label is KEY=VALUE, got {pair!r}", param_hint="'--label'")
        labels[key] = value
    return labels


def _finish(recording: Any) -> NoReturn:
    """One line per recording problem on stderr, then the build's own exit status."""
    from telemetry.cli.fast import finish

    raise typer.Exit(finish(recording))


@telemetry_app.callback()
def telemetry(ctx: typer.Context, dir: DirOption = None) -> None:
    """Analyse stored builds (with no command: the summary)."""
    ctx.obj = _State(dir)
    if ctx.invoked_subcommand is None:
        ctx.invoke(summary, ctx)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _interactive() -> bool:
    """A person at a terminal, who can be asked a question."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout))


def _config(ctx: typer.Context, *, threshold: str | None = None) -> TelemetryConfig:
    state = ctx.find_object(_State)
    return reports.config(state.dir if state else None, threshold=threshold)


@telemetry_app.command()
def summary(
    ctx: typer.Context,
    since: SinceOption = None,
    until: UntilOption = None,
    top: Annotated[
        int, typer.Option(min=1, max=_MAX_COUNT, metavar="N", help="How many bottlenecks to show.")
    ] = 5,
    threshold: Annotated[
        str | None,
        typer.Option(
            metavar="RATIO",
            help="Slowdown ratio that counts as a regression "
            "[env: BUILDER_TELEMETRY_REGRESSION_THRESHOLD; default: 1.5]",
        ),
    ] = None,
    format: ReportFormatOption = ReportFormat.text,
) -> None:
    """Totals, averages, trends, bottlenecks and regressions of the stored builds."""
    reports.summary(
        _config(ctx, threshold=threshold), since=since, until=until, top=top, format=format.value
    )


@telemetry_app.command()
def recent(
    ctx: typer.Context,
    count: Annotated[
        int, typer.Argument(min=1, max=_MAX_COUNT, metavar="COUNT", help="How many builds to show.")
    ] = 10,
    since: SinceOption = None,
    until: UntilOption = None,
    format: ReportFormatOption = ReportFormat.text,
) -> None:
    """The newest builds, newest first, with each one's slowest targets."""
    reports.recent(_config(ctx), count, since=since, until=until, format=format.value)


@telemetry_app.command()
def export(
    ctx: typer.Context,
    format: Annotated[
        ExportFormatOption, typer.Option("--format", help="Output format.")
    ] = ExportFormatOption.json,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="Write here instead of stdout."),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """One record per build, oldest first, for spreadsheets, DuckDB, Spark and scripts."""
    from telemetry import exporter
    from telemetry.files import atomic_output

    analyzer = reports.analyzer(_config(ctx), since, until)
    terminal = output is None and reports.terminal()
    if terminal and format.value in exporter.BINARY_FORMATS:
        raise TelemetryError(
            f"{format.value} is binary and stdout is a terminal; add --output PATH "
            f"or redirect to a file"
        )
    sessions = analyzer.sessions()
    if output is None:
        with reports.writing():
            # A terminal gets the text fields escaped; a pipe or file, the exact values.
            exporter.write_export(sessions, format.value, sys.stdout.buffer, terminal=terminal)
            sys.stdout.buffer.flush()
    else:
        with atomic_output(output) as handle:
            exporter.write_export(sessions, format.value, handle)
    if sessions.is_empty():
        _err(reports.no_builds(analyzer.storage, analyzer.window))


@telemetry_app.command()
def clear(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove all telemetry data."""
    storage = reports.storage(_config(ctx))
    if storage.is_empty():
        storage.clear()  # leftovers such as empty day folders go all the same
        reports.out(f"No telemetry data in {storage.dir}.\n")
        return
    if not yes and _interactive():
        count = storage.session_count()
        question = f"Remove all telemetry data in {storage.dir} ({_plural(count, 'build')})?"
        if not typer.confirm(question):
            raise typer.Exit(1)
    removed = storage.clear()
    reports.out(f"Removed {_plural(removed, 'build')} from {storage.dir}.\n")


@telemetry_app.command()
def compact(ctx: typer.Context) -> None:
    """Merge each closed day (before today, UTC) into one file per dataset and roll up its
    targets, so long windows read fast; the numbers stay the same. Run it daily."""
    from pipelines.compaction import compact as run

    storage = reports.storage(_config(ctx))
    done = run(storage)
    if not done:
        if storage.is_empty():
            reports.out(f"No telemetry data in {storage.dir}.\n")
        else:
            reports.out(f"Nothing to compact in {storage.dir}: every closed day is compacted.\n")
        return
    builds = sum(day.sessions for day in done)
    files = sum(day.files for day in done)
    reports.out(
        f"Compacted {_plural(len(done), 'day')} in {storage.dir}: "
        f"{_plural(builds, 'build')} from {_plural(files, 'file')} into {len(done)}.\n"
    )


@telemetry_app.command()
def verify(
    ctx: typer.Context,
    repair: Annotated[
        bool, typer.Option("--repair", help="Move damaged files to <dir>/quarantine/.")
    ] = False,
) -> None:
    """Read every stored file in full; report the damaged ones (exit 1 when there are any)."""
    # A file the user may not read is reported but never moved (it is not known to be
    # damaged), nor is one in a day folder that links outside the store.
    from telemetry.errors import StorageError

    storage = reports.storage(_config(ctx))
    checked = damaged = moved = unreadable = 0
    for found in storage.verify():
        checked += 1
        if found.problem is None:
            continue
        if not found.damaged:
            unreadable += 1
            reports.out(f"not checked: {found.path}: {found.problem}\n")
            continue
        damaged += 1
        reports.out(f"damaged: {found.path}: {found.problem}\n")
        if repair:
            try:
                reports.out(f"moved: {found.path} -> {storage.quarantine(found.path)}\n")
                moved += 1
            except StorageError as error:  # the others are still moved
                reports.out(f"not moved: {found.path}: {error}\n")
    if damaged == unreadable == 0:
        reports.out(f"Checked {_plural(checked, 'file')} in {storage.dir}: all readable.\n")
        return
    said = [_plural(damaged, "damaged file")] if damaged else []
    if unreadable:
        said.append(f"{_plural(unreadable, 'unreadable file')} (never moved: fix its permissions)")
    if not damaged:
        what = ""
    elif not repair:
        them = "the damaged ones" if unreadable else "them"
        what = f"; run with --repair to move {them} aside"
    elif moved == damaged:
        what = "; moved to quarantine"
    else:
        what = f"; {moved} moved to quarantine, {damaged - moved} left in place"
    reports.out(f"Checked {_plural(checked, 'file')}: {', '.join(said)}{what}.\n")
    if not repair or moved < damaged or unreadable:
        raise typer.Exit(1)


@telemetry_app.command()
def ingest(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE|-", help="The input; - for stdin.")],
    format: Annotated[
        InputFormatOption,
        typer.Option("--format", help="What the input is; auto tells by its content."),
    ] = InputFormatOption.auto,
    profile: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Bazel's --profile of the same build (with BEP)."),
    ] = None,
    max_line_bytes: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="BYTES",
            help="The longest line read (16 MiB if not given); a longer one ends the input "
            "there (builds before it are stored).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Store builds from JSON-lines events, a Turborepo run summary, Bazel's Build Event
    Protocol JSON, a Chrome trace or a .ninja_log; gzip or zstd compressed or not (malformed
    lines are reported and skipped)."""
    from telemetry.events import MAX_LINE_BYTES
    from telemetry.ingest import ingest_file

    storage = reports.storage(_config(ctx))
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    result = ingest_file(storage, path, format=format.value, profile=profile, max_line=limit)
    name = "<stdin>" if path == "-" else path
    if result.problems and result.events == 0 and result.refused == 0:  # not JSON lines
        first = result.problems[0]
        raise TelemetryError(
            f"{name} holds no build events: none of its {len(result.problems)} lines could be "
            f"read (line {first.line}: {first.message}); expected one JSON event per line"
        )
    for problem in result.problems[:_MAX_PROBLEMS]:
        _err(f"{name}:{problem.line}: {problem.message}")
    if len(result.problems) > _MAX_PROBLEMS:
        _err(f"{name}: ... and {len(result.problems) - _MAX_PROBLEMS} more malformed lines")
    # Builds older than the retention were stored and removed at once: what is stored is the
    # rest, and one line says why those are not.
    expired = result.expired
    kept_interrupted = result.interrupted - result.expired_interrupted
    interrupted = f" ({kept_interrupted} interrupted)" if kept_interrupted else ""
    reports.out(
        f"Stored {_plural(result.sessions - expired, 'build')}{interrupted} from "
        f"{_plural(result.events, 'event')}.\n"
    )
    if result.duplicates:
        _err(f"Skipped {_plural(result.duplicates, 'build')} already stored.")
    if expired:
        is_are, was_were = ("is", "was") if expired == 1 else ("are", "were")
        _err(
            f"{_plural(expired, 'build')} {is_are} older than the {storage.retention_days}-day "
            f"retention and {was_were} not kept."
        )
    keeping = f"keeping {storage.retention_days} days and at most {storage.max_sessions} builds"
    others = result.retention.removed_sessions - expired
    if result.retention.removed_days and not expired:
        _err(
            f"Retention removed {_plural(result.retention.removed_sessions, 'build')} in "
            f"{_plural(len(result.retention.removed_days), 'day partition')} ({keeping})."
        )
    elif result.retention.removed_days and others > 0:
        # Their days may hold expired builds too: the count of partitions would mislead.
        _err(f"Retention also removed {_plural(others, 'other build')} ({keeping}).")
    if result.problems:
        _err(f"Skipped {_plural(len(result.problems), 'malformed line')}.")
        raise typer.Exit(1)


_MAX_PROBLEMS = 20


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; every expected failure ends as one ``Error:`` line and exit status 1."""
    warnings.showwarning = show_warning
    sys.exit(reports.guarded(lambda: _parse_and_run(argv)))


def _parse_and_run(argv: list[str] | None) -> int:
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="builder", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        _err("Aborted.")
        return 130
    except typer.TyperException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `builder`: show the help
            _err(error.format_message())
        else:
            _err(f"Error: {' '.join(error.format_message().split())}")
        return error.exit_code
