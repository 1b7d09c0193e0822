"""The month packs (telemetry.months, the months job in pipelines.months): a packed store
answers exactly as the same store without its packs, read file by file; the packs are read
in place of the day files (a packed file's data is not even opened); a day changed since
it was packed (a late build, a compaction, retention) is read from its files until the job
packs its month again; a damaged or vanished pack costs nothing but speed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import telemetry.duckdb as sql
from pipelines.compaction import compact
from pipelines.jobs import run_jobs
from pipelines.months import pack, pending
from telemetry import months, snapshot
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import CorruptFileWarning
from telemetry.exporter import render_summary
from telemetry.ingest import ingest_jsonl
from telemetry.schema import SCHEMA_VERSION
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, late_build, small_history_on

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
QUERIES = (
    "select count(*), sum(duration_ms), sum(executed_ms) from sessions",
    "select date, count(*), sum(duration_ms), avg(cache_hit_rate) from sessions "
    "group by date order by date",
    "select date, target, status, count(*), sum(duration_ms) from targets "
    "group by all order by all",
    "select count(*) from targets",
    "select date, target, built, cached, failed, skipped, executed_ms from daily_targets "
    "order by all",
)


def _store(path: Path, lines: list[str]) -> TelemetryStorage:
    storage = TelemetryStorage(path, clock=lambda: NOW)
    assert ingest_jsonl(storage, lines).problems == ()
    return storage


@pytest.fixture(autouse=True)
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Day folders count as settled at once (see telemetry.months.stamp), even beside a probe
    file stamped by a coarse clock: a scheduled run finds the folders yesterday's compaction
    changed long settled, and a test need not wait two seconds for it."""
    monkeypatch.setattr(months, "SETTLED_NS", -(10**12))


def _unpacked(storage: TelemetryStorage, where: Path) -> TelemetryStorage:
    """A copy of the store without its packs: the answers to expect, read file by file."""
    shutil.copytree(storage.dir, where, ignore=shutil.ignore_patterns("months"))
    return TelemetryStorage(where, clock=lambda: NOW)


def _answers(storage: TelemetryStorage) -> tuple[Any, ...]:
    analyzer = TelemetryAnalyzer(storage)
    return (
        render_summary(analyzer.summary(top=50)),
        analyzer.sessions().to_dicts(),
        [sql.query(storage, text).to_pylist() for text in QUERIES],
    )


def _packed_files(storage: TelemetryStorage) -> dict[str, int]:
    taken = storage.snapshot(packs=True)
    return {d: sum(f.pack is not None for f in taken.listed[d]) for d in taken.listed}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> TelemetryStorage:
    """The demo history (60 days to 2026-11-20, over three months), compacted and packed."""
    folder = tmp_path_factory.mktemp("months")
    path = folder / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--today", "2026-11-20", "--output",
         str(path)],
        check=True,
    )  # fmt: skip
    storage = _store(folder / "telemetry", path.read_text().splitlines())
    compact(storage)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(months, "SETTLED_NS", -(10**12))  # a module's fixture: see settled()
        done = pack(storage)
    assert done.months == (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1))
    assert done.days == 60 and done.sessions == 200
    return storage


def test_a_packed_store_answers_as_its_files_do(demo: TelemetryStorage, tmp_path: Path) -> None:
    expected = _answers(_unpacked(demo, tmp_path / "plain"))
    assert _packed_files(demo) == {"sessions": 60, "targets": 60, "daily_targets": 60}
    assert _answers(demo) == expected


def test_a_window_cutting_a_packed_month_answers_as_its_files_do(
    demo: TelemetryStorage, tmp_path: Path
) -> None:
    from telemetry.window import Window

    plain = _unpacked(demo, tmp_path / "plain")
    window = Window(
        since=datetime(2026, 10, 3, 7, tzinfo=UTC), until=datetime(2026, 11, 2, tzinfo=UTC)
    )
    for store in (demo, plain):
        assert _packed_files(store)["targets"] == (60 if store is demo else 0)

    def answers(store: TelemetryStorage) -> tuple[Any, ...]:
        report = TelemetryAnalyzer(store, window=window).summary(top=50)
        counted = sql.query(
            store,
            "select date, count(*), sum(duration_ms) from targets group by date order by date",
            since=window.since,
            until=window.until,
        )
        return render_summary(report), counted.to_pylist()

    assert answers(demo) == answers(plain)


