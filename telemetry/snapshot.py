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
from typing import TYPE_CHECKING, Final, TypeAlias

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
    # The month's pack that holds exactly this file's rows (as the day's ``date`` rows of its
    # dataset's file), which readers that take packs read instead (:mod:`telemetry.months`).
    pack: Path | None = None
    # What the files of one write share: the name less ``-nN.arrow``.
    stem: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stem", layout.stem(self.path.name))


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
    # The days each month's pack taken holds, by dataset and pack file; and the packs a
    # read failed on, whose files are read instead from then on.
    packs: dict[Path, frozenset[date]] = field(default_factory=dict, compare=False)
    unpacked: set[Path] = field(default_factory=set, compare=False)
    # Where the packs that the job replaced (or retention retired) since were set aside.
    moved_packs: dict[Path, Path] = field(default_factory=dict, compare=False)

    @classmethod
    def take(
        cls,
        store: Layout,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
        datasets: Iterable[Dataset] = DATASETS,
        packs: bool = False,
    ) -> Snapshot:
        """List the store's files (of the days between ``since`` and ``until``, or of
        ``days``); sessions are always listed, as the commit markers of the rest. With
        ``packs``, each file a month's pack holds says so (:attr:`StoredFile.pack`), and is
        read from the pack by :meth:`scan` and :meth:`collect` (and by DuckDB).

        The sessions are listed before and after the other datasets, and again while a
        sessions file listed before was gone after (replaced by a compaction, or removed
        by retention). A build committed meanwhile is left out: its targets may not have
        been listed.
        """
        chosen = None if days is None else sorted(set(days))
        others: list[Dataset] = [d for d in datasets if d != "sessions"]
        packed: dict[Dataset, dict[date, Packed]] = {}
        held: dict[Path, frozenset[date]] = {}
        if packs:
            from telemetry import months

            # Read before the listing: a pack the pointer names stays for an hour after
            # the job replaces it, and holds the rows of the files it names whenever read.
            for pack in months.current(store.root, since=since, until=until).values():
                for dataset in DATASETS:
                    path = pack.path(dataset)
                    held[path] = pack.days(dataset)
                    stamps = pack.stamps.get(dataset, {})
                    for day, name in pack.files[dataset].items():
                        packed.setdefault(dataset, {})[day] = (name, path, stamps.get(day))
        for _ in range(_LISTINGS):
            found: dict[Dataset, list[_Found]] = {
                "sessions": list(_listed(store, "sessions", chosen, since, until, packed))
            }
            for dataset in others:
                found[dataset] = list(_listed(store, dataset, chosen, since, until, packed))
            listed: dict[Dataset, list[StoredFile]] = {
                dataset: _stored(files) for dataset, files in found.items()
            }
            # A day whose every folder the pack holds a file of still has its stamp is read
            # from the pack alone, whatever maintenance does to its folders from now on.
            whole = {day for day, *_, stamped in found["sessions"] if stamped}
            for dataset in others:
                taken = {day for day, *_, stamped in found[dataset] if stamped}
                looked_at = {day for day, *_, stamped in found[dataset] if not stamped}
                ours = packed.get(dataset, {})
                whole = {d for d in whole - looked_at if d in taken or d not in ours}
            # The sessions of the other days again: a file gone meanwhile (compaction
            # replaced it) may have taken its day's other files before they were listed.
            before = [(day, path) for day, path, *_ in found["sessions"] if day not in whole]
            looked = sorted({day for day, _ in before})
            again = _listed(store, "sessions", looked, since, until, packed) if looked else ()
            after = {path for _, path, *_ in again}
            if all(path in after for _, path in before):
                return cls(store, listed, packs=held)
        raise StorageError(
            f"the files in {store.root} kept changing while they were listed; try again"
        )

    def committed(self, dataset: Dataset) -> list[StoredFile]:
        """The listed files of ``dataset`` whose sessions file is in the snapshot, and not
        found unreadable: the builds of a damaged sessions file are left out whole, their
        targets and rollups with them. Nothing is opened."""
        if dataset == "sessions":
            return list(self.listed["sessions"])
        visible = {
            (f.day, f.stem)
            for f in self.listed["sessions"]
            if self._checked.get(f.path, f) is not None and f.path not in self.left_out
        }
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
        chosen = [self._packed(f) for f in self.committed(dataset) if where is None or where(f)]
        # A file read from a pack is not opened: the pack was written from it, sound.
        self._check(dataset, [f for f in chosen if f.pack is None], warn=warn)
        return [
            checked
            for f in chosen
            if (checked := f if f.pack is not None else self._checked[f.path]) is not None
            and f.path not in self.left_out
        ]

    def _check(self, dataset: Dataset, files: list[StoredFile], *, warn: bool = True) -> None:
        """Check the footers of those of ``files`` not checked yet (see :meth:`files`)."""
        unchecked = [f for f in files if f.path not in self._checked]
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
        chosen = self.files(dataset) if files is None else files
        return scan(chosen, dataset=dataset, packs=self.packs)

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
                own = [f for f in readable if f.pack is None]
                if not all(os.path.exists(f.path) for f in own):
                    moved = self._found(readable, dataset)
                    listed.update(
                        (m.path, listed[f.path]) for f, m in zip(readable, moved, strict=True)
                    )
                    readable = moved
                    continue
                packs = {f.pack for f in readable if f.pack is not None}
                missing = {p for p in packs if not os.path.exists(p)}
                if missing:  # replaced by the job, or retired by retention, since
                    self.relocate(missing)
                    readable = self._repacked(readable, dataset, listed)
                    continue
                found = damaged(dataset, own) or refused(own)
                if found:
                    # Both names: callers filter what they listed, and what they were given.
                    self.left_out.update(found)
                    self.left_out.update(listed[path] for path in found)
                    readable = [f for f in readable if f.path not in found]
                    continue
                failing = {}
                for pack in sorted(packs):  # each alone: the damaged one fails
                    try:
                        query(self.scan(dataset, [f for f in readable if f.pack == pack])).collect()
                    except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as e:
                        failing[pack] = first_line(e)
                if packs and len(failing) == len(packs):
                    # Each fails alone: the query's own error, unless they are damaged, which
                    # only reading them tells (a row group at a time).
                    from telemetry.months import problem

                    failing = {p: said for p in packs if (said := problem(p)) is not None}
                if not failing:
                    raise
                self.unpack(failing)
                readable = self._repacked(readable, dataset, listed)
        return None

    def unpack(self, packs: Iterable[Path] | dict[Path, str]) -> None:
        """Read the files of ``packs`` from now on, not the packs; each pack given with what
        went wrong reading it is named in a warning (one that is gone is no fault)."""
        for path in packs:
            if path in self.unpacked:
                continue
            self.unpacked.add(path)
            if isinstance(packs, dict) and os.path.exists(path):
                warnings.warn(
                    f"skipping the month file {path}: {packs[path][:160]}; its days are read "
                    f"from their files (builder telemetry verify --repair moves it aside, "
                    f"then builder telemetry jobs run months writes it again)",
                    CorruptFileWarning,
                    stacklevel=3,
                )

    def relocate(self, packs: Iterable[Path]) -> None:
        """Read ``packs``, gone from where they were listed, where the job or retention set
        them aside (for an hour); those found nowhere are given up (:meth:`unpack`)."""
        from telemetry import months

        for path in packs:
            moved = months.set_aside(path)
            if moved is None:
                self.unpack([path])
            else:
                self.moved_packs[path] = moved
                self.packs[moved] = self.packs.get(path, frozenset())

    def _packed(self, stored: StoredFile) -> StoredFile:
        """``stored`` with the pack to read it from now: where it was set aside, or none
        when it was given up."""
        if stored.pack is None:
            return stored
        pack = self.moved_packs.get(stored.pack, stored.pack)
        if pack in self.unpacked:
            return replace(stored, pack=None)
        return stored if pack == stored.pack else replace(stored, pack=pack)

    def _repacked(
        self, files: list[StoredFile], dataset: Dataset, listed: dict[Path, Path]
    ) -> list[StoredFile]:
        """``files`` as :meth:`_packed` has them now, those no longer read from a pack
        checked as :meth:`files` checks them; ``listed`` (where each is now: where listed)
        kept up to date."""
        now = [self._packed(f) for f in files]
        pairs = self._unpacked(now, dataset)
        listed.update((checked.path, listed[f.path]) for f, checked in pairs)
        # Those that cannot be read are left out under both names, as collect() leaves out a
        # damaged file: callers filter what they listed by left_out.
        kept = {f.path for f, _ in pairs}
        for f in now:
            if f.path not in kept:
                self.left_out.update((f.path, listed[f.path]))
        return [checked for _, checked in pairs]

    def _unpacked(
        self, files: list[StoredFile], dataset: Dataset
    ) -> list[tuple[StoredFile, StoredFile]]:
        """Each of ``files`` and what to read for it: itself when it is read from a pack,
        else its file checked as :meth:`files` checks them (and where maintenance moved
        it); those that cannot be read are left out."""
        self._check(dataset, [f for f in files if f.pack is None])
        return [
            (f, checked)
            for f in files
            if (checked := f if f.pack is not None else self._checked[f.path]) is not None
            and checked.path not in self.left_out
        ]

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

