"""The snapshot: the live files of a store at one moment, and the one way to read them.

Every reader goes through a :class:`Snapshot`: the analyzer, ``recent``, compaction, the
exports, ``verify``, DuckDB (:mod:`telemetry.duckdb`) and Spark (:mod:`telemetry.spark`).
Nothing else lists the store's folders. A snapshot holds, for each dataset asked for:

- the committed files only: a targets or rollup file counts when the sessions file of the
  same name stem is there (a session row is a write's commit marker, see
  :mod:`telemetry.storage`);
- a compacted day once: the files a compacted sessions file replaces are left out from the
  moment it is renamed into place, and the sessions are listed before and after the other
  datasets, so a compaction committing meanwhile is either wholly in or wholly out;
- readable files only: each footer is checked (:mod:`telemetry.integrity`) and a damaged
  file is named in a :class:`~telemetry.errors.CorruptFileWarning` and left out;
- one schema per dataset: a file written before a column was added reads as nulls in it.

The files a snapshot lists stay readable while maintenance runs beside it, for
:data:`GRACE_SECONDS` (:mod:`telemetry.maintenance`): what compaction replaces and what
retention removes is moved into a hidden folder of its dataset, where :meth:`Snapshot.read`
still finds it. A query over the paths themselves (polars, DuckDB) fails when a file was
moved; then, as when ``clear`` deleted them, it raises :class:`SnapshotChanged`, and the
reader takes a new snapshot.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final

from telemetry import layout
from telemetry.errors import CorruptFileWarning, StorageError
from telemetry.integrity import VANISHED, Unsound, examine, first_line, footer_schema
from telemetry.layout import Layout
from telemetry.schema import DATASETS, REPLACES_KEY, SCHEMA_VERSION, SCHEMAS, Dataset

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    import pyarrow.dataset as ds

# How long what maintenance removes stays readable by snapshots taken before it.
GRACE_SECONDS: Final = 3600
_LISTINGS: Final = 5


class SnapshotChanged(StorageError):
    """A file of the snapshot was deleted before it was read: take a new snapshot."""


@dataclass(slots=True, frozen=True)
class StoredFile:
    """One data file of a dataset."""

    path: Path
    day: date
    rows: int | None  # from the name, when this writer named it
    # Columns of this version the file lacks (added after it was written): read as nulls.
    missing: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """What the files of one write share: the name less ``-nN.arrow``."""
        return layout.stem(self.path.name)


@dataclass(slots=True, frozen=True)
class Snapshot:
    """The live files of a store's datasets, listed together (:meth:`take`).

    >>> snapshot = Snapshot.take(Layout(Path(".builder-cache/telemetry")))
    >>> snapshot.scan("sessions").select("duration_ms").collect().height  # doctest: +SKIP
    147
    """

    layout: Layout
    # The visible data files of each dataset taken, by name; targets and rollups whose
    # sessions file is not visible included (see :meth:`committed`).
    listed: dict[Dataset, list[StoredFile]]
    # Each file checked so far: itself with the columns it lacks, or None when unreadable.
    _checked: dict[Path, StoredFile | None] = field(default_factory=dict, compare=False)
    # The files a read found damaged behind a sound footer (named in a warning then).
    left_out: set[Path] = field(default_factory=set, compare=False)

    @classmethod
    def take(
        cls,
        store: Layout,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
        datasets: Iterable[Dataset] = DATASETS,
    ) -> Snapshot:
        """List the store's files (of the days between ``since`` and ``until``, or of
        ``days``); sessions are always listed, as the commit markers of the rest.

        The sessions are listed before and after the other datasets, and again while a
        sessions file listed before was gone after (replaced by a compaction, or removed
        by retention). A build committed meanwhile is left out: its targets may not have
        been listed.
        """
        chosen = None if days is None else sorted(set(days))
        others: list[Dataset] = [d for d in datasets if d != "sessions"]
        for _ in range(_LISTINGS):
            before = list_files(store, "sessions", days=chosen, since=since, until=until)
            listed: dict[Dataset, list[StoredFile]] = {"sessions": before}
            for dataset in others:
                listed[dataset] = list_files(store, dataset, days=chosen, since=since, until=until)
            after = list_files(store, "sessions", days=chosen, since=since, until=until)
            if {f.path for f in before} <= {f.path for f in after}:
                return cls(store, listed)
        raise StorageError(
            f"the files in {store.root} kept changing while they were listed; try again"
        )

    def committed(self, dataset: Dataset) -> list[StoredFile]:
        """The listed files of ``dataset`` whose sessions file is in the snapshot; nothing
        is opened."""
        if dataset == "sessions":
            return list(self.listed["sessions"])
        visible = {(f.day, f.stem) for f in self.listed["sessions"]}
        return [f for f in self.listed[dataset] if (f.day, f.stem) in visible]

    def files(
        self,
        dataset: Dataset,
        *,
        where: Callable[[StoredFile], bool] | None = None,
        warn: bool = True,
    ) -> list[StoredFile]:
        """The committed files of ``dataset`` (those ``where`` takes) whose footer and schema
        this version reads, each with the columns it lacks; the others are named in a
        warning, once. Only the files taken are checked."""
        chosen = [f for f in self.committed(dataset) if where is None or where(f)]
        unchecked = [f for f in chosen if f.path not in self._checked]
        if unchecked:
            good = {f.path: f for f in readable(dataset, unchecked, warn=warn)}
            for f in unchecked:
                if f.path not in good and not os.path.exists(f.path):
                    # Taken out by maintenance since the listing: read where it is now.
                    now = self.find(f, dataset)
                    if not os.path.exists(now):
                        raise SnapshotChanged(f"{f.path} was deleted since it was listed")
                    moved = readable(dataset, [replace(f, path=now)], warn=warn)
                    if moved:
                        good[f.path] = moved[0]
            self._checked.update((f.path, good.get(f.path)) for f in unchecked)
        return [
            checked
            for f in chosen
            if (checked := self._checked[f.path]) is not None and f.path not in self.left_out
        ]

    def copies(
        self, dataset: Dataset, files: Iterable[StoredFile] | None = None
    ) -> dict[Path, Path]:
        """The Parquet copies there are now of the compacted files among ``files`` (the
        committed files of ``dataset`` by default), by the file's path; nothing is opened. A
        copy holds exactly its file's rows in this version's schema, with the day as
        ``date`` (:func:`telemetry.writer.write_copy`): the copies are for engines that read
        Parquet faster, and a reader that fails on one reads its file instead."""
        found: dict[Path, Path] = {}
        for stored in self.committed(dataset) if files is None else files:
            if layout.is_compacted(stored.path.name) and stored.path not in self.left_out:
                copy = layout.copy_path(str(stored.path), SCHEMA_VERSION)
                if os.path.exists(copy):
                    found[stored.path] = Path(copy)
        return found

    # -- reading ------------------------------------------------------------------------------

    def scan(self, dataset: Dataset, files: list[StoredFile] | None = None) -> pl.LazyFrame:
        """A polars lazy frame over the readable files of ``dataset`` (or over ``files``) in
        today's schema; the sessions with the partition day as ``date``.

        A query over it that fails on damaged data behind a sound footer is better run by
        :meth:`collect`, which names the file and leaves it out.
        """
        return scan(self.files(dataset) if files is None else files, dataset=dataset)

    def collect(
        self,
        dataset: Dataset,
        query: Callable[[pl.LazyFrame], pl.LazyFrame],
        *,
        files: list[StoredFile] | None = None,
    ) -> pl.DataFrame | None:
        """Run ``query`` over :meth:`scan`; None when there is no file to read.

        A file that maintenance moved since the snapshot was taken is read where it is now
        (:meth:`find`); one deleted for good raises :class:`SnapshotChanged`. A file whose
        footer is sound but whose data is damaged is found, named in a warning and left out,
        so it never takes the rest of the history with it.
        """
        import polars as pl

        readable = self.files(dataset) if files is None else files
        readable = [f for f in readable if f.path not in self.left_out]
        listed = {f.path: f.path for f in readable}  # where each file is now: where listed
        while readable:
            try:
                return query(self.scan(dataset, readable)).collect()
            except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException):
                if not all(os.path.exists(f.path) for f in readable):
                    moved = self._found(readable, dataset)
                    listed.update(
                        (m.path, listed[f.path]) for f, m in zip(readable, moved, strict=True)
                    )
                    readable = moved
                    continue
                found = damaged(dataset, readable) or refused(readable)
                if not found:
                    raise
                # Both names: callers filter what they listed, and what they were given.
                self.left_out.update(found)
                self.left_out.update(listed[path] for path in found)
                readable = [f for f in readable if f.path not in found]
        return None

    def _found(self, files: list[StoredFile], dataset: Dataset) -> list[StoredFile]:
        """``files`` where they are now; :class:`SnapshotChanged` when one is nowhere."""
        moved = [replace(f, path=self.find(f, dataset)) for f in files]
        gone = [f.path for f in moved if not os.path.exists(f.path)]
        if gone:
            raise SnapshotChanged(f"{gone[0]} was deleted while it was read")
        return moved

    def read(self, stored: StoredFile, dataset: Dataset) -> pa.Table | None:
        """All of one file's rows in today's schema (columns it predates as nulls); None
        when its data cannot be read in full."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        for _ in range(_LISTINGS):  # it may move between being found and being opened
            path = self.find(stored, dataset)
            try:
                with ipc.open_file(str(path)) as reader:  # read in: not mapped, then closed
                    table = reader.read_all()
                table.validate(full=True)
                break
            except FileNotFoundError:
                continue
            except (OSError, pa.ArrowException):
                return None
        else:
            raise SnapshotChanged(f"{stored.path} was removed while it was read")
        return conform(table, dataset)

    def find(self, stored: StoredFile, dataset: Dataset) -> Path:
        """Where a listed file is now: where it was listed, or, when compaction replaced it
        or retention removed its day since, in the hidden folder it was moved to (while its
        grace lasts)."""
        if os.path.exists(stored.path):
            return stored.path
        folder = self.layout.dataset(dataset)
        for entry in folder_entries(folder):
            if entry.name.startswith(layout.TRASH_PREFIX):
                moved = Path(entry.path) / stored.path.name
                if os.path.exists(moved):
                    return moved
        return stored.path

    def arrow_dataset(self, dataset: Dataset, files: list[StoredFile] | None = None) -> ds.Dataset:
        """The readable files of ``dataset`` (or ``files``) as one :mod:`pyarrow.dataset` in
        today's schema, with the partition day as a ``date`` column (for DuckDB, say, which
        pushes its filters and projections down to it: a condition on ``date`` skips the
        other days' files unopened).

        Each file's day is given, not read from its folder's name: a file that maintenance
        moved into a hidden folder keeps its day.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
        import pyarrow.fs as fs

        schema = SCHEMAS[dataset]
        if layout.PARTITION_KEY not in schema.names:
            schema = schema.append(pa.field(layout.PARTITION_KEY, pa.date32()))
        ipc, local = ds.IpcFileFormat(), fs.LocalFileSystem()
        day = pc.field(layout.PARTITION_KEY)
        fragments = [
            ipc.make_fragment(
                os.path.abspath(f.path),  # pyarrow reads a relative path as one from the root
                local,
                partition_expression=day == pa.scalar(f.day, pa.date32()),
            )
            for f in (self.files(dataset) if files is None else files)
        ]
        return ds.FileSystemDataset(fragments, schema, ipc, local)


# -- listing ----------------------------------------------------------------------------------


def list_days(store: Layout, dataset: Dataset) -> list[date]:
    """The day partitions of a dataset, oldest first."""
    folder = store.dataset(dataset)
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    except OSError as error:
        raise StorageError(
            f"could not list {folder}: {error.strerror or error}; check "
            f"BUILDER_TELEMETRY_DIR (or --dir)"
        ) from error
    found = []
    for entry in entries:
        day = layout.partition_day(entry.name)
        if day is not None and entry.is_dir():
            found.append(day)
    return sorted(found)


def list_files(
    store: Layout,
    dataset: Dataset,
    *,
    days: Iterable[date] | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[StoredFile]:
    """The visible data files of a dataset, by name only (nothing is opened but the footer
    of a compacted sessions file that has company)."""
    return [
        StoredFile(Path(entry.path), day, layout.rows_named(entry.name))
        for day, entries in listing(store, dataset, days=days, since=since, until=until)
        for entry in entries
    ]


def listing(
    store: Layout,
    dataset: Dataset,
    *,
    days: Iterable[date] | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Iterator[tuple[date, list[os.DirEntry[str]]]]:
    """Each day's visible data files of a dataset, by name, in name order."""
    chosen = list_days(store, dataset) if days is None else sorted(set(days))
    parent = str(store.dataset(dataset))  # a path as text: a year is over a thousand folders
    for day in chosen:
        if (since and day < since) or (until and day > until):
            continue
        folder = os.path.join(parent, layout.partition_name(day))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            continue  # removed by retention since we listed it
        except OSError as error:
            warnings.warn(
                f"skipping {folder}: {error.strerror or error}", CorruptFileWarning, stacklevel=3
            )
            continue
        data = [entry for entry in entries if layout.is_data(entry.name)]
        hidden = replaced(data) if dataset == "sessions" else set()
        if hidden:  # merged into the day's compacted file
            data = [entry for entry in data if layout.stem(entry.name) not in hidden]
        yield day, data


