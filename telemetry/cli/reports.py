"""What ``summary`` and ``recent`` do once their options are read, and the handling of
stdout and of failures that every command shares; nothing here loads the command-line parser.

``builder telemetry recent`` is what people type to see the build they just ran, so its
plain forms skip the parser (typer, and pydantic behind it, take longer to import than the
rest of the command) and call :func:`summary` and :func:`recent` from :mod:`telemetry.cli.fast`;
the parser calls the same functions for every other form.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from telemetry.cli.fast import err, internal_error
from telemetry.config import TelemetryConfig, parse_threshold
from telemetry.errors import TelemetryError

if TYPE_CHECKING:  # the heavy modules load only in the commands that use them
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.storage import TelemetryStorage
    from telemetry.window import Window

MAX_COUNT = 1_000_000
FORMATS = ("text", "json")


class OutputClosed(Exception):
    """The reader of our stdout went away (``| head``): stop quietly."""


def guarded(run: Callable[[], int]) -> int:
    """The exit status of ``run``, with every expected failure as one ``Error:`` line and
    status 1, a closed stdout as a quiet 0, Ctrl-C as 130 and our own bugs as 70."""
    try:
        return run()
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
        found = replace(found, dir=directory.expanduser())
    if threshold is not None:
        ratio = parse_threshold(threshold, source="--threshold")
        found = replace(found, regression_threshold=ratio)
    return found


def storage(found: TelemetryConfig) -> TelemetryStorage:
    from telemetry.storage import TelemetryStorage

    return TelemetryStorage.from_config(found)


def analyzer(found: TelemetryConfig, since: str | None, until: str | None) -> TelemetryAnalyzer:
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.window import Window

    return TelemetryAnalyzer(
        storage(found),
        window=Window.parse(since, until),
        regression_threshold=found.regression_threshold,
    )


def summary(
    found: TelemetryConfig,
    *,
    since: str | None = None,
    until: str | None = None,
    top: int = 5,
    format: str = "text",
) -> None:
    """``builder telemetry summary``: the report on stdout."""
    from telemetry import exporter

    asked = analyzer(found, since, until)
    report = asked.summary(top=top)
    if format == "json":
        out(stdout_json(exporter.summary_json(report)))
        if report.total_builds == 0:
            err(no_builds(asked.storage, asked.window))
    elif report.total_builds == 0:
        out(no_builds(asked.storage, asked.window) + "\n")
    else:
        out(exporter.render_summary(report, color=color()))


def recent(
    found: TelemetryConfig,
    count: int = 10,
    *,
    since: str | None = None,
    until: str | None = None,
    format: str = "text",
) -> None:
    """``builder telemetry recent``: the newest builds on stdout."""
    from telemetry import exporter
    from telemetry.recent import newest_builds
    from telemetry.window import Window

    stored = storage(found)
    window = Window.parse(since, until)
    builds = newest_builds(stored, window, count)
    if builds is None:  # many rows, or something the analyzer must warn about
        from telemetry.analyzer import TelemetryAnalyzer

        builds = TelemetryAnalyzer(stored, window=window).recent(count)
    if format == "json":
        out(stdout_json(exporter.recent_json(builds)))
        if not builds:
            err(no_builds(stored, window))
    elif not builds:
        out(no_builds(stored, window) + "\n")
    else:
        out(exporter.render_recent(builds, color=color()))


def no_builds(stored: TelemetryStorage, window: Window) -> str:
    """Why there is nothing to show: no data at all, none readable, or none in the window."""
    from telemetry import exporter

    files = stored.files("sessions")
    if not files:
        return exporter.NO_DATA
    if window.since is None and window.until is None:
        if stored.readable("sessions", files, warn=False):
            # Builds were stored (or retention ran) while we read: there were none then.
            return exporter.NO_DATA
        return f"No readable builds in {stored.dir} (see the warnings above)."
    return exporter.NO_DATA_IN_WINDOW


def terminal() -> bool:
    """Whether stdout is a terminal, which must never receive text from builds raw."""
    return sys.stdout is not None and sys.stdout.isatty()


def color() -> bool:
    return terminal() and "NO_COLOR" not in os.environ


def stdout_json(document: str) -> str:
    """A JSON report as it is, or escaped for a terminal (still the same JSON values)."""
    from telemetry import exporter

    return exporter.json_for_terminal(document) if terminal() else document


def out(text: str) -> None:
    with writing():
        sys.stdout.write(text)
        sys.stdout.flush()


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
