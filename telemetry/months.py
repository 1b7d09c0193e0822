"""Closed months packed into one Parquet file per dataset, so that a long window opens a few
files a month rather than several a day.

The ``months`` job (:mod:`pipelines.months`) packs each month whose days are all closed:
the rows of each day's compacted file of each dataset, in this version's schema with the
day as ``date``, in day order, in ``<dataset>.parquet``; and a pointer that names
the pack and, for each dataset and day, the compacted file whose rows it holds::

    <dir>/months/month=2025-10/current
        {"pack": "20251101T031500Z-9b1e22c0a7f3", "schema": 1,
         "files": {"sessions": {"2025-10-01": "20251002T030000Z-…-day-n12.arrow", …}, …}}
    <dir>/months/month=2025-10/20251101T031500Z-9b1e22c0a7f3/sessions.parquet
    <dir>/months/month=2025-10/20251101T031500Z-9b1e22c0a7f3/targets.parquet
    <dir>/months/month=2025-10/20251101T031500Z-9b1e22c0a7f3/daily_targets.parquet

The day partitions stay the store (SPEC §6): a pack is a second copy of some of their files,
as a Parquet copy is of one. A reader that takes the packs (the analyzer, DuckDB) lists the
day folders as always, and reads a listed file's rows from the pack when the pointer names
that very file for its day (:attr:`telemetry.snapshot.StoredFile.pack`): a data file never
changes once it has its name, so the pack holds exactly its rows. A day changed since it was
packed (a late build compacted into it, a day removed by retention, a damaged file moved
away) has other names, and is read from its files until the job packs the month again.

A month is written as the rollups are (:mod:`telemetry.rollups`): the files in a new
folder, then the pointer replaced in one rename. The pack a pointer no longer names is
renamed ``.replaced-<unix time>-<stem>`` and stays an hour for the readers that read it
before; :func:`sweep` removes it then. Retention retires the packs of the months it removes
days of (:func:`retire`), so removed builds do not outlive their days by more than that hour.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

from telemetry import layout
from telemetry.errors import StorageError, write_failure
from telemetry.integrity import first_line
from telemetry.locks import guard
from telemetry.schema import DATASETS, SCHEMA_VERSION, SCHEMAS, Dataset

if TYPE_CHECKING:
    import pyarrow as pa

POINTER: Final = "current"
# What a pointer no longer names stays this long (the snapshot's grace).
GRACE_SECONDS: Final = 3600
_REPLACED: Final = ".replaced-"
_CLOCK: Final = "-clock"
# A pack folder no pointer ever named is a killed run's after a day (a large team's month
# can take over an hour to write); one set aside, an hour after it was.
_ORPHAN_SECONDS: Final = 86_400
# What the job names a pack (a write's stem), and a compacted file a pointer may name.
_STEM = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}")
_FILE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}-day-n\d+\.arrow")
# A day folder's device, inode and status-change time (ns): see stamp().
Stamp: TypeAlias = tuple[int, int, int]
# How long a folder must have been left alone to be stamped (see stamp()).
SETTLED_NS: Final = 2_000_000_000
# The rows of a pack's row group, at most.
ROW_GROUP_ROWS: Final = 1 << 20


@dataclass(slots=True, frozen=True)
class Pack:
    """One month's pack: its folder, and the compacted file of each dataset and day whose
    rows it holds (by name)."""

    month: date
    folder: Path
    files: dict[Dataset, dict[date, str]]
    # The compacted files left out because their data could not be read in full: the job
    # does not try them again until they change.
    skipped: dict[Dataset, dict[date, str]] = field(default_factory=dict)
    # For a day folder that held nothing but the packed file, and had not changed for a while
    # when the job looked: its device, inode and change time then (see :func:`stamp`).
    stamps: dict[Dataset, dict[date, Stamp]] = field(default_factory=dict)

    def path(self, dataset: Dataset) -> Path:
        """The Parquet file of ``dataset``'s rows."""
        return self.folder / f"{dataset}.parquet"

    def days(self, dataset: Dataset) -> frozenset[date]:
        """The days of ``dataset`` the pack holds."""
        return frozenset(self.files.get(dataset, {}))


# -- reading ----------------------------------------------------------------------------------


