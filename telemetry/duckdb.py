"""DuckDB over the store: a connection with the views ``sessions``, ``targets`` and
``daily_targets`` over one snapshot, and ``rollup_days`` and ``rollup_targets`` over the
daily rollups (:mod:`telemetry.rollups`) (:func:`connect`), and one query answered whole while
maintenance runs beside it (:func:`query`, as a pyarrow Table; :func:`answer`, as an arro3
Table while nothing has loaded pyarrow), which :func:`telemetry.tables.render` shows as text,
CSV or JSON.

The views read a compacted file's Parquet copy where it has one (written by compaction,
see :func:`telemetry.writer.write_copy`), and a closed month's days from its pack: DuckDB
reads Parquet natively, on all cores, counts rows from the footers and skips row groups by
their statistics. DuckDB has no Arrow IPC reader built in (its IPC reader is a community
extension fetched over the network at first use), so the other files (today's builds, days
not compacted yet) are read whole with arro3 when they are few and nothing has loaded
pyarrow (`builder telemetry sql` then never loads it: its import, and numpy's, take about as
long as the query), and otherwise through :mod:`pyarrow.dataset`, which DuckDB's Arrow scan
pushes its projections and filters into (``where date = ...`` opens only that day's files,
and only the columns the query names). A query that fails while it reads copies runs again
over the files themselves.

duckdb is an optional extra: it is imported by the functions that use it, and without it
they raise :class:`DuckDBMissing`, which says how to install it.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final, TypeAlias

from telemetry.errors import StorageError, TelemetryError

if TYPE_CHECKING:  # duckdb is optional: it and pyarrow load when a function runs
    import arro3.core
    import duckdb
    import pyarrow as pa

    from telemetry.schema import Dataset
    from telemetry.snapshot import Snapshot, StoredFile
    from telemetry.storage import TelemetryStorage

INSTALL: Final = "pip install 'builder-telemetry[duckdb]'"
# How many snapshots a query is tried on while files of the last are deleted beside it.
_ATTEMPTS: Final = 5
# Days since 1970-01-01, the start of Arrow's date32.
_EPOCH: Final = date(1970, 1, 1).toordinal()
# Up to how many target rows the files read through Arrow are read whole rather than
# scanned (a few days of a busy team's builds; tens of megabytes).
_IN_MEMORY_ROWS: Final = 500_000

# The SPEC §3 rates of a stored session row, as the analyzer's with_session_metrics
# computes them: the same operations on doubles, in the same order, so that they round alike
# (held equal by tests/test_duckdb.py::test_the_sessions_rates_are_the_analyzers). A literal
# such as 100.0 is a DECIMAL in DuckDB, hence the casts.
_WORKERS: Final = "coalesce(parallelism, peak_concurrency)::DOUBLE"
RATES: Final = f"""
    CASE WHEN total_targets = 0 THEN NULL
        WHEN built + cached + failed > 0 THEN 100.0::DOUBLE * cached / (built + cached + failed)
        ELSE 0.0::DOUBLE END AS cache_hit_rate,
    CASE WHEN total_targets = 0 THEN NULL
        WHEN duration_ms::DOUBLE * {_WORKERS} > 0
        THEN 100.0::DOUBLE * executed_ms / (duration_ms::DOUBLE * {_WORKERS})
        ELSE 0.0::DOUBLE END AS parallelism_utilization,
    CASE WHEN total_targets = 0 THEN NULL
        WHEN duration_ms > 0 THEN total_targets * 1000.0::DOUBLE / duration_ms
        ELSE 0.0::DOUBLE END AS targets_per_second
"""
# How DuckDB says that reading an Arrow scan failed (a file's data, not the query): naming
# the scan, or, when it read through a filter, not.
_SCAN_FAILED = re.compile(r"reading the (?:stream registered as '([^']*)'|Arrow source) failed")


class DuckDBMissing(TelemetryError):
    """DuckDB, an optional extra, is not installed."""


class QueryError(TelemetryError):
    """DuckDB refused or failed a query; the message is DuckDB's first line."""


