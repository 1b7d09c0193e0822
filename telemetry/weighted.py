"""Weighted time: how much of a build's wall time each target accounts for, as Chromium's
``post_build_ninja_summary.py`` measures it.

A build's executed targets (built or failed) each ran over ``[start, end)``. Cut the build
at every instant one of them started or ended; over each piece, the ``n`` targets running
share its length equally, so each is given length / n. A target's **weighted time** is the
sum of its shares: its whole duration when it ran alone, a third of it while three ran. A
target ending at *t* and one starting at *t* do not overlap, and a run of 0 ms is given
nothing. Cached and skipped targets did not run: their weighted time is 0, and they take
no share from the targets that did.

Per build:

- ``weighted_ms``: the sum of its targets' weighted times, which is the wall time during
  which at least one target ran;
- ``span_ms``: from the first executed target's start to the last one's end (what the
  Chromium script prints as the build's "weighted time": the two differ by the moments no
  target ran between the first start and the last end);
- ``effective_parallelism`` = Σ durations of the executed targets / ``span_ms``, the
  script's "parallelism" (unknown when nothing ran for a millisecond);
- ``underused_ms``: the part of the build's wall time (``durationMs``, from
  ``build_started`` to ``build_finished``) during which fewer targets ran than the build's
  workers (its ``parallelism``, else its peak concurrency, as SPEC §3 measures utilization
  against): the time before the first target, between targets and after the last count;
  unknown when there are no workers to count (no worker count given, and nothing ran).

A build that reported no targets has none of these (as it has no rates). Across the builds
of a window, :func:`weighted_bottlenecks` ranks the targets by the mean weighted time of
their executed runs: the steps that held the build up, where the plain ranking by mean
duration puts first whatever was slow, even when it ran beside many others.

The sweep is one polars query over every build at once (:func:`with_weighted_ms`,
:func:`build_weights`): each build's instants in order, the running count over each piece,
and a "weighted clock" that advances by length / n over each; a target's weighted time is
the clock at its end less the clock at its start.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

import polars as pl

from telemetry.events import EXECUTED
from telemetry.model import BuildDetails, BuildWeights, SummaryReport, WeightedBottleneck

if TYPE_CHECKING:
    from telemetry.analyzer import TelemetryAnalyzer

__all__ = [
    "BuildWeights",
    "WeightedBottleneck",
    "build_weights",
    "weigh_build",
    "weighted_bottlenecks",
    "weighted_summary",
    "with_weighted_ms",
]

_EXECUTED: Final = sorted(EXECUTED)
# The target rows' columns that weighing reads.
_TIMES: Final = ("target", "status", "start_time", "end_time", "duration_ms")
_MS: Final = pl.Int64()
_DECIMALS: Final = 6
# A decimal that holds any sum of such shares exactly.
_EXACT: Final = pl.Decimal(38, _DECIMALS)


def _as_ms(column: str) -> pl.Expr:
    return pl.col(column).cast(_MS)


def _in_ms(frame: pl.DataFrame, *columns: str) -> pl.LazyFrame:
    """``frame`` with its time ``columns`` as epoch milliseconds, whatever their unit (a
    column of integers is taken to be in them already)."""
    schema = frame.schema
    return frame.lazy().with_columns(
        pl.col(c).dt.epoch("ms") if isinstance(schema[c], pl.Datetime) else pl.col(c).cast(_MS)
        for c in columns
    )


def _runs(targets: pl.LazyFrame) -> pl.LazyFrame:
    """The executed runs that lasted: ``session_id``, ``begin``, ``end`` in epoch ms."""
    return (
        targets.filter(pl.col("status").cast(pl.String).is_in(_EXECUTED))
        .select("session_id", begin=_as_ms("start_time"), end=_as_ms("end_time"))
        .filter(pl.col("begin") < pl.col("end"))
    )


def _pieces(targets: pl.LazyFrame) -> pl.LazyFrame:
    """Per build, each instant a run started or ended, in order, with ``running`` (the runs
    open over [t, next)), ``length`` (next − t; 0 after the last) and ``clock``, the
    weighted time given out before t."""
    runs = _runs(targets)
    steps = pl.concat(
        [
            runs.select("session_id", t=pl.col("begin"), step=pl.lit(1, _MS)),
            runs.select("session_id", t=pl.col("end"), step=pl.lit(-1, _MS)),
        ]
    )
    return (
        # Starts and ends at one instant add up first: touching runs never overlap.
        steps.group_by("session_id", "t")
        .agg(pl.col("step").sum())
        .sort("session_id", "t")
        .with_columns(
            running=pl.col("step").cum_sum().over("session_id"),
            length=(pl.col("t").shift(-1).over("session_id") - pl.col("t")).fill_null(0),
        )
        .with_columns(
            share=pl.when(pl.col("running") > 0)
            .then(pl.col("length") / pl.col("running"))
            .otherwise(0.0)
        )
        .with_columns(clock=pl.col("share").cum_sum().over("session_id") - pl.col("share"))
    )


def with_weighted_ms(targets: pl.DataFrame) -> pl.DataFrame:
    """Target rows (``session_id``, ``status``, ``start_time``, ``end_time``, as
    :meth:`TelemetryAnalyzer.targets` gives them) with ``weighted_ms`` added: each run's
    share of its build's wall time, 0.0 for a cached or skipped target. The rows keep their
    order.

    >>> rows = pl.DataFrame({"session_id": ["b", "b", "b"], "status": ["built"] * 3,
    ...     "start_time": [0, 0, 600], "end_time": [600, 300, 900]})
    >>> with_weighted_ms(rows)["weighted_ms"].to_list()
    [450.0, 150.0, 300.0]
    """
    times = _in_ms(targets, "start_time", "end_time")
    clock = _pieces(times).select("session_id", "t", "clock")
    ran = (
        times.with_row_index("_row")
        .filter(
            pl.col("status").cast(pl.String).is_in(_EXECUTED),
            pl.col("start_time") < pl.col("end_time"),
        )
        .join(
            clock.rename({"t": "start_time", "clock": "_from"}),
            on=["session_id", "start_time"],
        )
        .join(clock.rename({"t": "end_time", "clock": "_to"}), on=["session_id", "end_time"])
        # The clock is a running sum: rounded to a millionth of a millisecond, a target's
        # share reads as it is (31.5, not 31.500000000000014), and nothing measured is lost.
        .select("_row", weighted=(pl.col("_to") - pl.col("_from")).round(_DECIMALS))
        .collect()
    )
    # The runs that took no time (cached, skipped, 0 ms) keep 0.
    weighted = pl.zeros(targets.height, pl.Float64, eager=True).alias("weighted_ms")
    return targets.with_columns(weighted.scatter(ran["_row"], ran["weighted"]))


def build_weights(sessions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Per build of ``sessions`` (rows of :meth:`TelemetryAnalyzer.sessions`), from its
    ``targets`` rows: ``session_id``, ``weighted_ms``, ``span_ms``, ``executed_ms``,
    ``effective_parallelism``, ``workers`` and ``underused_ms``, in the order of
    ``sessions``; the figures are null for a build that reported no targets,
    ``effective_parallelism`` also when its executed targets span no time, and
    ``underused_ms`` when it has no workers (no worker count and nothing ran)."""
    times = _in_ms(targets, "start_time", "end_time")
    pieces = _pieces(times)
    executed = times.filter(pl.col("status").cast(pl.String).is_in(_EXECUTED))
    spans = executed.group_by("session_id").agg(
        first=_as_ms("start_time").min(),
        last=_as_ms("end_time").max(),
        executed_ms=(_as_ms("end_time") - _as_ms("start_time")).sum(),
    )
    builds = _in_ms(sessions, "start_time").select(
        "session_id",
        "total_targets",
        opened=_as_ms("start_time"),
        closed=_as_ms("start_time") + pl.col("duration_ms"),
        duration_ms=pl.col("duration_ms"),
        workers=pl.coalesce(pl.col("parallelism"), pl.col("peak_concurrency")).cast(_MS),
    )
    # The pieces of the build's wall time when every worker was busy: clipped to it.
    busy = (
        pieces.join(builds.select("session_id", "opened", "closed", "workers"), on="session_id")
        .filter(pl.col("workers") > 0, pl.col("running") >= pl.col("workers"))
        .select(
            "session_id",
            inside=(
                pl.min_horizontal(pl.col("t") + pl.col("length"), pl.col("closed"))
                - pl.max_horizontal(pl.col("t"), pl.col("opened"))
            ).clip(lower_bound=0),
        )
        .group_by("session_id")
        .agg(saturated=pl.col("inside").sum())
    )
    # Each piece's length is shared out whole among the runs open over it.
    weighted = pieces.group_by("session_id").agg(
        weighted_ms=pl.col("length").filter(pl.col("running") > 0).sum()
    )
    known = pl.col("total_targets") > 0
    span = (pl.col("last") - pl.col("first")).fill_null(0)
    executed_ms = pl.col("executed_ms").fill_null(0)
    return (
        builds.with_row_index("_order")
        .join(spans, on="session_id", how="left")
        .join(weighted, on="session_id", how="left")
        .join(busy, on="session_id", how="left")
        .sort("_order")
        .select(
            "session_id",
            weighted_ms=pl.when(known).then(pl.col("weighted_ms").fill_null(0)),
            span_ms=pl.when(known).then(span),
            executed_ms=pl.when(known).then(executed_ms),
            effective_parallelism=pl.when(known, span > 0).then(executed_ms / span),
            workers=pl.col("workers"),
            underused_ms=pl.when(known, pl.col("workers") > 0).then(
                (pl.col("duration_ms") - pl.col("saturated").fill_null(0)).clip(lower_bound=0)
            ),
        )
        .collect()
    )


