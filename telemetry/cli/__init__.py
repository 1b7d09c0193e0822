"""The ``builder`` command line: a thin skin over the library."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> NoReturn:
    """Run ``builder``: ``record`` and ``build`` straight away when their command line is a
    plain one, everything else through the full parser."""
    from telemetry.cli.fast import try_fast

    arguments = sys.argv[1:] if argv is None else argv
    status = try_fast(arguments)
    if status is not None:
        sys.exit(status)
    from telemetry.cli.commands import main as full

    full(argv)


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        from telemetry.cli.commands import app

        return app
    raise AttributeError(name)
