"""The months job: each closed month's compacted days packed into one Parquet file per
dataset (:mod:`telemetry.months`), which a long window's summary and ``builder telemetry
sql`` read instead of several files a day.

A month is closed when its last day is (before today, UTC). It is packed again when its
compacted files are no longer those its pack holds: a late build compacted into one of its
days, a day removed by retention, a file repaired, a new schema version. Its pack is
retired when none of its days is compacted any more. Only names are compared to decide
(and the packs' footers read), so a run that finds nothing to do opens almost nothing; a
month is written a day at a time, so it never has to fit in memory; and the pointer is
replaced in one rename, so the job is idempotent, safe to kill, and a second run finds
nothing to do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from telemetry import layout, months
from telemetry.errors import CorruptFileWarning
from telemetry.locks import guard
from telemetry.months import Stamp
from telemetry.progress import Progress, Steps
from telemetry.schema import DATASETS, Dataset

if TYPE_CHECKING:
    import pyarrow as pa

    from telemetry.snapshot import Snapshot
    from telemetry.storage import TelemetryStorage

_Named = dict[date, dict[Dataset, dict[date, str]]]  # month -> dataset -> day -> file name


@dataclass(slots=True, frozen=True)
class Packed:
    """What one run of the months job did."""

    months: tuple[date, ...]  # packed (again)
    retired: tuple[date, ...]  # whose pack went: none of their days is compacted now
    days: int  # in the months packed
    sessions: int  # rows packed
    target_rows: int


def pending(storage: TelemetryStorage, *, days: Iterable[date] | None = None) -> list[date]:
    """The closed months (of ``days``) to pack or to retire, each as its first day. Read from
    the files' names and the packs' footers: nothing is written (recorded builds waiting in
    the pending folder are not folded in: a plan changes nothing)."""
    from telemetry.snapshot import Snapshot

    snapshot = Snapshot.take(storage.layout, days=_days_of(storage, days))
    return _stale(storage, _wanted(storage, snapshot), _chosen_months(storage, days))


def pack(
    storage: TelemetryStorage,
    *,
    days: Iterable[date] | None = None,
    progress: Progress | None = None,
) -> Packed:
    """Pack the closed months (of ``days``) whose pack is missing or out of date, and retire
    the packs of months with no compacted day left; holds the store's lock, so it never runs
    beside a compaction. ``progress`` is told the days packed, of those of the months to
    pack."""
    written: list[date] = []
    retired: list[date] = []
    counts = {"days": 0, "sessions": 0, "targets": 0}
    chosen = _days_of(storage, days)
    with storage.lock():
        # Stamped before the listing: a folder changed after has another stamp.
        stamped = _stamps(storage, chosen)
        snapshot = storage.snapshot(days=chosen)
        wanted = _wanted(storage, snapshot)
        asked = _chosen_months(storage, days)
        stale = _stale(storage, wanted, asked)
        steps = Steps(progress, sum(len(_days_named(wanted.get(m, {}))) for m in stale))
        for month in stale:
            named = wanted.get(month)
            if not named or not any(named.values()):
                if months.retire(storage.dir, [month]):
                    retired.append(month)
                continue
            skipped: dict[Dataset, dict[date, str]] = {d: {} for d in DATASETS}
            packed = {"days": 0, "sessions": 0, "targets": 0}
            pack = months.write(
                storage.dir,
                month,
                _rows(snapshot, named, skipped, packed, steps.step),
                stem=layout.new_stem(storage.now()),
                skipped=skipped,
                stamps=_alone(snapshot, named, stamped or {}),
            )
            if pack is not None:  # else a day went meanwhile: the next run packs the month
                written.append(month)
                counts = {key: counts[key] + packed[key] for key in counts}
        steps.finish()  # a month given up on (a day went meanwhile) is over too
        for month, pack in months.current(storage.dir).items():
            if month in stale or (asked is not None and month not in asked) or stamped is None:
                continue
            # Days that had just changed when the month was packed are stamped once settled
            # (and a store copied elsewhere, whose folders are new, stamped again).
            fresh = _alone(snapshot, pack.files, stamped)
            if fresh != {d: pack.stamps.get(d, {}) for d in DATASETS}:
                months.restamp(storage.dir, pack, fresh)
        # Beside no retirement: retention removes a pointer, then sets its pack aside.
        with guard(storage.dir, exclusive=False):
            months.sweep(storage.dir)
    return Packed(
        tuple(written), tuple(retired), counts["days"], counts["sessions"], counts["targets"]
    )


def _days_of(storage: TelemetryStorage, days: Iterable[date] | None) -> list[date] | None:
    """Every day of the months of ``days`` that the store holds (all days by default)."""
    if days is None:
        return None
    chosen = {layout.month_of(day) for day in days}
    return [day for day in storage.days("sessions") if layout.month_of(day) in chosen]


def _chosen_months(storage: TelemetryStorage, days: Iterable[date] | None) -> set[date] | None:
    return None if days is None else {layout.month_of(day) for day in days}


def _wanted(storage: TelemetryStorage, snapshot: Snapshot) -> _Named:
    """For each closed month, the compacted file of each dataset and day (committed, by
    name): what its pack should hold."""
    today = storage.today()
    wanted: _Named = {}
    for dataset in DATASETS:
        found: dict[date, list[str]] = {}
        for stored in snapshot.committed(dataset):
            if layout.is_compacted(stored.path.name):
                found.setdefault(stored.day, []).append(stored.path.name)
        for day, names in found.items():
            month = layout.month_of(day)
            if len(names) == 1 and layout.month_end(month) < today:
                wanted.setdefault(month, {d: {} for d in DATASETS})[dataset][day] = names[0]
    return wanted


def _stale(storage: TelemetryStorage, wanted: _Named, chosen: set[date] | None) -> list[date]:
    """The months whose pack differs from ``wanted`` (or cannot be read), and those with a
    pack but nothing wanted."""
    packs = months.current(storage.dir)
    stale = []
    for month in sorted({*wanted, *packs, *months.months(storage.dir)}):
        if chosen is not None and month not in chosen:
            continue
        named = wanted.get(month)
        pack = packs.get(month)
        if not named or not any(named.values()):
            if pack is not None or months.pointer_problem(storage.dir, month) is not None:
                stale.append(month)
            continue
        if pack is None or not _sound(pack):
            stale.append(month)
            continue
        held = {d: {**pack.skipped.get(d, {}), **pack.files.get(d, {})} for d in DATASETS}
        if held != named:
            stale.append(month)
    return stale


def _sound(pack: months.Pack) -> bool:
    """Whether each file of the pack is there with a footer that counts the rows its files'
    names say (the job's check; readers find damage behind a footer by reading)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for dataset in DATASETS:
        try:
            counted = pq.read_metadata(pack.path(dataset)).num_rows
        except (OSError, pa.ArrowException, ValueError):
            return False
        said = [layout.rows_named(name) for name in pack.files[dataset].values()]
        if None not in said and counted != sum(n for n in said if n is not None):
            return False
    return True


def _stamps(
    storage: TelemetryStorage, days: list[date] | None
) -> dict[Dataset, dict[date, Stamp]] | None:
    """The stamps of the day folders (of ``days``) that have not changed for a while, by the
    clock of the file system each dataset's folders are on (a dataset's folder may link to
    another disk); or that are still those a pointer holds (they were settled when stamped,
    and have not changed since). None when a clock cannot be read (no file can be made):
    nothing is stamped then, nor is any stamp taken away."""
    folders = {d: storage.layout.dataset(d) for d in DATASETS}
    # A dataset with no folder has no day to stamp (a store of builds without targets).
    clocks = {d: months.now_on(folder) for d, folder in folders.items() if folder.is_dir()}
    if None in clocks.values():
        return None
    known: dict[Dataset, dict[date, Stamp]] = {dataset: {} for dataset in DATASETS}
    for pack in months.current(storage.dir).values():
        for dataset, by_day in pack.stamps.items():
            known[dataset].update(by_day)
    stamped: dict[Dataset, dict[date, Stamp]] = {}
    for dataset in DATASETS:
        stamped[dataset] = {}
        if dataset not in clocks:
            continue
        for day in storage.days(dataset) if days is None else days:
            folder = storage.layout.partition(dataset, day)
            found = months.stamp(folder, settled_before=clocks[dataset])
            if found is None and day in known[dataset]:
                found = months.stamp(folder)
                found = found if found == known[dataset][day] else None
            if found is not None:
                stamped[dataset][day] = found
    return stamped


def _alone(
    snapshot: Snapshot,
    named: dict[Dataset, dict[date, str]],
    stamped: dict[Dataset, dict[date, Stamp]],
) -> dict[Dataset, dict[date, Stamp]]:
    """The stamps of the days whose folder holds nothing visible but the file ``named``: a
    reader that finds the stamp unchanged takes that file without listing the folder."""
    found: dict[Dataset, dict[date, Stamp]] = {}
    for dataset in DATASETS:
        visible: dict[date, list[str]] = {}
        for stored in snapshot.listed.get(dataset, []):
            visible.setdefault(stored.day, []).append(stored.path.name)
        found[dataset] = {
            day: stamped[dataset][day]
            for day, name in named.get(dataset, {}).items()
            if day in stamped[dataset] and visible.get(day) == [name]
        }
    return found


def _days_named(named: dict[Dataset, dict[date, str]]) -> list[date]:
    """The days that files are ``named`` for, oldest first."""
    return sorted({day for by_day in named.values() for day in by_day})


def _rows(
    snapshot: Snapshot,
    named: dict[Dataset, dict[date, str]],
    skipped: dict[Dataset, dict[date, str]],
    counts: dict[str, int],
    done: Callable[[], None],
) -> Iterator[tuple[date, dict[Dataset, tuple[str, pa.Table]]]]:
    """Each day's rows of the files ``named``, a day at a time, oldest first; a file whose
    data cannot be read in full is named in a warning and added to ``skipped``. ``done`` is
    called as each day is over: written, or skipped."""
    for day in _days_named(named):
        tables: dict[Dataset, tuple[str, pa.Table]] = {}
        for dataset in DATASETS:
            name = named[dataset].get(day)
            if name is None:
                continue
            stored = next(
                (
                    f
                    for f in snapshot.files(dataset, where=lambda f, day=day: f.day == day)  # type: ignore[misc]
                    if f.path.name == name
                ),
                None,
            )
            table = None if stored is None else snapshot.read(stored, dataset)
            if table is None:
                if stored is not None:
                    warnings.warn(
                        f"not packing {stored.path}: its data cannot be read in full "
                        f"(builder telemetry verify names the problem)",
                        CorruptFileWarning,
                        stacklevel=3,
                    )
                skipped[dataset][day] = name
                continue
            tables[dataset] = (name, table)
        if tables:
            counts["days"] += 1
            counts["sessions"] += tables["sessions"][1].num_rows if "sessions" in tables else 0
            counts["targets"] += tables["targets"][1].num_rows if "targets" in tables else 0
            yield day, tables
        done()


__all__ = ["Packed", "pack", "pending"]
