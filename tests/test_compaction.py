"""Compaction and the daily rollups: a compacted store answers every question with exactly the
numbers of the same builds stored one file per build, whatever stops it, whatever is written
beside it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.compaction import compact
from telemetry import maintenance, snapshot
from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import CorruptFileWarning, StorageError
from telemetry.ingest import ingest_jsonl
from telemetry.layout import Layout
from telemetry.recent import newest_builds
from telemetry.storage import TelemetryStorage
from telemetry.window import Window
from tests import reference
from tests.conftest import FIXTURES, Runner
from tests.test_properties import SETTINGS

DAY = 86_400_000
T0 = 1761523200000  # 2025-10-27T00:00:00Z
LATER = datetime(2026, 1, 1, tzinfo=UTC)  # "now" for the stores: every day above is closed
REPO = Path(__file__).resolve().parent.parent


def _store(path: Path) -> TelemetryStorage:
    return TelemetryStorage(path, clock=lambda: LATER)


def _build(
    session: str, start: int, runs: list[tuple[int, str, int]], ok: bool = True
) -> list[str]:
    """One build's events: (target number, status, duration) per target, run one after
    another from ``start``."""
    events: list[dict[str, object]] = [
        {"event": "build_started", "session": session, "ts": start, "parallelism": 2}
    ]
    clock = start
    for number, status, duration in runs:
        target = f"//pkg:t{number}"
        if status in ("built", "failed"):
            events.append({"event": "target_started", "session": session, "ts": clock,
                           "target": target, "worker": 0})  # fmt: skip
            clock += duration
        events.append({"event": "target_finished", "session": session, "ts": clock,
                       "target": target, "status": status})  # fmt: skip
    events.append({"event": "build_finished", "session": session, "ts": clock + 1, "success": ok})
    return [json.dumps(e) for e in events]


def _store_each(storages: list[TelemetryStorage], builds: list[list[str]]) -> None:
    """Store every build on its own, as ``builder record`` does, in each store."""
    for lines in builds:
        for storage in storages:
            result = ingest_jsonl(storage, lines, apply_retention=False)
            assert result.sessions == 1 and not result.problems


class _Answers:
    """Every question the commands ask, compared with floating-point values equal to 12
    digits: polars may compute ``a / (b / c)`` one way over one chunk and another over many."""

    def __init__(self, storage: TelemetryStorage, window: Window) -> None:
        analyzer = TelemetryAnalyzer(storage, window=window)
        recent = analyzer.recent(4)
        self.values = (
            dataclasses.asdict(analyzer.summary(top=100)),
            analyzer.sessions().drop("date").to_dicts(),
            [dataclasses.asdict(build) for build in recent],
            # recent without polars answers the same, or leaves it to the analyzer
            [dataclasses.asdict(b) for b in newest_builds(storage, window, 4) or recent],
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Answers) and _close(self.values, other.values)

    def __repr__(self) -> str:
        return repr(self.values)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _answers(storage: TelemetryStorage, window: Window) -> _Answers:
    return _Answers(storage, window)


# How many listings and checks of the files ``_answers`` makes (see the test that counts them).
LISTINGS = 15
CHECKS = 9

WINDOWS = [
    Window(),
    Window.parse("2025-10-28", None),  # whole days
    Window.parse("2025-10-27T12:00", "2025-10-29"),  # cuts the first day
    Window.parse(None, "2025-10-28T06:00"),  # cuts the second day
]

build_plans = st.lists(
    st.tuples(
        st.integers(0, 3),  # day
        st.integers(0, 23),  # hour
        st.lists(
            st.tuples(
                st.integers(0, 5),
                st.sampled_from(["built", "cached", "failed", "skipped"]),
                st.integers(0, 4).map(lambda x: x * 250),
            ),
            max_size=6,
        ),
        st.booleans(),  # stored after the first compaction
    ),
    min_size=1,
    max_size=10,
)


@SETTINGS
@given(build_plans)
def test_a_compacted_store_answers_exactly_as_one_file_per_build_does(
    plans: list[tuple[int, int, list[tuple[int, str, int]], bool]],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        raw, packed = _store(Path(folder, "raw")), _store(Path(folder, "packed"))
        builds = [
            (_build(f"b{n}", T0 + day * DAY + hour * 3_600_000 + n, runs), late)
            for n, (day, hour, runs, late) in enumerate(plans)
        ]
        _store_each([raw, packed], [lines for lines, late in builds if not late])
        compact(packed)
        _store_each([raw, packed], [lines for lines, late in builds if late])
        for step in ("late builds beside compacted days", "compacted again"):
            for window in WINDOWS:
                assert _answers(packed, window) == _answers(raw, window), (step, window)
            compact(packed)
        # A second route: the reference implementation's bottlenecks from the events.
        want = reference.bottlenecks(reference.sessions_from_lines(
            [line for lines, _ in builds for line in lines]))  # fmt: skip
        got = TelemetryAnalyzer(packed).bottlenecks(top=100)
        assert [(b.target, b.mean_ms) for b in got] == [(t, pytest.approx(m)) for t, m in want]
        # Every closed day is now one file per dataset, with its rollup.
        for dataset in ("sessions", "targets", "daily_targets"):
            days = packed.days(dataset)
            assert len(_names(packed, dataset)) == len(days) == len(raw.days("sessions"))


def _history(*storages: TelemetryStorage, days: int = 3, per_day: int = 4) -> None:
    builds = []
    for day in range(days):
        for n in range(per_day):
            runs = [(t, ("cached", "built", "failed", "skipped")[(t + n) % 4], 100 * (t + day + 1))
                    for t in range(6)]  # fmt: skip
            builds.append(_build(f"d{day}-{n}", T0 + day * DAY + n * 3_600_000, runs))
    _store_each(list(storages), builds)


def _names(storage: TelemetryStorage, dataset: str) -> list[str]:
    """The data files of a dataset's day folders (not those taken out, kept hidden)."""
    return sorted(p.name for p in (storage.dir / dataset).glob("date=*/*.arrow"))


