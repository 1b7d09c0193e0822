"""Maintenance racing writers: retention, compaction, ingests, builds and readers at once.

A build that ``ingest`` or ``record`` stored stays whole until retention removes its day,
however the processes interleave. The deterministic tests below put one process exactly
between another's steps; the torture tests race real processes for many rounds and count
every build and every target row (``just torture`` runs them at ten times the size).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.ipc as ipc
import pytest

from telemetry.collector import TelemetryCollector
from telemetry.ingest import ingest_jsonl
from telemetry.storage import TelemetryStorage
from tests.conftest import BUILDER, process_env

# The attacks on the store, which `just torture` runs at a larger size.
pytestmark = pytest.mark.torture

DAY = 86_400_000
# Rounds of the torture tests: a size CI affords by default, TORTURE_SCALE times it with
# `just torture`.
SCALE = int(os.environ.get("TORTURE_SCALE", "1"))


def _build(session: str, ts: int, targets: int) -> list[str]:
    """One build's events: ``targets`` targets run one after another, each 10 ms."""
    lines = [{"event": "build_started", "session": session, "ts": ts, "parallelism": 2}]
    for t in range(targets):
        lines.append(
            {"event": "target_started", "session": session, "ts": ts + 10 * t,
             "target": f"//p{t}:t", "worker": 0}
        )  # fmt: skip
        lines.append(
            {"event": "target_finished", "session": session, "ts": ts + 10 * t + 10,
             "target": f"//p{t}:t", "status": "built" if t % 3 else "cached"}
        )  # fmt: skip
    lines.append(
        {"event": "build_finished", "session": session, "ts": ts + 10 * targets, "success": True}
    )
    return [json.dumps(line) for line in lines]


def _targets_of(session: str) -> int:
    """The number of targets a test build was given: its id ends in ``-t<N>``."""
    return int(session.rsplit("-t", 1)[1]) if "-t" in session else 0


def _stored(store: Path) -> Counter[str]:
    """Each visible build with its number of target rows, read with pyarrow alone from the
    files (a second route, independent of the library's readers): the sessions files, and
    the targets files beside them."""
    sessions: set[str] = set()
    rows: Counter[str] = Counter()
    for dataset in ("sessions", "targets"):
        for path in sorted((store / dataset).glob("date=*/*.arrow")):
            if path.name.startswith("."):
                continue
            table = ipc.open_file(str(path)).read_all()
            ids = table.column("session_id").to_pylist()
            if dataset == "sessions":
                sessions.update(ids)
            else:
                rows.update(ids)
    return Counter({session: rows[session] for session in sessions})


