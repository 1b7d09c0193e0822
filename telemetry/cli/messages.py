"""One-line messages on stderr: errors, warnings and internal errors, as every command
says them.

Kept apart from the reports so that ``builder record``, which runs around every build, can
say them without loading anything else.
"""

from __future__ import annotations

import contextlib
import os
import sys

INTERNAL_ERROR = 70


def err(text: str) -> None:
    """One line on stderr; nothing when stderr is closed or cannot be written, since what
    telemetry says must never change a build's result. Stderr is a terminal more often than
    not, so build text quoted in a message is escaped as in the reports (its line breaks,
    those of a usage text, stay)."""
    if sys.stderr is None:
        return
    if not text.isprintable():
        from telemetry.text import printable

        text = "\n".join(printable(line) for line in text.split("\n"))
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Library warnings (a damaged file skipped) as one ``Warning:`` line."""
    err(f"Warning: {message}")


def internal_error(error: BaseException) -> int:
    """A failure nobody foresaw: one line asking for a report (the traceback with
    ``BUILDER_DEBUG=1``), and exit status 70."""
    if os.environ.get("BUILDER_DEBUG"):
        raise error
    message = " ".join(str(error).split())[:300]
    err(
        f"Error: internal error ({type(error).__name__}: {message}); "
        f"set BUILDER_DEBUG=1 to see the traceback and please report it"
    )
    return INTERNAL_ERROR
