"""Turborepo run summaries, produced by a real `turbo` (the npm package) on a small
workspace: a clean build, a fully cached one, and one whose second package fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage

TURBO_VERSION = "2.11.11"
QUIET = {"TURBO_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1", "TURBO_NO_UPDATE_NOTIFIER": "1"}


def _write(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))


def _package(name: str, script: str, depends: list[str]) -> dict[str, object]:
    return {
        "name": name,
        "version": "1.0.0",
        "scripts": {"build": script},
        "dependencies": {d: "1.0.0" for d in depends},
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Packages a and b (b depends on a), with turbo installed from the npm registry."""
    npm = shutil.which("npm")
    assert npm, "npm is needed (the CI script installs Node.js)"
    root = tmp_path_factory.mktemp("turbo")
    version = subprocess.run(
        [npm, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    _write(
        root / "package.json",
        {
            "name": "mono",
            "private": True,
            "workspaces": ["packages/*"],
            "packageManager": f"npm@{version}",
            "devDependencies": {"turbo": TURBO_VERSION},
        },
    )
    _write(
        root / "turbo.json", {"tasks": {"build": {"dependsOn": ["^build"], "outputs": ["out.txt"]}}}
    )
    # 4 MiB outputs that do not compress, so that restoring one from the cache takes turbo
    # time it can measure.
    write = "require('fs').writeFileSync('out.txt', require('crypto').randomBytes(1 << 22))"
    _write(root / "packages/a/package.json", _package("a", f'node -e "{write}"', []))
    _write(root / "packages/b/package.json", _package("b", f'node -e "{write}"', ["a"]))
    # A git repository, as turbo expects: it hashes the files git does not ignore, so its
    # own logs and the build outputs do not make every run a cache miss.
    (root / ".gitignore").write_text("node_modules/\n.turbo/\nout.txt\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund"],
        cwd=root,
        check=True,
        capture_output=True,
        env=os.environ | QUIET,
        timeout=600,
    )
    yield root


def _turbo(root: Path) -> tuple[int, Path]:
    """Run `turbo run build --summarize`; its exit status and the new summary file."""
    before = set((root / ".turbo" / "runs").glob("*.json"))
    done = subprocess.run(
        [str(root / "node_modules" / ".bin" / "turbo"), "run", "build", "--summarize"],
        cwd=root,
        capture_output=True,
        text=True,
        env=os.environ | QUIET,
        timeout=300,
        check=False,
    )
    [summary] = set((root / ".turbo" / "runs").glob("*.json")) - before
    return done.returncode, summary


def test_real_turbo_runs_are_stored_with_what_turbo_did(workspace: Path, tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "t")
    # 1. Clean: both packages build.
    status, clean = _turbo(workspace)
    assert status == 0
    # 2. Nothing changed: both come from turbo's cache, which restores their outputs (gone,
    # as in a fresh checkout).
    for output in workspace.glob("packages/*/out.txt"):
        output.unlink()
    status, cached = _turbo(workspace)
    assert status == 0
    # 3. b's build now fails; a is unchanged and comes from the cache.
    failing = _package("b", 'node -e "process.exit(3)"', ["a"])
    _write(workspace / "packages/b/package.json", failing)
    status, broken = _turbo(workspace)
    assert status != 0
    for summary in (clean, cached, broken):
        result = ingest_file(storage, summary)
        assert (result.sessions, result.problems) == (1, ())
    rows = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert [(r["built"], r["cached"], r["failed"], r["succeeded"]) for r in rows] == [
        (2, 0, 0, True),
        (0, 2, 0, True),
        (0, 1, 1, False),
    ]
    assert all(r["tool"] == "turbo" for r in rows)
    # turbo's own totals agree.
    for row, summary in zip(rows, (clean, cached, broken), strict=True):
        execution = json.loads(summary.read_text())["execution"]
        assert (row["cached"], row["failed"]) == (execution["cached"], execution["failed"])
        assert row["duration_ms"] == execution["endTime"] - execution["startTime"]
    [build] = TelemetryAnalyzer(storage).recent(1)
    assert build.error == "target b#build failed"
    # A cache hit lasts as long as turbo took to replay it, as its summary times the task.
    stored = {
        (r["session_id"], r["target"]): (r["status"], r["duration_ms"])
        for r in storage.snapshot().scan("targets").collect().to_dicts()
    }
    replays = {}
    for summary in (clean, cached, broken):
        document = json.loads(summary.read_text())
        for task in document["tasks"]:
            if task["cache"]["status"] == "HIT":
                run = task["execution"]
                replays[(f"turbo-{document['id']}", task["taskId"])] = (
                    "cached",
                    run["endTime"] - run["startTime"],
                )
    assert len(replays) == 3  # a and b in the cached run, a in the failing one
    assert any(duration > 0 for _, duration in replays.values())  # so a 0 stored is wrong
    assert {key: stored[key] for key in replays} == replays


def test_a_summary_is_recognised_by_its_content_and_compressed(tmp_path: Path) -> None:
    import gzip

    summary = {
        "id": "run-1",
        "turboVersion": TURBO_VERSION,
        "user": "someone",
        "scm": {"type": "git", "sha": "abc123", "branch": "main"},
        "execution": {"startTime": 1761575000000, "endTime": 1761575001000, "exitCode": 0},
        "tasks": [
            {
                "taskId": "a#build",
                "cache": {"status": "HIT"},
                "execution": {"startTime": 1761575000100, "endTime": 1761575000130, "exitCode": 0},
            },
            {
                "taskId": "b#build",
                "cache": {"status": "MISS"},
                "execution": {"startTime": 1761575000100, "endTime": 1761575000900, "exitCode": 0},
            },
            {"taskId": "c#build", "cache": {"status": "MISS"}},
        ],
    }
    path = tmp_path / "summary.json.gz"
    path.write_bytes(gzip.compress(json.dumps(summary, indent=2).encode()))
    storage = TelemetryStorage(tmp_path / "t")
    assert ingest_file(storage, path).sessions == 1
    [row] = TelemetryAnalyzer(storage).sessions().to_dicts()
    assert (
        row["session_id"],
        row["commit"],
        row["branch"],
        row["built"],
        row["cached"],
        row["total_targets"],
        row["duration_ms"],
        row["executed_ms"],
    ) == ("turbo-run-1", "abc123", "main", 1, 1, 2, 1000, 800)
    # The hit's 30 ms replay is its duration, and not executed time.
    targets = storage.snapshot().scan("targets").collect()
    assert sorted(targets.select("target", "status", "duration_ms").rows()) == [
        ("a#build", "cached", 30),
        ("b#build", "built", 800),
    ]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "t").rglob("*.arrow"))
    assert b"someone" not in stored  # the summary's user is never kept


def test_a_json_document_that_is_no_summary_is_one_error(tmp_path: Path) -> None:
    from telemetry.errors import InputError

    path = tmp_path / "other.json"
    path.write_text(json.dumps({"name": "not a summary"}, indent=2))
    with pytest.raises(InputError, match="not a Turborepo run summary"):
        ingest_file(TelemetryStorage(tmp_path / "t"), path)
    with pytest.raises(InputError, match="not a Turborepo run summary"):
        ingest_file(TelemetryStorage(tmp_path / "t"), path, format="turbo-summary")
