"""Entry point: argument parsing, rendering and the mapping of errors to exit statuses.

Each command opens the library objects, makes one call, and renders what comes back. Expected
errors become one line ``Error: ...`` on stderr and a non-zero exit status, never a traceback.
The choices an option offers are the library's own ``Literal`` types, so a format the library
learns is offered here without a second list to keep.
"""

from __future__ import annotations

import sys
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info
from typer.models import CommandInfo

from telemetry.cli import reports
from telemetry.cli.messages import err as _err
from telemetry.cli.messages import show_warning
from telemetry.errors import TelemetryError
from telemetry.formats import Compression, ExportFormat, InputFormat
from telemetry.model import RankBy
from telemetry.record import Source
from telemetry.tables import TableFormat
from telemetry.window import BuildStatus

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter

    from telemetry.config import TelemetryConfig
    from telemetry.window import Filter


def _help_options(command: Command, ctx: Context, formatter: HelpFormatter) -> None:
    """Arguments and options as typer lists them, less what only a programmer reads: an
    argument's type (``COUNT <int range>``) and a range as ``1<=x<=1000000``."""
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        name, text = record
        text = _range_in_words(text, getattr(param, "min", None), getattr(param, "max", None))
        if param.param_type_name == "argument":
            arguments.append((param.metavar or param.name.upper(), text))
        else:
            options.append((name, text))
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


def _range_in_words(text: str, low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return text.replace(f"{low}<=x<={high}", f"{low} to {high}")
    if low is not None:
        return text.replace(f"x>={low}", f"at least {low}")
    if high is not None:
        return text.replace(f"x<={high}", f"at most {high}")
    return text


class _Command(TyperCommand):
    """A command whose help is written for the people who type it."""

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        _help_options(self, ctx, formatter)


class _Group(TyperGroup):
    """A group of commands whose help is written for the people who type it."""

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        _help_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)


@dataclass(slots=True)  # not frozen: a command's own --dir, read after, replaces the group's
class _State:
    """The options ``builder telemetry`` takes before its command's name."""

    dir: Path | None = None
    since: str | None = None
    until: str | None = None
    branch: str | None = None
    tool: str | None = None
    labels: list[str] | None = None
    status: BuildStatus | None = None


DIR_HELP = (
    "Telemetry directory [env: BUILDER_TELEMETRY_DIR; default: .builder-cache/telemetry in "
    "the nearest folder up from here that has a .builder-cache, else at the top of the git "
    "work tree, else here]"
)
# The same --dir after a command's name, told in fewer words in each command's help.
COMMAND_DIR_HELP = (
    "Telemetry directory [env: BUILDER_TELEMETRY_DIR; default: see builder telemetry --help]"
)


def _remember_dir(ctx: typer.Context, value: Path | None) -> None:
    state = ctx.find_object(_State)
    if value is not None and state is not None:
        state.dir = value


def _dir_after_the_command(
    dir: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help=COMMAND_DIR_HELP,
            show_default=False,
            metavar="DIR",
            expose_value=False,
            callback=_remember_dir,
        ),
    ] = None,
) -> None:
    """The ``--dir`` every command of ``builder telemetry`` takes after its name too."""


