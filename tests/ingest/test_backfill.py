"""A backfill: one input spanning many days, whose days are written at once (in threads).

Each day keeps the write protocol of a single build's write: its two files are written and
synced under hidden temporary names, the targets file is renamed (and its folder synced)
before the sessions file, the commit marker. A day that cannot be written leaves no file of
its own while the days beside it are written, and the error names the first such day's file.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.ipc as ipc
import pytest

from telemetry.errors import StorageError
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env, small_history_on

DAYS = 24  # three times the days written at once, so failures meet days still in flight
FIRST = date(2025, 10, 27)  # small_history's day: day n of the backfill is n days after
# The target rows of small_history's builds a, b and c, counted from its events by hand.
TARGETS = {"a": 4, "b": 5, "c": 4}


def _folder(day: int) -> str:
    return f"date={FIRST + timedelta(days=day)}"


def _whole(days: list[int]) -> dict[str, tuple[str, int]]:
    """What :func:`_stored` finds when the builds of ``days`` are stored whole."""
    return {f"{b}{d}": (_folder(d), n) for d in days for b, n in TARGETS.items()}


def _stored(store: Path) -> dict[str, tuple[str, int]]:
    """Each committed build with its day folder and its target rows, read with pyarrow from
    the files themselves; fails on a temporary file left behind and on a targets file
    without its sessions file (the commit marker)."""
    assert [p for p in store.rglob(".tmp-*")] == []
    stems, folders = set(), {}
    for path in sorted(store.glob("sessions/date=*/*.arrow")):
        stems.add((path.parent.name, re.sub(r"-n\d+\.arrow$", "", path.name)))
        for session in ipc.open_file(path).read_all().column("session_id").to_pylist():
            folders[session] = path.parent.name
    rows = dict.fromkeys(folders, 0)
    for path in sorted(store.glob("targets/date=*/*.arrow")):
        stem = re.sub(r"-n\d+\.arrow$", "", path.name)
        assert (path.parent.name, stem) in stems, f"{path}: no sessions file"
        for session in ipc.open_file(path).read_all().column("session_id").to_pylist():
            rows[session] += 1
    return {session: (folders[session], rows[session]) for session in folders}


def test_a_day_that_cannot_be_written_leaves_nothing_and_the_other_days_are_stored(
    tmp_path: Path,
) -> None:
    """Two days of a backfill cannot be written (a file where the day's sessions folder, or
    another day's targets folder, should be): the other days are stored whole, those two
    leave no file, and the command says one line, naming the first day's file."""
    store = tmp_path / "store"
    blocked = {9: "sessions", 16: "targets"}  # the sessions file of 9 fails after its targets
    for day, dataset in blocked.items():
        (store / dataset).mkdir(parents=True, exist_ok=True)
        (store / dataset / _folder(day)).write_text("a file where the day's folder should be")
    events = tmp_path / "backfill.jsonl"
    events.write_text("\n".join(small_history_on(*range(DAYS))) + "\n")
    done = subprocess.run([BUILDER, "telemetry", "ingest", str(events)], env=process_env(store),
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    folder = re.escape(f"{store}/sessions/{_folder(9)}/")
    assert re.fullmatch(
        rf"Error: could not write {folder}[^/]+-n3\.arrow: File exists\n", done.stderr
    )
    assert _stored(store) == _whole([d for d in range(DAYS) if d not in blocked])
    assert list((store / "targets" / _folder(9)).iterdir()) == []  # its targets taken back
    assert not (store / "sessions" / _folder(16)).exists()


def test_a_days_sessions_file_that_cannot_be_renamed_takes_its_targets_file_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename of one day's sessions file fails (as a full disk can fail a rename that
    needs a new block for the folder) after its targets file was renamed into place: that
    targets file is removed again, and every other day is stored whole."""
    storage = TelemetryStorage(tmp_path)
    failing = tmp_path / "sessions" / _folder(5)
    rename = os.rename

    def full(source: Any, target: Any) -> None:
        if Path(target).parent == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        rename(source, target)

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(StorageError, match=rf"^could not write {failing}/\S+-n3\.arrow: No space"):
        ingest_jsonl(storage, small_history_on(*range(DAYS)), apply_retention=False)
    monkeypatch.undo()
    assert _stored(tmp_path) == _whole([d for d in range(DAYS) if d != 5])
    assert list((tmp_path / "targets" / _folder(5)).iterdir()) == []
    assert list(failing.iterdir()) == []


def test_each_day_is_synced_before_it_is_renamed_and_its_targets_file_goes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order of every day's steps, seen in the system calls of the threads writing
    them: each file is synced before its rename, and the targets file is renamed and its
    folder synced before the sessions file is renamed, whose folder is synced after."""
    steps: list[tuple[str, Path]] = []
    lock = threading.Lock()
    fsync, rename = os.fsync, os.rename

    def note(step: str, path: Path) -> None:
        with lock:
            steps.append((step, path))

    def synced(fd: int) -> None:
        fsync(fd)
        note("synced", Path(os.readlink(f"/proc/self/fd/{fd}")))

    def renamed(source: Any, target: Any) -> None:
        note("renaming", Path(source))
        rename(source, target)
        note("renamed", Path(target))

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "rename", renamed)
    ingest_jsonl(TelemetryStorage(tmp_path), small_history_on(*range(DAYS)), apply_retention=False)
    monkeypatch.undo()
    assert _stored(tmp_path) == _whole(list(range(DAYS)))
    for day in range(DAYS):
        seen = []
        for step, path in steps:
            for dataset in ("targets", "sessions"):
                folder = tmp_path / dataset / _folder(day)
                if path == folder:
                    seen.append((step, f"{dataset} folder"))
                elif path.parent == folder:
                    kind = "temporary" if path.name.startswith(".tmp-") else "file"
                    seen.append((step, f"{dataset} {kind}"))
        assert sorted(seen) == sorted(
            [
                ("synced", "targets temporary"), ("renaming", "targets temporary"),
                ("renamed", "targets file"), ("synced", "targets folder"),
                ("synced", "sessions temporary"), ("renaming", "sessions temporary"),
                ("renamed", "sessions file"), ("synced", "sessions folder"),
            ]
        )  # fmt: skip
        at = {step: seen.index(step) for step in seen}
        for dataset in ("targets", "sessions"):
            assert at[("synced", f"{dataset} temporary")] < at[("renaming", f"{dataset} temporary")]
        assert (
            at[("renamed", "targets file")]
            < at[("synced", "targets folder")]
            < at[("renaming", "sessions temporary")]
        )
        assert at[("renamed", "sessions file")] < at[("synced", "sessions folder")]
