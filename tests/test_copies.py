"""The Parquet copies of compacted files, which `builder telemetry sql` reads through DuckDB:
compaction writes one for each compacted file, holding exactly that file's rows and its day;
DuckDB answers from them; and a copy that is missing, damaged, gone under a query or of
another schema version is never trusted over its file. The sweep removes the copies whose
file is gone, retention takes a day's copies with it, and verify reads them.

The store is small_history() on three days (tests/test_duckdb.py::_three_days): 9 builds
and 39 target runs, 13 a day."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import telemetry.duckdb as sql
from pipelines.compaction import compact
from telemetry import layout
from telemetry.errors import CorruptFileWarning, StorageError
from telemetry.ingest import ingest_jsonl
from telemetry.schema import SCHEMA_VERSION
from telemetry.storage import TelemetryStorage
from tests.conftest import T0, Runner, late_build
from tests.test_duckdb import COUNT_BOTH, DAY, LATER, _rows, _three_days, meanwhile

__all__ = ["meanwhile"]  # a fixture, used by name below

DAY0 = datetime.fromtimestamp(T0 / 1000, UTC).date()
HOUR_AGO = 2 * 3600  # seconds: older than the sweep's hour


def _compacted(folder: Path) -> TelemetryStorage:
    storage = _three_days(TelemetryStorage(folder, clock=lambda: LATER))
    assert [d.day.toordinal() - DAY0.toordinal() for d in compact(storage)] == [0, 1, 2]
    return storage


def _copy_of(path: Path, version: int = SCHEMA_VERSION) -> Path:
    """Where docs/storage.md says the copy of a data file lives."""
    return path.parent / ".parquet" / f"{path.name}.v{version}.parquet"


def _day_files(storage: TelemetryStorage, dataset: str = "*") -> list[Path]:
    return sorted(storage.dir.glob(f"{dataset}/date=*/*-day-n*.arrow"))


def _copies(storage: TelemetryStorage) -> list[Path]:
    return sorted(storage.dir.glob("*/date=*/.parquet/*"))


def _ipc_sum(storage: TelemetryStorage) -> int:
    """The target runs' summed duration, read from the Arrow files with pyarrow alone."""
    return sum(
        sum(ipc.open_file(path).read_all()["duration_ms"].to_pylist())
        for path in storage.dir.glob("targets/date=*/*.arrow")
    )


SUM = "select sum(duration_ms) from targets"


def test_each_compacted_file_has_a_copy_of_its_rows_and_day(tmp_path: Path) -> None:
    storage = _compacted(tmp_path / "t")
    files = _day_files(storage)
    assert len(files) == 9  # the sessions, targets and rollup of three days
    assert _copies(storage) == sorted(_copy_of(f) for f in files)
    for path in files:
        copy = pq.read_table(_copy_of(path))
        stored = ipc.open_file(path).read_all()
        day = date.fromisoformat(path.parent.name.removeprefix("date="))
        assert copy.column_names == [*stored.column_names, "date"]
        assert copy.drop(["date"]).to_pylist() == stored.to_pylist()
        assert set(copy["date"].to_pylist()) == {day}
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]


def test_the_copies_are_what_duckdb_reads(tmp_path: Path) -> None:
    """A copy changed behind the store's back shows in the answer: the copies are read.
    Renamed to another schema version, or removed, it is not read, and the Arrow files
    answer."""
    storage = _compacted(tmp_path / "t")
    expected = _ipc_sum(storage)
    [first] = _day_files(storage, "targets")[:1]
    copy = _copy_of(first)
    table = pq.read_table(copy)
    longer = pa.compute.add(table["duration_ms"], 1000)
    pq.write_table(table.set_column(5, "duration_ms", longer), copy)
    assert table.column_names[5] == "duration_ms"
    assert _rows(storage, SUM) == [(expected + 13 * 1000,)]

    other = copy.with_name(copy.name.replace(f".v{SCHEMA_VERSION}.", f".v{SCHEMA_VERSION + 1}."))
    copy.rename(other)
    assert _rows(storage, SUM) == [(expected,)]
    other.unlink()
    assert _rows(storage, SUM) == [(expected,)]


def test_a_damaged_copy_is_named_and_its_file_read(tmp_path: Path) -> None:
    storage = _compacted(tmp_path / "t")
    copy = _copy_of(_day_files(storage, "targets")[1])
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.warns(CorruptFileWarning, match=f"skipping the Parquet copy {copy}"):
        assert _rows(storage, COUNT_BOTH) == [(9, 39)]
    with pytest.warns(CorruptFileWarning, match="its Arrow file is read instead"):
        assert _rows(storage, SUM) == [(_ipc_sum(storage),)]