class _TelemetryGroup(_Group):
    """``builder telemetry``: every one of its commands also takes ``--dir`` after its name,
    where people type it (``telemetry recent 1 --dir X``), not only before."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for command in self.commands.values():
            shared = get_command_from_info(
                CommandInfo(callback=_dir_after_the_command),
                pretty_exceptions_short=False,
                rich_markup_mode=None,
            )
            command.params.extend(shared.params)


app = typer.Typer(
    name="builder",
    cls=_Group,
    help="Build telemetry: record builds, then find bottlenecks, cache trends and regressions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: no boxes or markup when piped, and rich is never imported.
    rich_markup_mode=None,
)
telemetry_app = typer.Typer(
    cls=_TelemetryGroup,
    help="Analyse stored builds (with no command: the summary).",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(telemetry_app, name="telemetry")


_MAX_COUNT = reports.MAX_COUNT


DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help=DIR_HELP, show_default=False, metavar="DIR"),
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
    reports.ReportFormat, typer.Option("--format", help="text for people, json for scripts.")
]
BranchOption = Annotated[
    str | None, typer.Option(metavar="NAME", help="Only builds of this git branch.")
]
ToolOption = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="Only builds by this tool: ninja, bazel, make..."),
]
WithLabelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        "-l",
        metavar="KEY=VALUE",
        help="Only builds with this label (repeatable: all must match), e.g. ci=true.",
    ),
]
StatusOption = Annotated[
    BuildStatus | None,
    typer.Option(
        "--status", help="Only the builds that succeeded, or failed (interrupted ones too)."
    ),
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


SourceOption = Annotated[
    Source,
    typer.Option(
        "--source",
        help="Where the targets come from: auto (ninja's log when the command is ninja), "
        "ninja (a command that runs ninja in its -C directory or here), none (the session "
        "only).",
    ),
]


RecordSessionOption = Annotated[
    str | None,
    typer.Option(
        "--session",
        metavar="ID",
        help="The build's session id (unique per build, e.g. a CI run's id and attempt), "
        "which show and check --session then name; a random one if not given.",
        show_default=False,
    ),
]


@app.command(context_settings={"allow_interspersed_args": False})
def record(
    command: Annotated[
        list[str], typer.Argument(metavar="COMMAND", help="The build command and its arguments.")
    ],
    label: LabelOption = None,
    source: SourceOption = "auto",
    session: RecordSessionOption = None,
) -> None:
    """Run a build command and record it; exits with the build's own status.

    The build keeps its input, output and error; Ctrl-C and SIGTERM reach it. With
    BUILDER_TELEMETRY_ENABLED=0 the build runs and nothing is recorded.
    """
    from telemetry.record import SessionTaken
    from telemetry.record import record as run

    try:
        recording = run(command, labels=_labels(label), source=source, session=_session(session))
    except SessionTaken as error:
        raise typer.BadParameter(str(error), param_hint="'--session'") from None
    _finish(recording)


@app.command(context_settings={"allow_interspersed_args": False})
def build(
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="ARGS", help="Appended to the configured command."),
    ] = None,
    label: LabelOption = None,
    source: SourceOption = "auto",
    session: RecordSessionOption = None,
) -> None:
    """Run the build configured in pyproject.toml ([tool.builder] build = "...") or
    builder.toml (build = "..."), recorded like `builder record`."""
    from telemetry.record import SessionTaken, build_command, configured_build
    from telemetry.record import record as run

    command, tool = build_command(configured_build(Path.cwd()), args or [])
    try:
        recording = run(
            command, labels=_labels(label), tool=tool, source=source, session=_session(session)
        )
    except SessionTaken as error:
        raise typer.BadParameter(str(error), param_hint="'--session'") from None
    _finish(recording)


def _session(session: str | None) -> str | None:
    """``--session``, refused before the build runs when it cannot be a session id."""
    if session is not None:
        from telemetry.events import session_problem

        problem = session_problem(session)
        if problem is not None:
            raise typer.BadParameter(problem, param_hint="'--session'")
    return session


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


# The commands that read a window of builds: --since, --until and the filters before the
# command's name are theirs too; and the commands that take some of them.
_WINDOWED = (
    "summary",
    "recent",
    "export",
    "show",
    "check",
    "cache",
    "flaky",
    "changes",
    "report",
    "trace",
    "regressions",
)
_SOME_OPTIONS = {"sql": ("--since", "--until"), "compare": ("--since", "--until", "--status")}


@telemetry_app.callback()
def telemetry(
    ctx: typer.Context,
    dir: DirOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """Analyse stored builds (with no command: the summary)."""
    ctx.obj = _State(dir, since, until, branch, tool, label, status)
    command = ctx.invoked_subcommand or "summary"
    given = [
        option
        for option, value in (
            ("--since", since),
            ("--until", until),
            ("--branch", branch),
            ("--tool", tool),
            ("--label", label),
            ("--status", status),
        )
        if value is not None
    ]
    for option in given:
        if command in _WINDOWED or option in _SOME_OPTIONS.get(command, ()):
            continue
        names = _WINDOWED + tuple(c for c, taken in _SOME_OPTIONS.items() if option in taken)
        takes = f"{', '.join(names[:-1])} and {names[-1]}"
        raise reports.OptionError(f"{option} goes with {takes}, not with {command}")
    if ctx.invoked_subcommand is None:
        ctx.invoke(summary, ctx)


def _window(ctx: typer.Context, since: str | None, until: str | None) -> tuple[str | None, ...]:
    """``--since`` and ``--until``, given after the command's name or else before it."""
    state = ctx.find_object(_State) or _State()
    return (
        state.since if since is None else since,
        state.until if until is None else until,
    )


