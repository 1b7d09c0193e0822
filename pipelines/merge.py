"""Team merge: the builds of many machines' stores, and of their Parquet and JSON exports,
put together in one team store, each build once, tagged with the name its source was given.

A source is a store folder (its files are read through a snapshot, as every reader reads
them), a folder that ``builder telemetry export --format parquet`` wrote (its sessions and
targets, which hold every stored column), or a file that ``builder telemetry export --format
json`` wrote, zstd-compressed or not (its sessions only: a JSON export holds no target rows;
each session's row is rebuilt exactly from its keys). Each source is named by the person
merging it (``ci=/mnt/ci/telemetry``), and its builds carry that name as the label
:data:`SOURCE_LABEL`: a machine's name or a team's, never a user name unless someone gives
one. A build whose session id the team store already holds (from an earlier merge, or from
a source named before it) is skipped, so merging the same sources again adds nothing.

The team store's lock is held from start to end, so two merges (or an ingest) never store
a build twice; each source day is written as a build is, atomically.

>>> merged = merge(TelemetryStorage("team"), [parse_source("ci=ci-store")])  # doctest: +SKIP
>>> merged[0].added  # doctest: +SKIP
200
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from telemetry.errors import ConfigError, InputError, StorageError

if TYPE_CHECKING:
    import pyarrow as pa

    from telemetry.storage import TelemetryStorage

# The label that names the source a build was merged from.
SOURCE_LABEL: Final = "builder.source"
SourceKind: TypeAlias = Literal["store", "parquet export", "json export"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Rows read from a source before they are written: a year of a large store is read a
# chunk of days at a time, not whole.
_CHUNK_ROWS: Final = 2_000_000


@dataclass(slots=True, frozen=True)
class Source:
    """A store or an export to merge, and the name its builds are tagged with."""

    name: str
    path: Path


@dataclass(slots=True, frozen=True)
class Merged:
    """What merging one source did."""

    source: Source
    kind: SourceKind
    builds: int  # read from the source
    added: int
    already: int  # held by the team store already (or by a source merged before)
    target_rows: int  # added
    past_retention: int = 0  # on days the team store's retention removes: not added


def parse_source(text: str) -> Source:
    """``NAME=PATH`` as a :class:`Source`; :class:`ConfigError` for anything else.

    >>> parse_source("ci=/mnt/ci/telemetry")
    Source(name='ci', path=PosixPath('/mnt/ci/telemetry'))
    """
    name, equals, path = text.partition("=")
    if not equals or not path:
        raise ConfigError(
            f"a source is NAME=PATH, got {text!r}; name each source, e.g. ci=/mnt/ci/telemetry"
        )
    if not _NAME.match(name):
        raise ConfigError(
            f"a source's name is letters, digits, '.', '_' and '-', got {name!r} in {text!r}"
        )
    return Source(name, Path(path).expanduser())


def merge(team: TelemetryStorage, sources: Sequence[Source]) -> list[Merged]:
    """Put the builds of ``sources`` into the store ``team``, each build once, tagged with
    its source's name; returns what each source gave, in their order.

    The builds are chosen first, from the sources' session rows: those the team store does
    not hold, the first of each id, and none on a day the team store's retention would
    remove once they are added (older than its retention days, or past its session cap,
    oldest days first): those would be removed at once, and added again by every merge.
    Then the chosen builds are written with their targets, a chunk of days at a time.

    Every source is read before anything is written: one that cannot be read (a damaged
    export, a JSON file that is not an export) raises, and nothing is merged."""
    kinds = [(source, _kind(source, team)) for source in sources]
    names = [source.name for source in sources]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"each source needs a name of its own: {', '.join(twice)} is given twice")
    # A JSON export is read whole, once: its session rows are small (no targets).
    exports = {s.path: _json_export(s.path) for s, kind in kinds if kind == "json export"}
    done: list[Merged] = []
    with team.lock():
        held = team.session_ids()
        listed = [_listed(source, kind, exports) for source, kind in kinds]
        chosen = _chosen(team, listed, held)
        for (source, kind), ids, wanted in zip(kinds, listed, chosen, strict=True):
            added = target_rows = 0
            for sessions, targets in _chunks(source, kind, wanted, exports):
                if sessions.num_rows:
                    team.append(_tagged(sessions, source.name), targets)
                    added += sessions.num_rows
                    target_rows += targets.num_rows
            builds = sum(len(day_ids) for day_ids in ids.values())
            already = sum(1 for day_ids in ids.values() for i in day_ids if i in held)
            done.append(
                Merged(source, kind, builds, added, already, target_rows, builds - added - already)
            )
            held.update(wanted)
    team.apply_retention()
    return done


def _listed(
    source: Source, kind: SourceKind, exports: dict[Path, pa.Table]
) -> dict[date, list[str]]:
    """The session ids of a source, by day, in the order they are read."""
    found: dict[date, list[str]] = {}
    for day, sessions, _ in _days(source, kind, exports, targets=False):
        found.setdefault(day, []).extend(sessions.column("session_id").to_pylist())
    return found


def _chosen(
    team: TelemetryStorage, listed: list[dict[date, list[str]]], held: set[str]
) -> list[set[str]]:
    """For each source, the ids of the builds to add (see :func:`merge`)."""
    from telemetry.snapshot import Snapshot

    taken: set[str] = set(held)
    chosen: list[set[str]] = []
    new_by_day: dict[date, int] = {}
    day_of: dict[str, date] = {}
    for ids in listed:
        wanted: set[str] = set()
        for day, day_ids in ids.items():
            for session in day_ids:
                if session not in taken:
                    taken.add(session)
                    wanted.add(session)
                    day_of[session] = day
                    new_by_day[day] = new_by_day.get(day, 0) + 1
        chosen.append(wanted)
    # The days the team store's retention removes once the new builds are in.
    per_day = dict(new_by_day)
    for stored in Snapshot.take(team.layout, datasets=("sessions",)).committed("sessions"):
        per_day[stored.day] = per_day.get(stored.day, 0) + (stored.rows or 1)
    days = sorted(per_day)
    removed: set[date] = set()
    if team.retention_days is not None:
        cutoff = team.today() - timedelta(days=team.retention_days)
        removed |= {day for day in days if day < cutoff}
        days = [day for day in days if day >= cutoff]
    if team.max_sessions is not None:
        total = sum(per_day[day] for day in days)
        while len(days) > 1 and total > team.max_sessions:
            total -= per_day[days[0]]
            removed.add(days.pop(0))
    return [{s for s in wanted if day_of[s] not in removed} for wanted in chosen]


def _chunks(
    source: Source, kind: SourceKind, wanted: set[str], exports: dict[Path, pa.Table]
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """The source's ``wanted`` sessions and their targets, in this version's schemas, some
    days at a time."""
    if not wanted:
        return  # nothing to add: no file of the source is read again
    sessions: list[pa.Table] = []
    targets: list[pa.Table] = []
    rows = 0
    for _, day_sessions, day_targets in _days(source, kind, exports, targets=True, wanted=wanted):
        sessions.append(day_sessions)
        targets.append(day_targets)
        rows += day_sessions.num_rows + day_targets.num_rows
        if rows >= _CHUNK_ROWS:
            yield _joined(sessions, "sessions"), _joined(targets, "targets")
            sessions, targets, rows = [], [], 0
    if sessions:
        yield _joined(sessions, "sessions"), _joined(targets, "targets")


def _days(
    source: Source,
    kind: SourceKind,
    exports: dict[Path, pa.Table],
    *,
    targets: bool,
    wanted: set[str] | None = None,
) -> Iterator[tuple[date, pa.Table, pa.Table]]:
    if kind == "store":
        return _store_days(source.path, targets=targets, wanted=wanted)
    if kind == "json export":
        return _json_days(exports[source.path], wanted=wanted)
    return _export_days(source.path, targets=targets, wanted=wanted)


def _kind(source: Source, team: TelemetryStorage) -> SourceKind:
    from telemetry.parquet import MARKER

    path = source.path
    if path.is_file():
        return "json export"  # read before anything is merged: see _json_export
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is neither a folder nor a file"
        raise ConfigError(
            f"{path} {what}; a source is a telemetry store's folder, a folder written by "
            f"builder telemetry export --format parquet, or a file written by builder "
            f"telemetry export --format json"
        )
    if path.resolve() == team.dir.resolve():
        raise ConfigError(f"{path} is the team store itself; name the stores to merge into it")
    if (path / MARKER).is_file():
        _check_export_version(path / MARKER)
        return "parquet export"
    if (path / "sessions").is_dir():
        return "store"
    raise ConfigError(
        f"{path} holds no builds: neither a telemetry store (a sessions folder) nor a Parquet "
        f"export ({MARKER})"
    )


def _check_export_version(marker: Path) -> None:
    """Refuse a Parquet export written by a newer version: its columns may hold what this
    one would drop without a word."""
    import json

    from telemetry.schema import SCHEMA_VERSION

    try:
        said = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {marker}: {error}") from None
    version = said.get("schema_version") if isinstance(said, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ConfigError(
            f"{marker.parent} was exported with schema version {version}, newer than this "
            f"version's {SCHEMA_VERSION}; upgrade builder-telemetry to merge it"
        )


def _joined(tables: list[pa.Table], dataset: Literal["sessions", "targets"]) -> pa.Table:
    import pyarrow as pa

    from telemetry.schema import SCHEMAS

    joined = pa.concat_tables(tables, promote_options="none") if tables else None
    if joined is None:
        return SCHEMAS[dataset].empty_table()
    return joined.unify_dictionaries().combine_chunks() if dataset == "targets" else joined


def _store_days(
    path: Path, *, targets: bool, wanted: set[str] | None
) -> Iterator[tuple[date, pa.Table, pa.Table]]:
    """A store's sessions (of ``wanted``, each once) and, with ``targets``, their targets,
    a day at a time, read through a snapshot: damaged files are named in warnings and left
    out, as by every reader. A build's targets are those of the same write as its session
    row, so a build stored twice (two stores copied into one) gives its targets once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from telemetry.schema import SCHEMAS
    from telemetry.storage import TelemetryStorage

    snapshot = TelemetryStorage(path).snapshot(datasets=("sessions", "targets"))
    sessions = snapshot.files("sessions")
    pairs = {(f.day, f.stem): f for f in snapshot.files("targets")} if targets else {}
    taken: set[str] = set()
    for day in sorted({f.day for f in sessions}):
        day_sessions, day_targets = [], []
        for stored in (f for f in sessions if f.day == day):
            table = snapshot.read(stored, "sessions")
            if table is None:
                continue
            ids = table.column("session_id").to_pylist()
            keep = []
            for session in ids:
                keep.append(session not in taken and (wanted is None or session in wanted))
                taken.add(session)
            table = table.filter(pa.array(keep, pa.bool_()))
            day_sessions.append(table)
            pair = pairs.get((day, stored.stem)) if table.num_rows else None
            rows = snapshot.read(pair, "targets") if pair is not None else None
            if rows is not None:
                day_targets.append(rows.filter(pc.is_in(rows["session_id"], table["session_id"])))
        if day_sessions:
            both = (
                pa.concat_tables(day_targets).unify_dictionaries()
                if day_targets
                else SCHEMAS["targets"].empty_table()
            )
            yield day, pa.concat_tables(day_sessions), both


