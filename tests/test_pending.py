"""A recorded build is written as a pending file and folded into the Arrow files by the next
reader or writer: its times are the build's own, it is shown at once, and folding never
stores it twice or loses it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from pipelines.compaction import compact
from telemetry.errors import TelemetryWarning
from telemetry.events import format_ts, parse_event
from telemetry.pending import folding, pending_files, write_pending
from telemetry.record import FOLD_AT
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env

DAY = 86_400_000


def _rows(store: Path) -> list[dict[str, object]]:
    """Every stored session row, read with pyarrow from the files (not the library's readers,
    which would fold what is pending first)."""
    rows: list[dict[str, object]] = []
    for path in sorted(store.glob("sessions/date=*/[!.]*.arrow")):
        rows += ipc.open_file(str(path)).read_all().to_pylist()
    return rows


def _events(session: str, start: int, end: int, *, target: bool = False) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [
        {"event": "build_started", "session": session, "ts": start, "tool": "make"}
    ]
    if target:
        events += [
            {"event": "target_started", "session": session, "ts": start, "target": "a.o"},
            {"event": "target_finished", "session": session, "ts": end, "target": "a.o",
             "status": "built"},
        ]  # fmt: skip
    events.append({"event": "build_finished", "session": session, "ts": end, "success": True})
    return events


def test_a_recorded_build_lasts_as_long_as_the_build_itself(tmp_path: Path) -> None:
    """The stored start and end enclose the times the build itself read, and what lies
    between its last reading and the stored end (its exit, and our wait for it) is less than
    builder's own start-up before the stored start. Both sides are work of the same kind on
    the same machine, so a load slows them alike; the end used to be taken after loading
    the storage modules, several times builder's start-up."""
    store = tmp_path / "store"
    began, ended = tmp_path / "began", tmp_path / "ended"
    build = f"date +%s%N > {began}; date +%s%N > {ended}"
    for n in range(1, 4):
        launched = time.time_ns() // 1_000_000
        subprocess.run([BUILDER, "record", "--", "sh", "-c", build], env=process_env(store),
                       check=True)  # fmt: skip
        TelemetryStorage(store).files("sessions")  # the build folded in, if it is pending
        rows = _rows(store)
        assert len(rows) == n
        row = max(rows, key=lambda r: r["start_time"])
        start = int(row["start_time"].timestamp() * 1000)
        end = int(row["end_time"].timestamp() * 1000)
        first = int(began.read_text()) // 1_000_000
        last = int(ended.read_text()) // 1_000_000
        assert launched <= start <= first <= last <= end
        assert end - last < start - launched
        assert row["duration_ms"] == end - start


