"""Where the data is: found from a subfolder as git finds `.git`, by every command (the
reports with and without the full parser, `record`), and named whenever there is none.

These run the installed `builder` as a real process, with no BUILDER_TELEMETRY_DIR, in a git
work tree made here: `.git` is all git itself needs to call a folder the top of one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BUILDER, small_history

NO_DATA = (
    "No telemetry data yet in {}. Run a build with telemetry enabled, or store events with "
    "`builder telemetry ingest FILE`.\n"
)


def _builder(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDER_", "NO_COLOR"))}
    env["BUILDER_TELEMETRY_RETENTION_DAYS"] = "100000"
    return subprocess.run(
        [BUILDER, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree with a subfolder src/app, and no store yet."""
    above = [p / ".builder-cache" for p in tmp_path.parents if (p / ".builder-cache").exists()]
    if above:
        pytest.skip(f"this machine has a store above the test folder: {above}")
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "app").mkdir(parents=True)
    return tmp_path / "repo"


@pytest.mark.parametrize(
    "args",
    [
        ["telemetry"],
        ["telemetry", "recent", "1"],  # without the parser
        ["telemetry", "recent", "1", "--since", "2025-10-27"],  # through the parser
    ],
)
def test_a_subfolder_reads_the_store_at_the_top_of_the_work_tree(
    repo: Path, args: list[str]
) -> None:
    missing = _builder(*args, cwd=repo / "src" / "app")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        0,
        NO_DATA.format(repo / ".builder-cache" / "telemetry"),
        "",
    )
    stored = _builder("telemetry", "ingest", "-", cwd=repo, stdin="\n".join(small_history()))
    assert stored.stdout == "Stored 3 builds from 25 events.\n"
    assert (repo / ".builder-cache" / "telemetry" / "sessions").is_dir()
    found = _builder(*args, cwd=repo / "src" / "app")
    assert found.returncode == 0 and found.stderr == ""
    assert "2025-10-27T16:23:20" in found.stdout


def test_record_in_a_subfolder_stores_where_the_reports_read(repo: Path) -> None:
    recorded = _builder("record", "--", "true", cwd=repo / "src" / "app")
    assert (recorded.returncode, recorded.stderr) == (0, "")
    assert not (repo / "src" / "app" / ".builder-cache").exists()
    at_top = _builder("telemetry", "export", cwd=repo)
    [session] = json.loads(at_top.stdout)["sessions"]
    assert (session["tool"], session["succeeded"]) == ("true", True)
    # And another subfolder reads the same store.
    elsewhere = _builder("telemetry", "recent", "1", cwd=repo / "src")
    assert elsewhere.stdout.startswith("Recent 1 Build:\n\n1. [✓] ")


def test_the_nearest_builder_cache_wins_and_is_named_relative_when_here(repo: Path) -> None:
    (repo / "src" / "app" / ".builder-cache").mkdir()
    here = _builder("telemetry", "summary", "--format", "json", cwd=repo / "src" / "app")
    assert json.loads(here.stdout)["totalBuilds"] == 0
    assert here.stderr == NO_DATA.format(".builder-cache/telemetry")
    below = repo / "src" / "app" / "deeper"
    below.mkdir()
    down = _builder("telemetry", "export", cwd=below)
    assert down.stderr == NO_DATA.format(repo / "src" / "app" / ".builder-cache" / "telemetry")


def test_dir_and_the_variable_still_win(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    given = _builder("telemetry", "--dir", str(other), "recent", cwd=repo / "src")
    assert given.stdout == NO_DATA.format(other)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
    by_variable = subprocess.run(
        [BUILDER, "telemetry", "recent"],
        cwd=repo / "src",
        env=env | {"BUILDER_TELEMETRY_DIR": "relative/t"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert by_variable.stdout == NO_DATA.format("relative/t")


def test_every_no_data_message_names_the_folder(repo: Path) -> None:
    where = repo / ".builder-cache" / "telemetry"
    sub = repo / "src"
    assert _builder("telemetry", "summary", "--top", "3", cwd=sub).stdout == NO_DATA.format(where)
    assert _builder("telemetry", "export", "--format", "csv", cwd=sub).stderr == NO_DATA.format(
        where
    )
    assert _builder("telemetry", "recent", "--format", "json", cwd=sub).stderr == NO_DATA.format(
        where
    )
    assert _builder("telemetry", "clear", cwd=sub).stdout == f"No telemetry data in {where}.\n"
    _builder("telemetry", "ingest", "-", cwd=sub, stdin="\n".join(small_history()))
    window = _builder("telemetry", "recent", "--since", "2030-01-01", cwd=sub)
    assert window.stdout == f"No builds in {where} in the selected time window.\n"
