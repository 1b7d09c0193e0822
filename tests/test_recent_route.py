"""`recent` reads the newest builds without polars; it must answer exactly as the analyzer,
and leave to it every store it should not read row by row."""

from __future__ import annotations

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
