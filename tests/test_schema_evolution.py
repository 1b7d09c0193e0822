"""Stores outlive versions: the store version 1 wrote (data-fixtures/store-v1) reads with the
hand-computed numbers, and still does once a later version has added a column; the column
version 2 added (the targets' deps) reads as unknown in its files, and as sent in the files
written beside them, through every reader."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import telemetry.duckdb as sql
import telemetry.schema as schema
from pipelines.compaction import compact
from pipelines.merge import merge, parse_source
from pipelines.months import pack
from telemetry import months
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.critical_path import build_critical_path
from telemetry.ingest import ingest_jsonl
from telemetry.parquet import sink_parquet
from telemetry.snapshot import conform
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, HOUR, T0

STORE_V1 = FIXTURES / "store-v1"
# The per-build numbers of small_history(), worked out by hand (see tests/test_analyzer.py):
# id, duration, total, built, cached, failed, skipped, hit rate, utilisation, succeeded.
BY_HAND = [
    ("a", 1000, 4, 3, 1, 0, 0, 25.0, 45.0, True),
    ("b", 2000, 5, 3, 2, 0, 0, 40.0, 67.5, True),
    ("c", 3000, 4, 0, 1, 1, 2, 50.0, 25.0, False),
]
COLUMNS = (
    "session_id",
    "duration_ms",
    "total_targets",
    "built",
    "cached",
    "failed",
    "skipped",
    "cache_hit_rate",
    "parallelism_utilization",
    "succeeded",
)


@pytest.fixture
def old_store(tmp_path: Path) -> TelemetryStorage:
    shutil.copytree(STORE_V1, tmp_path / "store")
    return TelemetryStorage(tmp_path / "store", retention_days=10**5)


def test_every_added_column_is_nullable_and_not_from_the_future() -> None:
    """A column added later must be nullable: files written before it have none, and a
    required one would make every old file unreadable (and verify --repair quarantine them)."""
    for dataset, added in schema.ADDED_IN.items():
        for name, version in added.items():
            field = schema.SCHEMAS[dataset].field(name)
            assert field.nullable, f"{dataset}.{name} was added in {version} but is required"
            assert 1 < version <= schema.SCHEMA_VERSION
        # Nothing in version 1 is ever listed as added: those columns every file has.
        assert set(added) <= set(schema.SCHEMAS[dataset].names)


def test_the_fixture_really_is_version_1() -> None:
    files = sorted(STORE_V1.rglob("*.arrow"))
    assert len(files) == 2
    for path in files:
        metadata = ipc.open_file(path).schema.metadata
        assert metadata[schema.VERSION_KEY] == b"1"


def test_a_version_1_store_reads_with_the_hand_computed_numbers(
    old_store: TelemetryStorage,
) -> None:
    sessions = TelemetryAnalyzer(old_store).sessions()
    assert sessions.select(COLUMNS).rows() == BY_HAND
    report = TelemetryAnalyzer(old_store).summary()
    # compile ran 400, 1000 and 3000 ms (a failed run counts); test 300 and 1100; link 200, 600.
    assert [(b.target, b.mean_ms, b.runs) for b in report.bottlenecks] == [
        ("//app:compile", pytest.approx(4400 / 3), 3),
        ("//app:test", 700, 2),
        ("//app:link", 400, 2),
    ]
    assert [path for path, problem in old_store.verify() if problem] == []


def test_after_a_column_is_added_old_files_read_as_nulls_in_it(
    old_store: TelemetryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the next version will do: add a nullable column at the end of each dataset and
    write its files beside the version 1 ones."""
    runner = pa.field("runner", pa.string())
    cpu = pa.field("cpu_ms", pa.int64())
    sessions_v2 = _with_column(schema.SESSIONS_SCHEMA, runner)
    targets_v2 = _with_column(schema.TARGETS_SCHEMA, cpu)
    future = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", future)
    monkeypatch.setitem(schema.SCHEMAS, "sessions", sessions_v2)
    monkeypatch.setitem(schema.SCHEMAS, "targets", targets_v2)
    monkeypatch.setitem(
        schema.ADDED_IN, "sessions", {**schema.ADDED_IN["sessions"], "runner": future}
    )
    monkeypatch.setitem(
        schema.ADDED_IN, "targets", {**schema.ADDED_IN["targets"], "cpu_ms": future}
    )

    # A build "d" stored by that version: build "a" again, one hour after "c", with the
    # columns (those added since version 1 as nulls).
    day = old_store.dir / "sessions" / "date=2025-10-27"
    [old_sessions] = day.glob("*.arrow")
    [old_targets] = (old_store.dir / "targets" / "date=2025-10-27").glob("*.arrow")
    a_session = ipc.open_file(old_sessions).read_all().slice(0, 1)
    a_targets = ipc.open_file(old_targets).read_all()
    a_targets = a_targets.filter(pa.compute.equal(a_targets["session_id"], "a"))
    shift = pa.scalar(3 * 3_600_000, pa.duration("ms"))
    d_session = a_session.set_column(0, "session_id", pa.array(["d"]))
    for name in ("start_time", "end_time"):
        index = d_session.schema.get_field_index(name)
        moved = pa.compute.add(d_session[name], shift)
        d_session = d_session.set_column(index, name, moved)
    d_session = d_session.append_column(runner, pa.array(["linux-x64"]))
    d_targets = conform(a_targets, "targets")  # in that version's schema, nulls in its columns
    d_targets = d_targets.set_column(0, "session_id", pa.array(["d"] * a_targets.num_rows))
    d_targets = d_targets.set_column(
        d_targets.schema.get_field_index("cpu_ms"),
        cpu,
        pa.array(range(a_targets.num_rows), pa.int64()),
    )
    stem = "20261201T000000Z-0000000000d2"
    _write(
        old_store.dir / "targets" / "date=2025-10-27" / f"{stem}-n4.arrow", d_targets, targets_v2
    )
    _write(day / f"{stem}-n1.arrow", d_session, sessions_v2)

    sessions = TelemetryAnalyzer(old_store).sessions()
    assert sessions.select(COLUMNS).rows() == [*BY_HAND, ("d", *BY_HAND[0][1:])]
    assert sessions["runner"].to_list() == [None, None, None, "linux-x64"]
    report = TelemetryAnalyzer(old_store).summary()
    # d repeats a: compile 400 → mean (400+1000+3000+400)/4; test (300+1100+300)/3.
    assert [(b.target, b.runs) for b in report.bottlenecks] == [
        ("//app:compile", 4),
        ("//app:test", 3),
        ("//app:link", 3),
    ]
    assert report.bottlenecks[0].mean_ms == pytest.approx(4800 / 4)
    assert [path for path, problem in old_store.verify() if problem] == []


