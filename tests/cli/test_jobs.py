"""`builder telemetry jobs list|run`: the scheduled jobs, their run log, and a run that
fails, is dry, or waits for another.

The store is small_history() on three days (2025-10-27 to 29), stored one day at a time: 9
builds, 39 target runs, a sessions and a targets file per day; every expected line below is
worked out from that by hand."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from telemetry import locks, months
from tests.conftest import BUILDER, Runner, process_env, small_history, small_history_on

DAYS = ("2025-10-27", "2025-10-28", "2025-10-29")
TOOK = r" \(\d+\.\d s\)"
TARGETS = {json.loads(line).get("target") for line in small_history()} - {None}


def _three_days(cli: Runner) -> Path:
    for day in range(3):
        lines = small_history_on(day)
        assert cli("telemetry", "ingest", "-", stdin="\n".join(lines).encode()).code == 0
    return Path.cwd() / "telemetry"


def _files(store: Path) -> dict[str, str]:
    """Every file of the store but the run log and the locks, with its SHA-256."""
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.parent.name != "jobs" and not p.name.startswith(".")
    }


def _log(store: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (store / "jobs" / "runs.jsonl").read_text().splitlines()]


def test_run_all_compacts_keeps_the_policy_and_logs_each_run(cli: Runner) -> None:
    store = _three_days(cli)
    pristine = _files(store)
    dry = cli("telemetry", "jobs", "run", "all", "--dry-run")
    assert (dry.code, dry.stderr) == (0, "")
    assert dry.stdout == (
        f"compact: would compact 3 days: {', '.join(DAYS)}\n"
        f"rollup: would roll up 3 days: {', '.join(DAYS)}\n"
        "retention: nothing to do: keeping 100,000 days and at most 1,000 builds\n"
        # Nothing is compacted yet, and only compacted days are packed.
        "months: nothing to do: every closed month is packed\n"
    )
    assert _files(store) == pristine and not (store / "jobs").exists()

    ran = cli("telemetry", "jobs", "run", "all")
    assert (ran.code, ran.stderr) == (0, "")
    compact, rolled, retention, packed = ran.stdout.splitlines()
    # 9 builds and 39 target rows, from 3 sessions and 3 targets files, into a sessions,
    # targets and rollup file a day.
    assert re.fullmatch(
        "compact: compacted 3 days: 9 builds, 39 target rows from 6 files into 9 "
        r"\(sessions, targets and rollups\)" + TOOK,
        compact,
    )
    assert re.fullmatch("rollup: rolled up 3 days \\(9 builds\\): 1 month rewritten" + TOOK, rolled)
    assert re.fullmatch(
        "retention: nothing to remove: keeping 100,000 days and at most 1,000 builds" + TOOK,
        retention,
    )
    assert re.fullmatch(
        r"months: packed 1 month \(2025-10\): 3 days, 9 builds, 39 target rows" + TOOK, packed
    )
    first, middle, second, last = _log(store)
    assert (first["job"], first["outcome"], first["days"]) == ("compact", "ok", list(DAYS))
    assert first["counts"] == {
        "days": 3,
        "builds": 9,
        "target_rows": 39,
        "rollup_rows": 3 * len(TARGETS),  # a row per target a day's builds ran
        "writes_merged": 3,
        "files_in": 6,
        "files_out": 9,
        "copies": 9,  # a Parquet copy of each file written
        "copies_backfilled": 0,
    }
    assert (middle["job"], middle["days"]) == ("rollup", list(DAYS))
    assert middle["counts"] == {"days": 3, "builds": 9, "expired_days": 0, "months_written": 1}
    assert (second["job"], second["outcome"], second["days"]) == ("retention", "ok", [])
    assert (last["job"], last["days"], last["counts"]) == (
        "months",
        ["2025-10-01"],
        {"months": 1, "months_retired": 0, "days": 3, "builds": 9, "target_rows": 39},
    )
    # The next day's run: the day folders compaction just changed have settled, so the
    # month's pointer gains their stamps (its pack is not written again).
    pointer = store / "months" / "month=2025-10" / "current"
    packed_before = json.loads(pointer.read_text())
    with pytest.MonkeyPatch.context() as patch:  # the folders' two seconds, not waited for
        patch.setattr(months, "SETTLED_NS", -(10**12))
        compacted = _files(store)

        again = cli("telemetry", "jobs", "run", "all")
    assert again.code == 0
    assert again.stdout.startswith("compact: nothing to merge: every closed day is compacted (")
    assert again.stdout.splitlines()[-1].startswith(
        "months: nothing to pack: every closed month is packed ("
    )
    restamped = json.loads(pointer.read_text())
    assert {k: v for k, v in restamped.items() if k != "stamps"} == {
        k: v for k, v in packed_before.items() if k != "stamps"
    }
    assert [len(restamped["stamps"][d]) for d in ("sessions", "targets", "daily_targets")] == [
        3,
        3,
        3,
    ]
    # The same store but for the pointer: nothing was rewritten.
    assert {k: v for k, v in _files(store).items() if not k.endswith("current")} == {
        k: v for k, v in compacted.items() if not k.endswith("current")
    }
    settled = _files(store)
    assert cli("telemetry", "jobs", "run", "all").code == 0
    assert _files(store) == settled
    assert [entry["job"] for entry in _log(store)] == [
        "compact",
        "rollup",
        "retention",
        "months",
    ] * 3

    listed = cli("telemetry", "jobs", "list")
    assert listed.code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("compact: Merge each closed day")
    assert re.fullmatch(
        r"  last run: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d, ok in \d+\.\d s: nothing to merge: "
        r"every closed day is compacted",
        lines[1],
    )
    assert lines[2] == "  waiting: up to date"
    assert lines[3].startswith("rollup: Roll up each closed day")
    assert lines[5] == "  waiting: up to date"
    assert lines[6].startswith("retention: Remove the days past")
    assert lines[8] == "  waiting: up to date"
    assert lines[9].startswith("months: Pack each closed month")
    assert lines[11] == "  waiting: up to date"
    as_json = json.loads(cli("telemetry", "jobs", "list", "--format", "json").stdout)
    assert [(j["job"], j["behindDays"], j["lastRun"]["outcome"]) for j in as_json] == [
        ("compact", 0, "ok"),
        ("rollup", 0, "ok"),
        ("retention", 0, "ok"),
        ("months", 0, "ok"),
    ]


def test_a_day_or_a_window_chooses_what_compaction_works_on(cli: Runner) -> None:
    store = _three_days(cli)
    one = cli("telemetry", "jobs", "run", "compact", "--day", DAYS[1])
    assert re.fullmatch(
        "compact: compacted 1 day: 3 builds, 13 target rows from 2 files into 3 "
        r"\(sessions, targets and rollups\)" + TOOK + "\n",
        one.stdout,
    )
    listed = cli("telemetry", "jobs", "list").stdout
    assert "  waiting: 2 closed days to compact\n" in listed
    window = cli("telemetry", "jobs", "run", "compact", "--since", DAYS[0], "--until", DAYS[0])
    assert window.stdout.startswith("compact: compacted 1 day: 3 builds")
    assert _log(store)[-1]["days"] == [DAYS[0]]
    assert "  waiting: 1 closed day to compact\n" in cli("telemetry", "jobs", "list").stdout


def test_retention_says_what_it_would_remove_then_removes_it(cli: Runner) -> None:
    store = _three_days(cli)
    # Keep the days from 2025-10-28 on, whatever today is.
    kept = (datetime.now(UTC).date() - date(2025, 10, 28)).days
    env = {"BUILDER_TELEMETRY_RETENTION_DAYS": str(kept)}
    dry = cli("telemetry", "jobs", "run", "retention", "--dry-run", env=env)
    assert dry.stdout == f"retention: would remove 1 day (3 builds): {DAYS[0]}\n"
    assert "  waiting: 1 day to remove\n" in cli("telemetry", "jobs", "list").stdout
    ran = cli("telemetry", "jobs", "run", "retention")
    assert re.fullmatch(
        f"retention: removed 1 day \\(3 builds\\): keeping {kept:,} days and at most 1,000 "
        f"builds{TOOK}\n",
        ran.stdout,
    )
    assert sorted(p.name for p in (store / "sessions").glob("date=*")) == [
        f"date={d}" for d in DAYS[1:]
    ]
    assert _log(store)[-1]["counts"] == {"days": 1, "builds": 3}


def test_a_job_that_fails_stops_the_run(cli: Runner) -> None:
    store = _three_days(cli)
    blocked = store / "targets" / f"date={DAYS[0]}" / ".parquet"
    blocked.write_text("a file where the Parquet copies' folder goes")
    ran = cli("telemetry", "jobs", "run", "all")
    assert (ran.code, ran.stdout) == (1, "")
    assert re.fullmatch(
        f"Error: compact: could not write {re.escape(str(blocked))}/\\S+\\.parquet: .+\n",
        ran.stderr,
    )
    [failed] = _log(store)  # retention did not run
    assert (failed["job"], failed["outcome"]) == ("compact", "failed")
    assert str(failed["said"]).startswith(f"could not write {blocked}/")
    blocked.unlink()
    assert cli("telemetry", "jobs", "run", "all").code == 0


def test_unusable_command_lines_are_status_2(cli: Runner) -> None:
    for args, said in (
        (["nightly"], "Error: Invalid value for 'JOB...': 'nightly' is not one of compact, "),
        ([], "Error: Missing argument 'JOB...'."),
        (["compact", "--day", "2025-13-01"], "Error: --day takes a date such as 2026-11-20"),
        (["compact", "--day", DAYS[0], "--since", "7d"], "Error: --day cannot be given with"),
    ):
        result = cli("telemetry", "jobs", "run", *args)
        assert (result.code, result.stdout) == (2, "")
        assert result.stderr.startswith(said) and result.stderr.count("\n") == 1


def test_a_store_that_does_not_exist_is_left_alone(cli: Runner, tmp_path: Path) -> None:
    listed = cli("telemetry", "jobs", "list")
    assert listed.code == 0
    assert listed.stdout.count("  last run: never\n") == 4
    ran = cli("telemetry", "jobs", "run", "all")
    assert (
        ran.stdout == "compact: no telemetry data (0.0 s)\nrollup: no telemetry data (0.0 s)\n"
        "retention: no telemetry data (0.0 s)\nmonths: no telemetry data (0.0 s)\n"
    )
    assert not (tmp_path / "telemetry").exists()


def test_compact_is_the_compact_job(cli: Runner) -> None:
    store = _three_days(cli)
    done = cli("telemetry", "compact")
    # The builds' sessions files (one a day here) into one a day.
    assert done.stdout == f"Compacted 3 days in {store}: 9 builds from 3 files into 3.\n"
    [entry] = _log(store)
    assert (entry["job"], entry["days"]) == ("compact", list(DAYS))


def test_a_half_written_log_line_is_skipped_and_the_log_keeps_the_newest_runs(
    cli: Runner,
) -> None:
    store = _three_days(cli)
    assert cli("telemetry", "jobs", "run", "compact").code == 0
    log = store / "jobs" / "runs.jsonl"
    line = log.read_text()
    log.write_text(line * 1000 + '{"job": "compact", "started": "2026-')  # killed mid-line
    listed = cli("telemetry", "jobs", "list")
    assert listed.code == 0 and "ok in" in listed.stdout.splitlines()[1]
    assert cli("telemetry", "jobs", "run", "retention").code == 0
    kept = log.read_text().splitlines()
    # 1,000 runs, the half line and the new run: the newest 500 lines are kept.
    assert len(kept) == 500 and json.loads(kept[-1])["job"] == "retention"


def _waiting_for(lock: Path) -> bool:
    """Whether a process waits for the flock on ``lock`` (a ``->`` line of /proc/locks)."""
    inode = lock.stat().st_ino
    return any(
        "->" in line and line.split()[-3].endswith(f":{inode}")
        for line in Path("/proc/locks").read_text().splitlines()
    )


def test_a_second_run_waits_for_the_first(cli: Runner) -> None:
    store = _three_days(cli)
    pristine = _files(store)
    with locks.lock(store, locks.JOBS_LOCK):  # a run in progress, as far as others know
        second = subprocess.Popen(
            [BUILDER, "telemetry", "jobs", "run", "all"],
            env=process_env(store),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            while not _waiting_for(store / locks.JOBS_LOCK):
                assert second.poll() is None, "the second run did not wait"
                time.sleep(0.01)
            assert _files(store) == pristine and not (store / "jobs").exists()
        except BaseException:
            second.kill()
            raise
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0 and out.startswith("compact: compacted 3 days")
    assert [entry["job"] for entry in _log(store)] == ["compact", "rollup", "retention", "months"]


def test_a_run_log_that_cannot_be_written_is_a_warning(cli: Runner) -> None:
    """The job's work is done (and in the store): only its line in the log is missing."""
    store = _three_days(cli)
    (store / "jobs" / "runs.jsonl").mkdir(parents=True)  # where the log file goes
    ran = cli("telemetry", "jobs", "run", "compact")
    assert ran.code == 0 and ran.stdout.startswith("compact: compacted 3 days")
    assert ran.stderr == (
        f"Warning: could not write the run log {store / 'jobs' / 'runs.jsonl'}: Is a "
        f"directory; this run is not in jobs list\n"
    )
    assert len(list(store.glob("sessions/date=*/*-day-*.arrow"))) == 3


