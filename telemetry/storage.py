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

import pyarrow as pa
import pyarrow.ipc as ipc

from telemetry.config import TelemetryConfig
from telemetry.errors import CorruptFileWarning, StorageError

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
QUARANTINE = "quarantine"
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
    ) -> None:
        """Store sessions and their targets atomically, then apply retention.

        Rows go to the partition of the UTC day their session started; a session's targets
        must be in ``targets`` with the same ``session_id``.
        """
        self.append(sessions, targets)
        self.apply_retention(sweep=self._sweep_due())

    def append(
        self, sessions: pa.RecordBatch | pa.Table, targets: pa.RecordBatch | pa.Table
    ) -> list[date]:
        """Store without applying retention; returns the days written to."""
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
        if len(groups) == 1:
            self._write_day(*groups[0])
            return days
        # Days are independent writes, and most of a write is waiting for the disk (fsync):
        # a backfill of many days writes several at once.
        from concurrent.futures import ThreadPoolExecutor

        def write(day: date, sessions: pa.Table, targets: pa.Table) -> None:
            self._write_day(day, sessions, prune_dictionaries(targets))

        with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
            for done in [pool.submit(write, *group) for group in groups]:
                done.result()  # the first failure, once every day was tried
        return days

    def _write_day(self, day: date, sessions: pa.Table, targets: pa.Table) -> None:
        stem = f"{self._clock():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
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
        try:
            # The day's folders are never made here: if retention removed the day while it
            # was being read, the merged copy must not bring it back.
            written.append(
                self._write_file("targets", day, stem, _as_table(targets, "targets"), make=False)
            )
            written.append(
                self._write_file("daily_targets", day, stem, _as_table(rollup, "daily_targets"))
            )
            written.append(
                self._write_file(
                    "sessions",
                    day,
                    stem,
                    _as_table(sessions, "sessions"),
                    metadata=metadata,
                    make=False,
                )
            )
        except StorageError:
            for path in written:  # not committed: nobody reads them
                with contextlib.suppress(OSError):
                    path.unlink()
            if not (self.dir / "sessions" / f"date={day.isoformat()}").is_dir():
                return None  # the day was removed meanwhile
            raise
        if not any(f.path.exists() for f in replaces):
            # Retention removed the day meanwhile (the folders were made anew for our files):
            # the merged copy must not bring it back.
            for path in reversed(written):
                with contextlib.suppress(OSError):
                    path.unlink()
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
            return None
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
        make: bool = True,
    ) -> Path:
        folder = self.dir / dataset / f"date={day.isoformat()}"
        final = folder / f"{stem}-n{table.num_rows}.arrow"
        temporary = folder / f"{_TMP_PREFIX}{stem}.arrow.partial"
        schema = SCHEMAS[dataset]
        if metadata:
            schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
        try:
            if make:
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
            raise StorageError(
                f"could not write {final}: {error.strerror or error}; check that the "
                f"directory is writable and the disk is not full"
            ) from error
        return final

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's exclusive lock (for check-then-write sequences such as ingest's
        deduplication); plain writes and reads never need it."""
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

    def files(
        self,
        dataset: Dataset,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[StoredFile]:
        """The committed data files of a dataset, by name only (nothing is opened)."""
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

    def verify(self) -> Iterator[tuple[Path, str | None]]:
        """Every data file with the reason it cannot be read in full, or None when it can.

        >>> [p for p, problem in TelemetryStorage("t").verify() if problem]  # doctest: +SKIP
        [PosixPath('t/sessions/date=2025-10-27/broken.arrow')]
        """
        for dataset in DATASETS:
            for stored in self.files(dataset):
                problem = _problem(stored.path, dataset, full=True)
                if problem != "vanished":
                    yield stored.path, problem

    def quarantine(self, path: Path) -> Path:
        """Move a damaged file out of the data (into ``<dir>/quarantine/``, under the same
        relative path), where readers no longer see it and nothing deletes it."""
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

    # -- maintenance --------------------------------------------------------------------------

    def apply_retention(self, *, sweep: bool = True) -> RetentionResult:
        """Remove whole day partitions: older than the retention days, then oldest first
        while more sessions than the cap are stored (the newest day is always kept); with
        ``sweep``, also what writers that died left behind."""
        removed: list[date] = []
        removed_sessions = 0
        # Counted from the names alone: this runs after every write, over every day stored.
        day_rows: dict[date, int] = {}
        for day, entries in self._listing("sessions"):
            if entries:
                day_rows[day] = sum(_rows_named(entry, day) for entry in entries)
        days = sorted(day_rows)
        cutoff = None
        if self.retention_days is not None:
            cutoff = self._clock().date() - timedelta(days=self.retention_days)
            while days and days[0] < cutoff:
                day = days.pop(0)
                removed.append(day)
                removed_sessions += day_rows[day]
        if self.max_sessions is not None:
            total = sum(day_rows[d] for d in days)
            while len(days) > 1 and total > self.max_sessions:
                day = days.pop(0)
                removed.append(day)
                removed_sessions += day_rows[day]
                total -= day_rows[day]
        for day in removed:
            self.remove_day(day)
        # Targets partitions past the cutoff whose sessions are gone (a crash between the two
        # renames of a removal) go too. Newer ones may belong to a write in progress.
        if cutoff is not None:
            for dataset in DATASETS[1:]:
                for day in self.days(dataset):
                    if day < cutoff:
                        self._remove_partition(dataset, day)
        if sweep:
            self._remove_leftovers()
        return RetentionResult(tuple(removed), removed_sessions)

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

    def _remove_partition(self, dataset: Dataset, day: date) -> None:
        folder = self.dir / dataset / f"date={day.isoformat()}"
        # Renaming first makes the removal atomic for readers; the slow delete comes after.
        trash = self.dir / dataset / f"{_TRASH_PREFIX}{uuid.uuid4().hex}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:
            return  # another process removed it first
        except OSError as error:
            raise StorageError(f"could not remove {folder}: {error.strerror or error}") from error
        shutil.rmtree(trash, ignore_errors=True)

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
            for entry in _entries(self.dir / dataset):
                if entry.name.startswith(_TRASH_PREFIX):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                inside = _entries(entry.path)
                if dataset == "sessions":
                    stems[entry.name] = {_stem(e.name) for e in inside}
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

    def clear(self) -> int:
        """Remove all telemetry data, quarantined files included; returns the number of
        sessions removed."""
        count = self.session_count()
        for dataset in DATASETS:
            for day in self.days(dataset):
                self._remove_partition(dataset, day)
            folder = self.dir / dataset
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.dir / QUARANTINE, ignore_errors=True)
        return count


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
        if full:
            with pa.memory_map(str(path)) as source:
                reader = ipc.open_file(source)
                schema = reader.schema
                reader.read_all().validate(full=True)
        else:
            schema = _head_schema(path)
            if schema is None:  # anything unusual: the reader of the footer says what
                with ipc.open_file(str(path)) as reader:
                    schema = reader.schema
    except FileNotFoundError:
        return "vanished", ()
    except OSError as error:
        return f"unreadable ({_reason(error)})", ()
    except pa.ArrowException as error:
        what = "damaged data" if full else "not a complete Arrow IPC file"
        return f"{what} ({str(error).splitlines()[0]})", ()
    return judge_schema(schema, dataset)


def _head_schema(path: Path) -> pa.Schema | None:
    """The schema an Arrow IPC file starts with, when it also ends as one; None when it
    looks any other way. The file format repeats its schema at its start (the stream that
    it wraps begins with it), and reading that takes a tenth of opening the footer."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 4096, 0)
        if size < 32 or os.pread(fd, 6, size - 6) != _MAGIC or head[:6] != _MAGIC:
            return None
        marker, length = struct.unpack_from("<Ii", head, 8)
        if marker != 0xFFFFFFFF or not 0 < length < size:
            return None
        if 16 + length > len(head):
            head = os.pread(fd, 16 + length, 0)
    finally:
        os.close(fd)
    try:
        return ipc.read_schema(pa.py_buffer(head[8 : 16 + length]))
    except (OSError, pa.ArrowException):  # damaged at its start: the footer may still say
        return None


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
        try:
            with pa.memory_map(entry.path) as source:
                metadata = ipc.open_file(source).schema.metadata or {}
            named = json.loads(metadata.get(REPLACES_KEY, b"[]"))
        except (OSError, pa.ArrowException, ValueError):
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