def current(
    root: Path, *, since: date | None = None, until: date | None = None
) -> dict[date, Pack]:
    """The packs the pointers name now, of the months between ``since`` and ``until``, by
    month. A pointer that cannot be read, or that is of another schema version, is passed
    over: its days are read from their files (``verify`` names it; the job writes it again).
    Nothing but the pointers is opened."""
    found: dict[date, Pack] = {}
    for month, folder in _months(root, strict=False):
        if (since and layout.month_end(month) < since) or (until and month > until):
            continue
        with contextlib.suppress(OSError, ValueError, RecursionError):
            pack = _pointed(month, folder)
            if pack is not None:
                found[month] = pack
    return found


def pointer_problem(root: Path, month: date) -> str | None:
    """Why the pointer of ``month`` names no pack this version reads; None when it does, or
    when there is no pointer."""
    folder = root / layout.MONTHS / layout.month_name(month)
    try:
        pack = _pointed(month, folder)
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    except (ValueError, RecursionError) as error:
        return str(error) if isinstance(error, ValueError) else "is nested too deep to read"
    if pack is not None and not pack.folder.is_dir():
        return f"names {pack.folder.name}, which is not there"
    return None


def check(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Each month's pointer that names no readable pack, and each file of the packs named,
    with the reason it cannot be read in full (or holds other rows than the files it was
    made from), or None when it can (for ``verify``)."""
    import pyarrow as pa

    for month, folder in _months(root):
        problem = pointer_problem(root, month)
        if problem is not None:
            yield folder / POINTER, problem
            continue
        pack = current(root, since=month, until=month).get(month)
        if pack is None:
            continue
        for dataset in DATASETS:
            path = pack.path(dataset)
            try:
                counted = _read_through(path)
            except FileNotFoundError:
                yield path, "missing: named by the month's pointer"
                continue
            except (OSError, pa.ArrowException, ValueError) as error:
                yield path, f"not a complete Parquet file ({first_line(error)[:160]})"
                continue
            said = [layout.rows_named(name) for name in pack.files[dataset].values()]
            rows = sum(n for n in said if n is not None)
            if None not in said and counted != rows:
                yield path, f"holds {counted:,} rows where its files hold {rows:,}"
            else:
                yield path, None


def _read_through(path: Path) -> int:
    """Read a pack file in full, a row group at a time (a large team's month never has to
    fit in memory); returns its rows. Raises what reading raises."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        rows = 0
        for index in range(parquet.num_row_groups):
            group = parquet.read_row_group(index)
            group.validate(full=True)
            rows += group.num_rows
        return rows


def problem(path: Path) -> str | None:
    """Why a pack file that is there cannot be read in full; None when it can, or when it
    is gone (set aside and swept: no fault)."""
    import pyarrow as pa

    try:
        _read_through(path)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException, ValueError) as error:
        return first_line(error)[:160]
    return None


def set_aside(pack: Path) -> Path | None:
    """Where the pack file ``pack`` is now that the job replaced it or retention retired it
    (renamed ``.replaced-<time>-<stem>`` beside it, for an hour); None when it is nowhere."""
    folder = pack.parent
    suffix = f"-{folder.name}"
    for entry in _entries(folder.parent):
        if entry.name.startswith(_REPLACED) and entry.name.endswith(suffix):
            moved = Path(entry.path) / pack.name
            if moved.exists():
                return moved
    return None


def months(root: Path) -> list[date]:
    """The months that have a folder, oldest first."""
    return [month for month, _ in _months(root)]


def _months(root: Path, *, strict: bool = True) -> list[tuple[date, Path]]:
    """The month folders, oldest first; none without a folder. A folder that cannot be
    listed is an error, or, not ``strict`` (readers, the sweep: packs only save time), none."""
    try:
        return layout.month_folders(root / layout.MONTHS)
    except OSError as error:
        if not strict:
            return []
        raise StorageError(
            f"could not list {root / layout.MONTHS}: {error.strerror or error}"
        ) from error


def _pointed(month: date, folder: Path) -> Pack | None:
    """The pack ``folder``'s pointer names; None without a pointer, or for a pack of another
    schema version; ValueError when it says nothing sensible."""
    try:
        text = (folder / POINTER).read_bytes()
    except FileNotFoundError:
        return None
    key = (month, folder, text)
    # What a pointer says is a function of its text: read once a process (another thread
    # may empty the cache between any two steps, so the answer is kept in hand).
    found = _READ.get(key, _UNREAD)
    if found is _UNREAD:
        try:
            found = _said_in(month, folder, text)
        except ValueError as error:
            found = error
        if len(_READ) >= _READ_KEPT:
            _READ.clear()
        _READ[key] = found
    if isinstance(found, ValueError):
        raise ValueError(str(found))
    return found  # type: ignore[return-value]