def test_a_damaged_file_is_left_out_though_its_copy_is_sound(tmp_path: Path) -> None:
    """As every reader leaves it out (and verify names it): the numbers of `sql` are those
    of `summary`."""
    storage = _compacted(tmp_path / "t")
    victim = _day_files(storage, "targets")[0]
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.warns(CorruptFileWarning, match=f"skipping {victim}"):
        assert _rows(storage, COUNT_BOTH) == [(9, 26)]


def test_copies_gone_under_a_query_leave_it_to_the_files(
    tmp_path: Path, meanwhile: Callable[[Callable[[], object]], None]
) -> None:
    """As when the sweep removes the copies of files a compaction replaced: no warning,
    the same answer."""
    storage = _compacted(tmp_path / "t")
    meanwhile(lambda: [copy.unlink() for copy in _copies(storage)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _rows(storage, COUNT_BOTH) == [(9, 39)]


def test_copies_gone_before_the_views_are_made_leave_it_to_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB looks for a Parquet file when a view over it is made: the copies go between
    the snapshot's choice of them and the views, for a query and for a connection."""
    storage = _compacted(tmp_path / "t")
    chosen = sql._chosen

    def then_swept(*args: Any, **kwargs: Any) -> Any:
        found = chosen(*args, **kwargs)
        for copy in _copies(storage):
            copy.unlink()
        return found

    monkeypatch.setattr(sql, "_chosen", then_swept)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _rows(storage, COUNT_BOTH) == [(9, 39)]
        _compacted_again(storage)
        assert sql.connect(storage).sql(COUNT_BOTH).fetchall() == [(9, 39)]


def _compacted_again(storage: TelemetryStorage) -> None:
    """The copies written again (by a compaction that merges nothing)."""
    again = compact(storage)
    assert [(d.merged, d.copies) for d in again] == [(False, 3)] * 3
    assert len(_copies(storage)) == 9


def test_a_day_retention_removes_under_a_query_is_read_where_it_went(
    tmp_path: Path, meanwhile: Callable[[Callable[[], object]], None]
) -> None:
    day2 = datetime.fromtimestamp((T0 + 2 * DAY) / 1000, UTC)
    storage = _three_days(TelemetryStorage(tmp_path / "t", retention_days=1, clock=lambda: day2))
    later = TelemetryStorage(storage.dir, retention_days=1, clock=lambda: LATER)
    assert len(compact(later)) == 3
    meanwhile(storage.apply_retention)
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]  # as the store was when it began
    assert _rows(storage, COUNT_BOTH) == [(6, 26)]
    assert len(_copies(storage)) == 6  # the day's copies went with it
    assert not list(storage.dir.glob(f"*/date={DAY0}"))


def test_compaction_writes_the_copies_a_day_lacks_and_says_so(cli: Runner, tmp_path: Path) -> None:
    """Days compacted before copies existed (or whose copies a killed run never wrote)."""
    storage = _compacted(tmp_path / "telemetry")
    for folder in storage.dir.glob("*/date=*/.parquet"):
        shutil.rmtree(folder)
    done = cli("telemetry", "compact")
    assert done.stdout == (
        f"Nothing to compact in {storage.dir}: every closed day is compacted. Wrote 9 Parquet "
        f"copies of days compacted before, for SQL.\n"
    )
    assert _copies(storage) == sorted(_copy_of(f) for f in _day_files(storage))
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]
    assert cli("telemetry", "compact").stdout == (
        f"Nothing to compact in {storage.dir}: every closed day is compacted.\n"
    )


def test_a_temporary_copy_a_killed_run_left_is_not_in_the_way(tmp_path: Path) -> None:
    storage = _compacted(tmp_path / "t")
    copy = _copy_of(_day_files(storage, "targets")[0])
    copy.rename(copy.with_name(f".tmp-{copy.name}"))  # as if killed before its rename
    assert [d.copies for d in compact(storage)] == [1]
    assert copy.exists()


def test_a_copy_that_cannot_be_written_stops_compaction_as_a_merged_file_does(
    cli: Runner, tmp_path: Path
) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "telemetry", clock=lambda: LATER))
    blocked = storage.dir / "targets" / f"date={DAY0}" / ".parquet"
    blocked.write_text("a file where the copies' folder goes")
    result = cli("telemetry", "compact")
    assert (result.code, result.stdout) == (1, "")
    [merged] = _day_files(storage, "targets")
    copy = blocked / f"{merged.name}.v{SCHEMA_VERSION}.parquet"
    assert result.stderr.startswith(f"Error: could not write {copy}: ")
    assert result.stderr.count("\n") == 1
    # The first day is merged, with its sessions copy; the others wait for the next run.
    assert [f.parent.name for f in _day_files(storage, "sessions")] == [f"date={DAY0}"]
    assert len(_copies(storage)) == 1
    assert _rows(storage, COUNT_BOTH) == [(9, 39)]
    assert _rows(storage, SUM) == [(_ipc_sum(storage),)]
    blocked.unlink()
    assert cli("telemetry", "compact").code == 0
    assert _copies(storage) == sorted(_copy_of(f) for f in _day_files(storage))


