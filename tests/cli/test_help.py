"""Help written for the people who type the commands: no internal type names, two or three
real examples at the end of every command's help (run here), and a reference in docs/cli.md
that has every command of the tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import pytest
import typer

from telemetry.cli.commands import app
from tests.conftest import FIXTURES, REPO, Runner, process_env, small_history


def _tree() -> list[tuple[str, ...]]:
    """Every command's words after `builder`, read from click's command tree."""
    found: list[tuple[str, ...]] = []

    def walk(command: object, words: tuple[str, ...]) -> None:
        found.append(words)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*words, name))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _tree()
# What only a programmer reads: a parameter's Python type, a range as an inequality.
INTERNAL = re.compile(
    r"<(int|float|str|bool|path|dir|file|uuid|datetime)( range)?>(?=\s|$)"
    r"|list\[|\bx\s*[<>]=|<=\s*x\b"
)


def test_the_tree_has_every_command() -> None:
    assert {" ".join(c) for c in COMMANDS} >= {
        "",
        "record",
        "build",
        "telemetry",
        "telemetry summary",
        "telemetry compact",
        "telemetry ingest",
    }


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c) or "builder" for c in COMMANDS])
def test_help_names_no_internal_types_and_ends_with_examples(
    cli: Runner, words: tuple[str, ...]
) -> None:
    shown = cli(*words, "--help")
    assert shown.code == 0 and shown.stderr == ""
    assert INTERNAL.search(shown.stdout) is None, shown.stdout
    assert shown.stdout.isascii()  # readable in any locale
    _, heading, examples = shown.stdout.rpartition("\n  Examples:\n")
    assert heading, shown.stdout
    lines = examples.splitlines()
    assert 2 <= len(lines) <= 3
    for line in lines:
        assert line.startswith("    ") and " ".join(("builder", *words)) in line


def test_docs_cli_has_every_command() -> None:
    reference = (REPO / "docs" / "cli.md").read_text()
    for words in COMMANDS:
        assert f"## `{' '.join(('builder', *words))}`\n" in reference


def _examples() -> list[str]:
    from telemetry.cli.commands import EXAMPLES

    runs = [example for words in COMMANDS for example in EXAMPLES[words]]
    # clear empties the store: last, so the others have builds to work on.
    return sorted(runs, key=lambda example: " clear" in example)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work tree with what the examples name: events, a ninja and a make project, a
    build script, a configured build command and a Bazel build's events and profile."""
    folder = tmp_path_factory.mktemp("examples")
    (folder / ".git").mkdir()
    (folder / "events.jsonl").write_text("\n".join(small_history()))
    ninja = "rule copy\n  command = cp $in $out\nbuild copy.txt: copy source.txt\n"
    for project in (folder, folder / "out"):
        project.mkdir(exist_ok=True)
        (project / "build.ninja").write_text(ninja)
        (project / "source.txt").write_text("source\n")
    (folder / "Makefile").write_text("all:\n\ttrue\n")
    (folder / "build.sh").write_text("#!/bin/sh\nexec ninja\n")
    (folder / "build.sh").chmod(0o755)
    (folder / "pyproject.toml").write_text('[tool.builder]\nbuild = "make"\n')
    shutil.copy(FIXTURES / "bazel" / "clean.bep.json", folder / "bep.json")
    shutil.copy(FIXTURES / "bazel" / "clean.profile.json", folder / "profile.json")
    if shutil.which("ninja"):  # out/.ninja_log, whichever example runs first
        subprocess.run(["ninja", "-C", str(folder / "out")], capture_output=True, check=True)
    # Stores and Parquet exports of other machines, for merge.
    builder = str(Path(sys.executable).with_name("builder"))
    env = process_env(folder / "ci-store" / "telemetry")
    for command in (
        ["telemetry", "ingest", str(folder / "events.jsonl")],
        ["telemetry", "export", "--format", "parquet", "--output", str(folder / "exports/ws06")],
        ["telemetry", "export", "--format", "parquet", "--output", str(folder / "exports/ws07")],
    ):
        subprocess.run([builder, *command], env=env, capture_output=True, check=True)
    # Two groups of two builds in the last days, for compare: make on main with 4 workers,
    # ninja on faster-link with 8.
    now = int(time.time() * 1000)
    groups = [("make", "main", "4"), ("ninja", "faster-link", "8")]
    lines = []
    for n, (tool, branch, workers) in enumerate(groups * 2):
        start = now - (n + 1) * 3_600_000
        lines += [
            json.dumps({"event": "build_started", "session": f"ab-{n}", "ts": start,
                        "tool": tool, "branch": branch,
                        "labels": {"BUILDER_PARALLEL": workers}}),
            json.dumps({"event": "build_finished", "session": f"ab-{n}",
                        "ts": start + 1000 * (n + 1), "success": True}),
        ]  # fmt: skip
    (folder / "ab.jsonl").write_text("\n".join(lines))
    env = process_env(folder / ".builder-cache" / "telemetry")
    command = [builder, "telemetry", "ingest", str(folder / "ab.jsonl")]
    subprocess.run(command, env=env, capture_output=True, check=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("example", _examples())
def test_the_examples_are_real(scratch: Path, example: str) -> None:
    for tool in ("make", "ninja"):
        if re.search(rf"\b{tool}\b", example) and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDER_", "NO_COLOR"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["BUILDER_TELEMETRY_RETENTION_DAYS"] = "100000"
    done = subprocess.run(
        ["bash", "-c", example],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr


def test_choices_are_the_librarys_literals() -> None:
    from telemetry.cli import fast, reports
    from telemetry.formats import ExportFormat, InputFormat
    from telemetry.record import Source

    root = typer.main.get_command(app)

    def annotation(words: tuple[str, ...], option: str) -> object:
        command = root
        for word in words:
            command = command.commands[word]  # type: ignore[attr-defined]
        [param] = [p for p in command.params if p.name == option]
        return param.type_descriptor.annotation  # type: ignore[attr-defined]

    assert annotation(("telemetry", "export"), "format") is ExportFormat
    assert annotation(("telemetry", "summary"), "format") is reports.ReportFormat
    assert annotation(("telemetry", "recent"), "format") is reports.ReportFormat
    assert annotation(("record",), "source") is annotation(("build",), "source") is Source
    assert get_args(Source) == fast._sources()
    assert annotation(("telemetry", "ingest"), "format") is InputFormat


def test_the_reports_do_not_import_the_fast_route() -> None:
    # reports is what both routes share; importing it must not need fast (no cycle).
    code = "import sys, telemetry.cli.reports; print('telemetry.cli.fast' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