def test_packed_files_are_not_opened(demo: TelemetryStorage, tmp_path: Path) -> None:
    """The data of every packed file is overwritten with junk (its name and its folder's
    stamp as they were): every answer is still the packed one, and nothing is named as
    damaged, so no packed file was read, nor its footer checked."""
    expected = _answers(_unpacked(demo, tmp_path / "plain"))
    copy = TelemetryStorage(tmp_path / "copy", clock=lambda: NOW)
    shutil.copytree(demo.dir, copy.dir)
    assert pack(copy).months == ()  # the packs are the same files': the stamps are new
    listed = 0
    real = snapshot._day_listing

    def counting(folder: str, dataset: Any) -> Any:
        nonlocal listed
        listed += 1
        return real(folder, dataset)

    for path in copy.dir.glob("*/date=*/*.arrow"):
        path.write_bytes(b"junk" * 10)  # the same file: its folder's stamp stays
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptFileWarning)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(snapshot, "_day_listing", counting)
            assert _answers(copy) == expected
    assert listed == 0  # a stamped day is taken without listing its folder


def test_a_file_quarantined_from_a_packed_day_is_not_read_from_the_pack(
    demo: TelemetryStorage, tmp_path: Path
) -> None:
    """`verify --repair` moves a file out of a packed day: the readers no longer count its
    rows, as they would not without the packs; moved back, they count them again. Each
    dataset's folder is taken from the pack only while its own stamp holds."""
    copy = TelemetryStorage(tmp_path / "copy", clock=lambda: NOW)
    shutil.copytree(demo.dir, copy.dir)
    assert pack(copy).months == ()  # the stamps are the copy's now
    [targets] = (copy.dir / "targets" / "date=2026-10-05").glob("*.arrow")
    moved = copy.quarantine(targets)
    expected = _answers(_unpacked(copy, tmp_path / "plain"))
    assert _answers(copy) == expected
    assert expected != _answers(_unpacked(demo, tmp_path / "whole"))  # the file counted
    moved.rename(targets)
    assert _answers(copy) == _answers(_unpacked(copy, tmp_path / "restored"))