def _age(storage: TelemetryStorage, *, seconds: float) -> None:
    """Make every data file of the store ``seconds`` older."""
    for path in storage.dir.rglob("*.arrow"):
        moment = path.stat().st_mtime - seconds
        os.utime(path, (moment, moment))


def test_the_summary_reads_rollups_for_whole_days_and_target_rows_for_cut_ones(
    tmp_path: Path,
) -> None:
    raw, packed = _store(tmp_path / "raw"), _store(tmp_path / "packed")
    _history(raw, packed)
    done = compact(packed)
    assert [(d.day, d.files, d.sessions, d.targets) for d in done] == [
        (date(2025, 10, 27 + n), 4, 4, 24) for n in range(3)
    ]
    # With the compacted targets files gone, whole days can only be answered from rollups.
    for stored in packed.files("targets"):
        stored.path.unlink()
    whole = Window.parse("2025-10-28", "2025-10-29")
    assert (
        TelemetryAnalyzer(packed, window=whole).bottlenecks()
        == TelemetryAnalyzer(raw, window=whole).bottlenecks()
        != ()
    )
    cut = Window.parse("2025-10-28T01:00", "2025-10-28T23:00")
    assert TelemetryAnalyzer(packed, window=cut).bottlenecks() == ()
    assert TelemetryAnalyzer(raw, window=cut).bottlenecks() != ()


