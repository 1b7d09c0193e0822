"""The snapshot when maintenance moves, sweeps or deletes files between a reader's steps:
each case puts one maintenance step exactly between two steps of a reader, and the reader
must still count every build once, with all its target rows."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from pipelines.compaction import compact
from telemetry import maintenance, snapshot
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.ingest import ingest_jsonl
from telemetry.recent import newest_builds
from telemetry.snapshot import GRACE_SECONDS, SnapshotChanged
from telemetry.storage import TelemetryStorage
from telemetry.window import Window
from tests import maintenance_loop as loop


def _store(path: Path, days: tuple[int, ...] = (1, 2), per_day: int = 2) -> TelemetryStorage:
    """``per_day`` builds of two executed targets on each of ``days`` (days before today),
    a file pair per build, written over an hour ago."""
    kept = loop.storage(path)
    for day in days:
        for n in range(per_day):
            start = loop.TODAY_MS - day * loop.DAY_MS + n * 3_600_000
            stored = ingest_jsonl(kept, loop.build(f"b-{day}-{n}", start), apply_retention=False)
            assert stored.sessions == 1
    _age(path, 7200)
    return kept


def _age(store: Path, seconds: float) -> None:
    for path in store.rglob("*.arrow"):
        moment = path.stat().st_mtime - seconds
        os.utime(path, (moment, moment))


def _scribble(path: Path) -> None:
    """Damage a file's data, its footer left sound."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle - 32 : middle + 32] = b"\x5a" * 64
    path.write_bytes(bytes(data))


def _runs(analyzer: TelemetryAnalyzer, taken: snapshot.Snapshot) -> tuple[int, int]:
    """The builds a reader counts in ``taken``, and the executed runs it reads for them."""
    sessions = analyzer._sessions(taken)
    parts = analyzer._runs_per_target(sessions, taken)
    return sessions.height, sum(int(part["runs"].sum()) for part in parts)


def test_a_sweep_while_a_compaction_moves_a_builds_files_takes_none_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction moves a replaced build's sessions file, then its targets file; a
    retention in another process (here: between the two) must not take those targets, over
    an hour old and without their sessions file, for a dead writer's."""
    kept = _store(tmp_path / "store")
    taken = kept.snapshot()  # a reader's, before the compaction
    rename = os.rename
    swept: list[bool] = []

    def moving(source: Any, destination: Any) -> None:
        rename(source, destination)
        if "/sessions/" in str(source) and ".trash-" in str(destination) and not swept:
            swept.append(True)
            TelemetryStorage(kept.dir).apply_retention(wait=False)

    monkeypatch.setattr(maintenance.os, "rename", moving)
    compact(kept)
    monkeypatch.undo()
    assert swept
    assert _runs(TelemetryAnalyzer(kept), taken) == (4, 8)


def test_a_sound_file_moved_while_damage_is_looked_for_is_still_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _store(tmp_path / "store")
    files = sorted((tmp_path / "store").glob("sessions/*/*.arrow"))
    _scribble(files[0])
    taken = kept.snapshot()
    examine = snapshot.examine
    moved = taken.listed["sessions"][-1]

    def checking(path: Path, dataset: Any, *, full: bool) -> Any:
        if full and path == moved.path and path.exists():  # a compaction moves it meanwhile
            maintenance._remove_stems(kept.layout, moved.day, {moved.stem})
        return examine(path, dataset, full=full)

    monkeypatch.setattr(snapshot, "examine", checking)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        frame = taken.collect("sessions", lambda sessions: sessions)
    assert frame is not None and frame.height == 3  # four stored, one damaged
    assert [str(w.message).split(":")[0] for w in said] == [f"skipping {files[0]}"]


def test_a_damaged_rollup_that_a_compaction_moves_leaves_its_day_to_the_target_rows(
    tmp_path: Path,
) -> None:
    kept = _store(tmp_path / "store")
    compact(kept)
    rollups = sorted((tmp_path / "store").glob("daily_targets/*/*.arrow"))
    _scribble(rollups[0])
    taken = kept.snapshot()
    analyzer = TelemetryAnalyzer(kept)
    sessions = analyzer._sessions(taken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        taken.files("daily_targets")  # checked where they were listed
    # A late build stored into that day, and the day compacted again: the damaged rollup
    # is moved into the hidden folder before the reader reads it.
    day = taken.listed["daily_targets"][0].day
    late = loop.build("late", loop.TODAY_MS - (loop.TODAY.date() - day).days * loop.DAY_MS + 5)
    ingest_jsonl(kept, late, apply_retention=False)
    compact(kept)
    assert not rollups[0].exists()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        parts = analyzer._runs_per_target(sessions, taken)
    assert sum(int(part["runs"].sum()) for part in parts) == 2 * sessions.height == 8
    assert len(said) == 1 and "skipping" in str(said[0].message)


def test_a_file_deleted_since_the_listing_makes_the_reader_take_a_new_snapshot(
    tmp_path: Path,
) -> None:
    kept = _store(tmp_path / "store")
    taken = kept.snapshot()
    gone = taken.listed["targets"][0]
    gone.path.unlink()  # deleted for good (``clear``, or a sweep past the hour)
    with pytest.raises(SnapshotChanged):
        taken.files("targets")
    # The analyzer takes a new snapshot, in which that build is whole or absent: here its
    # sessions file is there and its targets file not, so it has no executed runs.
    summary = TelemetryAnalyzer(kept).summary(top=10)
    assert summary.total_builds == 4 and sum(b.runs for b in summary.bottlenecks) == 6


def test_a_linked_sessions_folder_keeps_its_builds_targets_through_the_sweep(
    tmp_path: Path,
) -> None:
    kept = _store(tmp_path / "store")
    outside = tmp_path / "elsewhere"
    (kept.dir / "sessions").rename(outside)
    (kept.dir / "sessions").symlink_to(outside)
    before = sorted(p.name for p in kept.dir.glob("targets/*/*.arrow"))
    assert len(before) == 4
    kept.apply_retention()  # with its sweep
    assert sorted(p.name for p in kept.dir.glob("targets/*/*.arrow")) == before
    assert _runs(TelemetryAnalyzer(kept), kept.snapshot()) == (4, 8)


def test_compaction_sweeps_what_earlier_runs_took_out_once_its_hour_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _store(tmp_path / "store")
    compact(kept)
    hidden = list(kept.dir.glob("*/.trash-*"))
    assert hidden  # the replaced files, for the readers of the last hour
    an_hour_on = time.time() + GRACE_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: an_hour_on)
    assert compact(kept) == []
    assert list(kept.dir.glob("*/.trash-*")) == []


def test_recent_without_polars_leaves_a_day_removed_between_its_reads_to_the_analyzer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _store(tmp_path / "store", days=(1,))
    original = TelemetryStorage.snapshot
    calls: list[int] = []

    def removing(self: TelemetryStorage, **kwargs: Any) -> snapshot.Snapshot:
        calls.append(1)
        if len(calls) == 2:  # between the sessions and the targets: retention, say
            day = kept.days()[0]
            for dataset in ("sessions", "targets"):
                maintenance.remove_partition(kept.layout, dataset, day)
        return original(self, **kwargs)

    monkeypatch.setattr(TelemetryStorage, "snapshot", removing)
    assert newest_builds(kept, Window(), 2) is None
    assert len(calls) == 2
