"""Turborepo run summaries list each task's dependencies (task ids): a task that ran stores
them as its deps, and the run has a critical path. A hand-made summary, worked out by hand
(tests/ingest/test_turbo.py runs a real turbo)."""

from __future__ import annotations

import json
from pathlib import Path

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.critical_path import build_critical_path
from telemetry.events import TargetStarted
from telemetry.ingest import ingest_file
from telemetry.ingest.turbo import turbo_events
from telemetry.storage import TelemetryStorage
from tests.conftest import T0


def _summary() -> dict[str, object]:
    """a#build a cache hit (turbo sends no start for it); b#build [100, 600) after a; c#build
    [600, 900) after a and b; d#build [100, 300) with a dependency list turbo never writes."""
    return {
        "id": "run-d",
        "turboVersion": "2.11.11",
        "execution": {"startTime": T0, "endTime": T0 + 1000, "exitCode": 0},
        "tasks": [
            {"taskId": "a#build", "cache": {"status": "HIT"}, "dependencies": [],
             "execution": {"startTime": T0, "endTime": T0 + 40, "exitCode": 0}},
            {"taskId": "b#build", "cache": {"status": "MISS"}, "dependencies": ["a#build"],
             "execution": {"startTime": T0 + 100, "endTime": T0 + 600, "exitCode": 0}},
            {"taskId": "c#build", "cache": {"status": "MISS"},
             "dependencies": ["a#build", "b#build"],
             "execution": {"startTime": T0 + 600, "endTime": T0 + 900, "exitCode": 0}},
            {"taskId": "d#build", "cache": {"status": "MISS"}, "dependencies": "a#build",
             "execution": {"startTime": T0 + 100, "endTime": T0 + 300, "exitCode": 0}},
        ],
    }  # fmt: skip


def test_a_tasks_dependencies_are_its_deps() -> None:
    starts = [e for e in turbo_events(_summary(), home="/nobody") if isinstance(e, TargetStarted)]
    assert [(e.target, e.deps) for e in starts] == [
        ("b#build", ("a#build",)),
        ("c#build", ("a#build", "b#build")),
        ("d#build", None),
    ]


def test_a_run_has_a_critical_path(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_summary()))
    storage = TelemetryStorage(tmp_path / "store", retention_days=10**5)
    assert ingest_file(storage, path).sessions == 1
    build = TelemetryAnalyzer(storage).build("turbo-run-d")
    # c waited for b (a, a cache hit, did not run), b for a only: b then c, 500 + 300 ms
    # of the run's 1000.
    critical = build_critical_path(build)
    assert critical is not None
    assert [(s.target, s.duration_ms, s.share) for s in critical.steps] == [
        ("b#build", 500, 0.5),
        ("c#build", 300, 0.3),
    ]
    assert critical.complete


def test_a_dependency_name_that_cannot_be_stored_is_left_out_not_the_task() -> None:
    summary = _summary()
    tasks = summary["tasks"]
    assert isinstance(tasks, list)
    # 65,537 characters: one more than the protocol keeps of any text; a lone surrogate.
    tasks[2]["dependencies"] = ["a#build", "x" * 65_537, "bad\udc80", "b#build"]
    starts = [e for e in turbo_events(summary, home="/nobody") if isinstance(e, TargetStarted)]
    assert [(e.target, e.deps) for e in starts] == [
        ("b#build", ("a#build",)),
        ("c#build", ("a#build", "b#build")),
        ("d#build", None),
    ]
