"""Readers while maintenance runs: compaction, retention and the month packs in a loop in
another process,
while the analyzer, ``builder telemetry sql`` (DuckDB) and the Spark source count the
builds and their target rows, round after round. No reader may count a build twice or miss
one stored before it began, or count a build's target rows but in part.

The loop (``tests/maintenance_loop.py``) stores a late build into a closed day each round
(so that day is compacted again), and a build older than the retention keeps (so retention
removes a day); it writes how many late builds it stored after each round, which is what a
reader reads before and after its round to know which builds it must see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.ingest import ingest_jsonl
from tests import maintenance_loop as loop
from tests.conftest import local_spark, spark_unavailable

pytestmark = pytest.mark.torture
SCALE = int(os.environ.get("TORTURE_SCALE", "1"))
ROUNDS = 200 * SCALE
SPARK_ROUNDS = 20 * SCALE
PERMANENT = set(loop.permanent_builds())


class Maintenance:
    """The maintenance loop, running: how many late builds it had stored, at any moment."""

    def __init__(self, store: Path, progress: Path) -> None:
        self.progress = progress
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.maintenance_loop", str(store), str(progress)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "ready\n"

    def stored(self) -> tuple[int, int]:
        """The late builds stored and the compactions done by the last whole round."""
        lines = self.progress.read_text().splitlines()
        late, compactions, *_ = (int(n) for n in lines[-1].split())
        return late, compactions

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=120) == 0
        removed, packed = (int(n) for n in self.progress.read_text().splitlines()[-1].split()[2:])
        assert removed > 0  # retention did remove days meanwhile
        assert packed > 0  # and last month was packed again


@pytest.fixture
def maintenance(tmp_path: Path) -> Iterator[tuple[Path, Maintenance]]:
    store = tmp_path / "store"
    kept = loop.storage(store)
    for lines in loop.permanent_builds().values():  # a file pair per build, as recorded
        assert ingest_jsonl(kept, lines, apply_retention=False).sessions == 1
    running = Maintenance(store, tmp_path / "progress")
    try:
        yield store, running
    finally:
        running.stop()


def _check(ids: list[str], before: int, after: int) -> None:
    """The builds a reader counted: each once, every one stored before it began, none
    stored after it ended; the old builds retention removes may be there or not."""
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert set(ids) >= PERMANENT
    late = {int(i.split("-")[1]) for i in ids if i.startswith("late-")}
    assert set(range(before)) <= late, sorted(set(range(before)) - late)
    assert all(n < after for n in late)


def _rounds(running: Maintenance, rounds: int, read: Callable[[], list[str]]) -> tuple[int, int]:
    """Run ``read`` ``rounds`` times, checking each answer; returns how many rounds a
    maintenance round ended during, and how many compactions the loop did meanwhile."""
    overlapped = 0
    first = running.stored()[1]
    for _ in range(rounds):
        before = running.stored()[0]
        ids = read()
        after = running.stored()[0] + 1  # a round under way may have stored the next one
        _check(ids, before, after)
        overlapped += after - 1 > before
    return overlapped, running.stored()[1] - first


def test_the_analyzer_counts_every_build_once_while_maintenance_runs(
    maintenance: tuple[Path, Maintenance],
) -> None:
    store, running = maintenance
    analyzer = TelemetryAnalyzer(loop.storage(store))

    def read() -> list[str]:
        # The summary's bottlenecks read the target rows (or the rollups) of exactly the
        # builds it counts: two executed targets each, none left out, none counted twice.
        summary = analyzer.summary(top=1000)
        assert sum(b.runs for b in summary.bottlenecks) == 2 * summary.total_builds
        assert summary.total_builds >= len(PERMANENT)
        ids: list[str] = analyzer.sessions()["session_id"].to_list()
        return ids

    overlapped, compactions = _rounds(running, ROUNDS, read)
    assert overlapped > 0 and compactions > 0


@pytest.mark.parametrize(
    "route",
    [
        "arro3, read whole",  # as `builder telemetry sql` reads today's files
        "pyarrow, scanned",  # as it reads many rows, or in a process that loaded pyarrow
    ],
)
def test_sql_counts_every_build_once_while_maintenance_runs(
    maintenance: tuple[Path, Maintenance], route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import telemetry.duckdb  # duckdb is a dev dependency: CI runs this
    from telemetry import integrity
    from telemetry.duckdb import query

    monkeypatch.setattr(integrity, "without_pyarrow", lambda: route.startswith("arro3"))
    if route.endswith("scanned"):
        monkeypatch.setattr(telemetry.duckdb, "_IN_MEMORY_ROWS", 0)
    store, running = maintenance
    kept = loop.storage(store)
    sql = """
        select (select list(session_id) from sessions) as ids,
               (select count(*) from targets) as target_rows,
               (select sum(total_targets) from sessions) as expected_rows
    """

    def read() -> list[str]:
        answer = query(kept, sql).to_pylist()[0]
        assert answer["target_rows"] == answer["expected_rows"] == loop.TARGETS * len(answer["ids"])
        ids: list[str] = answer["ids"]
        return ids

    overlapped, compactions = _rounds(running, ROUNDS, read)
    assert overlapped > 0 and compactions > 0


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        spark_unavailable("pyspark is not installed (pip install -e '.[dev]')")
    with local_spark("builder-telemetry maintenance races") as session:
        yield session


def test_the_spark_source_counts_every_build_once_while_maintenance_runs(
    spark: Any, maintenance: tuple[Path, Maintenance]
) -> None:
    store, running = maintenance

    def load(dataset: str) -> Any:
        return spark.read.format("builder-telemetry").option("dataset", dataset).load(str(store))

    def read() -> list[str]:
        ids: list[str] = [row.session_id for row in load("sessions").select("session_id").collect()]
        return ids

    def read_targets() -> list[str]:
        # A load of its own, so a snapshot of its own: every build it has, it has whole.
        counts = load("targets").groupBy("session_id").count().collect()
        assert {row["count"] for row in counts} <= {loop.TARGETS}
        return [row.session_id for row in counts]

    overlapped, compactions = _rounds(running, SPARK_ROUNDS, read)
    overlapped_targets, more = _rounds(running, SPARK_ROUNDS, read_targets)
    assert overlapped + overlapped_targets > 0 and compactions + more > 0