def test_compaction_is_idempotent_leaves_today_alone_and_merges_later_builds(
    tmp_path: Path,
) -> None:
    raw, packed = _store(tmp_path / "raw"), _store(tmp_path / "packed")
    _history(raw, packed)
    today = TelemetryStorage(packed.dir, clock=lambda: datetime(2025, 10, 29, 12, tzinfo=UTC))
    assert [d.day for d in compact(today)] == [date(2025, 10, 27), date(2025, 10, 28)]
    assert len(packed.files("sessions", days=[date(2025, 10, 29)])) == 4  # still open
    assert compact(today) == []
    before = _names(packed, "sessions")
    late = _build("late", T0 + DAY + 5, [(9, "built", 700)])
    _store_each([raw, packed], [late])
    assert _answers(packed, Window()) == _answers(raw, Window())
    assert [(d.day, d.files, d.sessions) for d in compact(today)] == [(date(2025, 10, 28), 2, 5)]
    assert len(_names(packed, "sessions")) == len(before)
    assert _answers(packed, Window()) == _answers(raw, Window())


class _Stop(Exception):
    pass


@pytest.mark.parametrize("stop_at", ["targets", "daily_targets", "sessions", "removal"])
def test_a_compaction_stopped_at_any_step_reads_the_same_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: str
) -> None:
    raw, packed = _store(tmp_path / "raw"), _store(tmp_path / "packed")
    _history(raw, packed, days=1)
    original_write = maintenance.write_file
    original_remove = maintenance._remove_stems

    def write(store: Layout, dataset: str, *args: Any, **kwargs: Any) -> Path:
        path = original_write(store, dataset, *args, **kwargs)  # type: ignore[arg-type]
        if dataset == stop_at:
            raise _Stop  # stopped right after this file was renamed into place
        return path

    def remove(store: Layout, day: date, stems: set[str]) -> None:
        # Stopped after the first replaced build's files went.
        original_remove(store, day, {sorted(stems)[0]})
        raise _Stop

    monkeypatch.setattr(maintenance, "write_file", write)
    monkeypatch.setattr(maintenance, "_remove_stems", remove)
    with pytest.raises(_Stop):
        compact(packed)
    monkeypatch.undo()
    assert _answers(packed, Window()) == _answers(raw, Window())
    committed = stop_at in ("sessions", "removal")
    again = compact(packed)
    assert [d.sessions for d in again if d.merged] == ([] if committed else [4])
    assert sum(d.copies for d in again) == 3  # the next run finishes the work: copies too
    assert _answers(packed, Window()) == _answers(raw, Window())
    # What a stop before the commit left (a targets file, a rollup, of no build) is read by
    # nobody, and retention removes it once it is an hour old.
    left = [len(_names(packed, d)) - 1 for d in ("sessions", "targets", "daily_targets")]
    assert left == [0, int(not committed), int(stop_at == "daily_targets")]
    _age(packed, seconds=7200)
    packed.apply_retention()
    assert [len(_names(packed, d)) for d in ("sessions", "targets", "daily_targets")] == [1, 1, 1]
    assert _answers(packed, Window()) == _answers(raw, Window())