def connect(
    store: str | os.PathLike[str] | TelemetryStorage,
    *,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the views ``sessions`` (with the SPEC §3 rates),
    ``targets`` and ``daily_targets`` over the store's files at this moment, ``date`` a DATE
    and times in UTC.

    ``since`` and ``until`` keep the sessions that started in ``[since, until)`` and their
    targets (a date ``until`` includes that day); ``daily_targets`` holds the whole days they
    touch. What maintenance takes out of the store stays readable for an hour, but where it
    was moved to: a query on this connection may then fail on a file that is gone, and a new
    connection sees the store as it is now. :func:`query` does that.

    >>> views = connect("store")  # doctest: +SKIP
    >>> views.sql("select count(*) from sessions").fetchall()  # doctest: +SKIP
    [(200,)]
    """
    from telemetry.snapshot import SnapshotChanged

    storage = _storage(store)
    low, high = _bounds(since, until)
    duckdb = _duckdb()
    for _ in range(_ATTEMPTS):
        snapshot = _snapshot(storage, low, high)
        files, copies = _chosen(snapshot)
        try:
            try:
                return _views(duckdb, snapshot, files, copies, low, high).connection
            except duckdb.Error as error:
                if not _any(copies):
                    raise
                _name_damaged(snapshot, copies, error)  # or gone: the files themselves, then
                files, copies = _chosen(snapshot, copies=False)
                return _views(duckdb, snapshot, files, copies, low, high).connection
        except SnapshotChanged:
            continue  # a file read whole was deleted meanwhile: a new snapshot
    raise StorageError(f"the files in {storage.dir} kept changing while they were read; try again")


def query(
    store: str | os.PathLike[str] | TelemetryStorage,
    sql: str,
    *,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> pa.Table:
    """The answer to one SQL query over the views of :func:`connect` (an empty table for a
    statement that answers nothing), as the store was at one moment.

    When the query fails on a file that compaction or retention moved meanwhile, it runs
    again over the same files where they are now; on one deleted meanwhile (by ``clear``,
    or past its hour), again over a new snapshot; so it never counts a build twice or misses
    one. A file whose data cannot be read is named in a warning and left out.

    >>> answer = query("store", "select count(*) as n from sessions")  # doctest: +SKIP
    >>> answer.to_pylist()  # doctest: +SKIP
    [{'n': 200}]
    """
    import pyarrow as pa

    return pa.table(answer(store, sql, since=since, until=until))


def answer(
    store: str | os.PathLike[str] | TelemetryStorage,
    sql: str,
    *,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> arro3.core.Table | pa.Table:
    """:func:`query`'s answer as an Arrow table that any Arrow library takes without a copy
    (it has ``__arrow_c_stream__``): arro3's (the ``duckdb`` extra installs arro3) when
    nothing in the process has loaded pyarrow, else pyarrow's. Read so, a query loads
    neither pyarrow nor numpy, whose imports take about as long as the whole query over a
    year's store (docs/performance.md): for `builder telemetry sql`.

    >>> table = answer("store", "select count(*) as n from sessions")  # doctest: +SKIP
    >>> table.column("n").to_pylist()  # doctest: +SKIP
    [200]
    """
    from telemetry.snapshot import SnapshotChanged

    duckdb = _duckdb()
    storage = _storage(store)
    low, high = _bounds(since, until)
    # Only the views the query names are made (and only their files listed): a view is
    # named to be read. Should DuckDB miss one all the same, all are made.
    named: frozenset[str] | None = _named_views(sql, low, high)
    for _ in range(_ATTEMPTS):
        snapshot = _snapshot(storage, low, high, named)
        chosen, copies = _chosen(snapshot)
        files: _Files | None = chosen
        while files is not None:
            try:
                views = _views(duckdb, snapshot, files, copies, low, high, named)
            except SnapshotChanged:
                break  # a file read whole was deleted meanwhile: a new snapshot
            except duckdb.Error as error:
                if not _any(copies):
                    raise
                # A copy or pack gone before its view was made (DuckDB looks for them then).
                files, copies = _without_failed(snapshot, copies, error)
                continue
            try:
                return _answer(views.connection, sql)
            except duckdb.InterruptException:  # Ctrl-C, as DuckDB reports it
                raise KeyboardInterrupt from None
            except duckdb.CatalogException as e:
                if named is not None:
                    named = None
                    break  # a view not made: all of them, over a new snapshot
                raise QueryError(_first_line(e)) from None  # the query's mistake: nothing read
            except (duckdb.ParserException, duckdb.BinderException) as e:
                raise QueryError(_first_line(e)) from None  # the query's mistake: nothing read
            except duckdb.Error as error:
                failure = error
            finally:
                views.connection.close()  # before its files are looked into
            if _any(copies):
                # A copy or a month's pack gone (swept after compaction replaced its file,
                # set aside by the months job or by retention) or damaged.
                files, copies = _without_failed(snapshot, copies, failure)
                continue
            files = _again(snapshot, views, files, failure)
    raise StorageError(f"the files in {storage.dir} kept changing while the query ran; try again")


# -- the views ---------------------------------------------------------------------------------

# The files each view reads through Arrow; and the Parquet copies it reads instead of others,
# and the files it reads from month packs (telemetry.months).
_Files: TypeAlias = "dict[Dataset, list[StoredFile]]"


@dataclass(slots=True, frozen=True)
class _Copies:
    copies: dict[Dataset, dict[Path, Path]]
    packed: dict[Dataset, list[StoredFile]]


def _any(copies: _Copies) -> bool:
    return any(copies.copies.values()) or any(copies.packed.values())


def _duckdb() -> ModuleType:
    try:
        import duckdb
    except ImportError:
        raise DuckDBMissing(f"DuckDB is not installed; install it with: {INSTALL}") from None
    return duckdb


def _storage(store: str | os.PathLike[str] | TelemetryStorage) -> TelemetryStorage:
    from telemetry.storage import TelemetryStorage

    return store if isinstance(store, TelemetryStorage) else TelemetryStorage(store)


def _bounds(
    since: date | datetime | None, until: date | datetime | None
) -> tuple[datetime | None, datetime | None]:
    """``[since, until)`` as UTC moments: a date is its midnight (``until``'s the next)."""

    def moment(value: date | datetime | None, *, end: bool) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        start = datetime.combine(value, time(), tzinfo=UTC)
        return start + timedelta(days=1) if end else start

    return moment(since, end=False), moment(until, end=True)


def _snapshot(
    storage: TelemetryStorage,
    low: datetime | None,
    high: datetime | None,
    named: frozenset[str] | None = None,
) -> Snapshot:
    from telemetry.schema import DATASETS

    # until is exclusive: a window ending at midnight does not reach into that day.
    last = None if high is None else (high - timedelta(milliseconds=1)).date()
    return storage.snapshot(
        since=None if low is None else low.date(),
        until=last,
        packs=True,
        datasets=[d for d in DATASETS if named is None or d in named],
    )


_VIEWS: Final = ("sessions", "targets", "daily_targets", "rollup_days", "rollup_targets")


def _named_views(sql: str, low: datetime | None, high: datetime | None) -> frozenset[str]:
    """The views whose names ``sql`` holds as words (and those they are made from)."""
    words = set(re.findall(r"\w+", sql.lower()))
    named = {view for view in _VIEWS if view in words}
    if "targets" in named and _cuts_a_day(low, high):
        named.add("sessions")  # a window cutting a day takes its targets by their sessions
    return frozenset(named)


def _chosen(snapshot: Snapshot, *, copies: bool = True) -> tuple[_Files, _Copies]:
    """The readable committed files of every dataset (the others named in warnings, as
    every reader names them): those read through Arrow, and the Parquet copies read
    instead of the others (none without ``copies``).

    The target labels' dictionaries of the files read through Arrow are decompressed first:
    pyarrow's dataset reader ends the process on one it cannot decompress
    (:func:`telemetry.integrity.dictionaries_problem`), so such a file is named and left
    out here, as every reader does with a damaged file."""
    import warnings

    from telemetry.errors import CorruptFileWarning
    from telemetry.integrity import VANISHED, dictionaries_problem
    from telemetry.schema import DATASETS

    chosen: _Files = {}
    found: dict[Dataset, dict[Path, Path]] = {}
    packed: dict[Dataset, list[StoredFile]] = {}
    if not copies:
        snapshot.unpack(list(snapshot.packs))
    for dataset in (d for d in DATASETS if d in snapshot.listed):
        files = snapshot.files(dataset)
        packed[dataset] = [f for f in files if f.pack is not None]
        files = [f for f in files if f.pack is None]
        found[dataset] = snapshot.copies(dataset, files) if copies else {}
        files = [f for f in files if f.path not in found[dataset]]
        if dataset != "sessions":  # the datasets with dictionary-encoded columns
            for stored in files:
                problem = dictionaries_problem(stored.path)
                if problem is not None and problem != VANISHED:
                    warnings.warn(
                        f"skipping {stored.path}: {problem}", CorruptFileWarning, stacklevel=3
                    )
                    snapshot.left_out.add(stored.path)
            files = [f for f in files if f.path not in snapshot.left_out]
        chosen[dataset] = files
    return chosen, _Copies(found, packed)


@dataclass(slots=True, frozen=True)
class _Views:
    connection: duckdb.DuckDBPyConnection
    # The name DuckDB gives each dataset's scan, which its message names when a read fails.
    scans: dict[str, Dataset]


def _views(
    duckdb: ModuleType,
    snapshot: Snapshot,
    files: _Files,
    copies: _Copies,
    low: datetime | None,
    high: datetime | None,
    named: frozenset[str] | None = None,
) -> _Views:
    from telemetry.layout import PARTITION_KEY

    connection = duckdb.connect()
    scans: dict[str, Dataset] = {}
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET enable_progress_bar = false")  # never on our stdout
        for dataset, chosen in files.items():
            if named is not None and dataset not in named:
                continue  # listed as the others' commit markers only
            if dataset != "sessions":  # a sessions file read whole was found damaged
                chosen = _without(files, snapshot.left_out)[dataset]
            # The same columns in the same order from either reader.
            columns = ", ".join(f'"{name}"' for name in [*_names(dataset), PARTITION_KEY])
            parts = []
            if copies.copies[dataset]:
                paths = [str(path) for path in copies.copies[dataset].values()]
                parts.append(connection.read_parquet(paths).project(columns))
            if copies.packed[dataset]:
                parts.append(_packed(connection, snapshot, copies.packed[dataset]).project(columns))
            table = _in_memory(snapshot, dataset, chosen)
            if table is not None:
                parts.append(connection.from_arrow(table).project(columns))
            elif chosen:
                arrow = connection.from_arrow(snapshot.arrow_dataset(dataset, chosen))
                scans[arrow.alias] = dataset
                parts.append(arrow.project(columns))
            elif not parts:  # no file: no need of pyarrow.dataset, slow to import
                parts.append(connection.from_arrow(_empty(dataset)).project(columns))
            scan = functools.reduce(lambda a, b: a.union(b), parts)
            if dataset == "sessions":
                window = _window(low, high)
                if window:
                    scan = scan.filter(window)
                scan = scan.project(f"*, {RATES}")
            elif dataset == "targets" and _cuts_a_day(low, high):
                # A window cutting a day takes that day's targets by their session.
                scan = scan.filter("session_id IN (SELECT session_id FROM sessions)")
            # A view over the relation, not a registered name: the views are all one sees.
            scan.create_view(dataset)
        # The long-lived daily rollups: a few rows a day, read whole.
        if named is not None and not named & {"rollup_days", "rollup_targets"}:
            return _Views(connection, scans)
        from telemetry import rollups

        first = None if low is None else low.date()
        last = None if high is None else (high - timedelta(milliseconds=1)).date()
        rolled = rollups.read(snapshot.layout.root, since=first, until=last)
        connection.from_arrow(rolled.days).create_view("rollup_days")
        connection.from_arrow(rolled.targets).create_view("rollup_targets")
    except BaseException:
        connection.close()
        raise
    return _Views(connection, scans)


def _in_memory(snapshot: Snapshot, dataset: Dataset, files: list[StoredFile]) -> _Table | None:
    """The rows of ``files`` read whole with arro3, in today's schema with the day as
    ``date``, when nothing in the process has loaded pyarrow (:func:`_light`) and they are
    few (today's builds, days not compacted yet: the compacted days are read from their
    Parquet copies and packs); None otherwise, and they are scanned through
    :mod:`pyarrow.dataset`.

    Read so, they need no pyarrow, whose import (and numpy's) takes about as long as
    DuckDB's count of a year's rows from the packs. A file whose data is damaged is named in
    a warning and left out; one deleted since the snapshot raises
    :class:`~telemetry.snapshot.SnapshotChanged`."""
    from telemetry.snapshot import damaged

    rows = [f.rows for f in files]
    if not _light() or not files or None in rows or sum(rows) > _IN_MEMORY_ROWS:  # type: ignore[arg-type]
        return None
    tables: list[_Table] = []
    for stored in files:
        table = _whole(snapshot, stored, dataset)
        if table is None:  # named as every reader names a damaged file
            damaged(dataset, [stored])
            snapshot.left_out.add(stored.path)
            continue
        tables.append(table)
    return _concat(tables) if tables else _empty(dataset)


# An Arrow table: arro3's, or pyarrow's once something loaded pyarrow.
_Table: TypeAlias = "arro3.core.Table | pa.Table"


def _light() -> bool:
    """Whether to read through arro3 (:func:`telemetry.integrity.without_pyarrow`)."""
    from telemetry import integrity

    return integrity.without_pyarrow()


def _names(dataset: Dataset) -> list[str]:
    """The columns of ``dataset`` in this version, in order."""
    from telemetry import schema

    return list(schema.arro3_schema(dataset).names if _light() else schema.SCHEMAS[dataset].names)


def _whole(snapshot: Snapshot, stored: StoredFile, dataset: Dataset) -> _Table | None:
    """All of one file's rows in today's schema with its day as ``date``; None when its
    data cannot be read in full. Through arro3 when :func:`_light` and the file has exactly
    today's columns, else as :meth:`~telemetry.snapshot.Snapshot.read` reads it."""
    if _light():
        from arro3.core import Array, ChunkedArray, DataType, Field
        from arro3.io import read_ipc

        from telemetry.layout import PARTITION_KEY
        from telemetry.schema import arro3_schema
        from telemetry.snapshot import SnapshotChanged

        plain = arro3_schema(dataset).remove_metadata()
        table = None
        for _ in range(_ATTEMPTS):  # it may move between being found and being opened
            try:
                table = read_ipc(str(snapshot.find(stored, dataset))).read_all()
                break
            except FileNotFoundError:
                continue
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # a Rust panic too: pyarrow's reading judges the file
                break
        else:
            raise SnapshotChanged(f"{stored.path} was removed while it was read")
        if table is not None and table.schema.remove_metadata() == plain:
            days = Array([stored.day.toordinal() - _EPOCH] * table.num_rows, DataType.int32())
            return table.with_schema(plain).append_column(
                Field(PARTITION_KEY, DataType.date32()),
                ChunkedArray([days.cast(DataType.date32())]),
            )
    import pyarrow as pa

    from telemetry.layout import PARTITION_KEY

    read = snapshot.read(stored, dataset)
    if read is None:
        return None
    day = pa.repeat(pa.scalar(stored.day, pa.date32()), read.num_rows)
    # Without the metadata, as arro3's tables are: a compacted file's names what it replaced.
    dated = read.append_column(pa.field(PARTITION_KEY, pa.date32()), day)
    return dated.replace_schema_metadata(None)


def _concat(tables: list[_Table]) -> _Table:
    """One table of ``tables`` (all of one dataset, each with ``date``)."""
    if _light():
        from arro3.core import Table

        if all(isinstance(t, Table) for t in tables):
            batches = [batch for t in tables for batch in t.to_batches()]
            return Table.from_batches(batches, schema=tables[0].schema)
    import pyarrow as pa

    return pa.concat_tables([pa.table(t) for t in tables])


def _packed(
    connection: duckdb.DuckDBPyConnection, snapshot: Snapshot, files: list[StoredFile]
) -> duckdb.DuckDBPyRelation:
    """The rows of ``files`` from the month packs that hold them: a pack whose every day is
    read is read whole (a count then comes from its footer), the days of the others are
    taken by a filter on ``date`` (their row groups are days: the others are skipped)."""
    days: dict[Path, set[date]] = {}
    for stored in files:
        assert stored.pack is not None
        days.setdefault(stored.pack, set()).add(stored.day)
    whole = sorted(p for p, taken in days.items() if taken >= snapshot.packs.get(p, frozenset()))
    parts = [connection.read_parquet([str(p) for p in whole])] if whole else []
    cut = sorted(p for p in days if p not in whole)
    if cut:
        chosen = ", ".join(
            f"DATE '{day.isoformat()}'" for p in cut for day in sorted(days[p])
        )  # dates, never text a person typed: nothing to quote
        parts.append(connection.read_parquet([str(p) for p in cut]).filter(f"date IN ({chosen})"))
    return functools.reduce(lambda a, b: a.union(b), parts)


def _empty(dataset: Dataset) -> _Table:
    """No rows of ``dataset``, with ``date``."""
    from telemetry.layout import PARTITION_KEY

    if _light():
        from arro3.core import DataType, Field

        from telemetry.schema import arro3_schema

        plain = arro3_schema(dataset).remove_metadata()
        return plain.append(Field(PARTITION_KEY, DataType.date32())).empty_table()
    import pyarrow as pa

    from telemetry.schema import SCHEMAS

    return SCHEMAS[dataset].append(pa.field(PARTITION_KEY, pa.date32())).empty_table()


def _window(low: datetime | None, high: datetime | None) -> str:
    bounds = []
    if low is not None:
        bounds.append(f"start_time >= {_timestamp(low)}")
    if high is not None:
        bounds.append(f"start_time < {_timestamp(high)}")
    return " AND ".join(bounds)


def _timestamp(moment: datetime) -> str:
    # From a datetime, never from text a person typed: nothing to quote.
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat()}'"


def _cuts_a_day(low: datetime | None, high: datetime | None) -> bool:
    midnight = time(tzinfo=UTC)
    return any(b is not None and b.timetz() != midnight for b in (low, high))


# -- running -----------------------------------------------------------------------------------


def _answer(connection: duckdb.DuckDBPyConnection, sql: str) -> _Table:
    relation = connection.sql(sql)
    if _light():
        import duckdb
        from arro3.core import Table

        if relation is None:
            return Table.from_pydict({})
        try:
            return Table.from_arrow(relation)
        except duckdb.Error:
            raise
        except Exception as error:
            # DuckDB's error after its first rows (a damaged page of a pack, error() in
            # the query) reaches arro3 through the Arrow stream: DuckDB's again, to be
            # handled as any other.
            said = str(error).removeprefix("C Data interface error: ")
            raise duckdb.Error(said) from error
    import pyarrow as pa

    return pa.table({}) if relation is None else relation.to_arrow_table()


def _again(snapshot: Snapshot, views: _Views, files: _Files, error: Exception) -> _Files | None:
    """The files to run a failed query on again: where maintenance moved them since, or
    without those whose data is damaged (each named in a warning); None when one was
    deleted (a new snapshot then). :class:`QueryError` when the query itself failed."""
    from telemetry.schema import DATASETS
    from telemetry.snapshot import damaged

    now: _Files = {}
    for dataset, chosen in files.items():
        now[dataset] = []
        for stored in chosen:
            path = _where(snapshot, stored, dataset)
            if path is None:
                return None
            now[dataset].append(replace(stored, path=path))
    if now != files:
        return now
    named = _SCAN_FAILED.findall(str(error))
    if not named:  # a mistake in the query: no file is read
        raise QueryError(_first_line(error)) from None
    # Only the files of the scans that failed are read in full (all, when DuckDB does not
    # say which).
    failed = {views.scans[name] for name in named if name in views.scans}
    suspects = failed if failed and "" not in named else set(DATASETS)
    bad: set[Path] = set()
    for dataset in suspects:
        bad |= damaged(dataset, files.get(dataset, []))
    if not bad:
        raise QueryError(_first_line(error)) from None
    if not all(os.path.exists(path) for path in bad):  # deleted while it was checked
        return None
    return _without(files, bad)


def _without(files: _Files, bad: set[Path]) -> _Files:
    """``files`` less those at ``bad``, and less the targets and rollups that a sessions
    file among them commits: its builds are left out whole, as every reader leaves them."""
    gone = {(f.day, f.stem) for f in files.get("sessions", []) if f.path in bad}
    return {
        dataset: [
            f
            for f in chosen
            if f.path not in bad and (dataset == "sessions" or (f.day, f.stem) not in gone)
        ]
        for dataset, chosen in files.items()
    }


def _without_failed(
    snapshot: Snapshot, copies: _Copies, error: Exception
) -> tuple[_Files, _Copies]:
    """What to read after a query failed on the copies or packs ``copies``: the packs gone
    from where they were listed read where they were set aside; or else without the packs
    the error names (each named in a warning); or else the files themselves, which hold the
    same rows as the copies and packs."""
    packs = {f.pack for chosen in copies.packed.values() for f in chosen if f.pack is not None}
    missing = {pack for pack in packs if not os.path.exists(pack)}
    if missing:
        snapshot.relocate(missing)
        return _chosen(snapshot)
    if _name_damaged(snapshot, copies, error):
        return _chosen(snapshot)
    # DuckDB's message may name no file: a pack damaged behind its footer is found by reading
    # the packs (a row group at a time), and only those are given up.
    from telemetry.months import problem

    damaged = {pack: said for pack in sorted(packs) if (said := problem(pack)) is not None}
    if damaged:
        snapshot.unpack(damaged)
        return _chosen(snapshot)
    return _chosen(snapshot, copies=False)


def _name_damaged(snapshot: Snapshot, copies: _Copies, error: Exception) -> bool:
    """Give up the packs ``error`` names, each named in a warning, and return whether there
    were any; warn of each copy that ``error`` names and that is damaged when read in full
    (one that is gone was taken out by maintenance, which is no fault; DuckDB's message may
    name sound copies beside the damaged one)."""
    import warnings

    from telemetry.errors import CorruptFileWarning
    from telemetry.integrity import VANISHED, copy_problem
    from telemetry.layout import rows_named

    said = str(error)
    named = {
        f.pack: _first_line(error)
        for chosen in copies.packed.values()
        for f in chosen
        if f.pack is not None and str(f.pack) in said
    }
    snapshot.unpack(named)
    for dataset, copied in copies.copies.items():
        for source, copy in copied.items():
            if str(copy) not in said:
                continue
            problem = copy_problem(copy, dataset, rows_named(source.name))
            if problem is not None and problem != VANISHED:
                warnings.warn(
                    f"skipping the Parquet copy {copy}: {problem}; its Arrow file is read "
                    f"instead (builder telemetry verify --repair moves the copy aside, and the "
                    f"next compaction writes it again)",
                    CorruptFileWarning,
                    stacklevel=4,
                )
    return bool(named)


def _where(snapshot: Snapshot, stored: StoredFile, dataset: Dataset) -> Path | None:
    """Where a file of the snapshot is now; None when it was deleted. A file that moved
    while it was looked for is found on a second look."""
    for _ in range(2):
        path = snapshot.find(stored, dataset)
        if os.path.exists(path):
            return path
    return None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


__all__ = ["INSTALL", "RATES", "DuckDBMissing", "QueryError", "answer", "connect", "query"]
