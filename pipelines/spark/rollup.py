"""The rollup job on Spark, for team scale: the daily rollups of :mod:`telemetry.rollups`
(the same two tables, the same numbers as the polars job of :mod:`pipelines.rollup`),
computed by Spark from a store read through the ``builder-telemetry`` source, or from its
Parquet export, and written as the store's rollups.

Run it with ``spark-submit`` (pyspark 4 and this package on the driver and the workers)::

    spark-submit pipelines/spark/rollup.py --store /srv/team/telemetry
    spark-submit pipelines/spark/rollup.py --parquet /srv/exports/team --into /srv/team/telemetry

or import it: :func:`rollup_frames` gives the two tables as Spark DataFrames for a job of
your own, and :func:`rollup` writes them. Only the aggregates come back to the driver (a
row per day, and per day and target), never the target rows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# The rollups' columns, as Spark SQL computes them from the exported form of the rows
# (telemetry.parquet.exported: sessions with their rates, target labels as strings).
_KNOWN = "total_targets > 0"
_DAYS = f"""
    date,
    count(*) AS builds,
    count_if(succeeded) AS succeeded,
    count_if(interrupted) AS interrupted,
    sum(duration_ms) AS duration_ms_sum,
    min(duration_ms) AS duration_ms_min,
    max(duration_ms) AS duration_ms_max,
    avg(duration_ms) AS duration_ms_mean,
    percentile(duration_ms, 0.5) AS duration_ms_p50,
    percentile(duration_ms, 0.9) AS duration_ms_p90,
    count_if({_KNOWN}) AS builds_with_targets,
    coalesce(sum(CASE WHEN {_KNOWN} THEN cache_hit_rate END), 0D) AS cache_hit_rate_sum,
    avg(CASE WHEN {_KNOWN} THEN cache_hit_rate END) AS cache_hit_rate_mean,
    coalesce(sum(CASE WHEN {_KNOWN} THEN parallelism_utilization END), 0D)
        AS parallelism_utilization_sum,
    avg(CASE WHEN {_KNOWN} THEN parallelism_utilization END) AS parallelism_utilization_mean,
    coalesce(sum(CASE WHEN {_KNOWN} THEN targets_per_second END), 0D)
        AS targets_per_second_sum,
    avg(CASE WHEN {_KNOWN} THEN targets_per_second END) AS targets_per_second_mean,
    sum(total_targets) AS total_targets,
    sum(built) AS built,
    sum(cached) AS cached,
    sum(failed) AS failed,
    sum(skipped) AS skipped,
    sum(executed_ms) AS executed_ms
"""
_RAN = "CASE WHEN status IN ('built', 'failed') THEN duration_ms END"
_TARGETS = f"""
    date,
    target,
    count_if(status = 'built') AS built,
    count_if(status = 'cached') AS cached,
    count_if(status = 'failed') AS failed,
    count_if(status = 'skipped') AS skipped,
    count_if(status IN ('built', 'failed')) AS executed_runs,
    coalesce(sum({_RAN}), 0L) AS executed_ms_sum,
    avg({_RAN}) AS executed_ms_mean,
    percentile({_RAN}, 0.5) AS executed_ms_p50,
    percentile({_RAN}, 0.9) AS executed_ms_p90,
    max({_RAN}) AS executed_ms_max