def folder_entries(folder: str | Path) -> list[os.DirEntry[str]]:
    """A folder's entries; none when it is gone or not a folder (another process may be
    removing it right now)."""
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def replaced(entries: list[os.DirEntry[str]]) -> set[str]:
    """The name stems that the compacted sessions files among ``entries`` (one day's
    sessions files) replace. Nothing is opened unless a compacted file has company."""
    compacted = [e for e in entries if layout.is_compacted(e.name)]
    if not compacted or len(entries) == 1:
        return set()
    return _named_by(compacted)


def _named_by(compacted: list[os.DirEntry[str]]) -> set[str]:
    """The name stems that compacted sessions files name in their metadata as replaced."""
    import pyarrow as pa

    stems: set[str] = set()
    for entry in compacted:
        try:  # the footer's schema, once checked: a damaged one could name other files
            status = entry.stat()
            key = (entry.path, status.st_ino, status.st_mtime_ns, status.st_size)
            if key not in _NAMED:
                metadata = footer_schema(Path(entry.path)).metadata or {}
                named = json.loads(metadata.get(REPLACES_KEY, b"[]"))
                if len(_NAMED) >= _NAMED_KEPT:
                    _NAMED.clear()
                _NAMED[key] = (
                    frozenset(str(s) for s in named) if isinstance(named, list) else frozenset()
                )
        except (OSError, pa.ArrowException, ValueError, Unsound):
            continue  # vanished or damaged: readers skip it and still see what it replaced
        stems.update(_NAMED[key])
    return stems