def _waits_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked waiting for a file lock (a ``->`` line of
    /proc/locks names the waiters)."""
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if "->" in fields and fields[fields.index("->") + 4] == str(pid):
                return True
    return False


def _until_done_or_waiting(process: subprocess.Popen[bytes]) -> None:
    """Return once ``process`` has exited or is waiting for a lock that this one holds."""
    while True:
        try:
            process.wait(timeout=0.005)
            return
        except subprocess.TimeoutExpired:
            if _waits_for_a_lock(process.pid):
                return


# -- one process exactly between another's steps ---------------------------------------------


def _between_renames(
    monkeypatch: pytest.MonkeyPatch, command: list[str], env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    """Start ``command`` when this process's next write has its targets file in place and
    its sessions file not yet, and go on once the command has ended or waits for a lock;
    the started process is put in the list returned."""
    from telemetry import writer

    other: list[subprocess.Popen[bytes]] = []
    original = writer.write_file

    def write_file(store: Any, dataset: str, *args: Any, **kwargs: Any) -> Path:
        path = original(store, dataset, *args, **kwargs)
        if dataset == "targets" and not other:
            other.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE))  # fmt: skip
            _until_done_or_waiting(other[0])
        return path

    monkeypatch.setattr(writer, "write_file", write_file)
    return other


def test_retention_between_a_writes_two_renames_waits_and_removes_the_build_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build's targets file is in place, its sessions file not yet: another process's
    ingest runs retention now, which removes the day being written (the oldest, over the
    cap). It must wait for the write and then remove the build with its day, or leave the
    day; never remove the targets and let the session appear without them."""
    store = tmp_path / "store"
    d1, d3 = 1761523200000, 1761523200000 + 2 * DAY  # 2025-10-27 and 2025-10-29, 00:00
    writer = TelemetryStorage(store)  # no caps of its own: the other process's retention acts
    collector = TelemetryCollector(writer)
    ingest_jsonl(writer, [*_build("x-t2", d1 + 1000, 2), *_build("z-t1", d3 + 1000, 1)])
    extra = tmp_path / "extra.jsonl"
    extra.write_text("\n".join(_build("z2-t3", d3 + 5000, 3)) + "\n")
    # Between the two renames: the other ingest stores its build and runs retention with a
    # cap of 2 builds, which removes 2025-10-27.
    other = _between_renames(monkeypatch, [BUILDER, "telemetry", "ingest", str(extra)],
                             process_env(store, BUILDER_TELEMETRY_MAX_SESSIONS="2"))  # fmt: skip
    collector.build_started("w-t5", ts=d1 + 9000, parallelism=2)
    for t in range(5):
        collector.target_finished("w-t5", f"//w{t}:t", ts=d1 + 9010 + t, status="built",
                                  duration_ms=5)  # fmt: skip
    collector.build_finished("w-t5", ts=d1 + 9100, success=True)
    monkeypatch.undo()
    out, err = other[0].communicate()
    assert other[0].returncode == 0, err
    assert out.decode() == "Stored 1 build from 8 events.\n"
    # It waited for the write, so it saw the day with both builds and removed them together.
    assert err.decode() == (
        "Retention removed 2 builds in 1 day partition (keeping 100000 days and at most 2 "
        "builds).\n"
    )
    assert _stored(store) == {"z-t1": 1, "z2-t3": 3}


