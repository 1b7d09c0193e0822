"""Reliability under load and crashes: eight writers and looping readers and retention, and
hundreds of writers killed with SIGKILL in the middle of a write. Nothing reported stored
is lost, nothing is stored twice, and no reader ever meets a partial or damaged file."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.collector import TelemetryCollector
from telemetry.snapshot import GRACE_SECONDS
from telemetry.storage import TelemetryStorage
from tests import crash_writer
from tests.conftest import BUILDER, REPO, process_env, small_history

WRITERS = 8
BUILDS = 100
TARGETS = 10


def _writer(store: str, writer: int, results: multiprocessing.Queue[list[str]]) -> None:
    storage = TelemetryStorage(store, max_sessions=10**6, retention_days=30)
    failures: list[str] = []
    collector = TelemetryCollector(storage, on_warning=failures.append, warn_every_time=True)
    now = int(time.time() * 1000)
    stored = []
    for build in range(BUILDS):
        session = f"w{writer}-b{build}"
        # Spread over the last days, so several writers share each day's folder.
        start = now - ((writer * BUILDS + build) % 5) * 86_400_000 - build * 1000
        collector.build_started(session, ts=start, parallelism=2)
        for t in range(TARGETS):
            target = f"//p{t}:t"
            collector.target_started(session, target, ts=start + t * 3, worker=t % 2)
            collector.target_finished(session, target, ts=start + t * 3 + 3, status="built")
        collector.build_finished(session, ts=start + TARGETS * 3 + 1, success=True)
        if not failures:
            stored.append(session)
    results.put(stored if not failures else [f"FAILED: {failures}"])


def _old_days(store: Path) -> None:
    """Builds from long ago, which retention removes while the writers work."""
    storage = TelemetryStorage(store, max_sessions=10**6, retention_days=10**5)
    collector = TelemetryCollector(storage)
    old = datetime.now(UTC) - timedelta(days=200)
    for day in range(20):
        start = int((old - timedelta(days=day)).timestamp() * 1000)
        collector.build_started(f"old-{day}", ts=start)
        collector.target_finished(f"old-{day}", "//old:t", ts=start + 5, status="built")
        collector.build_finished(f"old-{day}", ts=start + 10, success=True)


def test_eight_writers_with_readers_and_retention_lose_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _old_days(store)
    env = process_env(store, BUILDER_TELEMETRY_RETENTION_DAYS="30")
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[list[str]] = context.Queue()
    writers = [
        context.Process(target=_writer, args=(str(store), w, results)) for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    reader_runs = 0
    cli_runs = 0
    storage = TelemetryStorage(store, max_sessions=10**6, retention_days=30)
    commands = [
        ["telemetry", "summary", "--format", "json"],
        ["telemetry", "recent", "5"],
        ["telemetry", "export"],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reader must never meet a damaged or partial file
        while any(p.is_alive() for p in writers) or cli_runs < 3:
            storage.apply_retention()
            sessions = TelemetryAnalyzer(storage).sessions()
            # Every visible build is complete: all its target rows are already there.
            assert set(sessions["total_targets"].to_list()) <= {1, TARGETS}
            rows = _target_rows(storage)
            assert all(rows.get(s, 0) == n for s, n in zip(sessions["session_id"],
                       sessions["total_targets"], strict=True))  # fmt: skip
            reader_runs += 1
            args = commands[cli_runs % len(commands)]
            done = subprocess.run(
                [BUILDER, *args], capture_output=True, text=True, env=env, check=False
            )
            # Between retention removing the old days and the first write, there is nothing.
            nothing = done.stderr.startswith(f"No telemetry data yet in {store}. ")
            assert done.returncode == 0 and (done.stderr == "" or nothing), args
            if args[1] == "export" and done.stdout:
                for session in json.loads(done.stdout)["sessions"]:
                    assert session["totalTargets"] in (1, TARGETS)
            cli_runs += 1
    stored = [session for _ in writers for session in results.get(timeout=60)]
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert not [s for s in stored if s.startswith("FAILED")]
    assert len(stored) == WRITERS * BUILDS
    sessions = TelemetryAnalyzer(storage).sessions()
    ids = sessions["session_id"].to_list()
    assert sorted(ids) == sorted(stored)  # each exactly once; the old days are gone
    assert sessions["total_targets"].to_list() == [TARGETS] * len(ids)
    assert _target_rows(storage) == dict.fromkeys(stored, TARGETS)
    assert [path for path, problem in storage.verify() if problem] == []
    assert reader_runs >= 3 and cli_runs >= 3


def _target_rows(storage: TelemetryStorage) -> dict[str, int]:
    """How many target rows each build has in the committed targets files."""
    import polars as pl

    counts = storage.snapshot(datasets=("targets",)).collect(
        "targets", lambda rows: rows.group_by("session_id").agg(pl.len())
    )
    return {} if counts is None else dict(counts.iter_rows())


def test_writers_killed_mid_write_leave_nothing_readers_trip_over(tmp_path: Path) -> None:
    store = tmp_path / "store"
    kills = 2 * crash_writer.SPAN  # each of the first steps of a writer's work, twice
    done = subprocess.run(
        [sys.executable, "-m", "tests.crash_writer", str(store), str(kills), "7"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=True,
    )
    outcome = json.loads(done.stdout)
    reported = outcome["reported"]
    # The kills landed everywhere: before any write, in the first, and after several; at
    # every kind of step of a write.
    assert outcome["per_writer"].count(0) > 20 and max(outcome["per_writer"]) >= 2
    assert set(outcome["killed_at"]) == set(crash_writer.STEPS.values())
    storage = TelemetryStorage(store, max_sessions=10**6, retention_days=crash_writer.KEEP_DAYS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sessions = TelemetryAnalyzer(storage).sessions()
    ids = sessions["session_id"].to_list()
    assert not [i for i in ids if i.startswith("old-")]  # retention removed them as it ran
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(reported) <= set(ids)  # nothing reported stored is lost
    # A build can be stored without being reported (killed between its rename and the
    # report), at most one per kill.
    assert len(set(ids) - set(reported)) <= kills
    assert sessions["total_targets"].to_list() == [crash_writer.TARGETS] * len(ids)
    assert _target_rows(storage) == dict.fromkeys(ids, crash_writer.TARGETS)
    assert [path for path, problem in storage.verify() if problem] == []
    env = process_env(store)
    for args in (["telemetry"], ["telemetry", "recent", "3"], ["telemetry", "export"]):
        cli = subprocess.run([BUILDER, *args], capture_output=True, text=True, env=env)
        assert (cli.returncode, cli.stderr) == (0, ""), args

    leftovers = [p for p in store.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers  # some kills did land in the middle of writing a file

    # Once they are old enough to belong to no live writer, retention removes the leftovers:
    # temporary files, and targets files whose sessions file never appeared; and, an hour
    # on, the days it removed (kept hidden meanwhile for the readers that listed them).
    for path in store.rglob("*.arrow*"):
        os.utime(path, (0, 0))
    an_hour_on = time.time() + GRACE_SECONDS + 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: an_hour_on)
        storage.apply_retention()
    assert [p for p in store.rglob("*") if p.name.startswith((".tmp-", ".trash-"))] == []
    session_stems = {p.name.rsplit("-n", 1)[0] for p in (store / "sessions").rglob("*.arrow")}
    target_stems = {p.name.rsplit("-n", 1)[0] for p in (store / "targets").rglob("*.arrow")}
    assert target_stems == session_stems
    after = TelemetryAnalyzer(storage).sessions()
    assert sorted(after["session_id"].to_list()) == sorted(ids)


# -- a full disk, a read-only store ------------------------------------------------------


def _in_namespace(
    script: str, *, map_root: bool, env: dict[str, str], timeout: float = 120
) -> str | None:
    """Run ``script`` in bash in a new user (and mount) namespace: as root of it, able to
    mount a tmpfs, or as an unprivileged user. None when the machine allows neither."""
    flags = ["--user", "--map-root-user", "--mount"] if map_root else ["--user"]
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    done = subprocess.run(
        [unshare, *flags, "bash", "-euc", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if done.returncode == 97 or "unshare failed" in done.stderr or "unshare:" in done.stderr:
        return None
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_full_disk_loses_nothing_and_the_build_keeps_its_status(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(small_history()) + "\n")
    store = disk / "store"
    script = f"""
        mount -t tmpfs -o size=2m tmpfs {disk} || exit 97
        {BUILDER} telemetry ingest {history} > /dev/null
        # Fill the disk to the last block.
        dd if=/dev/zero of={disk}/filler bs=4k 2> /dev/null || true
        set +e
        {BUILDER} record -- sh -c 'echo built; exit 3' > {tmp_path}/out 2> {tmp_path}/err
        echo "status=$?"
        set -e
        find {store} -name '.tmp-*' | wc -l
        {BUILDER} telemetry export
    """
    output = _in_namespace(script, map_root=True, env=process_env(store))
    if output is None:
        pytest.skip("this machine allows no user namespace to mount a small disk in")
    status, partials, exported = output.split("\n", 2)
    assert status == "status=3"  # the build's own exit status
    assert (tmp_path / "out").read_text() == "built\n"  # its output untouched
    [warning] = (tmp_path / "err").read_text().splitlines()
    assert warning.startswith("Warning: telemetry could not store build")
    assert "No space left on device" in warning
    assert partials.strip() == "0"  # no partial file left behind
    sessions = json.loads(exported)["sessions"]
    assert [s["sessionId"] for s in sessions] == ["a", "b", "c"]  # history intact


def _unprivileged_base(tmp_path: Path) -> Path:
    """A folder an unprivileged user can reach. Root may read and write anywhere; in a user
    namespace of its own it is an unprivileged user, who cannot enter pytest's 0700 folder."""
    if os.geteuid() != 0:
        return tmp_path
    base = Path(tempfile.mkdtemp(prefix="builder-test-", dir="/tmp"))
    base.chmod(0o755)
    return base


