"""The Arrow schemas of the stored datasets: ``sessions`` and ``targets``, and the daily
rollup ``daily_targets`` that compaction writes beside a compacted day.

Columns are snake_case, times are ``timestamp[ms, UTC]``, target labels and statuses are
dictionary-encoded. Each schema carries its dataset name and schema version in its metadata, so
a reader can tell our files from foreign ones and from files written by a newer version.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeAlias

if TYPE_CHECKING:
    import arro3.core
    import pyarrow as pa

Dataset: TypeAlias = Literal["sessions", "targets", "daily_targets"]
DATASETS: Final[tuple[Dataset, ...]] = ("sessions", "targets", "daily_targets")

# Version 2 added the targets' deps.
SCHEMA_VERSION: Final = 2
VERSION_KEY: Final = b"builder_telemetry.schema_version"
DATASET_KEY: Final = b"builder_telemetry.dataset"
# In a compacted day's sessions file: the JSON list of the name stems of the files it
# replaces, which readers ignore until they are removed.
REPLACES_KEY: Final = b"builder_telemetry.replaces"


def _metadata(dataset: Dataset) -> dict[bytes, bytes]:
    return {VERSION_KEY: str(SCHEMA_VERSION).encode(), DATASET_KEY: dataset.encode()}


def _arrow() -> dict[str, Any]:
    """The pyarrow types and schemas, made at the first look: `builder telemetry sql`
    reads through DuckDB and arro3 and never loads pyarrow, whose import takes about as long
    as its whole query over a year's store (docs/performance.md)."""
    if _MADE:
        return _MADE
    import pyarrow as pa

    TIMESTAMP = pa.timestamp("ms", tz="UTC")
    LABELS = pa.map_(pa.string(), pa.string())

    SESSIONS_SCHEMA = pa.schema(
        [
            pa.field("session_id", pa.string(), nullable=False),
            pa.field("start_time", TIMESTAMP, nullable=False),
            pa.field("end_time", TIMESTAMP, nullable=False),
            pa.field("duration_ms", pa.int64(), nullable=False),
            pa.field("succeeded", pa.bool_(), nullable=False),
            pa.field("interrupted", pa.bool_(), nullable=False),
            pa.field("error", pa.string()),
            pa.field("total_targets", pa.int64(), nullable=False),
            pa.field("built", pa.int64(), nullable=False),
            pa.field("cached", pa.int64(), nullable=False),
            pa.field("failed", pa.int64(), nullable=False),
            pa.field("skipped", pa.int64(), nullable=False),
            # Σ durations of executed (built or failed) targets, and the most of them running at
            # once: the two facts parallelism utilization needs that a session row cannot derive.
            pa.field("executed_ms", pa.int64(), nullable=False),
            pa.field("peak_concurrency", pa.int32(), nullable=False),
            pa.field("parallelism", pa.int32()),
            pa.field("tool", pa.string()),
            pa.field("host", pa.string()),
            pa.field("commit", pa.string()),
            pa.field("branch", pa.string()),
            pa.field("labels", LABELS),
        ],
        metadata=_metadata("sessions"),
    )

    TARGETS_SCHEMA = pa.schema(
        [
            pa.field("session_id", pa.string(), nullable=False),
            pa.field("target", pa.dictionary(pa.int32(), pa.string()), nullable=False),
            pa.field("status", pa.dictionary(pa.int8(), pa.string()), nullable=False),
            pa.field("start_time", TIMESTAMP, nullable=False),
            pa.field("end_time", TIMESTAMP, nullable=False),
            pa.field("duration_ms", pa.int64(), nullable=False),
            pa.field("worker", pa.int32()),
            pa.field("error", pa.string()),
            # The targets this one waited for, by name, as its target_started said: null when
            # not said (unknown), empty when it has none. Plain strings: dictionary-encoded ones
            # would make the target files a third smaller, but a dictionary in a list turns off
            # DuckDB's filter pushdown into Arrow files (docs/storage.md).
            pa.field("deps", pa.list_(pa.string())),
        ],
        metadata=_metadata("targets"),
    )

    # One row per target and day: what the day's target rows add up to, so that a long window
    # reads a few rows per target and day instead of every run. Written by compaction beside the
    # day's compacted sessions file, under the same name stem; it covers exactly that file.
    DAILY_TARGETS_SCHEMA = pa.schema(
        [
            pa.field("target", pa.dictionary(pa.int32(), pa.string()), nullable=False),
            pa.field("built", pa.int64(), nullable=False),
            pa.field("cached", pa.int64(), nullable=False),
            pa.field("failed", pa.int64(), nullable=False),
            pa.field("skipped", pa.int64(), nullable=False),
            # Σ durations of the executed (built or failed) runs: their mean is this over
            # built + failed.
            pa.field("executed_ms", pa.int64(), nullable=False),
        ],
        metadata=_metadata("daily_targets"),
    )

    _MADE.update(
        TIMESTAMP=TIMESTAMP,
        LABELS=LABELS,
        SESSIONS_SCHEMA=SESSIONS_SCHEMA,
        TARGETS_SCHEMA=TARGETS_SCHEMA,
        DAILY_TARGETS_SCHEMA=DAILY_TARGETS_SCHEMA,
    )
    return _MADE


