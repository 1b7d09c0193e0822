"""The rollup job: each closed day's builds rolled up into the long-lived daily rollups
(:mod:`telemetry.rollups`), and the rolled-up days past the rollup retention dropped.

A closed day is rolled up when it has no rollup yet, or when its rollup counts other builds
than the store holds for it now (builds stored into it late, or a file repaired); past the
store's retention, only when the store holds more of its builds than the rollup counts: a
day whose builds retention has removed keeps its rollup, which is what rollups are for, until
it is older than ``BUILDER_TELEMETRY_ROLLUP_RETENTION_DAYS`` (730 by default). A month's
rollups are rewritten whole, atomically, so the job is idempotent, safe to kill, and a
second run finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from telemetry import rollups
from telemetry.layout import new_stem
from telemetry.progress import Progress, Steps

if TYPE_CHECKING:
    import pyarrow as pa

    from telemetry.schema import Dataset
    from telemetry.snapshot import Snapshot
    from telemetry.storage import TelemetryStorage


@dataclass(slots=True, frozen=True)
class RolledUp:
    """What one run of the rollup job did."""

    days: tuple[date, ...]  # rolled up (again)
    expired: tuple[date, ...]  # dropped: past the rollup retention
    months: int  # month files rewritten
    builds: int  # in the days rolled up


def pending(storage: TelemetryStorage, *, days: Iterable[date] | None = None) -> list[date]:
    """The closed days (of ``days``) whose rollup is missing or counts other builds than
    the store holds now (see :func:`_stale`)."""
    from telemetry.snapshot import Snapshot

    snapshot = Snapshot.take(storage.layout, days=days)  # a plan: nothing is folded in
    stored = _stored_builds(storage, days, snapshot)
    existing = rollups.read(storage.dir)
    return _stale(storage, stored, _rolled_counts(existing), _damaged_days(snapshot), existing)


def _rolled_counts(existing: rollups.Rollups) -> dict[date, int]:
    rows = existing.days
    return dict(zip(rows["date"].to_pylist(), rows["builds"].to_pylist(), strict=True))


def _stale(
    storage: TelemetryStorage,
    stored: dict[date, int],
    rolled: dict[date, int],
    damaged: set[date],
    existing: rollups.Rollups,
) -> list[date]:
    """The days to roll up: those whose rollup is missing or counts other builds than the
    store holds, within the rollup retention, and in a month whose rollups could be read
    (a month rewritten without them would lose its rolled-up days). A day that already has
    a rollup is not rolled up again from fewer builds than it counts when some of its files
    cannot be read (the rollup knew them), nor when it is past the retention (its builds
    are gone, and what the store holds of it was stored after retention removed them, by a
    writer keeping more days than the jobs do): a rollup of the rest would replace the
    day's."""
    keep = storage.retention_days
    cutoff = None if keep is None else storage.today() - timedelta(days=keep)
    rollup_cutoff = _cutoff(storage)
    unreadable = set(existing.unreadable)
    stale = []
    for day, builds in sorted(stored.items()):
        if rollups.month_of(day) in unreadable:
            continue
        if rollup_cutoff is not None and day < rollup_cutoff:
            continue
        if day not in rolled:
            stale.append(day)
        elif rolled[day] != builds:
            shrinks = builds < rolled[day]
            if shrinks and (day in damaged or (cutoff is not None and day < cutoff)):
                continue
            stale.append(day)
    return stale


def _damaged_days(snapshot: Snapshot) -> set[date]:
    """The days with a committed file that cannot be read (left out by every reader)."""
    days: set[date] = set()
    datasets: tuple[Dataset, ...] = ("sessions", "targets")
    for dataset in datasets:
        committed = snapshot.committed(dataset)
        readable = {f.path for f in snapshot.files(dataset, warn=False)}
        days |= {f.day for f in committed if f.path not in readable or f.path in snapshot.left_out}
    return days


def expired(storage: TelemetryStorage) -> list[date]:
    """The rolled-up days past the rollup retention."""
    cutoff = _cutoff(storage)
    if cutoff is None:
        return []
    return sorted(day for day in rollups.rolled_builds(storage.dir) if day < cutoff)


