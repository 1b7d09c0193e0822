"""The long-lived daily rollups (telemetry.rollups, the rollup job in pipelines.rollup): every
number is what DuckDB's SQL computes from the stored rows themselves, a second route
written here (quantile_cont for the percentiles); the rollups outlive the rows retention
removes, are rolled up again when a day gains builds, expire past their own retention, and a
reader reads a month's two tables of one write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import telemetry.duckdb as sql
from pipelines.rollup import pending, rollup
from telemetry import rollups
from telemetry.errors import CorruptFileWarning
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, T0, late_build, small_history
from tests.test_duckdb import DAY, LATER, _three_days

DAY0 = datetime.fromtimestamp(T0 / 1000, UTC).date()

EXECUTED = "status in ('built', 'failed')"
DAYS_BY_SQL = """
    select date, count(*), count(*) filter (where succeeded), count(*) filter (where interrupted),
        sum(duration_ms), min(duration_ms), max(duration_ms), avg(duration_ms),
        quantile_cont(duration_ms, 0.5), quantile_cont(duration_ms, 0.9),
        count(*) filter (where total_targets > 0),
        coalesce(sum(cache_hit_rate), 0), avg(cache_hit_rate),
        coalesce(sum(parallelism_utilization), 0), avg(parallelism_utilization),
        coalesce(sum(targets_per_second), 0), avg(targets_per_second),
        sum(total_targets), sum(built), sum(cached), sum(failed), sum(skipped), sum(executed_ms)
    from sessions group by date order by date
"""
TARGETS_BY_SQL = f"""
    select date, target,
        count(*) filter (where status = 'built'), count(*) filter (where status = 'cached'),
        count(*) filter (where status = 'failed'), count(*) filter (where status = 'skipped'),
        count(*) filter (where {EXECUTED}),
        coalesce(sum(duration_ms) filter (where {EXECUTED}), 0),
        avg(duration_ms) filter (where {EXECUTED}),
        quantile_cont(duration_ms, 0.5) filter (where {EXECUTED}),
        quantile_cont(duration_ms, 0.9) filter (where {EXECUTED}),
        max(duration_ms) filter (where {EXECUTED})
    from targets group by date, target order by date, target
"""


def _rows(store: TelemetryStorage | Path, text: str) -> list[tuple[Any, ...]]:
    answer = sql.query(store, text)
    return list(zip(*(column.to_pylist() for column in answer.columns), strict=True))


def _close(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Floats as equal to 12 digits (a sum's last bits depend on the order it adds up); a
    SQL sum's DECIMAL as the integer it is."""
    return [
        tuple(
            pytest.approx(float(v), rel=1e-12) if isinstance(v, float) else _plain(v) for v in row
        )
        for row in rows
    ]


def _plain(value: Any) -> Any:
    from decimal import Decimal

    return int(value) if isinstance(value, Decimal) else value


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> TelemetryStorage:
    folder = tmp_path_factory.mktemp("rollups")
    path = folder / "history.jsonl"
    generator = FIXTURES / "generate.py"
    subprocess.run(
        [sys.executable, str(generator), "--today", "2026-11-20", "--output", str(path)],
        check=True,
    )
    storage = TelemetryStorage(folder / "telemetry", clock=lambda: LATER)
    assert ingest_jsonl(storage, path.read_text().splitlines()).problems == ()
    done = rollup(storage)
    assert len(done.days) == 60 and done.builds == 200 and done.expired == ()
    return storage


def test_each_day_is_what_sql_computes_from_its_builds(demo: TelemetryStorage) -> None:
    expected = _rows(demo, DAYS_BY_SQL)
    assert len(expected) == 60
    assert _rows(demo, "select * from rollup_days order by date") == _close(expected)


def test_each_day_and_target_is_what_sql_computes_from_its_runs(demo: TelemetryStorage) -> None:
    expected = _rows(demo, TARGETS_BY_SQL)
    got = _rows(demo, "select * from rollup_targets order by date, target")
    assert len(got) == len(expected) > 1000
    assert got == _close(expected)


