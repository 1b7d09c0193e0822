"""Spark: the store as a Spark 4 Python data source named ``builder-telemetry``.

::

    from telemetry.spark import register

    register(spark)
    targets = spark.read.format("builder-telemetry").option("dataset", "targets").load(dir)

The datasets are ``sessions`` (the default), ``targets`` and ``daily_targets``, in the form
the Parquet export writes (:func:`telemetry.parquet.exported`: labels as strings, sessions
with their rates) plus the partition day as a ``date`` column. Reading plans on one snapshot
of the store taken on the driver (:mod:`telemetry.snapshot`), one input partition per file,
and each executor reads its file as Arrow record batches through that snapshot's reader, which
finds a file retention moved away meanwhile. Conditions on ``date`` (equality, ranges, ``IN``,
and their negations) are pushed to the source (Spark 4.1 and later): the folders of days
outside their range are not listed, and no file of a day they exclude is opened.

Filter pushdown must be enabled in the session (``spark.sql.python.filterPushdown.enabled``,
off by default, and Spark refuses a source that implements it while it is off):
:func:`register` enables it; registering by hand is
``spark.conf.set(PUSHDOWN, "true"); spark.dataSource.register(TelemetryDataSource)``.
Spark 4.1 to 4.3 keep the files a query with a condition on ``date`` planned with the
DataFrame ``load()`` returned, and reuse them for a later query of it without one: load anew
for each such query (docs/query.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

try:
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
    from pyspark.sql.types import DateType, StructType
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        f"telemetry.spark needs pyspark 4 ({error}); install it with "
        "pip install 'builder-telemetry[spark]'"
    ) from error

from telemetry import layout
from telemetry.errors import ConfigError, CorruptFileWarning, StorageError
from telemetry.schema import DATASETS, Dataset

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession
    from pyspark.sql.datasource import Filter

FORMAT: Final = "builder-telemetry"
PUSHDOWN: Final = "spark.sql.python.filterPushdown.enabled"
DEFAULT_DATASET: Final[Dataset] = "sessions"


def register(spark: SparkSession) -> None:
    """Make ``spark.read.format("builder-telemetry")`` read stores, with conditions on
    ``date`` pushed down (this enables :data:`PUSHDOWN` in the session).

    >>> register(spark)  # doctest: +SKIP
    >>> spark.read.format("builder-telemetry").load("/data/telemetry").count()  # doctest: +SKIP
    147
    """
    spark.conf.set(PUSHDOWN, "true")
    spark.dataSource.register(TelemetryDataSource)


def spark_schema(dataset: Dataset) -> StructType:
    """The Spark schema of a dataset: :func:`telemetry.parquet.exported_schema` in Spark's
    types, and the partition day as ``date``.

    >>> spark_schema("daily_targets").simpleString()
    'struct<target:string,built:bigint,cached:bigint,failed:bigint,skipped:bigint,executed_ms:bigint,date:date>'
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    from telemetry.parquet import exported_schema

    return from_arrow_schema(exported_schema(dataset)).add(
        layout.PARTITION_KEY, DateType(), nullable=False
    )