def _late_build(storage: TelemetryStorage) -> None:
    """One more build on the first day, stored after it was compacted."""
    assert ingest_jsonl(storage, late_build(), apply_retention=False).sessions == 1


def _age(path: Path) -> None:
    moment = time.time() - HOUR_AGO
    os.utime(path, (moment, moment))


def test_the_sweep_removes_the_copies_whose_file_is_gone(tmp_path: Path) -> None:
    storage = _compacted(tmp_path / "t")
    before = set(_copies(storage))
    _late_build(storage)
    assert len(compact(storage)) == 1  # the first day again, with the late build
    live = {_copy_of(f) for f in _day_files(storage)}
    replaced = before - live
    assert len(replaced) == 3 and len(live) == 9
    folder = next(iter(live)).parent
    leftover = folder / f".tmp-{next(iter(live)).name}"  # a copy a killed run was writing
    other_version = _copy_of(_day_files(storage)[0], SCHEMA_VERSION + 1)
    foreign = folder / "notes.txt"
    young = other_version.with_name(other_version.name.replace("-day-", "-young-day-"))
    for path in (leftover, other_version, foreign):
        path.write_bytes(b"x")
    for path in _copies(storage):
        _age(path)
    young.write_bytes(b"x")  # not an hour old: it may be a write's in progress

    assert _rows(storage, COUNT_BOTH) == [(10, 43)]
    storage.sweep()
    # The replaced files are kept aside for their hour, for the readers that listed them,
    # and so are their copies.
    assert set(_copies(storage)) == live | replaced | {foreign, young}
    for aside in storage.dir.glob(f"*/{layout.TRASH_PREFIX}*"):
        aside.rename(aside.with_name(f"{layout.TRASH_PREFIX}1000000000-{aside.name[-8:]}"))
    storage.sweep()
    assert set(_copies(storage)) == live | {foreign, young}
    assert _rows(storage, COUNT_BOTH) == [(10, 43)]


def test_a_run_that_fails_on_a_copy_still_sweeps(tmp_path: Path) -> None:
    """On a full disk, what earlier runs kept aside past its hour is what frees space."""
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    aside = storage.dir / "targets" / f"{layout.TRASH_PREFIX}1000000000-0123abcd"
    aside.mkdir()
    (aside / "replaced-n1.arrow").write_bytes(b"x")
    (storage.dir / "targets" / f"date={DAY0}" / ".parquet").write_text("in the way")
    with pytest.raises(StorageError, match="could not write"):
        compact(storage)
    assert not aside.exists()


def test_a_copy_of_other_columns_is_named_alone_and_verify_finds_it(
    cli: Runner, tmp_path: Path
) -> None:
    """DuckDB's message about a copy without a column names a sound copy too: only the one
    that lacks it is named."""
    storage = _compacted(tmp_path / "telemetry")
    victim = _copy_of(_day_files(storage, "targets")[1])
    pq.write_table(pq.read_table(victim).drop(["worker"]), victim)
    workers = sum(
        ipc.open_file(f).read_all()["worker"].null_count for f in _day_files(storage, "targets")
    )
    with pytest.warns(CorruptFileWarning) as warned:
        assert _rows(storage, "select count(worker) from targets") == [(39 - workers,)]
    assert [str(w.message).split(":")[0] for w in warned] == [f"skipping the Parquet copy {victim}"]
    assert "not a copy of a targets file" in str(warned[0].message)
    found = cli("telemetry", "verify")
    assert found.code == 1
    assert found.stdout.startswith(f"damaged: {victim}: not a copy of a targets file: its ")


def test_verify_reads_the_copies_and_repair_moves_a_damaged_one_aside(
    cli: Runner, tmp_path: Path
) -> None:
    storage = _compacted(tmp_path / "telemetry")
    result = cli("telemetry", "verify")
    assert (result.code, result.stdout) == (
        0,
        f"Checked 18 files in {storage.dir}: all readable.\n",
    )
    copy = _copy_of(_day_files(storage, "sessions")[0])
    table = pq.read_table(copy)
    pq.write_table(table.slice(1), copy)  # sound, but a row short
    result = cli("telemetry", "verify", "--repair")
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"damaged: {copy}: holds 2 rows where its file holds 3"
    assert lines[1].startswith(f"moved: {copy} -> {storage.dir / 'quarantine'}")
    assert not copy.exists()
    compact(storage)
    assert copy.exists() and pq.read_table(copy).num_rows == 3
    assert cli("telemetry", "verify").code == 0
