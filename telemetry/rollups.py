"""The daily rollups that outlive the raw rows: one row per day (``rollup_days``) and one
per day and target (``rollup_targets``), kept a month to a pair of files, for the questions
of long windows (a year's build times, a target's slowest days) long after retention took
the builds themselves.

What a row holds (:data:`DAYS_SCHEMA`, :data:`TARGETS_SCHEMA`) is computed from the day's
stored builds by :func:`compute`: counts, sums, the minimum and maximum, means, and the
50th and 90th percentiles with linear interpolation between the closest values (DuckDB's
``quantile_cont``, Spark's ``percentile``). The sums and counts are there so that several
days add up exactly (a mean of days is their summed time over their summed builds).

On disk, each month is a folder with one pair of files per write, and a pointer naming
the pair that counts::

    <dir>/rollups/month=2025-10/current                      "20251101T031500Z-9b1e22c0a7f3"
    <dir>/rollups/month=2025-10/20251101T031500Z-9b1e22c0a7f3/days.arrow
    <dir>/rollups/month=2025-10/20251101T031500Z-9b1e22c0a7f3/targets.arrow

A month is rewritten whole (a pair in a new folder, then the pointer replaced in one
rename), so a reader reads a month's two tables of one write, never half of a rewrite;
what a pointer no longer names stays an hour for the readers that read it before, then
:func:`sweep` removes it. Only :func:`read` lists these folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final

from telemetry import layout
from telemetry.errors import CorruptFileWarning, StorageError, write_failure
from telemetry.integrity import first_line

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

ROLLUPS: Final = layout.ROLLUPS
CURRENT: Final = "current"
DAYS_FILE: Final = "days.arrow"
TARGETS_FILE: Final = "targets.arrow"
# What a pointer no longer names stays this long (the snapshot's grace).
GRACE_SECONDS: Final = 3600
_REPLACED: Final = ".replaced-"


def _schemas() -> tuple[pa.Schema, pa.Schema]:
    import pyarrow as pa

    f64, i64 = pa.float64(), pa.int64()
    days = pa.schema(
        [
            pa.field("date", pa.date32(), nullable=False),
            pa.field("builds", i64, nullable=False),
            pa.field("succeeded", i64, nullable=False),
            pa.field("interrupted", i64, nullable=False),
            pa.field("duration_ms_sum", i64, nullable=False),
            pa.field("duration_ms_min", i64, nullable=False),
            pa.field("duration_ms_max", i64, nullable=False),
            pa.field("duration_ms_mean", f64, nullable=False),
            pa.field("duration_ms_p50", f64, nullable=False),
            pa.field("duration_ms_p90", f64, nullable=False),
            # The rates are known for the builds that reported targets (SPEC §3): their
            # count, and the rates' sums and means over them (null when there are none).
            pa.field("builds_with_targets", i64, nullable=False),
            pa.field("cache_hit_rate_sum", f64, nullable=False),
            pa.field("cache_hit_rate_mean", f64),
            pa.field("parallelism_utilization_sum", f64, nullable=False),
            pa.field("parallelism_utilization_mean", f64),
            pa.field("targets_per_second_sum", f64, nullable=False),
            pa.field("targets_per_second_mean", f64),
            pa.field("total_targets", i64, nullable=False),
            pa.field("built", i64, nullable=False),
            pa.field("cached", i64, nullable=False),
            pa.field("failed", i64, nullable=False),
            pa.field("skipped", i64, nullable=False),
            pa.field("executed_ms", i64, nullable=False),
        ]
    )
    targets = pa.schema(
        [
            pa.field("date", pa.date32(), nullable=False),
            pa.field("target", pa.string(), nullable=False),
            pa.field("built", i64, nullable=False),
            pa.field("cached", i64, nullable=False),
            pa.field("failed", i64, nullable=False),
            pa.field("skipped", i64, nullable=False),
            # Over the executed runs (built or failed); null for a target only cached or
            # skipped that day.
            pa.field("executed_runs", i64, nullable=False),
            pa.field("executed_ms_sum", i64, nullable=False),
            pa.field("executed_ms_mean", f64),
            pa.field("executed_ms_p50", f64),
            pa.field("executed_ms_p90", f64),
            pa.field("executed_ms_max", i64),
        ]
    )
    return days, targets


@dataclass(slots=True, frozen=True)
class Rollups:
    """The rollups read from a store: a row per day, and a row per day and target."""

    days: pa.Table
    targets: pa.Table
    files: tuple[Path, ...]  # the files they were read from
    # The months that could not be read (named in a warning): their days are not here.
    unreadable: tuple[date, ...] = ()


def compute(sessions: pl.LazyFrame, targets: pl.LazyFrame) -> tuple[pa.Table, pa.Table]:
    """The rollups of stored builds: ``sessions`` (session rows of the sessions schema, with
    a ``date`` column: their partition day) and their ``targets`` (with ``date`` too).

    >>> import polars as pl  # doctest: +SKIP
    >>> days, targets = compute(snapshot.scan("sessions"), ...)  # doctest: +SKIP
    """
    import polars as pl

    from telemetry.metrics import with_session_metrics

    days_schema, targets_schema = DAYS_SCHEMA, TARGETS_SCHEMA
    rated = with_session_metrics(sessions)
    known = pl.col("total_targets") > 0

    def rate(name: str) -> list[pl.Expr]:
        return [
            pl.col(name).filter(known).sum().alias(f"{name}_sum"),
            pl.col(name).filter(known).mean().alias(f"{name}_mean"),
        ]

    duration = pl.col("duration_ms")
    days = (
        rated.group_by("date")
        .agg(
            pl.len().alias("builds"),
            pl.col("succeeded").sum().alias("succeeded"),
            pl.col("interrupted").sum().alias("interrupted"),
            duration.sum().alias("duration_ms_sum"),
            duration.min().alias("duration_ms_min"),
            duration.max().alias("duration_ms_max"),
            duration.mean().alias("duration_ms_mean"),
            duration.quantile(0.5, interpolation="linear").alias("duration_ms_p50"),
            duration.quantile(0.9, interpolation="linear").alias("duration_ms_p90"),
            known.sum().alias("builds_with_targets"),
            *rate("cache_hit_rate"),
            *rate("parallelism_utilization"),
            *rate("targets_per_second"),
            *(pl.col(c).sum() for c in ("total_targets", "built", "cached", "failed", "skipped")),
            pl.col("executed_ms").sum(),
        )
        .sort("date")
    )
    status = pl.col("status").cast(pl.String)
    executed = status.is_in(["built", "failed"])
    ran = pl.col("duration_ms").filter(executed)
    per_target = (
        targets.group_by("date", pl.col("target").cast(pl.String))
        .agg(
            *((status == s).sum().alias(s) for s in ("built", "cached", "failed", "skipped")),
            executed.sum().alias("executed_runs"),
            ran.sum().alias("executed_ms_sum"),
            ran.mean().alias("executed_ms_mean"),
            ran.quantile(0.5, interpolation="linear").alias("executed_ms_p50"),
            ran.quantile(0.9, interpolation="linear").alias("executed_ms_p90"),
            ran.max().alias("executed_ms_max"),
        )
        .sort("date", "target")
    )
    collected = pl.collect_all([days, per_target])
    return (
        _as(collected[0], days_schema),
        _as(collected[1], targets_schema),
    )


def _as(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    import polars as pl
    import pyarrow as pa

    # A sum over no rows is null in polars and 0 here (a day of builds without targets).
    columns = [
        pl.col(f.name).fill_null(0)
        if not f.nullable and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        else pl.col(f.name)
        for f in schema
    ]
    return frame.select(columns).to_arrow().cast(schema)


# -- reading --------------------------------------------------------------------------------


def read(root: Path, *, since: date | None = None, until: date | None = None) -> Rollups:
    """The rollups of the days between ``since`` and ``until`` (both included; every day by
    default), each month's from the pair its pointer names. A month whose pair is gone (a
    rewrite and its hour passed between the pointer's reading and the files') is read again."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    days_schema, targets_schema = DAYS_SCHEMA, TARGETS_SCHEMA
    days: list[pa.Table] = []
    targets: list[pa.Table] = []
    files: list[Path] = []
    unreadable: list[date] = []
    for month, folder in _months(root):
        if (since and layout.month_end(month) < since) or (until and month > until):
            continue
        problem = None
        for _ in range(3):  # the pair may be replaced (and renamed) between the two reads
            try:
                pair = _current(folder)
            except StorageError as error:
                problem = str(error)
                break
            if pair is None:  # no pointer: a month emptied, or never finished
                problem = None
                break
            try:
                with ipc.open_file(str(pair / DAYS_FILE)) as reader:
                    day_rows = reader.read_all()
                with ipc.open_file(str(pair / TARGETS_FILE)) as reader:
                    target_rows = reader.read_all()
                day_rows, target_rows = day_rows.cast(days_schema), target_rows.cast(targets_schema)
            except FileNotFoundError:
                problem = f"{pair} is named by {folder / CURRENT} but is not there"
                continue
            except (OSError, pa.ArrowException, ValueError) as error:
                problem = f"{pair}: {first_line(error)}"
                break
            days.append(day_rows)
            targets.append(target_rows)
            files += [pair / DAYS_FILE, pair / TARGETS_FILE]
            problem = None
            break
        if problem is not None:
            warnings.warn(
                f"skipping the rollups of {month:%Y-%m}: {problem}",
                CorruptFileWarning,
                stacklevel=2,
            )
            unreadable.append(month)
    day_table = pa.concat_tables(days) if days else days_schema.empty_table()
    target_table = pa.concat_tables(targets) if targets else targets_schema.empty_table()
    return Rollups(
        _between(day_table, since, until),
        _between(target_table, since, until),
        tuple(files),
        tuple(unreadable),
    )


