"""Several processes writing one store at once lose nothing and never show half a build."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import warnings
from pathlib import Path

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.collector import TelemetryCollector
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env

PROCESSES = 6
BUILDS = 25
TARGETS = 12
T0 = 1761575000000


def _record(directory: str, writer: int) -> None:
    # Retention runs after every write too, as it does for real builds.
    storage = TelemetryStorage(directory, max_sessions=10**6, retention_days=10**5)
    collector = TelemetryCollector(storage)
    for build in range(BUILDS):
        session = f"w{writer}-b{build}"
        start = T0 + (writer * BUILDS + build) * 60_000
        collector.build_started(session, ts=start, parallelism=2)
        for t in range(TARGETS):
            collector.target_started(session, f"//p{t}:t", ts=start + t * 10, worker=t % 2)
            collector.target_finished(
                session, f"//p{t}:t", ts=start + t * 10 + 10, status="built" if t % 3 else "cached"
            )
        collector.build_finished(session, ts=start + TARGETS * 10 + 5, success=True)


def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_record, args=(str(tmp_path), w)) for w in range(PROCESSES)]
    for process in writers:
        process.start()
    storage = TelemetryStorage(tmp_path)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reader must never meet a damaged or partial file
        while any(p.is_alive() for p in writers):
            sessions = TelemetryAnalyzer(storage).sessions()
            # Every visible build is complete: all its targets are already there.
            assert sessions["total_targets"].to_list() == [TARGETS] * sessions.height
            seen.append(sessions.height)
    for process in writers:
        process.join()
        assert process.exitcode == 0
    sessions = TelemetryAnalyzer(storage).sessions()
    expected = {f"w{w}-b{b}" for w in range(PROCESSES) for b in range(BUILDS)}
    assert set(sessions["session_id"]) == expected and sessions.height == len(expected)
    report = TelemetryAnalyzer(storage).summary(top=TARGETS)
    built_per_target = {b.target: b.runs for b in report.bottlenecks}
    assert built_per_target == {f"//p{t}:t": PROCESSES * BUILDS for t in range(TARGETS) if t % 3}
    assert seen == sorted(seen)  # the count never went down


def test_concurrent_cli_ingests_lose_nothing(tmp_path: Path) -> None:
    env = process_env(tmp_path / "t")
    files = []
    for writer in range(4):
        lines = []
        for build in range(40):
            session, start = f"i{writer}-{build}", T0 + (writer * 40 + build) * 86_400_000 // 8
            lines += [
                json.dumps({"event": "build_started", "session": session, "ts": start}),
                json.dumps(
                    {
                        "event": "target_finished",
                        "session": session,
                        "ts": start + 9,
                        "target": "//t",
                        "status": "built",
                        "duration_ms": 9,
                    }
                ),
                json.dumps(
                    {
                        "event": "build_finished",
                        "session": session,
                        "ts": start + 10,
                        "success": True,
                    }
                ),
            ]
        path = tmp_path / f"events-{writer}.jsonl"
        path.write_text("\n".join(lines))
        files.append(path)
    running = [
        subprocess.Popen(
            [BUILDER, "telemetry", "ingest", str(f)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for f in files
    ]
    outputs = [p.communicate(timeout=120) for p in running]
    assert [p.returncode for p in running] == [0, 0, 0, 0], outputs
    assert all(out == b"Stored 40 builds from 120 events.\n" for out, _ in outputs)
    sessions = TelemetryAnalyzer(TelemetryStorage(tmp_path / "t")).sessions()
    assert sessions.height == 160 and sessions["session_id"].n_unique() == 160
    assert sessions["executed_ms"].to_list() == [9] * 160
