"""The Parquet export of the whole store, and the form other engines take its rows in.

:func:`sink_parquet` writes every dataset of a store as Hive-partitioned, zstd-compressed
Parquet, one file per dataset and day, for Spark, Athena, BigQuery or DuckDB at scale::

    <out>/sessions/date=2025-10-27/part-0.parquet
    <out>/targets/date=2025-10-27/part-0.parquet
    <out>/daily_targets/date=2025-10-26/part-0.parquet
    <out>/_builder-telemetry-export.json

The rows are those of one snapshot of the store (:mod:`telemetry.snapshot`), in the form
:func:`exported` gives them: target labels and statuses as plain strings, and the sessions
with their rates (SPEC §3) computed by the analyzer's own expressions. The partition column
``date`` is in the folder names only, as engines expect of Hive partitioning. The Spark
source (:mod:`telemetry.spark`) yields the same form.

Nothing of anybody's is overwritten: the export goes to a new or empty folder, or replaces an
earlier export (which the marker file names), and is written to a hidden folder beside it
that is renamed into place once whole, so a killed export leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Final

from telemetry import layout
from telemetry.errors import ConfigError, CorruptFileWarning, StorageError, write_failure
from telemetry.layout import Layout
from telemetry.progress import Progress, no_progress
from telemetry.schema import DATASETS, SCHEMA_VERSION, SCHEMAS, Dataset

if TYPE_CHECKING:
    import pyarrow as pa

    from telemetry.snapshot import Snapshot, StoredFile
    from telemetry.storage import TelemetryStorage

# The file that marks a folder as an export of ours, which a later export may replace. Spark,
# Athena and Hive skip names starting with an underscore; it lies outside the datasets anyway.
MARKER: Final = "_builder-telemetry-export.json"
SUFFIX: Final = ".parquet"
_PART: Final = f"part-0{SUFFIX}"
_STAGING: Final = ".tmp-"
_REPLACED: Final = ".old-"
_RETRIES: Final = 3
# What a killed export left is removed once this old (a younger one may be running).
_STALE_SECONDS: Final = 3600


@dataclass(slots=True, frozen=True)
class ParquetExport:
    """What :func:`sink_parquet` wrote: rows of each dataset, and the days they cover."""

    directory: Path
    sessions: int
    targets: int
    daily_targets: int
    days: int


def whole_store(output: Path) -> bool:
    """Whether a Parquet export to ``output`` is the whole store (a folder) rather than the
    sessions as one file: an existing folder, or a path not ending in ``.parquet`` that does
    not exist yet, is the whole store; a name ending in ``.parquet`` is one file.

    Anything else that exists (a file without that suffix) is refused with a
    :class:`~telemetry.errors.ConfigError`: it is unclear which was meant, and neither
    replaces a file that is not an export.

    >>> whole_store(Path("warehouse")), whole_store(Path("sessions.parquet"))  # doctest: +SKIP
    (True, False)
    """
    if output.is_dir():
        return True
    if output.suffix.lower() == SUFFIX:
        return False
    if output.exists() or output.is_symlink():
        raise ConfigError(
            f"{output} exists and is not a folder; give --output a new or empty folder for the "
            f"whole store, or a name ending in {SUFFIX} for the sessions as one file"
        )
    return True


def sink_parquet(
    storage: TelemetryStorage,
    output: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> ParquetExport:
    """Write the whole store (sessions with their rates, targets, daily rollups) as
    Hive-partitioned Parquet in the folder ``output``: new, empty, or an earlier export,
    which is replaced whole; any other folder is refused (:class:`ConfigError`).
    ``progress`` is told the files written, a dataset's day each.

    >>> sink_parquet(TelemetryStorage(".builder-cache/telemetry"), "warehouse")  # doctest: +SKIP
    ParquetExport(directory=PosixPath('warehouse'), sessions=200, targets=25864, ...)
    """
    # A link to a folder exports into the folder it names; the link stays.
    target = Path(os.path.realpath(output))
    _remove_stale(target)
    _check_destination(target, Path(output))
    for _ in range(_RETRIES):
        snapshot = storage.snapshot()
        staging = _staging_folder(target)
        try:
            rows, days = _write_datasets(snapshot, staging, progress or no_progress)
            marker = {"format": "builder-telemetry", "schema_version": SCHEMA_VERSION, "rows": rows}
            (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            _check_destination(target, Path(output))
            _put_in_place(staging, target)
        except _Changed:
            shutil.rmtree(staging, ignore_errors=True)
            continue
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"cannot write {output}: {write_failure(error)}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ParquetExport(
            Path(output), rows["sessions"], rows["targets"], rows["daily_targets"], days
        )
    raise StorageError(
        f"the files in {storage.dir} kept changing while they were exported; try again"
    )


# -- the rows ---------------------------------------------------------------------------------


def exported(table: pa.Table, dataset: Dataset) -> pa.Table:
    """Rows of ``dataset`` in today's schema (what :meth:`Snapshot.read` gives) as other
    engines take them (:func:`exported_schema`): dictionary-encoded labels and statuses as
    plain strings, and sessions with cache_hit_rate, parallelism_utilization and
    targets_per_second, computed by the analyzer's expressions (null for a build that
    reported no targets).

    >>> exported(SCHEMAS["sessions"].empty_table(), "sessions").column_names[-1]
    'targets_per_second'
    """
    if dataset == "sessions":
        import polars as pl

        from telemetry.metrics import with_session_metrics

        names = _rates()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        rates = with_session_metrics(frame.lazy()).select(names).collect().to_arrow()
        for name in names:
            table = table.append_column(name, rates.column(name))
    return table.cast(exported_schema(dataset))


@cache
def exported_schema(dataset: Dataset) -> pa.Schema:
    """The schema of :func:`exported` rows: today's schema of ``dataset`` with dictionaries
    as their values, and the sessions' rates after their stored columns."""
    import pyarrow as pa

    fields = [
        pa.field(f.name, f.type.value_type, f.nullable, f.metadata)
        if pa.types.is_dictionary(f.type)
        else f
        for f in SCHEMAS[dataset]
    ]
    if dataset == "sessions":
        fields += [pa.field(name, pa.float64()) for name in _rates()]
    return pa.schema(fields, metadata=SCHEMAS[dataset].metadata)


