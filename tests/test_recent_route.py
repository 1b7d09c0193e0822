"""`recent` reads the newest builds without polars; it must answer exactly as the analyzer,
and leave to it every store it should not read row by row."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import telemetry.recent
from pipelines.compaction import compact
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import CorruptFileWarning
from telemetry.recent import newest_builds
from telemetry.window import Window
from tests.conftest import Runner, process_env
from tests.test_compaction import (
    DAY,
    T0,
    WINDOWS,
    _build,
    _history,
    _store,
    _store_each,
    build_plans,
)
from tests.test_properties import SETTINGS


@SETTINGS
@given(build_plans, st.integers(1, 12), st.booleans())
def test_the_newest_builds_are_the_analyzers(
    plans: list[tuple[int, int, list[tuple[int, str, int]], bool]], count: int, packed: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        storage = _store(Path(folder))
        builds = [
            _build(f"b{n}", T0 + day * DAY + hour * 3_600_000 + n, runs, ok=n % 3 != 0)
            for n, (day, hour, runs, _) in enumerate(plans)
        ]
        _store_each([storage], builds)
        if packed:
            compact(storage)
        for window in WINDOWS:
            got = newest_builds(storage, window, count)
            assert got == TelemetryAnalyzer(storage, window=window).recent(count), window


def test_many_rows_are_left_to_the_analyzer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _store(tmp_path)
    _history(storage, days=2, per_day=3)  # 6 target rows a build
    assert newest_builds(storage, Window(), 2) == TelemetryAnalyzer(storage).recent(2)
    # The newest day holds 3 session rows and 18 target rows: room for the first only.
    monkeypatch.setattr(telemetry.recent, "MAX_ROWS", 20)
    assert newest_builds(storage, Window(), 2) is None
    monkeypatch.setattr(telemetry.recent, "MAX_ROWS", 2)
    assert newest_builds(storage, Window(), 1) is None


def test_an_unreadable_file_is_left_to_the_analyzer_which_warns_once(tmp_path: Path) -> None:
    storage = _store(tmp_path / "t")
    _history(storage, days=1, per_day=2)
    damaged = storage.files("sessions")[0].path
    damaged.write_bytes(b"not arrow")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the route that declines says nothing
        assert newest_builds(storage, Window(), 5) is None
    result = subprocess.run(
        [sys.executable, "-m", "telemetry", "telemetry", "recent"],
        env=process_env(storage.dir),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "Recent 1 Build:" in result.stdout
    assert result.stderr.count("Warning:") == 1 and str(damaged) in result.stderr
    with pytest.warns(CorruptFileWarning):
        assert len(TelemetryAnalyzer(storage).recent(5)) == 1


def test_recent_does_not_load_polars(small_cli: Runner, tmp_path: Path) -> None:
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('polars' in sys.modules, file=sys.stderr))\n"
        "from telemetry.cli import main\n"
        "main(['telemetry', 'recent', '2'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=process_env(tmp_path / "telemetry"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("Recent 2 Builds:")
    assert done.stderr == "False\n"


def test_rates_are_the_same_numbers_as_the_analyzers_columns() -> None:
    """Row by row and in columns, the rates are the same floating-point numbers (polars
    turns a division by a constant into a multiplication, which rounds differently)."""
    import random

    import polars as pl

    from telemetry.analyzer import with_session_metrics
    from telemetry.model import rates

    rng = random.Random(5)
    rows = [
        {
            "built": rng.randint(0, 500),
            "cached": rng.randint(0, 500),
            "failed": rng.randint(0, 3),
            # Often none at all, as from a tool without per-target events: no rates.
            "total_targets": rng.choice([0, rng.randint(0, 2000)]),
            "duration_ms": rng.choice([0, rng.randint(1, 10**7)]),
            "executed_ms": rng.randint(0, 10**8),
            "parallelism": rng.choice([None, rng.randint(1, 64)]),
            "peak_concurrency": rng.randint(0, 64),
        }
        for _ in range(3000)
    ]
    frame = with_session_metrics(
        pl.DataFrame(rows, schema_overrides={"parallelism": pl.Int32}).lazy()
    )
    for row in frame.collect().iter_rows(named=True):
        assert rates(row) == (
            row["cache_hit_rate"],
            row["parallelism_utilization"],
            row["targets_per_second"],
        )


def test_a_build_without_targets_has_no_rates_on_either_route(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    # A tool that reports no targets (``record -- make``), after one that does.
    _store_each([storage], [_build("ninja", T0, [(1, "cached", 0)]), _build("make", T0 + 1, [])])
    builds = newest_builds(storage, Window(), 2)
    assert builds is not None and builds == TelemetryAnalyzer(storage).recent(2)
    assert [
        (b.session_id, b.cache_hit_rate, b.parallelism_utilization, b.targets_per_second)
        for b in builds
    ] == [("make", None, None, None), ("ninja", 100.0, 0.0, 1000.0)]


def test_a_session_id_reused_on_another_day_brings_only_its_own_targets(tmp_path: Path) -> None:
    from telemetry.collector import TelemetryCollector

    storage = _store(tmp_path)
    for start, target, ms in ((T0 + 3_600_000, "//old:slow", 9000), (T0 + DAY, "//new:fast", 0)):
        # One collector each, as two processes: one collector refuses an id used again.
        collector = TelemetryCollector(storage)
        collector.build_started("ci-1", ts=start)
        collector.target_finished("ci-1", target, ts=start + ms, status="built", duration_ms=ms)
        collector.build_finished("ci-1", ts=start + ms + 1, success=True)
    window = Window.parse("2025-10-27T12:00", None)
    [build] = newest_builds(storage, window, 5) or []
    assert build == TelemetryAnalyzer(storage, window=window).recent(5)[0]
    # A target that took no time is 0 ms, not -0 ms.
    assert [(b.target, str(b.mean_ms)) for b in build.bottlenecks] == [("//new:fast", "0.0")]


def test_damaged_bytes_anywhere_are_left_to_the_analyzer(tmp_path: Path) -> None:
    """Flip bytes all through a sessions file and a targets file: the rows are either read
    as the analyzer reads them or left to it, never a crash or a wrong answer."""
    pristine = _store(tmp_path / "pristine")
    _history(pristine, days=1, per_day=2)
    for dataset in ("sessions", "targets"):
        size = pristine.files(dataset)[0].path.stat().st_size
        for at in range(0, size, max(1, size // 60)):
            storage = _store(tmp_path / f"{dataset}-{at}")
            shutil.copytree(pristine.dir, storage.dir)
            victim = storage.files(dataset)[0].path
            data = bytearray(victim.read_bytes())
            data[at] ^= 0xFF
            victim.write_bytes(bytes(data))
            got = newest_builds(storage, Window(), 5)
            if got is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    assert got == TelemetryAnalyzer(storage).recent(5), (dataset, at)