# Each pointer's reading, by its month, folder and text: a year's snapshot reads twelve,
# and the analyzer takes a snapshot for every answer.
_READ: dict[tuple[date, Path, bytes], Pack | ValueError | None] = {}
_READ_KEPT: Final = 256
_UNREAD: Final = object()


def _said_in(month: date, folder: Path, text: bytes) -> Pack | None:
    """:func:`_pointed` for a pointer's ``text``."""
    said = json.loads(text.decode("utf-8"))
    if not isinstance(said, dict):
        raise ValueError("is not a JSON object")
    stem, version = said.get("pack"), said.get("schema")
    if not isinstance(stem, str) or not _STEM.fullmatch(stem):
        raise ValueError(f"names no pack: {stem!r}")
    if version != SCHEMA_VERSION:
        return None  # written by another version: the job writes it again
    files = _names(month, said.get("files"))
    stamps: dict[Dataset, dict[date, Stamp]] = {}
    for dataset, by_day in _by_day(month, said.get("stamps", {})).items():
        stamps[dataset] = {}
        for day, value in by_day.items():
            if not isinstance(value, list) or [type(n) for n in value] != [int, int, int]:
                raise ValueError(f"stamps {day}: {value!r}, not a device, an inode and a time")
            stamps[dataset][day] = (value[0], value[1], value[2])
    return Pack(month, folder / stem, files, _names(month, said.get("skipped", {})), stamps)


def _by_day(month: date, named: object) -> dict[Dataset, dict[date, object]]:
    """What a pointer lists by dataset and day of ``month``; ValueError for anything else."""
    if not isinstance(named, dict):
        raise ValueError("lists no files")
    found: dict[Dataset, dict[date, object]] = {}
    last = layout.month_end(month)
    for dataset in DATASETS:
        by_day = named.get(dataset, {})
        if not isinstance(by_day, dict):
            raise ValueError(f"lists no {dataset} files")
        found[dataset] = {}
        for day_text, value in by_day.items():
            day = date.fromisoformat(day_text)
            if not month <= day <= last:
                raise ValueError(f"lists {day_text}, not a day of the month")
            found[dataset][day] = value
    return found


def _names(month: date, named: object) -> dict[Dataset, dict[date, str]]:
    found: dict[Dataset, dict[date, str]] = {}
    for dataset, by_day in _by_day(month, named).items():
        found[dataset] = {}
        for day, name in by_day.items():
            if not isinstance(name, str) or not _FILE.fullmatch(name):
                raise ValueError(f"lists {day}: {name!r}, not a compacted file's name")
            found[dataset][day] = name
    return found


# -- writing ----------------------------------------------------------------------------------