def weigh_build(build: BuildDetails) -> BuildWeights:
    """The weighted figures of one build (as :meth:`TelemetryAnalyzer.build` gives it), and
    each target's weighted time in the order of ``build.targets``.

    >>> weights = weigh_build(analyzer.build("ci-0013"))  # doctest: +SKIP
    >>> weights.effective_parallelism  # doctest: +SKIP
    2.41
    """
    targets = pl.DataFrame(
        {
            "session_id": [build.session_id] * len(build.targets),
            "status": [t.status for t in build.targets],
            "start_time": [t.start_time for t in build.targets],
            "end_time": [t.end_time for t in build.targets],
        },
        schema={
            "session_id": pl.String(),
            "status": pl.String(),
            "start_time": pl.Datetime("ms", "UTC"),
            "end_time": pl.Datetime("ms", "UTC"),
        },
    )
    session = pl.DataFrame(
        {
            "session_id": [build.session_id],
            "total_targets": [build.total_targets],
            "start_time": [build.start_time],
            "duration_ms": [build.duration_ms],
            "parallelism": [build.parallelism],
            "peak_concurrency": [build.peak_concurrency],
        },
        schema={
            "session_id": pl.String(),
            "total_targets": pl.Int64(),
            "start_time": pl.Datetime("ms", "UTC"),
            "duration_ms": pl.Int64(),
            "parallelism": pl.Int32(),
            "peak_concurrency": pl.Int32(),
        },
    )
    row = build_weights(session, targets).row(0, named=True)
    return BuildWeights(
        session_id=build.session_id,
        weighted_ms=row["weighted_ms"],
        span_ms=row["span_ms"],
        executed_ms=row["executed_ms"],
        # An interrupted build's unfinished targets are not stored: its busy workers are
        # not known, and look idle.
        effective_parallelism=None if build.interrupted else row["effective_parallelism"],
        workers=int(row["workers"]),
        underused_ms=None if build.interrupted else row["underused_ms"],
        duration_ms=build.duration_ms,
        targets=tuple(with_weighted_ms(targets)["weighted_ms"].to_list()),
    )