"""


def read_store(spark: SparkSession, store: str | Path) -> tuple[DataFrame, DataFrame]:
    """A store's sessions and targets through the ``builder-telemetry`` source (which
    :func:`telemetry.spark.register` registers)."""
    from telemetry.spark import FORMAT, register

    register(spark)

    def load(dataset: str) -> DataFrame:
        return spark.read.format(FORMAT).option("dataset", dataset).load(str(store))

    return load("sessions"), load("targets")


def read_export(spark: SparkSession, export: str | Path) -> tuple[DataFrame, DataFrame]:
    """The sessions and targets of a Parquet export (``builder telemetry export --format
    parquet``), the day read from the Hive folders as a date."""
    root = str(export).rstrip("/")
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "true")
    return spark.read.parquet(f"{root}/sessions"), spark.read.parquet(f"{root}/targets")


def rollup_frames(
    sessions: DataFrame, targets: DataFrame, *, before: date | None = None
) -> tuple[DataFrame, DataFrame]:
    """The rollups of the days before ``before`` (every day by default): a row per day, and
    per day and target, with the columns of :data:`telemetry.rollups.DAYS_SCHEMA` and
    :data:`~telemetry.rollups.TARGETS_SCHEMA`, ordered by day (and target)."""
    from pyspark.sql import functions as F

    if before is not None:
        sessions = sessions.where(F.col("date") < F.lit(before))
        targets = targets.where(F.col("date") < F.lit(before))
    # Targets of the sessions read only, as every reader of the store counts them.
    targets = targets.join(sessions.select("session_id"), "session_id", "left_semi")
    days = sessions.groupBy("date").agg(*_columns(_DAYS, skip=1)).orderBy("date")
    per_target = (
        targets.groupBy("date", "target").agg(*_columns(_TARGETS, skip=2)).orderBy("date", "target")
    )
    return days, per_target


def _columns(select: str, *, skip: int) -> list[Column]:
    """The aggregate expressions of a SELECT list (the first ``skip`` are the keys)."""
    from pyspark.sql import functions as F

    parts: list[str] = []
    depth, current = 0, ""
    for char in select:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [F.expr(part) for part in parts[skip:]]


def rollup(
    days: DataFrame, targets: DataFrame, into: str | Path, *, now: datetime | None = None
) -> tuple[int, int]:
    """Write Spark's rollups as the rollups of the store ``into`` (the months they touch
    rewritten whole, the days they do not hold kept); returns the days and the months
    written."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.rollup import _month_rows
    from telemetry import rollups
    from telemetry.layout import new_stem
    from telemetry.storage import TelemetryStorage

    store = TelemetryStorage(into)
    day_rows = days.toArrow().cast(rollups.DAYS_SCHEMA)
    target_rows = targets.toArrow().cast(rollups.TARGETS_SCHEMA)
    moment = now or datetime.now(UTC)
    written = 0
    with store.lock():
        existing = rollups.read(store.dir)
        fresh_days = set(day_rows["date"].to_pylist())
        for month in rollups.months_of(fresh_days):
            mine = {d for d in fresh_days if rollups.month_of(d) == month}
            in_month = pa.array(sorted(mine), pa.date32())
            month_days = day_rows.filter(pc.is_in(day_rows["date"], in_month))
            month_targets = target_rows.filter(pc.is_in(target_rows["date"], in_month))
            rollups.write_month(
                store.dir,
                month,
                _month_rows(existing.days, month, mine, [month_days]),
                _month_rows(existing.targets, month, mine, [month_targets]),
                stem=new_stem(moment),
            )
            written += 1
    rollups.sweep(store.dir)
    return len(fresh_days), written


def main(argv: Sequence[str] | None = None) -> int:
    """``spark-submit pipelines/spark/rollup.py --store DIR | --parquet EXPORT --into DIR``."""
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--store", help="a store, read through the builder-telemetry source")
    source.add_argument("--parquet", help="a Parquet export of a store")
    parser.add_argument("--into", help="the store whose rollups are written (--store's)")
    args = parser.parse_args(argv)
    into = args.into or args.store
    if into is None:
        parser.error("--parquet needs --into: the store whose rollups are written")
    spark = SparkSession.builder.appName("builder-telemetry rollup").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        sessions, targets = (
            read_store(spark, args.store) if args.store else read_export(spark, args.parquet)
        )
        days, per_target = rollup_frames(sessions, targets, before=datetime.now(UTC).date())
        rolled, months = rollup(days, per_target, into)
    finally:
        spark.stop()
    print(f"rolled up {rolled} days into {months} months of the rollups of {into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