def test_a_window_of_days_adds_up_to_the_summary(demo: TelemetryStorage) -> None:
    """The sums are there so that days add up exactly: the mean build time and the top
    bottleneck of the whole history, from the rollups alone."""
    from telemetry.analyzer import TelemetryAnalyzer

    report = TelemetryAnalyzer(demo).summary()
    [(mean,)] = _rows(demo, "select sum(duration_ms_sum) / sum(builds) from rollup_days")
    assert mean == pytest.approx(report.average_build_ms, rel=1e-12)
    [(target, slowest)] = _rows(
        demo,
        "select target, sum(executed_ms_sum) / sum(executed_runs) as m from rollup_targets "
        "group by target order by m desc, target limit 1",
    )
    assert (target, slowest) == (
        report.bottlenecks[0].target,
        pytest.approx(report.bottlenecks[0].mean_ms, rel=1e-12),
    )


def test_a_second_run_finds_nothing_to_do(demo: TelemetryStorage) -> None:
    before = sorted(p.name for p in (demo.dir / "rollups").rglob("*"))
    again = rollup(demo)
    assert (again.days, again.expired, again.months) == ((), (), 0)
    assert sorted(p.name for p in (demo.dir / "rollups").rglob("*")) == before
    assert pending(demo) == []


def _counts(storage: TelemetryStorage) -> list[tuple[Any, ...]]:
    return _rows(storage, "select date, builds, succeeded from rollup_days order by date")


def test_rollups_outlive_the_builds_and_then_expire(tmp_path: Path) -> None:
    # small_history() on 2025-10-27, 28 and 29: three builds a day, two of them successful.
    day2 = datetime.fromtimestamp((T0 + 2 * DAY) / 1000, UTC)
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    assert len(rollup(storage).days) == 3
    days = [DAY0 + timedelta(days=n) for n in range(3)]
    assert _counts(storage) == [(d, 3, 2) for d in days]

    # Retention keeps the last two days of builds: the first day's rollup stays.
    keeping = TelemetryStorage(storage.dir, retention_days=1, clock=lambda: day2)
    assert keeping.apply_retention().removed_days == (DAY0,)
    assert _rows(storage, "select count(*) from sessions") == [(6,)]
    again = rollup(storage)
    assert (again.days, again.expired) == ((), ())
    assert _counts(storage) == [(d, 3, 2) for d in days]

    # Rollups kept 2 days before the last: the first day goes, its month rewritten.
    expiring = TelemetryStorage(
        storage.dir, rollup_retention_days=2, clock=lambda: day2 + timedelta(days=1)
    )
    done = rollup(expiring)
    assert (done.days, done.expired, done.months) == ((), (DAY0,), 1)
    assert _counts(storage) == [(d, 3, 2) for d in days[1:]]


def test_a_day_that_gains_builds_is_rolled_up_again(tmp_path: Path) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    rollup(storage)
    assert ingest_jsonl(storage, late_build(1), apply_retention=False).sessions == 1
    second = DAY0 + timedelta(days=1)
    assert pending(storage) == [second]
    done = rollup(storage)
    assert (done.days, done.months, done.builds) == ((second,), 1, 4)
    assert _counts(storage)[1] == (second, 4, 3)


def test_today_is_not_rolled_up(tmp_path: Path) -> None:
    on_the_day = TelemetryStorage(
        tmp_path / "t", clock=lambda: datetime.fromtimestamp(T0 / 1000 + 7200, UTC)
    )
    assert ingest_jsonl(on_the_day, small_history(), apply_retention=False).sessions == 3
    assert rollup(on_the_day).days == ()
    assert not (on_the_day.dir / "rollups").exists()