def rollup(
    storage: TelemetryStorage,
    *,
    days: Iterable[date] | None = None,
    progress: Progress | None = None,
) -> RolledUp:
    """Roll up the closed days (of ``days``) that need it and drop the rolled-up days past
    the rollup retention; holds the store's lock, so it never runs beside a compaction.
    ``progress`` is told the days rolled up, of those that need it."""
    with storage.lock():
        snapshot = storage.snapshot(days=days) if days is not None else storage.snapshot()
        stored = _stored_builds(storage, days, snapshot)
        existing = rollups.read(storage.dir)
        rolled = _rolled_counts(existing)
        stale = _stale(storage, stored, rolled, _damaged_days(snapshot), existing)
        cutoff = _cutoff(storage)
        gone = sorted(day for day in rolled if cutoff is not None and day < cutoff)
        builds = 0
        months = rollups.months_of([*stale, *gone])
        steps = Steps(progress, len(stale))
        for month in months:
            fresh_days, fresh_targets = [], []
            for day in (d for d in stale if rollups.month_of(d) == month):
                day_rows, target_rows = _rolled(snapshot, day)
                fresh_days.append(day_rows)
                fresh_targets.append(target_rows)
                builds += day_rows["builds"][0].as_py() if day_rows.num_rows else 0
                steps.step()
            replaced = {d for d in [*stale, *gone] if rollups.month_of(d) == month}
            days_table = _month_rows(existing.days, month, replaced, fresh_days)
            targets_table = _month_rows(existing.targets, month, replaced, fresh_targets)
            rollups.write_month(
                storage.dir, month, days_table, targets_table, stem=new_stem(storage.now())
            )
    rollups.sweep(storage.dir)
    return RolledUp(tuple(stale), tuple(gone), len(months), builds)


def _cutoff(storage: TelemetryStorage) -> date | None:
    keep = storage.rollup_retention_days
    return None if keep is None else storage.today() - timedelta(days=keep)


def _stored_builds(
    storage: TelemetryStorage, days: Iterable[date] | None, snapshot: Snapshot | None = None
) -> dict[date, int]:
    """The readable builds the store holds on each closed day (of ``days``)."""
    import polars as pl

    today = storage.today()
    if snapshot is None:  # a plan: nothing is written (no recorded build is folded in)
        from telemetry.snapshot import Snapshot

        snapshot = Snapshot.take(storage.layout, days=days)
    counted = snapshot.collect(
        "sessions", lambda rows: rows.group_by("date").agg(pl.len().alias("builds"))
    )
    if counted is None:
        return {}
    return {
        day: builds
        for day, builds in counted.iter_rows()
        if day < today and (days is None or day in set(days))
    }


def _rolled(snapshot: Snapshot, day: date) -> tuple[pa.Table, pa.Table]:
    """The rollup rows of one day, from its readable files."""
    import polars as pl
    import pyarrow as pa

    from telemetry.schema import SCHEMAS

    def rows(dataset: str) -> pl.LazyFrame:
        tables = [
            table
            for stored in snapshot.files(dataset, where=lambda f: f.day == day)  # type: ignore[arg-type]
            if (table := snapshot.read(stored, dataset)) is not None  # type: ignore[arg-type]
        ]
        if dataset == "targets":  # of the builds read only
            tables = [t.unify_dictionaries() for t in tables]
        table = pa.concat_tables(tables) if tables else SCHEMAS[dataset].empty_table()  # type: ignore[index]
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy().with_columns(pl.lit(day).alias("date"))

    sessions = rows("sessions")
    ids = sessions.select("session_id")
    targets = rows("targets").join(ids, on="session_id", how="semi")
    return rollups.compute(sessions, targets)


def _month_rows(
    existing: pa.Table, month: date, replaced: set[date], fresh: list[pa.Table]
) -> pa.Table:
    """The month's rows: those kept from ``existing`` (not of a day ``replaced``) and the
    ``fresh`` ones, by day."""
    import pyarrow as pa
    import pyarrow.compute as pc

    days = existing["date"]
    first = pa.scalar(month, pa.date32())
    following = pa.scalar(rollups.month_of(month + timedelta(days=31)), pa.date32())
    kept = existing.filter(
        pc.and_(
            pc.and_(pc.greater_equal(days, first), pc.less(days, following)),
            pc.invert(pc.is_in(days, pa.array(sorted(replaced), pa.date32()))),
        )
    )
    table = pa.concat_tables([kept, *fresh]) if fresh else kept
    keys = [("date", "ascending")] + (
        [("target", "ascending")] if "target" in table.column_names else []
    )
    return table.sort_by(keys)


__all__ = ["RolledUp", "expired", "pending", "rollup"]