def test_compactions_killed_at_random_moments_never_change_an_answer(tmp_path: Path) -> None:
    """SIGKILL a real compaction process at a random moment, over and over, storing new builds
    between kills: every state it leaves reads like the store never compacted."""
    import random

    rng = random.Random(7)
    raw, packed = _store(tmp_path / "raw"), _store(tmp_path / "packed")
    _history(raw, packed, days=6, per_day=6)
    program = (
        "import sys\n"
        "from datetime import datetime, UTC\n"
        "from pipelines.compaction import compact\n"
        "from telemetry.storage import TelemetryStorage\n"
        "storage = TelemetryStorage(sys.argv[1], clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))\n"
        "print('ready', flush=True)\n"
        "compact(storage)\n"
        "print('done', flush=True)\n"
    )

    def run(kill_after: float | None) -> tuple[bool, float]:
        """A compaction process, killed ``kill_after`` seconds after it is ready to start;
        whether it finished, and when."""
        child = subprocess.Popen(
            [sys.executable, "-c", program, str(packed.dir)],
            stdout=subprocess.PIPE, cwd=REPO, text=True,
        )  # fmt: skip
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        ready = time.perf_counter()
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
        return child.returncode == 0, time.perf_counter() - ready

    def store_late(n: int) -> None:  # one more build in every day: each run merges them all
        _store_each(
            [raw, packed],
            [_build(f"late{n}-{day}", T0 + day * DAY + 7 + n, [(n, "built", 50 + n)])
             for day in range(6)],
        )  # fmt: skip

    done, whole = run(None)  # how long a whole run takes here, to sweep the kills across it
    assert done and _answers(packed, Window()) == _answers(raw, Window())
    finished = 0
    for kill in range(12):
        store_late(kill)
        finished += run(rng.uniform(0, whole))[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error", CorruptFileWarning)  # nothing half-written shows
            assert _answers(packed, Window()) == _answers(raw, Window()), kill
    compact(packed)
    assert _answers(packed, Window()) == _answers(raw, Window())
    assert len(_names(packed, "sessions")) == 6
    assert finished < 12  # kills landed inside compactions


def test_a_damaged_file_is_left_in_place_for_repair(tmp_path: Path) -> None:
    packed = _store(tmp_path / "packed")
    _history(packed, days=1)
    victim = packed.files("targets")[1].path
    victim.write_bytes(victim.read_bytes()[:-30])  # a truncated footer
    with pytest.warns(CorruptFileWarning):
        [done] = compact(packed)
    assert (done.files, done.sessions) == (3, 3)
    assert victim.exists()
    problems = [path for path, problem in packed.verify() if problem]
    assert problems == [victim]
    # The damaged file stays, and the day is not merged again and again because of it.
    merged = _names(packed, "sessions")
    with pytest.warns(CorruptFileWarning):
        assert compact(packed) == []
    assert _names(packed, "sessions") == merged


def test_compaction_refuses_to_run_without_file_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import telemetry.locks

    packed = _store(tmp_path / "packed")
    _history(packed, days=1)
    monkeypatch.setattr(telemetry.locks, "fcntl", None)
    with pytest.raises(StorageError, match="needs file locks"):
        compact(packed)
    assert len(packed.files("sessions")) == 4


def test_a_day_removed_by_retention_during_compaction_does_not_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = _store(tmp_path / "packed")
    _history(packed, days=2)
    original = TelemetryStorage.write_compacted

    def retention_meanwhile(self: TelemetryStorage, day: date, *args: object) -> object:
        self.remove_day(day)
        return original(self, day, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(TelemetryStorage, "write_compacted", retention_meanwhile)
    assert compact(packed) == []
    assert packed.days("sessions") == [] and _names(packed, "targets") == []
    assert _names(packed, "daily_targets") == []


def test_a_version_1_store_is_compacted_into_this_version_with_the_same_numbers(
    tmp_path: Path,
) -> None:
    raw = _store(tmp_path / "raw")
    shutil.copytree(FIXTURES / "store-v1", raw.dir)
    packed = _store(tmp_path / "packed")
    shutil.copytree(FIXTURES / "store-v1", packed.dir)
    assert compact(packed)
    assert _answers(packed, Window()) == _answers(raw, Window())


def test_writers_storing_into_a_day_being_compacted_lose_nothing(tmp_path: Path) -> None:
    packed = _store(tmp_path / "packed")
    program = (
        "import json, sys\n"
        "from telemetry.ingest import ingest_jsonl\n"
        "from telemetry.storage import TelemetryStorage\n"
        "from tests.test_compaction import _build, T0\n"
        "storage = TelemetryStorage(sys.argv[1])\n"
        "w = int(sys.argv[2])\n"
        "for n in range(25):\n"
        "    lines = _build(f'w{w}-{n}', T0 + n * 60_000 + w, [(n % 5, 'built', 10 + n)])\n"
        "    assert ingest_jsonl(storage, lines, apply_retention=False).sessions == 1\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", program, str(packed.dir), str(w)], cwd=REPO)
        for w in range(3)
    ]
    rounds = 0
    while any(w.poll() is None for w in writers) or rounds == 0:
        compact(packed)
        rounds += 1
    assert all(w.returncode == 0 for w in writers)
    compact(packed)
    sessions = TelemetryAnalyzer(packed).sessions()
    assert sessions.height == 75 and sessions["session_id"].n_unique() == 75
    [bottleneck] = [
        b for b in TelemetryAnalyzer(packed).bottlenecks(top=5) if b.target == "//pkg:t4"
    ]
    # Builds n = 4, 9, ..., 24 of each writer ran //pkg:t4 for 10 + n ms.
    assert (bottleneck.runs, bottleneck.mean_ms) == (15, sum(10 + n for n in range(4, 25, 5)) / 5)
    assert len(packed.files("sessions")) == 1