def test_a_file_of_a_newer_version_is_named_and_skipped(old_store: TelemetryStorage) -> None:
    [old] = (old_store.dir / "sessions" / "date=2025-10-27").glob("*.arrow")
    table = ipc.open_file(old).read_all()
    now, future = schema.SCHEMA_VERSION, schema.SCHEMA_VERSION + 1
    newer = table.schema.with_metadata(
        {schema.VERSION_KEY: str(future).encode(), schema.DATASET_KEY: b"sessions"}
    )
    _write(old.with_name("20261201T000000Z-00000000000f-n3.arrow"), table, newer)
    with pytest.warns(
        UserWarning, match=f"schema version {future}, newer than this version's {now}"
    ):
        assert TelemetryAnalyzer(old_store).sessions().height == 3


def _with_column(base: pa.Schema, field: pa.Field) -> pa.Schema:
    """``base`` with ``field`` added at its end by the version after this one."""
    metadata = dict(base.metadata) | {schema.VERSION_KEY: str(schema.SCHEMA_VERSION + 1).encode()}
    return pa.schema([*base, field], metadata=metadata)


def _write(path: Path, table: pa.Table, target: pa.Schema) -> None:
    with ipc.new_file(path, target) as writer:
        writer.write_table(table.cast(target))


# -- version 2: the targets' deps ------------------------------------------------------------

# Build "e", an hour after "c" on the fixture's day: gen [0,100), lib [100,400) waiting for
# gen, app [400,500) waiting for lib, gen and a cache hit (third) that sent no start.
E_TARGETS = {
    "//gen": [],
    "//lib": ["//gen"],
    "//app": ["//lib", "//gen", "//third"],
    "//third": None,
}
DEPS_QUERY = (
    "select session_id, target, deps from targets where deps is not null or session_id = 'e' "
    "order by session_id, target"
)
# What every reader answers to it: e's targets, null where no start named deps.
DEPS_ROWS = [
    ("e", "//app", ["//lib", "//gen", "//third"]),
    ("e", "//gen", []),
    ("e", "//lib", ["//gen"]),
    ("e", "//third", None),
]


