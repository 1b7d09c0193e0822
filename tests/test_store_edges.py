"""The store's edges: a day folder that is a link to a folder outside the store (a user moved
old days to another disk) is read through, but nothing outside the store is ever written or
removed, by compaction, retention, ``clear`` or ``verify --repair``; and a file the user may
not read is reported by ``verify``, never moved aside as if it were damaged."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telemetry.ingest import ingest_jsonl
from telemetry.snapshot import GRACE_SECONDS
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env
from tests.test_damaged_files import _events
from tests.test_reliability import _release, _run_unprivileged, _unprivileged_base

DATASETS = ("sessions", "targets")
MOVED = "date=2025-10-28"


def _run(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDER, "telemetry", *args], capture_output=True, text=True,
                          env=process_env(store), timeout=120, check=False)  # fmt: skip


def _stored(tmp_path: Path) -> tuple[Path, Path]:
    """A store of three days (one file per dataset and day, as ingested), whose middle day
    was moved to a folder outside it and linked back; the store and that folder."""
    store = tmp_path / "telemetry"
    storage = TelemetryStorage(store)
    assert ingest_jsonl(storage, _events(), apply_retention=False).sessions == 12
    outside = tmp_path / "other-disk"
    for dataset in DATASETS:
        day = store / dataset / MOVED
        shutil.move(day, outside / dataset)
        day.symlink_to(outside / dataset, target_is_directory=True)
    return store, outside


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _trash(store: Path) -> list[str]:
    return [p.name for p in store.rglob(".trash-*")]


@pytest.mark.torture
def test_a_linked_day_is_read_but_never_compacted(tmp_path: Path) -> None:
    store, outside = _stored(tmp_path)
    before = _contents(outside)
    summary = _run(store, "summary")
    assert (summary.returncode, summary.stderr) == (0, "")
    assert "Total Builds: 12\n" in summary.stdout  # read through the links

    done = _run(store, "compact")
    link = store / "sessions" / MOVED
    assert done.returncode == 0
    assert done.stderr == (
        f"Warning: skipping {link}: it is a link to {outside / 'sessions'}; "
        f"compaction changes nothing outside {store}\n"
    )
    assert done.stdout == f"Compacted 2 days in {store}: 8 builds from 2 files into 2.\n"
    assert _contents(outside) == before
    assert all((store / dataset / MOVED).is_symlink() for dataset in DATASETS)
    assert not (store / "daily_targets" / MOVED).exists()
    assert _run(store, "summary").stdout == summary.stdout


@pytest.mark.torture
def test_retention_and_clear_remove_a_linked_day_but_not_what_it_points_to(
    tmp_path: Path,
) -> None:
    store, outside = _stored(tmp_path)
    # A writer that died long ago left a temporary file in the day kept elsewhere.
    leftover = outside / "sessions" / ".tmp-20251028T000000Z-0123456789ab.arrow.partial"
    leftover.write_bytes(b"partial")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    before = _contents(outside)

    kept = TelemetryStorage(store, retention_days=100_000)
    kept.apply_retention(sweep=True)  # the linked day is kept: nothing in it is swept
    assert _contents(outside) == before

    # Today is 2025-10-30: keeping one day removes the 27th and the 28th.
    now = datetime(2025, 10, 30, 12, tzinfo=UTC)
    retention = TelemetryStorage(store, retention_days=1, clock=lambda: now)
    removed = retention.apply_retention(sweep=True)
    assert [d.isoformat() for d in removed.removed_days] == ["2025-10-27", "2025-10-28"]
    assert not any((store / dataset / MOVED).is_symlink() for dataset in DATASETS)
    # The link went at once; the 27th's folders stay hidden for the readers of an hour ago.
    hidden = [p.is_symlink() for p in store.glob("*/.trash-*")]
    assert hidden and not any(hidden)
    assert _contents(outside) == before
    assert retention.days("sessions") == [datetime(2025, 10, 29).date()]
    later = TelemetryStorage(store, retention_days=1, clock=lambda: now)
    an_hour_on = time.time() + GRACE_SECONDS + 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: an_hour_on)
        later.apply_retention(sweep=True)
    assert _trash(store) == []

    for dataset in DATASETS:
        (store / dataset / MOVED).symlink_to(outside / dataset, target_is_directory=True)
    cleared = _run(store, "clear", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert _contents(outside) == before
    assert [p.name for p in store.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.torture
def test_repair_moves_nothing_out_of_a_linked_day(tmp_path: Path) -> None:
    store, outside = _stored(tmp_path)
    [victim] = (outside / "targets").glob("*.arrow")
    victim.write_bytes(victim.read_bytes()[:-30])
    before = _contents(outside)

    repaired = _run(store, "verify", "--repair")
    linked = store / "targets" / MOVED / victim.name
    assert repaired.returncode == 1
    assert repaired.stdout.splitlines()[1:] == [
        f"not moved: {linked}: {store / 'targets' / MOVED} is a link to {outside / 'targets'}, "
        f"outside the store; move {victim.name} aside there yourself",
        "Checked 6 files: 1 damaged file; 0 moved to quarantine, 1 left in place.",
    ]
    assert _contents(outside) == before
    assert not (store / "quarantine").exists()


@pytest.mark.torture
def test_a_file_the_user_may_not_read_is_reported_and_never_moved(tmp_path: Path) -> None:
    base = _unprivileged_base(tmp_path)
    try:
        store = base / "telemetry"
        storage = TelemetryStorage(store)
        assert ingest_jsonl(storage, _events(), apply_retention=False).sessions == 12
        [locked] = (store / "targets" / MOVED).glob("*.arrow")
        [broken] = (store / "sessions" / "date=2025-10-29").glob("*.arrow")
        broken.write_bytes(broken.read_bytes()[:-30])
        for folder in [store, *[p for p in store.rglob("*") if p.is_dir()]]:
            folder.chmod(0o777)  # so that moving the file would succeed
        locked.chmod(0o000)
        script = f"""
            {BUILDER} --help > /dev/null 2>&1 || exit 97
            set +e
            {BUILDER} telemetry verify --repair 2> {base}/err
            echo "status=$?"
        """
        output = _run_unprivileged(script, process_env(store))
        if output is None:
            pytest.skip("no unprivileged user can run builder here")
        moved = store / "quarantine" / "sessions" / "date=2025-10-29" / broken.name
        damaged, *lines = output.splitlines()
        assert damaged.startswith(f"damaged: {broken}: ")
        assert lines == [
            f"moved: {broken} -> {moved}",
            f"not checked: {locked}: unreadable (Permission denied)",
            "Checked 6 files: 1 damaged file, 1 unreadable file (never moved: fix its "
            "permissions); moved to quarantine.",
            "status=1",
        ]
        assert (base / "err").read_text() == ""
        assert locked.exists() and not (store / "quarantine" / "targets").exists()
    finally:
        _release(base, tmp_path)
