"""Scheduled jobs killed at any moment: real ``builder telemetry jobs run all``, ``jobs run
retention`` and ``builder telemetry merge`` processes SIGKILLed at random moments, over and
over, while other processes store and read builds beside them.

Whatever moment a kill lands, the store answers as a store holding the builds it should,
stored once each and never maintained: no build that retention keeps is lost, none is
counted twice, each has all its targets, a day is removed whole or not at all, and
``verify`` finds nothing damaged. Run again, the job finishes the work: the store then
answers exactly as one whose jobs were never killed.

Each kill comes a delay after the process began its work (it waits for a lock the test holds
until then), drawn by ``random.Random(SEED)`` (a failure replays with the same delays) across
the time an uninterrupted run took here. Where in the work a kill lands depends on the
machine; no assertion does.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.compaction import compact
from pipelines.jobs import NAMES
from pipelines.rollup import rollup
from telemetry import locks
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, Runner, process_env
from tests.test_compaction import _age, _build, _close

SEED = 20251027
DAY = 86_400_000
T0 = 1761523200000  # 2025-10-27T00:00:00Z
FIRST = date(2025, 10, 27)
STATUSES = ("built", "cached", "failed", "skipped")

Sessions = list[dict[str, Any]]


class _Builds:
    """The builds of a test, by session id: their events and their day."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.day: dict[str, date] = {}

    def add(self, session: str, day: int, minute: int) -> str:
        """A build on ``FIRST`` + ``day``, started ``minute`` minutes into it, whose targets'
        statuses and durations vary with it."""
        seed = len(self.lines)
        runs = [
            (t, STATUSES[(t + seed) % 4], 100 * (1 + (t + 2 * seed) % 7))
            for t in range(2 + seed % 4)
        ]
        self.lines[session] = _build(session, T0 + day * DAY + minute * 60_000, runs, seed % 5 != 4)
        self.day[session] = FIRST + timedelta(days=day)
        return session

    def events(self, sessions: Iterable[str]) -> list[str]:
        return [line for session in sorted(sessions) for line in self.lines[session]]

    def store(self, folder: Path, sessions: Iterable[str]) -> None:
        """Store ``sessions`` in ``folder`` in this process, one file a day, nothing removed."""
        chosen = sorted(sessions)
        stored = ingest_jsonl(TelemetryStorage(folder), self.events(chosen), apply_retention=False)
        assert stored.sessions == len(chosen) and not stored.problems


