"""What ``summary``, ``recent``, ``show`` and ``sql`` do once their options are read, and
what every command shares: writing stdout and stderr, and turning failures into exit
statuses. Nothing here loads the command-line parser.

``builder telemetry recent`` is what people type to see the build they just ran, so its
plain forms skip the parser (typer, and pydantic behind it, take longer to import than the
rest of the command) and call :func:`summary`, :func:`recent` and :func:`sql` from
:mod:`telemetry.cli.fast`; the parser calls the same functions for every other form.

Exit statuses are one rule for every command, :data:`EXIT_STATUSES`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, get_args

from telemetry.cli.messages import err, internal_error
from telemetry.config import TelemetryConfig, parse_threshold
from telemetry.errors import ConfigError, TelemetryError

if TYPE_CHECKING:  # the heavy modules load only in the commands that use them
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.model import RankBy
    from telemetry.storage import TelemetryStorage
    from telemetry.tables import TableFormat
    from telemetry.window import BuildStatus, Filter, Window

ReportFormat: TypeAlias = Literal["text", "json"]
FORMATS: Final[tuple[ReportFormat, ...]] = get_args(ReportFormat)
MAX_COUNT = 1_000_000
# The bars of each trend's sparkline in a terminal's summary.
SPARKLINE_POINTS: Final = 20
USAGE_ERROR = 2
EXIT_STATUSES = (
    "Exit status: 0 success; 1 a failure while working (or skipped input lines); 2 an "
    "unusable command line or option value; 70 an internal error; record and build exit "
    "with the build's own status."
)


class OutputClosed(Exception):
    """The reader of our stdout went away (``| head``): stop quietly."""


class OptionError(TelemetryError):
    """An option's value cannot be used: like any unusable command line, exit status 2."""


def guarded(run: Callable[[], int]) -> int:
    """The exit status of ``run``, with every expected failure as one ``Error:`` line and
    status 1 (2 for an unusable option value), a closed stdout as a quiet 0, Ctrl-C as 130
    and our own bugs as 70."""
    try:
        return run()
    except OptionError as error:
        err(f"Error: {' '.join(str(error).split())}")
        return USAGE_ERROR
    except TelemetryError as error:
        err(f"Error: {' '.join(str(error).split())}")
        return 1
    except KeyboardInterrupt:
        return 130
    except OutputClosed:
        # The reader (``| head``) has gone; that is not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        with contextlib.suppress(OSError, AttributeError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        return internal_error(error)
    except BaseException as error:
        # polars reports a Rust panic as a BaseException; it is still our bug, not a crash
        if type(error).__name__ != "PanicException":
            raise
        return internal_error(error)


def config(directory: Path | None, *, threshold: str | None = None) -> TelemetryConfig:
    """The configuration, flags beating the environment: a variable that a flag replaces
    is not even read, so a bad value there does not stop a command that overrides it."""
    replaced = {
        "BUILDER_TELEMETRY_DIR": directory,
        "BUILDER_TELEMETRY_REGRESSION_THRESHOLD": threshold,
    }
    environ = {k: v for k, v in os.environ.items() if replaced.get(k) is None}
    found = TelemetryConfig.from_env(environ)
    if directory is not None:
        found = found._replace(dir=directory.expanduser())
    if threshold is not None:
        with option_value():
            ratio = parse_threshold(threshold, source="--threshold")
        found = found._replace(regression_threshold=ratio)
    return found


@contextlib.contextmanager
def option_value() -> Iterator[None]:
    """Read an option's value: the library's complaint about it is an :class:`OptionError`."""
    try:
        yield
    except ConfigError as error:
        raise OptionError(str(error)) from None


def window(since: str | None, until: str | None) -> Window:
    """The ``--since``/``--until`` window."""
    from telemetry.window import Window

    with option_value():
        return Window.parse(since, until)


def selection(
    branch: str | None = None,
    tool: str | None = None,
    labels: list[str] | None = None,
    status: BuildStatus | None = None,
) -> Filter:
    """The ``--branch``, ``--tool``, ``--label`` and ``--status`` filter."""
    from telemetry.window import Filter

    with option_value():
        return Filter.parse(branch=branch, tool=tool, labels=labels or (), status=status)


def storage(found: TelemetryConfig) -> TelemetryStorage:
    from telemetry.storage import TelemetryStorage

    return TelemetryStorage.from_config(found)


def analyzer(
    found: TelemetryConfig,
    since: str | None,
    until: str | None,
    filter: Filter | None = None,
) -> TelemetryAnalyzer:
    from telemetry.analyzer import TelemetryAnalyzer

    asked = window(since, until)
    return TelemetryAnalyzer(
        storage(found),
        window=asked,
        filter=filter,
        regression_threshold=found.regression_threshold,
    )


