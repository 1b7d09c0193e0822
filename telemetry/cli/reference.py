"""The command-line reference in ``docs/cli.md``, generated from ``--help``.

``python -m telemetry.cli.reference > docs/cli.md`` (``just docs``) rewrites it; a test fails
when the file and the commands drift apart.
"""

from __future__ import annotations

from typer.testing import CliRunner

from telemetry.cli.commands import app

COMMANDS = (
    (),
    ("record",),
    ("build",),
    ("telemetry",),
    ("telemetry", "summary"),
    ("telemetry", "recent"),
    ("telemetry", "export"),
    ("telemetry", "ingest"),
    ("telemetry", "clear"),
    ("telemetry", "verify"),
)


def cli_reference() -> str:
    """Markdown with the ``--help`` of every command, at 80 columns."""
    runner = CliRunner(env={"COLUMNS": "80", "NO_COLOR": "1"})
    parts = [
        "# Command-line reference\n",
        "Generated from `--help` by `just docs`; `tests/test_docs.py` fails when it drifts.\n",
    ]
    for words in COMMANDS:
        result = runner.invoke(app, [*words, "--help"], prog_name="builder")
        title = " ".join(("builder", *words))
        parts.append(f"## `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(cli_reference(), end="")
