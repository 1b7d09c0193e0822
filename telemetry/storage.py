"""The store: day-partitioned, zstd-compressed Arrow IPC files, written atomically.

:class:`TelemetryStorage` is the store's front: one object for a directory that writes
(:mod:`telemetry.writer`), reads (a :class:`~telemetry.snapshot.Snapshot`, the one reader)
and maintains (:mod:`telemetry.maintenance`); the layout of the files is
:mod:`telemetry.layout`'s. The write protocol, which the three keep together:

- Every write makes new files with unique names, so concurrent builds never overwrite each
  other. A file is written to a hidden temporary name, synced, then renamed into place.
- The targets file is renamed first and the sessions file last: a session row is the
  commit marker, and readers only count targets of sessions they can see. So a session is
  visible completely or not at all, and a crash leaves at worst a hidden temporary file or
  unreferenced targets. The ``-nN`` in a name is the file's row count, which lets retention
  and ``recent`` plan without opening files.
- A compacted day's sessions file (``-day`` in its name) names the files it replaces in its
  metadata, and is renamed into place after its targets and rollup: readers ignore the
  replaced files from that moment, so the day's builds are never counted twice or missed.
  Then the replaced files are moved to a hidden folder, where the snapshots taken before
  still find them for an hour; a crash anywhere leaves only files nobody reads.
- Removal waits for writers. Every write holds the store's guard (``.guard``) shared, and
  retention holds it alone while it decides which days go and renames them away: a day
  folder never vanishes under a write (which would fail it, or keep its session row and
  lose its targets), and a removal never counts a day while a write is adding to it.
  Compaction's commit holds it shared too, so a day is removed whole, before or after it
  was merged. The retention after a build's write does not wait for the guard: when
  another process holds it, that retention is left to the next write.
- Builds recorded by ``builder record`` wait as small files in ``pending/`` (see
  :mod:`telemetry.pending`); taking a snapshot folds them in first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from telemetry import locks, maintenance, writer
from telemetry.config import TelemetryConfig
from telemetry.errors import StorageError
from telemetry.integrity import Finding
from telemetry.layout import Layout, new_stem
from telemetry.maintenance import QUARANTINE, RetentionResult
from telemetry.pending import fold, folding, pending_files
from telemetry.schema import DATASETS, Dataset
from telemetry.snapshot import Snapshot, SnapshotChanged, StoredFile, list_days, list_files

if TYPE_CHECKING:
    import pyarrow as pa

# How many snapshots a read is tried on while files are deleted beside it.
_RETRIES = 3

__all__ = ["QUARANTINE", "RetentionResult", "Snapshot", "StoredFile", "TelemetryStorage"]


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
        rollup_retention_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.dir = Path(dir)
        self.layout = Layout(self.dir)
        self.max_sessions = max_sessions
        self.retention_days = retention_days
        self.rollup_retention_days = rollup_retention_days
        self._clock = clock or (lambda: datetime.now(UTC))
        self._folding = False

    @classmethod
    def from_config(cls, config: TelemetryConfig) -> TelemetryStorage:
        """The store a configuration names, with its retention settings."""
        return cls(
            config.dir,
            max_sessions=config.max_sessions,
            retention_days=config.retention_days,
            rollup_retention_days=config.rollup_retention_days,
        )

    @property
    def can_lock(self) -> bool:
        """Whether :meth:`lock` excludes other processes (it cannot where the platform has
        no advisory locks)."""
        return locks.can_lock()

    def now(self) -> datetime:
        """This moment (UTC) by this store's clock."""
        return self._clock()

    def today(self) -> date:
        """Today (UTC) by this store's clock: the day still being written to."""
        return self._clock().date()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the store's exclusive lock (for check-then-write sequences such as ingest's
        deduplication, and compaction); plain writes and reads never need it."""
        return locks.lock(self.dir)

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
        return self.apply_retention(sweep=maintenance.sweep_due(self.layout), wait=False)

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
        return writer.write(self.layout, sessions, targets, clock=self._clock, stem=stem)

    def write_compacted(
        self,
        day: date,
        sessions: pa.Table,
        targets: pa.Table,
        rollup: pa.Table,
        replaces: list[StoredFile],
    ) -> Path | None:
        """Commit one day's merged files in place of the sessions files ``replaces`` (see
        :func:`telemetry.maintenance.commit_compacted`); the caller holds :meth:`lock`."""
        stem = new_stem(self._clock(), compacted=True)
        return maintenance.commit_compacted(
            self.layout, day, stem, sessions, targets, rollup, replaces
        )

    def write_copies(self, day: date) -> int:
        """Write the missing Parquet copies of ``day``'s compacted files (see
        :func:`telemetry.maintenance.write_copies`); the caller holds :meth:`lock`."""
        return maintenance.write_copies(self.layout, day)

    def remove_replaced(self, day: date) -> int:
        """Take out the files of ``day`` that a compacted sessions file replaces (left by a
        compaction that stopped before it took them out); the caller holds :meth:`lock`."""
        return maintenance.remove_replaced(self.layout, day)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(
        self,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
        datasets: Iterable[Dataset] = DATASETS,
        packs: bool = False,
    ) -> Snapshot:
        """The live files of the store (of the days asked for), listed together: see
        :class:`telemetry.snapshot.Snapshot` (and its ``packs``). Builds recorded since are
        folded in first.

        >>> TelemetryStorage("store").snapshot().scan("sessions").collect()  # doctest: +SKIP
        """
        if not self._folding and self._pending():
            self._fold()
        return Snapshot.take(
            self.layout, days=days, since=since, until=until, datasets=datasets, packs=packs
        )

    def days(self, dataset: Dataset = "sessions") -> list[date]:
        """The day partitions of a dataset, oldest first."""
        return list_days(self.layout, dataset)

    def files(
        self,
        dataset: Dataset,
        *,
        days: Iterable[date] | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[StoredFile]:
        """The visible data files of a dataset, by name only (nothing is opened; for
        reading, a :meth:`snapshot` lists the committed, readable ones). Builds recorded
        since are folded in first."""
        if dataset == "sessions" and not self._folding and self._pending():
            self._fold()
        return list_files(self.layout, dataset, days=days, since=since, until=until)

    def links(self, day: date) -> list[Path]:
        """The folders holding ``day`` (in any dataset) that are links: a day kept elsewhere,
        on another disk say. Readers read through them; nothing of the store writes or
        deletes inside them."""
        folders = [self.layout.dataset(d) for d in DATASETS]
        folders += [self.layout.partition(d, day) for d in DATASETS]
        return [folder for folder in folders if folder.is_symlink()]

    def session_ids(self) -> set[str]:
        """The ids of every stored session (unreadable files are skipped with a warning)."""
        for _ in range(_RETRIES):
            snapshot = self.snapshot(datasets=("sessions",))
            ids: set[str] = set()
            try:
                for stored in snapshot.files("sessions"):
                    table = snapshot.read(stored, "sessions")
                    if table is not None:  # damaged since it was checked: nothing to skip
                        ids.update(table.column("session_id").to_pylist())
            except SnapshotChanged:
                continue  # a file deleted for good meanwhile: the store as it is now
            return ids
        raise StorageError(f"the files in {self.dir} kept changing while they were read; try again")

    def session_count(self) -> int:
        """Sessions stored, counted from file names where they say."""
        return sum(maintenance.count_rows(f) for f in self.files("sessions"))

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
        ``sweep``, also what writers that died left behind. Without ``wait``, retention is
        skipped while another process writes or compacts (the next write applies it), so a
        build's write never waits on it. See :func:`telemetry.maintenance.apply_retention`."""
        return maintenance.apply_retention(
            self.layout,
            retention_days=self.retention_days,
            max_sessions=self.max_sessions,
            today=self.today(),
            sweep=sweep,
            wait=wait,
        )

    def retention_plan(self) -> RetentionResult:
        """What :meth:`apply_retention` would remove now (the days and their builds), with
        nothing removed."""
        days, _, sessions = maintenance.retention_plan(
            self.layout, self.retention_days, self.max_sessions, self.today()
        )
        return RetentionResult(tuple(days), sessions)

    def sweep(self, *, wait: bool = True) -> bool:
        """Remove what dead writers left and what maintenance took out over an hour ago,
        while nothing writes (see :func:`telemetry.maintenance.sweep_leftovers`)."""
        return maintenance.sweep_leftovers(self.layout, wait=wait)

    def remove_day(self, day: date) -> None:
        """Remove one day of every dataset; sessions first, so no session loses its targets."""
        for dataset in DATASETS:
            maintenance.remove_partition(self.layout, dataset, day, at_once=True)

    def verify(self) -> Iterator[Finding]:
        """Every data file with the reason it cannot be read in full, or None when it can.

        >>> [p for p, problem in TelemetryStorage("t").verify() if problem]  # doctest: +SKIP
        [PosixPath('t/sessions/date=2025-10-27/broken.arrow')]
        """
        return maintenance.verify(self.layout)

    def quarantine(self, path: Path) -> Path:
        """Move a damaged file into ``<dir>/quarantine/`` (see
        :func:`telemetry.maintenance.quarantine`)."""
        return maintenance.quarantine(self.layout, path)

    def clear(self) -> int:
        """Remove all telemetry data, quarantined files included; returns the number of
        sessions removed."""
        # A fold under way finishes first (its builds are then removed with the rest), and
        # a build being written waits, then is kept: the locks in the order folds take them.
        with contextlib.ExitStack() as held:
            if self.dir.is_dir():  # a compaction or a rollup under way finishes first
                held.enter_context(locks.lock(self.dir))
            with contextlib.suppress(OSError):  # no pending folder: nothing to wait for
                held.enter_context(folding(self.dir))
            held.enter_context(locks.guard(self.dir, exclusive=True))
            self._folding = True  # recorded builds not yet folded are removed as they are
            try:
                return maintenance.clear(self.layout, self.session_count)
            finally:
                self._folding = False