def summary(
    found: TelemetryConfig,
    *,
    since: str | None = None,
    until: str | None = None,
    filter: Filter | None = None,
    top: int = 5,
    format: ReportFormat = "text",
    by: RankBy = "duration",
) -> None:
    """``builder telemetry summary``: the report on stdout, its bottlenecks ranked ``by``
    mean duration or mean weighted time."""
    from telemetry import exporter

    asked = analyzer(found, since, until, filter)
    # Sparklines of the two trends are decoration: for a terminal that shows colour, never
    # in piped text, which stays the seed's line for line.
    points = SPARKLINE_POINTS if format == "text" and color() else 0
    if by == "weighted":
        from telemetry.weighted import weighted_summary

        report = weighted_summary(asked, top=top, trend_points=points)
    else:
        report = asked.summary(top=top, trend_points=points)
    if format == "json":
        out_json(exporter.summary_json(report))
        if report.total_builds == 0:
            err(no_builds(asked.storage, asked.window, asked.filter))
    elif report.total_builds == 0:
        out(no_builds(asked.storage, asked.window, asked.filter) + "\n")
    else:
        out_report(exporter.render_summary(report, color=color()))


def recent(
    found: TelemetryConfig,
    count: int = 10,
    *,
    since: str | None = None,
    until: str | None = None,
    filter: Filter | None = None,
    format: ReportFormat = "text",
) -> None:
    """``builder telemetry recent``: the newest builds on stdout."""
    from telemetry import exporter
    from telemetry.recent import newest_builds

    stored = storage(found)
    asked = window(since, until)
    # The rows read without polars know the window, not the filter.
    builds = newest_builds(stored, asked, count) if filter is None or filter.takes_all else None
    if builds is None:  # many rows, a filter, or something the analyzer must warn about
        from telemetry.analyzer import TelemetryAnalyzer

        builds = TelemetryAnalyzer(stored, window=asked, filter=filter).recent(count)
    if format == "json":
        out_json(exporter.recent_json(builds))
        if not builds:
            err(no_builds(stored, asked, filter))
    elif not builds:
        out(no_builds(stored, asked, filter) + "\n")
    else:
        out_report(exporter.render_recent(builds, color=color()))


def sql(
    found: TelemetryConfig,
    query: str,
    *,
    since: str | None = None,
    until: str | None = None,
    format: TableFormat = "table",
) -> None:
    """``builder telemetry sql``: the answer on stdout."""
    from telemetry.duckdb import answer as run
    from telemetry.tables import render

    asked = window(since, until)
    answer = run(storage(found), query, since=asked.since, until=asked.until)
    if format == "table":
        out(render(answer, format))
        return
    # CSV and JSON are UTF-8 bytes whatever the locale, as export writes them: the exact
    # values for a script; a terminal gets text from builds escaped.
    data = render(answer, format, terminal=terminal()).encode()
    with writing():
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def show(
    found: TelemetryConfig,
    session: str | None = None,
    *,
    since: str | None = None,
    until: str | None = None,
    filter: Filter | None = None,
    top: int | None = None,
    format: ReportFormat = "text",
) -> None:
    """``builder telemetry show``: one build on stdout, the newest when ``session`` is None.
    A session id that matches no build, or several, is an error (exit status 1): the command
    line was usable, the store holds no one build for it."""
    from telemetry import exporter

    if session == "":
        raise OptionError(f"SESSION must be a session id or its first characters, got {session!r}")
    asked = analyzer(found, since, until, filter)
    build = asked.newest_build() if session is None else asked.build(session)
    if build is None:
        message = no_builds(asked.storage, asked.window, asked.filter)
        if format == "json":
            err(message)
        else:
            out(message + "\n")
    else:
        from telemetry.critical_path import build_critical_path
        from telemetry.weighted import weigh_build

        weights = weigh_build(build)
        path = build_critical_path(build)
        if format == "json":
            out_json(exporter.build_json(build, top=top, weights=weights, critical_path=path))
        else:
            out_report(
                exporter.render_build(
                    build, top=top, color=color(), weights=weights, critical_path=path
                )
            )


