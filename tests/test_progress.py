"""telemetry.progress as the library reports it: the bytes an ingest reads, the builds an
export renders, the days compaction, the rollup and the month packs work through, and one
progress per job in a run of the jobs. (The bars drawn from it: tests/cli/test_progress.py.)"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import random
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.compaction import compact
from pipelines.jobs import run_jobs
from pipelines.months import pack
from pipelines.rollup import rollup
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.exporter import write_export
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.progress import REPORT_BYTES, Steps, counted
from telemetry.storage import TelemetryStorage
from tests.conftest import T0, small_history, small_history_on

LATER = datetime(2027, 1, 1, tzinfo=UTC)  # 2025-10 is a closed month, and every day closed
Calls = list[tuple[int, int | None]]


def _recorder() -> tuple[Calls, Callable[[int, int | None], None]]:
    calls: Calls = []
    return calls, lambda done, total: calls.append((done, total))


def noisy_history(builds: int, *, seed: int = 7) -> bytes:
    """``builds`` builds a minute apart, each with a label of 4,000 random hex digits, so
    that gzip halves it at best: megabytes of compressed input from a few thousand builds."""
    rng = random.Random(seed)
    lines = []
    for n in range(builds):
        ts = T0 + n * 60_000
        noise = rng.randbytes(2000).hex()
        lines.append(
            json.dumps(
                {"event": "build_started", "session": f"s{n}", "ts": ts, "labels": {"n": noise}}
            )
        )
        lines.append(
            json.dumps(
                {"event": "build_finished", "session": f"s{n}", "ts": ts + 1000, "success": True}
            )
        )
    return ("\n".join(lines) + "\n").encode()


def _rising(calls: Calls) -> None:
    dones = [done for done, _ in calls]
    assert dones == sorted(dones)
    for done, total in calls:
        assert total is None or done <= total


# -- ingest ------------------------------------------------------------------------------------


def test_an_ingest_tells_the_bytes_of_a_compressed_file_read_of_its_size(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(noisy_history(2000)))
    size = path.stat().st_size
    assert size > 3 * REPORT_BYTES  # several reports, a mebibyte or more apart
    calls, progress = _recorder()
    result = ingest_file(TelemetryStorage(tmp_path / "t"), path, progress=progress)
    assert result.sessions == 2000
    # From nothing to the whole file (the compressed bytes: its size on disk), read once.
    assert calls[0] == (0, size)
    assert calls[-1] == (size, size)
    assert {total for _, total in calls} == {size}
    _rising(calls)
    steps = [b[0] - a[0] for a, b in itertools.pairwise(calls)]
    assert len(steps) >= 4
    assert all(step >= REPORT_BYTES for step in steps[:-1])


def test_a_plain_file_is_counted_once_though_its_first_line_is_read_twice(
    tmp_path: Path,
) -> None:
    # Its first line is read to tell its format, then the file from its start: that glance
    # back is not counted.
    path = tmp_path / "history.jsonl"
    path.write_bytes(noisy_history(600))
    size = path.stat().st_size
    calls, progress = _recorder()
    assert ingest_file(TelemetryStorage(tmp_path / "t"), path, progress=progress).sessions == 600
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert {total for _, total in calls} == {size}
    _rising(calls)


def test_a_file_read_again_line_by_line_counts_twice(tmp_path: Path) -> None:
    # A backslash (an escape, which the reading in columns leaves to Python's json) makes
    # the ingest read the file again from its start, line by line, once it was read whole:
    # the second reading is counted too, and the total grows by it, to twice the size.
    path = tmp_path / "history.jsonl"
    escaped = json.dumps(
        {"event": "build_started", "session": "w", "ts": T0, "labels": {"out": "C:\\out"}}
    )
    path.write_bytes(noisy_history(600) + escaped.encode() + b"\n")
    size = path.stat().st_size
    assert size > REPORT_BYTES
    calls, progress = _recorder()
    result = ingest_file(TelemetryStorage(tmp_path / "t"), path, progress=progress)
    assert (result.sessions, result.interrupted) == (601, 1)
    assert calls[0] == (0, size)
    assert (size, size) in calls  # read whole once
    assert calls[-1] == (2 * size, 2 * size)
    _rising(calls)


def test_an_ingest_from_a_pipe_tells_bytes_of_no_known_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = noisy_history(300)
    reading, writing = os.pipe()

    def feed() -> None:
        with open(writing, "wb") as pipe:
            pipe.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    with open(reading, "rb") as pipe:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe))
        calls, progress = _recorder()
        result = ingest_file(TelemetryStorage(tmp_path / "t"), "-", progress=progress)
    feeder.join()
    assert result.sessions == 300
    assert calls[0] == (0, None) and calls[-1] == (len(data), None)
    assert {total for _, total in calls} == {None}
    _rising(calls)


def test_a_counted_reader_reads_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\nbb\nccc\n")
    calls, progress = _recorder()
    with path.open("rb") as handle:
        handle.read(2)  # counted from where it stands: 7 bytes are left
        reader = counted(handle, progress)
        assert list(reader) == [b"bb\n", b"ccc\n"]
        assert reader.tell() == 9
    assert calls == [(0, 7), (7, 7)]


def test_steps_tell_each_one_and_the_end_once() -> None:
    calls, progress = _recorder()
    steps = Steps(progress, 3)
    steps.step()
    steps.finish()
    steps.finish()
    assert calls == [(0, 3), (1, 3), (3, 3)]


# -- export ------------------------------------------------------------------------------------


def _many_builds(storage: TelemetryStorage, count: int) -> None:
    lines = []
    for n in range(count):
        ts = T0 + n * 60_000
        lines.append(json.dumps({"event": "build_started", "session": f"b{n:04d}", "ts": ts}))
        lines.append(
            json.dumps(
                {"event": "build_finished", "session": f"b{n:04d}", "ts": ts + 5, "success": True}
            )
        )
    assert ingest_jsonl(storage, lines, apply_retention=False).sessions == count


@pytest.mark.parametrize("fmt", ["json", "csv", "prometheus", "parquet"])
def test_an_export_tells_the_builds_rendered(tmp_path: Path, fmt: str) -> None:
    storage = TelemetryStorage(tmp_path / "t")
    _many_builds(storage, 2500)
    sessions = TelemetryAnalyzer(storage).sessions()
    calls, progress = _recorder()
    told = io.BytesIO()
    write_export(sessions, fmt, told, progress=progress)  # type: ignore[arg-type]
    if fmt == "parquet":  # written in one call: its start and its end
        assert calls == [(0, 2500), (2500, 2500)]
    else:  # a thousand builds at a time
        assert calls == [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]
    # The same bytes as without it: a text export is rendered a thousand builds at a time.
    untold = io.BytesIO()
    write_export(sessions, fmt, untold)  # type: ignore[arg-type]
    assert told.getvalue() == untold.getvalue()
    ids = [f"b{n:04d}" for n in range(2500)]
    if fmt == "json":
        assert [s["sessionId"] for s in json.loads(told.getvalue())["sessions"]] == ids
    if fmt == "csv":
        rows = csv.DictReader(io.StringIO(told.getvalue().decode(), newline=""))
        assert [row["sessionId"] for row in rows] == ids


def test_an_empty_export_is_done_at_once(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "t")
    _many_builds(storage, 1)
    sessions = TelemetryAnalyzer(storage).sessions().clear()
    calls, progress = _recorder()
    write_export(sessions, "json", io.BytesIO(), progress=progress)
    assert calls == [(0, 0)]


# -- the jobs ----------------------------------------------------------------------------------


def _three_days(tmp_path: Path) -> TelemetryStorage:
    """The small history on 2025-10-27, 28 and 29: three days, nine builds."""
    storage = TelemetryStorage(tmp_path / "t", clock=lambda: LATER)
    assert ingest_jsonl(storage, small_history_on(0, 1, 2), apply_retention=False).sessions == 9
    return storage


def test_compaction_tells_the_days_looked_at(tmp_path: Path) -> None:
    storage = _three_days(tmp_path)
    calls, progress = _recorder()
    assert len(compact(storage, progress=progress)) == 3
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # Again: the same three days are looked at, and found compacted.
    calls.clear()
    assert compact(storage, progress=progress) == []
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_the_rollup_and_the_month_packs_tell_their_days(tmp_path: Path) -> None:
    storage = _three_days(tmp_path)
    compact(storage)
    calls, progress = _recorder()
    assert rollup(storage, progress=progress).builds == 9
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    calls.clear()
    assert pack(storage, progress=progress).days == 3  # the three days of 2025-10
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # Nothing left to do: nothing of nothing, done.
    calls.clear()
    rollup(storage, progress=progress)
    pack(storage, progress=progress)
    assert calls == [(0, 0), (0, 0)]


def test_each_job_of_a_run_gets_its_own_progress(tmp_path: Path) -> None:
    storage = _three_days(tmp_path)
    told: list[tuple[str, int, int | None]] = []

    def for_job(name: str) -> Callable[[int, int | None], None]:
        told.append((name, -1, None))  # the job starts
        return lambda done, total: told.append((name, done, total))

    results = run_jobs(storage, ["all"], progress=for_job)
    assert [r.outcome for r in results] == ["ok"] * 4
    # Three days compacted, rolled up and packed; retention (none set) removes no day, and
    # tells its end only.
    days = [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert told == [
        ("compact", -1, None),
        *(("compact", d, t) for d, t in days),
        ("rollup", -1, None),
        *(("rollup", d, t) for d, t in days),
        ("retention", -1, None),
        ("retention", 0, 0),
        ("months", -1, None),
        *(("months", d, t) for d, t in days),
    ]
    # A dry run does no work, and asks for no progress.
    told.clear()
    run_jobs(storage, ["all"], dry_run=True, progress=for_job)
    assert told == []


def test_retention_tells_the_days_it_removed(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path / "t", clock=lambda: LATER, max_sessions=3)
    assert ingest_jsonl(storage, small_history_on(0, 1, 2), apply_retention=False).sessions == 9
    told: list[tuple[int, int | None]] = []
    [result] = run_jobs(storage, ["retention"], progress=lambda name: _append(told))
    # At most three builds: the newest day's three are kept, the two days before removed.
    assert result.counts == {"days": 2, "builds": 6}
    assert told == [(2, 2)]


def _append(calls: Calls) -> Callable[[int, int | None], None]:
    return lambda done, total: calls.append((done, total))


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_small_history_is_counted_once(tmp_path: Path, compressed: bool) -> None:
    # The hand-made history, 3 builds: every byte counted once, and the end told once.
    text = ("\n".join(small_history()) + "\n").encode()
    path = tmp_path / "small.jsonl"
    path.write_bytes(gzip.compress(text) if compressed else text)
    size = path.stat().st_size
    calls, progress = _recorder()
    assert ingest_file(TelemetryStorage(tmp_path / "t"), path, progress=progress).sessions == 3
    assert calls == [(0, size), (size, size)]


def test_the_parquet_export_of_the_store_tells_its_files(tmp_path: Path) -> None:
    from telemetry.parquet import sink_parquet

    storage = TelemetryStorage(tmp_path / "t", retention_days=10**5)
    ingest_jsonl(storage, small_history_on(0, 1))
    told: list[tuple[int, int | None]] = []
    written = sink_parquet(
        storage, tmp_path / "warehouse", progress=lambda d, t: told.append((d, t))
    )
    # Two days, not compacted: a sessions and a targets file each, no daily rollup: 4 files.
    assert told == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(list((tmp_path / "warehouse").rglob("*.parquet"))) == 4
    assert written.sessions == 6
