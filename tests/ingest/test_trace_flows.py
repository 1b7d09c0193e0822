"""Chrome traces with flow events (ph s, t, f): each arrow makes the slice it points to wait
for the slice it comes from, stored as deps, so the trace's build has a critical path. A
hand-made trace worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.critical_path import build_critical_path
from telemetry.ingest import ingest_file
from telemetry.storage import TelemetryStorage


def _x(name: str, tid: int, ts: int, dur: int) -> dict[str, object]:
    return {"ph": "X", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}


def _flow(phase: str, flow: int, tid: int, ts: int, **more: object) -> dict[str, object]:
    return {"ph": phase, "cat": "dep", "name": "waits", "id": flow, "pid": 1, "tid": tid,
            "ts": ts, **more}  # fmt: skip


# Microseconds. Thread 1: gen [0, 2000), compile b [2000, 7000). Thread 2: compile a
# [2600, 5000), link [7000, 9000). Thread 3: idle [100, 4100), which no flow touches.
EVENTS = [
    _x("gen", 1, 0, 2000),
    _x("compile b", 1, 2000, 5000),
    _x("compile a", 2, 2600, 2400),
    _x("link", 2, 7000, 2000),
    _x("idle", 3, 100, 4000),
    # 1: from gen (enclosing 1500) to compile a (enclosing 3000, "bp": "e").
    _flow("s", 1, 1, 1500),
    _flow("f", 1, 2, 3000, bp="e"),
    # 2: from gen (enclosing 1999) to the next slice beginning on thread 1 at 2000 or later.
    _flow("s", 2, 1, 1999),
    _flow("f", 2, 1, 2000),
    # 3: from compile a to the next slice on thread 2 after 6000: link.
    _flow("s", 3, 2, 4000),
    _flow("f", 3, 2, 6000),
    # 4: from compile b (6999) to link, enclosing 8000.
    _flow("s", 4, 1, 6999),
    _flow("f", 4, 2, 8000, bp="e"),
    # 5: gen, a step in compile a, link: arrows already drawn, each counted once.
    _flow("s", 5, 1, 100),
    _flow("t", 5, 2, 2700),
    _flow("f", 5, 2, 8500, bp="e"),
    # An end whose start is not in the trace, and a flow on a thread with no slice.
    _flow("f", 9, 2, 8700, bp="e"),
    _flow("s", 10, 7, 100),
]


def test_flows_become_deps_and_a_critical_path(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"traceEvents": EVENTS}))
    storage = TelemetryStorage(tmp_path / "store", retention_days=10**5)
    assert ingest_file(storage, trace).sessions == 1
    [session] = TelemetryAnalyzer(storage).sessions()["session_id"].to_list()
    build = TelemetryAnalyzer(storage).build(session)
    assert {run.target: run.deps for run in build.targets} == {
        "gen": (),
        "compile a": ("gen",),
        "compile b": ("gen",),
        "link": ("compile a", "compile b"),
        "idle": None,  # no flow binds it
    }
    # In milliseconds: gen [0,2), compile b [2,7), compile a [3,5), link [7,9); the build
    # runs [0,9). link waited for compile b (ended 7, after compile a at 5), which waited
    # for gen: 2 + 5 + 2 = 9 ms, the whole build.
    path = build_critical_path(build)
    assert path is not None
    assert [(s.target, s.duration_ms) for s in path.steps] == [
        ("gen", 2),
        ("compile b", 5),
        ("link", 2),
    ]
    assert (path.duration_ms, path.build_ms, path.complete) == (9, 9, True)


def test_a_trace_without_flows_has_no_deps(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps([e for e in EVENTS if e["ph"] == "X"]))
    storage = TelemetryStorage(tmp_path / "store", retention_days=10**5)
    assert ingest_file(storage, trace).sessions == 1
    [session] = TelemetryAnalyzer(storage).sessions()["session_id"].to_list()
    build = TelemetryAnalyzer(storage).build(session)
    assert {run.deps for run in build.targets} == {None}
    assert build_critical_path(build) is None


def test_a_flow_from_a_name_the_trace_repeats_names_no_dependency(tmp_path: Path) -> None:
    # Two slices named compile (thread 1 [0, 100) ms, thread 2 [0, 900) ms):
    # an arrow leaves the first for link, but a dependency is stored by name, which would
    # name the other one too: link gets none from it (and the one from gen it does get).
    events = [
        _x("compile", 1, 0, 100_000),
        _x("compile", 2, 0, 900_000),
        _x("gen", 3, 0, 50_000),
        _x("link", 1, 950_000, 50_000),
        _flow("s", 1, 1, 50_000),
        _flow("f", 1, 1, 960_000, bp="e"),
        _flow("s", 2, 3, 10_000),
        _flow("f", 2, 1, 970_000, bp="e"),
    ]
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"traceEvents": events}))
    storage = TelemetryStorage(tmp_path / "store", retention_days=10**5)
    assert ingest_file(storage, trace).sessions == 1
    [session] = TelemetryAnalyzer(storage).sessions()["session_id"].to_list()
    build = TelemetryAnalyzer(storage).build(session)
    deps = {run.target: run.deps for run in build.targets if run.target in ("link", "gen")}
    assert deps == {"link": ("gen",), "gen": ()}
