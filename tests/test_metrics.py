"""Each metric is defined once (telemetry/metrics.py, and the failure text in
telemetry/events.py); where speed needs a second form, it gives the first one's numbers.

- the rates row by row (``recent``) are the analyzer's columns, to the last bit;
- the peak concurrency of many builds in one pass (the columnar ingest) is each build's
  sweep as the collector stores it, and both are an independent plain-Python sweep's;
- the failure text filled a column at a time is the one the collector writes.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from telemetry.events import MAX_TS_MS, failure_text
from telemetry.ingest.columnar import _failure_text
from telemetry.metrics import peak_concurrency, rates, session_peaks, with_session_metrics
from tests import reference
from tests.test_properties import SETTINGS

_INT64 = 2**63 - 1
_INT32 = 2**31 - 1
_SESSION_TYPES = {
    "built": pl.Int64,
    "cached": pl.Int64,
    "failed": pl.Int64,
    "skipped": pl.Int64,
    "total_targets": pl.Int64,
    "duration_ms": pl.Int64,
    "executed_ms": pl.Int64,
    "peak_concurrency": pl.Int32,
    "parallelism": pl.Int32,
}


@st.composite
def _session_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A stored session row's counts and times, from none at all to the stored types' ends."""
    small = st.integers(0, 50)
    count = st.one_of(small, st.integers(0, 2**40))
    built, cached, failed, skipped = (draw(count) for _ in range(4))
    return {
        "built": built,
        "cached": cached,
        "failed": failed,
        "skipped": skipped,
        "total_targets": built + cached + failed + skipped,
        "duration_ms": draw(st.one_of(st.just(0), small, st.integers(0, MAX_TS_MS))),
        "executed_ms": draw(st.one_of(small, st.integers(0, 2**62))),
        "peak_concurrency": draw(st.one_of(small, st.integers(0, _INT32))),
        "parallelism": draw(st.one_of(st.none(), small, st.integers(0, _INT32))),
    }


@SETTINGS
@given(st.lists(_session_rows(), min_size=1, max_size=40))
def test_rates_row_by_row_are_the_columns(rows: list[dict[str, Any]]) -> None:
    """The columns are the truth; a rate that rounds one bit apart fails."""
    frame = with_session_metrics(pl.LazyFrame(rows, schema=_SESSION_TYPES)).collect()
    columns = frame.select("cache_hit_rate", "parallelism_utilization", "targets_per_second")
    assert [rates(row) for row in rows] == columns.rows()


def test_rates_by_hand() -> None:
    # 3 of 4 attempted targets cached (the skipped one is no attempt): 75%; 1500 ms of work
    # on 2 workers over 1000 ms: 75%; 5 targets in 1000 ms: 5 a second.
    row = {"built": 1, "cached": 3, "failed": 0, "skipped": 1, "total_targets": 5}
    row |= {"duration_ms": 1000, "executed_ms": 1500, "parallelism": None, "peak_concurrency": 2}
    assert rates(row) == (75.0, 75.0, 5.0)
    # Only skipped targets: reported, so known, and 0; none at all: unknown.
    assert rates(row | {"built": 0, "cached": 0, "total_targets": 1, "executed_ms": 0}) == (
        0.0,
        0.0,
        1.0,
    )
    assert rates(row | {"built": 0, "cached": 0, "skipped": 0, "total_targets": 0}) == (
        None,
        None,
        None,
    )


# Runs of a few builds: (session, start, length); small times so that runs touch and start
# together, and times near the end of the protocol's range, where doubling them must not wrap.
_RUNS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.one_of(st.integers(0, 30), st.integers(MAX_TS_MS - 100, MAX_TS_MS - 1)),
        st.one_of(st.integers(0, 12), st.integers(0, 100)),
    ),
    max_size=60,
)


@SETTINGS
@given(_RUNS)
def test_session_peaks_are_each_builds_peak_concurrency(runs: list[tuple[str, int, int]]) -> None:
    # The columnar ingest hands the sweep runs that end at most at the last timestamp.
    runs = [(session, start, min(start + length, MAX_TS_MS - 1)) for session, start, length in runs]
    frame = pl.DataFrame(
        runs, schema={"session": pl.String, "begin": pl.Int64, "end": pl.Int64}, orient="row"
    )
    in_one_pass = dict(session_peaks(frame).iter_rows())
    for session in {s for s, _, _ in runs}:
        mine = [(begin, end) for s, begin, end in runs if s == session]
        expected = reference.peak_concurrency(mine)
        starts = pa.array([begin for begin, _ in mine], pa.int64())
        ends = pa.array([end for _, end in mine], pa.int64())
        assert peak_concurrency(starts, ends) == expected, session
        # A build whose runs are all empty has no row there; the ingest counts it as 0.
        assert in_one_pass.get(session, 0) == expected, session


def test_peak_concurrency_by_hand() -> None:
    # [0,10) and [5,15) overlap; [10,20) starts as [0,10) ends, so at most 2 at once; the
    # empty [15,15) runs for no time and counts for nothing.
    starts, ends = [0, 10, 5, 15], [10, 20, 15, 15]
    assert peak_concurrency(pa.array(starts), pa.array(ends)) == 2
    frame = pl.DataFrame({"session": ["x"] * 4, "begin": starts, "end": ends})
    assert session_peaks(frame).rows() == [("x", 2)]
    assert peak_concurrency(pa.array([3]), pa.array([3])) == 0


@SETTINGS
@given(
    st.lists(
        st.tuples(
            # Any target label, braces of a template included (no lone surrogates: they are
            # not text to Arrow).
            st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
            st.one_of(st.integers(1, 3), st.integers(1, _INT64)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_failure_texts_in_columns_are_failure_text(failures: list[tuple[str, int]]) -> None:
    frame = pl.DataFrame(failures, schema={"first": pl.String, "failed": pl.Int64}, orient="row")
    texts = frame.select(_failure_text(pl.col("first"), pl.col("failed"))).to_series()
    assert texts.to_list() == [failure_text(first, failed) for first, failed in failures]


def test_failure_text_by_hand() -> None:
    assert failure_text("//app:server", 1) == "target //app:server failed"
    assert failure_text("//a:{}", 2) == "target //a:{} failed and 1 more"
