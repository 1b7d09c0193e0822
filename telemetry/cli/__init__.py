"""The ``builder`` command line: a thin skin over the library."""

from telemetry.cli.main import app, main

__all__ = ["app", "main"]
