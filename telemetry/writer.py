"""The writer: stores sessions and their targets as new files of their day partitions.

Every write makes new files with unique names (:func:`telemetry.layout.new_stem`), so
concurrent builds never overwrite each other. A file is written to a hidden temporary name,
synced, then renamed into place, and its folder synced. The targets file is renamed first
and the sessions file last: a session row is the commit marker, and readers only count
targets of sessions they can see (:mod:`telemetry.snapshot`). So a session is visible
completely or not at all, and a crash leaves at worst a hidden temporary file or
unreferenced targets, which retention removes once they are an hour old.

Every write holds the guard shared (:func:`telemetry.locks.guard`), so a removal never
takes a day folder from under it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from telemetry import layout
from telemetry.errors import StorageError, write_failure
from telemetry.layout import Layout
from telemetry.locks import guard
from telemetry.schema import SCHEMA_VERSION, SCHEMAS, Dataset

if TYPE_CHECKING:  # loaded by the functions that write: a reader never needs them
    import pyarrow as pa
    import pyarrow.ipc as ipc

_BATCH_ROWS: Final = 65_536
# A backfill of many days writes this many days at once (most of a day's write is
# compressing and syncing, which let go of the GIL).
_THREADS: Final = 8


def write(
    store: Layout,
    sessions: pa.RecordBatch | pa.Table,
    targets: pa.RecordBatch | pa.Table,
    *,
    clock: Callable[[], datetime],
    stem: str | None = None,
) -> list[date]:
    """Store sessions and their targets, each in the partition of the UTC day its session
    started; returns the days written to. A given ``stem`` names the files (the same stem
    again replaces them: a rewrite of the same rows); it is for sessions of one day."""
    import pyarrow as pa
    import pyarrow.compute as pc  # only writers need it: readers start faster without

    sessions_table = as_table(sessions, "sessions")
    targets_table = as_table(targets, "targets")
    if sessions_table.num_rows == 0:
        return []
    session_days = pc.cast(sessions_table["start_time"], pa.date32())
    days = sorted(set(session_days.to_pylist()))
    if len(days) == 1:
        groups = [(days[0], sessions_table, targets_table)]
    else:
        # Each target row goes to the day of its session: both tables sorted by day, then
        # cut where the day changes.
        target_days = session_days.take(
            pc.index_in(targets_table["session_id"], value_set=sessions_table["session_id"])
        )
        by_day_s = _by_day(sessions_table, session_days)
        by_day_t = _by_day(targets_table, target_days)
        sessions_per_day = pc.value_counts(session_days).to_pylist()
        targets_per_day = pc.value_counts(target_days.drop_null()).to_pylist()
        session_count = {d["values"]: d["counts"] for d in sessions_per_day}
        target_count = {d["values"]: d["counts"] for d in targets_per_day}
        groups = []
        s_at = t_at = 0
        for day in days:
            s_rows, t_rows = session_count[day], target_count.get(day, 0)
            groups.append((day, by_day_s.slice(s_at, s_rows), by_day_t.slice(t_at, t_rows)))
            s_at += s_rows
            t_at += t_rows
    if stem is not None and len(groups) != 1:
        raise StorageError(f"a fixed file name stem ({stem}) is for one day's sessions")
    with guard(store.root, exclusive=False):
        if len(groups) == 1:
            day, day_sessions, day_targets = groups[0]
            write_day(store, day, day_sessions, day_targets, stem=stem or layout.new_stem(clock()))
            return days
        _write_days(store, groups, clock)
    return days


def _write_days(
    store: Layout,
    groups: list[tuple[date, pa.Table, pa.Table]],
    clock: Callable[[], datetime],
) -> None:
    """Store many days at once (a backfill), each under a stem of its own, in threads: most
    of a day's write is compressing and syncing, which release the GIL. A day's two files
    are written and synced under their temporary names first, then renamed as
    :func:`write_day` renames them (targets, then sessions). A day that fails leaves no file
    of its own; the first failure, in day order, is raised once every day was tried. The
    caller holds the guard."""
    from concurrent.futures import ThreadPoolExecutor

    def one(day: date, sessions: pa.Table, targets: pa.Table) -> None:
        stem = layout.new_stem(clock())
        staged: list[_Staged] = []
        try:
            staged.append(_stage(store, "targets", day, stem, prune_dictionaries(targets)))
            staged.append(_stage(store, "sessions", day, stem, sessions))
        except BaseException:  # the targets file staged before is no use without its sessions
            for file in staged:
                with contextlib.suppress(OSError):
                    file.temporary.unlink()
            raise
        _commit(staged)

    with ThreadPoolExecutor(max_workers=min(_THREADS, len(groups))) as pool:
        for done in [pool.submit(one, *group) for group in groups]:
            done.result()  # the first failure, once every day was tried


def write_day(
    store: Layout, day: date, sessions: pa.Table, targets: pa.Table, *, stem: str
) -> None:
    """Store one day's sessions and targets under ``stem``; the caller holds the guard."""
    # Targets first: the sessions file, renamed last, is what makes the build visible.
    targets_file = write_file(store, "targets", day, stem, targets)
    try:
        write_file(store, "sessions", day, stem, sessions)
    except StorageError:
        with contextlib.suppress(OSError):
            targets_file.unlink()
        raise