def test_a_day_changed_since_it_was_packed_is_read_from_its_files(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    assert len(pack(storage).months) == 3
    assert pending(storage) == []
    # A late build into a packed day: its own file, beside the packed one.
    assert ingest_jsonl(storage, late_build(day=10)).sessions == 1
    plain = _unpacked(storage, tmp_path / "plain")
    assert TelemetryAnalyzer(storage).summary().total_builds == 10
    assert _answers(storage) == _answers(plain)
    assert pending(storage) == []  # the packed file is still there, and still packed
    # Compacted: the day's file has another name, so the pack no longer holds that day.
    compact(storage)
    assert _packed_files(storage)["sessions"] == 2
    assert pending(storage) == [date(2025, 11, 1)]
    assert _answers(storage) == _answers(_unpacked(storage, tmp_path / "plain2"))
    assert pack(storage).months == (date(2025, 11, 1),)
    assert _packed_files(storage)["sessions"] == 3
    assert _answers(storage) == _answers(_unpacked(storage, tmp_path / "plain3"))


def test_a_build_stored_into_a_stamped_day_is_counted(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    pointer = json.loads((storage.dir / "months/month=2025-11/current").read_text())
    assert pointer["stamps"]["sessions"]  # stamped: read without listing the folder
    assert ingest_jsonl(storage, late_build(day=10)).sessions == 1
    counted = sql.query(storage, "select count(*) as n from sessions where date = '2025-11-06'")
    assert counted.to_pylist() == [{"n": 4}]
    assert TelemetryAnalyzer(storage).summary().total_builds == 10


def test_days_changed_just_before_the_job_are_stamped_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    monkeypatch.setattr(months, "SETTLED_NS", 10**18)  # every folder changed "just now"
    pack(storage)  # none is stamped
    folder = storage.dir / "months/month=2025-10"
    before = json.loads((folder / "current").read_text())
    assert before["stamps"] == {"sessions": {}, "targets": {}, "daily_targets": {}}
    monkeypatch.setattr(months, "SETTLED_NS", -(10**12))  # the next day's run
    assert pack(storage).months == ()
    after = json.loads((folder / "current").read_text())
    assert after["pack"] == before["pack"]  # the same pack, not written again
    assert set(after["stamps"]["sessions"]) == {"2025-10-27"}


def test_retention_retires_the_packs_of_the_months_it_removes_days_of(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    oldest = TelemetryStorage(storage.dir, clock=lambda: NOW, max_sessions=6)
    removed = oldest.apply_retention()
    assert removed.removed_days == (date(2025, 10, 27),)
    assert not (storage.dir / "months/month=2025-10/current").exists()
    assert [
        p.name.startswith(".replaced-") for p in (storage.dir / "months/month=2025-10").iterdir()
    ] == [True]
    assert _packed_files(storage) == {"sessions": 2, "targets": 2, "daily_targets": 2}
    assert TelemetryAnalyzer(storage).summary().total_builds == 6
    done = pack(storage)
    assert done.months == () and done.retired == ()  # the month has nothing left to pack
    assert months.current(storage.dir).keys() == {date(2025, 11, 1), date(2025, 12, 1)}


def test_a_damaged_pack_is_named_and_its_files_read(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    expected = _answers(_unpacked(storage, tmp_path / "plain"))
    damaged = months.current(storage.dir)[date(2025, 11, 1)].path("targets")
    damaged.write_bytes(damaged.read_bytes()[:200] + b"\0" * 100)
    with pytest.warns(CorruptFileWarning, match="skipping the month file .*targets.parquet"):
        assert _answers(storage) == expected
    found = [f for f in storage.verify() if f.problem is not None]
    assert [f.path for f in found] == [damaged]
    assert pending(storage) == [date(2025, 11, 1)]
    assert pack(storage).months == (date(2025, 11, 1),)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptFileWarning)
        assert _answers(storage) == expected


def test_a_pack_swept_under_a_reader_is_read_from_its_files(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    expected = TelemetryAnalyzer(storage).sessions().to_dicts()
    taken = storage.snapshot(packs=True)
    months.retire(storage.dir, [date(2025, 11, 1)])
    assert months.sweep(storage.dir, now=NOW.timestamp() + 10**6) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptFileWarning)  # gone is no damage
        got = taken.collect("sessions", lambda rows: rows.sort("start_time"))
    assert got is not None and got.height == 9
    assert TelemetryAnalyzer(storage).sessions().to_dicts() == expected


def test_a_pack_of_another_schema_version_is_not_read_and_is_written_again(
    tmp_path: Path,
) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    pointer = storage.dir / "months/month=2025-12/current"
    said = json.loads(pointer.read_text())
    pointer.write_text(json.dumps(said | {"schema": 0}))
    assert _packed_files(storage)["sessions"] == 2
    assert pending(storage) == [date(2025, 12, 1)]
    assert pack(storage).months == (date(2025, 12, 1),)
    assert _packed_files(storage)["sessions"] == 3


def test_the_job_through_the_runner(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    [planned] = run_jobs(storage, ["months"], dry_run=True)
    assert planned.said == "nothing to do: every closed month is packed"  # nothing compacted
    results = run_jobs(storage, ["all"])
    assert [r.job for r in results] == ["compact", "rollup", "retention", "months"]
    assert results[-1].said == (
        "packed 3 months (2025-10, 2025-11, 2025-12): 3 days, 9 builds, 39 target rows"
    )
    assert results[-1].counts["target_rows"] == 39
    [again] = run_jobs(storage, ["months"])
    assert again.said == "nothing to pack: every closed month is packed"
    storage.clear()
    assert not (storage.dir / "months").exists()


def test_a_large_month_is_packed_in_row_groups_of_its_days_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups of at most ROW_GROUP_ROWS rows (a million; 6 here), in day order, a day
    never in two of them unless it alone is larger: a reader of a few days skips the others
    by their statistics, and still answers as the files do."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(months, "ROW_GROUP_ROWS", 6)
    storage = _store(tmp_path / "telemetry", small_history_on(0, 1, 2, 3))
    compact(storage)
    assert pack(storage).months == (date(2025, 10, 1),)
    packed = months.current(storage.dir)[date(2025, 10, 1)]
    metadata = pq.read_metadata(packed.path("sessions"))
    # 3 builds a day: two days fill a row group of 6 rows, and a third would not fit.
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    assert [g.num_rows for g in groups] == [6, 6]
    leaves = [groups[0].column(i).path_in_schema for i in range(groups[0].num_columns)]
    at = leaves.index("date")
    spans = [(g.column(at).statistics.min, g.column(at).statistics.max) for g in groups]
    assert spans == [
        (date(2025, 10, 27), date(2025, 10, 28)),
        (date(2025, 10, 29), date(2025, 10, 30)),
    ]
    assert _packed_files(storage)["targets"] == 4
    assert _answers(storage) == _answers(_unpacked(storage, tmp_path / "plain"))


def test_a_backup_restored_over_the_store_does_not_hide_a_build(tmp_path: Path) -> None:
    """`cp -a backup/. store/` (or `rsync -a`, `tar -x`) keeps each day folder and its inode,
    and sets its modification time back: a build stored since the backup must still be read,
    so a stamp is of the folder's change time, which no tool sets back."""
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    backup = tmp_path / "backup"
    shutil.copytree(storage.dir, backup)  # copy2: the modification times kept
    assert ingest_jsonl(storage, late_build(day=10)).sessions == 1
    shutil.copytree(backup / "sessions", storage.dir / "sessions", dirs_exist_ok=True)
    shutil.copytree(backup / "targets", storage.dir / "targets", dirs_exist_ok=True)
    day = storage.dir / "sessions/date=2025-11-06"
    assert os.stat(day).st_mtime_ns == os.stat(backup / "sessions/date=2025-11-06").st_mtime_ns
    assert len(list(day.glob("*.arrow"))) == 2  # the late build's file is still there
    assert TelemetryAnalyzer(storage).summary().total_builds == 10
    counted = sql.query(storage, "select count(*) as n from sessions")
    assert counted.to_pylist() == [{"n": 10}]


def test_a_pack_replaced_under_a_reader_is_read_where_it_was_set_aside(tmp_path: Path) -> None:
    """The job packs a month again while a reader holds the pointer it read before: that
    reader reads the old pack where it was set aside (its hour), and gives up no pack."""
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    taken = storage.snapshot(packs=True)
    expected = TelemetryAnalyzer(storage).sessions().height
    assert ingest_jsonl(storage, late_build(day=10)).sessions == 1
    compact(storage)
    assert pack(storage).months == (date(2025, 11, 1),)
    got = taken.collect("sessions", lambda rows: rows.select("session_id"))
    assert got is not None and got.height == expected == 9
    assert taken.unpacked == set() and len(taken.moved_packs) == 1
    [(before, now)] = taken.moved_packs.items()
    assert before.parent.parent == now.parent.parent  # the month's folder
    assert now.parent.name.startswith(".replaced-") and now.parent.name.endswith(before.parent.name)


def test_packs_set_aside_are_swept_with_the_other_leftovers(tmp_path: Path) -> None:
    """Removed builds do not outlive their day's hour in a retired pack, whether the months
    job runs again or not: retention's sweep removes what is set aside."""
    from telemetry.maintenance import sweep_leftovers

    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    assert months.retire(storage.dir, [date(2025, 10, 1)]) == [date(2025, 10, 1)]
    folder = storage.dir / "months/month=2025-10"
    [aside] = folder.iterdir()
    assert aside.name.startswith(".replaced-")
    sweep_leftovers(storage.layout)
    assert aside.exists()  # within its hour
    stem = aside.name.split("-", 2)[2]
    aside.rename(folder / f".replaced-{int(time.time()) - 3601}-{stem}")
    sweep_leftovers(storage.layout)
    assert not folder.exists()


@pytest.mark.parametrize(
    ("pointer", "said"),
    [
        ('{"pack": "..", "schema": 1, "files": {}}', "names no pack: '..'"),
        ('{"pack": "x\\u0000", "schema": 1, "files": {}}', "names no pack: 'x\\x00'"),
        ("[" * 100_000 + "]" * 100_000, "is nested too deep to read"),
        (
            f'{{"pack": "20251101T000000Z-0123456789ab", "schema": {SCHEMA_VERSION}, '
            '"files": {"sessions": {"2025-10-27": "../../x-day-n1.arrow"}}}',
            "lists 2025-10-27: '../../x-day-n1.arrow', not a compacted file's name",
        ),
    ],
)
def test_a_pointer_that_makes_no_sense_is_named_and_its_days_read_from_their_files(
    tmp_path: Path, pointer: str, said: str
) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    expected = _answers(_unpacked(storage, tmp_path / "plain"))
    (storage.dir / "months/month=2025-10/current").write_text(pointer)
    assert _answers(storage) == expected
    assert months.pointer_problem(storage.dir, date(2025, 10, 1)) == said
    found = [(f.path.name, f.problem) for f in storage.verify() if f.problem is not None]
    assert found == [("current", said)]
    assert pending(storage) == [date(2025, 10, 1)]
    assert pack(storage).months == (date(2025, 10, 1),)
    assert months.pointer_problem(storage.dir, date(2025, 10, 1)) is None


def test_retention_beside_a_pointer_that_is_a_folder_removes_its_days(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pointer = storage.dir / "months/month=2025-10/current"
    pointer.mkdir(parents=True)
    capped = TelemetryStorage(storage.dir, clock=lambda: NOW, max_sessions=6)
    assert capped.apply_retention().removed_days == (date(2025, 10, 27),)
    assert not pointer.exists()


def _damage_inside(path: Path) -> None:
    """Overwrite the middle of a Parquet file (its data pages), its footer left sound."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_a_damaged_pack_beside_a_damaged_file_loses_no_target_runs(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    _damage_inside(months.current(storage.dir)[date(2025, 10, 1)].path("daily_targets"))
    [rollup] = (storage.dir / "daily_targets/date=2025-10-27").glob("*.arrow")
    rollup.write_bytes(rollup.read_bytes()[:-20])  # its footer cut off
    plain = _unpacked(storage, tmp_path / "plain")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptFileWarning)
        expected = TelemetryAnalyzer(plain).summary(top=50).bottlenecks
        got = TelemetryAnalyzer(storage).summary(top=50).bottlenecks
    assert got == expected
    # By hand: //app:compile runs built twice (400, 1000 ms) and failed once (3000) a day.
    assert [(b.target, b.runs) for b in got][:1] == [("//app:compile", 9)]


def test_a_query_that_fails_on_its_own_names_no_pack(tmp_path: Path) -> None:
    import polars as pl

    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    taken = storage.snapshot(packs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptFileWarning)
        with pytest.raises(pl.exceptions.InvalidOperationError):
            taken.collect(
                "sessions", lambda rows: rows.select(pl.col("duration_ms").cast(pl.UInt8))
            )
    assert taken.unpacked == set()


def test_sql_names_a_pack_damaged_behind_its_footer(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    pack(storage)
    plain = _unpacked(storage, tmp_path / "plain")
    text = "select date, sum(duration_ms) as ms, count(*) as n from targets group by all order by 1"
    expected = sql.query(plain, text).to_pylist()
    damaged = months.current(storage.dir)[date(2025, 11, 1)].path("targets")
    _damage_inside(damaged)
    with pytest.warns(CorruptFileWarning, match=re.escape(f"skipping the month file {damaged}")):
        assert sql.query(storage, text).to_pylist() == expected


def test_a_folder_in_the_pointers_place_is_set_aside(tmp_path: Path) -> None:
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    (storage.dir / "months/month=2025-10/current").mkdir(parents=True)
    assert len(pack(storage).months) == 3
    assert (storage.dir / "months/month=2025-10/current").is_file()


def test_a_months_path_that_is_no_folder_stops_only_the_job(tmp_path: Path) -> None:
    from telemetry.errors import StorageError

    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    (storage.dir / "months").write_text("not a folder")
    assert ingest_jsonl(storage, late_build(day=10)).sessions == 1
    storage.sweep()
    assert TelemetryAnalyzer(storage).summary().total_builds == 10
    assert sql.query(storage, "select count(*) as n from sessions").to_pylist() == [{"n": 10}]
    with pytest.raises(StorageError, match=r"could not list .*months: Not a directory"):
        pack(storage)


def test_a_month_whose_day_goes_while_it_is_packed_is_neither_packed_nor_retired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.months as job

    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    real = job._rows

    def removing(*args: Any) -> Any:
        for day, tables in real(*args):
            yield day, tables
            if day == date(2025, 10, 27):  # retention removes the day meanwhile
                capped = TelemetryStorage(storage.dir, clock=lambda: NOW, max_sessions=6)
                assert capped.apply_retention().removed_days == (day,)

    monkeypatch.setattr(job, "_rows", removing)
    done = pack(storage)
    assert (done.months, done.retired) == ((date(2025, 11, 1), date(2025, 12, 1)), ())
    assert (done.days, done.sessions) == (2, 6)
    assert not (storage.dir / "months/month=2025-10/current").exists()
    assert pending(storage) == []


def test_a_dataset_without_a_folder_stamps_the_others(tmp_path: Path) -> None:
    """A dataset with no folder (a store whose daily rollups were never written, or were
    removed) has no day to stamp, and the other datasets' days are stamped all the same."""
    storage = _store(tmp_path / "telemetry", small_history_on(0, 10, 40))
    compact(storage)
    shutil.rmtree(storage.dir / "daily_targets")
    assert len(pack(storage).months) == 3
    pointer = json.loads((storage.dir / "months/month=2025-10/current").read_text())
    assert pointer["files"]["daily_targets"] == {}
    assert set(pointer["stamps"]["sessions"]) == set(pointer["stamps"]["targets"]) == {"2025-10-27"}
    assert _answers(storage) == _answers(_unpacked(storage, tmp_path / "plain"))
