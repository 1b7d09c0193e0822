"""`builder record`, `builder build`, the plain reports and `sql` without loading the full
command-line parser.

``record`` and ``build`` run around every build, so what they cost before the build starts is
paid every time, and ``telemetry recent`` is what people type to see the build they just ran:
the parser's import alone (typer, and pydantic behind it) takes longer than the rest of
``builder record`` together. The common command lines are read here; anything else
(``--help``, a mistake, an option spelled another way) is left to the full parser, which
explains it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast, get_args

from telemetry.cli.messages import err, internal_error, show_warning
from telemetry.errors import TelemetryError

if TYPE_CHECKING:
    from telemetry.cli import reports
    from telemetry.record import Recording, Source
    from telemetry.tables import TableFormat

__all__ = ["err", "finish", "internal_error", "show_warning", "try_fast"]

# The signals that end a process without a core dump; for the others builder exits 128 + N.
DIE_LIKE_THE_BUILD = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE})


def try_fast(argv: Sequence[str]) -> int | None:
    """The exit status of ``builder record|build ...`` or of a plain ``builder telemetry
    [summary|recent|sql]`` run here, or None when ``argv`` is for the full parser."""
    if argv and argv[0] == "telemetry":
        return _report(argv[1:])
    if not argv or argv[0] not in ("record", "build"):
        return None
    parsed = _parse(argv[1:])
    if parsed is None:
        return None
    labels, source, session, rest = parsed
    if argv[0] == "record" and not rest:
        return None  # the parser says what is missing
    from telemetry.record import SessionTaken, build_command, configured_build, record

    warnings.showwarning = show_warning
    try:
        if argv[0] == "record":
            return finish(record(rest, labels=labels, source=source, session=session))
        command, tool = build_command(configured_build(Path.cwd()), rest)
        return finish(record(command, labels=labels, tool=tool, source=source, session=session))
    except SessionTaken as error:  # as the full parser words an unusable option value
        err(f"Error: Invalid value for '--session': {' '.join(str(error).split())}")
        return 2
    except TelemetryError as error:
        err(f"Error: {' '.join(str(error).split())}")
        return 1
    except Exception as error:
        return internal_error(error)


def _report(args: Sequence[str]) -> int | None:
    """``telemetry [--dir DIR] [summary [--format F] | recent [COUNT] [--format F] |
    sql QUERY [--format F]]``, with ``--dir`` also among the command's options, run here;
    None for any other form."""
    from telemetry.cli import reports
    from telemetry.tables import TABLE_FORMATS

    directory: str | None = None
    index = 0
    while index < len(args) and args[index].partition("=")[0] == "--dir":
        directory, index = _value(args, index)
        if not directory or directory.startswith("-"):
            return None
    command = args[index] if index < len(args) else "summary"
    if command not in ("summary", "recent", "sql"):
        return None
    count: int | None = None
    query: str | None = None
    format: str | None = "table" if command == "sql" else "text"
    index += 1
    while index < len(args):
        arg = args[index]
        name = arg.partition("=")[0]
        if name == "--format":
            value, index = _value(args, index)
            if value not in (TABLE_FORMATS if command == "sql" else reports.FORMATS):
                return None
            format = value
        elif name == "--dir":
            directory, index = _value(args, index)
            if not directory or directory.startswith("-"):
                return None
        elif command == "recent" and count is None and arg.isascii() and arg.isdigit():
            if len(arg) > 7:
                return None  # Python will not even read a number of over 4,300 digits
            count = int(arg)
            if not 1 <= count <= reports.MAX_COUNT:
                return None
            index += 1
        elif command == "sql" and query is None and not arg.startswith("-"):
            query = arg
            index += 1
        else:
            return None
    if command == "sql" and query is None:
        return None  # the parser says what is missing
    if directory is not None and os.path.exists(directory) and not os.access(directory, os.R_OK):
        return None  # the parser says it is not readable
    warnings.showwarning = show_warning

    def run() -> int:
        found = reports.config(Path(directory) if directory is not None else None)
        if command == "summary":
            reports.summary(found, format=cast("reports.ReportFormat", format))
        elif command == "recent":
            reports.recent(found, count or 10, format=cast("reports.ReportFormat", format))
        else:
            assert query is not None
            reports.sql(found, query, format=cast("TableFormat", format))
        return 0

    return reports.guarded(run)


def _sources() -> tuple[Source, ...]:
    from telemetry.record import Source  # loaded by the build commands only

    return cast("tuple[Source, ...]", get_args(Source))


def _value(args: Sequence[str], index: int) -> tuple[str | None, int]:
    """The value of the option at ``index`` (``--name=value`` or ``--name value``) and the
    index after it; None when it is missing."""
    _, equals, value = args[index].partition("=")
    if equals:
        return value, index + 1
    if index + 1 < len(args):
        return args[index + 1], index + 2
    return None, index + 1


def _parse(
    args: Sequence[str],
) -> tuple[dict[str, str], Source, str | None, list[str]] | None:
    """``--label``/``-l KEY=VALUE`` (repeatable), ``--source`` and ``--session``, then the
    command; None for anything else (a ``--session`` that cannot be an id included: the
    parser explains it)."""
    labels: dict[str, str] = {}
    source: Source = "auto"
    session: str | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return labels, source, session, list(args[index + 1 :])
        if not arg.startswith("-") or arg == "-":
            return labels, source, session, list(args[index:])
        name, equals, value = arg.partition("=")
        if arg.startswith("-l") and len(arg) > 2:
            name, equals, value = "-l", "=", arg[2:]
        if name not in ("-l", "--label", "--source", "--session"):
            return None  # --help, or something the parser should explain
        if not equals:
            index += 1
            if index >= len(args):
                return None
            value = args[index]
        if name == "--source":
            if value not in _sources():
                return None
            source = value
        elif name == "--session":
            from telemetry.events import session_problem  # only when one is given

            if session_problem(value) is not None:
                return None
            session = value
        else:
            key, sep, text = value.partition("=")
            if not sep or not key:
                return None
            labels[key] = text
        index += 1
    return labels, source, session, []


def finish(recording: Recording) -> int:
    """One line per recording problem on stderr; then the build's own exit status, or the
    signal that ended the build."""
    for problem in recording.problems:
        err(f"Warning: {problem}")
    if recording.error:
        err(f"Error: {recording.error}")
    if recording.killed_by in DIE_LIKE_THE_BUILD:
        # End the way the build did, so a calling shell sees the signal and stops too
        # (bash carries on after a child that merely exits 130).
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stdout.flush()
            sys.stderr.flush()
        signal.signal(recording.killed_by, signal.SIG_DFL)
        os.kill(os.getpid(), recording.killed_by)
    return recording.exit_status