@cache
def _rates() -> tuple[str, ...]:
    """The columns the analyzer's expressions add to session rows, in their order."""
    import polars as pl

    from telemetry.metrics import with_session_metrics

    frame = pl.from_arrow(SCHEMAS["sessions"].empty_table())
    assert isinstance(frame, pl.DataFrame)
    added = with_session_metrics(frame.lazy()).collect_schema()
    for name in added:
        # Declared Float64 below: a rate that came out otherwise would change the schema.
        if name not in frame.columns and added[name] != pl.Float64:
            raise TypeError(f"the rate {name} is {added[name]}, expected Float64")
    return tuple(name for name in added if name not in frame.columns)


# -- writing ----------------------------------------------------------------------------------


class _Changed(Exception):
    """A file of the snapshot was deleted before it was read: take a new snapshot."""


def _write_datasets(
    snapshot: Snapshot, folder: Path, progress: Progress
) -> tuple[dict[str, int], int]:
    """Every dataset of ``snapshot`` in ``folder``, a file per day (``progress`` told the
    days of the datasets done); the rows of each, and the number of days."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from telemetry.snapshot import SnapshotChanged

    out = Layout(folder)
    rows: dict[str, int] = {}
    days: set[date] = set()
    grouped = {
        dataset: [
            (day, list(files))
            for day, files in groupby(
                sorted(snapshot.files(dataset), key=lambda f: f.day), key=lambda f: f.day
            )
        ]
        for dataset in DATASETS
    }
    total = sum(len(groups) for groups in grouped.values())
    done = 0
    progress(done, total)
    for dataset in DATASETS:
        os.makedirs(out.dataset(dataset))
        rows[dataset] = 0
        for day, files in grouped[dataset]:
            done += 1
            try:
                tables = list(_readable(snapshot, files, dataset))
            except SnapshotChanged:
                raise _Changed from None
            if tables:
                table = exported(pa.concat_tables(tables), dataset)
                partition = out.partition(dataset, day)
                partition.mkdir()
                pq.write_table(table, partition / _PART, compression="zstd")
                rows[dataset] += table.num_rows
                days.add(day)
            progress(done, total)
    return rows, len(days)


def _readable(
    snapshot: Snapshot, files: Iterable[StoredFile], dataset: Dataset
) -> Iterable[pa.Table]:
    for stored in files:
        table = snapshot.read(stored, dataset)
        if table is None:
            warnings.warn(f"skipping {stored.path}: damaged data", CorruptFileWarning, stacklevel=4)
            continue
        yield table


# -- the destination --------------------------------------------------------------------------


def _check_destination(target: Path, named: Path) -> None:
    """Refuse a destination whose files are not an earlier export of ours."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(
            f"{named} exists and is not a folder; give a new or empty folder for the export"
        )
    if any(os.scandir(target)) and not _is_export(target):
        raise ConfigError(
            f"{named} is a folder holding files that are not an earlier export; give a new or "
            f"empty folder, so that nothing else is overwritten"
        )


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an export of ours and nothing else: the marker, the dataset
    folders, their day partitions and the Parquet files in them."""
    names = {entry.name for entry in os.scandir(folder)}
    if MARKER not in names or not names <= {MARKER, *DATASETS}:
        return False
    for dataset in names - {MARKER}:
        for partition in os.scandir(folder / dataset):
            if layout.partition_day(partition.name) is None or not partition.is_dir():
                return False
            for entry in os.scandir(partition.path):
                if not entry.name.endswith(SUFFIX) or not entry.is_file(follow_symlinks=False):
                    return False
    return True


def _remove_stale(target: Path) -> None:
    """Tidy what an export killed over an hour ago left beside ``target``: its hidden
    staging folder, and the earlier export it had moved aside, which is put back when
    ``target`` is missing (the kill came between the two renames) and removed otherwise.
    A younger one may belong to an export still running."""
    now = time.time()
    pattern = re.compile(
        rf"^(?:{re.escape(_STAGING)}|{re.escape(_REPLACED)}){re.escape(target.name)}-[0-9a-f]{{12}}$"
    )
    try:
        entries = [e for e in os.scandir(target.parent) if pattern.match(e.name)]
    except OSError:
        return  # no parent yet: nothing left there
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < _STALE_SECONDS:
                continue
            if entry.name.startswith(_REPLACED) and not os.path.lexists(target):
                os.rename(entry.path, target)
            else:
                shutil.rmtree(entry.path)
        except OSError:
            continue  # another export is tidying it, or it is not ours to remove


def _staging_folder(target: Path) -> Path:
    """A new hidden folder beside ``target`` (on its file system, so that it can be renamed
    into place), with the permissions a plain ``mkdir`` gives; missing parents are made."""
    staging = target.parent / f"{_STAGING}{target.name}-{uuid.uuid4().hex[:12]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:
        raise StorageError(f"cannot write {target}: {write_failure(error)}") from None
    return staging


def _put_in_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, which is missing, empty or an earlier export."""
    if not target.exists() or not any(os.scandir(target)):
        # rename(2) replaces an empty folder in one step.
        os.rename(staging, target)
        return
    # Two renames: a crash between them leaves the earlier export whole under a hidden name.
    replaced = target.parent / f"{_REPLACED}{target.name}-{uuid.uuid4().hex[:12]}"
    os.rename(target, replaced)
    try:
        os.rename(staging, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.rename(replaced, target)
        raise
    shutil.rmtree(replaced, ignore_errors=True)