_MADE: dict[str, Any] = {}
_ARROW_NAMES: Final = (
    "TIMESTAMP",
    "LABELS",
    "SESSIONS_SCHEMA",
    "TARGETS_SCHEMA",
    "DAILY_TARGETS_SCHEMA",
)

if TYPE_CHECKING:
    TIMESTAMP: pa.DataType
    LABELS: pa.DataType
    SESSIONS_SCHEMA: pa.Schema
    TARGETS_SCHEMA: pa.Schema
    DAILY_TARGETS_SCHEMA: pa.Schema


def __getattr__(name: str) -> Any:
    """The pyarrow types and schemas above by name, made at the first look."""
    if name in _ARROW_NAMES:
        return _arrow()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ARROW_NAMES})


class _Schemas(MutableMapping["Dataset", "pa.Schema"]):
    """Each dataset's schema, made at the first look (see :func:`_arrow`)."""

    def __init__(self) -> None:
        self._schemas: dict[Dataset, pa.Schema] = {}

    def _all(self) -> dict[Dataset, pa.Schema]:
        if not self._schemas:
            made = _arrow()
            self._schemas["sessions"] = made["SESSIONS_SCHEMA"]
            self._schemas["targets"] = made["TARGETS_SCHEMA"]
            self._schemas["daily_targets"] = made["DAILY_TARGETS_SCHEMA"]
        return self._schemas

    def __getitem__(self, dataset: Dataset) -> pa.Schema:
        return self._all()[dataset]

    def __setitem__(self, dataset: Dataset, schema: pa.Schema) -> None:
        self._all()[dataset] = schema

    def __delitem__(self, dataset: Dataset) -> None:
        del self._all()[dataset]

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


SCHEMAS: Final[MutableMapping[Dataset, pa.Schema]] = _Schemas()


def arro3_schema(dataset: Dataset) -> arro3.core.Schema:
    """The schema of ``dataset`` in this version as :mod:`arro3.core` (the optional
    ``duckdb`` extra) has it, metadata included, for reading files without pyarrow: the
    schemas above, made with arro3's types (``tests/test_schema.py`` holds them equal)."""
    if dataset not in _ARRO3:
        from arro3.core import DataType, Field, Schema

        text, stamp = DataType.string(), DataType.timestamp("ms", tz="UTC")
        count, label = DataType.int64(), DataType.dictionary(DataType.int32(), text)
        fields = {
            "sessions": [
                Field("session_id", text, nullable=False),
                Field("start_time", stamp, nullable=False),
                Field("end_time", stamp, nullable=False),
                Field("duration_ms", count, nullable=False),
                Field("succeeded", DataType.bool(), nullable=False),
                Field("interrupted", DataType.bool(), nullable=False),
                Field("error", text),
                *(Field(name, count, nullable=False) for name in _COUNTS),
                Field("peak_concurrency", DataType.int32(), nullable=False),
                Field("parallelism", DataType.int32()),
                *(Field(name, text) for name in ("tool", "host", "commit", "branch")),
                Field(
                    "labels",
                    DataType.map(Field("key", text, nullable=False), Field("value", text), False),
                ),
            ],
            "targets": [
                Field("session_id", text, nullable=False),
                Field("target", label, nullable=False),
                Field("status", DataType.dictionary(DataType.int8(), text), nullable=False),
                Field("start_time", stamp, nullable=False),
                Field("end_time", stamp, nullable=False),
                Field("duration_ms", count, nullable=False),
                Field("worker", DataType.int32()),
                Field("error", text),
                Field("deps", DataType.list(Field("item", text))),
            ],
            "daily_targets": [
                Field("target", label, nullable=False),
                *(Field(name, count, nullable=False) for name in _COUNTS[1:]),
            ],
        }[dataset]
        _ARRO3[dataset] = Schema(fields, metadata=_metadata(dataset))
    return _ARRO3[dataset]