def _filter(
    ctx: typer.Context,
    branch: str | None,
    tool: str | None,
    labels: list[str] | None,
    status: BuildStatus | None,
) -> Filter:
    """The filters given after the command's name or else before it; labels given in both
    places must all match."""
    state = ctx.find_object(_State) or _State()
    return reports.selection(
        branch=state.branch if branch is None else branch,
        tool=state.tool if tool is None else tool,
        labels=[*(state.labels or []), *(labels or [])],
        status=state.status if status is None else status,
    )


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
    by: Annotated[
        RankBy,
        typer.Option(
            "--by",
            help="Rank the bottlenecks by the mean duration of their executed runs, or by "
            "their mean weighted time (each run's time split among the targets running "
            "beside it).",
        ),
    ] = "duration",
    threshold: Annotated[
        str | None,
        typer.Option(
            metavar="RATIO",
            help="Slowdown ratio that counts as a regression "
            "[env: BUILDER_TELEMETRY_REGRESSION_THRESHOLD; default: 1.5]",
        ),
    ] = None,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """Totals, averages, trends, bottlenecks and regressions of the stored builds."""
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    found = _config(ctx, threshold=threshold)
    reports.summary(found, since=since, until=until, filter=only, top=top, format=format, by=by)


@telemetry_app.command()
def recent(
    ctx: typer.Context,
    count: Annotated[
        int, typer.Argument(min=1, max=_MAX_COUNT, metavar="COUNT", help="How many builds to show.")
    ] = 10,
    since: SinceOption = None,
    until: UntilOption = None,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """The newest builds, newest first, with each one's slowest targets."""
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    reports.recent(_config(ctx), count, since=since, until=until, filter=only, format=format)


@telemetry_app.command()
def show(
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
    since: SinceOption = None,
    until: UntilOption = None,
    top: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=_MAX_COUNT,
            metavar="N",
            help="Show only the N slowest targets [default: all]",
            show_default=False,
        ),
    ] = None,
    format: ReportFormatOption = "text",
    branch: BranchOption = None,
    tool: ToolOption = None,
    label: WithLabelOption = None,
    status: StatusOption = None,
) -> None:
    """One build: its times, status, tool, host, branch, commit, labels, counts, rates,
    weighted time and critical path (when its targets named their deps), then every target
    with its status, duration, weighted time, worker and error, slowest first.

    The filters choose among the builds: with them and no SESSION, the newest build they
    take. A SESSION that matches no build, or several, is an error (exit status 1).
    """
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    reports.show(
        _config(ctx), session, since=since, until=until, filter=only, top=top, format=format
    )