def weighted_bottlenecks(
    analyzer: TelemetryAnalyzer, *, top: int = 5
) -> tuple[WeightedBottleneck, ...]:
    """The window's targets ranked by the mean weighted time of their executed runs (built
    or failed), ties by label; the ``top`` first.

    >>> weighted_bottlenecks(TelemetryAnalyzer(storage), top=1)  # doctest: +SKIP
    (WeightedBottleneck(target='//app:link', mean_weighted_ms=812.5, ...),)
    """
    _, targets = analyzer.targets(columns=_TIMES, statuses=_EXECUTED)
    return _ranked(targets, top)


def _ranked(targets: pl.DataFrame, top: int) -> tuple[WeightedBottleneck, ...]:
    if targets.is_empty():
        return ()
    executed = targets.filter(pl.col("status").cast(pl.String).is_in(_EXECUTED))
    ranked = (
        with_weighted_ms(executed)
        .lazy()
        .group_by("target")
        .agg(
            # Summed exactly (the shares are whole millionths of a millisecond): a float sum
            # depends on the order polars' threads add a group's rows in, and the same
            # store would rank and print differently from one run to the next.
            mean_weighted_ms=pl.col("weighted_ms").cast(_EXACT).sum().cast(pl.Float64) / pl.len(),
            mean_duration_ms=pl.col("duration_ms").mean(),
            runs=pl.len(),
        )
        .sort(["mean_weighted_ms", "target"], descending=[True, False])
        .head(top)
        .collect()
    )
    return tuple(
        WeightedBottleneck(r["target"], r["mean_weighted_ms"], r["mean_duration_ms"], r["runs"])
        for r in ranked.iter_rows(named=True)
    )


def weighted_summary(
    analyzer: TelemetryAnalyzer, *, top: int = 5, trend_points: int = 0
) -> SummaryReport:
    """The summary of :meth:`TelemetryAnalyzer.summary` with its bottlenecks ranked by mean
    weighted time (:func:`weighted_bottlenecks`) rather than by mean duration. Days that
    only the daily rollups still hold count in its totals, not in that ranking: a rollup
    keeps no target's times."""
    report, targets = analyzer.summary_and_targets(
        top=top, trend_points=trend_points, columns=_TIMES, statuses=_EXECUTED
    )  # one snapshot: the ranking is of the builds the totals count
    return replace(report, weighted_bottlenecks=_ranked(targets, top))