def _run_unprivileged(script: str, env: dict[str, str]) -> str | None:
    """Run ``script`` as a user without privileges (None when no such user can run it)."""
    if os.geteuid() == 0:
        return _in_namespace(script, map_root=False, env=env)
    done = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, env=env)
    assert done.returncode in (0, 97), done.stderr
    return done.stdout if done.returncode == 0 else None


def _release(base: Path, tmp_path: Path) -> None:
    for path in [base, *base.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755)
    if base != tmp_path:
        shutil.rmtree(base)


def test_unreadable_folders_and_files_are_named_and_skipped(tmp_path: Path) -> None:
    base = _unprivileged_base(tmp_path)
    try:
        store = base / "store"
        events = []
        for day, session in enumerate(("first", "second", "third")):
            start = 1761575000000 + day * 86_400_000
            events += [
                {"event": "build_started", "session": session, "ts": start},
                {"event": "build_finished", "session": session, "ts": start + 9, "success": True},
            ]
        stdin = "".join(json.dumps(e) + "\n" for e in events)
        env = process_env(store)
        subprocess.run([BUILDER, "telemetry", "ingest", "-"], input=stdin, text=True, env=env,
                       check=True, capture_output=True)  # fmt: skip
        locked_day = store / "sessions" / "date=2025-10-27"
        [locked_file] = (store / "sessions" / "date=2025-10-28").glob("*.arrow")
        locked_day.chmod(0o000)
        locked_file.chmod(0o000)
        script = f"""
            {BUILDER} --help > /dev/null 2>&1 || exit 97
            {BUILDER} telemetry export 2> {base}/err
        """
        output = _run_unprivileged(script, env)
        if output is None:
            pytest.skip("no unprivileged user can run builder here")
        assert [s["sessionId"] for s in json.loads(output)["sessions"]] == ["third"]
        warnings_seen = (base / "err").read_text().splitlines()
        assert sorted(warnings_seen) == sorted(
            [
                f"Warning: skipping {locked_day}: Permission denied",
                f"Warning: skipping {locked_file}: unreadable (Permission denied)",
            ]
        )
    finally:
        _release(base, tmp_path)