def write_file(
    store: Layout,
    dataset: Dataset,
    day: date,
    stem: str,
    table: pa.Table,
    *,
    metadata: dict[bytes, bytes] | None = None,
) -> Path:
    """Write one data file atomically (temporary name, sync, rename, sync the folder)."""
    import pyarrow.ipc as ipc

    folder = store.partition(dataset, day)
    final = folder / layout.file_name(stem, table.num_rows)
    temporary = folder / layout.temporary_name(stem)
    schema = SCHEMAS[dataset]
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with temporary.open("xb") as handle:
            with ipc.new_file(handle, schema, options=_options()) as writer:
                # One batch per 64k rows: a batch per build makes files large and slow.
                writer.write_table(table.combine_chunks(), max_chunksize=_BATCH_ROWS)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
        _fsync_dir(folder)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise StorageError(f"could not write {final}: {write_failure(error)}") from error
    return final


def _options(*, threads: bool = True) -> ipc.IpcWriteOptions:
    """zstd-compressed buffers; without ``threads`` when the file is written in a thread of
    its own (a backfill's days: one more pool per file would only make them wait on each
    other)."""
    import pyarrow.ipc as ipc

    key = "threads" if threads else "alone"
    if key not in _OPTIONS:
        _OPTIONS[key] = ipc.IpcWriteOptions(compression="zstd", use_threads=threads)
    return _OPTIONS[key]


_OPTIONS: dict[str, ipc.IpcWriteOptions] = {}


@dataclass(slots=True, frozen=True)
class _Staged:
    """A data file written and synced under its temporary name, not yet renamed."""

    temporary: Path
    final: Path


def _stage(store: Layout, dataset: Dataset, day: date, stem: str, table: pa.Table) -> _Staged:
    """Write one data file under its temporary name and sync it (see :func:`_commit`). The
    file is made in memory first, which pyarrow does without the GIL, and written at once:
    writing to a file object takes the GIL back for every buffer."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    folder = store.partition(dataset, day)
    final = folder / layout.file_name(stem, table.num_rows)
    temporary = folder / layout.temporary_name(stem)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, SCHEMAS[dataset], options=_options(threads=False)) as writer:
        writer.write_table(table.combine_chunks(), max_chunksize=_BATCH_ROWS)
    data = sink.getvalue()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with temporary.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise StorageError(f"could not write {final}: {write_failure(error)}") from error
    return _Staged(temporary, final)


def _commit(staged: list[_Staged]) -> None:
    """Rename staged files into place in their order, syncing each folder: the last one
    (the sessions file) is the commit marker. When a rename fails, none of them stays:
    the ones renamed before are removed again, the rest left unrenamed are removed."""
    for at, file in enumerate(staged):
        try:
            os.rename(file.temporary, file.final)
        except OSError as error:
            for left in staged[at:]:
                with contextlib.suppress(OSError):
                    left.temporary.unlink()
            for renamed in staged[:at]:
                with contextlib.suppress(OSError):
                    renamed.final.unlink()
            raise StorageError(f"could not write {file.final}: {write_failure(error)}") from error
        _fsync_dir(file.final.parent)


def write_copy(source: Path, table: pa.Table, day: date) -> Path:
    """Write the Parquet copy of the data file ``source`` (its rows ``table``, in this
    version's schema) with the day as a ``date`` column, atomically, into the hidden folder
    of ``source``'s day (:func:`telemetry.layout.copy_path`); :class:`StorageError` when it
    cannot, as when the day folder is gone (it is never made again here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = Path(layout.copy_path(str(source), SCHEMA_VERSION))
    # A name of its own: what a killed run left (the sweep's to remove) is never in the way.
    temporary = final.parent / f"{layout.TMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}"
    dated = table.append_column(
        pa.field(layout.PARTITION_KEY, pa.date32(), nullable=False),
        pa.repeat(pa.scalar(day, pa.date32()), table.num_rows),
    )
    try:
        final.parent.mkdir(exist_ok=True)
        with temporary.open("xb") as handle:
            pq.write_table(dated, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
        _fsync_dir(final.parent)
    except BaseException as error:  # Ctrl-C too: no temporary file is left behind
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise StorageError(f"could not write {final}: {write_failure(error)}") from error
        raise
    return final


def as_table(data: pa.RecordBatch | pa.Table, dataset: Dataset) -> pa.Table:
    """``data`` as a table of ``dataset``'s schema; :class:`StorageError` when it has another."""
    import pyarrow as pa

    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    schema = SCHEMAS[dataset]
    if not table.schema.equals(schema, check_metadata=False):
        raise StorageError(
            f"the {dataset} rows do not have the {dataset} schema: got {table.schema.names}"
        )
    return table.replace_schema_metadata(schema.metadata)


def prune_dictionaries(table: pa.Table) -> pa.Table:
    """``table`` in one chunk, each dictionary holding only the labels its rows use: a
    filter keeps the whole dictionary, and a day's file would carry every other day's
    target names."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if not pa.types.is_dictionary(field.type):
            continue
        column = table.column(index)
        if column.num_chunks == 1:
            chunk = column.chunk(0)
            labels = len(chunk.dictionary)
            if (
                pc.count_distinct(chunk.indices).as_py() == labels
                and pc.count_distinct(chunk.dictionary).as_py() == labels
            ):
                continue  # every label is used, each once (a build's targets, most days)
        plain = column.cast(field.type.value_type).combine_chunks()
        table = table.set_column(index, field, plain.dictionary_encode().cast(field.type))
    return table.combine_chunks()


def _by_day(table: pa.Table, days: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with its rows in the order of their ``days``, the same order kept within
    a day; as it is when it already is (a backfill read in time order)."""
    import pyarrow.compute as pc

    if days.null_count == 0 and (
        len(days) < 2 or pc.all(pc.less_equal(days[:-1], days[1:])).as_py()
    ):
        return table
    return table.take(pc.sort_indices(days))


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is; not every OS allows it.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
