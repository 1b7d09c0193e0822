"""The docs show real output: their examples run here, against the demo history.

- every ``console`` block of docs/guide.md, cache.md, weighted.md, trace.md, report.md and
  terminal.md: each ``$ command`` runs in bash, and what it prints (stdout and stderr
  together) must be the lines that follow it;
- every ``bash`` block of docs/guide.md, docs/events.md and the analyses' pages (check,
  regressions, cache, compare, flaky, weighted, trace) followed by a ``text`` block runs
  in a new directory with a store of its own, and prints that text;
- every ``python`` block of docs/query.md and docs/library.md runs, and when a ``text`` block
  follows it, that is what it must print;
- docs/cli.md is what ``--help`` says.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.cli.reference import cli_reference
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, REPO

DOCS = REPO / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def console_examples(path: Path) -> list[tuple[str, str]]:
    examples: list[tuple[str, str]] = []
    for kind, body in blocks(path):
        if kind != "console":
            continue
        for chunk in re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


def python_examples(path: Path) -> list[tuple[str, str | None]]:
    found = blocks(path)
    examples: list[tuple[str, str | None]] = []
    for i, (kind, body) in enumerate(found):
        if kind == "python":
            after = found[i + 1] if i + 1 < len(found) else ("", "")
            examples.append((body, after[1] if after[0] == "text" else None))
    return examples


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with history.jsonl and its builds stored in the default place."""
    folder = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [
            sys.executable,
            str(FIXTURES / "generate.py"),
            "--today",
            "2026-11-20",
            "--output",
            str(folder / "history.jsonl"),
        ],
        check=True,
    )
    ingest_file(TelemetryStorage(folder / ".builder-cache" / "telemetry"), folder / "history.jsonl")
    return folder


@pytest.fixture
def in_demo_copy(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the demo directory as the working directory."""
    copy = tmp_path / "demo"
    shutil.copytree(demo, copy)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("BUILDER_TELEMETRY_RETENTION_DAYS", "100000")
    monkeypatch.delenv("BUILDER_TELEMETRY_DIR", raising=False)
    yield copy


GUIDE = [
    example
    for page in ("guide", "cache", "weighted", "trace", "report", "terminal")
    for example in console_examples(DOCS / f"{page}.md")
]


@pytest.mark.parametrize(("command", "output"), GUIDE, ids=[c for c, _ in GUIDE])
def test_guide_console_examples(demo: Path, command: str, output: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDER_", "NO_COLOR"))}
    env["BUILDER_TELEMETRY_RETENTION_DAYS"] = "100000"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", f"{command} 2>&1"],
        cwd=demo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout == output


def script_examples(path: Path) -> list[tuple[str, str]]:
    """The ``bash`` blocks followed by a ``text`` block: a script and what it prints."""
    found = blocks(path)
    return [
        (body, after[1])
        for (kind, body), after in itertools.pairwise(found)
        if kind == "bash" and after[0] == "text"
    ]


# The pages of the analyses beyond the summary, whose examples are scripts.
ANALYSES = [
    DOCS / f"{name}.md"
    for name in ("check", "regressions", "cache", "compare", "flaky", "weighted", "trace")
]
SCRIPTS = [
    (path.name, i, script, output)
    for path in (DOCS / "guide.md", DOCS / "events.md", *ANALYSES)
    for i, (script, output) in enumerate(script_examples(path))
]


@pytest.mark.parametrize(
    ("doc", "index", "script", "output"), SCRIPTS, ids=[f"{d}-{i}" for d, i, _, _ in SCRIPTS]
)
def test_scripts_print_what_the_docs_say(
    tmp_path: Path, doc: str, index: int, script: str, output: str
) -> None:
    """Run as a reader would: in an empty directory, with the default settings (so a script
    whose times are not its own day's meets the 90-day retention)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDER_", "NO_COLOR"))}
    env["BUILDER_TELEMETRY_DIR"] = str(tmp_path / "telemetry")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"exec 2>&1\n{script}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout == output


EXAMPLES = [
    (path.name, i, code, output)
    for path in (DOCS / "query.md", DOCS / "library.md")
    for i, (code, output) in enumerate(python_examples(path))
]


@pytest.mark.parametrize(
    ("doc", "index", "code", "output"), EXAMPLES, ids=[f"{d}-{i}" for d, i, _, _ in EXAMPLES]
)
def test_python_examples(
    in_demo_copy: Path, doc: str, index: int, code: str, output: str | None
) -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"{doc} example {index}", "exec"), {"__name__": "__docs__"})
    if output is not None:
        assert printed.getvalue() == output


def test_cli_reference_is_current() -> None:
    assert (DOCS / "cli.md").read_text() == cli_reference(), "run `just docs`"


def test_every_doc_is_linked_from_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index


def test_the_readme_shows_the_guides_real_summary() -> None:
    [readme_summary] = [
        body
        for kind, body in blocks(REPO / "README.md")
        if body.startswith("=== Build Telemetry Summary ===")
    ]
    [guide_summary] = [output for command, output in GUIDE if command == "builder telemetry"]
    assert readme_summary == guide_summary
