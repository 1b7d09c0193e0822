"""Team merge: the builds of many machines' stores, and of their Parquet exports, put
together in one team store, each build once, tagged with the name its source was given.

A source is a store folder (its files are read through a snapshot, as every reader reads
them) or a folder that ``builder telemetry export --format parquet`` wrote (its sessions and
targets, which hold every stored column). Each source is named by the person merging it
(``ci=/mnt/ci/telemetry``), and its builds carry that name as the label
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

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from telemetry.errors import ConfigError, StorageError

if TYPE_CHECKING:
    import pyarrow as pa

    from telemetry.storage import TelemetryStorage

# The label that names the source a build was merged from.
SOURCE_LABEL: Final = "builder.source"
SourceKind: TypeAlias = Literal["store", "parquet export"]

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
    its source's name; returns what each source gave, in their order. Retention of the team
    store is applied once, at the end."""
    kinds = [(source, _kind(source, team)) for source in sources]
    names = [source.name for source in sources]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"each source needs a name of its own: {', '.join(twice)} is given twice")
    done: list[Merged] = []
    with team.lock():
        held = team.session_ids()
        for source, kind in kinds:
            builds = added = target_rows = 0
            for sessions, targets in _chunks(source, kind):
                builds += sessions.num_rows
                sessions, targets = _new(sessions, targets, held)
                if sessions.num_rows:
                    team.append(_tagged(sessions, source.name), targets)
                    held.update(sessions.column("session_id").to_pylist())
                    added += sessions.num_rows
                    target_rows += targets.num_rows
            done.append(Merged(source, kind, builds, added, builds - added, target_rows))
    team.apply_retention()
    return done


def _kind(source: Source, team: TelemetryStorage) -> SourceKind:
    from telemetry.parquet import MARKER

    path = source.path
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise ConfigError(
            f"{path} {what}; a source is a telemetry store's folder or a folder written by "
            f"builder telemetry export --format parquet"
        )
    if path.resolve() == team.dir.resolve():
        raise ConfigError(f"{path} is the team store itself; name the stores to merge into it")
    if (path / MARKER).is_file():
        return "parquet export"
    if (path / "sessions").is_dir():
        return "store"
    raise ConfigError(
        f"{path} holds no builds: neither a telemetry store (a sessions folder) nor a Parquet "
        f"export ({MARKER})"
    )


def _chunks(source: Source, kind: SourceKind) -> Iterator[tuple[pa.Table, pa.Table]]:
    """The source's sessions and their targets, in this version's schemas, some days at a
    time."""
    sessions: list[pa.Table] = []
    targets: list[pa.Table] = []
    rows = 0
    days = _store_days(source.path) if kind == "store" else _export_days(source.path)
    for day_sessions, day_targets in days:
        sessions.append(day_sessions)
        targets.append(day_targets)
        rows += day_sessions.num_rows + day_targets.num_rows
        if rows >= _CHUNK_ROWS:
            yield _joined(sessions, "sessions"), _joined(targets, "targets")
            sessions, targets, rows = [], [], 0
    if sessions:
        yield _joined(sessions, "sessions"), _joined(targets, "targets")


def _joined(tables: list[pa.Table], dataset: Literal["sessions", "targets"]) -> pa.Table:
    import pyarrow as pa

    from telemetry.schema import SCHEMAS

    joined = pa.concat_tables(tables, promote_options="none") if tables else None
    if joined is None:
        return SCHEMAS[dataset].empty_table()
    return joined.unify_dictionaries().combine_chunks() if dataset == "targets" else joined


def _store_days(path: Path) -> Iterator[tuple[pa.Table, pa.Table]]:
    """A store's sessions and targets, a day at a time, read through a snapshot (damaged
    files are named in warnings and left out, as by every reader)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from telemetry.schema import SCHEMAS
    from telemetry.storage import TelemetryStorage

    snapshot = TelemetryStorage(path).snapshot(datasets=("sessions", "targets"))
    sessions = snapshot.files("sessions")
    targets = snapshot.files("targets")
    for day in sorted({f.day for f in sessions}):
        read = [snapshot.read(f, "sessions") for f in sessions if f.day == day]
        read_targets = [snapshot.read(f, "targets") for f in targets if f.day == day]
        day_sessions = [t for t in read if t is not None]
        day_targets = [t for t in read_targets if t is not None]
        if not day_sessions:
            continue
        joined = pa.concat_tables(day_sessions)
        # Targets only of the sessions read (a damaged sessions file leaves its targets out).
        both = (
            pa.concat_tables(day_targets).unify_dictionaries()
            if day_targets
            else SCHEMAS["targets"].empty_table()
        )
        yield joined, both.filter(pc.is_in(both.column("session_id"), joined.column("session_id")))


def _export_days(path: Path) -> Iterator[tuple[pa.Table, pa.Table]]:
    """A Parquet export's sessions and targets, a day at a time, in this version's schemas
    (the export's rates are left out: they are computed from the stored columns)."""
    import pyarrow.parquet as pq

    from telemetry.layout import partition_day

    folders = sorted(
        entry for entry in (path / "sessions").iterdir() if partition_day(entry.name) is not None
    )
    for folder in folders:
        try:
            sessions = pq.read_table(folder)
            targets_folder = path / "targets" / folder.name
            targets = pq.read_table(targets_folder) if targets_folder.is_dir() else None
        except OSError as error:
            raise StorageError(f"could not read the export {folder}: {error}") from error
        yield _as_schema(sessions, "sessions"), _as_schema(targets, "targets")


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


def _new(sessions: pa.Table, targets: pa.Table, held: set[str]) -> tuple[pa.Table, pa.Table]:
    """The sessions whose id is not in ``held``, each once (the first of a repeated id), and
    their targets."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = sessions.column("session_id").to_pylist()
    seen: set[str] = set()
    keep = []
    for session in ids:
        keep.append(session not in held and session not in seen)
        seen.add(session)
    sessions = sessions.filter(pa.array(keep, pa.bool_()))
    return sessions, targets.filter(
        pc.is_in(targets.column("session_id"), sessions.column("session_id"))
    )


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