def test_compact_command(cli: Runner, tmp_path: Path) -> None:
    empty = cli("telemetry", "compact")
    assert (empty.code, empty.stdout) == (0, f"No telemetry data in {tmp_path / 'telemetry'}.\n")
    assert not (tmp_path / "telemetry").exists()
    _history(TelemetryStorage(tmp_path / "telemetry"))
    summary = cli("telemetry", "summary").stdout
    done = cli("telemetry", "compact")
    assert (done.code, done.stderr) == (0, "")
    assert done.stdout == (
        f"Compacted 3 days in {tmp_path / 'telemetry'}: 12 builds from 12 files into 3.\n"
    )
    again = cli("telemetry", "compact")
    assert again.stdout == (
        f"Nothing to compact in {tmp_path / 'telemetry'}: every closed day is compacted.\n"
    )
    assert cli("telemetry", "summary").stdout == summary
    assert cli("telemetry", "verify").code == 0


@pytest.mark.parametrize(
    ("step", "call"),
    # Every listing and every check the commands below make.
    [("_listed", n) for n in range(1, LISTINGS + 1)]
    + [("readable", n) for n in range(1, CHECKS + 1)],
)
def test_a_compaction_between_a_readers_steps_changes_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, call: int
) -> None:
    """Readers list, check, then read files; a compaction that commits between any two of
    those steps (here: just before the reader's ``call``-th listing or check) must change
    nothing they answer: a day neither counted twice nor left out."""
    raw, packed = _store(tmp_path / "raw"), _store(tmp_path / "packed")
    _history(raw, packed, days=2, per_day=2)
    compact(packed)
    late = [_build(f"late-{day}", T0 + day * DAY + 9, [(1, "built", 999)]) for day in range(2)]
    _store_each([raw, packed], late)  # the next compaction merges them into new day files
    want = _answers(raw, Window())
    original = getattr(snapshot, step)
    calls = 0

    def meddling(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            monkeypatch.setattr(snapshot, step, original)
            compact(packed)
            monkeypatch.setattr(snapshot, step, meddling)
        return original(*args, **kwargs)

    monkeypatch.setattr(snapshot, step, meddling)
    got = _answers(packed, Window())
    monkeypatch.setattr(snapshot, step, original)
    assert calls >= call  # it did compact meanwhile:
    assert len(packed.snapshot().committed("sessions")) == 2
    assert got == want


def test_the_readers_steps_are_all_counted() -> None:
    """The test above meddles before every listing and check the readers make: as many as
    there are (counted on a store like its own), not fewer."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        packed = _store(Path(folder) / "packed")
        _history(packed, days=2, per_day=2)
        compact(packed)
        late = [_build(f"late-{d}", T0 + d * DAY + 9, [(1, "built", 999)]) for d in range(2)]
        _store_each([packed], late)
        counted = {"_listed": 0, "readable": 0}
        originals = {name: getattr(snapshot, name) for name in counted}

        def counting(name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                counted[name] += 1
                return originals[name](*args, **kwargs)

            return call

        with pytest.MonkeyPatch.context() as patch:
            for name in counted:
                patch.setattr(snapshot, name, counting(name))
            _answers(packed, Window())
    assert counted == {"_listed": LISTINGS, "readable": CHECKS}