def _run(
    args: list[str],
    env: dict[str, str],
    kill_after: float | None,
    *,
    held: contextlib.AbstractContextManager[object],
) -> tuple[bool, float]:
    """Run ``builder telemetry ARGS``, SIGKILLed ``kill_after`` seconds after its work began
    (never, when None); whether it finished, and how long it ran from there. ``held`` is a
    lock the process takes where the work to kill begins: held here until the process waits
    for it (Python and the libraries loaded), so that the delay counts from there, whatever
    the machine's speed. A run that finishes must succeed, saying nothing on stderr."""
    with held:
        child = subprocess.Popen(
            [BUILDER, "telemetry", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        while child.poll() is None and not _waiting(child.pid):
            time.sleep(0.005)
        working = time.perf_counter()
    if kill_after is not None:
        try:
            child.wait(timeout=max(0.0, working + kill_after - time.perf_counter()))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=300)
    took = time.perf_counter() - working
    if child.returncode == -signal.SIGKILL:
        return False, took
    assert (child.returncode, err) == (0, ""), (args, out, err)
    return True, took


def _waiting(pid: int) -> bool:
    """Whether the process ``pid`` waits for a flock (a ``->`` line of /proc/locks)."""
    return any(
        "->" in fields and str(pid) in fields
        for fields in map(str.split, Path("/proc/locks").read_text().splitlines())
    )


def _moment(rng: random.Random, whole: float) -> float:
    """A delay within ``whole``: half the time uniform across it, half the time log-uniform
    (as likely in its first thousandth as in its last nine tenths). The steps a kill should
    land in may be spread across a run (a merge's writes, after it read each source) or be
    its first few milliseconds (retention's renames), before it logs and says what it did."""
    spread = rng.random() if rng.random() < 0.5 else 10 ** rng.uniform(-3, 0)
    return whole * spread


def _exported(cli: Runner, store: Path) -> Sessions:
    done = cli("telemetry", "export", "--dir", str(store))
    sessions: Sessions = json.loads(done.stdout)["sessions"]
    assert done.code == 0 and (done.stderr == "" or not sessions), done.stderr
    return sessions


def _summary(cli: Runner, store: Path) -> dict[str, Any]:
    done = cli("telemetry", "summary", "--format", "json", "--dir", str(store))
    summary: dict[str, Any] = json.loads(done.stdout)
    assert done.code == 0 and (done.stderr == "" or summary["totalBuilds"] == 0), done.stderr
    return summary


def _verified(cli: Runner, store: Path) -> None:
    done = cli("telemetry", "verify", "--dir", str(store))
    assert (done.code, done.stderr) == (0, "") and done.stdout.endswith(": all readable.\n"), (
        done.stdout
    )


def _holds(sessions: Sessions, everything: Sessions, *, may: set[str], must: set[str]) -> set[str]:
    """The ids of an export's ``sessions``, checked: each build once, none of ``must``
    missing, none but ``may``, and each exactly as ``everything`` (the export of a store
    that had every build stored once, never maintained) has it, in its order."""
    ids = [session["sessionId"] for session in sessions]
    held = set(ids)
    assert len(ids) == len(held), f"counted twice: {sorted(i for i in held if ids.count(i) > 1)}"
    assert must <= held, f"lost: {sorted(must - held)}"
    assert held <= may, f"never stored: {sorted(held - may)}"
    assert _close(sessions, [s for s in everything if s["sessionId"] in held])
    return held


class _Summaries:
    """The summary of a store that had some builds stored once each, nothing killed: with
    ``gone`` days, every closed day rolled up (as the rollup job does before retention),
    then those days removed whole. What a store a kill left must answer, holding the other
    days' builds (a summary reads a day retention removed from its rollup)."""

    def __init__(self, cli: Runner, folder: Path, builds: _Builds) -> None:
        self.cli, self.folder, self.builds = cli, folder, builds
        self.known: dict[tuple[frozenset[str], frozenset[date]], dict[str, Any]] = {}

    def of(self, sessions: set[str], gone: Iterable[date] = ()) -> dict[str, Any]:
        key = (frozenset(sessions), frozenset(gone))
        if key not in self.known:
            store = self.folder / f"exactly-{len(self.known)}"
            if sessions:
                self.builds.store(store, sessions)
            if key[1]:
                storage = TelemetryStorage(store)
                rollup(storage)
                for day in key[1]:
                    storage.remove_day(day)
            self.known[key] = _summary(self.cli, store)
        return self.known[key]


def _logged(store: Path) -> list[dict[str, Any]]:
    """The run log's entries: every line is whole JSON but a last one that a killed run
    left half written (without its newline), which is not read."""
    path = store / "jobs" / "runs.jsonl"
    if not path.exists():
        return []
    *whole, _half = path.read_text().split("\n")
    return [json.loads(line) for line in whole]


def _log_holds_runs(
    cli: Runner, store: Path, jobs: tuple[str, ...], *, finished: int, started: int
) -> None:
    """The run log of ``started`` runs of ``jobs``, ``finished`` of them to the end: each
    logged the jobs it finished, in their order, all ok; ``jobs list`` reads it."""
    entries = _logged(store)
    assert finished * len(jobs) <= len(entries) <= started * len(jobs)
    previous = -1
    for entry in entries:  # a run's next job, or the next run's first
        assert entry["job"] in jobs and entry["outcome"] == "ok", entry
        position = jobs.index(entry["job"])
        assert position in (0, previous + 1), [e["job"] for e in entries]
        previous = position
    listed = cli("telemetry", "jobs", "list", "--dir", str(store))
    assert (listed.code, listed.stderr) == (0, "")


def _nothing_waits(cli: Runner, store: Path) -> None:
    listed = cli("telemetry", "jobs", "list", "--format", "json", "--dir", str(store))
    assert [(job["job"], job["behindDays"]) for job in json.loads(listed.stdout)] == [
        (name, 0) for name in NAMES
    ]


def _rollups(cli: Runner, store: Path) -> list[list[dict[str, Any]]]:
    """The long-lived daily rollups: of days, and of days and targets."""
    tables = []
    for view in ("rollup_days", "rollup_targets"):
        query = f"select * from {view} order by all"
        done = cli("telemetry", "sql", query, "--format", "json", "--dir", str(store))
        assert (done.code, done.stderr) == (0, ""), done.stderr
        tables.append(json.loads(done.stdout))
    return tables


def _files_a_day(store: Path, dataset: str) -> dict[str, int]:
    days: dict[str, int] = {}
    for path in (store / dataset).glob("date=*/*.arrow"):
        days[path.parent.name] = days.get(path.parent.name, 0) + 1
    return days


def _keeping(first_kept: date) -> int:
    """BUILDER_TELEMETRY_RETENTION_DAYS that keeps the days from ``first_kept`` on, today."""
    return (datetime.now(UTC).date() - first_kept).days


def _cutoff(keep: int) -> date:
    """The first day retention keeps now (computed when asked: a test that runs past
    midnight lets retention take one day more, and asks for one day less)."""
    return datetime.now(UTC).date() - timedelta(days=keep)


def test_jobs_killed_at_random_moments_while_builds_are_stored_and_read(
    cli: Runner, tmp_path: Path
) -> None:
    """``jobs run all`` (compaction, rollups, retention) SIGKILLed at random moments, a
    round a night: each night retention keeps one day less of ten, and a writer stores a
    build into every day it keeps the next night too, while the jobs run and a reader
    exports."""
    rng = random.Random(SEED)
    rounds = 6
    builds = _Builds()
    history = {
        builds.add(f"h{day}-{n}", day, 60 * n) for day in range(rounds + 4) for n in range(3)
    }
    # Round r keeps the days from r + 1 on; no build comes into a day it or the next removes.
    keeps = [_keeping(FIRST + timedelta(days=r + 1)) for r in range(rounds + 1)]
    batches = [
        {builds.add(f"r{r}-{day}", day, 300 + r) for day in range(r + 2, rounds + 4)}
        for r in range(rounds + 1)
    ]
    store, reference = tmp_path / "store", tmp_path / "reference"
    for folder in (store, reference):
        builds.store(folder, history)
    for batch in batches:
        builds.store(reference, batch)
    everything = _exported(cli, reference)
    assert len(everything) == len(builds.lines)
    summaries = _Summaries(cli, tmp_path, builds)

    def kept(sessions: set[str], keep: int) -> set[str]:
        cutoff = _cutoff(keep)
        return {s for s in sessions if builds.day[s] >= cutoff}

    stored = set(history)
    finished = 0

    def round_(number: int, kill_after: float | None) -> float:
        nonlocal finished
        batch, keep = batches[number], keeps[number]
        feed = tmp_path / "batch.jsonl"
        feed.write_text("\n".join(builds.events(batch)) + "\n")
        plain = process_env(store)  # the writer and the reader keep everything
        writer = subprocess.Popen(
            [BUILDER, "telemetry", "ingest", str(feed)], env=plain, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        reader = subprocess.Popen(
            [BUILDER, "telemetry", "export"], env=plain, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        env = process_env(store, BUILDER_TELEMETRY_RETENTION_DAYS=str(keep))
        jobs_lock = locks.lock(store, locks.JOBS_LOCK)
        done, took = _run(["jobs", "run", "all"], env, kill_after, held=jobs_lock)
        finished += done
        wrote = writer.communicate(timeout=300)
        assert writer.returncode == 0 and wrote[0].startswith(f"Stored {len(batch)} builds "), wrote
        read = reader.communicate(timeout=300)
        assert (reader.returncode, read[1]) == (0, "")
        # The reader read while builds were stored and the jobs worked (or were killed).
        sessions = json.loads(read[0])["sessions"]
        _holds(sessions, everything, may=stored | batch, must=kept(stored, keep))
        stored.update(batch)
        # Every command after the kill reads a store that holds what it should, a day whole
        # or not at all, and answers as one that rolled up and removed the same days.
        held = _holds(_exported(cli, store), everything, may=stored, must=kept(stored, keep))
        gone = {builds.day[s] for s in stored - held}
        assert not gone & {builds.day[s] for s in held}, sorted(gone)
        assert _close(_summary(cli, store), summaries.of(stored, gone))
        _verified(cli, store)
        return took

    whole = round_(0, None)  # how long a whole run takes here, to sweep the kills across
    for number in range(1, rounds + 1):
        round_(number, _moment(rng, whole))
        _log_holds_runs(cli, store, NAMES, finished=finished, started=number + 1)

    # Run again to the end, the store answers as the reference with the same builds, whose
    # jobs ran once, never killed.
    for folder in (store, reference):
        env = process_env(folder, BUILDER_TELEMETRY_RETENTION_DAYS=str(keeps[-1]))
        assert _run(["jobs", "run", "all"], env, None, held=locks.lock(folder, locks.JOBS_LOCK))[0]
    exported = _exported(cli, store)
    assert _holds(exported, everything, may=stored, must=kept(stored, keeps[-1])) == kept(
        stored, keeps[-1]
    )
    assert _close(exported, _exported(cli, reference))
    assert _close(_summary(cli, store), _summary(cli, reference))
    assert _files_a_day(store, "sessions") == _files_a_day(reference, "sessions")
    assert set(_files_a_day(store, "sessions").values()) == {1}  # every day compacted
    rolled = _rollups(cli, reference)  # every day rolled up, those retention removed too
    assert [row["date"] for row in rolled[0]] == sorted({str(d) for d in builds.day.values()})
    assert _close(_rollups(cli, store), rolled)
    for folder in (store, reference):
        _verified(cli, folder)
        _nothing_waits(cli, folder)
    _log_holds_runs(cli, store, NAMES, finished=finished + 1, started=rounds + 2)


def test_a_merge_killed_at_random_moments_then_run_again_holds_each_build_once(
    cli: Runner, tmp_path: Path
) -> None:
    """Three overlapping sources (two stores and a Parquet export; every build in two of
    them, some in all three) merged into team stores, each merge SIGKILLed one to three
    times at random moments, then run to the end."""
    rng = random.Random(SEED + 1)
    builds = _Builds()
    by_day = [[builds.add(f"m{day}-{n}", day, 90 * n) for n in range(3)] for day in range(12)]
    held_by = {"one": range(8), "two": range(4, 12), "three": [*range(4), 6, *range(8, 12)]}
    for name, days in held_by.items():
        builds.store(tmp_path / name, {s for day in days for s in by_day[day]})
    exported = cli(
        "telemetry", "export", "--format", "parquet", "--output", str(tmp_path / "laptop"),
        "--dir", str(tmp_path / "three"),
    )  # fmt: skip
    assert exported.code == 0, exported.stderr
    sources = [f"{name}={tmp_path / name}" for name in ("one", "two", "laptop")]
    every = set(builds.lines)

    def merge(team: Path, kill_after: float | None) -> tuple[bool, float]:
        args = ["merge", *sources, "--into", str(team)]
        return _run(args, process_env(team), kill_after, held=TelemetryStorage(team).lock())

    reference = tmp_path / "reference"
    whole = merge(reference, None)[1]
    everything, summary = _exported(cli, reference), _summary(cli, reference)
    assert _holds(everything, everything, may=every, must=every) == every
    for round_ in range(4):
        team = tmp_path / f"team-{round_}"
        held: set[str] = set()
        for _ in range(1 + round_ % 3):
            done = merge(team, _moment(rng, whole))[0]
            # What one run merged stays: the next never takes a build out.
            held = _holds(_exported(cli, team), everything, may=every, must=every if done else held)
            _verified(cli, team)
        finished = subprocess.run(
            [BUILDER, "telemetry", "merge", *sources, "--into", str(team)],
            env=process_env(team), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert (finished.returncode, finished.stderr) == (0, "")
        added = len(every - held)
        assert finished.stdout.endswith(f": {added} build{'s' * (added != 1)} added.\n")
        assert _close(_exported(cli, team), everything)
        assert _close(_summary(cli, team), summary)
        _verified(cli, team)


def test_retention_killed_at_random_moments_removes_days_whole(cli: Runner, tmp_path: Path) -> None:
    """``jobs run retention`` SIGKILLed at random moments on copies of a store of 90 days
    of two builds each (in two files; the first ten days compacted before the second build
    came), where retention keeps the days from the 81st on and at most 12 builds."""
    rng = random.Random(SEED + 2)
    builds = _Builds()
    by_day = [[builds.add(f"t{day}-{n}", day, 100 * n) for n in range(2)] for day in range(90)]
    days = [FIRST + timedelta(days=n) for n in range(90)]
    template = tmp_path / "template"
    builds.store(template, {first for first, _ in by_day})
    assert compact(TelemetryStorage(template), days=days[:10])
    builds.store(template, {second for _, second in by_day})
    everything = _exported(cli, template)
    every = set(builds.lines)
    # Worked out apart: the days from the 81st on, then the oldest of them out until at
    # most 12 builds are left (two a day): the last six days.
    kept_days = days[80:]
    while len(kept_days) > 1 and 2 * len(kept_days) > 12:
        kept_days.pop(0)
    assert kept_days == days[84:]
    kept = {s for s in every if builds.day[s] in kept_days}
    keep = _keeping(days[80])
    summaries = _Summaries(cli, tmp_path, builds)

    def retention(store: Path, kill_after: float | None) -> tuple[bool, float]:
        env = process_env(
            store, BUILDER_TELEMETRY_RETENTION_DAYS=str(keep), BUILDER_TELEMETRY_MAX_SESSIONS="12"
        )
        # Retention waits for a write under way (holding the guard shared) before it
        # removes days: the kills come after it starts to.
        held = locks.guard(store, exclusive=False)
        return _run(["jobs", "run", "retention"], env, kill_after, held=held)

    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    whole = retention(reference, None)[1]
    after, summary = _exported(cli, reference), _summary(cli, reference)
    # (Past midnight, the cutoff keeps one day less: the cap still leaves these six.)
    assert _holds(after, everything, may=kept, must=kept) == kept
    for round_ in range(6):
        store = tmp_path / f"store-{round_}"
        shutil.copytree(template, store)
        done = retention(store, _moment(rng, whole))[0]
        held = _holds(_exported(cli, store), everything, may=every, must=kept)
        for day in by_day:  # a day is there whole, or not at all
            assert held & set(day) in (set(), set(day)), (day, sorted(held & set(day)))
        assert _close(_summary(cli, store), summaries.of(held))
        _verified(cli, store)
        _log_holds_runs(cli, store, ("retention",), finished=int(done), started=1)
        # Run again, it finishes the work.
        assert retention(store, None)[0]
        assert _close(_exported(cli, store), after)
        assert _close(_summary(cli, store), summary)
        assert _files_a_day(store, "sessions") == _files_a_day(reference, "sessions")
        _verified(cli, store)
        # What a kill left of a removed day (its targets or rollup, read by nobody) goes
        # with the sweep once it is an hour old, as what any killed writer leaves.
        storage = TelemetryStorage(store)
        _age(storage, seconds=7200)
        assert storage.sweep()
        assert {path.parent.name for path in store.glob("*/date=*/*.arrow")} == {
            f"date={day}" for day in kept_days
        }
