"""`builder telemetry export --format parquet --output FOLDER`: the whole store as
Hive-partitioned Parquet, read back here by DuckDB and checked against the events
(tests/reference.py); a name ending in .parquet stays the sessions in one file; nothing that
is not an earlier export is overwritten, and a killed export leaves the folder as it was.
(Spark over the same export: tests/test_spark.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests import reference
from tests.conftest import FIXTURES, Runner, process_env, small_history

MARKER = "_builder-telemetry-export.json"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Twelve builds over three days, all closed (so that compaction takes them)."""
    out = tmp_path_factory.mktemp("history") / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--builds", "12", "--days", "3",
         "--today", "2026-11-20", "--output", str(out)],
        check=True,
    )  # fmt: skip
    return out.read_text().splitlines()


@pytest.fixture
def stored(cli: Runner, history: list[str]) -> Runner:
    result = cli("telemetry", "ingest", "-", stdin="\n".join(history).encode())
    assert result.code == 0, result.stderr
    return cli


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _export(cli: Runner, output: Path, *more: str) -> tuple[int, str, str]:
    result = cli("telemetry", "export", "--format", "parquet", "--output", str(output), *more)
    return result.code, result.stdout, result.stderr


def test_a_folder_gets_every_dataset_partitioned_by_day(
    stored: Runner, history: list[str], tmp_path: Path
) -> None:
    assert stored("telemetry", "compact").code == 0  # the daily rollups come with compaction
    out = tmp_path / "warehouse"
    ref = reference.sessions_from_lines(history)
    days = sorted({_day(s.start_ms) for s in ref})
    events = reference.parse_events(history)
    started = {e["session"]: _day(e["ts"]) for e in events if e["event"] == "build_started"}
    rollup_rows = {
        (started[e["session"]], e["target"]) for e in events if e["event"] == "target_finished"
    }
    targets = sum(s.total_targets for s in ref)
    assert _export(stored, out) == (
        0,
        f"Exported 12 builds, {targets} target runs and {len(rollup_rows)} daily target rows "
        f"over 3 days to {out} as Parquet.\n",
        "",
    )
    assert _files(out) == sorted(
        [MARKER]
        + [
            f"{dataset}/date={day.isoformat()}/part-0.parquet"
            for dataset in ("sessions", "targets", "daily_targets")
            for day in days
        ]
    )
    assert json.loads((out / MARKER).read_text())["rows"] == {
        "sessions": 12, "targets": targets, "daily_targets": len(rollup_rows)}  # fmt: skip

    def scan(dataset: str) -> str:
        return f"read_parquet('{out}/{dataset}/*/*.parquet', hive_partitioning = true)"

    per_day = duckdb.sql(
        f"SELECT date, count(*) FROM {scan('sessions')} GROUP BY date ORDER BY date"
    ).fetchall()
    assert per_day == sorted(Counter(_day(s.start_ms) for s in ref).items())
    rates = duckdb.sql(
        f"SELECT session_id, cache_hit_rate, parallelism_utilization, targets_per_second "
        f"FROM {scan('sessions')}"
    ).fetchall()
    assert {r[0]: r[1:] for r in rates} == {
        s.session_id: pytest.approx(
            (s.cache_hit_rate, s.parallelism_utilization, s.targets_per_second), rel=1e-12
        )
        for s in ref
    }
    [(rows, built, kind)] = duckdb.sql(
        f"SELECT count(*), count_if(status = 'built'), typeof(any_value(target)) "
        f"FROM {scan('targets')}"
    ).fetchall()
    assert (rows, built, kind) == (targets, sum(s.built for s in ref), "VARCHAR")
    rolled = duckdb.sql(
        f"SELECT sum(built), sum(cached), sum(failed), sum(skipped), sum(executed_ms) "
        f"FROM {scan('daily_targets')}"
    ).fetchall()
    executed = sum(duration for s in ref for _, duration in s.executed_runs)
    assert rolled == [
        (*(sum(getattr(s, k) for s in ref) for k in ("built", "cached", "failed", "skipped")),
         executed)
    ]  # fmt: skip
    # Written with zstd, with the store's columns (the partition day only in the folders).
    metadata = pq.read_metadata(out / f"targets/date={days[0]}/part-0.parquet")
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert "date" not in metadata.schema.names