def _between(table: pa.Table, since: date | None, until: date | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    if since is not None:
        table = table.filter(pc.greater_equal(table["date"], pa.scalar(since, pa.date32())))
    if until is not None:
        table = table.filter(pc.less_equal(table["date"], pa.scalar(until, pa.date32())))
    return table


def _months(root: Path) -> list[tuple[date, Path]]:
    try:
        return layout.month_folders(root / ROLLUPS)
    except OSError as error:
        raise StorageError(f"could not list {root / ROLLUPS}: {error.strerror or error}") from error


def _current(folder: Path) -> Path | None:
    try:
        name = (folder / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    if not name or "/" in name or name.startswith("."):
        raise StorageError(f"{folder / CURRENT} names no rollup folder: {name!r}")
    return folder / name


month_of = layout.month_of


# -- writing --------------------------------------------------------------------------------


def write_month(root: Path, month: date, days: pa.Table, targets: pa.Table, *, stem: str) -> Path:
    """Make ``days`` and ``targets`` (the rows of ``month``'s days) the month's rollups: a
    new pair under ``stem``, then the pointer replaced in one rename. An empty ``days``
    removes the month (its pointer first). The caller holds the store's lock."""
    import pyarrow.ipc as ipc

    days_schema, targets_schema = DAYS_SCHEMA, TARGETS_SCHEMA
    folder = root / ROLLUPS / layout.month_name(month)
    if days.num_rows == 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / CURRENT)
        return folder
    pair = folder / stem
    options = ipc.IpcWriteOptions(compression="zstd")
    try:
        pair.mkdir(parents=True)
        for name, table, schema in (
            (DAYS_FILE, days, days_schema),
            (TARGETS_FILE, targets, targets_schema),
        ):
            with (pair / name).open("xb") as handle:
                with ipc.new_file(handle, schema, options=options) as writer:
                    writer.write_table(table.cast(schema).combine_chunks())
                handle.flush()
                os.fsync(handle.fileno())
        replaced = None
        with contextlib.suppress(StorageError):
            replaced = _current(folder)
        pointer = folder / f".tmp-{uuid.uuid4().hex[:12]}-{CURRENT}"
        with pointer.open("x") as handle:
            handle.write(stem + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer, folder / CURRENT)
        if replaced is not None and replaced.name != stem:
            # Named by the moment it stopped counting, which the sweep reads: its hour
            # starts now, whenever it was written.
            with contextlib.suppress(OSError):
                os.rename(replaced, folder / f"{_REPLACED}{int(time.time())}-{replaced.name}")
    except OSError as error:
        shutil.rmtree(pair, ignore_errors=True)
        raise StorageError(
            f"could not write the rollups of {month:%Y-%m} in {folder}: {write_failure(error)}"
        ) from error
    return pair


def sweep(root: Path, *, now: float | None = None) -> int:
    """Remove the pairs no pointer names once their hour is over: a pair a rewrite replaced
    an hour after it was replaced (a reader may have read the pointer before), and what a
    killed rewrite left (a pair never named, a temporary pointer) an hour after it was
    written; returns how many went. A month whose pointer cannot be read is left alone."""
    moment = time.time() if now is None else now
    removed = 0
    for _, folder in _months(root):
        try:
            current = _current(folder)
        except StorageError:
            continue  # a pointer we cannot read: nothing here is known to be dead
        if current is not None and not current.is_dir():
            continue  # it names a pair that is not there: nor is anything here known dead
        for entry in os.scandir(folder):
            if entry.name == CURRENT or (current is not None and entry.name == current.name):
                continue
            with contextlib.suppress(OSError):
                if entry.name.startswith(_REPLACED):
                    moment_of = entry.name[len(_REPLACED) :].split("-", 1)[0]
                    since = float(moment_of) if moment_of.isdigit() else 0.0
                else:
                    since = entry.stat(follow_symlinks=False).st_mtime
                if since < moment - GRACE_SECONDS:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed += 1
    return removed


def rolled_builds(root: Path) -> dict[date, int]:
    """The builds each rolled-up day counts, by day."""
    rows = read(root).days
    return dict(zip(rows["date"].to_pylist(), rows["builds"].to_pylist(), strict=True))


def months_of(days: Iterable[date]) -> list[date]:
    """The months ``days`` fall in, oldest first."""
    return sorted({month_of(day) for day in days})


# Built once, when the module loads (it is loaded by what reads or writes rollups only).
DAYS_SCHEMA, TARGETS_SCHEMA = _schemas()

__all__ = [
    "DAYS_SCHEMA",
    "ROLLUPS",
    "TARGETS_SCHEMA",
    "Rollups",
    "compute",
    "month_of",
    "months_of",
    "read",
    "rolled_builds",
    "sweep",
    "write_month",
]
