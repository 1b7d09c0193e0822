"""The per-build metrics of SPEC §3, each defined once: cache hit rate, parallelism
utilization, targets per second, and the peak concurrency that stands in for a worker count
a build did not report.

The rates are polars expressions over whole columns (:func:`with_session_metrics`, what the
analyzer and the exports use: the truth). :func:`rates` is the fast path for ``recent``,
which answers a few builds without loading polars: the same formulas, row by row, built from
the same helpers so that they round alike, held equal by
``tests/test_metrics.py::test_rates_row_by_row_are_the_columns``.

The peak concurrency is a sweep over a build's executed targets: :func:`peak_concurrency`
over one build's intervals (what the collector stores: the truth), and
:func:`session_peaks`, the fast path of the columnar ingest over many builds at once, which
orders the sweep by the same key; held equal by
``tests/test_metrics.py::test_session_peaks_are_each_builds_peak_concurrency``.

polars and pyarrow's compute functions are imported by the functions that use them: the row
form serves ``recent`` and the collector, which load neither polars nor (``recent``)
pyarrow's compute module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

# The rates are percentages.
PERCENT: Final = 100.0
# targetsPerSecond is total / (duration_ms / 1000), computed as total * 1000 / duration_ms:
# polars turns a division by a constant into a multiplication by its inverse, which rounds
# differently, so both forms multiply first.
MS_PER_SECOND: Final = 1000.0
# The statuses of targets the cache was asked about: the hit rate's denominator (a skipped
# target never was, so it does not lower the rate).
ATTEMPTED: Final = ("built", "cached", "failed")
# The sweep orders its moments by one integer: an end at t is 2t, a start at t is 2t + 1, so
# a target ending at t is closed before one starting at t opens ([start, end) intervals that
# touch do not overlap).
_SWEEP_SCALE: Final = 2
_SWEEP_START: Final = 1

# A count or duration of one build (a Python number) or of every build (a polars column):
# the formulas below serve both forms.
Quantity = TypeVar("Quantity", float, "pl.Expr")


@overload
def _unknown(total_targets: int) -> bool: ...
@overload
def _unknown(total_targets: pl.Expr) -> pl.Expr: ...
def _unknown(total_targets: int | pl.Expr) -> bool | pl.Expr:
    # A tool without per-target events (``record -- make``) says nothing of its cache or its
    # workers: a 0 there would read as a cold cache and an idle machine, and pull every
    # average down.
    return total_targets == 0


def _attempted(built: Quantity, cached: Quantity, failed: Quantity) -> Quantity:
    return built + cached + failed


def _percent(part: Quantity, whole: Quantity) -> Quantity:
    return PERCENT * part / whole


def _capacity(duration_ms: Quantity, workers: Quantity) -> Quantity:
    """Worker-milliseconds the build had; both given as floats (``float()`` in a row, a cast
    to Float64 in a column): milliseconds times workers can pass the range of an int64, and
    converting first makes both forms round alike."""
    return duration_ms * workers


def _per_second(total_targets: Quantity, duration_ms: Quantity) -> Quantity:
    return total_targets * MS_PER_SECOND / duration_ms


def with_session_metrics(sessions: pl.LazyFrame) -> pl.LazyFrame:
    """Add cache_hit_rate, parallelism_utilization and targets_per_second (SPEC §3) to
    stored session rows; all three null for a session that reported no targets.

    >>> import polars as pl
    >>> rows = pl.LazyFrame({"built": [1], "cached": [3], "failed": [0], "total_targets": [4],
    ...     "duration_ms": [2000], "executed_ms": [1000], "parallelism": [2],
    ...     "peak_concurrency": [1]})
    >>> with_session_metrics(rows).select("cache_hit_rate", "parallelism_utilization",
    ...     "targets_per_second").collect().row(0)
    (75.0, 25.0, 2.0)
    """
    import polars as pl

    unknown = _unknown(pl.col("total_targets"))
    none = pl.lit(None, dtype=pl.Float64)
    attempted = _attempted(*(pl.col(status) for status in ATTEMPTED))
    workers = pl.coalesce(pl.col("parallelism"), pl.col("peak_concurrency"))
    capacity = _capacity(pl.col("duration_ms").cast(pl.Float64), workers.cast(pl.Float64))
    return sessions.with_columns(
        cache_hit_rate=pl.when(unknown)
        .then(none)
        .when(attempted > 0)
        .then(_percent(pl.col("cached"), attempted))
        .otherwise(0.0),
        parallelism_utilization=pl.when(unknown)
        .then(none)
        .when(capacity > 0)
        .then(_percent(pl.col("executed_ms"), capacity))
        .otherwise(0.0),
        targets_per_second=pl.when(unknown)
        .then(none)
        .when(pl.col("duration_ms") > 0)
        .then(_per_second(pl.col("total_targets"), pl.col("duration_ms")))
        .otherwise(0.0),
    )


def rates(row: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    """A stored session row's cache hit rate, parallelism utilization and targets per second:
    the fast path of :func:`with_session_metrics`, row by row; all three None when the build
    reported no targets.

    >>> rates({"built": 1, "cached": 3, "failed": 0, "total_targets": 4, "duration_ms": 2000,
    ...        "executed_ms": 1000, "parallelism": 2, "peak_concurrency": 1})
    (75.0, 25.0, 2.0)
    """
    if _unknown(row["total_targets"]):
        return None, None, None
    attempted = _attempted(*(row[status] for status in ATTEMPTED))
    hit_rate = _percent(row["cached"], attempted) if attempted > 0 else 0.0
    workers = row["parallelism"] if row["parallelism"] is not None else row["peak_concurrency"]
    capacity = _capacity(float(row["duration_ms"]), float(workers or 0))
    utilization = _percent(row["executed_ms"], capacity) if capacity > 0 else 0.0
    duration = row["duration_ms"]
    per_second = _per_second(row["total_targets"], duration) if duration > 0 else 0.0
    return hit_rate, utilization, per_second


def peak_concurrency(starts: pa.Array, ends: pa.Array) -> int:
    """The most intervals ``[start, end)`` open at once (one build's executed targets, in
    epoch milliseconds); touching intervals do not overlap, empty ones count for nothing.

    >>> import pyarrow as pa
    >>> peak_concurrency(pa.array([0, 10, 5]), pa.array([10, 20, 15]))
    2
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    nonempty = pc.less(starts, ends)
    starts = starts.filter(nonempty)
    ends = ends.filter(nonempty)
    if len(starts) == 0:
        return 0
    # Sweep: +1 at each start, -1 at each end, in the order of their keys.
    keys = pa.concat_arrays(
        [
            pc.add(pc.multiply(starts, _SWEEP_SCALE), _SWEEP_START),
            pc.multiply(ends, _SWEEP_SCALE),
        ]
    )
    steps = pa.concat_arrays(
        [pa.array([1] * len(starts), pa.int8()), pa.array([-1] * len(ends), pa.int8())]
    )
    running = pc.cumulative_sum(steps.cast(pa.int64()).take(pc.sort_indices(keys)))
    return int(pc.max(running).as_py())


def session_peaks(executed: pl.DataFrame) -> pl.DataFrame:
    """Per ``session``, the most of its rows running at once over ``[begin, end)`` (epoch
    milliseconds): :func:`peak_concurrency` of each build, as the fast path of the columnar
    ingest computes it for many builds in one pass. Columns ``session`` and ``peak``; a
    session whose runs are all empty has no row.

    >>> import polars as pl
    >>> runs = pl.DataFrame({"session": ["a", "a", "a", "b"], "begin": [0, 10, 5, 3],
    ...     "end": [10, 20, 15, 3]})
    >>> session_peaks(runs).sort("session").rows()
    [('a', 2)]
    """
    import polars as pl

    runs = executed.filter(pl.col("begin") < pl.col("end"))
    steps = pl.concat(
        [
            runs.select(
                "session",
                t=pl.col("begin") * _SWEEP_SCALE + _SWEEP_START,
                step=pl.lit(1, pl.Int32),
            ),
            runs.select("session", t=pl.col("end") * _SWEEP_SCALE, step=pl.lit(-1, pl.Int32)),
        ]
    )
    return steps.group_by("session").agg(peak=pl.col("step").sort_by("t").cum_sum().max())