def write(
    root: Path,
    month: date,
    days: Iterable[tuple[date, dict[Dataset, tuple[str, pa.Table]]]],
    *,
    stem: str,
    skipped: dict[Dataset, dict[date, str]] | None = None,
    stamps: dict[Dataset, dict[date, Stamp]] | None = None,
) -> Pack | None:
    """Make the pack of ``month`` from ``days``: for each day, oldest first, each dataset's
    compacted file name and its rows in this version's schema (read a day at a time, and a
    million rows at most held, so a month never has to fit in memory). The files go in a
    new folder, then the pointer is replaced in one rename, and the pack it named before is
    renamed away (for :func:`sweep`). Returns None, and points to nothing, when a day of the
    pack was removed while it was written (the next run packs the month again). The caller
    holds the jobs lock."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / layout.MONTHS / layout.month_name(month)
    pack = folder / stem
    files: dict[Dataset, dict[date, str]] = {dataset: {} for dataset in DATASETS}
    writers: dict[Dataset, pq.ParquetWriter] = {}
    try:
        pack.mkdir(parents=True)
        for dataset in DATASETS:
            schema = SCHEMAS[dataset].append(
                pa.field(layout.PARTITION_KEY, pa.date32(), nullable=False)
            )
            writers[dataset] = pq.ParquetWriter(
                pack / f"{dataset}.parquet", schema, compression="zstd"
            )
        waiting: dict[Dataset, list[pa.Table]] = {dataset: [] for dataset in DATASETS}

        def flush(dataset: Dataset) -> None:
            if waiting[dataset]:
                table = pa.concat_tables(waiting[dataset]).unify_dictionaries().combine_chunks()
                writers[dataset].write_table(table, row_group_size=ROW_GROUP_ROWS)
                waiting[dataset].clear()

        for day, tables in days:
            for dataset, (name, table) in tables.items():
                # Days in order, in row groups of up to a million rows that end where a day
                # does (unless the day alone is larger): few and large enough to read fast
                # (a row group a day of ten builds costs a small team's reader ten times
                # the time), and their dates' statistics let a reader of a few days of a
                # large team's month skip the others.
                held = sum(t.num_rows for t in waiting[dataset])
                if held and held + table.num_rows > ROW_GROUP_ROWS:
                    flush(dataset)
                waiting[dataset].append(
                    table.append_column(
                        writers[dataset].schema.field(layout.PARTITION_KEY),
                        pa.repeat(pa.scalar(day, pa.date32()), table.num_rows),
                    )
                )
                files[dataset][day] = name
        for dataset in DATASETS:
            flush(dataset)
        for writer in writers.values():
            writer.close()
        writers.clear()
        for dataset in DATASETS:
            _fsync(pack / f"{dataset}.parquet")
        _fsync_dir(pack)
    except BaseException as error:
        for writer in writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        shutil.rmtree(pack, ignore_errors=True)
        if isinstance(error, OSError):
            raise StorageError(f"could not write {pack}: {write_failure(error)}") from error
        raise
    # Beside no removal: retention takes the packs of the days it removes out of use while it
    # holds the guard alone, so a pack is never pointed to after that, holding removed days.
    with guard(root, exclusive=False):
        gone = [
            day
            for dataset, by_day in files.items()
            for day in by_day
            if not os.path.isdir(layout.Layout(root).partition(dataset, day))
        ]
        if gone:  # removed while the pack was written: packed again by the next run
            shutil.rmtree(pack, ignore_errors=True)
            return None
        before = _named(folder)
        # Once renamed into place, the pack stays whatever befalls the rest.
        _write_pointer(folder, _said(stem, files, skipped or {}, stamps or {}))
        if before is not None and before != stem:
            _set_aside(folder / before)
    return Pack(month, pack, files, skipped or {}, stamps or {})


def restamp(root: Path, pack: Pack, stamps: dict[Dataset, dict[date, Stamp]]) -> None:
    """Give ``pack``'s pointer the day folders' ``stamps`` (of days it holds), in one rename;
    the pack itself is not touched. The caller holds the jobs lock."""
    folder = pack.folder.parent
    with guard(root, exclusive=False):  # beside no retirement (see write())
        if _named(folder) != pack.folder.name or not pack.folder.is_dir():
            return  # replaced or retired meanwhile
        _write_pointer(folder, _said(pack.folder.name, pack.files, pack.skipped, stamps))


def _said(
    stem: str,
    files: dict[Dataset, dict[date, str]],
    skipped: dict[Dataset, dict[date, str]],
    stamps: dict[Dataset, dict[date, Stamp]],
) -> dict[str, object]:
    return {
        "pack": stem,
        "schema": SCHEMA_VERSION,
        "files": _named_by_day(files),
        "skipped": _named_by_day(skipped),
        "stamps": {
            dataset: {
                day.isoformat(): list(stamp)
                for day, stamp in sorted(by_day.items())
                if files.get(dataset, {}).get(day) is not None
            }
            for dataset, by_day in stamps.items()
        },
    }


def _write_pointer(folder: Path, said: dict[str, object]) -> None:
    temporary = folder / f"{layout.TMP_PREFIX}{uuid.uuid4().hex[:12]}-{POINTER}"
    if (folder / POINTER).is_dir() and not (folder / POINTER).is_symlink():
        _set_aside(folder / POINTER)  # not a pointer: out of the way
    try:
        with temporary.open("x", encoding="utf-8") as handle:
            json.dump(said, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, folder / POINTER)
        _fsync_dir(folder)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise StorageError(
                f"could not write {folder / POINTER}: {write_failure(error)}"
            ) from error
        raise


def _named_by_day(files: dict[Dataset, dict[date, str]]) -> dict[str, dict[str, str]]:
    return {
        dataset: {day.isoformat(): name for day, name in sorted(by_day.items())}
        for dataset, by_day in files.items()
    }


def stamp(folder: str | Path, *, settled_before: int | None = None) -> Stamp | None:
    """A day folder's device, inode and status-change time (ns), which any file made,
    renamed or removed in it changes; None when it cannot be read. The change time, not the
    modification time: tools that copy or restore files (``cp -a``, ``rsync -a``, ``tar``)
    set a folder's modification time back, and nothing sets its change time but the file
    system, to its own now.

    With ``settled_before`` (the file system's now, see :func:`now_on`), also None when the
    folder changed less than two seconds before then: a file system's clock ticks coarsely,
    so a change right after another could leave the time as it was, but not one two
    seconds later. A folder stamped, then found with the same stamp, is known to hold what
    it held, without being listed."""
    try:
        status = os.stat(folder)
    except OSError:
        return None
    if settled_before is not None and status.st_ctime_ns > settled_before - SETTLED_NS:
        return None
    return (status.st_dev, status.st_ino, status.st_ctime_ns)


def now_on(folder: Path) -> int | None:
    """This moment by the clock of the file system ``folder`` is on (ns): the change time
    of a file made there now (a file server's clock may differ from this machine's); None
    when no file can be made there."""
    probe = folder / f"{layout.TMP_PREFIX}{uuid.uuid4().hex[:12]}{_CLOCK}"
    try:
        with probe.open("x"):
            pass
        return os.stat(probe).st_ctime_ns
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def retire(root: Path, months: Iterable[date]) -> list[date]:
    """Take the packs of ``months`` out of use: each pointer is removed, then its pack is
    renamed away (readers that read it before still have an hour). Returns the months that
    had one."""
    retired = []
    for month in sorted(set(months)):
        folder = root / layout.MONTHS / layout.month_name(month)
        named = _named(folder)
        try:
            os.unlink(folder / POINTER)
        except FileNotFoundError:
            continue
        except (IsADirectoryError, PermissionError) as error:  # Linux, macOS: a folder
            if not (folder / POINTER).is_dir():
                raise StorageError(
                    f"could not remove {folder / POINTER}: {error.strerror or error}"
                ) from error
            _set_aside(folder / POINTER)  # not a pointer: out of the way all the same
        except OSError as error:
            raise StorageError(
                f"could not remove {folder / POINTER}: {error.strerror or error}"
            ) from error
        if named is not None:
            _set_aside(folder / named)
        retired.append(month)
    return retired


def _named(folder: Path) -> str | None:
    """The pack name a pointer says, read leniently (a damaged pointer names none)."""
    try:
        said = json.loads((folder / POINTER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    stem = said.get("pack") if isinstance(said, dict) else None
    return stem if isinstance(stem, str) and _STEM.fullmatch(stem) else None


def _set_aside(pack: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(pack, pack.parent / f"{_REPLACED}{int(time.time())}-{pack.name}")


def sweep(root: Path, *, now: float | None = None) -> int:
    """Remove what no pointer names and is over an hour old: the packs set aside (an hour
    after they were), and what a killed run left (a pack folder it never pointed to, a
    temporary pointer, a clock probe); returns how many were removed. A month folder left
    empty goes too."""
    moment = time.time() if now is None else now
    removed = 0
    for dataset in DATASETS:  # the clock probes of killed runs
        for entry in _entries(root / dataset):
            if (
                entry.name.startswith(layout.TMP_PREFIX)
                and entry.name.endswith(_CLOCK)
                and _mtime(entry, moment) < moment - GRACE_SECONDS
            ):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    for _, folder in _months(root, strict=False):
        named = _named(folder)
        for entry in _entries(folder):
            if entry.name == POINTER or entry.name == named:
                continue
            if entry.name.startswith(_REPLACED):
                stamp = entry.name[len(_REPLACED) :].split("-", 1)[0]
                since = float(stamp) if stamp.isdigit() else _mtime(entry, moment)
                kept = GRACE_SECONDS
            else:
                since = _mtime(entry, moment)
                temporary = entry.name.startswith(layout.TMP_PREFIX)
                kept = GRACE_SECONDS if temporary else _ORPHAN_SECONDS
            if since < moment - kept:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                removed += 1
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty
    return removed


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        yield from os.scandir(folder)
    except OSError:
        return


def _mtime(entry: os.DirEntry[str], default: float) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return default


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["GRACE_SECONDS", "POINTER", "Pack", "current", "months", "retire", "sweep", "write"]
