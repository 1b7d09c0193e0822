"""Compaction: a closed day's one-file-per-build merged into one file per dataset, with the
day's rollup of its targets beside it, and a Parquet copy of each file it writes.

A store written by ``builder record`` holds a sessions file and a targets file per build;
a year of them is 100,000 small files that every long-window query opens. Compaction merges
each day before today (UTC) into one sessions file and one targets file, and adds the day's
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

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import polars as pl
import pyarrow as pa

from telemetry.errors import StorageError, TelemetryWarning
from telemetry.events import EXECUTED
from telemetry.schema import SCHEMAS, Dataset
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


def compact(storage: TelemetryStorage, *, days: Iterable[date] | None = None) -> list[CompactedDay]:
    """Compact the closed days (before today, UTC) that need it, or only ``days``; returns
    the days compacted, oldest first. A day already compacted, with nothing stored into it
    since, is skipped."""
    today = storage.today()
    done: list[CompactedDay] = []
    if not storage.days("sessions"):
        return done  # nothing stored: the store is not even created
    if not storage.can_lock:
        raise StorageError(
            "compaction needs file locks, which this platform does not have: two runs at "
            "once would each keep a merged copy of the same builds"
        )
    with storage.lock():
        chosen = storage.days("sessions") if days is None else sorted(set(days))
        for day in chosen:
            if day >= today:
                continue  # builds are still being stored into it
            linked = storage.links(day)
            if linked:
                # A day kept elsewhere (moved to another disk): compaction writes and deletes
                # files, and does so only inside the store.
                warnings.warn(
                    f"skipping {linked[0]}: it is a link to {os.path.realpath(linked[0])}; "
                    f"compaction changes nothing outside {storage.dir}",
                    TelemetryWarning,
                    stacklevel=2,
                )
                continue
            result = _compact_day(storage, day)
            if result is not None:
                done.append(result)
            # Each compacted file gets its Parquet copy, which `builder telemetry sql` reads
            # (days compacted before copies existed, or whose copy a run did not finish,
            # included). A copy that cannot be written stops the run as a merged file does:
            # the day stays readable (its file is read instead), and the next run writes it.
            storage.write_copies(day)
    # What earlier runs took out (and leftovers of dead writers) goes once its hour is
    # over, also in a store that no longer receives builds (whose writes would sweep it).
    storage.sweep(wait=False)  # never waits on a write: the next run sweeps
    return done


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
    for stored in snapshot.files("sessions"):
        pair = targets_files.get(stored.stem)
        session_rows = _read(snapshot, stored, "sessions")
        target_rows = _read(snapshot, pair, "targets") if pair else SCHEMAS["targets"].empty_table()
        if session_rows is None or target_rows is None:
            continue  # damaged: left in place, still skipped by readers with a warning
        sessions.append(session_rows)
        targets.append(target_rows)
        merged.append(stored)
    if not merged or compacted(merged):
        return None
    session_table = pa.concat_tables(sessions).sort_by(
        [("start_time", "ascending"), ("session_id", "ascending")]
    )
    target_table = prune_dictionaries(pa.concat_tables(targets))
    written = storage.write_compacted(
        day, session_table, target_table, rollup(target_table), merged
    )
    if written is None:
        return None
    return CompactedDay(day, len(merged), session_table.num_rows, target_table.num_rows)


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