def test_clear_between_a_writes_two_renames_waits_and_leaves_no_half_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`builder telemetry clear` while a build is between its two renames: it waits for
    the write and removes the build with everything else, never its targets alone."""
    store = tmp_path / "store"
    writer = TelemetryStorage(store)
    ingest_jsonl(writer, _build("x-t2", 1761523200000 + 1000, 2))
    other = _between_renames(monkeypatch, [BUILDER, "telemetry", "clear"], process_env(store))
    ingest_jsonl(writer, _build("w-t4", 1761523200000 + 9000, 4))
    monkeypatch.undo()
    out, err = other[0].communicate()
    assert (other[0].returncode, err) == (0, b"")
    assert out.decode() == f"Removed 2 builds from {store}.\n"
    assert _stored(store) == {}


def test_a_recorded_build_never_waits_for_retention(tmp_path: Path) -> None:
    """While another process writes (it holds the guard shared), `builder record` stores its
    build (as a pending file) without waiting; a reader folds it in and leaves retention to
    the next write rather than wait; with nothing in the way, the next one applies it."""
    import fcntl

    store = tmp_path / "store"
    d1 = 1761523200000  # 2025-10-27
    ingest_jsonl(TelemetryStorage(store), [*_build("x-t1", d1, 1), *_build("y-t1", d1 + DAY, 1)])
    env = process_env(store, BUILDER_TELEMETRY_MAX_SESSIONS="2")
    record = [BUILDER, "record", "--", "true"]
    export = [BUILDER, "telemetry", "export"]
    fd = os.open(store / ".guard", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a write in progress, as far as retention can tell
        # (The timeouts only keep a regression from hanging the suite.)
        done = subprocess.run(record, env=env, capture_output=True, timeout=600, check=False)
        assert (done.returncode, done.stderr) == (0, b"")
        assert len(list((store / "pending").glob("*.jsonl"))) == 1
        shown = subprocess.run(export, env=env, capture_output=True, timeout=600, check=True)
        assert len(json.loads(shown.stdout)["sessions"]) == 3
        stored = _stored(store)
        assert len(stored) == 3 and {"x-t1", "y-t1"} <= set(stored)  # nothing removed yet
        assert list((store / "pending").glob("*.jsonl")) == []
    finally:
        os.close(fd)
    done = subprocess.run(record, env=env, capture_output=True, timeout=600, check=False)
    assert (done.returncode, done.stderr) == (0, b"")
    shown = subprocess.run(export, env=env, capture_output=True, timeout=600, check=True)
    assert len(json.loads(shown.stdout)["sessions"]) == 2
    stored = _stored(store)  # over the cap of 2: both old days went, today's two builds stay
    assert len(stored) == 2 and not {"x-t1", "y-t1"} & set(stored)


def test_compaction_mends_a_day_whose_targets_folder_is_gone(tmp_path: Path) -> None:
    """What the old race left (a day's sessions without its targets folder) is compacted,
    not a reason to stop: every other day is compacted too, and the answers stay the same."""
    store = tmp_path / "store"
    base = 1761523200000  # 2025-10-27
    lines = [line for d in range(3) for line in _build(f"b{d}-t2", base + d * DAY + 1000, 2)]
    env = process_env(store)
    subprocess.run([BUILDER, "telemetry", "ingest", "-"], input="\n".join(lines).encode(),
                   env=env, check=True, capture_output=True)  # fmt: skip
    for path in (store / "targets" / "date=2025-10-28").iterdir():
        path.unlink()
    (store / "targets" / "date=2025-10-28").rmdir()
    before = subprocess.run([BUILDER, "telemetry", "export"], env=env, capture_output=True,
                            check=True).stdout  # fmt: skip
    done = subprocess.run([BUILDER, "telemetry", "compact"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"Compacted 3 days in {store}: 3 builds from 3 files into 3.\n"
    after = subprocess.run([BUILDER, "telemetry", "export"], env=env, capture_output=True,
                           check=True).stdout  # fmt: skip
    assert after == before
    assert _stored(store) == {"b0-t2": 2, "b1-t2": 0, "b2-t2": 2}


# -- the torture: real processes racing for many rounds ----------------------------------------


ROLES = ("ingest-a", "ingest-b", "record", "compact", "read")


def _race(role: str, store: str, rounds: int, seed: int, barrier: Any, results: Any) -> None:
    """One process of the race: each round it waits for the others, then does its part."""
    from pipelines.compaction import compact
    from telemetry.analyzer import TelemetryAnalyzer
    from telemetry.ingest import ingest_file

    rng = random.Random(f"{seed}-{role}")
    storage = TelemetryStorage(store, max_sessions=12, retention_days=5)
    now = datetime.now(UTC)
    today = int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    stored: list[str] = []
    removed = 0
    errors: list[str] = []
    events = Path(store).parent / f"{role}.jsonl"
    for round_ in range(rounds):
        barrier.wait()
        try:
            if role.startswith("ingest"):
                lines: list[str] = []
                for b in range(2):
                    # Days from a week ago (past the retention cutoff) to today, before now.
                    ts = today - rng.randrange(0, 8) * DAY + rng.randrange(0, 3600_000)
                    session = f"{role}-r{round_}-b{b}-t{rng.randrange(0, 7)}"
                    lines += _build(session, ts, _targets_of(session))
                events.write_text("\n".join(lines) + "\n")
                result = ingest_file(storage, events)
                assert result.sessions == 2 and not result.problems, result
                stored += [f"{role}-r{round_}-b{b}" for b in range(2)]
                removed += result.retention.removed_sessions
            elif role == "record":
                session = f"record-r{round_}-t{rng.randrange(0, 7)}"
                ts = today - rng.randrange(0, 3) * DAY + rng.randrange(0, 3600_000)

                class Sink:
                    def write(self, sessions: Any, targets: Any) -> None:
                        nonlocal removed
                        removed += storage.write(sessions, targets).removed_sessions

                collector = TelemetryCollector(Sink(), on_warning=errors.append)
                collector.build_started(session, ts=ts, parallelism=2)
                for t in range(_targets_of(session)):
                    collector.target_finished(session, f"//r{t}:t", ts=ts + t + 1,
                                              status="built", duration_ms=1)  # fmt: skip
                collector.build_finished(session, ts=ts + 100, success=True)
                stored.append(session.rsplit("-t", 1)[0])
            elif role == "compact":
                compact(storage)
            else:
                sessions = TelemetryAnalyzer(storage).sessions()
                for session, total in sessions.select("session_id", "total_targets").iter_rows():
                    assert total == _targets_of(session), f"{session} has {total} targets"
        except Exception:
            errors.append(f"round {round_}: {traceback.format_exc()}")
    results.put((role, stored, removed, errors))


def test_racing_ingests_builds_retention_compaction_and_readers_lose_nothing(
    tmp_path: Path,
) -> None:
    """Two ingests, a build being recorded, a compaction and a reader, started together
    round after round on a store near its caps (at most 12 builds, 5 days). Nothing fails,
    every build a reader sees has all its targets, and every build stored is either still
    there whole or counted by the retention that removed it."""
    rounds = 40 * SCALE
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(ROLES))
    results = context.Queue()
    store = tmp_path / "store"
    processes = [
        context.Process(target=_race, args=(role, str(store), rounds, 11, barrier, results))
        for role in ROLES
    ]
    for process in processes:
        process.start()
    outcome = {role: (stored, removed, errors) for role, stored, removed, errors in
               (results.get() for _ in ROLES)}  # fmt: skip
    for process in processes:
        process.join()
        assert process.exitcode == 0
    assert {role: errors for role, (_, _, errors) in outcome.items()} == {r: [] for r in ROLES}
    stored = [build for role in ("ingest-a", "ingest-b", "record") for build in outcome[role][0]]
    removed = sum(outcome[role][1] for role in ("ingest-a", "ingest-b", "record"))
    assert len(stored) == rounds * 5
    final = _stored(store)
    # Whole: each visible build has every target row it was sent with.
    assert {s: n for s, n in final.items() if n != _targets_of(s)} == {}
    # Nothing lost: the builds still there and those retention said it removed add up.
    assert len(final) + removed == len(stored)
    assert {s.rsplit("-t", 1)[0] for s in final} <= set(stored)
    storage = TelemetryStorage(store)
    assert [(p, problem) for p, problem in storage.verify() if problem] == []


def test_racing_builder_processes_lose_nothing(tmp_path: Path) -> None:
    """The same race with the real command: two `builder telemetry ingest`, a
    `builder record`, a `builder telemetry compact` and a `builder telemetry export`
    started together each round. Every one succeeds; what is stored is whole and
    readable."""
    store = tmp_path / "store"
    env = process_env(store, BUILDER_TELEMETRY_MAX_SESSIONS="8",
                      BUILDER_TELEMETRY_RETENTION_DAYS="4")  # fmt: skip
    rng = random.Random(5)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for round_ in range(4 * SCALE):
        commands: list[list[str]] = []
        for writer in "ab":
            lines = []
            for b in range(2):
                day = today - timedelta(days=rng.randrange(0, 6))
                session = f"{writer}-r{round_}-b{b}-t{rng.randrange(0, 6)}"
                lines += _build(session, int(day.timestamp() * 1000) + 1000, _targets_of(session))
            path = tmp_path / f"{writer}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            commands.append([BUILDER, "telemetry", "ingest", str(path)])
        commands += [
            [BUILDER, "record", "--", "true"],
            [BUILDER, "telemetry", "compact"],
            [BUILDER, "telemetry", "export"],
        ]
        running = [
            subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for c in commands
        ]
        for command, process in zip(commands, running, strict=True):
            out, err = process.communicate()
            assert process.returncode == 0, (command, err.decode())
            assert b"Error" not in err and b"Warning" not in err, (command, err.decode())
            if command[-1] == "export":
                for session in json.loads(out)["sessions"]:
                    assert session["totalTargets"] == _targets_of(session["sessionId"])
    final = _stored(store)
    assert final and {s: n for s, n in final.items() if n != _targets_of(s)} == {}
    done = subprocess.run([BUILDER, "telemetry", "verify"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