# What each compacted sessions file names, by its path and identity: a data file never
# changes once renamed into place, so its footer is read once per process (a snapshot lists
# the sessions twice, and the analyzer takes several snapshots).
_NAMED: dict[tuple[str, int, int, int], frozenset[str]] = {}
_NAMED_KEPT: Final = 4096


# -- checking ---------------------------------------------------------------------------------


def readable(
    dataset: Dataset, files: Iterable[StoredFile], *, warn: bool = True
) -> list[StoredFile]:
    """The files whose footer and schema this version can read, each with the columns it
    lacks (written before they were added); warns about the rest."""
    found = []
    for stored in files:
        problem, lacking = examine(stored.path, dataset, full=False)
        if problem is None:
            found.append(replace(stored, missing=lacking) if lacking else stored)
        elif problem != VANISHED and warn:
            warnings.warn(f"skipping {stored.path}: {problem}", CorruptFileWarning, stacklevel=3)
    return found


def damaged(dataset: Dataset, files: Iterable[StoredFile]) -> set[Path]:
    """The files whose data cannot be read in full (slower than :func:`readable`, for when
    a query over them failed); warns about each."""
    bad = set()
    for stored in files:
        problem = examine(stored.path, dataset, full=True)[0]
        # A file moved away meanwhile is not damaged: the caller reads it where it went.
        if problem is not None and problem != VANISHED:
            bad.add(stored.path)
            warnings.warn(f"skipping {stored.path}: {problem}", CorruptFileWarning, stacklevel=3)
    return bad


