"""Spark reads the targets' deps (a list of dictionary-encoded names in the store) as an
array of strings, through the builder-telemetry source and from the Parquet export: build e
of tests/test_schema_evolution.py beside the version 1 fixture store, whose targets read with
no deps. Without Java the test is skipped (it fails under CI, which must run it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import FIXTURES, local_spark, spark_unavailable
from tests.test_schema_evolution import DEPS_ROWS, _build_e

try:
    from pyspark.sql import SparkSession
except ImportError:
    spark_unavailable("pyspark is not installed (pip install -e '.[dev]')")

from pipelines.compaction import compact
from telemetry.parquet import sink_parquet
from telemetry.spark import FORMAT

QUERY = (
    "select session_id, target, deps from targets where deps is not null or session_id = 'e' "
    "order by session_id, target"
)


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    with local_spark("builder-telemetry-deps-tests") as session:
        yield session


@pytest.fixture
def store(tmp_path: Path) -> TelemetryStorage:
    shutil.copytree(FIXTURES / "store-v1", tmp_path / "store")
    storage = TelemetryStorage(tmp_path / "store", retention_days=10**5)
    assert ingest_jsonl(storage, _build_e()).sessions == 1
    return storage


def _rows(spark: SparkSession, targets: Any) -> list[tuple[Any, ...]]:
    targets.createOrReplaceTempView("targets")
    return [tuple(row) for row in spark.sql(QUERY).collect()]


def test_the_source_reads_deps_as_arrays_of_names(
    spark: SparkSession, store: TelemetryStorage
) -> None:
    def source() -> Any:
        return spark.read.format(FORMAT).option("dataset", "targets").load(str(store.dir))

    assert source().schema["deps"].dataType.simpleString() == "array<string>"
    assert _rows(spark, source()) == DEPS_ROWS  # a version 1 file and a version 2 file
    compact(store)
    assert _rows(spark, source()) == DEPS_ROWS  # one compacted file


def test_the_parquet_export_reads_deps_as_arrays_of_names(
    spark: SparkSession, store: TelemetryStorage, tmp_path: Path
) -> None:
    sink_parquet(store, tmp_path / "export")
    targets = spark.read.parquet(str(tmp_path / "export" / "targets"))
    assert targets.schema["deps"].dataType.simpleString() == "array<string>"
    assert _rows(spark, targets) == DEPS_ROWS