# A packed file, by dataset and day: its name, the pack's file, and its day folder's stamp.
Packed: TypeAlias = "tuple[str, Path, tuple[int, int, int] | None]"


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
    packed: dict[Dataset, dict[date, Packed]] | None = None,
) -> list[StoredFile]:
    """The visible data files of a dataset, by name only (nothing is opened but the footer
    of a compacted sessions file that has company); a file that ``packed`` names for its
    day with the pack that holds its rows.

    A day folder whose stamp is the one ``packed`` gives (:func:`telemetry.months.stamp`)
    still holds only the file packed, and is not listed: a year of packed days costs a
    ``stat`` a day, not a listing."""
    return _stored(_listed(store, dataset, days, since, until, packed))


def _stored(found: Iterable[_Found]) -> list[StoredFile]:
    if len(_MADE) >= _MADE_KEPT:
        _MADE.clear()
    return [
        _MADE.get(key) or _MADE.setdefault(key, _made(*key))
        for key in ((day, path, name, pack) for day, path, name, pack, _ in found)
    ]


def _made(day: date, path: str, name: str, pack: Path | None) -> StoredFile:
    return StoredFile(Path(path), day, layout.rows_named(name), (), pack)


# Each listed file as made, by its day, path, name and pack: a file is what its name says
# (it never changes once it has it), and the analyzer takes a snapshot for every answer, of
# over a thousand files for a year.
_MADE: dict[tuple[date, str, str, Path | None], StoredFile] = {}
_MADE_KEPT: Final = 1 << 16