def test_a_dry_run_folds_no_recorded_build_and_removes_nothing(cli: Runner, tmp_path: Path) -> None:
    """A recorded build waits in the pending folder until a reader folds it in, and folding
    applies retention: a plan must do neither."""
    store = _three_days(cli)
    recorded = subprocess.run(
        [BUILDER, "record", "--", "true"], env=process_env(store), capture_output=True
    )
    assert recorded.returncode == 0
    waiting = sorted((store / "pending").iterdir())
    assert len(waiting) == 1
    pristine = _files(store)
    kept = (datetime.now(UTC).date() - date(2025, 10, 28)).days  # the first day past it
    env = {"BUILDER_TELEMETRY_RETENTION_DAYS": str(kept)}
    dry = cli("telemetry", "jobs", "run", "all", "--dry-run", env=env)
    assert dry.stdout.endswith(
        f"retention: would remove 1 day (3 builds): {DAYS[0]}\n"
        "months: nothing to do: every closed month is packed\n"
    )
    assert _files(store) == pristine and sorted((store / "pending").iterdir()) == waiting
    listed = cli("telemetry", "jobs", "list")
    assert "  waiting: 1 day to remove\n" in listed.stdout
    assert _files(store) == pristine


def test_a_log_line_of_another_kind_is_not_a_run(cli: Runner) -> None:
    store = _three_days(cli)
    assert cli("telemetry", "jobs", "run", "compact").code == 0
    with (store / "jobs" / "runs.jsonl").open("a") as log:
        log.write('{"job": ["compact"]}\n[1, 2]\n')
    listed = cli("telemetry", "jobs", "list")
    assert listed.code == 0 and "ok in" in listed.stdout.splitlines()[1]