def test_a_read_only_store_loses_nothing_and_the_build_keeps_its_status(tmp_path: Path) -> None:
    base = _unprivileged_base(tmp_path)
    try:
        store = base / "store"
        ingest = subprocess.run(
            [BUILDER, "telemetry", "ingest", "-"],
            input="\n".join(small_history()) + "\n",
            capture_output=True,
            text=True,
            env=process_env(store),
            check=True,
        )
        assert ingest.returncode == 0
        for folder in [store, *[p for p in store.rglob("*") if p.is_dir()]]:
            folder.chmod(0o555)
        script = f"""
            {BUILDER} --help > /dev/null 2>&1 || exit 97
            set +e
            {BUILDER} record -- sh -c 'echo built; exit 4' 2> {base}/err
            echo "status=$?"
            set -e
            find {store} -name '.tmp-*' | wc -l
            {BUILDER} telemetry export
        """
        output = _run_unprivileged(script, process_env(store))
        if output is None:
            pytest.skip("no unprivileged user can run builder here")
        built, status, partials, exported = output.split("\n", 3)
        assert (built, status, partials.strip()) == ("built", "status=4", "0")
        [warning] = (base / "err").read_text().splitlines()
        assert warning.startswith("Warning: telemetry could not store build")
        assert "Permission denied" in warning
        sessions = json.loads(exported)["sessions"]
        assert [s["sessionId"] for s in sessions] == ["a", "b", "c"]
    finally:
        _release(base, tmp_path)
