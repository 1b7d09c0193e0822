"""The rollup job on Spark (pipelines/spark/rollup.py) in a real local Spark session: over the
demo history, through the builder-telemetry source and over the store's Parquet export,
its two tables equal the polars job's row for row, and what it writes into a store reads
back as the polars job's rollups. Without Java the test is skipped (CI must run it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, local_spark, spark_unavailable

try:
    import pyspark  # noqa: F401
except ImportError:
    spark_unavailable("pyspark is not installed (pip install -e '.[dev]')")

from pipelines.rollup import rollup as polars_rollup
from pipelines.spark.rollup import read_export, read_store, rollup, rollup_frames
from telemetry import rollups
from telemetry.ingest import ingest_jsonl
from telemetry.parquet import sink_parquet
from telemetry.storage import TelemetryStorage

LATER = datetime(2027, 1, 1, tzinfo=UTC)  # every day of the history is closed


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    with local_spark("rollup-test") as session:
        yield session


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TelemetryStorage:
    folder = tmp_path_factory.mktemp("spark-rollup")
    history = folder / "history.jsonl"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--today", "2026-11-20",
         "--output", str(history)],
        check=True,
    )  # fmt: skip
    storage = TelemetryStorage(folder / "telemetry", clock=lambda: LATER)
    assert ingest_jsonl(storage, history.read_text().splitlines()).problems == ()
    return storage


@pytest.fixture(scope="module")
def expected(store: TelemetryStorage, tmp_path_factory: pytest.TempPathFactory) -> rollups.Rollups:
    """The polars job's rollups, on a copy of the store."""
    copy = tmp_path_factory.mktemp("polars") / "telemetry"
    shutil.copytree(store.dir, copy)
    assert len(polars_rollup(TelemetryStorage(copy, clock=lambda: LATER)).days) == 60
    return rollups.read(copy)


def _rows(table: Any) -> list[tuple[Any, ...]]:
    """Rows of a pyarrow Table, floats to 12 digits (sums add up in another order)."""
    return [
        tuple(
            pytest.approx(v, rel=1e-12) if isinstance(v, float) else _plain(v) for v in row.values()
        )
        for row in table.to_pylist()
    ]


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) else value


@pytest.mark.parametrize("read", ["source", "export"])
def test_the_spark_job_computes_the_polars_jobs_rollups(
    spark: Any, store: TelemetryStorage, expected: rollups.Rollups, tmp_path: Path, read: str
) -> None:
    if read == "source":
        sessions, targets = read_store(spark, store.dir)
    else:
        sink_parquet(store, tmp_path / "export")
        sessions, targets = read_export(spark, tmp_path / "export")
    days, per_target = rollup_frames(sessions, targets, before=date(2027, 1, 1))
    got_days = days.toArrow().cast(rollups.DAYS_SCHEMA)
    got_targets = per_target.toArrow().cast(rollups.TARGETS_SCHEMA)
    assert got_days.num_rows == 60 and got_targets.num_rows > 1000
    assert _rows(expected.days) == _rows(got_days)
    assert _rows(expected.targets) == _rows(got_targets)


def test_what_it_writes_reads_back_as_the_polars_jobs(
    spark: Any, store: TelemetryStorage, expected: rollups.Rollups, tmp_path: Path
) -> None:
    into = tmp_path / "telemetry"
    shutil.copytree(store.dir, into)
    sessions, targets = read_store(spark, into)
    days, months = rollup(*rollup_frames(sessions, targets), into)
    assert (days, months) == (60, 3)
    written = rollups.read(into)
    assert _rows(written.days) == _rows(expected.days)
    assert _rows(written.targets) == _rows(expected.targets)
    # And the polars job then finds every day rolled up.
    assert polars_rollup(TelemetryStorage(into, clock=lambda: LATER)).days == ()