_ARRO3: dict[Dataset, arro3.core.Schema] = {}
_COUNTS: Final = ("total_targets", "built", "cached", "failed", "skipped", "executed_ms")


# Columns added after version 1, with the version that added each. Files of an older version
# lack them and are read with nulls there, so every store ever written stays readable. A
# column is only ever added, nullable, at the end; none is removed, renamed or retyped.
ADDED_IN: Final[dict[Dataset, dict[str, int]]] = {
    "sessions": {},
    "targets": {"deps": 2},
    "daily_targets": {},
}


def file_version(schema: pa.Schema) -> int:
    """The schema version a file was written with (``ValueError`` when unreadable)."""
    try:
        return int((schema.metadata or {}).get(VERSION_KEY, b""))
    except ValueError:
        raise ValueError("its schema version is unreadable") from None


def missing_columns(schema: pa.Schema, dataset: Dataset) -> tuple[str, ...]:
    """The columns of this version that a readable file lacks (added after it was written)."""
    return tuple(name for name in SCHEMAS[dataset].names if name not in schema.names)


def check_schema(schema: pa.Schema, dataset: Dataset) -> None:
    """Raise ``ValueError`` saying why ``schema`` is not one this version can read."""
    metadata = schema.metadata or {}
    if metadata.get(DATASET_KEY) != dataset.encode():
        raise ValueError(f"not a builder-telemetry {dataset} file")
    version = file_version(schema)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"written with schema version {version}, newer than this version's "
            f"{SCHEMA_VERSION}; upgrade builder-telemetry to read it"
        )
    expected = SCHEMAS[dataset]
    added = ADDED_IN[dataset]
    missing = [
        f.name
        for f in expected
        if f.name not in schema.names and not (f.nullable and added.get(f.name, 1) > version)
    ]
    if missing:
        raise ValueError(f"columns {', '.join(missing)} are missing")
    extra = [name for name in schema.names if name not in expected.names]
    if extra:
        raise ValueError(f"it has columns this version does not know: {', '.join(extra)}")
    for field in expected:
        if field.name not in schema.names:
            continue
        found = schema.field(field.name).type
        if not found.equals(field.type):
            raise ValueError(f"column {field.name} is {found}, expected {field.type}")


class _Verdict(NamedTuple):
    expected: pa.Schema
    added: dict[str, int]
    version: int
    said: tuple[str | None, tuple[str, ...]]


_VERDICTS: dict[tuple[object, ...], _Verdict] = {}


def judge_schema(schema: pa.Schema, dataset: Dataset) -> tuple[str | None, tuple[str, ...]]:
    """Why a file of ``schema`` cannot be read as ``dataset`` (None when it can), and the
    columns of this version it lacks: :func:`check_schema` and :func:`missing_columns`,
    remembered, since every file of a store has one of a few schemas and checking costs
    more than reading a footer."""
    metadata = schema.metadata or {}
    # The fields as text (a Schema's hash covers its metadata, which differs from file to
    # file where a compacted file names what it replaces), and the rest of the metadata.
    fields = schema.to_string(show_field_metadata=True, show_schema_metadata=False)
    key = (dataset, fields, tuple(sorted(i for i in metadata.items() if i[0] != REPLACES_KEY)))
    known = _VERDICTS.get(key)
    if (
        known is not None
        and known.expected is SCHEMAS[dataset]
        and known.added is ADDED_IN[dataset]
        and known.version == SCHEMA_VERSION
    ):
        return known.said
    try:
        check_schema(schema, dataset)
        said: tuple[str | None, tuple[str, ...]] = (None, missing_columns(schema, dataset))
    except ValueError as error:
        said = (str(error), ())
    if len(_VERDICTS) < 64:
        _VERDICTS[key] = _Verdict(SCHEMAS[dataset], ADDED_IN[dataset], SCHEMA_VERSION, said)
    return said