def _export_days(
    path: Path, *, targets: bool, wanted: set[str] | None
) -> Iterator[tuple[date, pa.Table, pa.Table]]:
    """A Parquet export's sessions (of ``wanted``) and, with ``targets``, their targets, a
    day at a time, in this version's schemas (the export's rates are left out: they are
    computed from the stored columns). :class:`StorageError` for an export that cannot be
    read, or that holds a build twice (its targets could not be told apart)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from telemetry.layout import partition_day

    folders = sorted(
        (day, entry)
        for entry in (path / "sessions").iterdir()
        if (day := partition_day(entry.name)) is not None
    )
    for day, folder in folders:
        try:
            sessions = _as_schema(pq.read_table(folder), "sessions")
        except (OSError, pa.ArrowException) as error:
            raise StorageError(f"could not read the export {folder}: {error}") from error
        ids = sessions.column("session_id")
        if pc.count_distinct(ids).as_py() != len(ids):
            raise StorageError(f"the export {folder} holds a build twice; export it again")
        if wanted is not None:
            sessions = sessions.filter(pc.is_in(ids, pa.array(sorted(wanted), pa.string())))
        target_folder = path / "targets" / folder.name
        rows = _as_schema(None, "targets")
        if targets and sessions.num_rows and target_folder.is_dir():  # only for builds taken
            try:
                rows = _as_schema(pq.read_table(target_folder), "targets")
            except (OSError, pa.ArrowException) as error:
                raise StorageError(f"could not read the export {target_folder}: {error}") from error
        yield day, sessions, rows.filter(pc.is_in(rows["session_id"], sessions["session_id"]))


def _json_export(path: Path) -> pa.Table:
    """The builds of a JSON export (``builder telemetry export --format json``, compressed
    with zstd or gzip or not) as stored session rows, each session id once (its first),
    rebuilt exactly from their keys: the times from ``startTimeMs`` and ``endTimeMs``, the
    utilization's facts from ``executedMs`` and ``peakConcurrency``. An interrupted build's
    ``error`` is taken as it reads, ``interrupted``, which is what is stored for one.
    :class:`InputError` for a file that is not such an export, or one written by a version
    without those keys: its rows could not be rebuilt (its times are to the second, and the
    executed time and peak are gone from its rounded utilization)."""
    import zlib

    import pyarrow as pa
    import zstandard

    from telemetry.exporter import EXACT_KEYS
    from telemetry.ingest.detection import decompressed
    from telemetry.schema import SESSIONS_SCHEMA

    try:
        with path.open("rb") as handle:
            document = json.loads(decompressed(handle).read())
    except (OSError, EOFError, ValueError, RecursionError, zlib.error, zstandard.ZstdError) as e:
        raise InputError(
            f"could not read the JSON export {path}: {e}; give a file that builder telemetry "
            f"export --format json wrote"
        ) from e
    sessions = document.get("sessions") if isinstance(document, dict) else None
    if not isinstance(sessions, list):
        raise InputError(
            f'{path} is not a JSON export: it holds no {{"sessions": [...]}} object as '
            f"builder telemetry export --format json writes"
        )
    columns: dict[str, list[Any]] = {column: [] for column, _ in _JSON_ROW.values()}
    taken: set[str] = set()
    for number, session in enumerate(sessions, start=1):
        if not isinstance(session, dict):
            raise InputError(f"{path} is not a JSON export: its session {number} is no object")
        if not any(key in session for key in EXACT_KEYS):
            raise InputError(
                f"{path} was exported by an older version, without the keys a stored build "
                f"is rebuilt from ({', '.join(EXACT_KEYS)}); export it again with this version"
            )
        row = {
            column: _json_value(path, number, session, key)
            for key, (column, _) in _JSON_ROW.items()
        }
        if row["session_id"] in taken:
            continue  # a build exported twice: the first is taken, as from a store
        taken.add(row["session_id"])
        for column, value in row.items():
            columns[column].append(value)
    try:
        return pa.Table.from_arrays(
            [pa.array(columns[field.name], field.type) for field in SESSIONS_SCHEMA],
            schema=SESSIONS_SCHEMA,
        )
    except (pa.ArrowException, OverflowError) as error:
        raise InputError(
            f"{path} is not a JSON export of this version: a number is out of its column's "
            f"range ({error})"
        ) from error


# The keys of a JSON export that a stored session row is rebuilt from: each key's column,
# and the JSON value it holds (a time is Unix epoch milliseconds). An export of this version
# has every one in every session, ``null`` where the stored column is.
_JSON_ROW: Final[dict[str, tuple[str, Literal["text", "integer", "boolean", "labels"]]]] = {
    "sessionId": ("session_id", "text"),
    "startTimeMs": ("start_time", "integer"),
    "endTimeMs": ("end_time", "integer"),
    "durationMs": ("duration_ms", "integer"),
    "succeeded": ("succeeded", "boolean"),
    "interrupted": ("interrupted", "boolean"),
    "error": ("error", "text"),
    "totalTargets": ("total_targets", "integer"),
    "built": ("built", "integer"),
    "cached": ("cached", "integer"),
    "failed": ("failed", "integer"),
    "skipped": ("skipped", "integer"),
    "executedMs": ("executed_ms", "integer"),
    "peakConcurrency": ("peak_concurrency", "integer"),
    "parallelism": ("parallelism", "integer"),
    "tool": ("tool", "text"),
    "host": ("host", "text"),
    "commit": ("commit", "text"),
    "branch": ("branch", "text"),
    "labels": ("labels", "labels"),
}


def _json_value(path: Path, number: int, session: dict[str, Any], key: str) -> Any:
    """The value of ``key`` in a JSON export's session ``number`` as its column stores it;
    :class:`InputError` when it is missing or not what the key holds."""
    from telemetry.schema import SESSIONS_SCHEMA

    column, kind = _JSON_ROW[key]
    if key not in session:
        raise InputError(
            f"{path} is not a JSON export of this version: its session {number} has no {key}"
        )
    value = session[key]
    if value is None and SESSIONS_SCHEMA.field(column).nullable:
        return None
    if kind == "labels" and isinstance(value, dict):
        if all(isinstance(v, str) for v in value.values()):
            return list(value.items())
    elif (
        (kind == "text" and isinstance(value, str))
        or (kind == "boolean" and isinstance(value, bool))
        or (kind == "integer" and isinstance(value, int) and not isinstance(value, bool))
    ):
        return value
    expected = {"labels": "an object of texts", "integer": "an integer"}.get(kind, f"a {kind}")
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 40:
        shown = shown[:40] + "..."
    raise InputError(
        f"{path} is not a JSON export of this version: its session {number} has {key} "
        f"{shown}, not {expected}"
    )


def _json_days(
    sessions: pa.Table, *, wanted: set[str] | None
) -> Iterator[tuple[date, pa.Table, pa.Table]]:
    """A JSON export's sessions (of ``wanted``) a day at a time, with no targets: the
    export holds none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from telemetry.schema import SCHEMAS

    if wanted is not None:
        ids = pa.array(sorted(wanted), pa.string())
        sessions = sessions.filter(pc.is_in(sessions["session_id"], ids))
    days = pc.cast(sessions["start_time"], pa.date32())  # the day the writer stores it in
    none = SCHEMAS["targets"].empty_table()
    for day in sorted(set(days.to_pylist())):
        yield day, sessions.filter(pc.equal(days, pa.scalar(day, pa.date32()))), none


def _as_schema(table: pa.Table | None, dataset: Literal["sessions", "targets"]) -> pa.Table:
    """An exported table's rows in ``dataset``'s schema; :class:`StorageError` when it lacks
    a column the schema needs."""
    import pyarrow as pa

    from telemetry.schema import SCHEMAS

    schema = SCHEMAS[dataset]
    if table is None:
        return schema.empty_table()
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise StorageError(f"the exported {dataset} have no {field.name} column")
    return pa.Table.from_arrays(columns, schema=schema)


def _tagged(sessions: pa.Table, name: str) -> pa.Table:
    """``sessions`` with the label :data:`SOURCE_LABEL` set to ``name``."""
    import pyarrow as pa

    index = sessions.schema.get_field_index("labels")
    field = sessions.schema.field(index)
    labels = [
        [*((k, v) for k, v in (row or []) if k != SOURCE_LABEL), (SOURCE_LABEL, name)]
        for row in sessions.column(index).to_pylist()
    ]
    return sessions.set_column(index, field, pa.array(labels, field.type))


__all__ = ["SOURCE_LABEL", "Merged", "Source", "merge", "parse_source"]