def test_a_name_ending_in_parquet_is_still_the_sessions_in_one_file(
    stored: Runner, history: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "Recent.PARQUET"
    assert _export(stored, out, "--since", "2026-11-20") == (0, "", "")
    ref = reference.sessions_from_lines(history)
    want = sorted(s.session_id for s in ref if _day(s.start_ms) == date(2026, 11, 20))
    assert sorted(pq.read_table(out).column("session_id").to_pylist()) == want


@pytest.mark.parametrize(
    ("setup", "options", "error"),
    [
        (
            "notes",
            (),
            "Error: {out} exists and is not a folder; give --output a new or empty folder for "
            "the whole store, or a name ending in .parquet for the sessions as one file\n",
        ),
        (
            "folder",
            (),
            "Error: {out} is a folder holding files that are not an earlier export; give a new "
            "or empty folder, so that nothing else is overwritten\n",
        ),
        (
            None,
            ("--since", "7d"),
            "Error: the folder {out} gets the whole store; drop --since, --until and the "
            "filters (and filter where you query it), or give a name ending in .parquet for "
            "the sessions they select\n",
        ),
        (
            None,
            ("--branch", "main"),
            "Error: the folder {out} gets the whole store; drop --since, --until and the "
            "filters (and filter where you query it), or give a name ending in .parquet for "
            "the sessions they select\n",
        ),
    ],
)
def test_what_is_not_an_earlier_export_is_never_overwritten(
    stored: Runner, tmp_path: Path, setup: str | None, options: tuple[str, ...], error: str
) -> None:
    out = tmp_path / "out"
    if setup == "notes":
        out.write_text("my notes\n")
    elif setup == "folder":
        out.mkdir()
        (out / "notes.txt").write_text("my notes\n")
    before = sorted(os.listdir(tmp_path))
    assert _export(stored, out, *options) == (2, "", error.format(out=out))
    assert sorted(os.listdir(tmp_path)) == before
    if setup == "notes":
        assert out.read_text() == "my notes\n"
    elif setup == "folder":
        assert _files(out) == ["notes.txt"]


def test_an_earlier_export_is_replaced_whole(stored: Runner, tmp_path: Path) -> None:
    out = tmp_path / "warehouse"
    assert _export(stored, out)[0] == 0
    first = _files(out)
    more = stored("telemetry", "ingest", "-", stdin="\n".join(small_history()).encode())
    assert more.code == 0
    code, stdout, _ = _export(stored, out)
    assert (code, stdout.split(",")[0]) == (0, "Exported 15 builds")
    # small_history's builds all started on 2025-10-27: one day more in each dataset.
    added = [f"{d}/date=2025-10-27/part-0.parquet" for d in ("sessions", "targets")]
    assert _files(out) == sorted([*first, *added])
    assert json.loads((out / MARKER).read_text())["rows"]["sessions"] == 15
    # Nothing is left beside it: no staging folder, no earlier export under another name.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["telemetry", "warehouse"]
    # A file of someone's put in it makes it no longer ours alone.
    (out / "README.md").write_text("ours\n")
    assert _export(stored, out)[0] == 2
    assert (out / "README.md").read_text() == "ours\n"


def test_a_killed_export_leaves_the_earlier_one_whole(stored: Runner, tmp_path: Path) -> None:
    out = tmp_path / "warehouse"
    assert _export(stored, out)[0] == 0
    first = {name: (out / name).read_bytes() for name in _files(out)}
    # The process kills itself as it writes its third Parquet file of the new export.
    script = f"""
import os, signal
import pyarrow.parquet as pq
from telemetry.cli import main
written, write = [], pq.write_table
def dying(*args, **kwargs):
    written.append(1)
    if len(written) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return write(*args, **kwargs)
pq.write_table = dying
main(["telemetry", "export", "--format", "parquet", "--output", {str(out)!r}])
"""
    killed = subprocess.run(
        [sys.executable, "-c", script],
        env=process_env(tmp_path / "telemetry"),
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert {name: (out / name).read_bytes() for name in _files(out)} == first
    # What the killed export had written is in a hidden folder beside it, which no engine
    # reading the export's folder sees.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "telemetry", "warehouse"]  # fmt: skip
    # The next export leaves it while it may belong to an export still running (under an
    # hour old), and removes it once it is older.
    [left] = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-warehouse-")]
    assert _export(stored, out)[0] == 0
    assert left.exists()
    os.utime(left, (left.stat().st_mtime - 7200,) * 2)
    assert _export(stored, out)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["telemetry", "warehouse"]


def test_an_export_killed_between_its_renames_is_put_back(stored: Runner, tmp_path: Path) -> None:
    from telemetry.parquet import _remove_stale

    out = tmp_path / "warehouse"
    assert _export(stored, out)[0] == 0
    first = {name: (out / name).read_bytes() for name in _files(out)}
    # Killed after moving the earlier export aside, before renaming the new one into place.
    aside = tmp_path / ".old-warehouse-0123456789ab"
    out.rename(aside)
    _remove_stale(out)
    assert aside.exists()  # under an hour old: that export may still be running
    os.utime(aside, (aside.stat().st_mtime - 7200,) * 2)
    _remove_stale(out)  # what the next export does first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["telemetry", "warehouse"]
    assert {name: (out / name).read_bytes() for name in _files(out)} == first


def test_an_empty_store_exports_empty_datasets(cli: Runner, tmp_path: Path) -> None:
    out = tmp_path / "warehouse"
    code, stdout, stderr = _export(cli, out)
    assert (code, stdout) == (
        0,
        f"Exported 0 builds, 0 target runs and 0 daily target rows over 0 days to {out} "
        f"as Parquet.\n",
    )
    assert stderr.startswith("No telemetry data yet in ")
    assert _files(out) == [MARKER]
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER, "daily_targets", "sessions", "targets"]  # fmt: skip


def test_a_damaged_file_is_named_and_left_out(
    stored: Runner, history: list[str], tmp_path: Path
) -> None:
    [victim] = (tmp_path / "telemetry/targets/date=2026-11-19").glob("*.arrow")
    rows = int(victim.stem.rsplit("-n", 1)[1])
    victim.write_bytes(victim.read_bytes()[:-100])
    out = tmp_path / "warehouse"
    code, stdout, stderr = _export(stored, out)
    targets = sum(s.total_targets for s in reference.sessions_from_lines(history))
    assert (code, stderr.startswith(f"Warning: skipping {victim}: ")) == (0, True)
    assert f"{targets - rows} target runs" in stdout
    assert not (out / "targets/date=2026-11-19").exists()
