"""The Arrow schemas of the stored datasets: ``sessions`` and ``targets``, and the daily
rollup ``daily_targets`` that compaction writes beside a compacted day.

Columns are snake_case, times are ``timestamp[ms, UTC]``, target labels and statuses are
dictionary-encoded. Each schema carries its dataset name and schema version in its metadata, so
a reader can tell our files from foreign ones and from files written by a newer version.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, TypeAlias

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

TIMESTAMP: Final = pa.timestamp("ms", tz="UTC")
LABELS: Final = pa.map_(pa.string(), pa.string())


def _metadata(dataset: Dataset) -> dict[bytes, bytes]:
    return {VERSION_KEY: str(SCHEMA_VERSION).encode(), DATASET_KEY: dataset.encode()}


SESSIONS_SCHEMA: Final = pa.schema(
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

TARGETS_SCHEMA: Final = pa.schema(
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
DAILY_TARGETS_SCHEMA: Final = pa.schema(
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

SCHEMAS: Final[dict[Dataset, pa.Schema]] = {
    "sessions": SESSIONS_SCHEMA,
    "targets": TARGETS_SCHEMA,
    "daily_targets": DAILY_TARGETS_SCHEMA,
}

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
