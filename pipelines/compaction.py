"""Compaction: a closed day's one-file-per-build merged into one file per dataset, with the
day's rollup of its targets beside it, and a Parquet copy of each file it writes.

A store written by ``builder record`` holds a sessions file and a targets file per build;
a year of 100,000 builds is 200,000 small files that every long-window query opens.
Compaction merges each day before today (UTC) into one sessions file and one targets file,
and adds the day's
``daily_targets`` rollup (per target: runs by status and the summed duration of executed
runs), which lets the bottlenecks of a long window read a few hundred rows per day instead of
every target run. The numbers every command reports stay exactly the same.

It is idempotent (a day already compacted is left alone; builds stored into it later are
merged on the next run), atomic (readers see the day before or after, never half of it, see
:meth:`telemetry.storage.TelemetryStorage.write_compacted`), resumable (a run stopped at any
point leaves a store that reads the same, and the next run finishes the work) and locked (it
holds the store's lock, so two runs never compact the same day). A file that cannot be read in
full is left where it is, for ``builder telemetry verify --repair``. A day whose folder is a
link (kept on another disk, say) is read like any other but never compacted, with a warning:
nothing outside the store is written or deleted.

Each compacted file also gets a Parquet copy in a hidden ``.parquet`` folder of its day,
which ``builder telemetry sql`` reads instead of it (DuckDB reads Parquet natively, and
counts a file's rows from its footer); a run writes the copies that are missing, of days
compacted by earlier versions too. A copy that cannot be written (a full disk) stops the run
as a merged file does: what was committed stays, and readers read the file without a copy.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import polars as pl
import pyarrow as pa

from telemetry import layout
from telemetry.errors import StorageError, TelemetryWarning
from telemetry.events import EXECUTED
from telemetry.progress import Progress, no_progress
from telemetry.schema import DATASETS, SCHEMAS, Dataset
from telemetry.snapshot import Snapshot, SnapshotChanged, StoredFile, readable
from telemetry.storage import TelemetryStorage
from telemetry.writer import prune_dictionaries


@dataclass(slots=True, frozen=True)
class CompactedDay:
    """What compaction did to one day."""

    day: date
    files: int  # the builds' sessions files merged (a compacted file counts as one)
    sessions: int
    targets: int
    rollups: int = 0  # the rollup's rows, one per target
    target_files: int = 0  # the builds' targets files merged
    copies: int = 0  # the Parquet copies written (of a day merged before, too: files is 0)

    @property
    def merged(self) -> bool:
        """Whether the day's builds were merged (not only its missing copies written)."""
        return self.files > 0


def compact(
    storage: TelemetryStorage,
    *,
    days: Iterable[date] | None = None,
    progress: Progress | None = None,
) -> list[CompactedDay]:
    """Compact the closed days (before today, UTC) that need it, or only ``days``; returns
    the days worked on, oldest first: those merged, and those whose missing Parquet copies
    were written (:attr:`CompactedDay.merged` tells). A day already compacted, with nothing
    stored into it since and its copies there, is skipped. ``progress`` is told the days
    looked at, of the days chosen."""
    told = progress or no_progress
    today = storage.today()
    done: list[CompactedDay] = []
    if not storage.days("sessions"):
        return done  # nothing stored: the store is not even created
    if not storage.can_lock:
        raise StorageError(
            "compaction needs file locks, which this platform does not have: two runs at "
            "once would each keep a merged copy of the same builds"
        )
    try:
        with storage.lock():
            chosen = storage.days("sessions") if days is None else sorted(set(days))
            for looked_at, day in enumerate(chosen):
                told(looked_at, len(chosen))
                if day >= today:
                    continue  # builds are still being stored into it
                linked = storage.links(day)
                if linked:
                    # A day kept elsewhere (moved to another disk): compaction writes and
                    # deletes files, and does so only inside the store.
                    warnings.warn(
                        f"skipping {linked[0]}: it is a link to "
                        f"{os.path.realpath(linked[0])}; compaction changes nothing outside "
                        f"{storage.dir}",
                        TelemetryWarning,
                        stacklevel=2,
                    )
                    continue
                result = _compact_day(storage, day)
                # Each compacted file gets its Parquet copy, which `builder telemetry sql`
                # reads (days compacted before copies existed, or whose copy a run did not
                # finish, included). A copy that cannot be written stops the run as a
                # merged file does: the day stays readable (its file is read instead), and
                # the next run writes it.
                copies = storage.write_copies(day)
                if result is not None:
                    done.append(dataclasses.replace(result, copies=copies))
                elif copies:
                    done.append(CompactedDay(day, 0, 0, 0, copies=copies))
            told(len(chosen), len(chosen))
    finally:
        # What earlier runs took out (and leftovers of dead writers) goes once its hour is
        # over, also in a store that no longer receives builds (whose writes would sweep
        # it), and also after a run that failed: on a full disk, that is what frees space.
        storage.sweep(wait=False)  # never waits on a write: the next run sweeps
    return done