def test_a_reader_reads_one_write_of_a_month_and_the_sweep_waits_an_hour(
    tmp_path: Path,
) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    rollup(storage)
    [month] = [p for p in (storage.dir / "rollups").iterdir()]
    first = (month / "current").read_text().strip()
    read_before = rollups.read(storage.dir)
    # A rewrite of the month: a new pair, then the pointer.
    rollups.write_month(
        storage.dir, DAY0.replace(day=1), read_before.days.slice(0, 1),
        read_before.targets.slice(0, 1), stem="20270101T000000Z-000000000000",
    )  # fmt: skip
    assert (month / "current").read_text().strip() == "20270101T000000Z-000000000000"
    assert rollups.read(storage.dir).days.num_rows == 1
    # The replaced pair is kept an hour from its replacement, whenever it was written,
    # under a name that says when (a reader that read the old pointer reads it again).
    [aside] = [p for p in month.iterdir() if p.name.endswith(f"-{first}")]
    assert aside.name.startswith(".replaced-") and (aside / "days.arrow").exists()
    old = time.time() - 3 * 3600
    os.utime(aside, (old, old))
    rollups.sweep(storage.dir)
    assert aside.exists()
    rollups.sweep(storage.dir, now=time.time() + 2 * 3600)
    assert sorted(p.name for p in month.iterdir()) == ["20270101T000000Z-000000000000", "current"]
    assert read_before.days.num_rows == 3  # what was read stays as it was


def test_clear_removes_the_rollups_and_the_run_log(tmp_path: Path) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    rollup(storage)
    (storage.dir / "jobs").mkdir()
    (storage.dir / "jobs" / "runs.jsonl").write_text("{}\n")
    assert storage.clear() == 9
    assert [p for p in os.listdir(storage.dir) if not p.startswith(".")] == []
    assert _rows(storage, "select count(*) from rollup_days") == [(0,)]


def _past_retention(tmp_path: Path) -> tuple[TelemetryStorage, TelemetryStorage]:
    """The three days rolled up, and a copy whose first day's builds retention removed."""
    full = _three_days(TelemetryStorage(tmp_path / "full", clock=lambda: LATER))
    rollup(full)
    shutil.copytree(full.dir, tmp_path / "kept")
    day2 = datetime.fromtimestamp((T0 + 2 * DAY) / 1000, UTC)
    kept = TelemetryStorage(tmp_path / "kept", retention_days=1, clock=lambda: day2)
    assert kept.apply_retention().removed_days == (DAY0,)
    return full, kept


def _same_numbers(ours: Any, theirs: Any) -> None:
    exact = ("total_builds", "successful", "failed", "fastest_build_ms", "slowest_build_ms")
    for name in (*exact, "builds_with_targets"):
        assert getattr(ours, name) == getattr(theirs, name), name
    for name in (
        "success_rate",
        "average_build_ms",
        "average_cache_hit_rate",
        "average_utilization",
        "average_targets_per_second",
    ):
        assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-12), name
    assert [(b.target, b.runs) for b in ours.bottlenecks] == [
        (b.target, b.runs) for b in theirs.bottlenecks
    ]
    assert [b.mean_ms for b in ours.bottlenecks] == pytest.approx(
        [b.mean_ms for b in theirs.bottlenecks], rel=1e-12
    )


@pytest.mark.parametrize(
    ("since", "until"),
    [(None, None), ("2025-10-27", "2025-10-28"), ("2025-10-27", "2025-10-27")],
)
def test_a_summary_past_retention_answers_from_the_rollups_and_says_so(
    tmp_path: Path, since: str | None, until: str | None
) -> None:
    """Over whole days where both exist, the rollups answer what the builds answered."""
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.exporter import render_summary, summary_json
    from telemetry.model import RolledDays
    from telemetry.window import Window

    full, kept = _past_retention(tmp_path)
    window = Window.parse(since, until)
    theirs = TelemetryAnalyzer(full, window=window).summary(top=10)
    ours = TelemetryAnalyzer(kept, window=window).summary(top=10)
    _same_numbers(ours, theirs)
    assert theirs.from_rollups is None
    assert ours.from_rollups == RolledDays(DAY0, DAY0, 1, 3)
    text = render_summary(ours).splitlines()
    trend_line = next(i for i, line in enumerate(text) if line.startswith("Build Time Trend: "))
    assert text[trend_line + 1] == (
        "(From daily rollups: 3 builds of 1 day past retention, 2025-10-27; the trends and "
        "regressions are over the builds still stored)"
    )
    assert not any(
        line.startswith("(From daily rollups") for line in render_summary(theirs).splitlines()
    )
    assert json.loads(summary_json(ours))["fromRollups"] == {
        "days": 1,
        "builds": 3,
        "first": "2025-10-27",
        "last": "2025-10-27",
    }