class TelemetryDataSource(DataSource):
    """The ``builder-telemetry`` source; options ``path`` (the store's folder, what
    ``load(dir)`` sets) and ``dataset``."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> StructType:
        return spark_schema(self._dataset())

    def reader(self, schema: StructType) -> DataSourceReader:
        return StoreReader(self._root(), self._dataset(), schema)

    def _dataset(self) -> Dataset:
        asked = self.options.get("dataset", DEFAULT_DATASET)
        for dataset in DATASETS:
            if asked == dataset:
                return dataset
        raise ConfigError(
            f"unknown dataset {asked!r} for the {FORMAT} source; choose one of "
            f"{', '.join(DATASETS)}"
        )

    def _root(self) -> str:
        path = self.options.get("path")
        if not path:
            raise ConfigError(f"the {FORMAT} source needs the store's folder: .load(dir)")
        # Absolute: the executors need not share the planner's working directory.
        root = Path(path).expanduser().absolute()
        if not root.is_dir():
            raise StorageError(f"no telemetry store at {root}; give .load() the store's folder")
        return str(root)


@dataclass(slots=True, frozen=True)
class FilePartition(InputPartition):
    """One stored file to read: all an executor needs, picklable."""

    root: str
    dataset: Dataset
    path: str
    day: date
    missing: tuple[str, ...] = ()


@dataclass(slots=True)
class StoreReader(DataSourceReader):
    """Plans a read on one snapshot of the store, and reads a file per input partition."""

    root: str
    dataset: Dataset
    schema: StructType
    # The conditions on ``date`` that Spark left to the source (pushFilters).
    days: list[Filter] = field(default_factory=list)

    def pushFilters(self, filters: list[Filter]) -> Iterator[Filter]:
        """Take the conditions on ``date``; every row of a file has its day, so they are
        decided per file, and Spark need not check them again."""
        for condition in filters:
            if _day_test(condition) is None:
                yield condition
            else:
                self.days.append(condition)

    def partitions(self) -> Sequence[InputPartition]:
        """One partition per readable file of the days the conditions keep, listed in one
        snapshot (taken here, on the driver): the folders of days outside their bounds are
        not listed, and no file of a day they leave out is opened."""
        from telemetry.storage import TelemetryStorage

        since, until, only = _bounds(self.days)
        datasets: tuple[Dataset, ...] = (self.dataset,)
        snapshot = TelemetryStorage(self.root).snapshot(
            days=only, since=since, until=until, datasets=datasets
        )
        tests = [_day_test(condition) for condition in self.days]
        kept = snapshot.files(
            self.dataset, where=lambda f: all(test is not None and test(f.day) for test in tests)
        )
        return [FilePartition(self.root, self.dataset, str(f.path), f.day, f.missing) for f in kept]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """The rows of one file as record batches in the schema Spark asked for."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        from telemetry.parquet import exported
        from telemetry.snapshot import Snapshot, StoredFile

        assert isinstance(partition, FilePartition)
        stored = StoredFile(Path(partition.path), partition.day, None, partition.missing)
        # The snapshot of this one file: its reader finds it where retention moved it.
        snapshot = Snapshot(layout.Layout(Path(partition.root)), {partition.dataset: [stored]})
        table = snapshot.read(stored, partition.dataset)
        if table is None:
            warnings.warn(f"skipping {stored.path}: damaged data", CorruptFileWarning, stacklevel=2)
            return
        table = exported(table, partition.dataset)
        day = pa.array([partition.day] * table.num_rows, pa.date32())
        table = table.append_column(layout.PARTITION_KEY, day)
        try:
            wanted = to_arrow_schema(self.schema, timezone="UTC")
        except TypeError:  # Spark 4.0 takes no time zone: its timestamps are UTC already
            wanted = to_arrow_schema(self.schema)
        yield from table.select(wanted.names).cast(wanted).to_batches()


# -- conditions on the day --------------------------------------------------------------------


def _day_test(condition: Filter) -> Callable[[date], bool] | None:
    """Whether a day meets ``condition``, when it is a condition on ``date`` alone with day
    values; None for any other (Spark checks those). ``date`` is never null."""
    from pyspark.sql import datasource as ds

    if isinstance(condition, ds.Not):
        inner = _day_test(condition.child)
        return None if inner is None else (lambda day: not inner(day))
    if getattr(condition, "attribute", None) != (layout.PARTITION_KEY,):
        return None
    if isinstance(condition, ds.IsNull):
        return lambda day: False
    if isinstance(condition, ds.IsNotNull):
        return lambda day: True
    value: Any = getattr(condition, "value", None)
    if isinstance(condition, ds.EqualNullSafe) and value is None:
        return lambda day: False
    if isinstance(condition, ds.In):
        values = tuple(value)
        return (lambda day: day in values) if all(map(_is_day, values)) else None
    if not _is_day(value):
        return None
    compare: dict[type[Filter], Callable[[date], bool]] = {
        ds.EqualTo: lambda day: day == value,
        ds.EqualNullSafe: lambda day: day == value,
        ds.GreaterThan: lambda day: day > value,
        ds.GreaterThanOrEqual: lambda day: day >= value,
        ds.LessThan: lambda day: day < value,
        ds.LessThanOrEqual: lambda day: day <= value,
    }
    return compare.get(type(condition))


def _is_day(value: object) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _bounds(conditions: list[Filter]) -> tuple[date | None, date | None, list[date] | None]:
    """The first and last day the conditions allow, and the days they name (equality,
    ``IN``), for the snapshot to list no other day's folder."""
    from pyspark.sql import datasource as ds

    since: date | None = None
    until: date | None = None
    only: set[date] | None = None
    for condition in conditions:
        value: Any = getattr(condition, "value", None)
        low = high = None
        named: set[date] | None = None
        if isinstance(condition, ds.EqualTo | ds.EqualNullSafe):
            named = set() if value is None else {value}  # date <=> NULL holds for no day
        elif isinstance(condition, ds.In):
            named = set(value)
        elif isinstance(condition, ds.IsNull):
            named = set()
        elif isinstance(condition, ds.GreaterThan):
            low = value + timedelta(days=1) if value < date.max else date.max
        elif isinstance(condition, ds.GreaterThanOrEqual):
            low = value
        elif isinstance(condition, ds.LessThan):
            high = value - timedelta(days=1) if value > date.min else date.min
        elif isinstance(condition, ds.LessThanOrEqual):
            high = value
        if low is not None:
            since = low if since is None else max(since, low)
        if high is not None:
            until = high if until is None else min(until, high)
        if named is not None:
            only = named if only is None else only & named
    return since, until, None if only is None else sorted(only)
