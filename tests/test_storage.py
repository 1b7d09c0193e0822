"""The store: layout, format, atomicity, damaged files, retention and clear."""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import CorruptFileWarning, StorageError
from telemetry.ingest import ingest_file, ingest_jsonl
from telemetry.schema import SCHEMA_VERSION, VERSION_KEY
from telemetry.storage import TelemetryStorage
from tests.conftest import T0, small_history

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DAY = 86_400_000


def _files(root: Path) -> list[Path]:
    """Every file but the store's (empty) lock and guard files."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (".lock", ".guard"))


def test_layout_is_hive_partitioned_arrow_ipc_files(small_store: TelemetryStorage) -> None:
    files = [p.relative_to(small_store.dir) for p in _files(small_store.dir)]
    assert [(p.parts[0], p.parts[1]) for p in files] == [
        ("sessions", "date=2025-10-27"),
        ("targets", "date=2025-10-27"),
    ]
    for path in _files(small_store.dir):
        data = path.read_bytes()
        assert data[:6] == b"ARROW1" and data[-6:] == b"ARROW1"  # IPC *file* format
        assert ZSTD_MAGIC in data  # buffers are zstd frames
        with ipc.open_file(path) as reader:
            schema = reader.schema
            table = reader.read_all()
        assert schema.metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()
        assert schema.field("start_time").type == pa.timestamp("ms", tz="UTC")
        assert path.name.endswith(f"-n{table.num_rows}.arrow")
    targets = next(p for p in _files(small_store.dir) if p.parts[-3] == "targets")
    with ipc.open_file(targets) as reader:
        assert reader.schema.field("target").type == pa.dictionary(pa.int32(), pa.string())


def test_partition_is_the_utc_day_the_session_started(storage: TelemetryStorage) -> None:
    # Starts 23:59:59.900 UTC on the 26th and finishes on the 27th.
    start = T0 - 14 * 3_600_000 - 23 * 60_000 - 20_100
    events = [
        {"event": "build_started", "session": "late", "ts": start},
        {
            "event": "target_finished",
            "session": "late",
            "ts": start + 500,
            "target": "//t",
            "status": "built",
            "duration_ms": 400,
        },
        {"event": "build_finished", "session": "late", "ts": start + 1000, "success": True},
    ]
    ingest_jsonl(storage, [json.dumps(e) for e in events])
    assert storage.days("sessions") == storage.days("targets") == [date(2025, 10, 26)]


def test_duckdb_reads_the_store(small_store: TelemetryStorage) -> None:
    sessions = ds.dataset(small_store.dir / "sessions", format="ipc", partitioning="hive")
    targets = ds.dataset(small_store.dir / "targets", format="ipc", partitioning="hive")
    con = duckdb.connect()
    con.register("sessions", sessions)
    con.register("targets", targets)
    assert con.execute(
        "select session_id, duration_ms, labels['ci'] from sessions order by start_time"
    ).fetchall() == [("a", 1000, "true"), ("b", 2000, None), ("c", 3000, None)]
    assert con.execute(
        "select count(*), sum(duration_ms) from targets where status = 'built'"
    ).fetchone() == (6, 400 + 300 + 200 + 1000 + 1100 + 600)


def test_concurrent_writers_never_share_a_file_name(storage: TelemetryStorage) -> None:
    for _ in range(3):
        ingest_jsonl(storage, small_history()[:8])  # session "a" each time
    # Re-ingesting the same session is skipped, so only one file pair exists ...
    assert len(_files(storage.dir)) == 2
    # ... while distinct builds written in the same second get distinct files.
    for n in range(5):
        lines = [line.replace('"a"', f'"a{n}"') for line in small_history()[:8]]
        ingest_jsonl(storage, lines)
    assert len({p.name for p in _files(storage.dir / "sessions")}) == 6


def _corrupt(small_store: TelemetryStorage, name: str, data: bytes) -> Path:
    path = small_store.dir / "sessions" / "date=2025-10-27" / name
    path.write_bytes(data)
    return path


def _foreign_arrow() -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"x": [1, 2, 3]})
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _altered(small_store: TelemetryStorage, change: str) -> bytes:
    """A sessions file with our metadata whose columns are not ours."""
    good = next((small_store.dir / "sessions").rglob("*.arrow"))
    with ipc.open_file(good) as reader:
        table = reader.read_all()
    metadata = table.schema.metadata
    if change == "extra":
        table = table.append_column("surprise", pa.array([1] * table.num_rows))
    else:
        table = table.set_column(
            table.schema.get_field_index("duration_ms"),
            "duration_ms",
            table["duration_ms"].cast(pa.int32()),
        )
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _future_version(small_store: TelemetryStorage) -> bytes:
    good = next((small_store.dir / "sessions").rglob("*.arrow"))
    with ipc.open_file(good) as reader:
        table = reader.read_all()
    schema = table.schema.with_metadata(
        {**table.schema.metadata, VERSION_KEY: str(SCHEMA_VERSION + 1).encode()}
    )
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("zero-byte", "not a complete Arrow IPC file"),
        ("random", "not a complete Arrow IPC file"),
        ("truncated", "not a complete Arrow IPC file"),
        ("foreign", "not a builder-telemetry sessions file"),
        ("future", "newer than this version's"),
        ("extra-column", "it has columns this version does not know: surprise"),
        ("wrong-type", "column duration_ms is int32, expected int64"),
    ],
)
def test_a_damaged_file_is_named_skipped_and_the_rest_still_counts(
    small_store: TelemetryStorage, kind: str, reason: str
) -> None:
    good = next((small_store.dir / "sessions").rglob("*.arrow")).read_bytes()
    data = {
        "zero-byte": b"",
        "random": os.urandom(4096),
        "truncated": good[: len(good) // 2],
        "foreign": _foreign_arrow(),
        "future": _future_version(small_store) if kind == "future" else b"",
        "extra-column": _altered(small_store, "extra") if kind == "extra-column" else b"",
        "wrong-type": _altered(small_store, "type") if kind == "wrong-type" else b"",
    }[kind]
    bad = _corrupt(small_store, f"zz-{kind}-n1.arrow", data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = TelemetryAnalyzer(small_store).summary()
    assert report.total_builds == 3
    messages = [str(w.message) for w in caught if w.category is CorruptFileWarning]
    assert messages and all(str(bad) in m and reason in m for m in messages)
    assert [path for path, problem in small_store.verify() if problem] == [bad]


def test_temporary_files_of_a_dead_writer_are_invisible_then_removed(
    small_store: TelemetryStorage,
) -> None:
    folder = small_store.dir / "sessions" / "date=2025-10-27"
    partial = folder / ".tmp-20251027T000000Z-deadbeef0000.arrow.partial"
    partial.write_bytes(b"ARROW1\x00\x00half")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning: it is not a data file
        assert TelemetryAnalyzer(small_store).summary().total_builds == 3
    os.utime(partial, (0, 0))  # old enough to belong to a writer that died
    small_store.apply_retention()
    assert not partial.exists()


def test_targets_without_their_session_file_are_not_counted(
    small_store: TelemetryStorage,
) -> None:
    # A crash between the two renames leaves a targets file whose session never appeared.
    stored = next((small_store.dir / "targets").rglob("*.arrow"))
    copy = stored.with_name("20251027T000000Z-000000000000-n11.arrow")
    with ipc.open_file(stored) as reader:
        table = reader.read_all()
    table = table.set_column(0, "session_id", pa.array(["ghost"] * table.num_rows))
    with ipc.new_file(copy, table.schema) as writer:
        writer.write_table(table)
    report = TelemetryAnalyzer(small_store).summary()
    assert report.total_builds == 3
    assert sum(b.runs for b in report.bottlenecks) == 7  # the ghost's runs are not among them


def _history(days: list[int], now: datetime, prefix: str = "s") -> list[str]:
    """One build per entry, ``days[i]`` days before ``now``."""
    lines = []
    base = int(now.timestamp() * 1000)
    for i, age in enumerate(days):
        start = base - age * DAY - 3_600_000
        lines += [
            json.dumps({"event": "build_started", "session": f"{prefix}{i}", "ts": start}),
            json.dumps(
                {
                    "event": "build_finished",
                    "session": f"{prefix}{i}",
                    "ts": start + 100,
                    "success": True,
                }
            ),
        ]
    return lines


NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_retention_by_days_removes_whole_old_partitions(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path, retention_days=30, clock=lambda: NOW)
    result = ingest_jsonl(storage, _history([45, 31, 30, 29, 0, 0], NOW))
    # Kept: the days from 2026-10-26 (30 days before the 25th) on.
    assert (
        storage.days("sessions")
        == storage.days("targets")
        == [date(2026, 10, 26), date(2026, 10, 27), date(2026, 11, 25)]
    )
    assert result.retention.removed_days == (date(2026, 10, 11), date(2026, 10, 25))
    assert result.retention.removed_sessions == 2
    assert TelemetryAnalyzer(storage).summary().total_builds == 4


def test_retention_by_session_cap_removes_oldest_days(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path, max_sessions=3, clock=lambda: NOW)
    ingest_jsonl(storage, _history([3, 2, 2, 1, 0], NOW))
    # 5 builds over 4 days: dropping day -3 leaves 4, dropping day -2 leaves 2 ≤ 3.
    assert storage.days("sessions") == [date(2026, 11, 24), date(2026, 11, 25)]
    assert storage.session_count() == 2


def test_session_cap_keeps_the_newest_day_whole(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path, max_sessions=2, clock=lambda: NOW)
    ingest_jsonl(storage, _history([0, 0, 0, 0], NOW))
    assert storage.session_count() == 4


def test_clear_removes_everything(small_store: TelemetryStorage) -> None:
    assert small_store.clear() == 3
    assert small_store.is_empty()
    assert _files(small_store.dir) == []


def test_a_store_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    storage = TelemetryStorage(blocker)
    with pytest.raises(StorageError, match=f"^{blocker} is not a directory; point"):
        ingest_jsonl(storage, small_history())


@pytest.mark.parametrize("blocked", ["targets", "sessions"])
def test_a_failed_write_leaves_no_file_and_names_the_path(tmp_path: Path, blocked: str) -> None:
    storage = TelemetryStorage(tmp_path)
    in_the_way = tmp_path / blocked / "date=2025-10-27"
    in_the_way.parent.mkdir()
    in_the_way.write_text("a file where the day's folder should be")
    with pytest.raises(StorageError, match=rf"could not write .*{blocked}.*: File exists$"):
        ingest_jsonl(storage, small_history())
    assert storage.is_empty()
    # When the sessions file fails, the targets file already written is taken back.
    assert list(tmp_path.rglob("*.arrow")) == []


def test_damaged_data_behind_a_sound_footer_is_found_and_skipped(
    small_store: TelemetryStorage,
) -> None:
    later = [
        line.replace('"a"', '"a2"').replace("17615750", "17616614") for line in small_history()[:8]
    ]  # the same build one day later, in its own files
    ingest_jsonl(small_store, later)
    [damaged] = list((small_store.dir / "targets" / "date=2025-10-27").glob("*.arrow"))
    data = bytearray(damaged.read_bytes())
    for i in range(200, len(data) // 2, 7):  # the footer at the end stays intact
        data[i] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = TelemetryAnalyzer(small_store).summary()
    assert report.total_builds == 4  # sessions are intact; only that day's targets are lost
    assert [(b.target, b.runs) for b in report.bottlenecks] == [
        ("//app:compile", 1),
        ("//app:test", 1),
        ("//app:link", 1),
    ]
    messages = [str(w.message) for w in caught if w.category is CorruptFileWarning]
    assert len(messages) == 1
    assert messages[0].startswith(f"skipping {damaged}: damaged data (")
    assert [path for path, problem in small_store.verify() if problem] == [damaged]


def test_a_stray_files_name_cannot_make_retention_delete_history(tmp_path: Path) -> None:
    storage = TelemetryStorage(tmp_path, max_sessions=10, clock=lambda: NOW)
    ingest_jsonl(storage, _history([3, 2, 1], NOW))
    stray = tmp_path / "sessions" / "date=2026-11-22" / "backup-n5000.arrow"
    stray.write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptFileWarning)
        ingest_jsonl(storage, _history([0], NOW, prefix="later"))
        assert TelemetryAnalyzer(storage).summary().total_builds == 4


def test_retention_spares_a_write_in_progress(tmp_path: Path) -> None:
    # A backfill has renamed its targets file into a day that has no sessions yet; the
    # sessions file follows. Retention running in between must not take the targets.
    storage = TelemetryStorage(tmp_path, retention_days=30, clock=lambda: NOW)
    ingest_jsonl(storage, _history([0], NOW))
    pending = tmp_path / "targets" / "date=2026-11-10" / "20261110T000000Z-0123456789ab-n0.arrow"
    pending.parent.mkdir(parents=True)
    pending.write_bytes(b"")
    storage.apply_retention()
    assert pending.exists()
    old = tmp_path / "targets" / "date=2026-10-01" / "20261001T000000Z-0123456789ab-n0.arrow"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"")
    storage.apply_retention()  # past the cutoff, targets without sessions do go
    assert not old.exists() and pending.exists()


def test_retention_removes_a_dead_writers_targets_after_an_hour(
    small_store: TelemetryStorage,
) -> None:
    folder = small_store.dir / "targets" / "date=2025-10-27"
    [committed] = folder.glob("*.arrow")
    orphan = folder / "20251027T000000Z-0123456789ab-n7.arrow"
    orphan.write_bytes(committed.read_bytes())
    small_store.apply_retention()
    assert orphan.exists()  # young: its sessions file may still be on its way
    os.utime(orphan, (0, 0))
    small_store.apply_retention()
    assert not orphan.exists() and committed.exists()


@pytest.mark.parametrize("reading", ["by line", "in columns"])
@pytest.mark.parametrize("shared", [False, True])
def test_each_days_file_holds_only_its_own_target_names(
    storage: TelemetryStorage, tmp_path: Path, reading: str, shared: bool
) -> None:
    """One ingest spanning three days, in time order or not, is split by day; each day's
    dictionary of target names is that day's (a filter alone would keep all three days'
    names), whether the days share their targets or not."""
    lines = []
    for day in (1, 0, 2):
        session, ts = f"s{day}", 1761575000000 + day * 86_400_000
        lines.append(json.dumps({"event": "build_started", "session": session, "ts": ts}))
        lines += [
            json.dumps({"event": "target_finished", "session": session, "ts": ts + 1,
                        "target": f"//day{0 if shared else day}:t{i}", "status": "cached"})
            for i in range(50)
        ]  # fmt: skip
        lines.append(
            json.dumps(
                {"event": "build_finished", "session": session, "ts": ts + 5, "success": True}
            )
        )
    if reading == "by line":
        ingest_jsonl(storage, lines, apply_retention=False)
    else:
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(lines))
        ingest_file(storage, path, apply_retention=False)
    files = sorted((storage.dir / "targets").rglob("*.arrow"))
    assert len(files) == 3
    for day, path in enumerate(files):
        table = ipc.open_file(path).read_all()
        target = table.column("target").combine_chunks()
        assert sorted(target.dictionary.to_pylist()) == sorted(
            f"//day{0 if shared else day}:t{i}" for i in range(50)
        )
        assert set(table.column("session_id").to_pylist()) == {f"s{day}"}


def test_target_rows_of_no_session_given_are_not_written(storage: TelemetryStorage) -> None:
    """Rows already in day order are written as they are, but not a target row whose
    session is not among the sessions given: it would land in another day's file."""
    from telemetry.ingest.columnar import read_columns
    from telemetry.ingest.jsonl import _DECODER

    lines = []
    for day in range(3):
        session, ts = f"s{day}", T0 + day * DAY
        lines.append({"event": "build_started", "session": session, "ts": ts})
        lines += [{"event": "target_finished", "session": session, "ts": ts + 1,
                   "target": f"//t{i}", "status": "cached"} for i in range(3)]  # fmt: skip
        lines.append({"event": "build_finished", "session": session, "ts": ts + 5,
                      "success": True})  # fmt: skip
    read = read_columns("\n".join(json.dumps(e) for e in lines).encode(), _DECODER)
    assert read is not None
    sessions, targets, _ = read
    ids = targets.column("session_id").to_pylist()
    assert ids == ["s0"] * 3 + ["s1"] * 3 + ["s2"] * 3
    ids[4] = "elsewhere"
    field = targets.schema.field("session_id")
    storage.append(sessions, targets.set_column(0, field, pa.array(ids, pa.string())))
    for day, path in enumerate(sorted((storage.dir / "targets").rglob("*.arrow"))):
        stored = ipc.open_file(path).read_all().column("session_id").to_pylist()
        assert stored == [f"s{day}"] * (2 if day == 1 else 3)


def test_writes_sweep_for_leftovers_every_ten_minutes_retention_always(tmp_path: Path) -> None:
    """A build's write looks for what dead writers left at most every ten minutes (looking
    in every day folder after every build made `record` slower as history grew); retention
    run on its own always looks."""
    from telemetry.collector import TelemetryCollector

    storage = TelemetryStorage(tmp_path)
    collector = TelemetryCollector(storage)

    def build(name: str) -> None:
        collector.build_started(name, ts=T0)
        collector.build_finished(name, ts=T0 + 5, success=True)

    build("a")  # the first write sweeps, and marks the store swept
    folder = tmp_path / "sessions" / "date=2025-10-27"
    leftover = folder / ".tmp-dead.arrow.partial"
    leftover.write_bytes(b"half a file")
    os.utime(leftover, (0, 0))  # long dead
    build("b")
    assert leftover.exists()  # swept less than ten minutes ago
    os.utime(tmp_path / ".swept", (0, 0))
    build("c")
    assert not leftover.exists()
    leftover.write_bytes(b"half a file")
    os.utime(leftover, (0, 0))
    storage.apply_retention()
    assert not leftover.exists()
    assert len(TelemetryAnalyzer(storage).sessions()) == 3
