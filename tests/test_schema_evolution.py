"""Stores outlive versions: the store version 1 wrote (data-fixtures/store-v1) reads with the
hand-computed numbers, and still does once a later version has added a column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

import telemetry.schema as schema
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES

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
    write version 2 files beside the version 1 ones."""
    runner = pa.field("runner", pa.string())
    cpu = pa.field("cpu_ms", pa.int64())
    sessions_v2 = _with_column(schema.SESSIONS_SCHEMA, runner)
    targets_v2 = _with_column(schema.TARGETS_SCHEMA, cpu)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(schema.SCHEMAS, "sessions", sessions_v2)
    monkeypatch.setitem(schema.SCHEMAS, "targets", targets_v2)
    monkeypatch.setitem(schema.ADDED_IN, "sessions", {"runner": 2})
    monkeypatch.setitem(schema.ADDED_IN, "targets", {"cpu_ms": 2})

    # A build "d" stored by version 2: build "a" again, one hour after "c", with the columns.
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
    d_targets = a_targets.set_column(0, "session_id", pa.array(["d"] * a_targets.num_rows))
    d_targets = d_targets.append_column(cpu, pa.array(range(a_targets.num_rows), pa.int64()))
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
    newer = table.schema.with_metadata({schema.VERSION_KEY: b"2", schema.DATASET_KEY: b"sessions"})
    _write(old.with_name("20261201T000000Z-00000000000f-n3.arrow"), table, newer)
    with pytest.warns(UserWarning, match="schema version 2, newer than this version's 1"):
        assert TelemetryAnalyzer(old_store).sessions().height == 3


def _with_column(base: pa.Schema, field: pa.Field) -> pa.Schema:
    metadata = dict(base.metadata) | {schema.VERSION_KEY: b"2"}
    return pa.schema([*base, field], metadata=metadata)


def _write(path: Path, table: pa.Table, target: pa.Schema) -> None:
    with ipc.new_file(path, target) as writer:
        writer.write_table(table.cast(target))
