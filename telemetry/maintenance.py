"""Maintenance of a store: the compaction commit, retention, the sweep for what dead
writers left, ``verify`` and quarantine, and ``clear``.

Removal waits for writers: every write holds the guard shared (:mod:`telemetry.locks`),
and retention holds it alone while it decides which days go and renames them away, so a day
folder never vanishes under a write, and a removal counts exactly the builds it removes.
The compaction commit holds it shared, so a day is removed whole, before or after it was
merged.

What maintenance takes out of the store stays readable for the snapshots taken before it,
for :data:`~telemetry.snapshot.GRACE_SECONDS` (an hour): the files a compacted day replaces,
and a day retention removes, are moved to a hidden ``.trash-<time>-<id>`` folder of their
dataset (where :meth:`telemetry.snapshot.Snapshot.find` looks), which the sweep deletes once
its grace is over; ``clear`` deletes everything at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from telemetry import layout, months
from telemetry.errors import StorageError
from telemetry.integrity import UNREADABLE, VANISHED, Finding, copy_problem, problem, reason
from telemetry.layout import Layout
from telemetry.locks import guard
from telemetry.pending import PENDING, pending_files
from telemetry.schema import DATASETS, REPLACES_KEY, SCHEMA_VERSION, Dataset
from telemetry.snapshot import (
    GRACE_SECONDS,
    Snapshot,
    SnapshotChanged,
    StoredFile,
    folder_entries,
    list_days,
    list_files,
    listing,
    replaced,
)
from telemetry.writer import as_table, write_copy, write_file

if TYPE_CHECKING:
    import pyarrow as pa

QUARANTINE: Final = "quarantine"
# A temporary file older than this was left by a writer that died; the sweep removes it.
_STALE_SECONDS: Final = 3600
# Writes sweep for leftovers at most this often; retention run on its own always does.
_SWEEP_SECONDS: Final = 600
_SWEPT: Final = ".swept"


@dataclass(slots=True, frozen=True)
class RetentionResult:
    """What one retention pass removed."""

    removed_days: tuple[date, ...] = ()
    removed_sessions: int = 0


# -- the compaction commit --------------------------------------------------------------------


def commit_compacted(
    store: Layout,
    day: date,
    stem: str,
    sessions: pa.Table,
    targets: pa.Table,
    rollup: pa.Table,
    replaces: list[StoredFile],
) -> Path | None:
    """Store one day's merged files in place of the sessions files ``replaces`` (and their
    targets and rollups); returns the new sessions file, or None when the day was removed
    while it was being compacted (nothing is left then).

    The caller holds the store's lock. Targets and rollup are renamed first and the sessions
    file last, naming the stems it replaces in its metadata: from its rename on, every
    listing ignores the replaced files, so no build is ever counted twice or missed; then
    they are moved to a hidden folder, where the snapshots taken before still find them.
    """
    stems = sorted(f.stem for f in replaces)
    metadata = {REPLACES_KEY: json.dumps(stems).encode()}
    written: list[Path] = []
    # Shared with writers, and so never beside a removal: the day is either still all there
    # (and its folders may be made, e.g. a targets folder a crash took), or gone.
    with guard(store.root, exclusive=False):
        if not any(f.path.exists() for f in replaces):
            return None  # retention removed the day: the merged copy must not bring it back
        try:
            written.append(write_file(store, "targets", day, stem, as_table(targets, "targets")))
            written.append(
                write_file(store, "daily_targets", day, stem, as_table(rollup, "daily_targets"))
            )
            written.append(
                write_file(
                    store, "sessions", day, stem, as_table(sessions, "sessions"), metadata=metadata
                )
            )
        except StorageError:
            for path in written:  # not committed: nobody reads them
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        _remove_stems(store, day, set(stems))
    return written[-1]


def remove_replaced(store: Layout, day: date) -> int:
    """Take out of ``day`` the files that its compacted sessions file replaces (left by a
    compaction that stopped before it took them out); returns how many sessions files
    went."""
    entries = [
        e for e in folder_entries(store.partition("sessions", day)) if layout.is_data(e.name)
    ]
    hidden = replaced(entries)
    if hidden:
        with guard(store.root, exclusive=False):  # never beside the sweep (see below)
            _remove_stems(store, day, hidden)
    return len(hidden)


def _remove_stems(store: Layout, day: date, stems: set[str]) -> None:
    """Move the files of ``day`` named by ``stems`` into a hidden folder of their dataset,
    where the snapshots taken before still find them until the sweep deletes it."""
    # Sessions first: once a session row is gone nothing counts its targets or rollup.
    for dataset in DATASETS:
        away: Path | None = None
        for entry in folder_entries(store.partition(dataset, day)):
            if layout.is_data(entry.name) and layout.stem(entry.name) in stems:
                if away is None:
                    away = _trash_folder(store, dataset)
                    away.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(entry.path, away / entry.name)


def _trash_folder(store: Layout, dataset: Dataset) -> Path:
    """A new hidden folder for what is taken out of ``dataset``, named by the time it was
    made (which the sweep reads) and a random part."""
    return store.dataset(dataset) / f"{layout.TRASH_PREFIX}{int(time.time())}-{uuid.uuid4().hex}"


def write_copies(store: Layout, day: date) -> int:
    """Write the Parquet copy of each compacted file of ``day`` that has none in this
    schema version, from the file's rows as every reader reads them; returns how many were
    written. :class:`StorageError` when one cannot be written (the copies written before
    it stay: each is whole).

    Under the guard shared, as a write: retention never removes the day meanwhile, and a
    day it removed gets no copy (its folder is never made again)."""
    written = 0
    with guard(store.root, exclusive=False):
        snapshot = Snapshot.take(store, days=[day])
        for dataset in DATASETS:
            copied = snapshot.copies(dataset)

            def lacking(stored: StoredFile, copied: dict[Path, Path] = copied) -> bool:
                return layout.is_compacted(stored.path.name) and stored.path not in copied

            for stored in snapshot.files(dataset, where=lacking, warn=False):
                try:
                    table = snapshot.read(stored, dataset)
                except SnapshotChanged:
                    continue  # deleted meanwhile (by clear): nothing to copy
                if table is None:
                    continue  # damaged: verify names it, and readers leave it out
                write_copy(stored.path, table, day)
                written += 1
    return written


# -- retention --------------------------------------------------------------------------------


def apply_retention(
    store: Layout,
    *,
    retention_days: int | None,
    max_sessions: int | None,
    today: date,
    sweep: bool = True,
    wait: bool = True,
) -> RetentionResult:
    """Remove whole day partitions: older than ``retention_days``, then oldest first while
    more than ``max_sessions`` sessions are stored (the newest day is always kept); with
    ``sweep``, also what writers that died left behind and what is past its grace.

    What goes is decided and renamed away while no write is under way (the guard, held
    alone), so a write never loses its day folder, and a build is removed whole or not at
    all; deciding that nothing goes needs no lock. Without ``wait``, retention is skipped
    while another process writes or compacts (the next write applies it)."""
    result = RetentionResult()
    plan = retention_plan(store, retention_days, max_sessions, today)
    if plan[0] or plan[1]:
        with guard(store.root, exclusive=True, wait=wait) as held:
            if held:
                days, orphans, removed_sessions = retention_plan(
                    store, retention_days, max_sessions, today
                )
                for day in days:
                    for dataset in DATASETS:  # sessions first: no session loses targets
                        remove_partition(store, dataset, day)
                for dataset, day in orphans:
                    remove_partition(store, dataset, day)
                # The month packs holding removed days go too (readers already pass over
                # a removed day's rows in them): the months job packs what is left again.
                months.retire(store.root, {layout.month_of(day) for day in days})
                result = RetentionResult(tuple(days), removed_sessions)
    if sweep:
        sweep_leftovers(store, wait=wait)
    return result


def retention_plan(
    store: Layout, retention_days: int | None, max_sessions: int | None, today: date
) -> tuple[list[date], list[tuple[Dataset, date]], int]:
    """The days retention removes, the targets and rollup partitions past the cutoff whose
    sessions are gone (a crash between the renames of a removal), and the sessions those
    days hold."""
    removed: list[date] = []
    removed_sessions = 0
    # Counted from the names alone: this runs after every write, over every day stored.
    day_rows: dict[date, int] = {}
    for day, entries in listing(store, "sessions"):
        if entries:
            day_rows[day] = sum(_rows_named(entry, day) for entry in entries)
    days = sorted(day_rows)
    orphans: list[tuple[Dataset, date]] = []
    if retention_days is not None:
        cutoff = today - timedelta(days=retention_days)
        while days and days[0] < cutoff:
            day = days.pop(0)
            removed.append(day)
            removed_sessions += day_rows[day]
        orphans = [
            (dataset, day)
            for dataset in DATASETS[1:]
            for day in list_days(store, dataset)
            if day < cutoff and day not in removed
        ]
    if max_sessions is not None:
        total = sum(day_rows[d] for d in days)
        while len(days) > 1 and total > max_sessions:
            day = days.pop(0)
            removed.append(day)
            removed_sessions += day_rows[day]
            total -= day_rows[day]
    return removed, orphans, removed_sessions


def sweep_due(store: Layout) -> bool:
    """Whether the store was last swept for leftovers over ten minutes ago (a write after
    every build need not look in every day folder: leftovers are removed only once an hour
    old anyway); marks it swept now when so."""
    marker = store.root / _SWEPT
    try:
        if time.time() - marker.stat().st_mtime < _SWEEP_SECONDS:
            return False
    except OSError:
        pass
    with contextlib.suppress(OSError):
        marker.touch()
    return True


def remove_partition(store: Layout, dataset: Dataset, day: date, *, at_once: bool = False) -> None:
    """Remove one day of ``dataset``: renamed away at once (atomic for readers) to a hidden
    folder that the sweep deletes after the grace, or, ``at_once``, deleted now. A day
    folder that is a link is removed itself, at once, never what it points to."""
    folder = store.partition(dataset, day)
    if store.dataset(dataset).is_symlink():
        return  # its days are kept elsewhere, where the store deletes nothing
    away = _trash_folder(store, dataset)
    try:
        os.rename(folder, away)
    except FileNotFoundError:
        return  # another process removed it first
    except OSError as error:
        raise StorageError(f"could not remove {folder}: {error.strerror or error}") from error
    if at_once or away.is_symlink():
        remove_tree(away)


def sweep_leftovers(store: Layout, *, wait: bool = True) -> bool:
    """:func:`remove_leftovers` while no write, compaction commit or removal is under way
    (the guard, held alone): a write's targets file is never taken for a dead writer's, nor
    a compaction's between its moves of a build's sessions and targets files. Without
    ``wait``, nothing is done while another process holds the guard; returns whether the
    sweep ran."""
    with guard(store.root, exclusive=True, wait=wait) as held:
        if held:
            remove_leftovers(store)
        return held


def remove_leftovers(store: Layout) -> None:
    """Remove what writers that died left behind, once it is over an hour old (younger files
    may belong to a write in progress): temporary files, half-removed partitions, and
    targets files whose sessions file never appeared; and what maintenance took out of the
    store, once its grace is over. The caller holds the guard alone
    (:func:`sweep_leftovers`)."""
    now = time.time()

    def stale(entry: os.DirEntry[str]) -> bool:
        return _age(entry, now) > _STALE_SECONDS

    # The sessions stems of each day folder: those of a folder that cannot be listed are
    # unknown, and nothing of that day is taken for a leftover. Listed even in a sessions
    # folder that links elsewhere (where nothing is deleted).
    stems: dict[str, set[str] | None] = {}
    for entry in folder_entries(store.dataset("sessions")):
        if layout.partition_day(entry.name) is not None:
            try:
                stems[entry.name] = {layout.stem(e.name) for e in os.scandir(entry.path)}
            except OSError:
                stems[entry.name] = None
    for dataset in DATASETS:
        if store.dataset(dataset).is_symlink():
            continue  # kept elsewhere: read, never deleted from
        # The files compaction took out and that are still kept aside: their copies stay
        # as long as they do, for the readers that listed them.
        kept_aside = {
            inner.name
            for entry in folder_entries(store.dataset(dataset))
            if entry.name.startswith(layout.TRASH_PREFIX)
            and _trashed_at(entry.name) >= now - GRACE_SECONDS
            for inner in folder_entries(entry.path)
        }
        for entry in folder_entries(store.dataset(dataset)):
            if entry.name.startswith(layout.TRASH_PREFIX):
                if _trashed_at(entry.name) < now - GRACE_SECONDS:
                    remove_tree(Path(entry.path))
                continue
            if entry.is_symlink():
                continue  # a day kept elsewhere: read, never deleted from
            committed = None if dataset == "sessions" else stems.get(entry.name, set())
            if dataset != "sessions" and committed is None:
                continue  # its sessions could not be listed: nothing here is known to be dead
            inside = folder_entries(entry.path)
            for inner in inside:
                if inner.name == layout.COPIES and inner.is_dir(follow_symlinks=False):
                    live = {e.name for e in inside} | kept_aside
                    _remove_dead_copies(inner.path, live, stale)
                    continue
                leftover = inner.name.startswith(layout.TMP_PREFIX) or (
                    committed is not None
                    and inner.name.endswith(".arrow")
                    and layout.stem(inner.name) not in committed
                )
                if leftover and stale(inner):
                    with contextlib.suppress(OSError):
                        os.unlink(inner.path)
    for entry in folder_entries(store.root / PENDING):  # a recording killed while writing
        if entry.name.startswith(layout.TMP_PREFIX) and stale(entry):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    # The month packs set aside by the job or by retention, once their hour is over: removed
    # builds do not outlive their day, whether the months job runs or not.
    months.sweep(store.root, now=now)


def _remove_dead_copies(
    folder: str, names: set[str], stale: Callable[[os.DirEntry[str]], bool]
) -> None:
    """Remove the Parquet copies in ``folder`` whose file is no longer among ``names`` (its
    day folder's, and those kept aside for their hour: compaction replaced it and its hour
    is over, ``verify --repair`` moved it) or that hold another schema version, and
    temporary files, once they are an hour old. A reader that chose such a copy before
    reads the file where it is now instead."""
    for entry in folder_entries(folder):
        copy = layout.copied(entry.name)
        dead = entry.name.startswith(layout.TMP_PREFIX) or (
            copy is not None and (copy[0] not in names or copy[1] != SCHEMA_VERSION)
        )
        if dead and stale(entry):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _trashed_at(name: str) -> float:
    """When a hidden removed folder was made, from its name (0 for a name without it)."""
    moment = name[len(layout.TRASH_PREFIX) :].split("-", 1)[0]
    return float(moment) if moment.isdigit() else 0.0


# -- checking ---------------------------------------------------------------------------------


def verify(store: Layout) -> Iterator[Finding]:
    """Every data file, every Parquet copy of one, and every month's pack, with the reason
    it cannot be read in full, or None when it can."""
    for dataset in DATASETS:
        for stored in list_files(store, dataset):
            found = problem(stored.path, dataset, full=True)
            if found != VANISHED:
                yield Finding(stored.path, found)
            copy = Path(layout.copy_path(str(stored.path), SCHEMA_VERSION))
            if layout.is_compacted(stored.path.name) and copy.exists():
                found = copy_problem(copy, dataset, stored.rows)
                if found != VANISHED:
                    yield Finding(copy, found)
    for path, found in months.check(store.root):
        yield Finding(path, found)


def quarantine(store: Layout, path: Path) -> Path:
    """Move a damaged file out of the data (into ``<dir>/quarantine/``, under the same
    relative path), where readers no longer see it and nothing deletes it.

    Nothing outside the store is moved: a file in a day folder that links elsewhere is
    refused, as is a file the user may not read (it is not known to be damaged)."""
    real = Path(os.path.realpath(path.parent))
    if not real.is_relative_to(os.path.realpath(store.root)):
        raise StorageError(
            f"{path.parent} is a link to {real}, outside the store; move {path.name} "
            f"aside there yourself"
        )
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as error:
        if not isinstance(error, FileNotFoundError):  # gone: the move below says so
            raise StorageError(
                f"{path} is {UNREADABLE} ({reason(error)}), which is not damage; fix "
                f"its permissions and verify again"
            ) from error
    relative = path.relative_to(store.root)
    target = store.root / QUARANTINE / relative
    if target.exists():
        target = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    except OSError as error:
        raise StorageError(
            f"could not move {path} to {target}: {error.strerror or error}"
        ) from error
    return target


# -- clear ------------------------------------------------------------------------------------


def clear(store: Layout, count_sessions: Callable[[], int]) -> int:
    """Remove all telemetry data, quarantined and removed files included, at once; returns
    the number of sessions removed (``count_sessions`` counts the stored ones, the builds
    still pending are added). The caller holds the folding lock and the guard alone."""
    try:
        waiting = len(pending_files(store.root))
    except OSError:
        waiting = 0  # a folder we may not list: removed below if we may
    count = count_sessions() + waiting
    remove_tree(store.root / PENDING)
    for dataset in DATASETS:
        for day in list_days(store, dataset):
            remove_partition(store, dataset, day, at_once=True)
        remove_tree(store.dataset(dataset))
    remove_tree(store.root / QUARANTINE)
    # The month packs, the daily rollups and the jobs' run log are of the builds removed too.
    remove_tree(store.root / layout.MONTHS)
    remove_tree(store.root / layout.ROLLUPS)
    remove_tree(store.root / layout.JOBS)
    return count


def remove_tree(path: Path) -> None:
    """Remove a folder and what is in it; a link (to a day kept on another disk, say) is
    removed itself, never what it points to (``shutil.rmtree`` refuses a link, and would
    leave it behind for ever)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _age(entry: os.DirEntry[str], now: float) -> float:
    try:
        return now - entry.stat().st_mtime
    except OSError:
        return 0.0


def _rows_named(entry: os.DirEntry[str], day: date) -> int:
    rows = layout.rows_named(entry.name)
    return rows if rows is not None else count_rows(StoredFile(Path(entry.path), day, None))


def count_rows(stored: StoredFile) -> int:
    """A file's rows: from its name where it says, else by opening it (0 if it cannot be)."""
    if stored.rows is not None:
        return stored.rows
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        with ipc.open_file(stored.path) as reader:
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (OSError, pa.ArrowException):
        return 0