def no_builds(stored: TelemetryStorage, window: Window, filter: Filter | None = None) -> str:
    """Why there is nothing to show: no data at all, none readable, or none in the window
    or the filter; each names the folder read, which the current directory decides when no
    option or variable does."""
    from telemetry.text import printable

    # "No telemetry data yet in .." would read as a typo.
    where = "the current folder" if stored.dir == Path() else printable(str(stored.dir))
    no_data = (
        f"No telemetry data yet in {where}. Run a build with telemetry enabled, "
        f"or store events with `builder telemetry ingest FILE`."
    )
    snapshot = stored.snapshot(datasets=("sessions",))
    if not snapshot.listed["sessions"]:
        return no_data
    windowed = window.since is not None or window.until is not None
    if filter is not None and not filter.takes_all:
        during = " in the selected time window" if windowed else ""
        return f"No builds in {where}{during} match the selected filters."
    if not windowed:
        if snapshot.files("sessions", warn=False):
            # Builds were stored (or retention ran) while we read: there were none then.
            return no_data
        return f"No readable builds in {where} (see the warnings above)."
    return f"No builds in {where} in the selected time window."


def terminal() -> bool:
    """Whether stdout is a terminal, which must never receive text from builds raw."""
    return sys.stdout is not None and sys.stdout.isatty()


def color() -> bool:
    """Colour for a terminal that shows it: not with ``NO_COLOR``, nor on a ``TERM=dumb``
    one (an editor's shell buffer, a CI log) that would show the escape codes as text."""
    return terminal() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def out(text: str) -> None:
    """Text on stdout; what its encoding cannot hold is escaped as Python writes it
    (``\\u2713``), never an error."""
    _write(text, _escape_text)


def out_report(text: str) -> None:
    """A text report on stdout; where the encoding (a Latin-1 or ASCII locale) cannot hold
    it, its marks (``✓``, ``✗``, ``•``, ``⚠️``) become plain ASCII ones."""
    _write(text, _ascii_marks)


def out_json(document: str) -> None:
    """A JSON report on stdout, escaped for a terminal, and what the encoding cannot hold
    written as JSON escapes: either way the same JSON values."""
    from telemetry.text import json_for_terminal

    _write(json_for_terminal(document) if terminal() else document, _escape_json)


def _write(text: str, fallback: Callable[[str, str], str]) -> None:
    """``text`` on stdout, or ``fallback(text, encoding)`` when stdout's encoding cannot
    hold it."""
    with writing():
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            text = fallback(text, encoding)
        except LookupError:  # an encoding Python does not know: leave it to the stream
            pass
        sys.stdout.write(text)
        sys.stdout.flush()


def _escape_text(text: str, encoding: str) -> str:
    return text.encode(encoding, "backslashreplace").decode(encoding)


def _escape_json(document: str, encoding: str) -> str:
    # Outside its strings a JSON document is ASCII, so every such character is in a string,
    # where a JSON escape (a surrogate pair above U+FFFF) is the same character.
    return "".join(c if _holds(c, encoding) else json.dumps(c)[1:-1] for c in document)


def _holds(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


# The reports' own marks, only where the layout puts them (a colour code may wrap a mark):
# the same characters in build text (a target label) are the label's and are escaped.
_MARK = re.compile(
    r"^(?P<before>\d+\. \[(?:\x1b\[[0-9;]*m)?)(?P<mark>[✓✗])"
    r"|^(?P<indent> +)(?P<bullet>•) "
    r"|^(?P<color>(?:\x1b\[[0-9;]*m)?)(?P<warning>⚠️)",
    re.MULTILINE,
)
_ASCII: Final = {"✓": "OK", "✗": "FAIL", "•": "*", "⚠️": "!!"}


# The summary's sparklines (after a trend's word), and their eight heights in ASCII where
# the encoding lacks the bars; bars in build text (a target label) are the label's.
_SPARKLINE = re.compile(r"^((?:  Trend|Build Time Trend): \w+  )([\u2581-\u2588]+)$", re.MULTILINE)
_ASCII_SPARKS: Final = "_.-:=+*#"


def _ascii_marks(text: str, encoding: str) -> str:
    from telemetry.exporter import SPARKS

    plain_bars = str.maketrans(SPARKS, _ASCII_SPARKS)
    text = _SPARKLINE.sub(lambda found: found[1] + found[2].translate(plain_bars), text)

    def plain(found: re.Match[str]) -> str:
        if found["mark"]:
            return found["before"] + _ASCII[found["mark"]]
        if found["bullet"]:
            return found["indent"] + _ASCII["•"] + " "
        return found["color"] + _ASCII["⚠️"]

    return _escape_text(_MARK.sub(plain, text), encoding)


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Map failures to write stdout: a closed pipe ends quietly, anything else is an error."""
    if sys.stdout is None:
        raise TelemetryError("standard output is closed; redirect it to a file")
    try:
        yield
    except BrokenPipeError:
        raise OutputClosed from None
    except OSError as error:
        raise TelemetryError(
            f"cannot write to standard output: {error.strerror or error}"
        ) from None