def pending(storage: TelemetryStorage, *, days: Iterable[date] | None = None) -> list[date]:
    """The closed days (of ``days``) that :func:`compact` would work on: those holding more
    than their compacted file, or a build's files, or a compacted file without its rollup
    or its Parquet copies; days kept elsewhere (links) are not compacted. Read from the
    files' names: nothing is opened, and nothing is written (recorded builds waiting in the
    pending folder are not folded in: a plan changes nothing)."""
    today = storage.today()
    snapshot = Snapshot.take(storage.layout, days=days)
    sessions: dict[date, list[StoredFile]] = {}
    for stored in snapshot.committed("sessions"):
        sessions.setdefault(stored.day, []).append(stored)
    rollups = {(f.day, f.stem) for f in snapshot.committed("daily_targets")}
    copied = {path for dataset in DATASETS for path in snapshot.copies(dataset)}
    uncopied = {
        f.day
        for dataset in DATASETS
        for f in snapshot.committed(dataset)
        if layout.is_compacted(f.path.name) and f.path not in copied
    }
    waiting = []
    for day, files in sorted(sessions.items()):
        if day >= today or storage.links(day):
            continue
        done = (
            len(files) == 1
            and layout.is_compacted(files[0].path.name)
            and (day, files[0].stem) in rollups
            and day not in uncopied
        )
        if not done:
            waiting.append(day)
    return waiting


def _compact_day(storage: TelemetryStorage, day: date) -> CompactedDay | None:
    storage.remove_replaced(day)
    snapshot = storage.snapshot(days=[day])
    rollups = {f.stem for f in snapshot.committed("daily_targets")}

    def compacted(files: list[StoredFile]) -> bool:
        return len(files) == 1 and files[0].stem in rollups

    # Checked quietly first: a damaged file left in a compacted day for repair does not make
    # it merged again (and is named below only when there is merging to do).
    if compacted(readable("sessions", snapshot.committed("sessions"), warn=False)):
        return None  # compacted, and nothing it could merge stored since
    targets_files = {f.stem: f for f in snapshot.listed["targets"]}
    sessions: list[pa.Table] = []
    targets: list[pa.Table] = []
    merged: list[StoredFile] = []
    paired = 0
    for stored in snapshot.files("sessions"):
        pair = targets_files.get(stored.stem)
        session_rows = _read(snapshot, stored, "sessions")
        target_rows = _read(snapshot, pair, "targets") if pair else SCHEMAS["targets"].empty_table()
        if session_rows is None or target_rows is None:
            continue  # damaged: left in place, still skipped by readers with a warning
        sessions.append(session_rows)
        targets.append(target_rows)
        merged.append(stored)
        paired += pair is not None
    if not merged or compacted(merged):
        return None
    session_table = pa.concat_tables(sessions).sort_by(
        [("start_time", "ascending"), ("session_id", "ascending")]
    )
    target_table = prune_dictionaries(pa.concat_tables(targets))
    rolled = rollup(target_table)
    rollup_rows = rolled.num_rows
    written = storage.write_compacted(day, session_table, target_table, rolled, merged)
    if written is None:
        return None
    return CompactedDay(
        day, len(merged), session_table.num_rows, target_table.num_rows, rollup_rows, paired
    )


def rollup(targets: pa.Table) -> pa.Table:
    """One ``daily_targets`` row per target of ``targets`` (rows of the targets schema)."""
    frame = pl.from_arrow(targets.select(["target", "status", "duration_ms"]))
    assert isinstance(frame, pl.DataFrame)
    status = pl.col("status").cast(pl.String)
    summed = (
        frame.group_by(pl.col("target").cast(pl.String))
        .agg(
            built=(status == "built").sum().cast(pl.Int64),
            cached=(status == "cached").sum().cast(pl.Int64),
            failed=(status == "failed").sum().cast(pl.Int64),
            skipped=(status == "skipped").sum().cast(pl.Int64),
            executed_ms=pl.col("duration_ms").filter(status.is_in(sorted(EXECUTED))).sum(),
        )
        .sort("target")
    )
    schema = SCHEMAS["daily_targets"]
    return summed.to_arrow().cast(schema).replace_schema_metadata(schema.metadata)


def _read(snapshot: Snapshot, stored: StoredFile, dataset: Dataset) -> pa.Table | None:
    """All of a file's rows in this version's schema (columns it predates as nulls); None
    when it cannot be read in full."""
    if not readable(dataset, [stored]):
        return None
    try:
        return snapshot.read(stored, dataset)
    except SnapshotChanged:
        return None  # its day was removed meanwhile: nothing of it is written back
