"""The store: day-partitioned, zstd-compressed Arrow IPC files, written atomically.

Layout (Hive partitioning by the UTC day a session started)::

    <dir>/sessions/date=2025-10-27/20251027T142315Z-3f9a1c2b7d4e-n1.arrow
    <dir>/targets/date=2025-10-27/20251027T142315Z-3f9a1c2b7d4e-n25.arrow

and, for a day that compaction merged into one file per dataset, its daily rollup::

    <dir>/sessions/date=2025-10-26/20251027T030000Z-9b1e22c0a7f3-day-n212.arrow
    <dir>/targets/date=2025-10-26/20251027T030000Z-9b1e22c0a7f3-day-n48113.arrow
    <dir>/daily_targets/date=2025-10-26/20251027T030000Z-9b1e22c0a7f3-day-n530.arrow

Every write makes new files with unique names, so concurrent builds never overwrite each
other. A file is written to a hidden temporary name, synced, then renamed into place. The
targets file is renamed first and the sessions file last: a session row is the commit marker,
and readers only count targets of sessions they can see. So a session is visible completely
or not at all, and a crash leaves at worst a hidden temporary file or unreferenced targets.
The ``-nN`` in a name is the file's row count, which lets retention and ``recent`` plan
without opening files.

A compacted day's sessions file (``-day`` in its name) names the files it replaces in its
metadata, and is renamed into place before they are removed: readers ignore the replaced
files from that moment, so the day's builds are never counted twice or missed, and a crash
before the removal leaves only files nobody reads, which the next compaction removes.

Removal waits for writers. Every write holds the store's guard (``.guard``) shared, and
retention holds it alone while it decides which days go and renames them away (deleting them
after): a day folder never vanishes under a write (which would fail it, or keep its session
row and lose its targets), and a removal never counts a day while a write is adding to it.
Compaction's commit holds it shared too, so a day is removed whole, before or after it was
merged. The retention after a build's write does not wait for the guard: when another
process holds it, that retention is left to the next write.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.ipc as ipc

from telemetry.config import TelemetryConfig
from telemetry.errors import CorruptFileWarning, StorageError, write_failure
from telemetry.pending import PENDING, fold, folding, pending_files

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; ingests there should not overlap
    fcntl = None  # type: ignore[assignment]
from telemetry.schema import (
    DATASETS,
    REPLACES_KEY,
    SCHEMAS,
    Dataset,
    judge_schema,
)

_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
# Only names this writer makes are trusted for their row count; any other file is counted
# by opening it, so a stray file's name cannot make retention delete real history.
_ROWS = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}(?:-day)?-n(\d+)\.arrow$")
_COUNT_SUFFIX = re.compile(r"(-n\d+)?\.arrow$")
_DAY_FILE = re.compile(r"-day-n\d+\.arrow$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_LOCK = ".lock"
_GUARD = ".guard"
QUARANTINE = "quarantine"
# How a problem that is the user's permissions, not the file's content, begins.
UNREADABLE = "unreadable"
# A temporary file older than this was left by a writer that died; retention removes it.
_STALE_SECONDS = 3600
# Writes sweep for leftovers at most this often; retention run on its own always does.
_SWEEP_SECONDS = 600
_SWEPT = ".swept"
_WRITE_OPTIONS = ipc.IpcWriteOptions(compression="zstd")
_BATCH_ROWS = 65_536
_MAGIC = b"ARROW1"


@dataclass(slots=True, frozen=True)
class StoredFile:
    """One readable data file of a dataset."""

    path: Path
    day: date
    rows: int | None
    # Columns of this version the file lacks (added after it was written): read as nulls.
    missing: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class Snapshot:
    """Listings of a store taken together (:meth:`TelemetryStorage.snapshot`)."""

    sessions: list[StoredFile]
    others: dict[Dataset, list[StoredFile]]

    def committed(
        self, dataset: Dataset, *, skip: frozenset[str] = frozenset()
    ) -> list[StoredFile]:
        """The files of ``dataset`` whose sessions file is in the snapshot (but those whose
        name stem is in ``skip``)."""
        if dataset == "sessions":
            return [f for f in self.sessions if stem_of(f) not in skip]
        visible = {(f.day, stem_of(f)) for f in self.sessions}
        return [
            f
            for f in self.others[dataset]
            if (f.day, stem_of(f)) in visible and stem_of(f) not in skip
        ]


class Finding(NamedTuple):
    """What :meth:`TelemetryStorage.verify` found in one file."""

    path: Path
    problem: str | None  # None: it reads in full

    @property
    def damaged(self) -> bool:
        """Whether the file holds what cannot be read. A file the user may not read is
        not known to be damaged: it is reported, never moved aside."""
        return self.problem is not None and not self.problem.startswith(UNREADABLE)


@dataclass(slots=True, frozen=True)
class RetentionResult:
    """What one retention pass removed."""

    removed_days: tuple[date, ...] = ()
    removed_sessions: int = 0


class TelemetryStorage:
    """Reads and writes one telemetry directory.

    >>> storage = TelemetryStorage(".builder-cache/telemetry")
    >>> storage.dir.name
    'telemetry'
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        *,
        max_sessions: int | None = None,
        retention_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.dir = Path(dir)
        self.max_sessions = max_sessions
        self.retention_days = retention_days
        self._clock = clock or (lambda: datetime.now(UTC))
        self._folding = False

    @property
    def can_lock(self) -> bool:
        """Whether :meth:`lock` excludes other processes (it cannot where the platform has
        no advisory locks)."""
        return fcntl is not None

    def today(self) -> date:
        """Today (UTC) by this store's clock: the day still being written to."""
        return self._clock().date()

    @classmethod
    def from_config(cls, config: TelemetryConfig) -> TelemetryStorage:
        """The store a configuration names, with its retention settings."""
        return cls(
            config.dir, max_sessions=config.max_sessions, retention_days=config.retention_days
        )

    # -- writing ------------------------------------------------------------------------------

    def write(
        self, sessions: pa.RecordBatch | pa.Table, targets: pa.RecordBatch | pa.Table
    ) -> RetentionResult:
        """Store sessions and their targets atomically, then apply retention; returns what
        retention removed.

        Rows go to the partition of the UTC day their session started; a session's targets
        must be in ``targets`` with the same ``session_id``.
        """
        self.append(sessions, targets)
        # A build being recorded never waits for another process's write or compaction.
        return self.apply_retention(sweep=self._sweep_due(), wait=False)

    def append(
        self,
        sessions: pa.RecordBatch | pa.Table,
        targets: pa.RecordBatch | pa.Table,
        *,
        stem: str | None = None,
    ) -> list[date]:
        """Store without applying retention; returns the days written to. A given ``stem``
        names the files (the same stem again replaces them: a rewrite of the same rows);
        it is for sessions of one day."""
        import pyarrow.compute as pc  # only writers need it: readers start faster without

        sessions_table = _as_table(sessions, "sessions")
        targets_table = _as_table(targets, "targets")
        if sessions_table.num_rows == 0:
            return []
        session_days = pc.cast(sessions_table["start_time"], pa.date32())
        days = sorted(set(session_days.to_pylist()))
        if len(days) == 1:
            groups = [(days[0], sessions_table, targets_table)]
        else:
            # Each target row goes to the day of its session: both tables sorted by day,
            # then cut where the day changes.
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
        with self._guard(exclusive=False):
            if len(groups) == 1:
                self._write_day(*groups[0], stem=stem)
                return days
            # Days are independent writes, and most of a write is waiting for the disk
            # (fsync): a backfill of many days writes several at once.
            from concurrent.futures import ThreadPoolExecutor

            def write(day: date, sessions: pa.Table, targets: pa.Table) -> None:
                self._write_day(day, sessions, prune_dictionaries(targets))

            with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
                for done in [pool.submit(write, *group) for group in groups]:
                    done.result()  # the first failure, once every day was tried
        return days

    def _write_day(
        self, day: date, sessions: pa.Table, targets: pa.Table, *, stem: str | None = None
    ) -> None:
        stem = stem or f"{self._clock():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
        # Targets first: the sessions file, renamed last, is what makes the build visible.
        targets_file = self._write_file("targets", day, stem, targets)
        try:
            self._write_file("sessions", day, stem, sessions)
        except StorageError:
            with contextlib.suppress(OSError):
                targets_file.unlink()
            raise

    def write_compacted(
        self,
        day: date,
        sessions: pa.Table,
        targets: pa.Table,
        rollup: pa.Table,
        replaces: list[StoredFile],
    ) -> Path | None:
        """Store one day's merged files in place of the sessions files ``replaces`` (and
        their targets and rollups), then remove those; returns the new sessions file, or
        None when the day was removed while it was being compacted (nothing is left then).

        The caller holds :meth:`lock`. Targets and rollup are renamed first and the sessions
        file last, naming the stems it replaces in its metadata: from its rename on, readers
        see the merged day and ignore the replaced files, so no build is ever counted twice
        or missed.
        """
        stem = f"{self._clock():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}-day"
        stems = sorted(_stem(f.path.name) for f in replaces)
        metadata = {REPLACES_KEY: json.dumps(stems).encode()}
        written: list[Path] = []
        # Shared with writers, and so never beside a removal: the day is either still all
        # there (and its folders may be made, e.g. a targets folder a crash took), or gone.
        with self._guard(exclusive=False):
            if not any(f.path.exists() for f in replaces):
                return None  # retention removed the day: the merged copy must not bring it back
            try:
                written.append(
                    self._write_file("targets", day, stem, _as_table(targets, "targets"))
                )
                written.append(
                    self._write_file("daily_targets", day, stem, _as_table(rollup, "daily_targets"))
                )
                written.append(
                    self._write_file(
                        "sessions", day, stem, _as_table(sessions, "sessions"), metadata=metadata
                    )
                )
            except StorageError:
                for path in written:  # not committed: nobody reads them
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise
            self._remove_stems(day, set(stems))
        return written[-1]

    def remove_replaced(self, day: date) -> int:
        """Remove the files of ``day`` that a compacted sessions file replaces (left by a
        compaction that stopped before removing them); returns how many sessions files went.
        The caller holds :meth:`lock`."""
        folder = self.dir / "sessions" / f"date={day.isoformat()}"
        hidden = _replaced([e for e in _entries(folder) if _is_data(e.name)])
        if hidden:
            self._remove_stems(day, hidden)
        return len(hidden)

    def _remove_stems(self, day: date, stems: set[str]) -> None:
        # Sessions first: once a session row is gone nothing counts its targets or rollup.
        for dataset in ("sessions", "targets", "daily_targets"):
            for entry in _entries(self.dir / dataset / f"date={day.isoformat()}"):
                if _is_data(entry.name) and _stem(entry.name) in stems:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def _write_file(
        self,
        dataset: Dataset,
        day: date,
        stem: str,
        table: pa.Table,
        *,
        metadata: dict[bytes, bytes] | None = None,
    ) -> Path:
        folder = self.dir / dataset / f"date={day.isoformat()}"
        final = folder / f"{stem}-n{table.num_rows}.arrow"
        temporary = folder / f"{_TMP_PREFIX}{stem}.arrow.partial"
        schema = SCHEMAS[dataset]
        if metadata:
            schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with temporary.open("xb") as handle:
                with ipc.new_file(handle, schema, options=_WRITE_OPTIONS) as writer:
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

    @contextlib.contextmanager
    def _guard(self, *, exclusive: bool, wait: bool = True) -> Iterator[bool]:
        """Hold the guard that makes removals wait for writes: shared while writing,
        exclusive while removing days (see the module's docstring); yields False when
        ``wait`` is off and another process holds it. Without file locks, or where the
        guard file cannot be opened (a read-only store, whose writes fail on their own with
        their own error), nothing is held."""
        fd = -1
        if fcntl is not None:
            path = self.dir / _GUARD
            for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
                with contextlib.suppress(OSError):
                    if not exclusive:  # retention never makes the store
                        self.dir.mkdir(parents=True, exist_ok=True)
                    fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
                    break
        try:
            held = True
            if fd >= 0:
                mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
                try:
                    fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
                except BlockingIOError:
                    held = False
            yield held
        finally:
            if fd >= 0:
                os.close(fd)  # and with it the lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's exclusive lock (for check-then-write sequences such as ingest's
        deduplication, and compaction); plain writes and reads never need it (writes and
        retention keep out of each other's way by the guard, see the module's docstring)."""
        if self.dir.exists() and not self.dir.is_dir():
            raise StorageError(
                f"{self.dir} is not a directory; point BUILDER_TELEMETRY_DIR (or --dir) at one"
            )
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = (self.dir / _LOCK).open("a")
        except OSError as error:
            raise StorageError(
                f"could not use {self.dir}: {error.strerror or error}; check "
                f"BUILDER_TELEMETRY_DIR and that the directory is writable"
            ) from error
        with handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    # -- reading ------------------------------------------------------------------------------

    def days(self, dataset: Dataset = "sessions") -> list[date]:
        """The day partitions of a dataset, oldest first."""
        folder = self.dir / dataset
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
            match = _PARTITION.match(entry.name)
            if match and entry.is_dir():
                try:
                    found.append(date.fromisoformat(match.group(1)))
                except ValueError:
                    continue
        return sorted(found)

    def links(self, day: date) -> list[Path]:
        """The folders holding ``day`` (in any dataset) that are links: a day kept elsewhere,
        on another disk say. Readers read through them; nothing of the store writes or
        deletes inside them."""
        folders = [self.dir / d for d in DATASETS]
        folders += [folder / f"date={day.isoformat()}" for folder in folders]
        return [folder for folder in folders if folder.is_symlink()]

    def files(
        self,
        dataset: Dataset,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[StoredFile]:
        """The committed data files of a dataset, by name only (nothing is opened). Listing
        the sessions first folds builds recorded since into the files (see
        :mod:`telemetry.pending`)."""
        if dataset == "sessions" and not self._folding and self._pending():
            self._fold()
        found: list[StoredFile] = []
        for day, entries in self._listing(dataset, days=days, since=since, until=until):
            for entry in entries:
                match = _ROWS.match(entry.name)
                rows = int(match.group(1)) if match else None
                found.append(StoredFile(Path(entry.path), day, rows))
        return found

    def _listing(
        self,
        dataset: Dataset,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> Iterator[tuple[date, list[os.DirEntry[str]]]]:
        """Each day's visible data files of a dataset, by name, in name order."""
        chosen = self.days(dataset) if days is None else sorted(set(days))
        for day in chosen:
            if (since and day < since) or (until and day > until):
                continue
            folder = self.dir / dataset / f"date={day.isoformat()}"
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except FileNotFoundError:
                continue  # removed by retention since we listed it
            except OSError as error:
                warnings.warn(
                    f"skipping {folder}: {error.strerror or error}",
                    CorruptFileWarning,
                    stacklevel=3,
                )
                continue
            data = [entry for entry in entries if _is_data(entry.name)]
            hidden = _replaced(data) if dataset == "sessions" else set()
            if hidden:  # merged into the day's compacted file, about to be removed
                data = [entry for entry in data if _stem(entry.name) not in hidden]
            yield day, data

    def committed_targets(
        self,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[StoredFile]:
        """The targets files whose sessions file (the same name stem) is visible.

        A write's session row is its commit marker: targets left by a writer that died
        between its two renames are not counted, even if the build is stored again later.
        """
        return self.committed("targets", days=days, since=since, until=until)

    def committed(
        self,
        dataset: Dataset,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[StoredFile]:
        """The files of ``dataset`` (targets, or the daily rollups) whose sessions file, of
        the same name stem, is visible."""
        snapshot = self.snapshot(days=days, since=since, until=until, datasets=(dataset,))
        return snapshot.committed(dataset)

    def snapshot(
        self,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
        datasets: tuple[Dataset, ...] = ("targets", "daily_targets"),
    ) -> Snapshot:
        """The visible sessions files and every targets and rollup file, listed so that they
        agree: the sessions are listed before and after the others, and again while a
        sessions file listed before was gone after (replaced by a compaction, or removed by
        retention). A build committed meanwhile is left out: its targets may not be listed."""
        chosen = None if days is None else sorted(set(days))
        for _ in range(5):
            before = self.files("sessions", days=chosen, since=since, until=until)
            others = {
                dataset: self.files(dataset, days=chosen, since=since, until=until)
                for dataset in datasets
            }
            after = {f.path for f in self.files("sessions", days=chosen, since=since, until=until)}
            if all(f.path in after for f in before):
                return Snapshot(before, others)
        raise StorageError(
            f"the files in {self.dir} kept changing while they were listed; try again"
        )

    def readable(
        self, dataset: Dataset, files: Iterable[StoredFile], *, warn: bool = True
    ) -> list[StoredFile]:
        """The files whose footer and schema this version can read, each with the columns
        it lacks (written before they were added); warns about the rest."""
        missing: dict[Path, tuple[str, ...]] = {}
        bad = self._check(dataset, files := list(files), full=False, missing=missing, warn=warn)
        return [
            replace(f, missing=missing[f.path]) if missing.get(f.path) else f
            for f in files
            if f.path not in bad
        ]

    def damaged(self, dataset: Dataset, files: Iterable[StoredFile]) -> set[Path]:
        """The files whose data cannot be read in full (a slower check than
        :meth:`readable`, for when a query over them failed); warns about each."""
        return self._check(dataset, files, full=True)

    def _check(
        self,
        dataset: Dataset,
        files: Iterable[StoredFile],
        *,
        full: bool,
        missing: dict[Path, tuple[str, ...]] | None = None,
        warn: bool = True,
    ) -> set[Path]:
        bad = set()
        for stored in files:
            problem, lacking = _inspect(stored.path, dataset, full=full)
            if problem is None:
                if lacking and missing is not None:
                    missing[stored.path] = lacking
                continue
            bad.add(stored.path)
            if problem != "vanished" and warn:
                warnings.warn(
                    f"skipping {stored.path}: {problem}", CorruptFileWarning, stacklevel=3
                )
        return bad

    def verify(self) -> Iterator[Finding]:
        """Every data file with the reason it cannot be read in full, or None when it can.

        >>> [p for p, problem in TelemetryStorage("t").verify() if problem]  # doctest: +SKIP
        [PosixPath('t/sessions/date=2025-10-27/broken.arrow')]
        """
        for dataset in DATASETS:
            for stored in self.files(dataset):
                problem = _problem(stored.path, dataset, full=True)
                if problem != "vanished":
                    yield Finding(stored.path, problem)

    def quarantine(self, path: Path) -> Path:
        """Move a damaged file out of the data (into ``<dir>/quarantine/``, under the same
        relative path), where readers no longer see it and nothing deletes it.

        Nothing outside the store is moved: a file in a day folder that links elsewhere is
        refused, as is a file the user may not read (it is not known to be damaged)."""
        real = Path(os.path.realpath(path.parent))
        if not real.is_relative_to(os.path.realpath(self.dir)):
            raise StorageError(
                f"{path.parent} is a link to {real}, outside the store; move {path.name} "
                f"aside there yourself"
            )
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError as error:
            if not isinstance(error, FileNotFoundError):  # gone: the move below says so
                raise StorageError(
                    f"{path} is {UNREADABLE} ({_reason(error)}), which is not damage; fix "
                    f"its permissions and verify again"
                ) from error
        relative = path.relative_to(self.dir)
        target = self.dir / QUARANTINE / relative
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

    def session_ids(self) -> set[str]:
        """The ids of every stored session (unreadable files are skipped with a warning)."""
        ids: set[str] = set()
        for stored in self.readable("sessions", self.files("sessions")):
            try:
                with pa.memory_map(str(stored.path)) as source:
                    reader = ipc.open_file(source)
                    for i in range(reader.num_record_batches):
                        ids.update(reader.get_batch(i).column("session_id").to_pylist())
            except (OSError, pa.ArrowException):
                continue  # vanished or damaged since it was checked; nothing to deduplicate
        return ids

    def session_count(self) -> int:
        """Sessions stored, counted from file names where they say."""
        return sum(_rows(f) for f in self.files("sessions"))

    def is_empty(self) -> bool:
        """Whether no sessions file is stored (readable or not)."""
        return not self.files("sessions")

    def _pending(self) -> bool:
        try:
            return bool(pending_files(self.dir))
        except OSError:
            return True  # the fold says why they cannot be read

    def _fold(self) -> None:
        self._folding = True  # the fold's own writes and retention list the store too
        try:
            fold(self)
        finally:
            self._folding = False

    # -- maintenance --------------------------------------------------------------------------

    def apply_retention(self, *, sweep: bool = True, wait: bool = True) -> RetentionResult:
        """Remove whole day partitions: older than the retention days, then oldest first
        while more sessions than the cap are stored (the newest day is always kept); with
        ``sweep``, also what writers that died left behind.

        What goes is decided and renamed away while no write is under way (the guard, held
        alone), so a write never loses its day folder, and a build is removed whole or
        not at all; the folders are deleted after, and deciding that nothing goes needs no
        lock. Without ``wait``, retention is skipped while another process writes or
        compacts (the next write applies it), so a build's write never waits on it."""
        result = RetentionResult()
        days, orphans, _ = self._retention_plan()
        trash: list[Path] = []
        if days or orphans:
            with self._guard(exclusive=True, wait=wait) as held:
                if held:
                    days, orphans, removed_sessions = self._retention_plan()
                    for day in days:
                        for dataset in DATASETS:  # sessions first: no session loses targets
                            self._remove_partition(dataset, day, trash=trash)
                    for dataset, day in orphans:
                        self._remove_partition(dataset, day, trash=trash)
                    result = RetentionResult(tuple(days), removed_sessions)
        for folder in trash:  # the slow delete, once writes may go on again
            _remove_tree(folder)
        if sweep:
            self._remove_leftovers()
        return result

    def _retention_plan(self) -> tuple[list[date], list[tuple[Dataset, date]], int]:
        """The days retention removes, the targets and rollup partitions past the cutoff
        whose sessions are gone (a crash between the renames of a removal), and the
        sessions those days hold."""
        removed: list[date] = []
        removed_sessions = 0
        # Counted from the names alone: this runs after every write, over every day stored.
        day_rows: dict[date, int] = {}
        for day, entries in self._listing("sessions"):
            if entries:
                day_rows[day] = sum(_rows_named(entry, day) for entry in entries)
        days = sorted(day_rows)
        orphans: list[tuple[Dataset, date]] = []
        if self.retention_days is not None:
            cutoff = self._clock().date() - timedelta(days=self.retention_days)
            while days and days[0] < cutoff:
                day = days.pop(0)
                removed.append(day)
                removed_sessions += day_rows[day]
            orphans = [
                (dataset, day)
                for dataset in DATASETS[1:]
                for day in self.days(dataset)
                if day < cutoff and day not in removed
            ]
        if self.max_sessions is not None:
            total = sum(day_rows[d] for d in days)
            while len(days) > 1 and total > self.max_sessions:
                day = days.pop(0)
                removed.append(day)
                removed_sessions += day_rows[day]
                total -= day_rows[day]
        return removed, orphans, removed_sessions

    def _sweep_due(self) -> bool:
        """Whether the store was last swept for leftovers over ten minutes ago (a write
        after every build need not look in every day folder: leftovers are removed only
        once an hour old anyway); marks it swept now when so."""
        marker = self.dir / _SWEPT
        try:
            if time.time() - marker.stat().st_mtime < _SWEEP_SECONDS:
                return False
        except OSError:
            pass
        with contextlib.suppress(OSError):
            marker.touch()
        return True

    def remove_day(self, day: date) -> None:
        """Remove one day of every dataset; sessions first, so no session loses its targets."""
        for dataset in DATASETS:
            self._remove_partition(dataset, day)

    def _remove_partition(
        self, dataset: Dataset, day: date, *, trash: list[Path] | None = None
    ) -> None:
        """Remove one day of ``dataset``: renamed away at once (atomic for readers), then
        deleted, or, with ``trash``, left there for the caller to delete later."""
        folder = self.dir / dataset / f"date={day.isoformat()}"
        if (self.dir / dataset).is_symlink():
            return  # its days are kept elsewhere, where the store deletes nothing
        away = self.dir / dataset / f"{_TRASH_PREFIX}{uuid.uuid4().hex}"
        try:
            os.rename(folder, away)
        except FileNotFoundError:
            return  # another process removed it first
        except OSError as error:
            raise StorageError(f"could not remove {folder}: {error.strerror or error}") from error
        if trash is None:
            _remove_tree(away)
        else:
            trash.append(away)

    def _remove_leftovers(self) -> None:
        """Remove what writers that died left behind, once it is over an hour old (younger
        files may belong to a write in progress): temporary files, half-removed partitions,
        and targets files whose sessions file never appeared."""
        now = time.time()

        def stale(entry: os.DirEntry[str]) -> bool:
            try:
                return now - entry.stat().st_mtime > _STALE_SECONDS
            except OSError:
                return False

        stems: dict[str, set[str]] = {}  # the sessions stems of each day folder
        for dataset in DATASETS:
            if (self.dir / dataset).is_symlink():
                continue  # kept elsewhere: read, never deleted from
            for entry in _entries(self.dir / dataset):
                if entry.name.startswith(_TRASH_PREFIX):
                    _remove_tree(Path(entry.path))
                    continue
                inside = _entries(entry.path)
                if dataset == "sessions":
                    stems[entry.name] = {_stem(e.name) for e in inside}
                if entry.is_symlink():
                    continue  # a day kept elsewhere: read, never deleted from
                committed = None if dataset == "sessions" else stems.get(entry.name, set())
                for inner in inside:
                    leftover = inner.name.startswith(_TMP_PREFIX) or (
                        committed is not None
                        and inner.name.endswith(".arrow")
                        and _stem(inner.name) not in committed
                    )
                    if leftover and stale(inner):
                        with contextlib.suppress(OSError):
                            os.unlink(inner.path)
        for entry in _entries(self.dir / PENDING):  # a recording killed while writing
            if entry.name.startswith(_TMP_PREFIX) and stale(entry):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def clear(self) -> int:
        """Remove all telemetry data, quarantined files included; returns the number of
        sessions removed."""
        # A fold under way finishes first (its builds are then removed with the rest), and
        # a build being written waits, then is kept: the locks in the order folds take them.
        with contextlib.ExitStack() as held:
            with contextlib.suppress(OSError):  # no pending folder: nothing to wait for
                held.enter_context(folding(self.dir))
            held.enter_context(self._guard(exclusive=True))
            self._folding = True  # recorded builds not yet folded are removed as they are
            try:
                try:
                    waiting = len(pending_files(self.dir))
                except OSError:
                    waiting = 0  # a folder we may not list: removed below if we may
                count = self.session_count() + waiting
            finally:
                self._folding = False
            _remove_tree(self.dir / PENDING)
            for dataset in DATASETS:
                for day in self.days(dataset):
                    self._remove_partition(dataset, day)
                _remove_tree(self.dir / dataset)
            _remove_tree(self.dir / QUARANTINE)
        return count


def _remove_tree(path: Path) -> None:
    """Remove a folder and what is in it; a link (to a day kept on another disk, say) is
    removed itself, never what it points to (``shutil.rmtree`` refuses a link, and would
    leave it behind for ever)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _as_table(data: pa.RecordBatch | pa.Table, dataset: Dataset) -> pa.Table:
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


def _rows_named(entry: os.DirEntry[str], day: date) -> int:
    match = _ROWS.match(entry.name)
    return int(match.group(1)) if match else _rows(StoredFile(Path(entry.path), day, None))


def _rows(stored: StoredFile) -> int:
    if stored.rows is not None:
        return stored.rows
    try:
        with ipc.open_file(stored.path) as reader:
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (OSError, pa.ArrowException):
        return 0


def _problem(path: Path, dataset: Dataset, *, full: bool = False) -> str | None:
    """Why ``path`` cannot be read as a file of ``dataset``, or None when it can.

    By default only the footer and schema are read; ``full`` reads and validates the data.
    """
    return _inspect(path, dataset, full=full)[0]


def _inspect(path: Path, dataset: Dataset, *, full: bool) -> tuple[str | None, tuple[str, ...]]:
    """What :func:`_problem` says, and the columns a readable file lacks."""
    try:
        schema = _footer_schema(path)
        if full:
            with pa.memory_map(str(path)) as source:
                ipc.open_file(source).read_all().validate(full=True)
    except FileNotFoundError:
        return "vanished", ()
    except _Unsound as unsound:
        try:  # pyarrow's words, when it has any, are the ones people search for
            with ipc.open_file(str(path)):
                pass
        except (OSError, pa.ArrowException) as error:
            if _errno(error) is None:
                return f"not a complete Arrow IPC file ({_first_line(error)})", ()
        return f"not a complete Arrow IPC file ({unsound})", ()
    except OSError as error:
        if _errno(error) is None:  # Arrow's own I/O errors are about what the file holds
            return f"damaged data ({_first_line(error)})", ()
        return f"{UNREADABLE} ({_reason(error)})", ()
    except pa.ArrowException as error:
        return f"damaged data ({_first_line(error)})", ()
    return judge_schema(schema, dataset)


class _Unsound(Exception):
    """The two ends of a file are not those of one whole Arrow IPC file (the message says
    where they differ)."""


# A footer's Block: the offset of a message, its metadata's length, its body's length.
_BLOCK = struct.Struct("<qi4xq")
_EOS = 8  # the end-of-stream marker some writers put between the last message and the footer


def _footer_schema(path: Path) -> pa.Schema:
    """The schema in the footer of an Arrow IPC file, once the footer is known to describe
    the file; :class:`_Unsound` when it does not.

    Readers (polars, pyarrow) take the schema and the place of every message from the
    footer, and polars trusts those places: a footer pointing past the end makes it panic.
    So the footer's blocks must tile the file from the end of the schema message it starts
    with up to the footer. Both ends are read with one ``pread`` each and pyarrow parses the
    footer from those bytes, without the file: a third cheaper than opening it with pyarrow,
    which checks no block.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 16, 0)
        tail = os.pread(fd, 4096, max(0, size - 4096))
        if size < 32 or head[:6] != _MAGIC or tail[-6:] != _MAGIC:
            raise _Unsound("it does not start and end as one")
        marker, length = struct.unpack_from("<Ii", head, 8)
        footer_length = struct.unpack_from("<i", tail, len(tail) - 10)[0]
        schema_end = 16 + length
        footer_start = size - 10 - footer_length
        if marker != 0xFFFFFFFF or length <= 0 or footer_length <= 0:
            raise _Unsound("the length of its schema or of its footer is not a length")
        if schema_end > footer_start:
            raise _Unsound("its schema and its footer overlap")
        if footer_length + 10 > len(tail):
            tail = os.pread(fd, footer_length + 10, footer_start)
    finally:
        os.close(fd)
    footer = tail[len(tail) - 10 - footer_length : len(tail) - 10]
    end = schema_end
    for offset, metadata, body in sorted(_footer_blocks(footer)):
        if offset != end or metadata <= 0 or body < 0:
            raise _Unsound("its footer places its record batches outside the data")
        end = offset + metadata + body
    if end not in (footer_start, footer_start - _EOS):
        raise _Unsound("its footer places its record batches outside the data")
    try:  # the footer and what follows it, behind a start: no block is read here
        with ipc.open_file(pa.BufferReader(head[:8] + tail[-10 - footer_length :])) as reader:
            return reader.schema
    except (OSError, pa.ArrowException) as error:
        raise _Unsound(f"its footer is damaged: {_first_line(error)}") from None


def _footer_blocks(footer: bytes) -> list[tuple[int, int, int]]:
    """The dictionary and record batch blocks a footer lists (the Footer table of Arrow's
    File.fbs: fields 2 and 3), every offset checked to lie inside it."""

    def read(form: str, at: int) -> int:
        if not 0 <= at <= len(footer) - struct.calcsize(form):
            raise _Unsound("its footer is damaged: an offset points outside it")
        value: int = struct.unpack_from(form, footer, at)[0]
        return value

    table = read("<I", 0)
    vtable = table - read("<i", table)
    fields = (read("<H", vtable) - 4) // 2
    blocks: list[tuple[int, int, int]] = []
    for field in (2, 3):
        slot = read("<H", vtable + 4 + 2 * field) if field < fields else 0
        if slot == 0:
            continue  # absent: none of them
        vector = table + slot + read("<I", table + slot)
        count = read("<I", vector)
        if count * _BLOCK.size > len(footer) - vector - 4:
            raise _Unsound("its footer is damaged: an offset points outside it")
        blocks += _BLOCK.iter_unpack(footer[vector + 4 : vector + 4 + count * _BLOCK.size])
    return blocks


def _errno(error: BaseException) -> int | None:
    """The operating system's error number behind an error (Arrow's errors carry it in their
    message), or None for Arrow's own complaints about a file's content."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    found = re.search(r"\[errno (\d+)\]", str(error))
    return int(found.group(1)) if found else None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _reason(error: OSError) -> str:
    """Why a file could not be opened, without repeating its path: Arrow's errors carry the
    whole message in ``strerror`` (``Failed to open local file '...'. Detail: [errno 13]
    Permission denied``), so the errno is what is said."""
    if error.errno:
        return os.strerror(error.errno)
    found = re.search(r"\[errno (\d+)\]", str(error))
    return os.strerror(int(found.group(1))) if found else error.strerror or str(error)


def _is_data(name: str) -> bool:
    return not name.startswith(".") and name.endswith(".arrow")


def _replaced(entries: list[os.DirEntry[str]]) -> set[str]:
    """The name stems that the compacted sessions files among ``entries`` (one day's
    sessions files) replace. Nothing is opened unless a compacted file has company."""
    days = [e for e in entries if _DAY_FILE.search(e.name)]
    if not days or len(entries) == 1:
        return set()
    stems: set[str] = set()
    for entry in days:
        try:  # the footer's schema, once checked: a damaged one could name other files
            metadata = _footer_schema(Path(entry.path)).metadata or {}
            named = json.loads(metadata.get(REPLACES_KEY, b"[]"))
        except (OSError, pa.ArrowException, ValueError, _Unsound):
            continue  # vanished or damaged: readers skip it and still see what it replaced
        if isinstance(named, list):
            stems.update(str(stem) for stem in named)
    return stems


def stem_of(stored: StoredFile) -> str:
    """What the files of one write share: the name less ``-nN.arrow``."""
    return _stem(stored.path.name)


def _stem(name: str) -> str:
    """What the two files of one write share: the name less ``-nN.arrow``."""
    return _COUNT_SUFFIX.sub("", name)


def _entries(folder: str | Path) -> list[os.DirEntry[str]]:
    """A folder's entries; none when it is gone or not a folder (another process may be
    removing it right now)."""
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


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
