"""The command-line reference in ``docs/cli.md``, generated from ``--help``.

``python -m telemetry.cli.reference > docs/cli.md`` (``just docs``) rewrites it; a test fails
when the file and the commands drift apart. The commands are read from the command tree
itself, so a new command is in the reference without a list to keep.
"""

from __future__ import annotations

from collections.abc import Iterator

import typer
from typer.testing import CliRunner

from telemetry.cli.commands import app


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every command's words after ``builder``, groups before their commands, in the order
    ``--help`` lists them."""
    root = typer.main.get_command(app)

    def walk(command: object, words: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield words
        for name, sub in getattr(command, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                yield from walk(sub, (*words, name))

    yield from walk(root, ())


def cli_reference() -> str:
    """Markdown with the ``--help`` of every command, at 80 columns."""
    runner = CliRunner(env={"COLUMNS": "80", "NO_COLOR": "1"})
    parts = [
        "# Command-line reference\n",
        "Generated from `--help` by `just docs`; `tests/test_docs.py` fails when it drifts.\n",
    ]
    for words in command_paths():
        result = runner.invoke(app, [*words, "--help"], prog_name="builder")
        title = " ".join(("builder", *words))
        parts.append(f"## `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(cli_reference(), end="")