def refused(files: list[StoredFile]) -> set[Path]:
    """The files that polars alone cannot read (its reading of a footer is stricter than
    pyarrow's: a field name that is not UTF-8, say), each named in a warning."""
    import polars as pl

    found = set()
    for stored in files:
        try:
            _scan_paths([stored], with_day=False).collect()
        except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as error:
            if stored.path.exists():
                found.add(stored.path)
                warnings.warn(
                    f"skipping {stored.path}: not a complete Arrow IPC file "
                    f"({first_line(error)[:160]})",
                    CorruptFileWarning,
                    stacklevel=4,
                )
    return found


# -- scanning ---------------------------------------------------------------------------------


def scan(files: list[StoredFile], *, dataset: Dataset) -> pl.LazyFrame:
    """A lazy frame over stored files of ``dataset`` in today's schema; the sessions with
    the partition day as ``date`` (the UTC day each session started, which is the partition
    its file is in).

    Paths are taken literally (no globbing, no Hive parsing), so a store under a folder named
    ``[x]`` or ``date=...`` reads like any other.
    """
    import polars as pl

    with_day = dataset == "sessions"
    groups: dict[tuple[str, ...], list[StoredFile]] = {}
    for stored in files:
        groups.setdefault(stored.missing, []).append(stored)
    if len(groups) == 1 and () in groups:  # the usual case: every file has every column
        return _scan_paths(files, with_day=with_day)
    schema = SCHEMAS[dataset]
    types = pl.DataFrame(schema.empty_table()).schema
    frames = [
        _scan_paths(group, with_day=with_day).with_columns(
            pl.lit(None, dtype=types[name]).alias(name) for name in missing
        )
        for missing, group in groups.items()
    ]
    columns = [*schema.names, *([layout.PARTITION_KEY] if with_day else [])]
    return pl.concat([frame.select(columns) for frame in frames], how="vertical_relaxed")


def _scan_paths(files: list[StoredFile], *, with_day: bool) -> pl.LazyFrame:
    import polars as pl

    # Absolute: polars would read a leading "~" as the home directory, Python does not.
    paths = [os.path.abspath(f.path) for f in files]
    frame = pl.scan_ipc(paths, glob=False, hive_partitioning=False)
    if not with_day:
        return frame
    return frame.with_columns(pl.col("start_time").dt.date().alias(layout.PARTITION_KEY))


def conform(table: pa.Table, dataset: Dataset) -> pa.Table:
    """``table`` in today's schema of ``dataset``: columns it predates as nulls."""
    import pyarrow as pa

    schema = SCHEMAS[dataset]
    columns = [
        table.column(f.name) if f.name in table.schema.names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