def test_rollups_answer_only_whole_days_and_unfiltered_summaries(tmp_path: Path) -> None:
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.window import Filter, Window

    _, kept = _past_retention(tmp_path)
    cut = TelemetryAnalyzer(kept, window=Window.parse("2025-10-27T15:00", None)).summary()
    assert (cut.from_rollups, cut.total_builds) == (None, 6)
    only = TelemetryAnalyzer(kept, filter=Filter.parse(tool="ninja")).summary()
    assert (only.from_rollups, only.total_builds) == (None, 2)  # a1 and a2: rollups know no tool


def test_a_build_stored_late_into_a_day_past_retention_keeps_its_days_rollup(
    tmp_path: Path,
) -> None:
    """The day's builds are gone: a rollup of the late build alone would replace theirs."""
    _, kept = _past_retention(tmp_path)
    assert ingest_jsonl(kept, late_build(), apply_retention=False).sessions == 1
    assert pending(kept) == []
    assert rollup(kept).days == ()
    assert _counts(kept)[0] == (DAY0, 3, 2)


def test_a_damaged_month_is_named_skipped_and_never_rewritten(tmp_path: Path) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    rollup(storage)
    [pair] = [p for p in (storage.dir / "rollups").glob("month=*/*") if p.is_dir()]
    damaged = (pair / "days.arrow").read_bytes()[:40]
    (pair / "days.arrow").write_bytes(damaged)
    with pytest.warns(CorruptFileWarning, match="skipping the rollups of 2025-10"):
        assert _rows(storage, "select count(*) from rollup_days") == [(0,)]
    with pytest.warns(CorruptFileWarning):
        assert pending(storage) == []
    with pytest.warns(CorruptFileWarning):
        assert rollup(storage).months == 0  # a rewrite would lose the month's rolled days
    assert (pair / "days.arrow").read_bytes() == damaged  # left for a person to look at


def test_a_day_with_a_damaged_file_keeps_its_rollup(tmp_path: Path) -> None:
    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    rollup(storage)
    [victim] = (storage.dir / "sessions" / f"date={DAY0}").glob("*.arrow")
    victim.write_bytes(victim.read_bytes()[:-20])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptFileWarning)
        assert pending(storage) == []
        assert rollup(storage).days == ()
        assert _counts(storage)[0] == (DAY0, 3, 2)


def test_the_plan_keeps_the_rollup_retention(tmp_path: Path) -> None:
    storage = _three_days(
        TelemetryStorage(tmp_path / "t", rollup_retention_days=1, clock=lambda: LATER)
    )
    assert pending(storage) == [] and rollup(storage).days == ()


def test_clear_waits_for_a_rollup_under_way(tmp_path: Path) -> None:
    """A rollup (or a compaction) holds the store's lock while it writes: clear beside it
    waits, so no rollup of the cleared builds is written after them."""
    import threading

    from telemetry import locks
    from tests.cli.test_jobs import _waiting_for

    storage = _three_days(TelemetryStorage(tmp_path / "t", clock=lambda: LATER))
    rollup(storage)
    cleared: list[int] = []
    with locks.lock(storage.dir):
        worker = threading.Thread(target=lambda: cleared.append(storage.clear()))
        worker.start()
        while not _waiting_for(storage.dir / ".lock"):
            assert worker.is_alive() and not cleared, "clear did not wait"
            time.sleep(0.01)
        assert (storage.dir / "rollups").exists()
    worker.join(timeout=60)
    assert cleared == [9] and not (storage.dir / "rollups").exists()