def _export_store(ctx: typer.Context, output: Path, windowed: bool, only: Filter) -> None:
    """``export --format parquet --output FOLDER``: the whole store, partitioned by day."""
    from telemetry.parquet import sink_parquet
    from telemetry.window import Window

    if windowed or not only.takes_all:
        raise reports.OptionError(
            f"the folder {output} gets the whole store; drop --since, --until and the filters "
            "(and filter where you query it), or give a name ending in .parquet for the "
            "sessions they select"
        )
    from telemetry.cli.progress import bar

    storage = reports.storage(_config(ctx))
    with reports.option_value(), bar("export", "files") as progress:
        written = sink_parquet(storage, output, progress=progress)
    reports.out(
        f"Exported {_plural(written.sessions, 'build')}, "
        f"{_plural(written.targets, 'target run')} and "
        f"{_plural(written.daily_targets, 'daily target row')} over "
        f"{_plural(written.days, 'day')} to {output} as Parquet.\n"
    )
    if written.sessions == 0:
        _err(reports.no_builds(storage, Window()))


@telemetry_app.command()
def export(
    ctx: typer.Context,
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = "json",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="Write here instead of stdout."),
    ] = None,
    compress: Annotated[
        Compression | None,
        typer.Option(
            "--compress",
            help="Compress a text format (an --output PATH ending in .zst implies zstd).",
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
    """One record per build, oldest first, for spreadsheets, DuckDB, Spark, scripts and
    Prometheus (gauges stamped with each build's start).

    With --format parquet, an --output folder (new, empty or an earlier export: any PATH not
    ending in .parquet) gets the whole store, sessions with their rates, targets and daily
    rollups, partitioned by day for Spark, Athena or BigQuery; a PATH ending in .parquet gets
    the sessions as one file."""
    from telemetry import exporter
    from telemetry.cli.progress import bar
    from telemetry.files import atomic_output

    if compress is None and output is not None and output.suffix.lower() == ".zst":
        compress = "zstd"
    if compress is not None and format in exporter.BINARY_FORMATS:
        raise reports.OptionError(
            f"{format} compresses inside the file; drop --compress {compress} "
            "or choose json, csv, prometheus or openmetrics"
            + (f" (the name {output.name} asks for it)" if output is not None else "")
        )
    since, until = _window(ctx, since, until)
    only = _filter(ctx, branch, tool, label, status)
    if format == "parquet" and output is not None:
        from telemetry.parquet import whole_store

        with reports.option_value():
            whole = whole_store(output)
        if whole:
            _export_store(ctx, output, since is not None or until is not None, only)
            return
    analyzer = reports.analyzer(_config(ctx), since, until, only)
    terminal = output is None and reports.terminal()
    if terminal and (format in exporter.BINARY_FORMATS or compress is not None):
        binary = format if compress is None else f"{format} compressed with {compress}"
        raise TelemetryError(
            f"{binary} is binary and stdout is a terminal; add --output PATH or redirect to a file"
        )
    sessions = analyzer.sessions()
    if output is None:
        # No bar over the export itself, when stdout is the terminal.
        with reports.writing(), bar("export", "builds", shown=not terminal) as progress:
            # A terminal gets the text fields escaped; a pipe or file, the exact values.
            exporter.write_export(
                sessions,
                format,
                sys.stdout.buffer,
                terminal=terminal,
                compress=compress,
                progress=progress,
            )
            sys.stdout.buffer.flush()
    else:
        with atomic_output(output) as handle, bar("export", "builds") as progress:
            exporter.write_export(sessions, format, handle, compress=compress, progress=progress)
    if sessions.is_empty():
        _err(reports.no_builds(analyzer.storage, analyzer.window, analyzer.filter))


@telemetry_app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[
        str,
        typer.Argument(
            metavar="QUERY",
            help="One SQL query (DuckDB) over the views sessions, targets and daily_targets.",
        ),
    ],
    format: Annotated[
        TableFormat,
        typer.Option("--format", help="table for people, csv or json for scripts."),
    ] = "table",
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Run one SQL query over the stored builds with DuckDB. The views: sessions (one row
    per build, with its cache_hit_rate, parallelism_utilization and targets_per_second),
    targets (one row per target run), daily_targets (compacted days' per-target totals),
    each with the day as a date column, and the long-lived rollups rollup_days and
    rollup_targets. A query DuckDB refuses is an error (exit status 1).
    Needs DuckDB: pip install 'builder-telemetry[duckdb]'."""
    since, until = _window(ctx, since, until)
    reports.sql(_config(ctx), query, since=since, until=until, format=format)


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
            _err(f"Nothing removed from {storage.dir}.")
            raise typer.Exit(1)
    removed = storage.clear()
    reports.out(f"Removed {_plural(removed, 'build')} from {storage.dir}.\n")


@telemetry_app.command()
def compact(ctx: typer.Context) -> None:
    """Merge each closed day (before today, UTC) into one file per dataset and roll up its
    targets, so long windows read fast; the numbers stay the same. Run it daily."""
    from pipelines.jobs import run_jobs
    from telemetry.cli.progress import job_bars

    storage = reports.storage(_config(ctx))
    if storage.is_empty():
        reports.out(f"No telemetry data in {storage.dir}.\n")
        return
    with job_bars() as progress:
        [done] = run_jobs(storage, ["compact"], progress=progress)
    if done.outcome == "failed":
        _err(f"Error: {' '.join(done.said.split())}")
        raise typer.Exit(1)
    merged, copies = done.counts["days"], done.counts["copies_backfilled"]
    if not merged:
        said = f"Nothing to compact in {storage.dir}: every closed day is compacted."
    else:
        said = (
            f"Compacted {_plural(merged, 'day')} in {storage.dir}: "
            f"{_plural(done.counts['builds'], 'build')} from "
            f"{_plural(done.counts['writes_merged'], 'file')} into {merged}."
        )
    if copies:
        said += (
            f" Wrote {copies:,} Parquet {'copy' if copies == 1 else 'copies'} of days "
            f"compacted before, for SQL."
        )
    reports.out(said + "\n")


@telemetry_app.command()
def merge(
    ctx: typer.Context,
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME=PATH...",
            help="Stores (folders), Parquet exports (folders) or JSON exports (files, .json or "
            ".json.zst), each with the name its builds are tagged with.",
        ),
    ],
    into: Annotated[
        Path | None,
        typer.Option("--into", metavar="DIR", help="The team store [default: the store of --dir]."),
    ] = None,
) -> None:
    """Put the builds of other stores and of Parquet and JSON exports into one team store:
    each build once (by session id), tagged with its source's NAME as the label
    builder.source. A JSON export holds no target rows: its builds come without targets.
    Merging again adds nothing new."""
    from pipelines.merge import merge as run
    from pipelines.merge import parse_source
    from telemetry.storage import TelemetryStorage

    found = _config(ctx)
    team = TelemetryStorage.from_config(found._replace(dir=into) if into else found)
    with reports.option_value():
        named = [parse_source(text) for text in sources]
        done = run(team, named)
    for merged in done:
        past = (
            f", {merged.past_retention:,} past the team store's retention"
            if merged.past_retention
            else ""
        )
        if merged.kind == "json export":
            kind, targets = "a JSON export", "no target rows: a JSON export holds none"
        else:
            kind, targets = f"a {merged.kind}", f"{merged.target_rows:,} target rows added"
        reports.out(
            f"{merged.source.name}: {_plural(merged.builds, 'build')} in {merged.source.path} "
            f"({kind}): {merged.added:,} added, {merged.already:,} there already"
            f"{past}; {targets}\n"
        )
    added = sum(m.added for m in done)
    reports.out(
        f"Merged {_plural(len(done), 'source')} into {team.dir}: {_plural(added, 'build')} added.\n"
    )


jobs_app = typer.Typer(
    cls=_TelemetryGroup,
    help="Scheduled jobs (compaction, rollups, retention, month packs): run them from cron, "
    "a systemd timer or a CI schedule.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
telemetry_app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list(ctx: typer.Context, format: ReportFormatOption = "text") -> None:
    """Each job: what it does, its last run (when, how it went, what it did) and the work
    waiting for it."""
    from telemetry.cli import jobs

    jobs.listing(_config(ctx), format=format)


def _job_names(names: list[str]) -> list[str]:
    from pipelines.jobs import JobChoice

    known = typing.get_args(JobChoice)
    for name in names:
        if name not in known:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(known)}")
    return names


@jobs_app.command("run")
def jobs_run(
    ctx: typer.Context,
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="JOB...",
            help="compact, rollup, retention, months, or all (in that order).",
            callback=_job_names,
        ),
    ],
    day: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-MM-DD",
            help="Only this day (compaction, rollups; its month for month packs; a backfill).",
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what each job would do; change nothing.")
    ] = False,
) -> None:
    """Run jobs, one after the other, under the store's jobs lock (a second run waits for
    the first); stop at the first that fails (exit status 1). Each run is logged in
    <dir>/jobs/runs.jsonl. Retention keeps the store's policy whatever days are given."""
    from telemetry.cli import jobs

    status = jobs.run(_config(ctx), names, day=day, since=since, until=until, dry_run=dry_run)
    if status:
        raise typer.Exit(status)


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
        InputFormat,
        typer.Option("--format", help="What the input is; auto tells by its content."),
    ] = "auto",
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
    from telemetry.cli.progress import bar
    from telemetry.events import MAX_LINE_BYTES
    from telemetry.ingest import ingest_file

    storage = reports.storage(_config(ctx))
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    with bar("ingest", "bytes") as progress:
        result = ingest_file(
            storage, path, format=format, profile=profile, max_line=limit, progress=progress
        )
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


# Two or three real examples end every command's --help.
EXAMPLES: dict[tuple[str, ...], tuple[str, ...]] = {
    (): (
        "builder record -- ninja -C out",
        "builder telemetry recent 3",
        "builder telemetry summary --since 7d",
    ),
    ("record",): (
        "builder record -- make -j8",
        "builder record --label ci=true -- ninja -C out",
        "builder record --source ninja -- ./build.sh",
    ),
    ("build",): (
        "builder build",
        "builder build --label branch=main -- -j8",
    ),
    ("telemetry",): (
        "builder telemetry",
        "builder telemetry --since 7d",
        "builder telemetry recent 5 --dir ci-store/telemetry",
    ),
    ("telemetry", "summary"): (
        "builder telemetry summary --since 2w --top 3",
        "builder telemetry summary --threshold 2 --format json",
        "builder telemetry summary --branch main --label ci=true",
    ),
    ("telemetry", "recent"): (
        "builder telemetry recent 1",
        "builder telemetry recent 20 --since 1d --format json",
        "builder telemetry recent 5 --branch main --status failed",
    ),
    ("telemetry", "show"): (
        "builder telemetry show",
        "builder telemetry show --tool ninja --top 5",
        "builder telemetry show --label ci=true --format json",
    ),
    ("telemetry", "export"): (
        "builder telemetry export --format csv --since 30d --output builds.csv.zst",
        "builder telemetry export --format prometheus --since 1d > builds.prom",
        "builder telemetry export --format parquet --output warehouse",
    ),
    ("telemetry", "sql"): (
        'builder telemetry sql "select count(*) from targets"',
        'builder telemetry sql "select tool, count(*) from sessions group by tool" --since 7d',
        'builder telemetry sql "select * from sessions where not succeeded" --format csv',
    ),
    ("telemetry", "clear"): (
        "builder telemetry clear",
        "builder telemetry clear --yes --dir ci-store/telemetry",
    ),
    ("telemetry", "compact"): (
        "builder telemetry compact",
        "builder telemetry compact --dir ci-store/telemetry",
    ),
    ("telemetry", "merge"): (
        "builder telemetry merge ci=ci-store/telemetry --into team/telemetry",
        "builder telemetry merge ws06=exports/ws06 ws07=exports/ws07 --into team/telemetry",
    ),
    ("telemetry", "jobs"): (
        "builder telemetry jobs list",
        "builder telemetry jobs run all",
    ),
    ("telemetry", "jobs", "list"): (
        "builder telemetry jobs list",
        "builder telemetry jobs list --format json",
    ),
    ("telemetry", "jobs", "run"): (
        "builder telemetry jobs run all --dry-run",
        "builder telemetry jobs run compact --since 7d",
        "builder telemetry jobs run retention --dir ci-store/telemetry",
    ),
    ("telemetry", "verify"): (
        "builder telemetry verify",
        "builder telemetry verify --repair",
    ),
    ("telemetry", "ingest"): (
        "builder telemetry ingest events.jsonl",
        "builder telemetry ingest --format ninja-log out/.ninja_log",
        "builder telemetry ingest bep.json --profile profile.json",
    ),
}


# The analyses beyond the seed, each a module of its own that joins the group (with its
# examples) when imported: here, before the help is written.
from telemetry.cli import cache as _cache  # noqa: E402, F401
from telemetry.cli import changes as _changes  # noqa: E402, F401
from telemetry.cli import compare as _compare  # noqa: E402, F401
from telemetry.cli import flaky as _flaky  # noqa: E402, F401
from telemetry.cli import gate as _gate  # noqa: E402, F401
from telemetry.cli import report as _report  # noqa: E402, F401
from telemetry.cli import target_regressions as _regressions  # noqa: E402, F401
from telemetry.cli import trace as _trace  # noqa: E402, F401


def _epilog(path: tuple[str, ...], *before: str) -> str:
    # \b keeps the examples' lines as they are written.
    lines = "\n".join(f"  {example}" for example in EXAMPLES[path])
    return "\n\n".join((*before, "\b\nExamples:\n" + lines))


def _write_help() -> None:
    """Every command's help as :class:`_Command` writes it, ending in its examples; the
    groups' tell the exit statuses first. (Set here, once every command is declared.)"""
    groups: tuple[tuple[typer.Typer, tuple[str, ...]], ...] = (
        (app, ()),
        (telemetry_app, ("telemetry",)),
        (jobs_app, ("telemetry", "jobs")),
    )
    for group, words in groups:
        group.info.epilog = _epilog(words, reports.EXIT_STATUSES)
        for info in group.registered_commands:
            name = str(info.name or getattr(info.callback, "__name__", ""))
            info.cls = _Command
            info.epilog = _epilog((*words, name))


_write_help()


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; every expected failure ends as one ``Error:`` line and the exit status
    of its kind (:data:`telemetry.cli.reports.EXIT_STATUSES`)."""
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
            _err(f"Error: {' '.join(_usage_message(error).split())}")
        return error.exit_code


def _usage_message(error: typer.TyperException) -> str:
    """The parser's complaint in our words, saying what was expected and what came, rather
    than in those of the validation library behind it (``Value error, ...``)."""
    param = getattr(error, "param", None)
    errors = getattr(error.__cause__, "errors", None)
    found = errors() if callable(errors) else []
    if param is None or not found:
        return error.format_message()
    first = found[0]
    value = first.get("input")
    described = getattr(param, "type_descriptor", None)
    choices: Sequence[object] | None = getattr(described, "choices", None)
    if choices:
        said = f"{value!r} is not one of {', '.join(str(c) for c in choices)}"
    elif getattr(described, "annotation", None) is int:
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        if low is not None and high is not None:
            said = f"{value!r} is not a whole number from {low} to {high}"
        elif low is not None:
            said = f"{value!r} is not a whole number of at least {low}"
        else:
            said = f"{value!r} is not a whole number"
    else:
        said = str(first.get("msg", error)).removeprefix("Value error, ")
    return f"Invalid value for {param.get_error_hint()}: {said}."