def _build_e() -> list[str]:
    e = T0 + 3 * HOUR
    return [
        _event("build_started", "e", e),
        _event("target_started", "e", e, target="//gen", deps=[]),
        _event("target_finished", "e", e + 100, target="//gen", status="built"),
        _event("target_started", "e", e + 100, target="//lib", deps=["//gen"]),
        _event("target_finished", "e", e + 400, target="//lib", status="built"),
        _event("target_finished", "e", e + 410, target="//third", status="cached"),
        _event("target_started", "e", e + 400, target="//app", deps=E_TARGETS["//app"]),
        _event("target_finished", "e", e + 500, target="//app", status="built"),
        _event("build_finished", "e", e + 500, success=True),
    ]


def test_version_2_added_the_targets_deps() -> None:
    assert schema.SCHEMA_VERSION >= 2
    assert schema.ADDED_IN["targets"]["deps"] == 2
    assert schema.TARGETS_SCHEMA.field("deps").type == pa.list_(pa.string())


def test_version_1_targets_read_with_deps_unknown(old_store: TelemetryStorage) -> None:
    build = TelemetryAnalyzer(old_store).build("a")
    assert [run.deps for run in build.targets] == [None] * 4
    assert build_critical_path(build) is None
    assert sql.query(old_store, "select count(*), count(deps) from targets").to_pylist() == [
        {"count_star()": 13, "count(deps)": 0}
    ]


def test_deps_beside_version_1_files_read_alike_by_every_reader(
    old_store: TelemetryStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build e stored by this version on the fixture's day, beside its version 1 files; then
    the day compacted (with its Parquet copy), its month packed, the store exported to
    Parquet, and both merged into team stores: each answers with e's deps as sent and the
    version 1 builds' as unknown."""
    monkeypatch.setattr(months, "SETTLED_NS", -(10**12))
    assert ingest_jsonl(old_store, _build_e()).sessions == 1
    day = old_store.dir / "targets" / "date=2025-10-27"
    versions = sorted(ipc.open_file(f).schema.metadata[schema.VERSION_KEY] for f in day.iterdir())
    assert versions == [b"1", str(schema.SCHEMA_VERSION).encode()]

    def answers(storage: TelemetryStorage) -> tuple[object, ...]:
        analyzer = TelemetryAnalyzer(storage)
        return (
            {run.target: run.deps for run in analyzer.build("e").targets},
            [run.deps for run in analyzer.build("b").targets],
            [tuple(row.values()) for row in sql.query(storage, DEPS_QUERY).to_pylist()],
        )

    expected = (
        {name: None if deps is None else tuple(deps) for name, deps in E_TARGETS.items()},
        [None] * 5,
        DEPS_ROWS,
    )
    assert answers(old_store) == expected
    critical = build_critical_path(TelemetryAnalyzer(old_store).build("e"))
    assert critical is not None
    assert [step.target for step in critical.steps] == ["//gen", "//lib", "//app"]

    assert [d.day for d in compact(old_store)] == [date(2025, 10, 27)]
    [compacted] = day.glob("*.arrow")
    rows = ipc.open_file(compacted).read_all()
    assert rows.schema.field("deps").type == schema.TARGETS_SCHEMA.field("deps").type
    assert sum(v is not None for v in rows["deps"].to_pylist()) == 3
    assert list(day.glob(".parquet/*.parquet"))  # DuckDB reads the copy now
    assert answers(old_store) == expected

    assert pack(old_store).months == (date(2025, 10, 1),)
    assert answers(old_store) == expected  # read from the pack

    exported = sink_parquet(old_store, tmp_path / "export")
    assert exported.targets == 17
    table = pq.read_table(tmp_path / "export" / "targets")
    assert table.schema.field("deps").type == pa.list_(pa.string())
    columns = table.select(["session_id", "target", "deps"]).to_pydict().values()
    found = [row for row in zip(*columns, strict=True) if row[2] is not None or row[0] == "e"]
    assert sorted(found, key=lambda row: row[:2]) == DEPS_ROWS

    for source in (old_store.dir, tmp_path / "export"):
        team = TelemetryStorage(tmp_path / f"team-{source.name}", retention_days=10**5)
        [merged] = merge(team, [parse_source(f"x={source}")])
        assert (merged.added, merged.target_rows) == (4, 17)
        assert answers(team) == expected
    assert [path for path, problem in old_store.verify() if problem] == []


def _event(kind: str, session: str, ts: int, **fields: object) -> str:
    return json.dumps({"event": kind, "session": session, "ts": ts, **fields})