def test_the_build_just_recorded_is_shown_by_recent(tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = process_env(store)
    subprocess.run([BUILDER, "record", "--", "sh", "-c", "exit 4"], env=env, check=False)
    [pending] = pending_files(store)
    assert _rows(store) == []  # nothing of pyarrow's was written by the build's recording
    lines = [json.loads(line) for line in pending.read_text().splitlines()]
    start, end = lines[0]["ts"], lines[-1]["ts"]
    shown = subprocess.run([BUILDER, "telemetry", "recent", "1"], env=env, capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert shown.stdout == (
        "Recent 1 Build:\n\n"
        f"1. [✗] {format_ts(start)} - {end - start}ms (cache: n/a)\n"
        "   Error: sh exited with status 4\n"
    )
    assert (shown.stderr, pending_files(store)) == ("", [])
    assert len(_rows(store)) == 1


def test_a_fold_repeated_after_a_crash_stores_the_build_once(tmp_path: Path) -> None:
    """A fold that stopped between writing a build and removing its pending file writes
    the same files again: one build, also after its day was compacted."""
    store = tmp_path / "store"
    yesterday = int(time.time() * 1000) - DAY  # a closed day, which compaction merges
    path = write_pending(store, _events("rec-1", yesterday - 2000, yesterday, target=True))
    kept = tmp_path / "kept.jsonl"
    shutil.copy(path, kept)
    storage = TelemetryStorage(store)
    storage.files("sessions")
    assert [r["session_id"] for r in _rows(store)] == ["rec-1"]
    shutil.copy(kept, path)  # as if the fold had stopped before removing it
    storage.files("sessions")
    assert [r["session_id"] for r in _rows(store)] == ["rec-1"]
    assert len(list(store.glob("targets/date=*/*.arrow"))) == 1
    # The day compacted (its build now in the day's file), then the same file folded again.
    assert len(compact(storage)) == 1
    shutil.copy(kept, path)
    sessions = [f.path for f in storage.files("sessions")]
    assert len(sessions) == 1 and "-day-" in sessions[0].name
    assert TelemetryStorage(store).session_count() == 1


def test_readers_folding_at_once_store_each_build_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    for i in range(20):
        write_pending(store, _events(f"rec-{i}", now - 1000 - i, now - i, target=True))
    export = [BUILDER, "telemetry", "export"]
    readers = [
        subprocess.Popen(export, env=process_env(store), stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    shown = [json.loads(reader.communicate()[0])["sessions"] for reader in readers]
    assert all(reader.returncode == 0 for reader in readers)
    assert [len(s) for s in shown] == [20] * 4
    assert sorted(r["session_id"] for r in _rows(store)) == sorted(f"rec-{i}" for i in range(20))
    assert pending_files(store) == []


def test_a_pending_file_that_cannot_be_read_is_set_aside(tmp_path: Path) -> None:
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    write_pending(store, _events("good", now - 1000, now))
    bad = store / "pending" / "20251027T000000Z-000000000000.jsonl"
    bad.write_bytes(b'{"event": "build_sta\xff')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert TelemetryStorage(store).session_count() == 1
    [warning] = [w for w in caught if issubclass(w.category, TelemetryWarning)]
    assert str(warning.message).startswith(f"{bad} was set aside as {bad.name}.bad: ")
    assert (pending_files(store), bad.with_name(bad.name + ".bad").exists()) == ([], True)


def test_recordings_fold_in_themselves_when_nothing_reads_the_store(tmp_path: Path) -> None:
    """Retention keeps applying to a store that is only ever written by `record`."""
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    for i in range(FOLD_AT - 1):
        write_pending(store, _events(f"old-{i}", now - 10 * DAY - i, now - 10 * DAY))
    env = process_env(store, BUILDER_TELEMETRY_RETENTION_DAYS="5")
    done = subprocess.run([BUILDER, "record", "--", "true"], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stderr == ""
    assert pending_files(store) == []
    [row] = _rows(store)  # the builds ten days old were folded in, then removed
    assert row["tool"] == "true"


def test_clear_removes_the_builds_still_pending(tmp_path: Path) -> None:
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    write_pending(store, _events("a", now - 1000, now))
    TelemetryStorage(store).files("sessions")
    write_pending(store, _events("b", now - 500, now))
    assert TelemetryStorage(store).clear() == 2
    assert (pending_files(store), _rows(store)) == ([], [])


def test_a_recording_killed_while_writing_leaves_nothing_after_an_hour(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "pending").mkdir(parents=True)
    young = store / "pending" / ".tmp-20251027T000000Z-000000000001.jsonl"
    old = store / "pending" / ".tmp-20251027T000000Z-000000000002.jsonl"
    for path in (young, old):
        path.write_text('{"event":')
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    TelemetryStorage(store).apply_retention(sweep=True)
    assert sorted(p.name for p in (store / "pending").iterdir()) == [young.name]


def test_a_recording_never_waits_for_a_fold_under_way(tmp_path: Path) -> None:
    """With 64 builds pending, `record` would fold them; while another process folds (holds
    the lock), it leaves them to it and exits with the build's status at once."""
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    for i in range(FOLD_AT - 1):
        write_pending(store, _events(f"b-{i}", now - 1000 - i, now - i))
    with folding(store):
        # (The timeout only keeps a regression from hanging the suite.)
        done = subprocess.run([BUILDER, "record", "--", "sh", "-c", "exit 3"],
                              env=process_env(store), capture_output=True, timeout=600)  # fmt: skip
        assert (done.returncode, done.stderr) == (3, b"")
        assert len(pending_files(store)) == FOLD_AT and _rows(store) == []


def test_a_build_the_fold_refuses_is_set_aside_not_deleted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ahead = int(time.time() * 1000) + 3 * 3_600_000  # a clock three hours fast
    path = write_pending(store, _events("fast-clock", ahead, ahead + 1000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert TelemetryStorage(store).session_count() == 0
    [warning] = [str(w.message) for w in caught if issubclass(w.category, TelemetryWarning)]
    assert warning.startswith(f"{path} was set aside as {path.name}.bad: "), warning
    assert "ahead" in warning, warning
    aside = path.with_name(path.name + ".bad")
    assert (
        pending_files(store) == [] and json.loads(aside.read_text().splitlines()[0])["ts"] == ahead
    )


def test_a_fold_that_cannot_lock_warns_and_the_build_keeps_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without locks (ENOLCK: some network mounts; made here by replacing
    flock, since no local file system refuses it): readers warn and go on, and a recording
    that folds keeps the build's exit status."""
    import errno
    import fcntl

    from telemetry.record import record

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    for i in range(FOLD_AT - 1):
        write_pending(store, _events(f"b-{i}", now - 1000 - i, now - i))
    env = {**os.environ, "BUILDER_TELEMETRY_DIR": str(store)}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        recording = record(["sh", "-c", "exit 3"], environ=env)
    assert recording.exit_status == 3
    [problem] = recording.problems
    assert problem == (
        f"{FOLD_AT} recorded builds in {store / 'pending'} are not shown: No locks available"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert TelemetryStorage(store).session_count() == 0
    assert [str(w.message) for w in caught] == [problem]


def test_clear_waits_for_a_fold_under_way_and_removes_its_build(tmp_path: Path) -> None:
    store = tmp_path / "store"
    now = int(time.time() * 1000)
    write_pending(store, _events("old", now - 5000, now - 4000))
    storage = TelemetryStorage(store)
    storage.files("sessions")
    clear = [BUILDER, "telemetry", "clear", "--yes"]
    with folding(store):  # a fold under way, about to store a build
        waiting = subprocess.Popen(clear, env=process_env(store), stdout=subprocess.PIPE)
        _until_waiting(waiting)
        write_pending(store, _events("new", now - 1000, now))
        TelemetryStorage(store).append(*_batches("new", now - 1000, now))  # what it stores
    said, _ = waiting.communicate(timeout=600)
    assert waiting.returncode == 0
    assert said.decode().startswith("Removed 3 builds")  # old, new, and new still pending
    assert (_rows(store), pending_files(store)) == ([], [])


def _batches(session: str, start: int, end: int) -> tuple[object, object]:
    """A build's session and target rows as the collector makes them."""
    from telemetry.collector import TelemetryCollector

    made: list[tuple[object, object]] = []

    class Keep:
        def write(self, sessions: object, targets: object) -> None:
            made.append((sessions, targets))

    collector = TelemetryCollector(Keep())
    for event in _events(session, start, end):
        collector.handle(parse_event(event))
    [batches] = made
    return batches


def _until_waiting(process: subprocess.Popen[bytes]) -> None:
    """Return once ``process`` waits for a file lock (a ``->`` line of /proc/locks names the
    waiters); fail if it exits first."""
    while process.poll() is None:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if "->" in fields and fields[fields.index("->") + 4] == str(process.pid):
                    return
    raise AssertionError(f"it did not wait: exit status {process.returncode}")