# A listed file as text: its day, path, name, pack, and whether its day folder was not
# listed (its stamp was the pack's).
_Found: TypeAlias = "tuple[date, str, str, Path | None, bool]"


def _listed(
    store: Layout,
    dataset: Dataset,
    days: Iterable[date] | None,
    since: date | None,
    until: date | None,
    packed: dict[Dataset, dict[date, Packed]] | None,
) -> Iterator[_Found]:
    """:func:`list_files`' files as text."""
    from telemetry.months import stamp

    named = (packed or {}).get(dataset, {})
    parent = str(store.dataset(dataset))
    chosen = list_days(store, dataset) if days is None else sorted(set(days))
    for day in chosen:
        if (since and day < since) or (until and day > until):
            continue
        held = named.get(day)
        folder = os.path.join(parent, layout.partition_name(day))
        if held is not None and held[2] is not None and stamp(folder) == held[2]:
            yield day, os.path.join(folder, held[0]), held[0], held[1], True
            continue
        for entry in _day_listing(folder, dataset) or []:
            pack = held[1] if held is not None and held[0] == entry.name else None
            yield day, entry.path, entry.name, pack, False


def listing(
    store: Layout,
    dataset: Dataset,
    *,
    days: Iterable[date] | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Iterator[tuple[date, list[os.DirEntry[str]]]]:
    """Each day's visible data files of a dataset, by name, in name order."""
    for day, folder in _day_folders(store, dataset, days, since, until):
        data = _day_listing(folder, dataset)
        if data is not None:
            yield day, data


def _day_folders(
    store: Layout,
    dataset: Dataset,
    days: Iterable[date] | None,
    since: date | None,
    until: date | None,
) -> Iterator[tuple[date, str]]:
    """Each day of a dataset between ``since`` and ``until`` (of ``days``, or listed), with
    its folder's path as text (a year is over a thousand folders)."""
    chosen = list_days(store, dataset) if days is None else sorted(set(days))
    parent = str(store.dataset(dataset))
    for day in chosen:
        if (since and day < since) or (until and day > until):
            continue
        yield day, os.path.join(parent, layout.partition_name(day))


def _day_listing(folder: str, dataset: Dataset) -> list[os.DirEntry[str]] | None:
    """One day folder's visible data files, in name order; None when it is gone."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return None  # removed by retention since we listed it
    except OSError as error:
        # One place for every listing: a folder read twice by one snapshot is named once.
        warnings.warn(
            f"skipping {folder}: {error.strerror or error}", CorruptFileWarning, stacklevel=1
        )
        return None
    data = [entry for entry in entries if layout.is_data(entry.name)]
    hidden = replaced(data) if dataset == "sessions" else set()
    if hidden:  # merged into the day's compacted file
        data = [entry for entry in data if layout.stem(entry.name) not in hidden]
    return data


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


def scan(
    files: list[StoredFile],
    *,
    dataset: Dataset,
    packs: dict[Path, frozenset[date]] | None = None,
) -> pl.LazyFrame:
    """A lazy frame over stored files of ``dataset`` in today's schema; the sessions with
    the partition day as ``date`` (the UTC day each session started, which is the partition
    its file is in). ``packs`` gives the days each month's pack holds: one whose every day
    is among ``files`` is read whole, unfiltered.

    Paths are taken literally (no globbing, no Hive parsing), so a store under a folder named
    ``[x]`` or ``date=...`` reads like any other.
    """
    import polars as pl

    with_day = dataset == "sessions"
    packed = [f for f in files if f.pack is not None]
    if packed:
        own = [f for f in files if f.pack is None]
        frames = [_scan_packs(packed, dataset=dataset, packs=packs or {})]
        if own:
            frames.insert(0, scan(own, dataset=dataset))
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
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


def _scan_packs(
    files: list[StoredFile], *, dataset: Dataset, packs: dict[Path, frozenset[date]]
) -> pl.LazyFrame:
    """The rows of ``files`` from the month packs that hold them, as :func:`scan` reads the
    files themselves: the same columns, types and order. A pack whose every day (as
    ``packs`` has them) is taken is read whole; the others filtered by day."""
    import polars as pl

    days: dict[Path, set[date]] = {}
    for f in files:
        if f.pack is not None:
            days.setdefault(f.pack, set()).add(f.day)
    whole = sorted(p for p, taken in days.items() if p in packs and taken >= packs[p])
    cut = sorted(p for p in days if p not in whole)
    types = pl.DataFrame(SCHEMAS[dataset].empty_table()).schema
    parts = []
    if whole:
        parts.append(_parquet(whole))
    if cut:
        taken = sorted({day for p in cut for day in days[p]})
        parts.append(_parquet(cut).filter(pl.col(layout.PARTITION_KEY).is_in(taken)))
    frame = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
    frame = frame.select(pl.col(name).cast(dtype) for name, dtype in types.items())
    if dataset != "sessions":
        return frame
    return frame.with_columns(pl.col("start_time").dt.date().alias(layout.PARTITION_KEY))


def _parquet(packs: list[Path]) -> pl.LazyFrame:
    import polars as pl

    paths = [os.path.abspath(p) for p in packs]
    return pl.scan_parquet(paths, glob=False, hive_partitioning=False)


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
